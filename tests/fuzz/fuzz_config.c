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
    char err[512];
    fuzz_config_file(data, size, "");
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
