/*
 * Configuration loading and validation; see config.h.
 *
 * Each file is parsed and checked on its own first, so an error always names
 * the file it is in. Files are then merged in order (services and upstreams
 * accumulate, settings are later-wins, objects merge key by key), the
 * environment and flags are applied, and the result is built into plain
 * structs. Services are rewritten into Consul's canonical register body:
 * keys in PascalCase whatever spelling the file used (Consul matches keys
 * case-insensitively and accepts snake_case aliases), the sidecar's own
 * "probe" extension removed, the ownership mark added to Meta.
 */
#include "sidecar/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/dur.h"
#include "proxy/kong.h"
#include "sidecar/elect.h"
#include "sidecar/sync.h"

#define CFG_MAX_FILE (4u * 1024 * 1024)
#define CFG_MAX_FILES 256

/* An error context: the file and a growing key path. */
struct ctx {
    const char *file;
    char *err;
    size_t errlen;
    int failed;
};

__attribute__((format(printf, 3, 4)))
static int fail(struct ctx *c, const char *path, const char *fmt, ...)
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

static void join(char *out, size_t len, const char *base, const char *key)
{
    if (base && *base)
        snprintf(out, len, "%.300s.%.150s", base, key);
    else
        snprintf(out, len, "%.150s", key);
}

