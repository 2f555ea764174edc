/*
 * ?filter for consul-double: the part of Consul's go-bexpr language that
 * tests need, evaluated over the JSON the endpoint answers (so selectors are
 * the answer's own field names: Service, Tags, Meta.version, Checks.Status).
 *
 *   expr  := term ("or" term)*          term := factor ("and" factor)*
 *   factor:= "not" factor | "(" expr ")" | match
 *   match := Selector ("==" | "!=") Value
 *          | Selector ["not"] ("contains" | "matches") Value
 *          | Value ["not"] "in" Selector
 *          | Selector "is" ["not"] "empty"
 *   Value := "string" | `string` | number | true | false
 *
 * A selector that walks through an array matches when any element does. A
 * syntax error is reported the way Consul words it (the caller adds
 * "Failed to create boolean expression evaluator: ").
 */
#include <ctype.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tests/doubles/consul/double.h"

#define FILTER_MAX_SEGS 8

enum fnode_kind { F_AND, F_OR, F_NOT, F_EQ, F_CONTAINS, F_MATCHES, F_EMPTY };

struct fnode {
    enum fnode_kind kind;
    struct fnode *a, *b;
    char segs[FILTER_MAX_SEGS][128];
    int n_segs;
    char value[512];
    regex_t re;
    int has_re;
};

struct dfilter {
    struct fnode *root;
};

struct parser {
    const char *text, *p;
    char *err;
    size_t errlen;
    int failed;
};

static void fnode_free(struct fnode *n)
{
    if (n == NULL)
        return;
    fnode_free(n->a);
    fnode_free(n->b);
    if (n->has_re)
        regfree(&n->re);
    free(n);
}

static struct fnode *fnode_new(enum fnode_kind k)
{
    struct fnode *n = calloc(1, sizeof *n);
    if (n)
        n->kind = k;
    return n;
}

static void fail_at(struct parser *ps)
{
    if (ps->failed)
        return;
    ps->failed = 1;
    int off = (int)(ps->p - ps->text);
    snprintf(ps->err, ps->errlen,
             "1:%d (%d): no match found, expected: a selector, a value, "
             "\"(\", \"not\" or an operator",
             off + 1, off);
}

static void skip_ws(struct parser *ps)
{
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\r' || *ps->p == '\n')
        ps->p++;
}

static int is_word_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '/' || c == '-' || c == '.';
}

/* The next word, not consumed, if it equals kw as a whole word. */
static int peek_kw(struct parser *ps, const char *kw)
{
    skip_ws(ps);
    size_t n = strlen(kw);
    return strncmp(ps->p, kw, n) == 0 && !is_word_char(ps->p[n]);
}

static int take_kw(struct parser *ps, const char *kw)
{
    if (!peek_kw(ps, kw))
        return 0;
    ps->p += strlen(kw);
    return 1;
}

/* A value: quoted string, number, true or false. 0 when there is none. */
static int take_value(struct parser *ps, char *out, size_t len)
{
    skip_ws(ps);
    char q = *ps->p;
    size_t n = 0;
    if (q == '"' || q == '`') {
        const char *s = ps->p + 1;
        while (*s && *s != q) {
            if (q == '"' && *s == '\\' && s[1])
                s++;
            if (n + 1 < len)
                out[n++] = *s;
            s++;
        }
        if (*s != q)
            return 0;
        out[n] = '\0';
        ps->p = s + 1;
        return 1;
    }
    const char *s = ps->p;
    if (*s == '-' || isdigit((unsigned char)*s)) {
        while (*s == '-' || *s == '.' || isdigit((unsigned char)*s))
            s++;
    } else if (peek_kw(ps, "true")) {
        s += 4;
    } else if (peek_kw(ps, "false")) {
        s += 5;
    } else {
        return 0;
    }
    if (is_word_char(*s) && !isdigit((unsigned char)*s))
        return 0;
    snprintf(out, len, "%.*s", (int)(s - ps->p), ps->p);
    ps->p = s;
    return 1;
}

