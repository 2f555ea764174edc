/* The configuration's files, read and parsed one by one (each checked on
 * its own later, so an error names its file). Private to sidecar/config.c. */
#ifndef SIDECAR_CONFIG_FILES_H
#define SIDECAR_CONFIG_FILES_H

#include <cjson/cJSON.h>
#include <stddef.h>

/* A parsed file and where each accumulating item came from. */
struct cfg_source {
    char *file;
    cJSON *root;
};

/* Appends path to *srcs: a JSON file, an HCL file (.hcl), or a directory
 * whose *.json and *.hcl files are read in lexical order. At most 256
 * files of 4 MiB each. -1 and err naming the file and the reason. */
int config_load_path(struct cfg_source **srcs, size_t *n, const char *path, char *err,
                     size_t errlen);

#endif
