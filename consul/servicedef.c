/*
 * Service definitions, in Consul's own format, rewritten into Consul's
 * canonical register body; see servicedef.h.
 */
#include "consul/servicedef.h"

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
    enum {
        T_STR,
        T_BOOL,
        T_INT,
        T_DUR,
        T_STRLIST,
        T_OBJ,
        T_ANY,
        T_CHECK,
        T_CHECKS,
        T_META,
        T_WEIGHTS,
        T_HEADER,
        T_SECRET,
        T_STATUS
    } type;
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
        cJSON_ArrayForEach(e, v)
            if (!cJSON_IsString(e)) {
                jread_fail(c, kp, "expected an array of strings");
                return NULL;
            }
        return cJSON_Duplicate(v, 1);
    }
    default:
        return NULL;
    }
}

/* What a check's keys said, for the rules that span keys. */
struct check_seen {
    int64_t interval, ttl;
    int kinds;   /* HTTP, TCP, ... keys: how the agent runs it */
    int has_ext; /* the caller's extension key (a probe) */
};

/* A header map: each value a list of strings. A copy, or NULL. */
static cJSON *header_value(struct jread *c, const cJSON *k, const char *kp)
{
    const cJSON *h;
    if (jread_obj(c, k, kp) < 0)
        return NULL;
    cJSON_ArrayForEach(h, k) {
        char hp[600];
        snprintf(hp, sizeof hp, "%s (header \"%.64s\")", kp, h->string);
        cJSON *copy = plain_value(c, h, hp, T_STRLIST, 0, 0);
        if (copy == NULL)
            return NULL;
        cJSON_Delete(copy);
    }
    return cJSON_Duplicate(k, 1);
}

/* A duration as the agent takes it: the string as written, or a number of
 * nanoseconds written back as a Go duration. */
static cJSON *check_duration(struct jread *c, const struct keydef *d, const cJSON *k,
                             const char *kp, struct check_seen *seen)
{
    int64_t dv = 0;
    char buf[32];
    if (jread_nonneg_dur(c, k, kp, &dv) < 0)
        return NULL;
    if (strcmp(d->canon, "Interval") == 0)
        seen->interval = dv;
    if (strcmp(d->canon, "TTL") == 0)
        seen->ttl = dv;
    return cJSON_CreateString(cJSON_IsString(k) ? k->valuestring
                                                : dur_format_ms(dv, buf, sizeof buf));
}

/* One check key's canonical value (a new item), or NULL with c->failed (or
 * out of memory). */
static cJSON *check_value(struct jread *c, const struct keydef *d, const cJSON *k, const char *kp,
                          struct check_seen *seen)
{
    const char *sv = "";
    switch (d->type) {
    case T_STR:
    case T_BOOL:
    case T_INT:
        return plain_value(c, k, kp, d->type, 0, 1000000000L);
    case T_STATUS:
        if (jread_str(c, k, kp, &sv) < 0)
            return NULL;
        if (strcmp(sv, "passing") && strcmp(sv, "warning") && strcmp(sv, "critical")) {
            jread_fail(c, kp, "must be passing, warning or critical, got \"%.32s\"", sv);
            return NULL;
        }
        return cJSON_CreateString(sv);
    case T_DUR:
        return check_duration(c, d, k, kp, seen);
    case T_STRLIST:
        return plain_value(c, k, kp, d->type, 0, 0);
    case T_HEADER:
        return header_value(c, k, kp);
    default:
        return cJSON_Duplicate(k, 1);
    }
}

/* Whether key is the caller's extension key (matched as Consul matches). */
static int is_ext(const struct svc_build *b, const char *key)
{
    char folded[128], want[128];
    if (b->ext == NULL)
        return 0;
    fold_key(key, folded, sizeof folded);
    fold_key(b->ext->key, want, sizeof want);
    return strcmp(folded, want) == 0;
}

static int runs_itself(const char *canon)
{
    static const char *const kinds[] = {"HTTP",   "TCP",       "UDP",        "GRPC",
                                        "H2PING", "OSService", "ScriptArgs", "DockerContainerID"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(canon, kinds[i]) == 0)
            return 1;
    return 0;
}

/* The agent's rules across a check's keys (and the extension's: it feeds
 * a TTL check). */
