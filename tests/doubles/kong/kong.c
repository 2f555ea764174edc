/*
 * kong-double: a Kong Admin API test double (NOT Kong) for upstreams and
 * targets, reproducing the status codes, error bodies, normalization and
 * pagination of Kong 3.x as described in the Kong Admin API spec this project
 * follows; DB-less and RBAC modes; a control API for request logs and faults.
 * See README.md in this directory.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/unconst.h"
#include <cjson/cJSON.h>

#define MAX_UP 1024
#define MAX_T 65536

struct upstream {
    char id[40], name[256];
    cJSON *entity;           /* full rendered entity */
    int used;
    int head, tail;          /* its first, last target's slot + 1 (oldest first); 0: none */
};

struct target {
    char id[40], target[300];
    struct upstream *up;     /* its upstream's slot */
    int next, prev;          /* slot + 1 of its upstream's next / previous target; 0: none */
    int weight;
    cJSON *tags;             /* NULL = null */
    double created, updated;
    unsigned long seq;
    int used;
};

struct fault {
    char path[256], method[16], kind[16], body[512];
    int count, status;
    long delay_ms;
};

static struct {
    pthread_mutex_t mu;
    struct upstream ups[MAX_UP];
    struct target *ts;
    unsigned long seq;
    int dbless, control_plane;
    char version[32], node_id[40], rbac[256], port_file[4096];
    cJSON *requests;
    struct fault faults[64];
    int n_faults;
    struct MHD_Daemon *admin, *control;
    int admin_port, control_port, down;
    int delayed;                 /* requests held by a delay fault right now */
    int t_hi;                    /* no target at or past this slot */
    int t_free;                  /* where to look for a free slot first */
    int inflight, peak;          /* the sidecar's requests received, not yet answered; the most at once */
} K;

static volatile sig_atomic_t stopping;

/* ---- helpers --------------------------------------------------------------- */

/* Monotonic ms, the clock the Consul double's request log uses too, so a
 * scenario can order Kong writes against Consul requests. */
static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)(ts.tv_nsec / 1000000);
}

static double now_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)(tv.tv_usec / 1000) / 1000.0;
}

static void uuid(char out[40])
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
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

static int is_uuid(const char *s)
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

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *body,
                            int *logged_status)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(body ? strlen(body) : 0,
                                                             unconst(body ? body : ""),
                                                             MHD_RESPMEM_MUST_COPY);
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

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, cJSON *o, int *ls)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    enum MHD_Result r = respond(c, status, s ? s : "{}", ls);
    free(s);
    return r;
}

static enum MHD_Result message(struct MHD_Connection *c, unsigned status, const char *msg, int *ls)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "message", msg);
    return send_json(c, status, o, ls);
}

