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

static void load_as_file(const uint8_t *data, size_t size)
{
    char path[] = "/tmp/cs-fuzz-hcl.XXXXXX.hcl";
    int fd = mkstemps(path, 4);
    if (fd < 0)
        return;
    if (write(fd, data, size) == (ssize_t)size) {
        const char *paths[] = {path};
        struct config cfg;
        char err[512];
        struct config_overrides none = {0};
        none.node = "fuzz";
        if (config_load(&cfg, paths, 1, NULL, &none, err, sizeof err) == 0) {
            free(config_effective_json(&cfg));
            config_free(&cfg);
        }
    }
    close(fd);
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[300];
    cJSON *root = hcl_parse((const char *)data, size, err, sizeof err);
    if (root) {
        char *json = cJSON_PrintUnformatted(root);
        cJSON *back = json ? cJSON_Parse(json) : NULL;
        if (json && (back == NULL || !cJSON_Compare(root, back, 1)))
            abort();   /* the tree must survive JSON */
        cJSON_Delete(back);
        free(json);
        cJSON_Delete(root);
    } else if (strlen(err) == 0 || strchr(err, '\n')) {
        abort();   /* a refusal is one line with a reason */
    }
    load_as_file(data, size);
    return 0;
}
