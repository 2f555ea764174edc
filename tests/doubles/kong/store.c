/* kong-double: upstreams and targets, and the shapes of its answers. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/unconst.h"
#include "tests/doubles/kong/kong.h"

/* ---- helpers --------------------------------------------------------------- */

/* Monotonic ms, the clock the Consul double's request log uses too, so a
 * scenario can order Kong writes against Consul requests. */
double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)(ts.tv_nsec / 1000000);
}

double now_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)(tv.tv_usec / 1000) / 1000.0;
}

void uuid(char out[40])
{
    unsigned char b[16];
    FILE *f = fopen("/dev/urandom", "rb");
    if (f == NULL || fread(b, 1, 16, f) != 16)
        for (int i = 0; i < 16; i++)
            b[i] = (unsigned char)rand();
    if (f)
        fclose(f);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

int is_uuid(const char *s)
{
    if (strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!isxdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *body,
                        int *logged_status)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        body ? strlen(body) : 0, unconst(body ? body : ""), MHD_RESPMEM_MUST_COPY);
    if (body && status != 204)
        MHD_add_response_header(r, "Content-Type", "application/json; charset=utf-8");
    char server[64];
    snprintf(server, sizeof server, "kong/%s", K.version);
    MHD_add_response_header(r, "Server", server);
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    MHD_add_response_header(r, "Access-Control-Allow-Credentials", "true");
    MHD_add_response_header(r, "X-Kong-Admin-Latency", "0");
    if (logged_status)
        *logged_status = (int)status;
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, cJSON *o, int *ls)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    enum MHD_Result r = respond(c, status, s ? s : "{}", ls);
    free(s);
    return r;
}

enum MHD_Result message(struct MHD_Connection *c, unsigned status, const char *msg, int *ls)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "message", msg);
    return send_json(c, status, o, ls);
}

/* The DAO error object. fields may be NULL (taken). */
enum MHD_Result dao_error(struct MHD_Connection *c, unsigned status, int code, const char *name,
                          const char *msg, cJSON *fields, int *ls)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "code", code);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "message", msg);
    if (fields)
        cJSON_AddItemToObject(o, "fields", fields);
    return send_json(c, status, o, ls);
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 400 code 2 from a fields object: "schema violation (f: m)" or
 * "n schema violations (a: m; b: m)", sorted. */
enum MHD_Result schema_violation(struct MHD_Connection *c, cJSON *fields, int *ls)
{
    int n = cJSON_GetArraySize(fields);
    char *keys[64] = {NULL};
    int k = 0;
    const cJSON *f;
    cJSON_ArrayForEach(f, fields)
        if (k < 64)
            keys[k++] = f->string;
    qsort(keys, (size_t)k, sizeof keys[0], key_cmp);
    struct buf b;
    buf_init(&b, 0);
    if (n == 1)
        buf_puts(&b, "schema violation (");
    else
        buf_printf(&b, "%d schema violations (", n);
    for (int i = 0; i < k; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(fields, keys[i]);
        buf_printf(&b, "%s%s: %s", i ? "; " : "", keys[i],
                   cJSON_IsString(v) ? v->valuestring : "invalid");
    }
    buf_puts(&b, ")");
    enum MHD_Result r = dao_error(c, 400, 2, "schema violation", b.data, fields, ls);
    buf_free(&b);
    return r;
}

/* ---- validation and normalization ------------------------------------------- */

static int valid_hostname(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > 253)
        return 0;
    const char *label = h;
    for (const char *p = h;; p++) {
        if (*p == '.' || *p == '\0') {
            size_t l = (size_t)(p - label);
            if (l == 0 && !(*p == '\0' && p > h && p[-1] == '.'))
                return 0;
            if (l > 63 || (l && label[l - 1] == '-') || (l && label[0] == '-'))
                return 0;
            if (*p == '\0')
                break;
            label = p + 1;
            continue;
        }
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            return 0;
    }
    return 1;
}