/* The DAO error object. fields may be NULL (taken). */
static enum MHD_Result dao_error(struct MHD_Connection *c, unsigned status, int code,
                                 const char *name, const char *msg, cJSON *fields, int *ls)
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
static enum MHD_Result schema_violation(struct MHD_Connection *c, cJSON *fields, int *ls)
{
    int n = cJSON_GetArraySize(fields);
    char *keys[64];
    int k = 0;
    const cJSON *f;
    cJSON_ArrayForEach(f, fields) if (k < 64) keys[k++] = f->string;
    qsort(keys, (size_t)k, sizeof keys[0], key_cmp);
    struct buf b;
    buf_init(&b, 0);
    if (n == 1)
        buf_puts(&b, "schema violation (");
    else
        buf_printf(&b, "%d schema violations (", n);
    for (int i = 0; i < k; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(fields, keys[i]);
        buf_printf(&b, "%s%s: %s", i ? "; " : "", keys[i], cJSON_IsString(v) ? v->valuestring : "invalid");
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
static const char *name_problem(const char *name, char *buf, size_t len)
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
static int normalize_target(const char *in, char *out, size_t len)
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
    int parts[4], n = 0;
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

static const char *const UP_FIELDS[] = {
    "id", "name", "algorithm", "hash_on", "hash_fallback", "hash_on_header",
    "hash_fallback_header", "hash_on_cookie", "hash_on_cookie_path", "hash_on_query_arg",
    "hash_fallback_query_arg", "hash_on_uri_capture", "hash_fallback_uri_capture", "slots",
    "healthchecks", "tags", "host_header", "client_certificate", "use_srv_name", "created_at",
    "updated_at", NULL};

static cJSON *upstream_defaults(const char *id, const char *name)
{
    cJSON *o = cJSON_CreateObject();
    double now = (double)(long)now_s();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "algorithm", "round-robin");
    cJSON_AddStringToObject(o, "hash_on", "none");
    cJSON_AddStringToObject(o, "hash_fallback", "none");
    static const char *const nulls[] = {"hash_on_header", "hash_fallback_header", "hash_on_cookie",
                                        "hash_on_query_arg", "hash_fallback_query_arg",
                                        "hash_on_uri_capture", "hash_fallback_uri_capture", "tags",
                                        "host_header", "client_certificate"};
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

static void merge(cJSON *dst, const cJSON *src)
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
static cJSON *check_upstream_body(const cJSON *in, int need_name)
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
        cJSON_AddStringToObject(fields, "algorithm", "expected one of: consistent-hashing, least-connections, round-robin, latency");
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(in, "tags");
    if (tags && !cJSON_IsNull(tags) && !cJSON_IsArray(tags))
        cJSON_AddStringToObject(fields, "tags", "expected a set");
    if (cJSON_GetArraySize(fields) == 0) {
        cJSON_Delete(fields);
        return NULL;
    }
    return fields;
}

static struct upstream *up_find(const char *key)
{
    for (int i = 0; i < MAX_UP; i++)
        if (K.ups[i].used && (is_uuid(key) ? !strcmp(K.ups[i].id, key) : !strcmp(K.ups[i].name, key)))
            return &K.ups[i];
    return NULL;
}

static cJSON *target_json(const struct target *t)
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
static struct target *first_target(const struct upstream *u)
{
    return u->head ? &K.ts[u->head - 1] : NULL;
}

static struct target *next_target(const struct target *t)
{
    return t->next ? &K.ts[t->next - 1] : NULL;
}

static void target_link(struct target *t, struct upstream *u)
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
static void target_drop(struct target *t)
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

static struct target *target_find(const struct upstream *u, const char *key)
{
    for (struct target *t = first_target(u); t; t = next_target(t))
        if (is_uuid(key) ? !strcmp(t->id, key) : !strcmp(t->target, key))
            return t;
    return NULL;
}

static void delete_targets_of(const struct upstream *u)
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
static int parse_body(struct MHD_Connection *c, const char *body, size_t len, cJSON **out,
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
        *ret = dao_error(c, 400, 9, "invalid size", "size must be an integer between 1 and 1000", NULL, ls);
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
        if (i + 1 < rl) v |= (unsigned char)raw[i + 1] << 8;
        if (i + 2 < rl) v |= (unsigned char)raw[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        if (i + 1 < rl) out[o++] = b64[(v >> 6) & 63];
        if (i + 2 < rl) out[o++] = b64[v & 63];
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

static enum MHD_Result list_targets(struct MHD_Connection *c, const struct upstream *u,
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
        if (all ? parse_opaque(off, &start) < 0 : ((start = strtol(off, &e, 10)), *e || *off == '\0')) {
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

static enum MHD_Result list_upstreams(struct MHD_Connection *c, int *ls)
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

/* ---- the Admin API ------------------------------------------------------------------ */

static cJSON *check_target_body(const cJSON *in, int need_target, char *norm, size_t normlen)
{
    static const char *const fields_ok[] = {"id", "target", "weight", "tags", "upstream",
                                            "created_at", "updated_at", NULL};
    cJSON *fields = cJSON_CreateObject();
    const cJSON *k;
    cJSON_ArrayForEach(k, in) {
        int known = 0;
        for (const char *const *f = fields_ok; *f; f++)
            known |= strcmp(k->string, *f) == 0;
        if (!known)
            cJSON_AddStringToObject(fields, k->string, "unknown field");
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(in, "target");
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(in, "weight");
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(in, "tags");
    if (t == NULL || cJSON_IsNull(t)) {
        if (need_target)
            cJSON_AddStringToObject(fields, "target", "required field missing");
    } else if (!cJSON_IsString(t)) {
        cJSON_AddStringToObject(fields, "target", "expected a string");
    } else if (normalize_target(t->valuestring, norm, normlen) < 0) {
        cJSON_AddStringToObject(fields, "target", "Invalid target; not a valid hostname or ip address");
    }
    if (w && !cJSON_IsNull(w)) {
        if (!cJSON_IsNumber(w) || w->valuedouble != (double)(long)w->valuedouble)
            cJSON_AddStringToObject(fields, "weight", "expected an integer");
        else if (w->valuedouble < 0 || w->valuedouble > 65535)
            cJSON_AddStringToObject(fields, "weight", "value should be between 0 and 65535");
    }
    if (tags && !cJSON_IsNull(tags)) {
        const cJSON *g;
        if (!cJSON_IsArray(tags))
            cJSON_AddStringToObject(fields, "tags", "expected a set");
        else
            cJSON_ArrayForEach(g, tags) if (!cJSON_IsString(g) || strchr(g->valuestring, ',') ||
                                            strchr(g->valuestring, '/')) {
                cJSON_AddStringToObject(fields, "tags", "invalid tag");
                break;
            }
    }
    if (cJSON_GetArraySize(fields) == 0) {
        cJSON_Delete(fields);
        return NULL;
    }
    return fields;
}

static enum MHD_Result dbless_refusal(struct MHD_Connection *c, const char *msg, int *ls)
{
    return dao_error(c, 405, 12, "operation unsupported", msg, NULL, ls);
}

static enum MHD_Result admin(struct MHD_Connection *c, const char *url, const char *method,
                             const char *body, size_t len, int *ls)
{
    char path[1024], norm[300], msg[600];
    enum MHD_Result ret;
    snprintf(path, sizeof path, "%s", url);
    size_t pl = strlen(path);
    while (pl > 1 && path[pl - 1] == '/')
        path[--pl] = '\0';   /* a trailing slash is tolerated */
    int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    int is_write = !strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH");
    if (K.rbac[0]) {
        const char *tok = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Kong-Admin-Token");
        if (tok == NULL || strcmp(tok, K.rbac) != 0)
            return message(c, 401, "Invalid credentials. Token or User credentials required", ls);
    }
    if (!strcmp(path, "/")) {
        if (!is_get)
            return message(c, 405, "Method not allowed", ls);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "version", K.version);
        cJSON_AddStringToObject(o, "node_id", K.node_id);
        cJSON_AddStringToObject(o, "tagline", "Welcome to kong");
        cJSON_AddStringToObject(o, "hostname", "kong-double");
        cJSON *conf = cJSON_AddObjectToObject(o, "configuration");
        cJSON_AddStringToObject(conf, "database", K.dbless ? "off" : "postgres");
        cJSON_AddStringToObject(conf, "role", K.control_plane ? "control_plane" : "traditional");
        return send_json(c, 200, o, ls);
    }
    if (!strcmp(path, "/config")) {
        if (!K.dbless)
            return message(c, 400, "this endpoint is only available when Kong is configured to not use a database", ls);
        if (!strcmp(method, "GET")) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "config", "_format_version: \"3.0\"\n");
            return send_json(c, 200, o, ls);
        }
        if (!strcmp(method, "POST"))
            return send_json(c, 201, cJSON_CreateObject(), ls);
        return message(c, 405, "Method not allowed", ls);
    }
    if (!strncmp(path, "/targets", 8) && (path[8] == '\0' || path[8] == '/'))
        return message(c, 404, "Not found", ls);
    cJSON *in = NULL;
    if (is_write && parse_body(c, body, len, &in, &ret, ls) < 0)
        return ret;
    if (!strcmp(path, "/upstreams")) {
        if (is_get) {
            cJSON_Delete(in);
            return list_upstreams(c, ls);
        }
        if (strcmp(method, "POST")) {
            cJSON_Delete(in);
            return message(c, 405, "Method not allowed", ls);
        }
        cJSON *fields = check_upstream_body(in, 1);
        if (fields) {
            cJSON_Delete(in);
            return schema_violation(c, fields, ls);
        }
        if (K.dbless) {
            cJSON_Delete(in);
            return dbless_refusal(c, "cannot create 'upstreams' entities when not using a database", ls);
        }
        const char *name = cJSON_GetObjectItemCaseSensitive(in, "name")->valuestring;
        if (up_find(name)) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "name", name);
            snprintf(msg, sizeof msg, "UNIQUE violation detected on '{name=\"%s\"}'", name);
            cJSON_Delete(in);
            return dao_error(c, 409, 5, "unique constraint violation", msg, f, ls);
        }
        struct upstream *u = NULL;
        for (int i = 0; i < MAX_UP && !u; i++)
            if (!K.ups[i].used)
                u = &K.ups[i];
        if (u == NULL) {
            cJSON_Delete(in);
            return message(c, 500, "An unexpected error occurred", ls);
        }
        u->used = 1;
        uuid(u->id);
        snprintf(u->name, sizeof u->name, "%s", name);
        u->entity = upstream_defaults(u->id, u->name);
        cJSON_DeleteItemFromObjectCaseSensitive(in, "id");
        merge(u->entity, in);
        cJSON_Delete(in);
        return send_json(c, 201, cJSON_Duplicate(u->entity, 1), ls);
    }
    if (strncmp(path, "/upstreams/", 11) != 0) {
        cJSON_Delete(in);
        return message(c, 404, "Not found", ls);
    }
    /* /upstreams/{u}[/targets[/all | /{t}[/healthy|unhealthy]] | /health] */
    char ukey[300], rest[700] = "";
    const char *p = path + 11;
    const char *slash = strchr(p, '/');
    snprintf(ukey, sizeof ukey, "%.*s", (int)(slash ? slash - p : (long)strlen(p)), p);
    if (slash)
        snprintf(rest, sizeof rest, "%s", slash);
    if (!is_uuid(ukey) && name_problem(ukey, msg, sizeof msg)) {
        cJSON_Delete(in);
        return dao_error(c, 400, 10, "invalid unique name", msg, NULL, ls);
    }
    struct upstream *u = up_find(ukey);
    if (rest[0] == '\0') {
        if (is_get) {
            cJSON_Delete(in);
            if (u == NULL)
                return message(c, 404, "Not found", ls);
            return send_json(c, 200, cJSON_Duplicate(u->entity, 1), ls);
        }
        if (!strcmp(method, "DELETE")) {
            cJSON_Delete(in);
            if (K.dbless && u)
                return dbless_refusal(c, "cannot remove 'upstreams' entities by 'name' when not using a database", ls);
            if (u) {
                delete_targets_of(u);
                cJSON_Delete(u->entity);
                memset(u, 0, sizeof *u);
            }
            return respond(c, 204, NULL, ls);
        }
        if (!strcmp(method, "PATCH")) {
            if (u == NULL) {
                cJSON *f = cJSON_CreateObject();
                cJSON_AddStringToObject(f, is_uuid(ukey) ? "id" : "name", ukey);
                snprintf(msg, sizeof msg, is_uuid(ukey) ? "could not find the entity with primary key '{id=\"%s\"}'"
                                                        : "could not find the entity with '{name=\"%s\"}'", ukey);
                cJSON_Delete(in);
                return dao_error(c, 404, 6, "not found", msg, f, ls);
            }
            cJSON *fields = check_upstream_body(in, 0);
            if (fields) {
                cJSON_Delete(in);
                return schema_violation(c, fields, ls);
            }
            if (K.dbless) {
                cJSON_Delete(in);
                return dbless_refusal(c, "cannot update 'upstreams' entities by 'name' when not using a database", ls);
            }
            cJSON_DeleteItemFromObjectCaseSensitive(in, "id");
            merge(u->entity, in);
            cJSON_ReplaceItemInObjectCaseSensitive(u->entity, "updated_at", cJSON_CreateNumber((double)(long)now_s()));
            cJSON_Delete(in);
            return send_json(c, 200, cJSON_Duplicate(u->entity, 1), ls);
        }
        if (!strcmp(method, "PUT")) {
            if (K.dbless) {
                cJSON_Delete(in);
                return dbless_refusal(c, "cannot create or update 'upstreams' entities by 'name' when not using a database", ls);
            }
            if (!is_uuid(ukey)) {
                cJSON_DeleteItemFromObjectCaseSensitive(in, "name");
                cJSON_AddStringToObject(in, "name", ukey);
            }
            cJSON *fields = check_upstream_body(in, 1);
            if (fields) {
                cJSON_Delete(in);
                return schema_violation(c, fields, ls);
            }
            if (u == NULL) {
                for (int i = 0; i < MAX_UP && !u; i++)
                    if (!K.ups[i].used)
                        u = &K.ups[i];
                if (u == NULL) {
                    cJSON_Delete(in);
                    return message(c, 500, "An unexpected error occurred", ls);
                }
                u->used = 1;
                if (is_uuid(ukey))
                    snprintf(u->id, sizeof u->id, "%s", ukey);
                else
                    uuid(u->id);
            } else {
                cJSON_Delete(u->entity);
            }
            const char *name = cJSON_GetObjectItemCaseSensitive(in, "name")->valuestring;
            snprintf(u->name, sizeof u->name, "%s", name);
            u->entity = upstream_defaults(u->id, u->name);
            cJSON_DeleteItemFromObjectCaseSensitive(in, "id");
            merge(u->entity, in);
            cJSON_Delete(in);
            return send_json(c, 200, cJSON_Duplicate(u->entity, 1), ls);
        }
        cJSON_Delete(in);
        return message(c, 405, "Method not allowed", ls);
    }
    if (u == NULL) {
        cJSON_Delete(in);
        return message(c, 404, "Not found", ls);
    }
    if (!strcmp(rest, "/health")) {
        cJSON_Delete(in);
        if (!is_get)
            return message(c, 405, "Method not allowed", ls);
        cJSON *o = cJSON_CreateObject();
        cJSON *data = cJSON_AddArrayToObject(o, "data");
        for (const struct target *k = first_target(u); k; k = next_target(k)) {
            cJSON *t = target_json(k);
            cJSON_AddStringToObject(t, "health", "HEALTHCHECKS_OFF");
            cJSON_AddItemToArray(data, t);
        }
        cJSON_AddNullToObject(o, "next");
        cJSON_AddStringToObject(o, "node_id", K.node_id);
        return send_json(c, 200, o, ls);
    }
    if (!strcmp(rest, "/targets") || !strcmp(rest, "/targets/all")) {
        int all = !strcmp(rest, "/targets/all");
        if (is_get) {
            cJSON_Delete(in);
            return list_targets(c, u, ukey, all, ls);
        }
        if (all || strcmp(method, "POST")) {
            cJSON_Delete(in);
            return message(c, 405, "Method not allowed", ls);
        }
        cJSON *fields = check_target_body(in, 1, norm, sizeof norm);
        if (fields) {
            cJSON_Delete(in);
            return schema_violation(c, fields, ls);
        }
        if (K.dbless) {
            cJSON_Delete(in);
            return dbless_refusal(c, "cannot create 'targets' entities when not using a database", ls);
        }
        if (target_find(u, norm)) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "target", norm);
            cJSON *uo = cJSON_AddObjectToObject(f, "upstream");
            cJSON_AddStringToObject(uo, "id", u->id);
            snprintf(msg, sizeof msg, "UNIQUE violation detected on '{target=\"%s\",upstream={id=\"%s\"}}'", norm, u->id);
            cJSON_Delete(in);
            return dao_error(c, 409, 5, "unique constraint violation", msg, f, ls);
        }
        struct target *t = NULL;
        for (int i = 0; i < MAX_T && !t; i++)   /* from the last one taken: O(1) mostly */
            if (!K.ts[(K.t_free + i) % MAX_T].used)
                t = &K.ts[(K.t_free + i) % MAX_T];
        if (t)
            K.t_free = (int)(t - K.ts + 1) % MAX_T;
        if (t == NULL) {
            cJSON_Delete(in);
            return message(c, 500, "An unexpected error occurred", ls);
        }
        memset(t, 0, sizeof *t);
        t->used = 1;
        uuid(t->id);
        target_link(t, u);
        if (t - K.ts >= K.t_hi)
            K.t_hi = (int)(t - K.ts) + 1;
        snprintf(t->target, sizeof t->target, "%s", norm);
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(in, "weight");
        t->weight = cJSON_IsNumber(w) ? w->valueint : 100;
        const cJSON *tags = cJSON_GetObjectItemCaseSensitive(in, "tags");
        t->tags = cJSON_IsArray(tags) ? cJSON_Duplicate(tags, 1) : NULL;
        t->created = t->updated = now_s();
        t->seq = ++K.seq;
        cJSON_Delete(in);
        return send_json(c, 201, target_json(t), ls);
    }
    if (!strncmp(rest, "/targets/", 9)) {
        char tkey[400], action[32] = "";
        const char *tp = rest + 9;
        const char *s2 = strchr(tp, '/');
        snprintf(tkey, sizeof tkey, "%.*s", (int)(s2 ? s2 - tp : (long)strlen(tp)), tp);
        if (s2)
            snprintf(action, sizeof action, "%s", s2 + 1);
        struct target *t = target_find(u, tkey);
        if (action[0]) {
            cJSON_Delete(in);
            if (strcmp(action, "healthy") && strcmp(action, "unhealthy"))
                return message(c, 404, "Not found", ls);
            if (K.control_plane)
                return message(c, 404, "Not found", ls);
            if (strcmp(method, "PUT"))
                return message(c, 405, "Method not allowed", ls);
            if (t == NULL)
                return message(c, 404, "Not found", ls);
            snprintf(msg, sizeof msg, "no healthchecker found for %s", u->name);
            return message(c, 400, msg, ls);
        }
        if (is_get) {
            cJSON_Delete(in);
            return t ? send_json(c, 200, target_json(t), ls) : message(c, 404, "Not found", ls);
        }
        if (!strcmp(method, "DELETE")) {
            cJSON_Delete(in);
            if (t == NULL)
                return message(c, 404, "Not found", ls);
            if (K.dbless)
                return dbless_refusal(c, "cannot remove 'targets' entities when not using a database", ls);
            target_drop(t);
            return respond(c, 204, NULL, ls);
        }
        if (!strcmp(method, "PATCH") || !strcmp(method, "PUT")) {
            cJSON *fields = check_target_body(in, 0, norm, sizeof norm);
            if (fields) {
                cJSON_Delete(in);
                return schema_violation(c, fields, ls);
            }
            if (t == NULL) {
                cJSON_Delete(in);
                return message(c, 404, "Not found", ls);
            }
            if (K.dbless) {
                cJSON_Delete(in);
                return dbless_refusal(c, "cannot update 'targets' entities when not using a database", ls);
            }
            const cJSON *w = cJSON_GetObjectItemCaseSensitive(in, "weight");
            const cJSON *tt = cJSON_GetObjectItemCaseSensitive(in, "target");
            const cJSON *tags = cJSON_GetObjectItemCaseSensitive(in, "tags");
            if (cJSON_IsNumber(w))
                t->weight = w->valueint;
            if (cJSON_IsString(tt)) {
                struct target *other = target_find(u, norm);
                if (other && other != t) {
                    cJSON_Delete(in);
                    snprintf(msg, sizeof msg, "UNIQUE violation detected on '{target=\"%s\",upstream={id=\"%s\"}}'", norm, u->id);
                    return dao_error(c, 409, 5, "unique constraint violation", msg, NULL, ls);
                }
                snprintf(t->target, sizeof t->target, "%s", tt->valuestring);
            }
            if (tags) {
                cJSON_Delete(t->tags);
                t->tags = cJSON_IsArray(tags) ? cJSON_Duplicate(tags, 1) : NULL;
            }
            double now = now_s();
            t->updated = now > t->updated ? now : t->updated + 0.001;
            cJSON_Delete(in);
            return send_json(c, 200, target_json(t), ls);
        }
        cJSON_Delete(in);
        return message(c, 405, "Method not allowed", ls);
    }
    cJSON_Delete(in);
    return message(c, 404, "Not found", ls);
}