int config_parse_bool(const char *s, int *out)
{
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; s && i < 6; i++) {
        if (strcmp(s, t[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcmp(s, f[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

static const char *type_name(const cJSON *v)
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

/* ---- typed getters over one object ---------------------------------------- */

static int want_str(struct ctx *c, const cJSON *v, const char *path, const char **out)
{
    if (!cJSON_IsString(v))
        return fail(c, path, "expected a string, got %s", type_name(v));
    *out = v->valuestring;
    return 0;
}

static int want_bool(struct ctx *c, const cJSON *v, const char *path, int *out)
{
    if (!cJSON_IsBool(v))
        return fail(c, path, "expected true or false, got %s", type_name(v));
    *out = cJSON_IsTrue(v);
    return 0;
}

static int want_int(struct ctx *c, const cJSON *v, const char *path, long min, long max,
                    long *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(long)v->valuedouble)
        return fail(c, path, "expected an integer, got %s", type_name(v));
    if (v->valuedouble < (double)min || v->valuedouble > (double)max)
        return fail(c, path, "must be between %ld and %ld, got %.0f", min, max, v->valuedouble);
    *out = (long)v->valuedouble;
    return 0;
}

/* A Go duration string, or a number of nanoseconds (as Consul takes it). */
static int want_dur(struct ctx *c, const cJSON *v, const char *path, int64_t *out)
{
    if (cJSON_IsNumber(v)) {
        *out = (int64_t)(v->valuedouble / 1e6);
        if (*out == 0 && v->valuedouble > 0)
            *out = 1;
        return 0;
    }
    if (!cJSON_IsString(v))
        return fail(c, path, "expected a duration such as \"10s\", got %s", type_name(v));
    if (dur_parse_ms(v->valuestring, out) < 0)
        return fail(c, path, "invalid duration \"%.64s\"", v->valuestring);
    return 0;
}

static int want_nonneg_dur(struct ctx *c, const cJSON *v, const char *path, int64_t *out)
{
    if (want_dur(c, v, path, out) < 0)
        return -1;
    if (*out < 0)
        return fail(c, path, "must not be negative");
    return 0;
}

static int want_enum(struct ctx *c, const cJSON *v, const char *path, const char *const *allowed,
                     size_t n, int *out)
{
    const char *s = "";
    if (want_str(c, v, path, &s) < 0)
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
    return fail(c, path, "must be one of %s, got \"%.64s\"", list, s);
}

/* Every key of obj must be in allowed (exact match). */
static int known_keys(struct ctx *c, const cJSON *obj, const char *path,
                      const char *const *allowed, size_t n)
{
    const cJSON *k;
    cJSON_ArrayForEach(k, obj) {
        size_t i;
        for (i = 0; i < n; i++)
            if (strcmp(k->string, allowed[i]) == 0)
                break;
        if (i == n)
            return fail(c, path, "unknown key \"%.64s\"", k->string);
    }
    return 0;
}

static int want_obj(struct ctx *c, const cJSON *v, const char *path)
{
    if (!cJSON_IsObject(v))
        return fail(c, path, "expected an object, got %s", type_name(v));
    return 0;
}

/* ---- Consul service definitions --------------------------------------------- */

/* Consul's key matching: case-insensitive, and snake_case aliases. */
static void fold_key(const char *in, char *out, size_t len)
{
    size_t n = 0;
    for (; *in && n + 1 < len; in++)
        if (*in != '_')
            out[n++] = (char)tolower((unsigned char)*in);
    out[n] = '\0';
}

struct keydef {
    const char *folded;
    const char *canon;
    enum { T_STR, T_BOOL, T_INT, T_DUR, T_STRLIST, T_OBJ, T_ANY, T_CHECK, T_CHECKS, T_META,
           T_WEIGHTS, T_HEADER, T_PROBE, T_SECRET, T_STATUS } type;
};

static const struct keydef service_keys[] = {
    {"id", "ID", T_STR},
    {"name", "Name", T_STR},
    {"tags", "Tags", T_STRLIST},
    {"address", "Address", T_STR},
    {"taggedaddresses", "TaggedAddresses", T_OBJ},
    {"meta", "Meta", T_META},
    {"port", "Port", T_INT},
    {"socketpath", "SocketPath", T_STR},
    {"kind", "Kind", T_STR},
    {"weights", "Weights", T_WEIGHTS},
    {"enabletagoverride", "EnableTagOverride", T_BOOL},
    {"check", "Check", T_CHECK},
    {"checks", "Checks", T_CHECKS},
    {"token", "Token", T_SECRET},
    {"connect", "Connect", T_OBJ},
    {"proxy", "Proxy", T_OBJ},
    {"locality", "Locality", T_OBJ},
};

static const struct keydef check_keys[] = {
    {"checkid", "CheckID", T_STR},
    {"id", "CheckID", T_STR},
    {"name", "Name", T_STR},
    {"notes", "Notes", T_STR},
    {"status", "Status", T_STATUS},
    {"http", "HTTP", T_STR},
    {"header", "Header", T_HEADER},
    {"method", "Method", T_STR},
    {"body", "Body", T_STR},
    {"disableredirects", "DisableRedirects", T_BOOL},
    {"tcp", "TCP", T_STR},
    {"udp", "UDP", T_STR},
    {"grpc", "GRPC", T_STR},
    {"grpcusetls", "GRPCUseTLS", T_BOOL},
    {"h2ping", "H2PING", T_STR},
    {"h2pingusetls", "H2PingUseTLS", T_BOOL},
    {"osservice", "OSService", T_STR},
    {"aliasnode", "AliasNode", T_STR},
    {"aliasservice", "AliasService", T_STR},
    {"dockercontainerid", "DockerContainerID", T_STR},
    {"shell", "Shell", T_STR},
    {"scriptargs", "ScriptArgs", T_STRLIST},
    {"args", "ScriptArgs", T_STRLIST},
    {"tlsservername", "TLSServerName", T_STR},
    {"tlsskipverify", "TLSSkipVerify", T_BOOL},
    {"interval", "Interval", T_DUR},
    {"timeout", "Timeout", T_DUR},
    {"ttl", "TTL", T_DUR},
    {"deregistercriticalserviceafter", "DeregisterCriticalServiceAfter", T_DUR},
    {"successbeforepassing", "SuccessBeforePassing", T_INT},
    {"failuresbeforewarning", "FailuresBeforeWarning", T_INT},
    {"failuresbeforecritical", "FailuresBeforeCritical", T_INT},
    {"outputmaxsize", "OutputMaxSize", T_INT},
    {"serviceid", "ServiceID", T_STR},
    {"probe", "probe", T_PROBE},
};

static const struct keydef *lookup(const struct keydef *tab, size_t n, const char *key)
{
    char folded[128];
    fold_key(key, folded, sizeof folded);
    for (size_t i = 0; i < n; i++)
        if (strcmp(tab[i].folded, folded) == 0)
            return &tab[i];
    return NULL;
}

static int valid_meta_key(const char *k)
{
    if (!*k || strlen(k) > 128)
        return 0;
    for (const char *p = k; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
            return 0;
    return 1;
}

struct svc_build {
    struct ctx *c;
    const char *node;
    struct consul_service *svc;
    struct cfg_probe *probes;   /* appended */
    size_t n_probes;
};

static int parse_probe(struct ctx *c, const cJSON *p, const char *path, struct probe_spec *spec)
{
    static const char *const keys[] = {"http", "tcp", "interval", "timeout", "method",
                                       "tls_skip_verify"};
    char kp[512];
    if (want_obj(c, p, path) < 0 || known_keys(c, p, path, keys, 6) < 0)
        return -1;
    memset(spec, 0, sizeof *spec);
    const cJSON *http = cJSON_GetObjectItemCaseSensitive(p, "http");
    const cJSON *tcp = cJSON_GetObjectItemCaseSensitive(p, "tcp");
    if ((http != NULL) == (tcp != NULL))
        return fail(c, path, "needs exactly one of \"http\" or \"tcp\"");
    const char *target = "", *method = NULL;
    join(kp, sizeof kp, path, http ? "http" : "tcp");
    if (want_str(c, http ? http : tcp, kp, &target) < 0)
        return -1;
    if (http && strncmp(target, "http://", 7) != 0 && strncmp(target, "https://", 8) != 0)
        return fail(c, kp, "expected an http:// or https:// URL, got \"%.64s\"", target);
    if (tcp && (strchr(target, ':') == NULL || strstr(target, "://")))
        return fail(c, kp, "expected host:port, got \"%.64s\"", target);
    spec->kind = http ? PROBE_HTTP : PROBE_TCP;
    spec->interval_ms = 10000;
    spec->timeout_ms = 0;
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(p, "interval"))) {
        join(kp, sizeof kp, path, "interval");
        if (want_dur(c, v, kp, &spec->interval_ms) < 0)
            return -1;
        if (spec->interval_ms < 100)
            return fail(c, kp, "must be at least 100ms");
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(p, "timeout"))) {
        join(kp, sizeof kp, path, "timeout");
        if (want_dur(c, v, kp, &spec->timeout_ms) < 0)
            return -1;
        if (spec->timeout_ms <= 0)
            return fail(c, kp, "must be positive");
    }
    if (spec->timeout_ms == 0)
        spec->timeout_ms = spec->interval_ms < 10000 ? spec->interval_ms : 10000;
    if ((v = cJSON_GetObjectItemCaseSensitive(p, "method"))) {
        join(kp, sizeof kp, path, "method");
        if (want_str(c, v, kp, &method) < 0)
            return -1;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(p, "tls_skip_verify"))) {
        join(kp, sizeof kp, path, "tls_skip_verify");
        if (want_bool(c, v, kp, &spec->tls_skip_verify) < 0)
            return -1;
    }
    /* Allocate only once everything validated: a failure leaks nothing. */
    spec->target = strdup(target);
    spec->method = method ? strdup(method) : NULL;
    if (spec->target == NULL || (method && spec->method == NULL)) {
        free(spec->target);
        free(spec->method);
        spec->target = spec->method = NULL;
        return fail(c, path, "out of memory");
    }
    return 0;
}

/* The plain value kinds both service and check keys use: a copy of v after
 * checking its type (ints within [min, max]); NULL on error (c->failed). */
static cJSON *plain_value(struct ctx *c, const cJSON *v, const char *kp, int type, long min,
                          long max)
{
    const char *sv = "";
    long iv = 0;
    int bv = 0;
    switch (type) {
    case T_STR:
    case T_SECRET:
        return want_str(c, v, kp, &sv) < 0 ? NULL : cJSON_CreateString(sv);
    case T_INT:
        return want_int(c, v, kp, min, max, &iv) < 0 ? NULL : cJSON_CreateNumber((double)iv);
    case T_BOOL:
        return want_bool(c, v, kp, &bv) < 0 ? NULL : cJSON_CreateBool(bv);
    case T_STRLIST: {
        const cJSON *e;
        if (!cJSON_IsArray(v)) {
            fail(c, kp, "expected an array of strings, got %s", type_name(v));
            return NULL;
        }
        cJSON_ArrayForEach(e, v) if (!cJSON_IsString(e)) {
            fail(c, kp, "expected an array of strings");
            return NULL;
        }
        return cJSON_Duplicate(v, 1);
    }
    default:
        return NULL;
    }
}

/* Validates one check object and returns its canonical form (new object). */
static cJSON *build_check(struct svc_build *b, const cJSON *in, const char *path,
                          struct probe_spec *probe, int *has_probe, int64_t *ttl_ms)
{
    struct ctx *c = b->c;
    char kp[512];
    cJSON *out = cJSON_CreateObject();
    int64_t interval = 0, ttl = 0;
    int kinds = 0;
    *has_probe = 0;
    *ttl_ms = 0;
    if (out == NULL || want_obj(c, in, path) < 0)
        goto fail;
    const cJSON *k;
    cJSON_ArrayForEach(k, in) {
        join(kp, sizeof kp, path, k->string);
        const struct keydef *d = lookup(check_keys, sizeof check_keys / sizeof check_keys[0],
                                        k->string);
        if (d == NULL) {
            fail(c, path, "unknown key \"%.64s\"", k->string);
            goto fail;
        }
        int64_t dv = 0;
        const char *sv = "";
        cJSON *val = NULL;
        switch (d->type) {
        case T_STR:
        case T_BOOL:
        case T_INT:
            if ((val = plain_value(c, k, kp, d->type, 0, 1000000000L)) == NULL)
                goto fail;
            break;
        case T_STATUS:
            if (want_str(c, k, kp, &sv) < 0)
                goto fail;
            if (strcmp(sv, "passing") && strcmp(sv, "warning") && strcmp(sv, "critical")) {
                fail(c, kp, "must be passing, warning or critical, got \"%.32s\"", sv);
                goto fail;
            }
            val = cJSON_CreateString(sv);
            break;
        case T_DUR:
            if (want_nonneg_dur(c, k, kp, &dv) < 0)
                goto fail;
            if (strcmp(d->canon, "Interval") == 0)
                interval = dv;
            if (strcmp(d->canon, "TTL") == 0)
                ttl = dv;
            val = cJSON_IsString(k) ? cJSON_CreateString(k->valuestring) : NULL;
            if (val == NULL) {
                char buf[32];
                val = cJSON_CreateString(dur_format_ms(dv, buf, sizeof buf));
            }
            break;
        case T_STRLIST:
            if ((val = plain_value(c, k, kp, d->type, 0, 0)) == NULL)
                goto fail;
            break;
        case T_HEADER: {
            if (want_obj(c, k, kp) < 0)
                goto fail;
            const cJSON *h;
            cJSON_ArrayForEach(h, k) {
                char hp[600];
                snprintf(hp, sizeof hp, "%s (header \"%.64s\")", kp, h->string);
                cJSON *copy = plain_value(c, h, hp, T_STRLIST, 0, 0);
                if (copy == NULL)
                    goto fail;
                cJSON_Delete(copy);
            }
            val = cJSON_Duplicate(k, 1);
            break;
        }
        case T_PROBE:
            if (*has_probe) {
                /* A repeated key: the last one counts, as in Consul's JSON. */
                free(probe->target);
                free(probe->method);
                probe->target = probe->method = NULL;
            }
            if (parse_probe(c, k, kp, probe) < 0)
                goto fail;
            *has_probe = 1;
            continue;
        default:
            val = cJSON_Duplicate(k, 1);
            break;
        }
        if (strcmp(d->canon, "ServiceID") == 0) {
            cJSON_Delete(val); /* tolerated and ignored, as Consul does */
            continue;
        }
        if (val == NULL) {
            fail(c, kp, "out of memory");
            goto fail;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(out, d->canon); /* last wins */
        cJSON_AddItemToObject(out, d->canon, val);
        if (!strcmp(d->canon, "HTTP") || !strcmp(d->canon, "TCP") || !strcmp(d->canon, "UDP") ||
            !strcmp(d->canon, "GRPC") || !strcmp(d->canon, "H2PING") ||
            !strcmp(d->canon, "OSService") || !strcmp(d->canon, "ScriptArgs") ||
            !strcmp(d->canon, "DockerContainerID"))
            kinds++;
    }
    if (cJSON_GetArraySize(out) == 0 && !*has_probe)
        return out; /* an empty Check {} is ignored, as Consul does */
    if (interval > 0 && ttl > 0) {
        fail(c, path, "Interval and TTL cannot both be specified");
        goto fail;
    }
    if (kinds > 0 && interval <= 0 && !cJSON_GetObjectItemCaseSensitive(out, "DockerContainerID")) {
        fail(c, path, "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks");
        goto fail;
    }
    if (kinds == 0 && !cJSON_GetObjectItemCaseSensitive(out, "AliasService") &&
        !cJSON_GetObjectItemCaseSensitive(out, "AliasNode")) {
        if (ttl <= 0) {
            fail(c, path, *has_probe ? "probe needs ttl: the sidecar feeds a TTL check from it"
                                     : "TTL must be > 0 for TTL checks");
            goto fail;
        }
    }
    if (*has_probe && ttl <= 0) {
        fail(c, path, "probe needs ttl: the sidecar feeds a TTL check from it");
        goto fail;
    }
    *ttl_ms = ttl;
    return out;
fail:
    cJSON_Delete(out);
    if (*has_probe) {
        free(probe->target);
        free(probe->method);
        *has_probe = 0;
    }
    return NULL;
}

static void probe_spec_free(struct probe_spec *s)
{
    free(s->target);
    free(s->method);
}

static int add_probe(struct svc_build *b, const char *service_id, const char *check_id,
                     int64_t ttl, struct probe_spec *spec, const cJSON *check)
{
    struct cfg_probe *n = realloc(b->probes, (b->n_probes + 1) * sizeof *n);
    if (n == NULL)
        return -1;
    b->probes = n;
    struct cfg_probe *p = &b->probes[b->n_probes++];
    p->service_id = strdup(service_id);
    p->check_id = strdup(check_id);
    p->ttl_ms = ttl;
    p->spec = *spec;
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(check, "SuccessBeforePassing")))
        p->spec.success_before_passing = v->valueint;
    if ((v = cJSON_GetObjectItemCaseSensitive(check, "FailuresBeforeWarning")))
        p->spec.failures_before_warning = v->valueint;
    if ((v = cJSON_GetObjectItemCaseSensitive(check, "FailuresBeforeCritical")))
        p->spec.failures_before_critical = v->valueint;
    return p->service_id && p->check_id ? 0 : -1;
}

/* Builds one consul_service from a definition object. */
static int build_service(struct svc_build *b, const cJSON *in, const char *path)
{
    struct ctx *c = b->c;
    char kp[512];
    struct consul_service *s = b->svc;
    cJSON *out = cJSON_CreateObject();
    const cJSON *check_in = NULL, *checks_in = NULL;
    char check_path[512] = "", checks_path[512] = "";
    memset(s, 0, sizeof *s);
    if (out == NULL || want_obj(c, in, path) < 0)
        goto fail;
    const cJSON *k;
    cJSON_ArrayForEach(k, in) {
        join(kp, sizeof kp, path, k->string);
        const struct keydef *d = lookup(service_keys, sizeof service_keys / sizeof service_keys[0],
                                        k->string);
        if (d == NULL) {
            fail(c, path, "unknown key \"%.64s\"", k->string);
            goto fail;
        }
        const char *sv = "";
        cJSON *val = NULL;
        switch (d->type) {
        case T_STR:
        case T_SECRET:
        case T_INT:
        case T_BOOL:
        case T_STRLIST:
            if ((val = plain_value(c, k, kp, d->type, 0, 65535)) == NULL)
                goto fail;
            sv = cJSON_IsString(val) ? val->valuestring : "";
            if (strcmp(d->canon, "Address") == 0 &&
                (!strcmp(sv, "0.0.0.0") || !strcmp(sv, "::") || !strcmp(sv, "[::]"))) {
                fail(c, kp, "invalid service address \"%s\": a service must be reachable at it", sv);
                cJSON_Delete(val);
                goto fail;
            }
            break;
        case T_META: {
            if (want_obj(c, k, kp) < 0)
                goto fail;
            if (cJSON_GetArraySize(k) > 62) {
                fail(c, kp, "more than 62 pairs (64 minus the sidecar's two ownership keys)");
                goto fail;
            }
            const cJSON *m;
            cJSON_ArrayForEach(m, k) {
                if (!cJSON_IsString(m)) {
                    fail(c, kp, "value of \"%.64s\": expected a string", m->string);
                    goto fail;
                }
                if (!valid_meta_key(m->string)) {
                    fail(c, kp, "key \"%.64s\": only letters, digits, '-' and '_', 1-128 chars",
                         m->string);
                    goto fail;
                }
                if (strncmp(m->string, "consul-", 7) == 0) {
                    fail(c, kp, "key \"%.64s\": prefix 'consul-' is reserved for internal use",
                         m->string);
                    goto fail;
                }
                if (strlen(m->valuestring) > 512) {
                    fail(c, kp, "value of \"%.64s\" is longer than 512 characters", m->string);
                    goto fail;
                }
            }
            val = cJSON_Duplicate(k, 1);
            break;
        }
        case T_WEIGHTS: {
            static const char *const wk[] = {"Passing", "Warning", "passing", "warning"};
            long pv = 1, wv = 1;
            if (want_obj(c, k, kp) < 0 || known_keys(c, k, kp, wk, 4) < 0)
                goto fail;
            const cJSON *p = cJSON_GetObjectItem(k, "Passing"), *w = cJSON_GetObjectItem(k, "Warning");
            char sub[600];
            snprintf(sub, sizeof sub, "%s.Passing", kp);
            if (p && want_int(c, p, sub, 1, 65535, &pv) < 0)
                goto fail;
            snprintf(sub, sizeof sub, "%s.Warning", kp);
            if (w && want_int(c, w, sub, 0, 65535, &wv) < 0)
                goto fail;
            val = cJSON_CreateObject();
            cJSON_AddNumberToObject(val, "Passing", (double)pv);
            cJSON_AddNumberToObject(val, "Warning", (double)wv);
            break;
        }
        case T_CHECK:
            check_in = k;
            snprintf(check_path, sizeof check_path, "%s", kp);
            continue;
        case T_CHECKS:
            if (!cJSON_IsArray(k)) {
                fail(c, kp, "expected an array of checks, got %s", type_name(k));
                goto fail;
            }
            checks_in = k;
            snprintf(checks_path, sizeof checks_path, "%s", kp);
            continue;
        default:
            if (want_obj(c, k, kp) < 0)
                goto fail;
            val = cJSON_Duplicate(k, 1);
            break;
        }
        if (val == NULL) {
            fail(c, kp, "out of memory");
            goto fail;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(out, d->canon);
        cJSON_AddItemToObject(out, d->canon, val);
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(out, "Name");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(out, "ID");
    if (!cJSON_IsString(name) || name->valuestring[0] == '\0') {
        join(kp, sizeof kp, path, "name");
        fail(c, kp, "missing service name");
        goto fail;
    }
    s->name = strdup(name->valuestring);
    s->id = strdup(cJSON_IsString(id) && id->valuestring[0] ? id->valuestring : name->valuestring);
    if (!cJSON_IsString(id)) {
        cJSON_DeleteItemFromObjectCaseSensitive(out, "ID");
        cJSON_AddStringToObject(out, "ID", s->id);
    }
    /* Ownership mark: a restarted sidecar can tell its registrations. */
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(out, "Meta");
    if (meta == NULL)
        meta = cJSON_AddObjectToObject(out, "Meta");
    cJSON_DeleteItemFromObjectCaseSensitive(meta, CONSUL_META_MANAGED_BY);
    cJSON_DeleteItemFromObjectCaseSensitive(meta, CONSUL_META_SIDECAR_NODE);
    cJSON_AddStringToObject(meta, CONSUL_META_MANAGED_BY, CONSUL_META_MANAGED_BY_VAL);
    cJSON_AddStringToObject(meta, CONSUL_META_SIDECAR_NODE, b->node);

    /* Checks: Check first, then Checks; IDs as Consul assigns them. */
    size_t total = (check_in ? 1 : 0) + (checks_in ? (size_t)cJSON_GetArraySize(checks_in) : 0);
    cJSON *checks_out = cJSON_CreateArray();
    s->checks = total ? calloc(total, sizeof *s->checks) : NULL;
    if (checks_out == NULL || (total && s->checks == NULL) || !s->name || !s->id)
        goto oom;
    const cJSON *list[2] = {check_in, checks_in};
    const char *paths[2] = {check_path, checks_path};
    size_t pos = 0;
    for (int li = 0; li < 2; li++) {
        if (list[li] == NULL)
            continue;
        int single = li == 0;
        const cJSON *items = list[li];
        int count = single ? 1 : cJSON_GetArraySize(items);
        for (int i = 0; i < count; i++) {
            const cJSON *ci = single ? items : cJSON_GetArrayItem(items, i);
            char cp[600];
            if (single)
                snprintf(cp, sizeof cp, "%s", paths[li]);
            else
                snprintf(cp, sizeof cp, "%s[%d]", paths[li], i);
            struct probe_spec spec;
            int has_probe;
            int64_t ttl;
            cJSON *cc = build_check(b, ci, cp, &spec, &has_probe, &ttl);
            if (cc == NULL)
                goto fail_checks;
            if (has_probe)
                probe_spec_free(&spec); /* parsed again below, with its check's ID */
            if (cJSON_GetArraySize(cc) == 0) {
                cJSON_Delete(cc);
                continue;
            }
            cJSON_AddItemToArray(checks_out, cc);
            pos++;
        }
    }
    /* Assign IDs now that the count is known. */
    size_t nchecks = (size_t)cJSON_GetArraySize(checks_out);
    pos = 0;
    cJSON *cc;
    cJSON_ArrayForEach(cc, checks_out) {
        const cJSON *cid = cJSON_GetObjectItemCaseSensitive(cc, "CheckID");
        const cJSON *cname = cJSON_GetObjectItemCaseSensitive(cc, "Name");
        char idbuf[600], namebuf[600];
        if (cJSON_IsString(cid) && cid->valuestring[0])
            snprintf(idbuf, sizeof idbuf, "%s", cid->valuestring);
        else if (nchecks == 1)
            snprintf(idbuf, sizeof idbuf, "service:%s", s->id);
        else
            snprintf(idbuf, sizeof idbuf, "service:%s:%zu", s->id, pos + 1);
        if (cJSON_IsString(cname))
            snprintf(namebuf, sizeof namebuf, "%s", cname->valuestring);
        else
            snprintf(namebuf, sizeof namebuf, "Service '%s' check", s->name);
        for (size_t j = 0; j < pos; j++) {
            if (strcmp(s->checks[j].check_id, idbuf) == 0) {
                fail(c, path, "two checks with the ID \"%.64s\"", idbuf);
                goto fail_checks;
            }
        }
        s->checks[pos].check_id = strdup(idbuf);
        s->checks[pos].name = strdup(namebuf);
        const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(cc, "TTL");
        int64_t ttl_ms = 0;
        if (cJSON_IsString(ttl))
            dur_parse_ms(ttl->valuestring, &ttl_ms);
        s->checks[pos].ttl_ms = ttl_ms;
        s->n_checks = pos + 1;
        if (!s->checks[pos].check_id || !s->checks[pos].name)
            goto oom;
        pos++;
    }
    /* Probes, matched to their checks in order (second pass over input). */
    pos = 0;
    for (int li = 0; li < 2; li++) {
        if (list[li] == NULL)
            continue;
        int single = li == 0;
        int count = single ? 1 : cJSON_GetArraySize(list[li]);
        for (int i = 0; i < count; i++) {
            const cJSON *ci = single ? list[li] : cJSON_GetArrayItem(list[li], i);
            if (cJSON_GetArraySize(ci) == 0)
                continue;
            const cJSON *pk;
            cJSON_ArrayForEach(pk, ci) {
                const struct keydef *d = lookup(check_keys, sizeof check_keys / sizeof check_keys[0],
                                                pk->string);
                if (d && d->type == T_PROBE) {
                    struct probe_spec spec;
                    char pp[600];
                    snprintf(pp, sizeof pp, "%s.probe", single ? paths[li] : "checks");
                    if (parse_probe(c, pk, pp, &spec) < 0 ||
                        add_probe(b, s->id, s->checks[pos].check_id, s->checks[pos].ttl_ms, &spec,
                                  cJSON_GetArrayItem(checks_out, (int)pos)) < 0) {
                        probe_spec_free(&spec);
                        goto fail_checks;
                    }
                }
            }
            pos++;
        }
    }
    if (nchecks > 0)
        cJSON_AddItemToObject(out, "Checks", checks_out);
    else
        cJSON_Delete(checks_out);
    s->definition = out;
    return 0;
oom:
    fail(c, path, "out of memory");
fail_checks:
    cJSON_Delete(checks_out);
fail:
    cJSON_Delete(out);
    free(s->id);
    free(s->name);
    for (size_t i = 0; i < s->n_checks; i++) {
        free(s->checks[i].check_id);
        free(s->checks[i].name);
    }
    free(s->checks);
    memset(s, 0, sizeof *s);
    return -1;
}

/* ---- files ------------------------------------------------------------------- */

/* A parsed file and where each accumulating item came from. */
struct source {
    char *file;
    cJSON *root;
};

static void line_col(const char *text, const char *at, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (const char *p = text; p < at && *p; p++) {
        if (*p == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static int read_json_file(const char *path, cJSON **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    struct buf b;
    buf_init(&b, CFG_MAX_FILE);
    char chunk[8192];
    size_t n;
    int too_big = 0;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (buf_append(&b, chunk, n) < 0) {
            too_big = 1;
            break;
        }
    int rerr = ferror(f);
    fclose(f);
    if (too_big || rerr) {
        snprintf(err, errlen, "%s: %s", path, too_big ? "file larger than 4 MiB" : "read error");
        buf_free(&b);
        return -1;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(b.data ? b.data : "", b.len, &end, 0);
    if (root == NULL) {
        int line, col;
        line_col(b.data ? b.data : "", end ? end : (b.data ? b.data + b.len : ""), &line, &col);
        snprintf(err, errlen, "%s: invalid JSON at line %d, column %d", path, line, col);
        buf_free(&b);
        return -1;
    }
    buf_free(&b);
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "%s: expected a JSON object at the top level", path);
        cJSON_Delete(root);
        return -1;
    }
    *out = root;
    return 0;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_source(struct source **srcs, size_t *n, const char *file, char *err, size_t errlen)
{
    if (*n >= CFG_MAX_FILES) {
        snprintf(err, errlen, "%s: more than %d configuration files", file, CFG_MAX_FILES);
        return -1;
    }
    cJSON *root;
    if (read_json_file(file, &root, err, errlen) < 0)
        return -1;
    struct source *s = realloc(*srcs, (*n + 1) * sizeof *s);
    if (s == NULL) {
        cJSON_Delete(root);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *srcs = s;
    s[*n].file = strdup(file);
    s[*n].root = root;
    (*n)++;
    return 0;
}

static int load_path(struct source **srcs, size_t *n, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return add_source(srcs, n, path, err, errlen);
    DIR *d = opendir(path);
    if (d == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t nn = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json") != 0 || e->d_name[0] == '.')
            continue;
        char **nw = realloc(names, (nn + 1) * sizeof *nw);
        if (nw == NULL) {
            rc = -1;
            break;
        }
        names = nw;
        names[nn++] = strdup(e->d_name);
    }
    closedir(d);
    if (nn)
        qsort(names, nn, sizeof *names, str_cmp);
    for (size_t i = 0; i < nn && rc == 0; i++) {
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", path, names[i]);
        rc = add_source(srcs, n, full, err, errlen);
    }
    for (size_t i = 0; i < nn; i++)
        free(names[i]);
    free(names);
    if (rc < 0 && err[0] == '\0')
        snprintf(err, errlen, "%s: out of memory", path);
    return rc;
}

/* ---- the sidecar's own settings ------------------------------------------------ */

/* watch.mode, in the order of SYNC_MODE_*. */
static const char *const watch_modes[] = {"auto", "streams", "detector"};

static const char *const top_keys[] = {
    "service", "services", "consul", "node", "deregister", "drain", "listen", "state_dir",
    "log_level", "log_format", "upstreams", "proxy", "watch",
};

/* Checks one file's settings (not services, built later) for key names and
 * types, so that errors name the right file. */
static int check_settings(struct ctx *c, const cJSON *root)
{
    if (known_keys(c, root, "", top_keys, sizeof top_keys / sizeof top_keys[0]) < 0)
        return -1;
    const cJSON *v;
    int64_t dv = 0;
    const char *sv = "";
    int iv = 0;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "consul"))) {
        static const char *const keys[] = {"address", "token", "token_file", "datacenter",
                                           "resync", "ca_file", "ca_path", "cert_file",
                                           "key_file", "tls_server_name", "ssl_verify"};
        if (want_obj(c, v, "consul") < 0 || known_keys(c, v, "consul", keys, 11) < 0)
            return -1;
        const cJSON *k;
        cJSON_ArrayForEach(k, v) {
            char kp[512];
            join(kp, sizeof kp, "consul", k->string);
            if (strcmp(k->string, "resync") == 0) {
                if (want_dur(c, k, kp, &dv) < 0)
                    return -1;
                if (dv < 100)
                    return fail(c, kp, "must be at least 100ms");
            } else if (strcmp(k->string, "ssl_verify") == 0) {
                if (want_bool(c, k, kp, &iv) < 0)
                    return -1;
            } else if (want_str(c, k, kp, &sv) < 0) {
                return -1;
            }
        }
    }
    static const char *const strs[] = {"node", "listen", "state_dir"};
    for (size_t i = 0; i < 3; i++)
        if ((v = cJSON_GetObjectItemCaseSensitive(root, strs[i])) && want_str(c, v, strs[i], &sv) < 0)
            return -1;
    static const char *const dereg[] = {"always", "on-success", "never"};
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "deregister")) &&
        want_enum(c, v, "deregister", dereg, 3, &iv) < 0)
        return -1;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "drain")) && want_nonneg_dur(c, v, "drain", &dv) < 0)
        return -1;
    static const char *const levels[] = {"trace", "debug", "info", "warn", "error"};
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "log_level")) &&
        want_enum(c, v, "log_level", levels, 5, &iv) < 0)
        return -1;
    static const char *const formats[] = {"text", "json"};
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "log_format")) &&
        want_enum(c, v, "log_format", formats, 2, &iv) < 0)
        return -1;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "watch"))) {
        static const char *const keys[] = {"wait", "stale", "quiescence", "hold_down",
                                           "max_blocking", "mode", "max_streams"};
        if (want_obj(c, v, "watch") < 0 || known_keys(c, v, "watch", keys, 7) < 0)
            return -1;
        const cJSON *w;
        long lv;
        if ((w = cJSON_GetObjectItemCaseSensitive(v, "wait"))) {
            if (want_dur(c, w, "watch.wait", &dv) < 0)
                return -1;
            if (dv < 1000 || dv > 600000)
                return fail(c, "watch.wait", "must be between 1s and 10m (Consul's cap)");
        }
        if ((w = cJSON_GetObjectItemCaseSensitive(v, "stale")) && want_bool(c, w, "watch.stale", &iv) < 0)
            return -1;
        if ((w = cJSON_GetObjectItemCaseSensitive(v, "hold_down")) &&
            want_nonneg_dur(c, w, "watch.hold_down", &dv) < 0)
            return -1;
        if ((w = cJSON_GetObjectItemCaseSensitive(v, "max_blocking")) &&
            want_int(c, w, "watch.max_blocking", 1, 100, &lv) < 0)
            return -1;
        if ((w = cJSON_GetObjectItemCaseSensitive(v, "max_streams")) &&
            want_int(c, w, "watch.max_streams", 1, 100000, &lv) < 0)
            return -1;
        if ((w = cJSON_GetObjectItemCaseSensitive(v, "mode")) &&
            want_enum(c, w, "watch.mode", watch_modes, 3, &iv) < 0)
            return -1;
        if ((w = cJSON_GetObjectItemCaseSensitive(v, "quiescence"))) {
            static const char *const qk[] = {"min", "max"};
            if (want_obj(c, w, "watch.quiescence") < 0 ||
                known_keys(c, w, "watch.quiescence", qk, 2) < 0)
                return -1;
            const cJSON *q;
            if ((q = cJSON_GetObjectItemCaseSensitive(w, "min")) &&
                want_nonneg_dur(c, q, "watch.quiescence.min", &dv) < 0)
                return -1;
            if ((q = cJSON_GetObjectItemCaseSensitive(w, "max")) &&
                want_nonneg_dur(c, q, "watch.quiescence.max", &dv) < 0)
                return -1;
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "proxy"))) {
        static const char *const kinds[] = {"kong", "haproxy", "nginx"};
        if (want_obj(c, v, "proxy") < 0 || known_keys(c, v, "proxy", kinds, 3) < 0)
            return -1;
        const cJSON *k;
        static const char *const kong_keys[] = {"admin_url", "token", "token_file",
                                                "upstream_defaults", "writer", "lock_prefix",
                                                "session_ttl", "lock_delay", "max_in_flight"};
        static const char *const hap_keys[] = {"runtime", "backend_prefix", "writer",
                                               "drain_timeout"};
        static const char *const ngx_keys[] = {"upstream_dir", "test_cmd", "reload_cmd", "writer"};
        static const char *const writers[] = {"elected", "per-node"};
        if ((k = cJSON_GetObjectItemCaseSensitive(v, "kong"))) {
            if (want_obj(c, k, "proxy.kong") < 0 || known_keys(c, k, "proxy.kong", kong_keys, 9) < 0)
                return -1;
            const cJSON *f;
            cJSON_ArrayForEach(f, k) {
                char kp[512];
                join(kp, sizeof kp, "proxy.kong", f->string);
                if (strcmp(f->string, "upstream_defaults") == 0) {
                    if (want_obj(c, f, kp) < 0)
                        return -1;
                } else if (strcmp(f->string, "writer") == 0) {
                    if (want_enum(c, f, kp, writers, 2, &iv) < 0)
                        return -1;
                } else if (strcmp(f->string, "max_in_flight") == 0) {
                    long mv;
                    if (want_int(c, f, kp, 1, 256, &mv) < 0)
                        return -1;
                } else if (strcmp(f->string, "session_ttl") == 0 ||
                           strcmp(f->string, "lock_delay") == 0) {
                    if (want_nonneg_dur(c, f, kp, &dv) < 0)
                        return -1;
                    if (strcmp(f->string, "lock_delay") == 0 && dv > 60000)
                        return fail(c, kp, "must be at most 60s (Consul's limit)");
                    if (strcmp(f->string, "session_ttl") == 0 && (dv < 1000 || dv > 86400000))
                        return fail(c, kp, "must be between 1s and 24h");
                } else if (want_str(c, f, kp, &sv) < 0) {
                    return -1;
                } else if (strcmp(f->string, "admin_url") == 0 && strncmp(sv, "http://", 7) &&
                           strncmp(sv, "https://", 8)) {
                    return fail(c, kp, "expected an http:// or https:// URL, got \"%.64s\"", sv);
                }
            }
        }
        if ((k = cJSON_GetObjectItemCaseSensitive(v, "haproxy"))) {
            if (want_obj(c, k, "proxy.haproxy") < 0 ||
                known_keys(c, k, "proxy.haproxy", hap_keys, 4) < 0)
                return -1;
            const cJSON *f;
            cJSON_ArrayForEach(f, k) {
                char kp[512];
                join(kp, sizeof kp, "proxy.haproxy", f->string);
                if (strcmp(f->string, "writer") == 0) {
                    if (want_enum(c, f, kp, writers, 2, &iv) < 0)
                        return -1;
                    if (strcmp(writers[iv], "per-node") != 0)
                        return fail(c, kp, "\"%s\" is for Kong only: each HAProxy keeps its own "
                                    "servers, so every node's sidecar writes them (per-node)",
                                    writers[iv]);
                } else if (strcmp(f->string, "drain_timeout") == 0) {
                    if (want_nonneg_dur(c, f, kp, &dv) < 0)
                        return -1;
                    if (dv > 3600000)
                        return fail(c, kp, "must be at most 1h");
                } else if (want_str(c, f, kp, &sv) < 0) {
                    return -1;
                } else if (strcmp(f->string, "runtime") == 0 && strncmp(sv, "unix:///", 8) &&
                           strncmp(sv, "tcp://", 6)) {
                    return fail(c, kp, "expected unix:///path or tcp://host:port, got \"%.64s\"", sv);
                }
            }
        }
        if ((k = cJSON_GetObjectItemCaseSensitive(v, "nginx"))) {
            if (want_obj(c, k, "proxy.nginx") < 0 || known_keys(c, k, "proxy.nginx", ngx_keys, 4) < 0)
                return -1;
            const cJSON *f;
            cJSON_ArrayForEach(f, k) {
                char kp[512];
                join(kp, sizeof kp, "proxy.nginx", f->string);
                if (strcmp(f->string, "writer") == 0 ? want_enum(c, f, kp, writers, 2, &iv) < 0
                                                     : want_str(c, f, kp, &sv) < 0)
                    return -1;
                if (strcmp(f->string, "writer") == 0 && strcmp(writers[iv], "per-node") != 0)
                    return fail(c, kp, "\"%s\" is for Kong only: each nginx renders its own "
                                "files, so every node's sidecar writes them (per-node)",
                                writers[iv]);
            }
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "upstreams"))) {
        if (!cJSON_IsArray(v))
            return fail(c, "upstreams", "expected an array, got %s", type_name(v));
        const cJSON *u;
        int i = 0;
        cJSON_ArrayForEach(u, v) {
            char up[64];
            snprintf(up, sizeof up, "upstreams[%d]", i++);
            static const char *const ukeys[] = {"service", "tags", "name", "proxy", "datacenter",
                                                "passing_only"};
            if (want_obj(c, u, up) < 0 || known_keys(c, u, up, ukeys, 6) < 0)
                return -1;
            const cJSON *f;
            cJSON_ArrayForEach(f, u) {
                char kp[512];
                join(kp, sizeof kp, up, f->string);
                if (strcmp(f->string, "passing_only") == 0) {
                    if (want_bool(c, f, kp, &iv) < 0)
                        return -1;
                } else if (strcmp(f->string, "tags") == 0) {
                    const cJSON *t;
                    if (!cJSON_IsArray(f))
                        return fail(c, kp, "expected an array of strings, got %s", type_name(f));
                    cJSON_ArrayForEach(t, f) if (!cJSON_IsString(t))
                        return fail(c, kp, "expected an array of strings");
                } else if (strcmp(f->string, "proxy") == 0) {
                    static const char *const kinds[] = {"kong", "haproxy", "nginx"};
                    if (want_enum(c, f, kp, kinds, 3, &iv) < 0)
                        return -1;
                } else if (want_str(c, f, kp, &sv) < 0) {
                    return -1;
                } else if (sv[0] == '\0') {
                    return fail(c, kp, "must not be empty");
                }
            }
            if (!cJSON_GetObjectItemCaseSensitive(u, "service")) {
                char kp[512];
                join(kp, sizeof kp, up, "service");
                return fail(c, kp, "required");
            }
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "service")) && want_obj(c, v, "service") < 0)
        return -1;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "services")) && !cJSON_IsArray(v))
        return fail(c, "services", "expected an array, got %s", type_name(v));
    return 0;
}

