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

/* A copy's block: its reference count, then the items, then the hosts. */
struct proxy_set_block {
    size_t refs;
    struct proxy_target items[];
};

void proxy_target_set_free(struct proxy_target_set *s)
{
    if (s == NULL)
        return;
    if (s->block) {
        if (--s->block->refs == 0)
            free(s->block);
    } else {
        for (size_t i = 0; i < s->n; i++)
            free(s->items[i].host);
        free(s->items);
    }
    *s = (struct proxy_target_set){0};
}

int proxy_target_set_copy(struct proxy_target_set *dst, const struct proxy_target_set *src)
{
    *dst = (struct proxy_target_set){0};
    if (src->n == 0)
        return 0;
    size_t bytes = sizeof(struct proxy_set_block) + src->n * sizeof(struct proxy_target);
    for (size_t i = 0; i < src->n; i++)
        bytes += strlen(src->items[i].host) + 1;
    struct proxy_set_block *b = malloc(bytes);
    if (b == NULL)
        return -1;
    b->refs = 1;
    char *p = (char *)(b->items + src->n);
    for (size_t i = 0; i < src->n; i++) {
        size_t len = strlen(src->items[i].host) + 1;
        b->items[i] = src->items[i];
        b->items[i].host = memcpy(p, src->items[i].host, len);
        p += len;
    }
    dst->items = b->items;
    dst->n = src->n;
    dst->block = b;
    return 0;
}

int proxy_target_set_share(struct proxy_target_set *dst, const struct proxy_target_set *src)
{
    if (src->block == NULL)
        return proxy_target_set_copy(dst, src);
    src->block->refs++;
    *dst = *src;
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
