/* String-keyed map; see strmap.h. */
#include "lib/strmap.h"

#include <stdlib.h>
#include <string.h>

static uint32_t hash_of(const char *k, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)k[i];
        h *= 16777619u;
    }
    return h;
}

static struct strmap_slot *find(const struct strmap *m, const char *key, size_t len, uint32_t h)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct strmap_slot *s = &m->slots[i];
        if (s->key == NULL || (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0))
            return s;
    }
}

uint64_t *strmap_get(const struct strmap *m, const char *key, size_t len)
{
    if (m->n == 0)
        return NULL;
    struct strmap_slot *s = find(m, key, len, hash_of(key, len));
    return s->key ? &s->value : NULL;
}

static int grow(struct strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    struct strmap_slot *old = m->slots, *slots = calloc(cap, sizeof *slots);
    if (slots == NULL)
        return -1;
    size_t old_cap = m->cap;
    m->slots = slots;
    m->cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].key)
            *find(m, old[i].key, old[i].len, old[i].hash) = old[i];
    free(old);
    return 0;
}

uint64_t *strmap_put(struct strmap *m, const char *key, size_t len, uint64_t value, int *added)
{
    uint32_t h = hash_of(key, len);
    *added = 0;
    if ((m->n + 1) * 2 > m->cap && grow(m) < 0)
        return NULL;
    struct strmap_slot *s = find(m, key, len, h);
    if (s->key == NULL) {
        *s = (struct strmap_slot){key, len, h, value};
        m->n++;
        *added = 1;
    }
    return &s->value;
}

void strmap_clear(struct strmap *m)
{
    if (m->n)
        memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->n = 0;
}

void strmap_free(struct strmap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->n = 0;
}
