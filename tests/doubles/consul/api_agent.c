/* The agent endpoints of the Consul double: registration, TTL checks,
 * maintenance, self and members. The state changes they make: api_node.c. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/dur.h"
#include "tests/doubles/consul/api_int.h"

/* ---- registration --------------------------------------------------------------- */

static const char *const SERVICE_KEYS[] = {"ID",
                                           "Name",
                                           "Tags",
                                           "Address",
                                           "TaggedAddresses",
                                           "tagged_addresses",
                                           "Meta",
                                           "Port",
                                           "SocketPath",
                                           "Kind",
                                           "Proxy",
                                           "Connect",
                                           "Weights",
                                           "Token",
                                           "EnableTagOverride",
                                           "enable_tag_override",
                                           "Check",
                                           "Checks",
                                           "Locality",
                                           NULL};
static const char *const CHECK_KEYS[] = {"CheckID",
                                         "Name",
                                         "Status",
                                         "Notes",
                                         "ScriptArgs",
                                         "Args",
                                         "args",
                                         "script_args",
                                         "HTTP",
                                         "Header",
                                         "Method",
                                         "Body",
                                         "DisableRedirects",
                                         "TCP",
                                         "UDP",
                                         "GRPC",
                                         "GRPCUseTLS",
                                         "H2PING",
                                         "H2PingUseTLS",
                                         "OSService",
                                         "AliasNode",
                                         "AliasService",
                                         "DockerContainerID",
                                         "Shell",
                                         "TLSServerName",
                                         "TLSSkipVerify",
                                         "Interval",
                                         "Timeout",
                                         "TTL",
                                         "DeregisterCriticalServiceAfter",
                                         "deregister_critical_service_after",
                                         "SuccessBeforePassing",
                                         "FailuresBeforeWarning",
                                         "FailuresBeforeCritical",
                                         "OutputMaxSize",
                                         "ServiceID",
                                         "service_id",
                                         "ID",
                                         NULL};

struct parsed_check {
    char id[256], name[256], notes[512], status[16], type[32], interval[32], timeout[32];
    int64_t ttl_ms, dereg_ms, interval_ms;
    int has_status;
};

/* The agent's rules on a check's kind: TTL and Interval exclusive, an
 * Interval for the kinds the agent runs, a TTL otherwise; a known Status. */
