/* Helpers shared by every proxy driver; see proxy.h. */
#include "proxy/proxy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void proxy_result_error(struct proxy_op_result *r, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    free(r->error);
    r->error = strdup(text); /* NULL when out of memory: the op still failed */
}

void proxy_results_free(struct proxy_op_result *r, size_t n)
{
    for (size_t i = 0; r && i < n; i++)
        free(r[i].error);
    free(r);
}

void proxy_target_set_free(struct proxy_target_set *s)
{
    if (s == NULL)
        return;
    if (s->arena)
        free(s->arena);
    else
        for (size_t i = 0; i < s->n; i++)
            free(s->items[i].host);
    free(s->items);
    s->items = NULL;
    s->n = 0;
    s->arena = NULL;
}

int proxy_target_set_copy(struct proxy_target_set *dst, const struct proxy_target_set *src)
{
    *dst = (struct proxy_target_set){0};
    if (src->n == 0)
        return 0;
    size_t bytes = 0;
    for (size_t i = 0; i < src->n; i++)
        bytes += strlen(src->items[i].host) + 1;
    dst->items = calloc(src->n, sizeof *dst->items);
    dst->arena = malloc(bytes);
    if (dst->items == NULL || dst->arena == NULL) {
        free(dst->items);
        free(dst->arena);
        *dst = (struct proxy_target_set){0};
        return -1;
    }
    char *p = dst->arena;
    for (size_t i = 0; i < src->n; i++) {
        size_t len = strlen(src->items[i].host) + 1;
        dst->items[i] = src->items[i];
        dst->items[i].host = memcpy(p, src->items[i].host, len);
        p += len;
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
