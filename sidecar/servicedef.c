/*
 * Service definitions, in Consul's own format, rewritten into Consul's
 * canonical register body; see servicedef.h.
 */
#include "sidecar/servicedef.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/dur.h"

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


static int parse_probe(struct jread *c, const cJSON *p, const char *path, struct probe_spec *spec)
{
    static const char *const keys[] = {"http", "tcp", "interval", "timeout", "method",
                                       "tls_skip_verify"};
    char kp[512];
    if (jread_obj(c, p, path) < 0 || jread_keys(c, p, path, keys, 6) < 0)
        return -1;
    memset(spec, 0, sizeof *spec);
    const cJSON *http = cJSON_GetObjectItemCaseSensitive(p, "http");
    const cJSON *tcp = cJSON_GetObjectItemCaseSensitive(p, "tcp");
    if ((http != NULL) == (tcp != NULL))
        return jread_fail(c, path, "needs exactly one of \"http\" or \"tcp\"");
    const char *target = "", *method = NULL;
    jread_join(kp, sizeof kp, path, http ? "http" : "tcp");
    if (jread_str(c, http ? http : tcp, kp, &target) < 0)
        return -1;
    if (http && strncmp(target, "http://", 7) != 0 && strncmp(target, "https://", 8) != 0)
        return jread_fail(c, kp, "expected an http:// or https:// URL, got \"%.64s\"", target);
    if (tcp && (strchr(target, ':') == NULL || strstr(target, "://")))
        return jread_fail(c, kp, "expected host:port, got \"%.64s\"", target);
    spec->kind = http ? PROBE_HTTP : PROBE_TCP;
    spec->interval_ms = 10000;
    spec->timeout_ms = 0;
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(p, "interval"))) {
        jread_join(kp, sizeof kp, path, "interval");
        if (jread_dur(c, v, kp, &spec->interval_ms) < 0)
            return -1;
        if (spec->interval_ms < 100)
            return jread_fail(c, kp, "must be at least 100ms");
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(p, "timeout"))) {
        jread_join(kp, sizeof kp, path, "timeout");
        if (jread_dur(c, v, kp, &spec->timeout_ms) < 0)
            return -1;
        if (spec->timeout_ms <= 0)
            return jread_fail(c, kp, "must be positive");
    }
    if (spec->timeout_ms == 0)
        spec->timeout_ms = spec->interval_ms < 10000 ? spec->interval_ms : 10000;
    if ((v = cJSON_GetObjectItemCaseSensitive(p, "method"))) {
        jread_join(kp, sizeof kp, path, "method");
        if (jread_str(c, v, kp, &method) < 0)
            return -1;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(p, "tls_skip_verify"))) {
        jread_join(kp, sizeof kp, path, "tls_skip_verify");
        if (jread_bool(c, v, kp, &spec->tls_skip_verify) < 0)
            return -1;
    }
    /* Allocate only once everything validated: a failure leaks nothing. */
    spec->target = strdup(target);
    spec->method = method ? strdup(method) : NULL;
    if (spec->target == NULL || (method && spec->method == NULL)) {
        free(spec->target);
        free(spec->method);
        spec->target = spec->method = NULL;
        return jread_fail(c, path, "out of memory");
    }
    return 0;
}

/* The plain value kinds both service and check keys use: a copy of v after
 * checking its type (ints within [min, max]); NULL on error (c->failed). */
