/* Fuzz target: the configuration loader (a JSON file with services, checks,
 * probes, upstreams and proxies) and the state file parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"
#include "sidecar/config.h"
#include "sidecar/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[] = "/tmp/cs-fuzz-config.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        unlink(path);
        return 0;
    }
    close(fd);
    const char *paths[] = {path};
    struct config cfg;
    char err[512];
    struct config_overrides none = {0};
    none.node = "fuzz";
    if (config_load(&cfg, paths, 1, NULL, &none, err, sizeof err) == 0) {
        char *json = config_effective_json(&cfg);
        free(json);
        config_free(&cfg);
    }
    unlink(path);
    char *text = malloc(size + 1);
    if (text) {
        memcpy(text, data, size);
        text[size] = '\0';
        struct state st = {0};
        if (state_parse(text, &st, err, sizeof err) == 0)
            state_free(&st);
        free(text);
    }
    return 0;
}