/* ---- dispatch, request log, faults, control -------------------------------------------- */

struct conn {
    struct buf body;
    int counted;   /* in K.inflight */
};

/* The sidecar's requests received and not yet answered: counted from the
 * first byte until the answer is queued (or the connection ends). */
static void count_in(struct conn *cs, struct MHD_Connection *c)
{
    const char *ua = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "User-Agent");
    if (cs->counted || !ua || strncmp(ua, "consul-sidecar", 14) != 0)
        return;
    cs->counted = 1;
    int now = __atomic_add_fetch(&K.inflight, 1, __ATOMIC_SEQ_CST);
    int peak = __atomic_load_n(&K.peak, __ATOMIC_SEQ_CST);
    while (now > peak &&
           !__atomic_compare_exchange_n(&K.peak, &peak, now, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        ;
}

static void uncount(struct conn *cs)
{
    if (cs->counted)
        __atomic_sub_fetch(&K.inflight, 1, __ATOMIC_SEQ_CST);
    cs->counted = 0;
}

static enum MHD_Result collect(struct conn **state, const char *upload, size_t *upload_size)
{
    if (*state == NULL) {
        *state = calloc(1, sizeof **state);
        if (*state == NULL)
            return MHD_NO;
        buf_init(&(*state)->body, 1024 * 1024);
        return MHD_YES;
    }
    if (*upload_size) {
        buf_append(&(*state)->body, upload, *upload_size);
        *upload_size = 0;
    }
    return MHD_YES;
}

static struct qsbuf {
    struct buf *b;
    int first;
} qs_unused;

static enum MHD_Result qs_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct qsbuf *q = cls;
    (void)kind;
    buf_printf(q->b, "%c%s%s%s", q->first ? '?' : '&', key, value ? "=" : "", value ? value : "");
    q->first = 0;
    return MHD_YES;
}

