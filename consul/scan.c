/* The change detector's decoder of /v1/health/state answers; see scan.h. */
#include "consul/scan.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/decode.h"
#include "lib/jsonstr.h"

#define SCAN_MAX_DEPTH 64

struct cur {
    const char *p, *start, *end;
    int depth;
    const char *why; /* the first syntax error */
    const char *at;  /* and where it is */
    struct consul_state_scan *s;
};

static int bad(struct cur *c, const char *why)
{
    if (c->why == NULL) {
        c->why = why;
        c->at = c->p;
    }
    return -1;
}

static int bad_at(struct cur *c, const char *at, const char *why)
{
    c->p = at;
    return bad(c, why);
}

static void skip_ws(struct cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int is_digit(const struct cur *c, const char *q)
{
    return q < c->end && *q >= '0' && *q <= '9';
}

static int put(struct cur *c, const char *b, size_t n)
{
    struct consul_state_scan *s = c->s;
    if (n > s->arena_cap - s->used) {
        size_t cap = s->arena_cap ? s->arena_cap : 4096;
        while (cap - s->used < n)
            cap *= 2;
        char *a = realloc(s->arena, cap);
        if (a == NULL)
            return bad(c, "out of memory");
        s->arena = a;
        s->arena_cap = cap;
    }
    memcpy(s->arena + s->used, b, n);
    s->used += n;
    return 0;
}

static int hex4(const char *p, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char h = p[i];
        unsigned d = h >= '0' && h <= '9'   ? (unsigned)(h - '0')
                     : h >= 'a' && h <= 'f' ? (unsigned)(h - 'a' + 10)
                     : h >= 'A' && h <= 'F' ? (unsigned)(h - 'A' + 10)
                                            : 16u;
        if (d > 15)
            return -1;
        *v = *v << 4 | d;
    }
    return 0;
}

static size_t utf8(unsigned cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* One \u escape at c->p (past the "\u"), a surrogate pair in full. */
static int unicode_escape(struct cur *c, const char *esc, int keep)
{
    unsigned cp, lo;
    if (c->end - c->p < 4 || hex4(c->p, &cp) < 0)
        return bad_at(c, esc, "bad \\u escape in a string");
    c->p += 4;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return bad_at(c, esc, "unpaired surrogate in a string");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u' || hex4(c->p + 2, &lo) < 0 ||
            lo < 0xDC00 || lo > 0xDFFF)
            return bad_at(c, esc, "unpaired surrogate in a string");
        c->p += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (!keep)
        return 0;
    char o[4];
    size_t n = utf8(cp, o);
    return put(c, o, n);
}

/* The string at c->p (its opening quote). keep: its bytes, unescaped and
 * NUL-terminated, are appended to the arena at *off, *len long. Without
 * keep, *off is its raw bytes' offset in the body and *escaped tells
 * whether they hold an escape (NULLs allowed). */
static int scan_string(struct cur *c, int keep, size_t *off, size_t *len, int *escaped)
{
    static const char plain[] = "\"\\/bfnrt", real[] = "\"\\/\b\f\n\r\t";
    size_t from = c->s->used;
    const char *run = ++c->p;
    int esc = 0;
    for (;;) {
        c->p = json_plain_run(c->p, c->end);
        if (c->p >= c->end)
            return bad(c, "unterminated string");
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"')
            break;
        if (ch < 0x20)
            return bad(c, "control character in a string");
        if (ch != '\\') {
            c->p++;
            continue;
        }
        esc = 1;
        if (keep && put(c, run, (size_t)(c->p - run)) < 0)
            return -1;
        if (c->end - c->p < 2)
            return bad(c, "unterminated string");
        const char *at = c->p, *e = c->p[1] ? strchr(plain, c->p[1]) : NULL;
        c->p += 2;
        if (c->p[-1] == 'u') {
            if (unicode_escape(c, at, keep) < 0)
                return -1;
        } else if (e == NULL) {
            return bad_at(c, at, "bad escape in a string");
        } else if (keep && put(c, &real[e - plain], 1) < 0) {
            return -1;
        }
        if (keep)
            run = c->p;
    }
    if (keep && (put(c, run, (size_t)(c->p - run)) < 0 || put(c, "", 1) < 0))
        return -1;
    if (off) {
        *off = keep ? from : (size_t)(run - c->start);
        *len = keep ? c->s->used - from - 1 : (size_t)(c->p - run);
    }
    if (escaped)
        *escaped = esc;
    c->p++;
    return 0;
}

