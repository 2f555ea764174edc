/* A map from byte strings to 64-bit values (open addressing, linear
 * probing), for lookups by name on hot paths: the change detector finds a
 * check's service and node among thousands without a string compare per
 * candidate. Keys are not copied: each must stay valid while it is in the
 * map. Cleared, a map keeps its memory for the next fill. */
#ifndef LIB_STRMAP_H
#define LIB_STRMAP_H

#include <stddef.h>
#include <stdint.h>

struct strmap_slot {
    const char *key; /* NULL: empty */
    size_t len;
    uint32_t hash;
    uint64_t value;
};

struct strmap {
    struct strmap_slot *slots;
    size_t cap, n; /* cap: 0 or a power of two, kept at least twice n */
};

/* The value of key, NULL when absent. */
uint64_t *strmap_get(const struct strmap *m, const char *key, size_t len);
/* The value of key, inserted with value when absent (*added then 1); NULL
 * when out of memory. The pointer is valid until the next insertion. */
uint64_t *strmap_put(struct strmap *m, const char *key, size_t len, uint64_t value, int *added);
void strmap_clear(struct strmap *m);
void strmap_free(struct strmap *m);

#endif