/* Merges src's settings into dst (objects key-wise, the rest later-wins). */
static void merge_into(cJSON *dst, const cJSON *src)
{
    const cJSON *k;
    cJSON_ArrayForEach(k, src) {
        if (!strcmp(k->string, "service") || !strcmp(k->string, "services") ||
            !strcmp(k->string, "upstreams"))
            continue;
        cJSON *existing = cJSON_GetObjectItemCaseSensitive(dst, k->string);
        if (cJSON_IsObject(existing) && cJSON_IsObject(k) && strcmp(k->string, "upstream_defaults")) {
            merge_into(existing, k);
            continue;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(dst, k->string);
        cJSON_AddItemToObject(dst, k->string, cJSON_Duplicate(k, 1));
    }
}

static const char *mstr(const cJSON *o, const char *path)
{
    /* path "a.b.c" */
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *cur = o;
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok && cur;
         tok = strtok_r(NULL, ".", &save))
        cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
    return cJSON_IsString(cur) ? cur->valuestring : NULL;
}

static const cJSON *mget(const cJSON *o, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *cur = o;
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok && cur;
         tok = strtok_r(NULL, ".", &save))
        cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
    return cur;
}

static int64_t mdur(const cJSON *o, const char *path, int64_t dflt)
{
    const cJSON *v = mget(o, path);
    int64_t ms;
    if (cJSON_IsString(v) && dur_parse_ms(v->valuestring, &ms) == 0)
        return ms;
    if (cJSON_IsNumber(v))
        return (int64_t)(v->valuedouble / 1e6);
    return dflt;
}