static int check_kind_rules(struct parsed_check *pc, int64_t ttl, int64_t interval, int embedded,
                            char *err, size_t len)
{
    int needs_interval = pc->type[0] && strcmp(pc->type, "alias") && strcmp(pc->type, "docker");
    if (interval > 0 && ttl > 0) {
        snprintf(err, len, "Invalid check: Interval and TTL cannot both be specified");
        return -1;
    }
    if (needs_interval && interval <= 0) {
        snprintf(
            err, len,
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks");
        return -1;
    }
    if (!pc->type[0]) {
        if (ttl <= 0) {
            snprintf(err, len, "Invalid check: TTL must be > 0 for TTL checks");
            return -1;
        }
        snprintf(pc->type, sizeof pc->type, "ttl");
    }
    if (pc->has_status && strcmp(pc->status, "passing") && strcmp(pc->status, "warning") &&
        strcmp(pc->status, "critical")) {
        snprintf(err, len,
                 embedded ? "Status for checks must 'passing', 'warning', 'critical'"
                          : "Bad check status");
        return -1;
    }
    return 0;
}

static int parse_check(const cJSON *in, struct parsed_check *pc, int embedded, char *err,
                       size_t len)
{
    memset(pc, 0, sizeof *pc);
    const cJSON *k;
    cJSON_ArrayForEach(k, in) {
        const char *cn = canon(k->string, CHECK_KEYS);
        if (cn == NULL || (embedded && strcmp(cn, "ID") == 0)) {
            snprintf(err, len, "Request decode failed: json: unknown field \"%s\"", k->string);
            return 400;
        }
    }
    const cJSON *v;
    int64_t ttl = 0, interval = 0, timeout = 0, dereg = 0;
    char derr[200];
    if ((v = iget(in, "TTL")) && json_dur(v, &ttl, derr, sizeof derr) < 0)
        goto bad_dur;
    if ((v = iget(in, "Interval")) && json_dur(v, &interval, derr, sizeof derr) < 0)
        goto bad_dur;
    if ((v = iget(in, "Timeout")) && json_dur(v, &timeout, derr, sizeof derr) < 0)
        goto bad_dur;
    if ((v = iget2(in, "DeregisterCriticalServiceAfter", "deregister_critical_service_after")) &&
        json_dur(v, &dereg, derr, sizeof derr) < 0)
        goto bad_dur;
    const cJSON *id = embedded ? iget(in, "CheckID") : iget2(in, "ID", "CheckID");
    const cJSON *name = iget(in, "Name"), *notes = iget(in, "Notes"), *st = iget(in, "Status");
    if (cJSON_IsString(id))
        snprintf(pc->id, sizeof pc->id, "%s", id->valuestring);
    if (cJSON_IsString(name))
        snprintf(pc->name, sizeof pc->name, "%s", name->valuestring);
    if (cJSON_IsString(notes))
        snprintf(pc->notes, sizeof pc->notes, "%s", notes->valuestring);
    if (cJSON_IsString(st)) {
        snprintf(pc->status, sizeof pc->status, "%s", st->valuestring);
        pc->has_status = 1;
    }
    const char *types[][2] = {{"HTTP", "http"},
                              {"TCP", "tcp"},
                              {"UDP", "udp"},
                              {"GRPC", "grpc"},
                              {"H2PING", "h2ping"},
                              {"OSService", "os_service"},
                              {"DockerContainerID", "docker"},
                              {"AliasService", "alias"},
                              {"AliasNode", "alias"},
                              {"ScriptArgs", "script"},
                              {"Args", "script"}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (iget(in, types[i][0]) && !pc->type[0])
            snprintf(pc->type, sizeof pc->type, "%s", types[i][1]);
    if (check_kind_rules(pc, ttl, interval, embedded, err, len) < 0)
        return 400;
    pc->ttl_ms = ttl;
    pc->interval_ms = interval;
    pc->dereg_ms = dereg;
    char b[32];
    if (interval > 0)
        snprintf(pc->interval, sizeof pc->interval, "%s", dur_format_ms(interval, b, sizeof b));
    else if (!embedded)
        snprintf(pc->interval, sizeof pc->interval, "0s");
    if (timeout > 0)
        snprintf(pc->timeout, sizeof pc->timeout, "%s", dur_format_ms(timeout, b, sizeof b));
    else if (!embedded)
        snprintf(pc->timeout, sizeof pc->timeout, "0s");
    return 0;
bad_dur:
    snprintf(err, len, "Request decode failed: %s", derr);
    return 400;
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

static struct check *install_check(struct node *n, const struct parsed_check *pc,
                                   const char *service_id)
{
    struct check *k = check_find(n, pc->id);
    uint64_t idx = bump();
    if (k == NULL) {
        k = check_slot(n);
        if (k == NULL)
            return NULL;
        memset(k, 0, sizeof *k);
        k->used = 1;
        snprintf(k->id, sizeof k->id, "%s", pc->id);
        k->status = pc->has_status ? (!strcmp(pc->status, "passing")   ? ST_PASSING
                                      : !strcmp(pc->status, "warning") ? ST_WARNING
                                                                       : ST_CRITICAL)
                                   : ST_CRITICAL;
        k->output = strdup("");
        k->create_index = idx;
        if (k->ttl_ms == 0 && pc->ttl_ms > 0)
            k->ttl_deadline = now_ms() + (uint64_t)pc->ttl_ms;
    }
    /* Re-registering keeps the current status and output. */
    snprintf(k->name, sizeof k->name, "%s", pc->name);
    snprintf(k->notes, sizeof k->notes, "%s", pc->notes);
    snprintf(k->service_id, sizeof k->service_id, "%s", service_id ? service_id : "");
    snprintf(k->type, sizeof k->type, "%s", pc->type);
    snprintf(k->interval, sizeof k->interval, "%s", pc->interval);
    snprintf(k->timeout, sizeof k->timeout, "%s", pc->timeout);
    if (pc->ttl_ms > 0 && k->ttl_ms != pc->ttl_ms)
        k->ttl_deadline = now_ms() + (uint64_t)pc->ttl_ms;
    k->ttl_ms = pc->ttl_ms;
    k->dereg_ms = pc->dereg_ms;
    k->modify_index = idx;
    S.checks_index = idx;
    return k;
}

/* A registration body's fields, as the agent's decoder reads them. */
struct reg {
    const cJSON *name, *id, *addr, *port, *tags, *meta, *weights, *eto, *check, *checks, *tagged;
    int wp, ww; /* weights, defaults filled in */
    struct parsed_check pcs[64];
    int npc;
};

/* Go's decoder: unknown fields and wrong types. NULL when it decodes. */
static const char *reg_decode(const cJSON *in, struct reg *g, char *err, size_t len)
{
    const cJSON *k;
    cJSON_ArrayForEach(k, in) {
        if (canon(k->string, SERVICE_KEYS) == NULL) {
            snprintf(err, len, "Request decode failed: json: unknown field \"%s\"", k->string);
            return err;
        }
    }
    g->name = iget(in, "Name"), g->id = iget(in, "ID"), g->addr = iget(in, "Address");
    g->port = iget(in, "Port"), g->tags = iget(in, "Tags"), g->meta = iget(in, "Meta");
    g->weights = iget(in, "Weights");
    g->eto = iget2(in, "EnableTagOverride", "enable_tag_override");
    g->check = iget(in, "Check"), g->checks = iget(in, "Checks");
    g->tagged = iget2(in, "TaggedAddresses", "tagged_addresses");
    if ((g->port && !cJSON_IsNumber(g->port)) ||
        (g->tags && !cJSON_IsNull(g->tags) && !cJSON_IsArray(g->tags)) ||
        (g->meta && !cJSON_IsNull(g->meta) && !cJSON_IsObject(g->meta)) ||
        (g->name && !cJSON_IsString(g->name)) ||
        (g->checks && !cJSON_IsNull(g->checks) && !cJSON_IsArray(g->checks)))
        return "Request decode failed: json: cannot unmarshal value into a field of the wrong type";
    return NULL;
}

/* Weights with the agent's defaults and bounds. NULL when valid. */
static const char *reg_weights(struct reg *g)
{
    g->wp = g->ww = 1;
    if (!cJSON_IsObject(g->weights))
        return NULL;
    const cJSON *p = iget(g->weights, "Passing"), *w = iget(g->weights, "Warning");
    g->wp = cJSON_IsNumber(p) ? p->valueint : 0;
    g->ww = cJSON_IsNumber(w) ? w->valueint : 0;
    if (g->wp < 1)
        return "Invalid Weights: Passing must be greater than 0";
    if (g->ww < 0)
        return "Invalid Weights: Warning must be greater or equal than 0";
    if (g->wp > 65535 || g->ww > 65535)
        return "Invalid Weights: DNS Weight must be between 0 and 65535";
    return NULL;
}

/* Meta as the agent validates it. NULL when valid. */
static const char *reg_meta(const cJSON *meta, char *err, size_t len)
{
    const cJSON *m;
    if (!cJSON_IsObject(meta))
        return NULL;
    if (cJSON_GetArraySize(meta) > 64)
        return "Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs";
    cJSON_ArrayForEach(m, meta) {
        const char *why = NULL;
        if (m->string[0] == '\0')
            why = "Key cannot be blank";
        else if (strncmp(m->string, "consul-", 7) == 0)
            why = "Key prefix 'consul-' is reserved for internal use";
        else if (!valid_meta_key(m->string))
            why = strlen(m->string) > 128 ? "Key is too long (limit: 128 characters)"
                                          : "Key contains invalid characters";
        else if (cJSON_IsString(m) && strlen(m->valuestring) > 512)
            why = "Value is too long (limit: 512 characters)";
        if (why) {
            snprintf(err, len, "Invalid Service Meta: Couldn't load metadata pair ('%s', '%s'): %s",
                     m->string, cJSON_IsString(m) ? m->valuestring : "", why);
            return err;
        }
    }
    return NULL;
}

/* The embedded Check and Checks, parsed, with the IDs and names the agent
 * gives them. 0, or the status to answer err with. */
static int reg_checks(struct reg *g, const char *sid, char *err, size_t len)
{
    const cJSON *list[64], *ce;
    int nl = 0;
    if (cJSON_IsObject(g->check) && cJSON_GetArraySize(g->check) > 0)
        list[nl++] = g->check;
    cJSON_ArrayForEach(ce, g->checks)
        if (nl < 64)
            list[nl++] = ce;
    for (g->npc = 0; g->npc < nl; g->npc++) {
        int st = parse_check(list[g->npc], &g->pcs[g->npc], 1, err, len);
        if (st)
            return st;
    }
    for (int i = 0; i < g->npc; i++) {
        struct parsed_check *pc = &g->pcs[i];
        if (!pc->id[0] && g->npc == 1)
            snprintf(pc->id, sizeof pc->id, "service:%s", sid);
        else if (!pc->id[0])
            snprintf(pc->id, sizeof pc->id, "service:%s:%d", sid, i + 1);
        if (!pc->name[0])
            snprintf(pc->name, sizeof pc->name, "Service '%s' check", g->name->valuestring);
    }
    return 0;
}

/* ?replace-existing-checks (empty or true): the service's checks not in
 * this registration go (maintenance aside). With S.mu held. */
static void reg_replace_checks(struct MHD_Connection *c, struct node *n, const struct service *s,
                               const struct reg *g)
{
    const char *rep = NULL;
    size_t rl = 0;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "replace-existing-checks", 23, &rep,
                                      &rl) != MHD_YES ||
        !(rep == NULL || *rep == '\0' || strcmp(rep, "true") == 0))
        return;
    for (int i = 0; i < S.maxn; i++) {
        struct check *old = &n->checks[i];
        if (!old->used || strcmp(old->service_id, s->id) != 0 ||
            strncmp(old->id, "_service_maintenance:", 21) == 0)
            continue;
        int keep = 0;
        for (int j = 0; j < g->npc; j++)
            keep |= strcmp(g->pcs[j].id, old->id) == 0;
        if (!keep) {
            S.checks_index = bump();
            touch_check_service(n, old, S.checks_index);
            check_free_slot(old);
        }
    }
}

/* Writes the registration into the agent's node: new, or re-registered in
 * place (keeping its checks' status and output). */
static enum MHD_Result reg_store(struct agent *a, struct MHD_Connection *c, const struct reg *g,
                                 const char *sid)
{
    pthread_mutex_lock(&S.mu);
    struct node *n = a->node;
    struct service *s = svc_find(n, sid);
    uint64_t idx = bump();
    for (int i = 0; i < S.maxn && s == NULL; i++)
        if (!n->services[i].used) {
            s = &n->services[i];
            memset(s, 0, sizeof *s);
            s->used = 1;
            s->create_index = idx;
            snprintf(s->id, sizeof s->id, "%s", sid);
        }
    if (s == NULL) {
        pthread_mutex_unlock(&S.mu);
        return reply_text(c, 500, "too many services on this agent (double limit)");
    }
    snprintf(s->name, sizeof s->name, "%s", g->name->valuestring);
    snprintf(s->address, sizeof s->address, "%s",
             cJSON_IsString(g->addr) ? g->addr->valuestring : "");
    s->port = cJSON_IsNumber(g->port) ? g->port->valueint : 0;
    cJSON_Delete(s->tags);
    cJSON_Delete(s->meta);
    cJSON_Delete(s->tagged);
    s->tags = cJSON_IsArray(g->tags) ? cJSON_Duplicate(g->tags, 1) : cJSON_CreateArray();
    s->meta = cJSON_IsObject(g->meta) ? cJSON_Duplicate(g->meta, 1) : cJSON_CreateObject();
    s->tagged = cJSON_IsObject(g->tagged) ? cJSON_Duplicate(g->tagged, 1) : NULL;
    s->w_passing = g->wp;
    s->w_warning = g->ww;
    s->tag_override = cJSON_IsTrue(g->eto);
    s->modify_index = idx;
    S.services_index = idx;
    for (int i = 0; i < g->npc; i++)
        install_check(n, &g->pcs[i], s->id);
    reg_replace_checks(c, n, s, g);
    changed();
    pthread_mutex_unlock(&S.mu);
    return empty_ok(c);
}

/* PUT /v1/agent/service/register: decoded, then validated in the agent's
 * order (name, address, weights, meta, checks), then stored. */
static enum MHD_Result service_register(struct agent *a, struct MHD_Connection *c, const char *body,
                                        size_t len)
{
    char err[600];
    static const struct reg zero;
    const char *why = NULL;
    enum MHD_Result ret;
    if (len == 0)
        return reply_text(c, 400, "Request decode failed: EOF");
    struct reg *g = malloc(sizeof *g); /* 64 parsed checks: not for a thread's stack */
    cJSON *in = cJSON_ParseWithLength(body, len);
    if (in == NULL || g == NULL) {
        free(g);
        cJSON_Delete(in);
        return reply_text(c, 400, "Request decode failed: unexpected EOF");
    }
    *g = zero;
    if (!cJSON_IsObject(in))
        why =
            "Request decode failed: json: cannot unmarshal into Go value of type structs.ServiceDefinition";
    else if ((why = reg_decode(in, g, err, sizeof err)) != NULL)
        ;
    else if (!cJSON_IsString(g->name) || g->name->valuestring[0] == '\0')
        why = "Missing service name";
    else if (cJSON_IsString(g->addr) &&
             (!strcmp(g->addr->valuestring, "0.0.0.0") || !strcmp(g->addr->valuestring, "::") ||
              !strcmp(g->addr->valuestring, "[::]")))
        why = "Invalid service address";
    else if ((why = reg_weights(g)) == NULL)
        why = reg_meta(g->meta, err, sizeof err);
    const char *sid = why                                              ? ""
                      : cJSON_IsString(g->id) && g->id->valuestring[0] ? g->id->valuestring
                                                                       : g->name->valuestring;
    int st = why ? 400 : reg_checks(g, sid, err, sizeof err);
    if (why || st)
        ret = reply_text(c, (unsigned)(why ? 400 : st), why ? why : err);
    else
        ret = reg_store(a, c, g, sid);
    cJSON_Delete(in);
    free(g);
    return ret;
}

static enum MHD_Result check_register(struct agent *a, struct MHD_Connection *c, const char *body,
                                      size_t len)
{
    char err[600];
    if (len == 0)
        return reply_text(c, 400, "Request decode failed: EOF");
    cJSON *in = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(in)) {
        cJSON_Delete(in);
        return reply_text(c, 400, "Request decode failed: unexpected EOF");
    }
    struct parsed_check pc;
    int st = parse_check(in, &pc, 0, err, sizeof err);
    const cJSON *name = iget(in, "Name"), *sid = iget2(in, "ServiceID", "service_id");
    enum MHD_Result ret;
    if (st) {
        ret = reply_text(c, (unsigned)st, err);
    } else if (!cJSON_IsString(name) || !name->valuestring[0]) {
        ret = reply_text(c, 400, "Missing check name");
    } else {
        if (!pc.id[0])
            snprintf(pc.id, sizeof pc.id, "%s", name->valuestring);
        pthread_mutex_lock(&S.mu);
        if (cJSON_IsString(sid) && sid->valuestring[0] && !svc_find(a->node, sid->valuestring)) {
            pthread_mutex_unlock(&S.mu);
            snprintf(err, sizeof err, "ServiceID \"%s\" does not exist", sid->valuestring);
            ret = reply_text(c, 404, err);
        } else {
            install_check(a->node, &pc, cJSON_IsString(sid) ? sid->valuestring : NULL);
            changed();
            pthread_mutex_unlock(&S.mu);
            ret = empty_ok(c);
        }
    }
    cJSON_Delete(in);
    return ret;
}