static int check_rules(struct jread *c, const char *path, const cJSON *out,
                       const struct check_seen *seen, const char *ext)
{
    char why[160];
    snprintf(why, sizeof why, "%s needs ttl: the sidecar feeds a TTL check from it", ext);
    if (seen->interval > 0 && seen->ttl > 0)
        return jread_fail(c, path, "Interval and TTL cannot both be specified");
    if (seen->kinds > 0 && seen->interval <= 0 &&
        !cJSON_GetObjectItemCaseSensitive(out, "DockerContainerID"))
        return jread_fail(
            c, path, "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks");
    if (seen->kinds == 0 && !cJSON_GetObjectItemCaseSensitive(out, "AliasService") &&
        !cJSON_GetObjectItemCaseSensitive(out, "AliasNode") && seen->ttl <= 0)
        return jread_fail(c, path, "%s", seen->has_ext ? why : "TTL must be > 0 for TTL checks");
    if (seen->has_ext && seen->ttl <= 0)
        return jread_fail(c, path, "%s", why);
    return 0;
}

/* Validates one check object and returns its canonical form (new object);
 * the extension key, if any, is validated by the caller's hook and left
 * out. */
static cJSON *build_check(struct svc_build *b, const cJSON *in, const char *path, int64_t *ttl_ms)
{
    struct jread *c = b->c;
    char kp[512];
    cJSON *out = cJSON_CreateObject();
    struct check_seen seen = {0, 0, 0, 0};
    const cJSON *k;
    *ttl_ms = 0;
    if (out == NULL || jread_obj(c, in, path) < 0)
        goto fail;
    cJSON_ArrayForEach(k, in) {
        jread_join(kp, sizeof kp, path, k->string);
        if (is_ext(b, k->string)) {
            if (b->ext->check(b->ext->arg, c, k, kp) < 0)
                goto fail;
            seen.has_ext = 1;
            continue;
        }
        const struct keydef *d =
            lookup(check_keys, sizeof check_keys / sizeof check_keys[0], k->string);
        if (d == NULL) {
            jread_fail(c, path, "unknown key \"%.64s\"", k->string);
            goto fail;
        }
        cJSON *val = check_value(c, d, k, kp, &seen);
        if (c->failed)
            goto fail;
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
        seen.kinds += runs_itself(d->canon);
    }
    if (cJSON_GetArraySize(out) == 0 && !seen.has_ext)
        return out; /* an empty Check {} is ignored, as Consul does */
    if (check_rules(c, path, out, &seen, b->ext ? b->ext->key : "") < 0)
        goto fail;
    *ttl_ms = seen.ttl;
    return out;
fail:
    cJSON_Delete(out);
    return NULL;
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

/* The Check and Checks of a definition, in that order (either may be NULL),
 * with the key paths their errors name. */
struct check_inputs {
    const cJSON *list[2];
    char paths[2][512];
};

/* One service key's canonical value (a new item), or NULL (c->failed). The
 * Check and Checks keys are only noted in ci, to be built after the rest. */
static int service_value(struct jread *c, const struct keydef *d, const cJSON *k, const char *kp,
                         struct check_inputs *ci, cJSON **val)
{
    const char *sv = "";
    *val = NULL;
    switch (d->type) {
    case T_STR:
    case T_SECRET:
    case T_INT:
    case T_BOOL:
    case T_STRLIST:
        if ((*val = plain_value(c, k, kp, d->type, 0, 65535)) == NULL)
            return -1;
        sv = cJSON_IsString(*val) ? (*val)->valuestring : "";
        if (strcmp(d->canon, "Address") == 0 &&
            (!strcmp(sv, "0.0.0.0") || !strcmp(sv, "::") || !strcmp(sv, "[::]"))) {
            jread_fail(c, kp, "invalid service address \"%s\": a service must be reachable at it",
                       sv);
            cJSON_Delete(*val);
            *val = NULL;
            return -1;
        }
        return 0;
    case T_META:
        *val = meta_value(c, k, kp);
        return *val ? 0 : -1;
    case T_WEIGHTS:
        *val = weights_value(c, k, kp);
        return *val ? 0 : -1;
    case T_CHECK:
    case T_CHECKS: {
        int i = d->type == T_CHECKS;
        if (i && !cJSON_IsArray(k))
            return jread_fail(c, kp, "expected an array of checks, got %s", jread_type_name(k));
        ci->list[i] = k;
        snprintf(ci->paths[i], sizeof ci->paths[i], "%s", kp);
        return 0;
    }
    default:
        if (jread_obj(c, k, kp) < 0)
            return -1;
        *val = cJSON_Duplicate(k, 1);
        return 0;
    }
}

/* Reads every key of a definition into out, in canonical spelling (the
 * last of a repeated key wins). */
static int service_keys_read(struct jread *c, const cJSON *in, const char *path, cJSON *out,
                             struct check_inputs *ci)
{
    char kp[512];
    const cJSON *k;
    if (jread_obj(c, in, path) < 0)
        return -1;
    cJSON_ArrayForEach(k, in) {
        jread_join(kp, sizeof kp, path, k->string);
        const struct keydef *d =
            lookup(service_keys, sizeof service_keys / sizeof service_keys[0], k->string);
        cJSON *val;
        if (d == NULL)
            return jread_fail(c, path, "unknown key \"%.64s\"", k->string);
        if (service_value(c, d, k, kp, ci, &val) < 0)
            return c->failed ? -1 : jread_fail(c, kp, "out of memory");
        if (d->type == T_CHECK || d->type == T_CHECKS)
            continue;
        if (val == NULL)
            return jread_fail(c, kp, "out of memory");
        cJSON_DeleteItemFromObjectCaseSensitive(out, d->canon);
        cJSON_AddItemToObject(out, d->canon, val);
    }
    return 0;
}

/* Name and ID (the name when no ID is given), and the ownership mark by
 * which a restarted sidecar tells its registrations. */
static int service_identity(struct svc_build *b, const char *path, cJSON *out)
{
    struct consul_service *s = b->svc;
    char kp[512];
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(out, "Name");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(out, "ID");
    if (!cJSON_IsString(name) || name->valuestring[0] == '\0') {
        jread_join(kp, sizeof kp, path, "name");
        return jread_fail(b->c, kp, "missing service name");
    }
    s->name = strdup(name->valuestring);
    s->id = strdup(cJSON_IsString(id) && id->valuestring[0] ? id->valuestring : name->valuestring);
    if (!s->name || !s->id)
        return jread_fail(b->c, path, "out of memory");
    if (!cJSON_IsString(id)) {
        cJSON_DeleteItemFromObjectCaseSensitive(out, "ID");
        cJSON_AddStringToObject(out, "ID", s->id);
    }
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(out, "Meta");
    if (meta == NULL)
        meta = cJSON_AddObjectToObject(out, "Meta");
    cJSON_DeleteItemFromObjectCaseSensitive(meta, CONSUL_META_MANAGED_BY);
    cJSON_DeleteItemFromObjectCaseSensitive(meta, CONSUL_META_SIDECAR_NODE);
    cJSON_AddStringToObject(meta, CONSUL_META_MANAGED_BY, CONSUL_META_MANAGED_BY_VAL);
    cJSON_AddStringToObject(meta, CONSUL_META_SIDECAR_NODE, b->node);
    return 0;
}

/* The i-th check object of ci (over Check, then Checks' items) into *item
 * and its path; 0 past the last. */
static int check_input_at(const struct check_inputs *ci, int li, int i, const cJSON **item,
                          char *cp, size_t cplen)
{
    if (ci->list[li] == NULL)
        return 0;
    if (li == 0) {
        if (i > 0)
            return 0;
        *item = ci->list[0];
        snprintf(cp, cplen, "%s", ci->paths[0]);
        return 1;
    }
    if (i >= cJSON_GetArraySize(ci->list[1]))
        return 0;
    *item = cJSON_GetArrayItem(ci->list[1], i);
    snprintf(cp, cplen, "%s[%d]", ci->paths[1], i);
    return 1;
}

/* Every check, validated and canonical, into checks_out (an empty Check {}
 * is dropped, as Consul does). */
static int checks_build(struct svc_build *b, const struct check_inputs *ci, cJSON *checks_out)
{
    for (int li = 0; li < 2; li++) {
        const cJSON *item;
        char cp[600];
        for (int i = 0; check_input_at(ci, li, i, &item, cp, sizeof cp); i++) {
            int64_t ttl;
            cJSON *cc = build_check(b, item, cp, &ttl);
            if (cc == NULL)
                return -1;
            if (cJSON_GetArraySize(cc) == 0)
                cJSON_Delete(cc);
            else
                cJSON_AddItemToArray(checks_out, cc);
        }
    }
    return 0;
}

/* IDs and names as Consul assigns them: "service:<id>" for a lone check,
 * "service:<id>:<n>" for several; two checks with one ID are refused. */
static int checks_name(struct svc_build *b, const char *path, const cJSON *checks_out)
{
    struct consul_service *s = b->svc;
    size_t nchecks = (size_t)cJSON_GetArraySize(checks_out), pos = 0;
    const cJSON *cc;
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
        for (size_t j = 0; j < pos; j++)
            if (strcmp(s->checks[j].check_id, idbuf) == 0)
                return jread_fail(b->c, path, "two checks with the ID \"%.64s\"", idbuf);
        s->checks[pos].check_id = strdup(idbuf);
        s->checks[pos].name = strdup(namebuf);
        const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(cc, "TTL");
        int64_t ttl_ms = 0;
        if (cJSON_IsString(ttl))
            dur_parse_ms(ttl->valuestring, &ttl_ms);
        s->checks[pos].ttl_ms = ttl_ms;
        s->n_checks = pos + 1;
        if (!s->checks[pos].check_id || !s->checks[pos].name)
            return jread_fail(b->c, path, "out of memory");
        pos++;
    }
    return 0;
}

