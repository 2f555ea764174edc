/* The entry point every fuzz target defines, for libFuzzer and replay.c,
 * and what several targets do with their bytes. */
#ifndef TESTS_FUZZ_FUZZ_H
#define TESTS_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sidecar/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The bytes as a configuration file whose name ends in suffix ("" for
 * JSON, ".hcl"), through the whole loader and -validate's printout. */
static inline void fuzz_config_file(const uint8_t *data, size_t size, const char *suffix)
{
    char path[64] = "/tmp/cs-fuzz-config.XXXXXX";
    int n = (int)strlen(suffix);
    strncat(path, suffix, sizeof path - strlen(path) - 1);
    int fd = mkstemps(path, n);
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

#endif