static enum MHD_Result unknown_check(struct MHD_Connection *c, const char *id)
{
    char err[600];
    snprintf(err, sizeof err,
             "Unknown check ID \"%s\". Ensure that the check ID is passed, not the check name.",
             id);
    return reply_text(c, 404, err);
}

static enum MHD_Result ttl_update(struct agent *a, struct MHD_Connection *c, const char *id,
                                  enum cstatus st, const char *output)
{
    char err[600];
    pthread_mutex_lock(&S.mu);
    struct check *k = check_find(a->node, id);
    if (k == NULL) {
        pthread_mutex_unlock(&S.mu);
        return unknown_check(c, id);
    }
    if (k->ttl_ms <= 0) {
        pthread_mutex_unlock(&S.mu);
        snprintf(err, sizeof err, "CheckID \"%s\" does not have associated TTL", id);
        return reply_text(c, 500, err);
    }
    check_update(k, st, output);
    pthread_mutex_unlock(&S.mu);
    return empty_ok(c);
}

static enum MHD_Result maintenance(struct agent *a, struct MHD_Connection *c, const char *id)
{
    char err[600];
    const char *en = arg(c, "enable");
    int on;
    if (id[0] == '\0')
        return reply_text(c, 400, "Missing service ID");
    if (en == NULL)
        return reply_text(c, 400, "Missing value for enable");
    if (parse_bool(en, &on) < 0) {
        snprintf(err, sizeof err, "Invalid value for enable: \"%s\"", en);
        return reply_text(c, 400, err);
    }
    pthread_mutex_lock(&S.mu);
    struct service *s = svc_find(a->node, id);
    if (s == NULL) {
        pthread_mutex_unlock(&S.mu);
        snprintf(
            err, sizeof err,
            "Unknown service ID \"%s\". Ensure that the service ID is passed, not the service name.",
            id);
        return reply_text(c, 404, err);
    }
    char cid[300];
    snprintf(cid, sizeof cid, "_service_maintenance:%s", id);
    struct check *k = check_find(a->node, cid);
    if (on && k == NULL) {
        k = check_slot(a->node);
        if (k) {
            const char *reason = arg(c, "reason");
            memset(k, 0, sizeof *k);
            k->used = 1;
            snprintf(k->id, sizeof k->id, "%s", cid);
            snprintf(k->name, sizeof k->name, "Service Maintenance Mode");
            snprintf(
                k->notes, sizeof k->notes, "%s",
                reason && *reason
                    ? reason
                    : "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.");
            snprintf(k->service_id, sizeof k->service_id, "%s", id);
            snprintf(k->type, sizeof k->type, "maintenance");
            k->status = ST_CRITICAL;
            k->output = strdup("");
            k->create_index = k->modify_index = bump();
            S.checks_index = k->modify_index;
        }
    } else if (!on && k != NULL) {
        S.checks_index = bump();
        touch_check_service(a->node, k, S.checks_index);
        check_free_slot(k);
    }
    changed();
    pthread_mutex_unlock(&S.mu);
    return empty_ok(c);
}