static int take_selector(struct parser *ps, struct fnode *n)
{
    skip_ws(ps);
    const char *s = ps->p;
    if (!isalpha((unsigned char)*s) && *s != '_')
        return 0;
    while (is_word_char(*s))
        s++;
    char word[512];
    snprintf(word, sizeof word, "%.*s", (int)(s - ps->p), ps->p);
    static const char *const reserved[] = {"and",     "or", "not",   "in",   "contains",
                                           "matches", "is", "empty", "true", "false"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strcmp(word, reserved[i]) == 0)
            return 0;
    n->n_segs = 0;
    for (char *seg = word, *dot; seg; seg = dot) {
        dot = strchr(seg, '.');
        if (dot)
            *dot++ = '\0';
        if (*seg == '\0' || n->n_segs == FILTER_MAX_SEGS)
            return 0;
        snprintf(n->segs[n->n_segs++], sizeof n->segs[0], "%s", seg);
    }
    ps->p = s;
    return 1;
}

static struct fnode *parse_expr(struct parser *ps);

static struct fnode *negate(struct fnode *n)
{
    struct fnode *x = fnode_new(F_NOT);
    if (x == NULL) {
        fnode_free(n);
        return NULL;
    }
    x->a = n;
    return x;
}

static struct fnode *parse_match(struct parser *ps)
{
    struct fnode *n = fnode_new(F_EQ);
    if (n == NULL)
        return NULL;
    int neg = 0;
    if (take_value(ps, n->value, sizeof n->value)) {
        /* Value ["not"] "in" Selector */
        neg = take_kw(ps, "not");
        if (!take_kw(ps, "in") || !take_selector(ps, n))
            goto bad;
        n->kind = F_CONTAINS;
        return neg ? negate(n) : n;
    }
    if (!take_selector(ps, n))
        goto bad;
    skip_ws(ps);
    if (strncmp(ps->p, "==", 2) == 0 || strncmp(ps->p, "!=", 2) == 0) {
        neg = ps->p[0] == '!';
        ps->p += 2;
        if (!take_value(ps, n->value, sizeof n->value))
            goto bad;
        return neg ? negate(n) : n;
    }
    if (take_kw(ps, "is")) {
        neg = take_kw(ps, "not");
        if (!take_kw(ps, "empty"))
            goto bad;
        n->kind = F_EMPTY;
        return neg ? negate(n) : n;
    }
    neg = take_kw(ps, "not");
    if (take_kw(ps, "contains"))
        n->kind = F_CONTAINS;
    else if (take_kw(ps, "matches"))
        n->kind = F_MATCHES;
    else
        goto bad;
    if (!take_value(ps, n->value, sizeof n->value))
        goto bad;
    if (n->kind == F_MATCHES) {
        if (regcomp(&n->re, n->value, REG_EXTENDED | REG_NOSUB) != 0)
            goto bad;
        n->has_re = 1;
    }
    return neg ? negate(n) : n;
bad:
    fail_at(ps);
    fnode_free(n);
    return NULL;
}

static struct fnode *parse_factor(struct parser *ps)
{
    if (take_kw(ps, "not")) {
        struct fnode *x = parse_factor(ps);
        return x ? negate(x) : NULL;
    }
    skip_ws(ps);
    if (*ps->p == '(') {
        ps->p++;
        struct fnode *x = parse_expr(ps);
        skip_ws(ps);
        if (x == NULL || *ps->p != ')') {
            fail_at(ps);
            fnode_free(x);
            return NULL;
        }
        ps->p++;
        return x;
    }
    return parse_match(ps);
}

static struct fnode *parse_binary(struct parser *ps, const char *kw, enum fnode_kind kind,
                                  struct fnode *(*next)(struct parser *))
{
    struct fnode *left = next(ps);
    while (left && take_kw(ps, kw)) {
        struct fnode *right = next(ps), *x = right ? fnode_new(kind) : NULL;
        if (x == NULL) {
            fnode_free(left);
            fnode_free(right);
            return NULL;
        }
        x->a = left;
        x->b = right;
        left = x;
    }
    return left;
}

