/* Helpers shared by every proxy driver; see proxy.h. */
#include "proxy/proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void proxy_target_set_free(struct proxy_target_set *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->items[i].host);
    free(s->items);
    s->items = NULL;
    s->n = 0;
}

int proxy_target_set_copy(struct proxy_target_set *dst, const struct proxy_target_set *src)
{
    dst->items = NULL;
    dst->n = 0;
    if (src->n == 0)
        return 0;
    dst->items = calloc(src->n, sizeof *dst->items);
    if (dst->items == NULL)
        return -1;
    for (size_t i = 0; i < src->n; i++) {
        dst->items[i] = src->items[i];
        dst->items[i].host = strdup(src->items[i].host);
        if (dst->items[i].host == NULL) {
            dst->n = i;
            proxy_target_set_free(dst);
            return -1;
        }
    }
    dst->n = src->n;
    return 0;
}

const char *proxy_target_key(const struct proxy_target *t, char *out, size_t len)
{
    if (strchr(t->host, ':'))
        snprintf(out, len, "[%s]:%d", t->host, t->port);
    else
        snprintf(out, len, "%s:%d", t->host, t->port);
    return out;
}