static int add_warning(struct config *cfg, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    char **n = realloc(cfg->warnings, (cfg->n_warnings + 1) * sizeof *n);
    if (n == NULL)
        return -1;
    cfg->warnings = n;
    cfg->warnings[cfg->n_warnings] = strdup(line);
    return cfg->warnings[cfg->n_warnings++] ? 0 : -1;
}

/* Reads a secret from a file once: whitespace trimmed; a file others can
 * read is a warning. */
static int read_token_file(struct config *cfg, const char *what, const char *path, char **out,
                           char *err, size_t errlen)
{
    struct stat st;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s %s: cannot read: %s", what, path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
        add_warning(cfg, "%s %s is readable by group or others (mode %03o); chmod 600 it", what,
                    path, (unsigned)(st.st_mode & 0777));
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *s = buf;
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t l = strlen(s);
    while (l && isspace((unsigned char)s[l - 1]))
        s[--l] = '\0';
    if (l == 0) {
        snprintf(err, errlen, "%s %s: the file is empty", what, path);
        return -1;
    }
    free(*out);
    *out = strdup(s);
    memset(buf, 0, sizeof buf);
    return *out ? 0 : -1;
}

static char *dup_opt(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

void config_free(struct config *cfg)
{
    free(cfg->consul_addr);
    if (cfg->token)
        memset(cfg->token, 0, strlen(cfg->token));
    free(cfg->token);
    free(cfg->datacenter);
    free(cfg->node);
    free((char *)cfg->tls.cacert);
    free((char *)cfg->tls.capath);
    free((char *)cfg->tls.client_cert);
    free((char *)cfg->tls.client_key);
    free((char *)cfg->tls.server_name);
    free(cfg->listen);
    free(cfg->state_dir);
    for (size_t i = 0; i < cfg->n_services; i++) {
        struct consul_service *s = &cfg->services[i];
        free(s->id);
        free(s->name);
        cJSON_Delete(s->definition);
        for (size_t j = 0; j < s->n_checks; j++) {
            free(s->checks[j].check_id);
            free(s->checks[j].name);
        }
        free(s->checks);
    }
    free(cfg->services);
    for (size_t i = 0; i < cfg->n_probes; i++) {
        free(cfg->probes[i].service_id);
        free(cfg->probes[i].check_id);
        probe_spec_free(&cfg->probes[i].spec);
    }
    free(cfg->probes);
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        struct cfg_upstream *u = &cfg->upstreams[i];
        free(u->name);
        free(u->service);
        free_strv(u->tags, u->n_tags);
        free(u->proxy);
        free(u->datacenter);
    }
    free(cfg->upstreams);
    free(cfg->kong.admin_url);
    if (cfg->kong.token)
        memset(cfg->kong.token, 0, strlen(cfg->kong.token));
    free(cfg->kong.token);
    cJSON_Delete(cfg->kong.upstream_defaults);
    free(cfg->kong.lock_key);
    free(cfg->haproxy.runtime);
    free(cfg->haproxy.backend_prefix);
    free(cfg->nginx.upstream_dir);
    free(cfg->nginx.test_cmd);
    free(cfg->nginx.reload_cmd);
    free_strv(cfg->warnings, cfg->n_warnings);
    memset(cfg, 0, sizeof *cfg);
}