/* Upstream name rules: "" ok, else the validator text. */
const char *name_problem(const char *name, char *buf, size_t len)
{
    unsigned char b[16];
    if (inet_pton(AF_INET, name, b) == 1 || inet_pton(AF_INET6, name, b) == 1) {
        snprintf(buf, len, "Invalid name ('%s'); no ip addresses allowed", name);
        return buf;
    }
    if (strchr(name, ':')) {
        snprintf(buf, len, "Invalid name ('%s'); no port allowed", name);
        return buf;
    }
    if (!valid_hostname(name)) {
        snprintf(buf, len, "Invalid name ('%s'); must be a valid hostname", name);
        return buf;
    }
    return NULL;
}

/* Kong's normalization of a target ("host[:port]"): 0 ok, -1 invalid. */
int normalize_target(const char *in, char *out, size_t len)
{
    char host[300];
    long port = 8000;
    unsigned char b[16];
    if (in[0] == '[') {
        const char *end = strchr(in, ']');
        if (end == NULL)
            return -1;
        snprintf(host, sizeof host, "%.*s", (int)(end - in - 1), in + 1);
        if (end[1] == ':') {
            char *e;
            port = strtol(end + 2, &e, 10);
            if (*e || end[2] == '\0')
                return -1;
        } else if (end[1]) {
            return -1;
        }
    } else if (inet_pton(AF_INET6, in, b) == 1) {
        snprintf(host, sizeof host, "%s", in);
    } else {
        const char *colon = strrchr(in, ':');
        if (colon && strchr(in, ':') != colon)
            return -1;
        if (colon) {
            char *e;
            snprintf(host, sizeof host, "%.*s", (int)(colon - in), in);
            port = strtol(colon + 1, &e, 10);
            if (*e || colon[1] == '\0')
                return -1;
        } else {
            snprintf(host, sizeof host, "%s", in);
        }
    }
    if (port < 0 || port > 65535)
        return -1;
    if (inet_pton(AF_INET6, host, b) == 1) {
        snprintf(out, len,
                 "[%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x]:%ld",
                 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                 b[13], b[14], b[15], port);
        return 0;
    }
    /* IPv4, possibly with leading zeros. */
    int parts[4] = {0}, n = 0;
    const char *p = host;
    int all_digits = 1;
    for (const char *q = host; *q; q++)
        if (!isdigit((unsigned char)*q) && *q != '.')
            all_digits = 0;
    if (all_digits) {
        while (n < 4) {
            char *e;
            long v = strtol(p, &e, 10);
            if (e == p || v < 0 || v > 255)
                return -1;
            parts[n++] = (int)v;
            if (*e == '.' && n < 4)
                p = e + 1;
            else if (*e == '\0')
                break;
            else
                return -1;
        }
        if (n != 4)
            return -1;
        snprintf(out, len, "%d.%d.%d.%d:%ld", parts[0], parts[1], parts[2], parts[3], port);
        return 0;
    }
    if (!valid_hostname(host))
        return -1;
    snprintf(out, len, "%s:%ld", host, port);
    return 0;
}

/* ---- entities ------------------------------------------------------------------ */

static cJSON *healthchecks_default(void)
{
    const char *j =
        "{\"threshold\":0,\"active\":{\"type\":\"http\",\"timeout\":1,\"concurrency\":10,"
        "\"http_path\":\"/\",\"https_sni\":null,\"https_verify_certificate\":true,\"headers\":null,"
        "\"healthy\":{\"interval\":0,\"http_statuses\":[200,302],\"successes\":0},"
        "\"unhealthy\":{\"interval\":0,\"http_statuses\":[429,404,500,501,502,503,504,505],"
        "\"tcp_failures\":0,\"timeouts\":0,\"http_failures\":0}},"
        "\"passive\":{\"type\":\"http\",\"healthy\":{\"http_statuses\":[200,201,202,203,204,205,"
        "206,207,208,226,300,301,302,303,304,305,306,307,308],\"successes\":0},"
        "\"unhealthy\":{\"http_statuses\":[429,500,503],\"tcp_failures\":0,\"timeouts\":0,"
        "\"http_failures\":0}}}";
    return cJSON_Parse(j);
}