static cJSON *plain_value(struct jread *c, const cJSON *v, const char *kp, int type, long min,
                          long max)
{
    const char *sv = "";
    long iv = 0;
    int bv = 0;
    switch (type) {
    case T_STR:
    case T_SECRET:
        return jread_str(c, v, kp, &sv) < 0 ? NULL : cJSON_CreateString(sv);
    case T_INT:
        return jread_int(c, v, kp, min, max, &iv) < 0 ? NULL : cJSON_CreateNumber((double)iv);
    case T_BOOL:
        return jread_bool(c, v, kp, &bv) < 0 ? NULL : cJSON_CreateBool(bv);
    case T_STRLIST: {
        const cJSON *e;
        if (!cJSON_IsArray(v)) {
            jread_fail(c, kp, "expected an array of strings, got %s", jread_type_name(v));
            return NULL;
        }
        cJSON_ArrayForEach(e, v) if (!cJSON_IsString(e)) {
            jread_fail(c, kp, "expected an array of strings");
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
    struct jread *c = b->c;
    char kp[512];
    cJSON *out = cJSON_CreateObject();
    int64_t interval = 0, ttl = 0;
    int kinds = 0;
    *has_probe = 0;
    *ttl_ms = 0;
    if (out == NULL || jread_obj(c, in, path) < 0)
        goto fail;
    const cJSON *k;
    cJSON_ArrayForEach(k, in) {
        jread_join(kp, sizeof kp, path, k->string);
        const struct keydef *d = lookup(check_keys, sizeof check_keys / sizeof check_keys[0],
                                        k->string);
        if (d == NULL) {
            jread_fail(c, path, "unknown key \"%.64s\"", k->string);
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
            if (jread_str(c, k, kp, &sv) < 0)
                goto fail;
            if (strcmp(sv, "passing") && strcmp(sv, "warning") && strcmp(sv, "critical")) {
                jread_fail(c, kp, "must be passing, warning or critical, got \"%.32s\"", sv);
                goto fail;
            }
            val = cJSON_CreateString(sv);
            break;
        case T_DUR:
            if (jread_nonneg_dur(c, k, kp, &dv) < 0)
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
            if (jread_obj(c, k, kp) < 0)
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
            jread_fail(c, kp, "out of memory");
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
        jread_fail(c, path, "Interval and TTL cannot both be specified");
        goto fail;
    }
    if (kinds > 0 && interval <= 0 && !cJSON_GetObjectItemCaseSensitive(out, "DockerContainerID")) {
        jread_fail(c, path, "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks");
        goto fail;
    }
    if (kinds == 0 && !cJSON_GetObjectItemCaseSensitive(out, "AliasService") &&
        !cJSON_GetObjectItemCaseSensitive(out, "AliasNode")) {
        if (ttl <= 0) {
            jread_fail(c, path, *has_probe ? "probe needs ttl: the sidecar feeds a TTL check from it"
                                     : "TTL must be > 0 for TTL checks");
            goto fail;
        }
    }
    if (*has_probe && ttl <= 0) {
        jread_fail(c, path, "probe needs ttl: the sidecar feeds a TTL check from it");
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

void probe_spec_free(struct probe_spec *s)
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

/* Meta, checked as the agent checks it: a copy, or NULL (c->failed, or out
 * of memory). */
static cJSON *meta_value(struct jread *c, const cJSON *k, const char *kp)
{
    if (jread_obj(c, k, kp) < 0)
        return NULL;
    if (cJSON_GetArraySize(k) > 62) {
        jread_fail(c, kp, "more than 62 pairs (64 minus the sidecar's two ownership keys)");
        return NULL;
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, k) {
        if (!cJSON_IsString(m)) {
            jread_fail(c, kp, "value of \"%.64s\": expected a string", m->string);
            return NULL;
        }
        if (!valid_meta_key(m->string)) {
            jread_fail(c, kp, "key \"%.64s\": only letters, digits, '-' and '_', 1-128 chars",
                 m->string);
            return NULL;
        }
        if (strncmp(m->string, "consul-", 7) == 0) {
            jread_fail(c, kp, "key \"%.64s\": prefix 'consul-' is reserved for internal use",
                 m->string);
            return NULL;
        }
        if (strlen(m->valuestring) > 512) {
            jread_fail(c, kp, "value of \"%.64s\" is longer than 512 characters", m->string);
            return NULL;
        }
    }
    return cJSON_Duplicate(k, 1);
}

/* Weights, with Consul's defaults filled in: a new object, or NULL. */
static cJSON *weights_value(struct jread *c, const cJSON *k, const char *kp)
{
    static const char *const wk[] = {"Passing", "Warning", "passing", "warning"};
    long pv = 1, wv = 1;
    if (jread_obj(c, k, kp) < 0 || jread_keys(c, k, kp, wk, 4) < 0)
        return NULL;
    const cJSON *p = cJSON_GetObjectItem(k, "Passing"), *w = cJSON_GetObjectItem(k, "Warning");
    char sub[600];
    snprintf(sub, sizeof sub, "%s.Passing", kp);
    if (p && jread_int(c, p, sub, 1, 65535, &pv) < 0)
        return NULL;
    snprintf(sub, sizeof sub, "%s.Warning", kp);
    if (w && jread_int(c, w, sub, 0, 65535, &wv) < 0)
        return NULL;
    cJSON *val = cJSON_CreateObject();
    if (val && (!cJSON_AddNumberToObject(val, "Passing", (double)pv) ||
                !cJSON_AddNumberToObject(val, "Warning", (double)wv))) {
        cJSON_Delete(val);
        return NULL;
    }
    return val;
}

/* Builds one consul_service from a definition object (see servicedef.h). */
int servicedef_build(struct svc_build *b, const cJSON *in, const char *path)
{
    struct jread *c = b->c;
    char kp[512];
    struct consul_service *s = b->svc;
    cJSON *out = cJSON_CreateObject();
    const cJSON *check_in = NULL, *checks_in = NULL;
    char check_path[512] = "", checks_path[512] = "";
    memset(s, 0, sizeof *s);
    if (out == NULL || jread_obj(c, in, path) < 0)
        goto fail;
    const cJSON *k;
    cJSON_ArrayForEach(k, in) {
        jread_join(kp, sizeof kp, path, k->string);
        const struct keydef *d = lookup(service_keys, sizeof service_keys / sizeof service_keys[0],
                                        k->string);
        if (d == NULL) {
            jread_fail(c, path, "unknown key \"%.64s\"", k->string);
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
                jread_fail(c, kp, "invalid service address \"%s\": a service must be reachable at it", sv);
                cJSON_Delete(val);
                goto fail;
            }
            break;
        case T_META:
            val = meta_value(c, k, kp);
            break;
        case T_WEIGHTS:
            val = weights_value(c, k, kp);
            break;
        case T_CHECK:
            check_in = k;
            snprintf(check_path, sizeof check_path, "%s", kp);
            continue;
        case T_CHECKS:
            if (!cJSON_IsArray(k)) {
                jread_fail(c, kp, "expected an array of checks, got %s", jread_type_name(k));
                goto fail;
            }
            checks_in = k;
            snprintf(checks_path, sizeof checks_path, "%s", kp);
            continue;
        default:
            if (jread_obj(c, k, kp) < 0)
                goto fail;
            val = cJSON_Duplicate(k, 1);
            break;
        }
        if (val == NULL) {
            jread_fail(c, kp, "out of memory");
            goto fail;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(out, d->canon);
        cJSON_AddItemToObject(out, d->canon, val);
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(out, "Name");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(out, "ID");
    if (!cJSON_IsString(name) || name->valuestring[0] == '\0') {
        jread_join(kp, sizeof kp, path, "name");
        jread_fail(c, kp, "missing service name");
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
                jread_fail(c, path, "two checks with the ID \"%.64s\"", idbuf);
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
    jread_fail(c, path, "out of memory");
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