/* The extension's values (probes), handed to the caller's hook with their
 * checks' IDs, in order (a second pass over the input, now that each check
 * has its ID). */
static int ext_attach(struct svc_build *b, const struct check_inputs *ci, cJSON *checks_out)
{
    struct consul_service *s = b->svc;
    size_t pos = 0;
    for (int li = 0; b->ext && li < 2; li++) {
        const cJSON *item;
        char cp[600];
        for (int i = 0; check_input_at(ci, li, i, &item, cp, sizeof cp); i++) {
            if (cJSON_GetArraySize(item) == 0)
                continue;
            const cJSON *pk;
            cJSON_ArrayForEach(pk, item) {
                char pp[600];
                if (!is_ext(b, pk->string))
                    continue;
                snprintf(pp, sizeof pp, "%s.%s", li == 0 ? ci->paths[0] : "checks", b->ext->key);
                if (b->ext->attach(b->ext->arg, b->c, pk, pp, s->id, s->checks[pos].check_id,
                                   s->checks[pos].ttl_ms,
                                   cJSON_GetArrayItem(checks_out, (int)pos)) < 0)
                    return -1;
            }
            pos++;
        }
    }
    return 0;
}

/* Builds one consul_service from a definition object (see servicedef.h):
 * its keys, its identity, then its checks and their extension values. */