/* ---- handlers -------------------------------------------------------------------- */

enum MHD_Result h_service_register(const struct req *r)
{
    return service_register(r->a, r->c, r->body, r->body_len);
}

enum MHD_Result h_check_register(const struct req *r)
{
    return check_register(r->a, r->c, r->body, r->body_len);
}

enum MHD_Result h_service_deregister(const struct req *r)
{
    char err[600];
    pthread_mutex_lock(&S.mu);
    struct service *s = svc_find(r->a->node, r->rest);
    if (s == NULL) {
        pthread_mutex_unlock(&S.mu);
        snprintf(
            err, sizeof err,
            "Unknown service ID \"%s\". Ensure that the service ID is passed, not the service name.",
            r->rest);
        return reply_text(r->c, 404, err);
    }
    remove_service(r->a->node, s);
    pthread_mutex_unlock(&S.mu);
    return empty_ok(r->c);
}

enum MHD_Result h_check_deregister(const struct req *r)
{
    pthread_mutex_lock(&S.mu);
    struct check *k = check_find(r->a->node, r->rest);
    if (k == NULL) {
        pthread_mutex_unlock(&S.mu);
        return unknown_check(r->c, r->rest);
    }
    S.checks_index = bump();
    touch_check_service(r->a->node, k, S.checks_index);
    check_free_slot(k);
    changed();
    pthread_mutex_unlock(&S.mu);
    return empty_ok(r->c);
}

