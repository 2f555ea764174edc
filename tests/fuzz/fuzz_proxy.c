/* Fuzz target: the proxy reply parsers (Kong targets pages and error bodies,
 * HAProxy `show servers state` and `show stat`, the nginx file read back). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "proxy/haproxy.h"
#include "proxy/kong.h"
#include "proxy/nginx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char err[256], next[512], desc[400];
    struct proxy_target_set set = {0};
    if (kong_parse_targets_page(text, size, KONG_DEFAULT_TAG, &set, next, sizeof next, err,
                                sizeof err) == 0)
        proxy_target_set_free(&set);
    proxy_target_set_free(&set);
    kong_describe_error(500, text, desc, sizeof desc);
    if (haproxy_parse_servers_state(text, HAPROXY_SERVER_PREFIX, &set, err, sizeof err) == 0)
        proxy_target_set_free(&set);
    (void)haproxy_parse_stat_sessions(text, "cs-127.0.0.1:9");
    if (nginx_parse(text, &set, err, sizeof err) == 0)
        proxy_target_set_free(&set);
    free(text);
    return 0;
}