int servicedef_build(struct svc_build *b, const cJSON *in, const char *path)
{
    struct consul_service *s = b->svc;
    struct check_inputs ci = {{NULL, NULL}, {"", ""}};
    cJSON *out = cJSON_CreateObject(), *checks_out = cJSON_CreateArray();
    memset(s, 0, sizeof *s);
    if (out == NULL || checks_out == NULL) {
        jread_fail(b->c, path, "out of memory");
        goto fail;
    }
    if (service_keys_read(b->c, in, path, out, &ci) < 0 || service_identity(b, path, out) < 0)
        goto fail;
    size_t total = (ci.list[0] ? 1 : 0) + (ci.list[1] ? (size_t)cJSON_GetArraySize(ci.list[1]) : 0);
    s->checks = total ? calloc(total, sizeof *s->checks) : NULL;
    if (total && s->checks == NULL) {
        jread_fail(b->c, path, "out of memory");
        goto fail;
    }
    if (checks_build(b, &ci, checks_out) < 0 || checks_name(b, path, checks_out) < 0 ||
        ext_attach(b, &ci, checks_out) < 0)
        goto fail;
    if (cJSON_GetArraySize(checks_out) > 0)
        cJSON_AddItemToObject(out, "Checks", checks_out);
    else
        cJSON_Delete(checks_out);
    s->definition = out;
    return 0;
fail:
    cJSON_Delete(checks_out);
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
