/* Typed reads of a parsed JSON document; see jread.h. */
#include "lib/jread.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/dur.h"

int jread_fail(struct jread *c, const char *path, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (!c->failed) {
        if (path && *path)
            snprintf(c->err, c->errlen, "%s: %s: %s", c->file, path, why);
        else
            snprintf(c->err, c->errlen, "%s: %s", c->file, why);
    }
    c->failed = 1;
    return -1;
}

void jread_join(char *out, size_t len, const char *base, const char *key)
{
    if (base && *base)
        snprintf(out, len, "%.300s.%.150s", base, key);
    else
        snprintf(out, len, "%.150s", key);
}

const char *jread_type_name(const cJSON *v)
{
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsArray(v))
        return "an array";
    if (cJSON_IsObject(v))
        return "an object";
    return "null";
}

int jread_str(struct jread *c, const cJSON *v, const char *path, const char **out)
{
    if (!cJSON_IsString(v))
        return jread_fail(c, path, "expected a string, got %s", jread_type_name(v));
    *out = v->valuestring;
    return 0;
}

int jread_bool(struct jread *c, const cJSON *v, const char *path, int *out)
{
    if (!cJSON_IsBool(v))
        return jread_fail(c, path, "expected true or false, got %s", jread_type_name(v));
    *out = cJSON_IsTrue(v);
    return 0;
}

int jread_int(struct jread *c, const cJSON *v, const char *path, long min, long max, long *out)
{
    if (!cJSON_IsNumber(v))
        return jread_fail(c, path, "expected an integer, got %s", jread_type_name(v));
    /* Range first: a double past what a long holds (1e300) must never be
     * converted to one. */
    double d = v->valuedouble;
    if (!(d >= (double)min && d <= (double)max))
        return jread_fail(c, path, "must be between %ld and %ld, got %.0f", min, max, d);
    if (d != (double)(long)d)
        return jread_fail(c, path, "expected an integer, got %s", jread_type_name(v));
    *out = (long)d;
    return 0;
}

/* A Go duration string, or a number of nanoseconds (as Consul takes it). */
int jread_dur(struct jread *c, const cJSON *v, const char *path, int64_t *out)
{
    if (cJSON_IsNumber(v)) {
        /* Nanoseconds; past about 292 years a duration is no longer one. */
        if (!(v->valuedouble > -9.2e18 && v->valuedouble < 9.2e18))
            return jread_fail(c, path, "duration out of range");
        *out = (int64_t)(v->valuedouble / 1e6);
        if (*out == 0 && v->valuedouble > 0)
            *out = 1;
        return 0;
    }
    if (!cJSON_IsString(v))
        return jread_fail(c, path, "expected a duration such as \"10s\", got %s",
                          jread_type_name(v));
    if (dur_parse_ms(v->valuestring, out) < 0)
        return jread_fail(c, path, "invalid duration \"%.64s\"", v->valuestring);
    return 0;
}

int jread_nonneg_dur(struct jread *c, const cJSON *v, const char *path, int64_t *out)
{
    if (jread_dur(c, v, path, out) < 0)
        return -1;
    if (*out < 0)
        return jread_fail(c, path, "must not be negative");
    return 0;
}