static enum MHD_Result on_admin(void *cls, struct MHD_Connection *c, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_size, void **state)
{
    struct conn **cs = (struct conn **)state;
    (void)cls;
    (void)version;
    if (*cs == NULL || *upload_size) {
        enum MHD_Result r = collect(cs, upload, upload_size);
        if (*cs)
            count_in(*cs, c);
        return r;
    }
    pthread_mutex_lock(&K.mu);
    if (K.down) {
        pthread_mutex_unlock(&K.mu);
        return MHD_NO;
    }
    /* Faults. */
    struct fault f = {0};
    int faulted = 0;
    for (int i = 0; i < K.n_faults; i++) {
        struct fault *x = &K.faults[i];
        if (x->count <= 0 || (x->path[0] && strncmp(url, x->path, strlen(x->path))) ||
            (x->method[0] && strcmp(method, x->method)))
            continue;
        x->count--;
        f = *x;
        faulted = 1;
        break;
    }
    struct buf full;
    buf_init(&full, 8192);
    buf_puts(&full, url);
    struct qsbuf q = {&full, 1};
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, qs_iter, &q);
    cJSON *entry = cJSON_CreateObject();
    cJSON_AddStringToObject(entry, "method", method);
    cJSON_AddStringToObject(entry, "path", full.data ? full.data : url);
    const char *ua = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "User-Agent");
    cJSON_AddStringToObject(entry, "user_agent", ua ? ua : "");
    cJSON_AddBoolToObject(entry, "token", MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Kong-Admin-Token") != NULL);
    cJSON_AddStringToObject(entry, "body", (*cs)->body.data ? (*cs)->body.data : "");
    cJSON_AddNumberToObject(entry, "time_ms", mono_ms());   /* arrival */
    buf_free(&full);
    int status = 0;
    enum MHD_Result ret;
    if (faulted && !strcmp(f.kind, "close")) {
        pthread_mutex_unlock(&K.mu);
        cJSON_Delete(entry);
        return MHD_NO;
    }
    if (faulted && !strcmp(f.kind, "delay")) {
        K.delayed++;
        pthread_mutex_unlock(&K.mu);
        struct timespec ts = {f.delay_ms / 1000, (f.delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&K.mu);
        K.delayed--;
        faulted = 0;
    }
    if (faulted && !strcmp(f.kind, "status"))
        ret = respond(c, (unsigned)(f.status ? f.status : 500), f.body[0] ? f.body : "{\"message\":\"An unexpected error occurred\"}", &status);
    else if (faulted && !strcmp(f.kind, "garbage"))
        ret = respond(c, 200, "{\"data\": [ this is not json", &status);
    else
        ret = admin(c, url, method, (*cs)->body.data ? (*cs)->body.data : "", (*cs)->body.len, &status);
    cJSON_AddNumberToObject(entry, "status", status);
    cJSON_AddItemToArray(K.requests, entry);
    uncount(*cs);
    pthread_mutex_unlock(&K.mu);
    return ret;
}

static void write_ports(void)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", K.port_file);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return;
    fprintf(f, "admin %d\ncontrol %d\n", K.admin_port, K.control_port);
    fclose(f);
    rename(tmp, K.port_file);
}

