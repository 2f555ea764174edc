/* A scoped HCL reader; see hcl.h. */
#include "lib/hcl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HCL_MAX_DEPTH 64

struct hp {
    const char *start, *cur, *end;
    int depth;
    char *err;
    size_t errlen;
    int failed;
};

__attribute__((format(printf, 3, 4))) static void *fail(struct hp *p, const char *at,
                                                        const char *fmt, ...)
{
    char why[300];
    va_list ap;
    if (p->failed)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    int line = 1, col = 1;
    for (const char *c = p->start; c < at && c < p->end; c++) {
        if (*c == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    snprintf(p->err, p->errlen, "line %d, column %d: %s", line, col, why);
    p->failed = 1;
    return NULL;
}

/* k as an error message may show it: at most 64 bytes, control characters
 * as '?', so that the message stays one line. */
static const char *shown(const char *k, char out[65])
{
    size_t n = 0;
    for (; n < 64 && k[n]; n++)
        out[n] = (unsigned char)k[n] < 0x20 || k[n] == 0x7f ? '?' : k[n];
    out[n] = '\0';
    return out;
}

static int at_end(const struct hp *p)
{
    return p->cur >= p->end;
}

static int peek(const struct hp *p, size_t ahead)
{
    return p->cur + ahead < p->end ? (unsigned char)p->cur[ahead] : -1;
}

/* Skips blanks and comments; newlines too when lines is set. Returns 1 if
 * a newline was skipped, -1 on an unterminated comment. */
static int skip(struct hp *p, int lines)
{
    int newline = 0;
    while (!at_end(p)) {
        int c = peek(p, 0);
        if (c == ' ' || c == '\t' || c == '\r') {
            p->cur++;
        } else if (c == '\n') {
            if (!lines)
                return newline;
            newline = 1;
            p->cur++;
        } else if (c == '#' || (c == '/' && peek(p, 1) == '/')) {
            while (!at_end(p) && *p->cur != '\n')
                p->cur++;
        } else if (c == '/' && peek(p, 1) == '*') {
            const char *open = p->cur;
            p->cur += 2;
            while (!at_end(p) && !(peek(p, 0) == '*' && peek(p, 1) == '/')) {
                newline |= *p->cur == '\n';
                p->cur++;
            }
            if (at_end(p)) {
                fail(p, open, "unterminated /* comment");
                return -1;
            }
            p->cur += 2;
        } else {
            break;
        }
    }
    return newline;
}

static int ident_start(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int ident_char(int c)
{
    return ident_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

static int hexval(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* A code point as UTF-8 into out (4 bytes room); its length. */
static size_t utf8(unsigned cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

/* A "string" at p->cur: its text (malloc'd, NUL-terminated), or NULL. */
static char *string(struct hp *p)
{
    const char *open = p->cur++;
    size_t cap = 64, n = 0;
    char *s = malloc(cap);
    if (s == NULL)
        return fail(p, open, "out of memory");
    for (;;) {
        if (at_end(p) || *p->cur == '\n') {
            free(s);
            return fail(p, open, "unterminated string");
        }
        if (n + 4 >= cap) {
            char *ns = realloc(s, cap *= 2);
            if (ns == NULL) {
                free(s);
                return fail(p, open, "out of memory");
            }
            s = ns;
        }
        int c = (unsigned char)*p->cur;
        if (c == '"') {
            p->cur++;
            s[n] = '\0';
            return s;
        }
        if ((c == '$' || c == '%') && peek(p, 1) == '{') {
            free(s);
            return fail(p, p->cur, "templates (\"%c{...}\") are not supported", c);
        }
        if (c < 0x20) {
            free(s);
            return fail(p, p->cur, "control character in a string");
        }
        if (c != '\\') {
            s[n++] = (char)c;
            p->cur++;
            continue;
        }
        int e = peek(p, 1);
        const char *esc = p->cur;
        p->cur += 2;
        switch (e) {
        case '"':
            s[n++] = '"';
            break;
        case '\\':
            s[n++] = '\\';
            break;
        case 'n':
            s[n++] = '\n';
            break;
        case 'r':
            s[n++] = '\r';
            break;
        case 't':
            s[n++] = '\t';
            break;
        case 'u': {
            unsigned cp = 0;
            for (int i = 0; i < 4; i++) {
                int h = hexval(peek(p, 0));
                if (h < 0) {
                    free(s);
                    return fail(p, esc, "\\u needs 4 hexadecimal digits");
                }
                cp = cp * 16 + (unsigned)h;
                p->cur++;
            }
            if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF)) {
                free(s);
                return fail(p, esc, "\\u%04X is not a character", cp);
            }
            n += utf8(cp, s + n);
            break;
        }
        default:
            free(s);
            return fail(p, esc, "unknown escape \\%c", e > 0x20 && e < 0x7f ? e : '?');
        }
    }
}

static cJSON *value(struct hp *p);
static int body(struct hp *p, cJSON *obj, int closing);

static cJSON *number(struct hp *p)
{
    const char *s = p->cur, *c = s;
    if (c < p->end && *c == '-')
        c++;
    const char *digits = c;
    while (c < p->end && *c >= '0' && *c <= '9')
        c++;
    if (c == digits)
        return fail(p, s, "expected a number");
    if (c < p->end && *c == '.') {
        const char *frac = ++c;
        while (c < p->end && *c >= '0' && *c <= '9')
            c++;
        if (c == frac)
            return fail(p, s, "expected digits after the decimal point");
    }
    if (c < p->end && (*c == 'e' || *c == 'E')) {
        c++;
        if (c < p->end && (*c == '+' || *c == '-'))
            c++;
        const char *exp = c;
        while (c < p->end && *c >= '0' && *c <= '9')
            c++;
        if (c == exp)
            return fail(p, s, "expected digits in the exponent");
    }
    char buf[64];
    if ((size_t)(c - s) >= sizeof buf)
        return fail(p, s, "number too long");
    memcpy(buf, s, (size_t)(c - s));
    buf[c - s] = '\0';
    p->cur = c;
    if (c < p->end && ident_char((unsigned char)*c))
        return fail(p, c, "unexpected character after a number");
    double d = strtod(buf, NULL);
    if (!isfinite(d))
        return fail(p, s, "number out of range");
    cJSON *v = cJSON_CreateNumber(d);
    return v ? v : fail(p, s, "out of memory");
}

static cJSON *list(struct hp *p)
{
    const char *open = p->cur++;
    cJSON *a = cJSON_CreateArray();
    if (a == NULL)
        return fail(p, open, "out of memory");
    for (;;) {
        if (skip(p, 1) < 0)
            break;
        if (at_end(p)) {
            fail(p, open, "unterminated list, missing ]");
            break;
        }
        if (*p->cur == ']') {
            p->cur++;
            return a;
        }
        cJSON *v = value(p);
        if (v == NULL)
            break;
        cJSON_AddItemToArray(a, v);
        if (skip(p, 1) < 0)
            break;
        if (at_end(p)) {
            fail(p, open, "unterminated list, missing ]");
            break;
        }
        if (*p->cur == ',') {
            p->cur++;
        } else if (*p->cur != ']') {
            fail(p, p->cur, "expected ',' or ']' in a list");
            break;
        }
    }
    cJSON_Delete(a);
    return NULL;
}

static cJSON *word(struct hp *p)
{
    const char *s = p->cur;
    while (!at_end(p) && ident_char((unsigned char)*p->cur))
        p->cur++;
    size_t n = (size_t)(p->cur - s);
    cJSON *v = NULL;
    if (n == 4 && !memcmp(s, "true", 4))
        v = cJSON_CreateTrue();
    else if (n == 5 && !memcmp(s, "false", 5))
        v = cJSON_CreateFalse();
    else if (n == 4 && !memcmp(s, "null", 4))
        v = cJSON_CreateNull();
    else
        return fail(p, s, "expected a value, got \"%.*s\" (expressions are not supported)",
                    (int)(n > 32 ? 32 : n), s);
    return v ? v : fail(p, s, "out of memory");
}

static cJSON *value(struct hp *p)
{
    int c = peek(p, 0);
    if (++p->depth > HCL_MAX_DEPTH) {
        p->depth--;
        return fail(p, p->cur, "nested more than %d deep", HCL_MAX_DEPTH);
    }
    cJSON *v = NULL;
    if (c == '"') {
        char *s = string(p);
        if (s && (v = cJSON_CreateString(s)) == NULL)
            fail(p, p->cur, "out of memory");
        free(s);
    } else if (c == '[') {
        v = list(p);
    } else if (c == '{') {
        p->cur++;
        v = cJSON_CreateObject();
        if (v == NULL)
            fail(p, p->cur, "out of memory");
        else if (body(p, v, 1) < 0) {
            cJSON_Delete(v);
            v = NULL;
        }
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        v = number(p);
    } else if (c == '<' && peek(p, 1) == '<') {
        fail(p, p->cur, "heredoc strings are not supported");
    } else if (ident_start(c)) {
        v = word(p);
    } else {
        fail(p, p->cur, c < 0 ? "expected a value, got the end of the file" : "expected a value");
    }
    p->depth--;
    return v;
}

/* A key: an identifier or a "string"; malloc'd. */
static char *key(struct hp *p)
{
    if (peek(p, 0) == '"')
        return string(p);
    const char *s = p->cur;
    if (!ident_start(peek(p, 0)))
        return fail(p, s, "expected a key");
    while (!at_end(p) && ident_char((unsigned char)*p->cur))
        p->cur++;
    char *k = strndup(s, (size_t)(p->cur - s));
    return k ? k : fail(p, s, "out of memory");
}

/* A block's body after its name and labels: { ... }, nested under each
 * label, the last label innermost. */
static cJSON *block(struct hp *p, char **labels, size_t n_labels)
{
    cJSON *v = value(p); /* at '{' */
    for (size_t i = n_labels; v && i-- > 0;) {
        cJSON *outer = cJSON_CreateObject();
        if (outer == NULL) {
            cJSON_Delete(v);
            return fail(p, p->cur, "out of memory");
        }
        cJSON_AddItemToObject(outer, labels[i], v);
        v = outer;
    }
    return v;
}

/* Adds block v under k: a second block of the same name makes a list. */
static int add_block(struct hp *p, cJSON *obj, const char *k, cJSON *v, const char *at)
{
    cJSON *old = cJSON_GetObjectItemCaseSensitive(obj, k);
    if (old == NULL) {
        cJSON_AddItemToObject(obj, k, v);
        return 0;
    }
    if (cJSON_IsObject(old)) {
        cJSON *a = cJSON_CreateArray();
        if (a == NULL) {
            cJSON_Delete(v);
            fail(p, at, "out of memory");
            return -1;
        }
        cJSON_AddItemToArray(a, cJSON_DetachItemViaPointer(obj, old));
        cJSON_AddItemToObject(obj, k, a);
        old = a;
    }
    if (!cJSON_IsArray(old)) {
        cJSON_Delete(v);
        char sk[65];
        fail(p, at, "\"%s\" is both a value and a block", shown(k, sk));
        return -1;
    }
    cJSON_AddItemToArray(old, v);
    return 0;
}

/* One item (an attribute or a block) into obj. */
static int item(struct hp *p, cJSON *obj)
{
    const char *at = p->cur;
    char *k = key(p), *labels[8], sk[65];
    size_t n_labels = 0;
    int rc = -1;
    if (k == NULL || skip(p, 0) < 0)
        goto out;
    if (peek(p, 0) == '=' || peek(p, 0) == ':') {
        p->cur++;
        if (skip(p, 0) < 0)
            goto out;
        if (cJSON_GetObjectItemCaseSensitive(obj, k)) {
            fail(p, at, "\"%s\" given twice", shown(k, sk));
            goto out;
        }
        cJSON *v = value(p);
        if (v == NULL)
            goto out;
        cJSON_AddItemToObject(obj, k, v);
        rc = 0;
        goto out;
    }
    while (peek(p, 0) == '"' && n_labels < 8) {
        if ((labels[n_labels] = string(p)) == NULL)
            goto out;
        if (n_labels++, skip(p, 0) < 0)
            goto out;
    }
    if (peek(p, 0) != '{') {
        fail(p, p->cur, "expected '=' or a block after \"%s\"", shown(k, sk));
        goto out;
    }
    cJSON *v = block(p, labels, n_labels);
    rc = v ? add_block(p, obj, k, v, at) : -1;
out:
    for (size_t i = 0; i < n_labels; i++)
        free(labels[i]);
    free(k);
    return rc;
}

/* Items into obj until '}' (closing) or the end of the text. Items are
 * separated by a newline or a comma. */
static int body(struct hp *p, cJSON *obj, int closing)
{
    const char *open = p->cur - 1;
    for (;;) {
        if (skip(p, 1) < 0)
            return -1;
        if (at_end(p)) {
            if (closing) {
                fail(p, open, "unterminated block, missing }");
                return -1;
            }
            return 0;
        }
        if (*p->cur == '}') {
            if (!closing) {
                fail(p, p->cur, "unexpected }");
                return -1;
            }
            p->cur++;
            return 0;
        }
        if (item(p, obj) < 0)
            return -1;
        int nl = skip(p, 0);
        if (nl < 0)
            return -1;
        if (!at_end(p) && *p->cur == ',')
            p->cur++;
        else if (!at_end(p) && *p->cur != '\n' && *p->cur != '}') {
            fail(p, p->cur, "expected a new line or ',' after an item");
            return -1;
        }
    }
}

cJSON *hcl_parse(const char *text, size_t len, char *err, size_t errlen)
{
    struct hp p = {.start = text, .cur = text, .end = text + len, .err = err, .errlen = errlen};
    cJSON *root = cJSON_CreateObject();
    if (root == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (memchr(text, '\0', len)) {
        snprintf(err, errlen, "a NUL byte in the file");
        cJSON_Delete(root);
        return NULL;
    }
    if (body(&p, root, 0) < 0) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}