/* A number; *u its value when it is a non-negative integer below 2^64
 * (*is_u set), as ModifyIndex must be. */
static int scan_number(struct cur *c, uint64_t *u, int *is_u)
{
    const char *q = c->p;
    int neg = q < c->end && *q == '-', exact = 1;
    uint64_t v = 0;
    q += neg;
    if (!is_digit(c, q))
        return bad(c, "unexpected character");
    if (*q == '0') {
        q++;
    } else {
        for (; is_digit(c, q); q++) {
            unsigned d = (unsigned)(*q - '0');
            if (v > (UINT64_MAX - d) / 10)
                exact = 0;
            else
                v = v * 10 + d;
        }
    }
    if (q < c->end && *q == '.') {
        if (!is_digit(c, ++q))
            return bad_at(c, q, "bad number");
        while (is_digit(c, q))
            q++;
        exact = 0;
    }
    if (q < c->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < c->end && (*q == '+' || *q == '-'))
            q++;
        if (!is_digit(c, q))
            return bad_at(c, q, "bad number");
        while (is_digit(c, q))
            q++;
        exact = 0;
    }
    c->p = q;
    *u = v;
    *is_u = exact && !neg;
    return 0;
}

static int scan_value(struct cur *c, struct consul_state_check *want, int *got);

static int literal(struct cur *c, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return bad(c, "unexpected character");
    c->p += n;
    return 0;
}

/* The field of a check the detector keeps (1 Node, 2 ServiceName,
 * 3 ModifyIndex), 0 for the others. */
static int field_of(const char *k, size_t n)
{
    if (n == 4 && memcmp(k, "Node", 4) == 0)
        return 1;
    if (n == 11 && memcmp(k, "ServiceName", 11) == 0)
        return 2;
    if (n == 11 && memcmp(k, "ModifyIndex", 11) == 0)
        return 3;
    return 0;
}

/* The value of one kept field: a string (Node, ServiceName) or an integer
 * (ModifyIndex). Of duplicates the first counts, as cJSON's lookup finds
 * it; bit f of *got: taken, bit f + 4: seen. */
static int scan_field(struct cur *c, int f, struct consul_state_check *w, int *got)
{
    size_t off = 0, len = 0;
    skip_ws(c);
    if (*got & 1 << (f + 4))
        return scan_value(c, NULL, NULL); /* a duplicate: the first one counts */
    *got |= 1 << (f + 4);
    if (c->p < c->end && *c->p == '"' && f != 3) {
        if (scan_string(c, 1, &off, &len, NULL) < 0)
            return -1;
        if (len > CONSUL_DECODE_MAX_STR || memchr(c->s->arena + off, '\0', len)) {
            c->s->used = off;
            return 0; /* not taken: the check is reported as mistyped */
        }
        *got |= 1 << f;
        if (f == 1) {
            w->node_off = off;
            w->node_len = len;
        } else {
            w->service_off = off;
            w->service_len = len;
        }
        return 0;
    }
    if (f == 3 && c->p < c->end && (*c->p == '-' || is_digit(c, c->p))) {
        uint64_t v;
        int is_u;
        if (scan_number(c, &v, &is_u) < 0)
            return -1;
        if (is_u) {
            w->modify_index = v;
            *got |= 1 << f;
        }
        return 0;
    }
    return scan_value(c, NULL, NULL); /* of the wrong type: not taken */
}

/* After a member of an object or array: 1 when a ',' says another
 * follows, 0 at the closing bracket (consumed), -1 on anything else. */
static int next_member(struct cur *c, char close)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ',') {
        c->p++;
        return 1;
    }
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return 0;
    }
    if (c->p >= c->end)
        return bad(c, "unexpected end");
    return bad(c, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
}

static int scan_object(struct cur *c, struct consul_state_check *want, int *got)
{
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return 0;
    }
    for (;;) {
        size_t off, len;
        skip_ws(c);
        if (c->p >= c->end || *c->p != '"')
            return bad(c, c->p >= c->end ? "unexpected end" : "expected a key");
        const char *key = c->p;
        int escaped = 0, f = 0;
        if (scan_string(c, 0, &off, &len, &escaped) < 0)
            return -1;
        if (want && !escaped) {
            f = field_of(c->start + off, len);
        } else if (want) { /* a key spelled with escapes: compared unescaped */
            size_t mark = c->s->used;
            c->p = key;
            if (scan_string(c, 1, &off, &len, NULL) < 0)
                return -1;
            f = field_of(c->s->arena + off, len);
            c->s->used = mark;
        }
        skip_ws(c);
        if (c->p >= c->end || *c->p != ':')
            return bad(c, "expected ':'");
        c->p++;
        if ((f ? scan_field(c, f, want, got) : scan_value(c, NULL, NULL)) < 0)
            return -1;
        int more = next_member(c, '}');
        if (more <= 0)
            return more;
    }
}