static const char *const UP_FIELDS[] = {"id",
                                        "name",
                                        "algorithm",
                                        "hash_on",
                                        "hash_fallback",
                                        "hash_on_header",
                                        "hash_fallback_header",
                                        "hash_on_cookie",
                                        "hash_on_cookie_path",
                                        "hash_on_query_arg",
                                        "hash_fallback_query_arg",
                                        "hash_on_uri_capture",
                                        "hash_fallback_uri_capture",
                                        "slots",
                                        "healthchecks",
                                        "tags",
                                        "host_header",
                                        "client_certificate",
                                        "use_srv_name",
                                        "created_at",
                                        "updated_at",
                                        NULL};

cJSON *upstream_defaults(const char *id, const char *name)
{
    cJSON *o = cJSON_CreateObject();
    double now = (double)(long)now_s();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "algorithm", "round-robin");
    cJSON_AddStringToObject(o, "hash_on", "none");
    cJSON_AddStringToObject(o, "hash_fallback", "none");
    static const char *const nulls[] = {"hash_on_header",
                                        "hash_fallback_header",
                                        "hash_on_cookie",
                                        "hash_on_query_arg",
                                        "hash_fallback_query_arg",
                                        "hash_on_uri_capture",
                                        "hash_fallback_uri_capture",
                                        "tags",
                                        "host_header",
                                        "client_certificate"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        cJSON_AddNullToObject(o, nulls[i]);
    cJSON_AddStringToObject(o, "hash_on_cookie_path", "/");
    cJSON_AddNumberToObject(o, "slots", 10000);
    cJSON_AddItemToObject(o, "healthchecks", healthchecks_default());
    cJSON_AddBoolToObject(o, "use_srv_name", 0);
    cJSON_AddNumberToObject(o, "created_at", now);
    cJSON_AddNumberToObject(o, "updated_at", now);
    return o;
}