static enum MHD_Result ttl_note(const struct req *r, enum cstatus st)
{
    const char *note = arg(r->c, "note");
    return ttl_update(r->a, r->c, r->rest, st, note ? note : "");
}

enum MHD_Result h_check_pass(const struct req *r)
{
    return ttl_note(r, ST_PASSING);
}

enum MHD_Result h_check_warn(const struct req *r)
{
    return ttl_note(r, ST_WARNING);
}

enum MHD_Result h_check_fail(const struct req *r)
{
    return ttl_note(r, ST_CRITICAL);
}

/* PUT /v1/agent/check/update/:id with {"Status": ..., "Output": ...}. */
enum MHD_Result h_check_update(const struct req *r)
{
    static const char *const names[] = {"passing", "warning", "critical"};
    static const enum cstatus states[] = {ST_PASSING, ST_WARNING, ST_CRITICAL};
    cJSON *in = cJSON_ParseWithLength(r->body, r->body_len);
    const cJSON *st = iget(in, "Status"), *out = iget(in, "Output");
    const char *sv = cJSON_IsString(st) ? st->valuestring : "";
    enum MHD_Result ret = MHD_NO;
    int i = 0;
    while (i < 3 && strcmp(sv, names[i]) != 0)
        i++;
    if (i == 3) {
        char err[600];
        snprintf(err, sizeof err, "Invalid check status: '%s'", sv);
        ret = reply_text(r->c, 400, err);
    } else {
        ret =
            ttl_update(r->a, r->c, r->rest, states[i], cJSON_IsString(out) ? out->valuestring : "");
    }
    cJSON_Delete(in);
    return ret;
}

