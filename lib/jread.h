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

__attribute__((format(printf, 3, 4))) int jread_fail(struct jread *c, const char *path,
                                                     const char *fmt, ...);
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

/*
 * A section of settings as data: one struct jkey per key it may hold, and
 * jread_section walks an object against that table, so adding a setting is
 * one line. Unknown keys are refused first (as jread_keys does), then each
 * key present is read in the document's order.
 */
enum jkind {
    JK_STR,   /* a string; with values, one starting with one of them (else why) */
    JK_NESTR, /* a string that is not empty */
    JK_BOOL,
    JK_INT,     /* an integer within [min, max] */
    JK_DUR,     /* a duration; with why, within [min, max] ms (else why) */
    JK_NNDUR,   /* a duration, not negative; with why, within [min, max] ms */
    JK_ENUM,    /* one of values */
    JK_OBJ,     /* an object, not looked into */
    JK_SECTION, /* an object walked against sub */
    JK_FN,      /* check decides */
};

/*
 * Where a key's value lands once the document is valid (jread_store), and
 * so how it prints (jread_print): a field at byte offset off of the
 * caller's struct, and the default it takes when the key is absent. The
 * same table then checks, fills and prints a setting.
 */
enum jstore {
    JS_NONE,  /* not stored here (the caller reads it), not printed */
    JS_MS,    /* int64_t milliseconds (a duration), default def */
    JS_INT,   /* int, default def */
    JS_BOOL,  /* int 0/1, default def (JF_NOT: stores the negation) */
    JS_STR,   /* char *, a copy; default a copy of defs, or NULL */
    JS_ENUM,  /* int (or an enum): the position in values, default def */
    JS_GIVEN, /* JK_SECTION: int 1 when the section is present, else 0
                      and neither stored nor printed */
};

#define JF_SECRET 1u /* printed "<redacted>" when set */
#define JF_NOT 2u    /* JS_BOOL kept negated (ssl_verify -> insecure) */

struct jkey {
    const char *name;
    enum jkind kind;
    int64_t min, max;
    const char *why;
    const char *const *values;
    size_t n; /* of values, or of sub */
    const struct jkey *sub;
    int (*check)(struct jread *c, const cJSON *v, const char *path);
    enum jstore store;
    size_t off; /* of the field in the struct given to store/print */
    int64_t def;
    const char *defs;
    unsigned flags; /* JF_* */
    /* A key the caller keeps itself (JS_NONE) may print itself, in its
     * place in the table. */
    void (*print)(cJSON *out, const void *base);
};

int jread_section(struct jread *c, const cJSON *obj, const char *path, const struct jkey *keys,
                  size_t n);
/* Fills base's fields from obj (already checked by jread_section against
 * the same table), defaults for the keys absent; sections recurse with the
 * same base. -1 when out of memory (the strings stored so far stay, for the
 * caller's free). */
int jread_store(const cJSON *obj, const struct jkey *keys, size_t n, void *base);
/* Adds the stored settings to out in the table's order: durations as Go
 * prints them, secrets "<redacted>", unset strings null. */
void jread_print(cJSON *out, const struct jkey *keys, size_t n, const void *base);

#endif