static void on_done(void *cls, struct MHD_Connection *c, void **state, enum MHD_RequestTerminationCode t)
{
    struct conn *cs = *state;
    (void)cls;
    (void)c;
    (void)t;
    if (cs) {
        uncount(cs);
        buf_free(&cs->body);
        free(cs);
        *state = NULL;
    }
}

static struct MHD_Daemon *start_admin(int port)
{
    return MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL,
                            (uint16_t)port, NULL, NULL, on_admin, NULL,
                            MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_END);
}

static enum MHD_Result on_control(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state)
{
    struct conn **cs = (struct conn **)state;
    (void)cls;
    (void)version;
    if (*cs == NULL || *upload_size)
        return collect(cs, upload, upload_size);
    cJSON *in = (*cs)->body.len ? cJSON_ParseWithLength((*cs)->body.data, (*cs)->body.len) : NULL;
    enum MHD_Result ret;
    pthread_mutex_lock(&K.mu);
    if (!strcmp(url, "/requests") && !strcmp(method, "GET")) {
        ret = send_json(c, 200, cJSON_Duplicate(K.requests, 1), NULL);
    } else if (!strcmp(url, "/requests.txt") && !strcmp(method, "GET")) {
        /* One line a request: METHOD PATH STATUS USER-AGENT (for grep);
         * ?time puts the arrival time (monotonic ms) first. */
        struct buf b;
        buf_init(&b, 0);
        const cJSON *e;
        const char *tv = NULL;
        size_t tl = 0;   /* "?time" has no value: look the key up, not the value */
        int with_time = MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "time", 4, &tv,
                                                      &tl) == MHD_YES;
        cJSON_ArrayForEach(e, K.requests) {
            const cJSON *m = cJSON_GetObjectItem(e, "method"), *p = cJSON_GetObjectItem(e, "path");
            const cJSON *st = cJSON_GetObjectItem(e, "status"), *ua = cJSON_GetObjectItem(e, "user_agent");
            if (with_time)
                buf_printf(&b, "%.0f ", cJSON_GetObjectItem(e, "time_ms")->valuedouble);
            buf_printf(&b, "%s %s %d %s\n", m->valuestring, p->valuestring, st ? st->valueint : 0,
                       ua->valuestring);
        }
        ret = respond(c, 200, b.data ? b.data : "", NULL);
        buf_free(&b);
    } else if (!strcmp(url, "/inflight") && !strcmp(method, "GET")) {
        char n[64];
        snprintf(n, sizeof n, "{\"now\": %d, \"peak\": %d}", __atomic_load_n(&K.inflight, __ATOMIC_SEQ_CST),
                 __atomic_load_n(&K.peak, __ATOMIC_SEQ_CST));
        ret = respond(c, 200, n, NULL);
    } else if (!strcmp(url, "/inflight") && !strcmp(method, "DELETE")) {
        __atomic_store_n(&K.peak, __atomic_load_n(&K.inflight, __ATOMIC_SEQ_CST), __ATOMIC_SEQ_CST);
        ret = respond(c, 200, "{}", NULL);
    } else if (!strcmp(url, "/delayed") && !strcmp(method, "GET")) {
        char n[32];
        snprintf(n, sizeof n, "%d", K.delayed);
        ret = respond(c, 200, n, NULL);
    } else if (!strcmp(url, "/writes.txt") && !strcmp(method, "GET")) {
        /* Writes only, with their bodies: METHOD PATH STATUS[ BODY]. */
        struct buf b;
        buf_init(&b, 0);
        const cJSON *e;
        cJSON_ArrayForEach(e, K.requests) {
            const cJSON *m = cJSON_GetObjectItem(e, "method"), *p = cJSON_GetObjectItem(e, "path");
            const cJSON *st = cJSON_GetObjectItem(e, "status"), *bd = cJSON_GetObjectItem(e, "body");
            if (!strcmp(m->valuestring, "GET") || !strcmp(m->valuestring, "HEAD") ||
                !strcmp(m->valuestring, "OPTIONS"))
                continue;
            buf_printf(&b, "%s %s %d%s%s\n", m->valuestring, p->valuestring, st ? st->valueint : 0,
                       bd->valuestring[0] ? " " : "", bd->valuestring);
        }
        ret = respond(c, 200, b.data ? b.data : "", NULL);
        buf_free(&b);
    } else if (!strcmp(url, "/requests") && !strcmp(method, "DELETE")) {
        cJSON_Delete(K.requests);
        K.requests = cJSON_CreateArray();
        ret = send_json(c, 200, cJSON_CreateObject(), NULL);
    } else if (!strcmp(url, "/count") && !strcmp(method, "GET")) {
        /* What /state would list, counted: cheap enough to poll while a
         * sync of 10,000 targets runs, without slowing it. */
        int nu = 0, nt = 0;
        for (int i = 0; i < MAX_UP; i++)
            nu += K.ups[i].used;
        for (int i = 0; i < K.t_hi; i++)
            nt += K.ts[i].used;
        char n[64];
        snprintf(n, sizeof n, "{\"upstreams\": %d, \"targets\": %d}", nu, nt);
        ret = respond(c, 200, n, NULL);
    } else if (!strcmp(url, "/state")) {
        cJSON *o = cJSON_CreateArray();
        for (int i = 0; i < MAX_UP; i++) {
            if (!K.ups[i].used)
                continue;
            cJSON *u = cJSON_CreateObject();
            cJSON_AddStringToObject(u, "name", K.ups[i].name);
            cJSON *ts = cJSON_AddArrayToObject(u, "targets");
            for (const struct target *t = first_target(&K.ups[i]); t; t = next_target(t))
                cJSON_AddItemToArray(ts, target_json(t));
            cJSON_AddItemToArray(o, u);
        }
        ret = send_json(c, 200, o, NULL);
    } else if (!strcmp(url, "/faults") && !strcmp(method, "DELETE")) {
        K.n_faults = 0;
        ret = send_json(c, 200, cJSON_CreateObject(), NULL);
    } else if (!strcmp(url, "/faults") && !strcmp(method, "POST") && cJSON_IsObject(in) && K.n_faults < 64) {
        struct fault *f = &K.faults[K.n_faults++];
        memset(f, 0, sizeof *f);
        const cJSON *v;
        f->count = (v = cJSON_GetObjectItem(in, "count")) && cJSON_IsNumber(v) ? v->valueint : 1;
        if ((v = cJSON_GetObjectItem(in, "path")) && cJSON_IsString(v))
            snprintf(f->path, sizeof f->path, "%s", v->valuestring);
        if ((v = cJSON_GetObjectItem(in, "method")) && cJSON_IsString(v))
            snprintf(f->method, sizeof f->method, "%s", v->valuestring);
        if ((v = cJSON_GetObjectItem(in, "kind")) && cJSON_IsString(v))
            snprintf(f->kind, sizeof f->kind, "%s", v->valuestring);
        if ((v = cJSON_GetObjectItem(in, "body")) && cJSON_IsString(v))
            snprintf(f->body, sizeof f->body, "%s", v->valuestring);
        if ((v = cJSON_GetObjectItem(in, "status")) && cJSON_IsNumber(v))
            f->status = v->valueint;
        if ((v = cJSON_GetObjectItem(in, "delay_ms")) && cJSON_IsNumber(v))
            f->delay_ms = (long)v->valuedouble;
        ret = send_json(c, 200, cJSON_CreateObject(), NULL);
    } else if (!strcmp(url, "/down") && !strcmp(method, "POST")) {
        K.down = 1;
        struct MHD_Daemon *d = K.admin;
        K.admin = NULL;
        pthread_mutex_unlock(&K.mu);
        if (d)
            MHD_stop_daemon(d);
        pthread_mutex_lock(&K.mu);
        ret = send_json(c, 200, cJSON_CreateObject(), NULL);
    } else if (!strcmp(url, "/up") && !strcmp(method, "POST")) {
        K.down = 0;
        if (K.admin == NULL)
            K.admin = start_admin(K.admin_port);
        ret = K.admin ? send_json(c, 200, cJSON_CreateObject(), NULL)
                      : respond(c, 500, "{\"message\":\"cannot listen again\"}", NULL);
    } else if (!strcmp(url, "/reset") && !strcmp(method, "POST")) {
        for (int i = 0; i < MAX_UP; i++)
            if (K.ups[i].used) {
                cJSON_Delete(K.ups[i].entity);
                memset(&K.ups[i], 0, sizeof K.ups[i]);
            }
        for (int i = 0; i < K.t_hi; i++)
            if (K.ts[i].used) {
                cJSON_Delete(K.ts[i].tags);
                memset(&K.ts[i], 0, sizeof K.ts[i]);
            }
        ret = send_json(c, 200, cJSON_CreateObject(), NULL);
    } else {
        ret = respond(c, 404, "{\"message\":\"unknown control endpoint; see tests/doubles/kong/README.md\"}", NULL);
    }
    pthread_mutex_unlock(&K.mu);
    cJSON_Delete(in);
    return ret;
}