enum MHD_Result h_service_maintenance(const struct req *r)
{
    return maintenance(r->a, r->c, r->rest);
}

/* Node maintenance is accepted and has no effect here. */
enum MHD_Result h_node_maintenance(const struct req *r)
{
    return empty_ok(r->c);
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp((*(cJSON *const *)a)->string, (*(cJSON *const *)b)->string);
}

/* Go sorts map keys: rebuild the object in key order. */
static cJSON *sorted(cJSON *o)
{
    int n = cJSON_GetArraySize(o);
    cJSON **items = calloc((size_t)(n ? n : 1), sizeof *items);
    int k = 0;
    while (o->child) {
        items[k++] = cJSON_DetachItemViaPointer(o, o->child);
    }
    qsort(items, (size_t)k, sizeof *items, key_cmp);
    for (int i = 0; i < k; i++)
        cJSON_AddItemToObject(o, items[i]->string, items[i]);
    free(items);
    return o;
}

/* The agent's services or checks, as an object by ID in key order. */
static enum MHD_Result agent_map(const struct req *r, int checks)
{
    const struct node *n = r->a->node;
    pthread_mutex_lock(&S.mu);
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < S.maxn; i++) {
        if (checks && n->checks[i].used)
            cJSON_AddItemToObject(o, n->checks[i].id, check_json(n, &n->checks[i], 1));
        else if (!checks && n->services[i].used)
            cJSON_AddItemToObject(o, n->services[i].id, agent_service_json(&n->services[i]));
    }
    pthread_mutex_unlock(&S.mu);
    apply_filter(r->c, o);
    return json_reply(r->c, 200, sorted(o), NULL);
}