/* ---- building the configuration -------------------------------------------------- */

static int build_upstream(struct ctx *c, const cJSON *u, const char *path, struct cfg_upstream *out)
{
    const char *svc = mstr(u, "service"), *name = mstr(u, "name"), *proxy = mstr(u, "proxy");
    const char *dc = mstr(u, "datacenter");
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(u, "tags");
    const cJSON *po = cJSON_GetObjectItemCaseSensitive(u, "passing_only");
    memset(out, 0, sizeof *out);
    out->service = strdup(svc);
    out->name = strdup(name ? name : svc);
    out->proxy = dup_opt(proxy);
    out->datacenter = dup_opt(dc);
    out->passing_only = po ? cJSON_IsTrue(po) : 1;
    int nt = cJSON_IsArray(tags) ? cJSON_GetArraySize(tags) : 0;
    out->tags = nt ? calloc((size_t)nt, sizeof *out->tags) : NULL;
    if (!out->service || !out->name || (proxy && !out->proxy) || (dc && !out->datacenter) ||
        (nt && !out->tags))
        return fail(c, path, "out of memory");
    const cJSON *t;
    cJSON_ArrayForEach(t, tags) {
        if ((out->tags[out->n_tags] = strdup(t->valuestring)) == NULL)
            return fail(c, path, "out of memory");
        out->n_tags++;
    }
    /* Kong, HAProxy and nginx all take the name into their own syntax. */
    for (const char *p = out->name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.') {
            char kp[512];
            join(kp, sizeof kp, path, "name");
            return fail(c, kp, "\"%.64s\": use letters, digits, '-', '_' and '.' only", out->name);
        }
    return 0;
}