static void on_term(int s)
{
    (void)s;
    stopping = 1;
}

int main(int argc, char **argv)
{
    pthread_mutex_init(&K.mu, NULL);
    snprintf(K.version, sizeof K.version, "3.9.1");
    K.requests = cJSON_CreateArray();
    K.ts = calloc(MAX_T, sizeof *K.ts);
    uuid(K.node_id);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    (void)qs_unused;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--port-file") && v) {
            snprintf(K.port_file, sizeof K.port_file, "%s", v);
            i++;
        } else if (!strcmp(a, "--version") && v) {
            snprintf(K.version, sizeof K.version, "%s", v);
            i++;
        } else if (!strcmp(a, "--rbac-token") && v) {
            snprintf(K.rbac, sizeof K.rbac, "%s", v);
            i++;
        } else if (!strcmp(a, "--role") && v) {
            K.control_plane = !strcmp(v, "control_plane");
            i++;
        } else if (!strcmp(a, "--dbless")) {
            K.dbless = 1;
        } else {
            fprintf(stderr, "usage: kong-double --port-file FILE [--version V] [--dbless] "
                            "[--role traditional|control_plane] [--rbac-token T]\n");
            return 2;
        }
    }
    if (!K.port_file[0] || K.ts == NULL) {
        fprintf(stderr, "kong-double: --port-file is required\n");
        return 2;
    }
    K.admin = start_admin(0);
    K.control = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD,
                                 0, NULL, NULL, on_control, NULL, MHD_OPTION_NOTIFY_COMPLETED,
                                 on_done, NULL, MHD_OPTION_END);
    if (K.admin == NULL || K.control == NULL) {
        fprintf(stderr, "kong-double: cannot listen\n");
        return 1;
    }
    K.admin_port = MHD_get_daemon_info(K.admin, MHD_DAEMON_INFO_BIND_PORT)->port;
    K.control_port = MHD_get_daemon_info(K.control, MHD_DAEMON_INFO_BIND_PORT)->port;
    write_ports();
    fprintf(stderr, "kong-double %s: admin on 127.0.0.1:%d, control on 127.0.0.1:%d%s\n", K.version,
            K.admin_port, K.control_port, K.dbless ? " (DB-less)" : "");
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    while (!stopping)
        pause();
    if (K.admin)
        MHD_stop_daemon(K.admin);
    MHD_stop_daemon(K.control);
    return 0;
}