enum MHD_Result h_agent_services(const struct req *r)
{
    return agent_map(r, 0);
}

enum MHD_Result h_agent_checks(const struct req *r)
{
    return agent_map(r, 1);
}

/* One service, with the ContentHash Consul adds (FNV-1a of its JSON). */
enum MHD_Result h_agent_service(const struct req *r)
{
    pthread_mutex_lock(&S.mu);
    struct service *s = svc_find(r->a->node, r->rest);
    if (s == NULL) {
        pthread_mutex_unlock(&S.mu);
        char err[600];
        snprintf(err, sizeof err, "unknown service ID: %s", r->rest);
        return reply_text(r->c, 404, err);
    }
    cJSON *o = agent_service_json(s);
    pthread_mutex_unlock(&S.mu);
    char *txt = cJSON_PrintUnformatted(o);
    char hash[32];
    uint64_t h = 1469598103934665603ull;
    for (const char *p = txt; p && *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    free(txt);
    snprintf(hash, sizeof hash, "%016" PRIx64, h);
    cJSON_AddStringToObject(o, "ContentHash", hash);
    const char *hd[] = {"X-Consul-Contenthash", hash, NULL};
    return json_reply(r->c, 200, o, hd);
}

enum MHD_Result h_agent_members(const struct req *r)
{
    pthread_mutex_lock(&S.mu);
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < 64; i++) {
        const struct node *n = &S.nodes[i];
        if (!n->used)
            continue;
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "Name", n->name);
        cJSON_AddStringToObject(m, "Addr", n->address);
        cJSON_AddNumberToObject(m, "Port", 8301);
        cJSON *t = cJSON_AddObjectToObject(m, "Tags");
        cJSON_AddStringToObject(t, "dc", S.dc);
        cJSON_AddStringToObject(t, "role", n->server ? "consul" : "node");
        if (n->server)
            cJSON_AddStringToObject(t, "port", "8300");
        cJSON_AddStringToObject(t, "build", "1.17.3:");
        cJSON_AddNumberToObject(m, "Status", n->status);
        cJSON_AddNumberToObject(m, "ProtocolMin", 1);
        cJSON_AddNumberToObject(m, "ProtocolMax", 5);
        cJSON_AddNumberToObject(m, "ProtocolCur", 2);
        cJSON_AddNumberToObject(m, "DelegateMin", 2);
        cJSON_AddNumberToObject(m, "DelegateMax", 5);
        cJSON_AddNumberToObject(m, "DelegateCur", 4);
        cJSON_AddItemToArray(arr, m);
    }
    pthread_mutex_unlock(&S.mu);
    return json_reply(r->c, 200, arr, NULL);
}