static int apply_overrides(struct config *cfg, const struct config_overrides *o, const char *origin,
                           char *err, size_t errlen)
{
    if (o == NULL)
        return 0;
    struct {
        const char *v;
        char **dst;
    } strs[] = {
        {o->consul_addr, &cfg->consul_addr}, {o->datacenter, &cfg->datacenter},
        {o->node, &cfg->node},               {o->listen, &cfg->listen},
        {o->state_dir, &cfg->state_dir},
        {o->cacert, (char **)&cfg->tls.cacert}, {o->capath, (char **)&cfg->tls.capath},
        {o->client_cert, (char **)&cfg->tls.client_cert},
        {o->client_key, (char **)&cfg->tls.client_key},
        {o->tls_server_name, (char **)&cfg->tls.server_name},
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        if (strs[i].v == NULL)
            continue;
        free(*strs[i].dst);
        if ((*strs[i].dst = strdup(strs[i].v)) == NULL)
            goto oom;
    }
    if (o->token_file && read_token_file(cfg, "token file", o->token_file, &cfg->token, err, errlen) < 0)
        return -1;
    if (o->token) {
        free(cfg->token);
        if ((cfg->token = strdup(o->token)) == NULL)
            goto oom;
    }
    if (o->log_level && log_level_parse(o->log_level, &cfg->log_level) < 0) {
        snprintf(err, errlen, "%s log level: must be one of trace, debug, info, warn, error, got \"%.32s\"",
                 origin, o->log_level);
        return -1;
    }
    if (o->log_format && log_format_parse(o->log_format, &cfg->log_format) < 0) {
        snprintf(err, errlen, "%s log format: must be text or json, got \"%.32s\"", origin,
                 o->log_format);
        return -1;
    }
    int b;
    if (o->ssl_verify) {
        if (config_parse_bool(o->ssl_verify, &b) < 0) {
            snprintf(err, errlen, "CONSUL_HTTP_SSL_VERIFY: not a boolean: \"%.32s\"", o->ssl_verify);
            return -1;
        }
        cfg->tls.insecure = !b;
    }
    if (o->http_ssl) {
        if (config_parse_bool(o->http_ssl, &b) < 0) {
            snprintf(err, errlen, "CONSUL_HTTP_SSL: not a boolean: \"%.32s\"", o->http_ssl);
            return -1;
        }
        cfg->http_ssl = b;   /* applied once every source is in (config_load) */
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

int config_load(struct config *cfg, const char *const *paths, size_t n_paths,
                const struct config_overrides *env, const struct config_overrides *flags,
                char *err, size_t errlen)
{
    struct source *srcs = NULL;
    size_t n_srcs = 0;
    cJSON *merged = cJSON_CreateObject();
    struct ctx c = {.err = err, .errlen = errlen};
    memset(cfg, 0, sizeof *cfg);
    err[0] = '\0';
    if (merged == NULL)
        goto oom;

    for (size_t i = 0; i < n_paths; i++)
        if (load_path(&srcs, &n_srcs, paths[i], err, errlen) < 0)
            goto fail;
    for (size_t i = 0; i < n_srcs; i++) {
        c.file = srcs[i].file;
        if (check_settings(&c, srcs[i].root) < 0)
            goto fail;
        merge_into(merged, srcs[i].root);
    }

    /* Defaults, then files. */
    cfg->log_level = LOG_INFO;
    cfg->log_format = LOG_FORMAT_TEXT;
    const char *s;
    cfg->consul_addr = strdup((s = mstr(merged, "consul.address")) ? s : "127.0.0.1:8500");
    cfg->datacenter = dup_opt(mstr(merged, "consul.datacenter"));
    cfg->resync_ms = mdur(merged, "consul.resync", 30000);
    cfg->tls.cacert = dup_opt(mstr(merged, "consul.ca_file"));
    cfg->tls.capath = dup_opt(mstr(merged, "consul.ca_path"));
    cfg->tls.client_cert = dup_opt(mstr(merged, "consul.cert_file"));
    cfg->tls.client_key = dup_opt(mstr(merged, "consul.key_file"));
    cfg->tls.server_name = dup_opt(mstr(merged, "consul.tls_server_name"));
    const cJSON *v = mget(merged, "consul.ssl_verify");
    cfg->tls.insecure = cJSON_IsFalse(v);
    cfg->listen = strdup((s = mstr(merged, "listen")) ? s : "127.0.0.1:9108");
    cfg->state_dir = strdup((s = mstr(merged, "state_dir")) ? s : "/var/lib/consul-sidecar");
    if ((s = mstr(merged, "log_level")))
        log_level_parse(s, &cfg->log_level);
    if ((s = mstr(merged, "log_format")))
        log_format_parse(s, &cfg->log_format);
    s = mstr(merged, "deregister");
    cfg->deregister = !s || !strcmp(s, "always") ? DEREGISTER_ALWAYS
                      : !strcmp(s, "on-success") ? DEREGISTER_ON_SUCCESS : DEREGISTER_NEVER;
    cfg->drain_ms = mdur(merged, "drain", 5000);
    cfg->node = dup_opt(mstr(merged, "node"));
    if ((s = mstr(merged, "consul.token")))
        cfg->token = strdup(s);
    if ((s = mstr(merged, "consul.token_file")) &&
        read_token_file(cfg, "consul.token_file", s, &cfg->token, err, errlen) < 0)
        goto fail;
    /* Watch. */
    cfg->watch.wait_ms = mdur(merged, "watch.wait", 300000);
    cfg->watch.stale = cJSON_IsTrue(mget(merged, "watch.stale"));
    cfg->watch.quiescence_min_ms = mdur(merged, "watch.quiescence.min", 100);
    cfg->watch.quiescence_max_ms = mdur(merged, "watch.quiescence.max", 1000);
    cfg->watch.hold_down_ms = mdur(merged, "watch.hold_down", 10000);
    v = mget(merged, "watch.max_blocking");
    cfg->watch.max_blocking = cJSON_IsNumber(v) ? v->valueint : 8;
    v = mget(merged, "watch.max_streams");
    cfg->watch.max_streams = cJSON_IsNumber(v) ? v->valueint : 1000;
    cfg->watch.mode = SYNC_MODE_AUTO;
    if ((s = mstr(merged, "watch.mode")))
        for (int m = 0; m < 3; m++)
            if (strcmp(s, watch_modes[m]) == 0)
                cfg->watch.mode = m;
    if (cfg->watch.quiescence_min_ms > cfg->watch.quiescence_max_ms) {
        snprintf(err, errlen, "watch.quiescence: min (%lld ms) is larger than max (%lld ms)",
                 (long long)cfg->watch.quiescence_min_ms, (long long)cfg->watch.quiescence_max_ms);
        goto fail;
    }

    /* Environment, then flags. */
    if (apply_overrides(cfg, env, "environment", err, errlen) < 0 ||
        apply_overrides(cfg, flags, "flag", err, errlen) < 0)
        goto fail;
    /* CONSUL_HTTP_SSL=true: https for an address given without a scheme,
     * wherever it came from (file, CONSUL_HTTP_ADDR or -consul-addr), and
     * for the default one, as the consul CLI does. */
    if (cfg->http_ssl && (cfg->consul_addr == NULL || !strstr(cfg->consul_addr, "://"))) {
        const char *a = cfg->consul_addr ? cfg->consul_addr : "127.0.0.1:8500";
        char *https = malloc(strlen(a) + 9);
        if (https == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        snprintf(https, strlen(a) + 9, "https://%s", a);
        free(cfg->consul_addr);
        cfg->consul_addr = https;
    }
    if (cfg->node == NULL) {
        char host[256] = "";
        if (gethostname(host, sizeof host - 1) < 0 || host[0] == '\0')
            snprintf(host, sizeof host, "localhost");
        cfg->node = strdup(host);
    }
    if (!cfg->consul_addr || !cfg->listen || !cfg->state_dir || !cfg->node)
        goto oom;

    /* Proxies. */
    const cJSON *kong = mget(merged, "proxy.kong"), *hap = mget(merged, "proxy.haproxy");
    const cJSON *ngx = mget(merged, "proxy.nginx");
    if (kong) {
        cfg->kong.enabled = 1;
        cfg->kong.admin_url = strdup((s = mstr(kong, "admin_url")) ? s : "http://127.0.0.1:8001");
        if ((s = mstr(kong, "token")))
            cfg->kong.token = strdup(s);
        if ((s = mstr(kong, "token_file")) &&
            read_token_file(cfg, "proxy.kong.token_file", s, &cfg->kong.token, err, errlen) < 0)
            goto fail;
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(kong, "upstream_defaults");
        cfg->kong.upstream_defaults = d ? cJSON_Duplicate(d, 1) : NULL;
        s = mstr(kong, "writer");
        cfg->kong.writer_elected = !s || strcmp(s, "elected") == 0;
        /* No lock_prefix and no consul.datacenter: the key waits for the
         * agent's datacenter (lock_key_needs_dc; the daemon asks
         * /v1/agent/self and starts the election with it). */
        char key[512];
        key[0] = '\0';
        if ((s = mstr(kong, "lock_prefix")))
            snprintf(key, sizeof key, "%s", s);
        else {
            elect_default_key(cfg->datacenter ? cfg->datacenter : "dc1", key, sizeof key);
            cfg->kong.lock_key_needs_dc = cfg->datacenter == NULL;
        }
        cfg->kong.lock_key = strdup(key);
        cfg->kong.session_ttl_ms = mdur(kong, "session_ttl", 15000);
        cfg->kong.lock_delay_ms = mdur(kong, "lock_delay", 15000);
        const cJSON *mif = cJSON_GetObjectItemCaseSensitive(kong, "max_in_flight");
        cfg->kong.max_in_flight = cJSON_IsNumber(mif) ? mif->valueint : KONG_DEFAULT_MAX_IN_FLIGHT;
        if (!cfg->kong.admin_url || (key[0] && !cfg->kong.lock_key))
            goto oom;
    }
    if (hap) {
        cfg->haproxy.enabled = 1;
        cfg->haproxy.runtime = strdup((s = mstr(hap, "runtime")) ? s : "unix:///run/haproxy/admin.sock");
        cfg->haproxy.backend_prefix = strdup((s = mstr(hap, "backend_prefix")) ? s : "");
        cfg->haproxy.drain_timeout_ms = mdur(hap, "drain_timeout", 5000);
        if (!cfg->haproxy.runtime || !cfg->haproxy.backend_prefix)
            goto oom;
    }
    if (ngx) {
        cfg->nginx.enabled = 1;
        cfg->nginx.upstream_dir = strdup((s = mstr(ngx, "upstream_dir")) ? s : "/etc/nginx/conf.d");
        cfg->nginx.test_cmd = strdup((s = mstr(ngx, "test_cmd")) ? s : "nginx -t -q");
        cfg->nginx.reload_cmd = strdup((s = mstr(ngx, "reload_cmd")) ? s : "nginx -s reload");
        if (!cfg->nginx.upstream_dir || !cfg->nginx.test_cmd || !cfg->nginx.reload_cmd)
            goto oom;
    }
    int n_proxies = cfg->kong.enabled + cfg->haproxy.enabled + cfg->nginx.enabled;
    const char *only = cfg->kong.enabled ? "kong" : cfg->haproxy.enabled ? "haproxy" : "nginx";

    /* Services and upstreams, file by file (errors name their file). */
    for (size_t i = 0; i < n_srcs; i++) {
        c.file = srcs[i].file;
        const cJSON *one = cJSON_GetObjectItemCaseSensitive(srcs[i].root, "service");
        const cJSON *many = cJSON_GetObjectItemCaseSensitive(srcs[i].root, "services");
        size_t add = (one ? 1 : 0) + (many ? (size_t)cJSON_GetArraySize(many) : 0);
        if (add) {
            struct consul_service *n = realloc(cfg->services, (cfg->n_services + add) * sizeof *n);
            if (n == NULL)
                goto oom;
            cfg->services = n;
        }
        for (size_t k = 0; k < add; k++) {
            const cJSON *def = one && k == 0 ? one : cJSON_GetArrayItem(many, (int)(k - (one ? 1 : 0)));
            char path[64];
            if (one && k == 0)
                snprintf(path, sizeof path, "service");
            else
                snprintf(path, sizeof path, "services[%zu]", k - (one ? 1 : 0));
            struct svc_build b = {&c, cfg->node, &cfg->services[cfg->n_services], cfg->probes,
                                  cfg->n_probes};
            int rc = build_service(&b, def, path);
            cfg->probes = b.probes;
            cfg->n_probes = b.n_probes;
            if (rc < 0)
                goto fail;
            cfg->n_services++;
            for (size_t j = 0; j + 1 < cfg->n_services; j++) {
                if (strcmp(cfg->services[j].id, cfg->services[cfg->n_services - 1].id) == 0) {
                    fail(&c, path, "a second service with the ID \"%.64s\"", cfg->services[j].id);
                    goto fail;
                }
            }
        }
        const cJSON *ups = cJSON_GetObjectItemCaseSensitive(srcs[i].root, "upstreams");
        const cJSON *u;
        int ui = 0;
        cJSON_ArrayForEach(u, ups) {
            char path[64];
            snprintf(path, sizeof path, "upstreams[%d]", ui++);
            struct cfg_upstream *n = realloc(cfg->upstreams, (cfg->n_upstreams + 1) * sizeof *n);
            if (n == NULL)
                goto oom;
            cfg->upstreams = n;
            struct cfg_upstream *up = &cfg->upstreams[cfg->n_upstreams++];
            if (build_upstream(&c, u, path, up) < 0)
                goto fail;
            char kp[512];
            join(kp, sizeof kp, path, "proxy");
            if (up->proxy == NULL) {
                if (n_proxies == 0) {
                    fail(&c, kp, "no proxy is configured: add proxy.kong, proxy.haproxy or proxy.nginx");
                    goto fail;
                }
                if (n_proxies > 1) {
                    fail(&c, kp, "required when several proxies are configured");
                    goto fail;
                }
                if ((up->proxy = strdup(only)) == NULL)
                    goto oom;
            } else if ((!strcmp(up->proxy, "kong") && !cfg->kong.enabled) ||
                       (!strcmp(up->proxy, "haproxy") && !cfg->haproxy.enabled) ||
                       (!strcmp(up->proxy, "nginx") && !cfg->nginx.enabled)) {
                fail(&c, kp, "proxy \"%s\" is not configured under \"proxy\"", up->proxy);
                goto fail;
            }
            for (size_t j = 0; j + 1 < cfg->n_upstreams; j++) {
                if (strcmp(cfg->upstreams[j].name, up->name) == 0 &&
                    strcmp(cfg->upstreams[j].proxy, up->proxy) == 0) {
                    fail(&c, path, "a second upstream named \"%.64s\" for %s", up->name, up->proxy);
                    goto fail;
                }
            }
        }
    }
    for (size_t i = 0; i < n_srcs; i++) {
        free(srcs[i].file);
        cJSON_Delete(srcs[i].root);
    }
    free(srcs);
    cJSON_Delete(merged);
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    for (size_t i = 0; i < n_srcs; i++) {
        free(srcs[i].file);
        cJSON_Delete(srcs[i].root);
    }
    free(srcs);
    cJSON_Delete(merged);
    config_free(cfg);
    return -1;
}

/* ---- effective configuration ------------------------------------------------------ */

static void add_str(cJSON *o, const char *k, const char *v)
{
    if (v)
        cJSON_AddStringToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static void add_dur(cJSON *o, const char *k, int64_t ms)
{
    char b[32];
    cJSON_AddStringToObject(o, k, dur_format_ms(ms, b, sizeof b));
}

/* "http://user:pass@host/x" -> "http://<redacted>@host/x"; others as they are. */
static const char *redact_userinfo(const char *url, char *out, size_t len)
{
    const char *scheme = url ? strstr(url, "://") : NULL;
    if (scheme == NULL)
        return url;
    const char *host = scheme + 3, *end = host + strcspn(host, "/?#"), *at = NULL;
    for (const char *p = host; p < end; p++)
        if (*p == '@')
            at = p;
    if (at == NULL)
        return url;
    snprintf(out, len, "%.*s<redacted>%s", (int)(host - url), url, at);
    return out;
}

/* A check definition as -validate prints it: header values (they carry
 * credentials: Authorization, API keys) and URL passwords hidden. */
static void redact_check(cJSON *ck)
{
    if (!cJSON_IsObject(ck))
        return;
    cJSON *hdr = cJSON_GetObjectItemCaseSensitive(ck, "Header"), *h;
    cJSON_ArrayForEach(h, hdr) {
        cJSON *v;
        cJSON_ArrayForEach(v, h) if (cJSON_IsString(v)) cJSON_SetValuestring(v, "<redacted>");
    }
    cJSON *u = cJSON_GetObjectItemCaseSensitive(ck, "HTTP");
    char safe[2048];
    if (cJSON_IsString(u)) {
        const char *r = redact_userinfo(u->valuestring, safe, sizeof safe);
        if (r != u->valuestring)
            cJSON_SetValuestring(u, r);
    }
}

static void add_secret(cJSON *o, const char *k, const char *v)
{
    if (v)
        cJSON_AddStringToObject(o, k, "<redacted>");
    else
        cJSON_AddNullToObject(o, k);
}

char *config_effective_json(const struct config *cfg)
{
    static const char *const dereg[] = {"always", "on-success", "never"};
    cJSON *o = cJSON_CreateObject();
    cJSON *c = cJSON_AddObjectToObject(o, "consul");
    add_str(c, "address", cfg->consul_addr);
    add_secret(c, "token", cfg->token);
    add_str(c, "datacenter", cfg->datacenter);
    add_dur(c, "resync", cfg->resync_ms);
    add_str(c, "ca_file", cfg->tls.cacert);
    add_str(c, "ca_path", cfg->tls.capath);
    add_str(c, "cert_file", cfg->tls.client_cert);
    add_str(c, "key_file", cfg->tls.client_key);
    add_str(c, "tls_server_name", cfg->tls.server_name);
    cJSON_AddBoolToObject(c, "ssl_verify", !cfg->tls.insecure);
    add_str(o, "node", cfg->node);
    add_str(o, "deregister", dereg[cfg->deregister]);
    add_dur(o, "drain", cfg->drain_ms);
    add_str(o, "listen", cfg->listen);
    add_str(o, "state_dir", cfg->state_dir);
    add_str(o, "log_level", log_level_name(cfg->log_level));
    add_str(o, "log_format", cfg->log_format == LOG_FORMAT_JSON ? "json" : "text");
    cJSON *svcs = cJSON_AddArrayToObject(o, "services");
    for (size_t i = 0; i < cfg->n_services; i++) {
        cJSON *d = cJSON_Duplicate(cfg->services[i].definition, 1);
        if (cJSON_GetObjectItemCaseSensitive(d, "Token"))
            cJSON_ReplaceItemInObjectCaseSensitive(d, "Token", cJSON_CreateString("<redacted>"));
        redact_check(cJSON_GetObjectItemCaseSensitive(d, "Check"));
        const cJSON *ck;
        cJSON_ArrayForEach(ck, cJSON_GetObjectItemCaseSensitive(d, "Checks"))
            redact_check((cJSON *)ck);
        cJSON_AddItemToArray(svcs, d);
    }
    cJSON *probes = cJSON_AddArrayToObject(o, "probes");
    for (size_t i = 0; i < cfg->n_probes; i++) {
        const struct cfg_probe *p = &cfg->probes[i];
        cJSON *x = cJSON_CreateObject();
        add_str(x, "check_id", p->check_id);
        char safe[2048];
        add_str(x, p->spec.kind == PROBE_HTTP ? "http" : "tcp",
                redact_userinfo(p->spec.target, safe, sizeof safe));
        add_dur(x, "interval", p->spec.interval_ms);
        add_dur(x, "timeout", p->spec.timeout_ms);
        add_dur(x, "ttl", p->ttl_ms);
        cJSON_AddItemToArray(probes, x);
    }
    cJSON *ups = cJSON_AddArrayToObject(o, "upstreams");
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        const struct cfg_upstream *u = &cfg->upstreams[i];
        cJSON *x = cJSON_CreateObject();
        add_str(x, "name", u->name);
        add_str(x, "service", u->service);
        cJSON *t = cJSON_AddArrayToObject(x, "tags");
        for (size_t j = 0; j < u->n_tags; j++)
            cJSON_AddItemToArray(t, cJSON_CreateString(u->tags[j]));
        add_str(x, "proxy", u->proxy);
        add_str(x, "datacenter", u->datacenter);
        cJSON_AddBoolToObject(x, "passing_only", u->passing_only);
        cJSON_AddItemToArray(ups, x);
    }
    cJSON *px = cJSON_AddObjectToObject(o, "proxy");
    if (cfg->kong.enabled) {
        cJSON *k = cJSON_AddObjectToObject(px, "kong");
        add_str(k, "admin_url", cfg->kong.admin_url);
        add_secret(k, "token", cfg->kong.token);
        add_str(k, "writer", cfg->kong.writer_elected ? "elected" : "per-node");
        add_str(k, "lock_key", cfg->kong.lock_key_needs_dc
                                   ? "consul-sidecar/<the agent's datacenter>/kong-writer"
                                   : cfg->kong.lock_key);
        add_dur(k, "session_ttl", cfg->kong.session_ttl_ms);
        add_dur(k, "lock_delay", cfg->kong.lock_delay_ms);
        cJSON_AddNumberToObject(k, "max_in_flight", cfg->kong.max_in_flight);
        if (cfg->kong.upstream_defaults)
            cJSON_AddItemToObject(k, "upstream_defaults", cJSON_Duplicate(cfg->kong.upstream_defaults, 1));
    }
    if (cfg->haproxy.enabled) {
        cJSON *h = cJSON_AddObjectToObject(px, "haproxy");
        add_str(h, "runtime", cfg->haproxy.runtime);
        add_str(h, "backend_prefix", cfg->haproxy.backend_prefix);
        add_dur(h, "drain_timeout", cfg->haproxy.drain_timeout_ms);
    }
    if (cfg->nginx.enabled) {
        cJSON *n = cJSON_AddObjectToObject(px, "nginx");
        add_str(n, "upstream_dir", cfg->nginx.upstream_dir);
        add_str(n, "test_cmd", cfg->nginx.test_cmd);
        add_str(n, "reload_cmd", cfg->nginx.reload_cmd);
    }
    cJSON *w = cJSON_AddObjectToObject(o, "watch");
    add_dur(w, "wait", cfg->watch.wait_ms);
    cJSON_AddBoolToObject(w, "stale", cfg->watch.stale);
    cJSON *q = cJSON_AddObjectToObject(w, "quiescence");
    add_dur(q, "min", cfg->watch.quiescence_min_ms);
    add_dur(q, "max", cfg->watch.quiescence_max_ms);
    add_dur(w, "hold_down", cfg->watch.hold_down_ms);
    cJSON_AddNumberToObject(w, "max_blocking", cfg->watch.max_blocking);
    cJSON_AddStringToObject(w, "mode", watch_modes[cfg->watch.mode]);
    cJSON_AddNumberToObject(w, "max_streams", cfg->watch.max_streams);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}