void merge(cJSON *dst, const cJSON *src)
{
    const cJSON *k;
    cJSON_ArrayForEach(k, src) {
        cJSON *e = cJSON_GetObjectItemCaseSensitive(dst, k->string);
        if (cJSON_IsObject(e) && cJSON_IsObject(k)) {
            merge(e, k);
            continue;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(dst, k->string);
        cJSON_AddItemToObject(dst, k->string, cJSON_Duplicate(k, 1));
    }
}

/* Validates an upstream body: NULL ok, else a fields object (taken by the caller). */
cJSON *check_upstream_body(const cJSON *in, int need_name)
{
    cJSON *fields = cJSON_CreateObject();
    const cJSON *k;
    cJSON_ArrayForEach(k, in) {
        int known = 0;
        for (const char *const *f = UP_FIELDS; *f; f++)
            known |= strcmp(k->string, *f) == 0;
        if (!known)
            cJSON_AddStringToObject(fields, k->string, "unknown field");
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(in, "name");
    char buf[400];
    if (need_name && name == NULL)
        cJSON_AddStringToObject(fields, "name", "required field missing");
    else if (name && !cJSON_IsString(name))
        cJSON_AddStringToObject(fields, "name", "expected a string");
    else if (name && name_problem(name->valuestring, buf, sizeof buf))
        cJSON_AddStringToObject(fields, "name", buf);
    const cJSON *slots = cJSON_GetObjectItemCaseSensitive(in, "slots");
    if (slots && (!cJSON_IsNumber(slots) || slots->valuedouble != (int)slots->valuedouble))
        cJSON_AddStringToObject(fields, "slots", "expected an integer");
    else if (slots && (slots->valueint < 10 || slots->valueint > 65536))
        cJSON_AddStringToObject(fields, "slots", "value should be between 10 and 65536");
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(in, "algorithm");
    if (alg && (!cJSON_IsString(alg) || (strcmp(alg->valuestring, "round-robin") &&
                                         strcmp(alg->valuestring, "consistent-hashing") &&
                                         strcmp(alg->valuestring, "least-connections") &&
                                         strcmp(alg->valuestring, "latency"))))
        cJSON_AddStringToObject(
            fields, "algorithm",
            "expected one of: consistent-hashing, least-connections, round-robin, latency");
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(in, "tags");
    if (tags && !cJSON_IsNull(tags) && !cJSON_IsArray(tags))
        cJSON_AddStringToObject(fields, "tags", "expected a set");
    if (cJSON_GetArraySize(fields) == 0) {
        cJSON_Delete(fields);
        return NULL;
    }
    return fields;
}

struct upstream *up_find(const char *key)
{
    for (int i = 0; i < MAX_UP; i++)
        if (K.ups[i].used &&
            (is_uuid(key) ? !strcmp(K.ups[i].id, key) : !strcmp(K.ups[i].name, key)))
            return &K.ups[i];
    return NULL;
}

cJSON *target_json(const struct target *t)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", t->id);
    cJSON_AddNumberToObject(o, "created_at", t->created);
    cJSON_AddNumberToObject(o, "updated_at", t->updated);
    cJSON *u = cJSON_AddObjectToObject(o, "upstream");
    cJSON_AddStringToObject(u, "id", t->up->id);
    cJSON_AddStringToObject(o, "target", t->target);
    cJSON_AddNumberToObject(o, "weight", t->weight);
    if (t->tags)
        cJSON_AddItemToObject(o, "tags", cJSON_Duplicate(t->tags, 1));
    else
        cJSON_AddNullToObject(o, "tags");
    return o;
}

/* Each upstream's targets are chained, as a database indexes them by
 * upstream: finding or listing them costs that upstream's targets, not the
 * whole table (10,000 targets: the sidecar's initial sync was the double's
 * scans). */
struct target *first_target(const struct upstream *u)
{
    return u->head ? &K.ts[u->head - 1] : NULL;
}

struct target *next_target(const struct target *t)
{
    return t->next ? &K.ts[t->next - 1] : NULL;
}

void target_link(struct target *t, struct upstream *u)
{
    int slot = (int)(t - K.ts) + 1;
    t->up = u;
    t->next = 0;
    t->prev = u->tail;
    if (u->tail)
        K.ts[u->tail - 1].next = slot;
    else
        u->head = slot;
    u->tail = slot;
}

/* Unchained, its memory cleared: the slot is free. */
void target_drop(struct target *t)
{
    if (t->prev)
        K.ts[t->prev - 1].next = t->next;
    else
        t->up->head = t->next;
    if (t->next)
        K.ts[t->next - 1].prev = t->prev;
    else
        t->up->tail = t->prev;
    cJSON_Delete(t->tags);
    memset(t, 0, sizeof *t);
}

struct target *target_find(const struct upstream *u, const char *key)
{
    for (struct target *t = first_target(u); t; t = next_target(t))
        if (is_uuid(key) ? !strcmp(t->id, key) : !strcmp(t->target, key))
            return t;
    return NULL;
}

void delete_targets_of(const struct upstream *u)
{
    while (u->head)
        target_drop(&K.ts[u->head - 1]);
}

/* ---- body parsing ------------------------------------------------------------------ */

/* Decodes a form body into a JSON object, coercing numbers as Kong's schema
 * does for form input (weight, slots). */
static cJSON *parse_form(const char *body)
{
    cJSON *o = cJSON_CreateObject();
    char *copy = strdup(body), *save = NULL;
    for (char *pair = strtok_r(copy, "&", &save); pair; pair = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(pair, '=');
        char *v = eq ? eq + 1 : (char *)"";
        if (eq)
            *eq = '\0';
        /* percent-decoding */
        for (char *s = v, *d = v;; s++, d++) {
            if (*s == '+')
                *d = ' ';
            else if (*s == '%' && isxdigit((unsigned char)s[1]) && isxdigit((unsigned char)s[2])) {
                char hex[3] = {s[1], s[2], 0};
                *d = (char)strtol(hex, NULL, 16);
                s += 2;
            } else
                *d = *s;
            if (*s == '\0')
                break;
        }
        size_t kl = strlen(pair);
        if (kl > 2 && !strcmp(pair + kl - 2, "[]")) {
            pair[kl - 2] = '\0';
            cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, pair);
            if (arr == NULL)
                arr = cJSON_AddArrayToObject(o, pair);
            cJSON_AddItemToArray(arr, cJSON_CreateString(v));
            continue;
        }
        char *e;
        long num = strtol(v, &e, 10);
        if (*v && *e == '\0' && (!strcmp(pair, "weight") || !strcmp(pair, "slots")))
            cJSON_AddNumberToObject(o, pair, (double)num);
        else if (!strcmp(pair, "tags"))
            cJSON_AddItemToArray(cJSON_AddArrayToObject(o, pair), cJSON_CreateString(v));
        else if (*v == '\0')
            cJSON_AddNullToObject(o, pair);
        else
            cJSON_AddStringToObject(o, pair, v);
    }
    free(copy);
    return o;
}

