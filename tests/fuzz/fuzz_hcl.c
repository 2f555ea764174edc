/* Fuzz target: the HCL reader (lib/hcl.c), and the configuration loader on
 * the same bytes as a .hcl file. Whatever the reader accepts must print as
 * JSON that cJSON reads back as the same tree. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"
#include "lib/hcl.h"
#include "sidecar/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[300];
    cJSON *root = hcl_parse((const char *)data, size, err, sizeof err);
    if (root) {
        char *json = cJSON_PrintUnformatted(root);
        cJSON *back = json ? cJSON_Parse(json) : NULL;
        if (json && (back == NULL || !cJSON_Compare(root, back, 1)))
            abort(); /* the tree must survive JSON */
        cJSON_Delete(back);
        free(json);
        cJSON_Delete(root);
    } else if (strlen(err) == 0 || strchr(err, '\n')) {
        abort(); /* a refusal is one line with a reason */
    }
    fuzz_config_file(data, size, ".hcl");
    return 0;
}