static struct fnode *parse_term(struct parser *ps)
{
    return parse_binary(ps, "and", F_AND, parse_factor);
}

static struct fnode *parse_expr(struct parser *ps)
{
    return parse_binary(ps, "or", F_OR, parse_term);
}

struct dfilter *dfilter_new(const char *expr, char *err, size_t errlen)
{
    struct parser ps = {expr, expr, err, errlen, 0};
    struct fnode *root = parse_expr(&ps);
    skip_ws(&ps);
    if (root && *ps.p) {
        fail_at(&ps);
        fnode_free(root);
        root = NULL;
    }
    if (root == NULL) {
        if (!ps.failed)
            snprintf(err, errlen, "out of memory");
        return NULL;
    }
    struct dfilter *f = calloc(1, sizeof *f);
    if (f == NULL) {
        fnode_free(root);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    f->root = root;
    return f;
}

void dfilter_free(struct dfilter *f)
{
    if (f == NULL)
        return;
    fnode_free(f->root);
    free(f);
}

/* ---- evaluation ------------------------------------------------------------ */

static int scalar_equals(const cJSON *v, const char *text)
{
    if (cJSON_IsString(v))
        return strcmp(v->valuestring, text) == 0;
    if (cJSON_IsNumber(v)) {
        char *end;
        double d = strtod(text, &end);
        return *text && *end == '\0' && d == v->valuedouble;
    }
    if (cJSON_IsBool(v))
        return strcmp(text, cJSON_IsTrue(v) ? "true" : "false") == 0;
    return 0;
}

static int leaf(const struct fnode *n, const cJSON *v)
{
    switch (n->kind) {
    case F_EQ:
        return scalar_equals(v, n->value);
    case F_CONTAINS:
        if (cJSON_IsString(v))
            return strstr(v->valuestring, n->value) != NULL;
        if (cJSON_IsArray(v)) {
            const cJSON *e;
            cJSON_ArrayForEach(e, v)
                if (scalar_equals(e, n->value))
                    return 1;
            return 0;
        }
        if (cJSON_IsObject(v))
            return cJSON_GetObjectItemCaseSensitive(v, n->value) != NULL;
        return 0;
    case F_MATCHES:
        return cJSON_IsString(v) && regexec(&n->re, v->valuestring, 0, NULL, 0) == 0;
    case F_EMPTY:
        return v == NULL || cJSON_IsNull(v) || (cJSON_IsString(v) && v->valuestring[0] == '\0') ||
               ((cJSON_IsArray(v) || cJSON_IsObject(v)) && v->child == NULL);
    default:
        return 0;
    }
}

static const cJSON *field(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return v ? v : cJSON_GetObjectItem(o, name);
}

/* Follows the selector from segment i; through an array, any element. */
static int walk(const struct fnode *n, const cJSON *v, int i)
{
    if (i == n->n_segs)
        return leaf(n, v);
    if (cJSON_IsArray(v)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, v)
            if (walk(n, e, i))
                return 1;
        return 0;
    }
    if (!cJSON_IsObject(v))
        return n->kind == F_EMPTY;
    const cJSON *child = field(v, n->segs[i]);
    if (child == NULL)
        return n->kind == F_EMPTY;
    return walk(n, child, i + 1);
}

static int eval(const struct fnode *n, const cJSON *item)
{
    switch (n->kind) {
    case F_AND:
        return eval(n->a, item) && eval(n->b, item);
    case F_OR:
        return eval(n->a, item) || eval(n->b, item);
    case F_NOT:
        return !eval(n->a, item);
    default:
        return walk(n, item, 0);
    }
}

void dfilter_apply(const struct dfilter *f, cJSON *coll)
{
    if (f == NULL || !(cJSON_IsArray(coll) || cJSON_IsObject(coll)))
        return;
    cJSON *e = coll->child;
    while (e) {
        cJSON *next = e->next;
        if (!eval(f->root, e))
            cJSON_Delete(cJSON_DetachItemViaPointer(coll, e));
        e = next;
    }
}