int jread_enum(struct jread *c, const cJSON *v, const char *path, const char *const *allowed,
               size_t n, int *out)
{
    const char *s = "";
    if (jread_str(c, v, path, &s) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, allowed[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    }
    char list[256] = "";
    size_t l = 0;
    for (size_t i = 0; i < n; i++)
        l += (size_t)snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", allowed[i]);
    return jread_fail(c, path, "must be one of %s, got \"%.64s\"", list, s);
}

/* Every key of obj must be in allowed (exact match). */
int jread_keys(struct jread *c, const cJSON *obj, const char *path, const char *const *allowed,
               size_t n)
{
    const cJSON *k;
    cJSON_ArrayForEach(k, obj) {
        size_t i;
        for (i = 0; i < n; i++)
            if (strcmp(k->string, allowed[i]) == 0)
                break;
        if (i == n)
            return jread_fail(c, path, "unknown key \"%.64s\"", k->string);
    }
    return 0;
}

int jread_obj(struct jread *c, const cJSON *v, const char *path)
{
    if (!cJSON_IsObject(v))
        return jread_fail(c, path, "expected an object, got %s", jread_type_name(v));
    return 0;
}

static const struct jkey *jkey_find(const struct jkey *keys, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

static int has_prefix(const char *s, const char *const *prefixes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strncmp(s, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    return 0;
}

/* One value against its key's definition. */
static int jread_key(struct jread *c, const struct jkey *k, const cJSON *v, const char *path)
{
    const char *sv = "";
    int iv;
    long lv;
    int64_t dv = 0;
    switch (k->kind) {
    case JK_STR:
    case JK_NESTR:
        if (jread_str(c, v, path, &sv) < 0)
            return -1;
        if (k->kind == JK_NESTR && sv[0] == '\0')
            return jread_fail(c, path, "must not be empty");
        if (k->values && !has_prefix(sv, k->values, k->n))
            return jread_fail(c, path, "%s, got \"%.64s\"", k->why, sv);
        return 0;
    case JK_BOOL:
        return jread_bool(c, v, path, &iv);
    case JK_INT:
        return jread_int(c, v, path, (long)k->min, (long)k->max, &lv);
    case JK_DUR:
    case JK_NNDUR:
        if ((k->kind == JK_DUR ? jread_dur : jread_nonneg_dur)(c, v, path, &dv) < 0)
            return -1;
        if (k->why && (dv < k->min || dv > k->max))
            return jread_fail(c, path, "%s", k->why);
        return 0;
    case JK_ENUM:
        return jread_enum(c, v, path, k->values, k->n, &iv);
    case JK_OBJ:
        return jread_obj(c, v, path);
    case JK_SECTION:
        return jread_section(c, v, path, k->sub, k->n);
    case JK_FN:
        return k->check(c, v, path);
    }
    return 0;
}

int jread_section(struct jread *c, const cJSON *obj, const char *path, const struct jkey *keys,
                  size_t n)
{
    const cJSON *v;
    if (path[0] && jread_obj(c, obj, path) < 0)
        return -1;
    cJSON_ArrayForEach(v, obj) {
        if (jkey_find(keys, n, v->string) == NULL)
            return jread_fail(c, path, "unknown key \"%.64s\"", v->string);
    }
    cJSON_ArrayForEach(v, obj) {
        char kp[512];
        jread_join(kp, sizeof kp, path, v->string);
        if (jread_key(c, jkey_find(keys, n, v->string), v, kp) < 0)
            return -1;
    }
    return 0;
}

/* ---- storing and printing what a table describes ---- */

static void *field(void *base, size_t off)
{
    return (char *)base + off;
}

static const void *cfield(const void *base, size_t off)
{
    return (const char *)base + off;
}

/* One key's value (v, or its default when NULL) into its field. */
static int store_one(const struct jkey *k, const cJSON *v, void *base)
{
    char e[64];
    struct jread quiet = {"", e, sizeof e, 0};
    switch (k->store) {
    case JS_MS: {
        int64_t ms = k->def;
        if (v)
            jread_dur(&quiet, v, "", &ms);
        *(int64_t *)field(base, k->off) = ms;
        return 0;
    }
    case JS_INT:
        *(int *)field(base, k->off) = cJSON_IsNumber(v) ? v->valueint : (int)k->def;
        return 0;
    case JS_BOOL: {
        int b = v ? cJSON_IsTrue(v) : k->def != 0;
        *(int *)field(base, k->off) = (k->flags & JF_NOT) ? !b : b;
        return 0;
    }
    case JS_STR: {
        const char *str = cJSON_IsString(v) ? v->valuestring : k->defs;
        char **dst = field(base, k->off);
        free(*dst);
        *dst = str ? strdup(str) : NULL;
        return str && *dst == NULL ? -1 : 0;
    }
    case JS_ENUM: {
        int pos = (int)k->def;
        if (cJSON_IsString(v))
            for (size_t i = 0; i < k->n; i++)
                if (strcmp(v->valuestring, k->values[i]) == 0)
                    pos = (int)i;
        *(int *)field(base, k->off) = pos;
        return 0;
    }
    default:
        return 0;
    }
}

int jread_store(const cJSON *obj, const struct jkey *keys, size_t n, void *base)
{
    for (size_t i = 0; i < n; i++) {
        const struct jkey *k = &keys[i];
        const cJSON *v =
            cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, k->name) : NULL;
        if (k->kind == JK_SECTION) {
            if (k->store == JS_GIVEN) {
                *(int *)field(base, k->off) = v != NULL;
                if (v == NULL)
                    continue;
            }
            if (jread_store(v, k->sub, k->n, base) < 0)
                return -1;
            continue;
        }
        if (store_one(k, v, base) < 0)
            return -1;
    }
    return 0;
}

static void print_one(cJSON *out, const struct jkey *k, const void *base)
{
    char b[32];
    switch (k->store) {
    case JS_MS:
        cJSON_AddStringToObject(out, k->name,
                                dur_format_ms(*(const int64_t *)cfield(base, k->off), b, sizeof b));
        return;
    case JS_INT:
        cJSON_AddNumberToObject(out, k->name, *(const int *)cfield(base, k->off));
        return;
    case JS_BOOL: {
        int v = *(const int *)cfield(base, k->off);
        cJSON_AddBoolToObject(out, k->name, (k->flags & JF_NOT) ? !v : v);
        return;
    }
    case JS_STR: {
        const char *v = *(char *const *)cfield(base, k->off);
        if (v == NULL)
            cJSON_AddNullToObject(out, k->name);
        else
            cJSON_AddStringToObject(out, k->name, (k->flags & JF_SECRET) ? "<redacted>" : v);
        return;
    }
    case JS_ENUM: {
        int pos = *(const int *)cfield(base, k->off);
        cJSON_AddStringToObject(out, k->name,
                                pos >= 0 && (size_t)pos < k->n ? k->values[pos] : "?");
        return;
    }
    default:
        if (k->print)
            k->print(out, base);
        return;
    }
}

void jread_print(cJSON *out, const struct jkey *keys, size_t n, const void *base)
{
    for (size_t i = 0; i < n; i++) {
        const struct jkey *k = &keys[i];
        if (k->kind != JK_SECTION) {
            print_one(out, k, base);
            continue;
        }
        if (k->store == JS_GIVEN && !*(const int *)cfield(base, k->off))
            continue;
        cJSON *sub = cJSON_GetObjectItemCaseSensitive(out, k->name);
        if (sub == NULL)
            sub = cJSON_AddObjectToObject(out, k->name);
        jread_print(sub, k->sub, k->n, base);
    }
}
