/* Replays a fuzz corpus through a target without libFuzzer, so `make check`
 * (gcc, optionally under ASan/UBSan) runs every seed and every regression
 * input. Usage: replay DIR... ; prints "replay: N inputs". */
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"

int main(int argc, char **argv)
{
    int n = 0;
    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        if (d == NULL) {
            fprintf(stderr, "replay: cannot open %s\n", argv[i]);
            return 1;
        }
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            FILE *f = fopen(path, "rb");
            if (f == NULL)
                continue;
            static uint8_t buf[1 << 20];
            size_t len = fread(buf, 1, sizeof buf, f);
            fclose(f);
            uint8_t *copy = malloc(len ? len : 1);
            memcpy(copy, buf, len);
            LLVMFuzzerTestOneInput(copy, len);
            free(copy);
            n++;
        }
        closedir(d);
    }
    printf("replay: %d inputs\n", n);
    return 0;
}