/* 0 and *out (may be an empty object), or a response was queued. */
int parse_body(struct MHD_Connection *c, const char *body, size_t len, cJSON **out,
               enum MHD_Result *ret, int *ls)
{
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    *out = NULL;
    if (len == 0) {
        *out = cJSON_CreateObject();
        return 0;
    }
    if (ct == NULL) {
        *ret = respond(c, 415, NULL, ls);
        return -1;
    }
    if (strncasecmp(ct, "application/json", 16) == 0) {
        *out = cJSON_ParseWithLength(body, len);
        if (!cJSON_IsObject(*out)) {
            cJSON_Delete(*out);
            *out = NULL;
            *ret = message(c, 400, "Cannot parse JSON body", ls);
            return -1;
        }
        return 0;
    }
    if (strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0) {
        char *copy = strndup(body, len);
        *out = parse_form(copy ? copy : "");
        free(copy);
        return 0;
    }
    if (strncasecmp(ct, "multipart/form-data", 19) == 0) {
        *out = cJSON_CreateObject(); /* accepted; fields not needed by the tests */
        return 0;
    }
    *ret = respond(c, 415, NULL, ls);
    return -1;
}

/* ---- pagination --------------------------------------------------------------------- */

/* size: default 100, 1..1000 else code 9; clamp: targets clamp above 1000. */
static int page_size(struct MHD_Connection *c, int clamp, long *size, enum MHD_Result *ret, int *ls)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "size");
    *size = 100;
    if (v == NULL)
        return 0;
    char *e;
    long n = strtol(v, &e, 10);
    if (*v == '\0' || *e) {
        *ret = dao_error(c, 400, 9, "invalid size", "size must be a number", NULL, ls);
        return -1;
    }
    if (clamp && n > 1000)
        n = 1000;
    if (n < 1 || n > 1000) {
        *ret = dao_error(c, 400, 9, "invalid size", "size must be an integer between 1 and 1000",
                         NULL, ls);
        return -1;
    }
    *size = n;
    return 0;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Opaque offsets: unpadded base64 of "[\"<n>\"]". */
