/* Typed reads of a parsed JSON document (a configuration file, a service
 * definition): each checks one value's type and bounds and, on failure,
 * writes one line naming the file, the key path and the reason
 * ("sidecar.json: watch.wait: invalid duration \"5x\""). Only the first
 * failure is kept; all return -1 on failure, 0 otherwise. */
#ifndef LIB_JREAD_H
#define LIB_JREAD_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* An error context: the file, and where the first error goes. */
struct jread {
    const char *file;
    char *err;
    size_t errlen;
    int failed;
};

__attribute__((format(printf, 3, 4)))
int jread_fail(struct jread *c, const char *path, const char *fmt, ...);
/* out = base.key (or key at the top). */
void jread_join(char *out, size_t len, const char *base, const char *key);
/* "a string", "a number", ... for error messages. */
const char *jread_type_name(const cJSON *v);

int jread_str(struct jread *c, const cJSON *v, const char *path, const char **out);
int jread_bool(struct jread *c, const cJSON *v, const char *path, int *out);
/* An integer within [min, max]. */
int jread_int(struct jread *c, const cJSON *v, const char *path, long min, long max, long *out);
/* A Go duration string, or a number of nanoseconds (as Consul takes it), in ms. */
int jread_dur(struct jread *c, const cJSON *v, const char *path, int64_t *out);
int jread_nonneg_dur(struct jread *c, const cJSON *v, const char *path, int64_t *out);
/* One of allowed[0..n): *out its position. */
int jread_enum(struct jread *c, const cJSON *v, const char *path, const char *const *allowed,
               size_t n, int *out);
/* Every key of obj is in allowed (exact match). */
int jread_keys(struct jread *c, const cJSON *obj, const char *path, const char *const *allowed,
               size_t n);
int jread_obj(struct jread *c, const cJSON *v, const char *path);

#endif