enum MHD_Result h_agent_self(const struct req *r)
{
    const struct node *n = r->a->node;
    pthread_mutex_lock(&S.mu);
    cJSON *o = cJSON_CreateObject();
    cJSON *cfg = cJSON_AddObjectToObject(o, "Config");
    cJSON_AddStringToObject(cfg, "Datacenter", S.dc);
    cJSON_AddStringToObject(cfg, "PrimaryDatacenter", S.dc);
    cJSON_AddStringToObject(cfg, "NodeName", n->name);
    cJSON_AddStringToObject(cfg, "NodeID", "00000000-0000-4000-8000-000000000000");
    cJSON_AddStringToObject(cfg, "Revision", "double");
    cJSON_AddBoolToObject(cfg, "Server", 0);
    cJSON_AddStringToObject(cfg, "Version", "1.17.3");
    cJSON_AddStringToObject(cfg, "BuildDate", "2024-01-01T00:00:00Z");
    cJSON *dbg = cJSON_AddObjectToObject(o, "DebugConfig");
    cJSON_AddStringToObject(dbg, "Datacenter", S.dc);
    cJSON_AddStringToObject(dbg, "NodeName", n->name);
    cJSON *coord = cJSON_AddObjectToObject(o, "Coord");
    cJSON *vec = cJSON_AddArrayToObject(coord, "Vec");
    for (int i = 0; i < 8; i++)
        cJSON_AddItemToArray(vec, cJSON_CreateNumber(0));
    cJSON_AddNumberToObject(coord, "Error", 1.5);
    cJSON_AddNumberToObject(coord, "Adjustment", 0);
    cJSON_AddNumberToObject(coord, "Height", 1e-5);
    cJSON *m = cJSON_AddObjectToObject(o, "Member");
    cJSON_AddStringToObject(m, "Name", n->name);
    cJSON_AddStringToObject(m, "Addr", n->address);
    cJSON_AddNumberToObject(m, "Port", 8301);
    cJSON *tags = cJSON_AddObjectToObject(m, "Tags");
    cJSON_AddStringToObject(tags, "dc", S.dc);
    cJSON_AddStringToObject(tags, "role", "node");
    cJSON_AddNumberToObject(m, "Status", n->status);
    cJSON_AddItemToObject(o, "Stats", cJSON_CreateObject());
    cJSON_AddItemToObject(o, "Meta", cJSON_CreateObject());
    pthread_mutex_unlock(&S.mu);
    return json_reply(r->c, 200, o, NULL);
}