static void opaque_offset(long n, char *out, size_t len)
{
    char raw[64];
    snprintf(raw, sizeof raw, "[\"%ld\"]", n);
    size_t rl = strlen(raw), o = 0;
    for (size_t i = 0; i < rl && o + 4 < len; i += 3) {
        unsigned v = (unsigned char)raw[i] << 16;
        if (i + 1 < rl)
            v |= (unsigned char)raw[i + 1] << 8;
        if (i + 2 < rl)
            v |= (unsigned char)raw[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        if (i + 1 < rl)
            out[o++] = b64[(v >> 6) & 63];
        if (i + 2 < rl)
            out[o++] = b64[v & 63];
    }
    out[o] = '\0';
}

static int parse_opaque(const char *s, long *n)
{
    unsigned acc = 0;
    int bits = 0;
    char raw[64];
    size_t o = 0;
    for (const char *p = s; *p; p++) {
        const char *pos = strchr(b64, *p);
        if (pos == NULL || *p == '\0')
            return -1;
        acc = (acc << 6) | (unsigned)(pos - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o + 1 < sizeof raw)
                raw[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    raw[o] = '\0';
    return sscanf(raw, "[\"%ld\"]", n) == 1 ? 0 : -1;
}

static int cmp_newest(const void *a, const void *b)
{
    const struct target *x = *(struct target *const *)a, *y = *(struct target *const *)b;
    if (x->created != y->created)
        return x->created < y->created ? 1 : -1;
    return x->seq < y->seq ? 1 : -1;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp((*(struct target *const *)a)->id, (*(struct target *const *)b)->id);
}

enum MHD_Result list_targets(struct MHD_Connection *c, const struct upstream *u,
                             const char *u_as_written, int all, int *ls)
{
    long size;
    enum MHD_Result ret;
    if (page_size(c, !all, &size, &ret, ls) < 0)
        return ret;
    const char *off = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "offset");
    long start = 0;
    if (off) {
        char *e;
        if (all ? parse_opaque(off, &start) < 0
                : ((start = strtol(off, &e, 10)), *e || *off == '\0')) {
            char msg[300];
            snprintf(msg, sizeof msg, "'%s' is not a valid offset: bad base64 encoding", off);
            return dao_error(c, 400, 7, "invalid offset", msg, NULL, ls);
        }
    }
    struct target **list = malloc(MAX_T * sizeof *list);
    size_t n = 0;
    for (struct target *t = first_target(u); t; t = next_target(t))
        list[n++] = t;
    qsort(list, n, sizeof *list, all ? cmp_id : cmp_newest);
    cJSON *o = cJSON_CreateObject();
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    long end = start + size;
    for (long i = start; i < end && (size_t)i < n; i++)
        cJSON_AddItemToArray(data, target_json(list[i]));
    if ((size_t)end < n) {
        char next[700], offs[64];
        if (all)
            opaque_offset(end, offs, sizeof offs);
        else
            snprintf(offs, sizeof offs, "%ld", end);
        snprintf(next, sizeof next, "/upstreams/%s/targets%s?offset=%s", u_as_written,
                 all ? "/all" : "", offs);
        cJSON_AddStringToObject(o, "offset", offs);
        cJSON_AddStringToObject(o, "next", next);
    } else {
        cJSON_AddNullToObject(o, "next");
    }
    free(list);
    return send_json(c, 200, o, ls);
}

enum MHD_Result list_upstreams(struct MHD_Connection *c, int *ls)
{
    long size, start = 0;
    enum MHD_Result ret;
    if (page_size(c, 0, &size, &ret, ls) < 0)
        return ret;
    const char *off = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "offset");
    if (off && parse_opaque(off, &start) < 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "'%s' is not a valid offset: bad base64 encoding", off);
        return dao_error(c, 400, 7, "invalid offset", msg, NULL, ls);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    long idx = 0, shown = 0;
    int more = 0;
    for (int i = 0; i < MAX_UP; i++) {
        if (!K.ups[i].used)
            continue;
        if (idx++ < start)
            continue;
        if (shown == size) {
            more = 1;
            break;
        }
        cJSON_AddItemToArray(data, cJSON_Duplicate(K.ups[i].entity, 1));
        shown++;
    }
    if (more) {
        char offs[64], next[200];
        opaque_offset(start + size, offs, sizeof offs);
        snprintf(next, sizeof next, "/upstreams?offset=%s", offs);
        cJSON_AddStringToObject(o, "offset", offs);
        cJSON_AddStringToObject(o, "next", next);
    } else {
        cJSON_AddNullToObject(o, "next");
    }
    return send_json(c, 200, o, ls);
}
