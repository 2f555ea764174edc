/*
 * Bench loader: registers SERVICES x PER instances in the Consul double, as
 * many nodes' sidecars would, spreading them over the agents listed in a
 * port file (lines "NAME PORT"; "control" skipped). One keep-alive
 * connection per agent, so 10,000 registrations take seconds.
 *
 * load PORT_FILE SERVICES PER
 * load --checks PORT_FILE SERVICES PER pass|fail FROM
 *   turns the TTL checks of instances FROM..PER of every service (the
 *   others stay as they are), as fast as one connection per agent allows:
 *   a burst.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t sink(char *p, size_t s, size_t n, void *u)
{
    (void)p;
    (void)u;
    return s * n;
}

int main(int argc, char **argv)
{
    const char *verb = NULL;
    int from = 1;
    if (argc == 7 && strcmp(argv[1], "--checks") == 0) {
        verb = argv[5];
        from = (int)strtol(argv[6], NULL, 10);
        argv++;
        argc = 4;
    }
    if (argc != 4 || (verb && strcmp(verb, "pass") && strcmp(verb, "fail"))) {
        fprintf(
            stderr,
            "usage: load PORT_FILE SERVICES PER | load --checks PORT_FILE SERVICES PER pass|fail FROM\n");
        return 2;
    }
    int services = (int)strtol(argv[2], NULL, 10), per = (int)strtol(argv[3], NULL, 10);
    int ports[64], n = 0;
    FILE *f = fopen(argv[1], "r");
    char name[128];
    int port;
    while (f && n < 64 && fscanf(f, "%127s %d", name, &port) == 2)
        if (strcmp(name, "control") != 0)
            ports[n++] = port;
    if (f)
        fclose(f);
    if (n == 0) {
        fprintf(stderr, "load: no agents in %s\n", argv[1]);
        return 1;
    }
    CURL *e[64];
    for (int i = 0; i < n; i++) {
        e[i] = curl_easy_init();
        curl_easy_setopt(e[i], CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(e[i], CURLOPT_WRITEFUNCTION, sink);
    }
    int k = 0;
    for (int s = 1; s <= services; s++) {
        for (int j = 1; j <= per; j++, k++) {
            int a = k % n;
            char url[256], body[512];
            if (verb) {
                if (j < from)
                    continue;
                snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/agent/check/%s/service:s%d-%d",
                         ports[a], verb, s, j);
                curl_easy_setopt(e[a], CURLOPT_URL, url);
                curl_easy_setopt(e[a], CURLOPT_POSTFIELDS, "");
                long code = 0;
                if (curl_easy_perform(e[a]) != CURLE_OK ||
                    (curl_easy_getinfo(e[a], CURLINFO_RESPONSE_CODE, &code), code != 200)) {
                    fprintf(stderr, "load: %s of s%d-%d failed (%ld)\n", verb, s, j, code);
                    return 1;
                }
                continue;
            }
            snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/agent/service/register", ports[a]);
            snprintf(body, sizeof body,
                     "{\"ID\":\"s%d-%d\",\"Name\":\"s%d\",\"Address\":\"127.0.%d.%d\",\"Port\":%d,"
                     "\"Check\":{\"TTL\":\"10h\",\"Status\":\"passing\"}}",
                     s, j, s, 1 + (s / 250), 1 + (s % 250), 20000 + j);
            curl_easy_setopt(e[a], CURLOPT_URL, url);
            curl_easy_setopt(e[a], CURLOPT_POSTFIELDS, body);
            long code = 0;
            if (curl_easy_perform(e[a]) != CURLE_OK ||
                (curl_easy_getinfo(e[a], CURLINFO_RESPONSE_CODE, &code), code != 200)) {
                fprintf(stderr, "load: registering s%d-%d failed (%ld)\n", s, j, code);
                return 1;
            }
        }
    }
    for (int i = 0; i < n; i++)
        curl_easy_cleanup(e[i]);
    printf("load: %d instances of %d services\n", k, services);
    return 0;
}