static int scan_array(struct cur *c)
{
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        return 0;
    }
    for (;;) {
        if (scan_value(c, NULL, NULL) < 0)
            return -1;
        int more = next_member(c, ']');
        if (more <= 0)
            return more;
    }
}

/* Any value; an object's kept fields go to want when it is not NULL. */
static int scan_value(struct cur *c, struct consul_state_check *want, int *got)
{
    int r, is_u;
    uint64_t v;
    skip_ws(c);
    if (c->p >= c->end)
        return bad(c, "unexpected end");
    if (++c->depth > SCAN_MAX_DEPTH)
        return bad(c, "nested too deeply");
    switch (*c->p) {
    case '"':
        r = scan_string(c, 0, NULL, NULL, NULL);
        break;
    case '{':
        r = scan_object(c, want, got);
        break;
    case '[':
        r = scan_array(c);
        break;
    case 't':
        r = literal(c, "true");
        break;
    case 'f':
        r = literal(c, "false");
        break;
    case 'n':
        r = literal(c, "null");
        break;
    default:
        r = scan_number(c, &v, &is_u);
        break;
    }
    c->depth--;
    return r;
}

static int add_check(struct consul_state_scan *s, const struct consul_state_check *k)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        struct consul_state_check *e = realloc(s->e, cap * sizeof *e);
        if (e == NULL)
            return -1;
        s->e = e;
        s->cap = cap;
    }
    s->e[s->n++] = *k;
    return 0;
}

/* The elements of the root array, c->p past its '['. Sets *semantic to
 * the first element that is not a well-typed check (or -2: too many). */
static int scan_checks(struct cur *c, long *semantic)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        return 0;
    }
    for (;;) {
        struct consul_state_check k = {0};
        int got = 0;
        skip_ws(c);
        int is_obj = c->p < c->end && *c->p == '{';
        if (scan_value(c, is_obj ? &k : NULL, &got) < 0)
            return -1;
        if (*semantic == -1 && (got & 0xF) != 0xE)
            *semantic = (long)c->s->n;
        else if (*semantic == -1 && c->s->n >= CONSUL_DECODE_MAX_ITEMS * 4)
            *semantic = -2;
        else if (*semantic == -1 && add_check(c->s, &k) < 0)
            return bad(c, "out of memory");
        int more = next_member(c, ']');
        if (more <= 0)
            return more;
    }
}

int consul_scan_health_state(struct consul_state_scan *s, const char *body, size_t len, char *err,
                             size_t errlen)
{
    struct cur c = {body, body, body + (body ? len : 0), 0, NULL, NULL, s};
    long semantic = -1;
    int rc;
    s->n = 0;
    s->used = 0;
    skip_ws(&c);
    if (c.p < c.end && *c.p == '[') {
        c.p++;
        c.depth = 1;
        rc = scan_checks(&c, &semantic);
    } else {
        rc = scan_value(&c, NULL, NULL);
        semantic = -3;
    }
    skip_ws(&c);
    if (rc == 0 && c.p != c.end)
        rc = bad(&c, "data after the answer");
    if (body == NULL || len == 0 || rc < 0) {
        snprintf(err, errlen, "not valid JSON (byte %zu: %s)",
                 (size_t)((c.why ? c.at : c.p) - c.start), c.why ? c.why : "empty answer");
    } else if (semantic == -3) {
        snprintf(err, errlen, "expected an array");
    } else if (semantic == -2) {
        snprintf(err, errlen, "too many checks");
    } else if (semantic >= 0) {
        snprintf(err, errlen, "check %ld: missing or mistyped Node/ServiceName/ModifyIndex",
                 semantic);
    } else {
        for (size_t i = 0; i < s->n; i++) {
            s->e[i].node = s->arena + s->e[i].node_off;
            s->e[i].service = s->arena + s->e[i].service_off;
        }
        return 0;
    }
    s->n = 0;
    return -1;
}

void consul_state_scan_free(struct consul_state_scan *s)
{
    free(s->e);
    free(s->arena);
    memset(s, 0, sizeof *s);
}
