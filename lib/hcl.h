/* A reader of HCL, scoped to what Consul's configuration and service files
 * use, into the JSON tree the JSON files give:
 *   key = value        (":" is taken for "=", as HCL 1 does)
 *   name { ... }       a block: an object; name "label" { ... } nests it
 *                      under the label; the same block name twice makes an
 *                      array of them (two `service { }` blocks: a list)
 *   values             "strings" (escapes \" \\ \n \r \t \uXXXX), numbers,
 *                      true, false, [lists], { key = value maps }
 *   comments           #, // and slash-star ... star-slash
 * Not HCL that Consul files do not need: heredocs, "${...}" templates,
 * expressions and functions, each refused with its own reason. Errors are one
 * line, "line L, column C: reason". Nothing is returned but a whole
 * document: a depth over 64, a key given twice as an attribute, anything
 * after the last item are errors too. */
#ifndef LIB_HCL_H
#define LIB_HCL_H

#include <cjson/cJSON.h>
#include <stddef.h>

/* The document as a JSON object; NULL and a reason in err. */
cJSON *hcl_parse(const char *text, size_t len, char *err, size_t errlen);

#endif
