/*
 * The Consul HTTP API on an agent's port, reproducing the behaviours listed
 * in the Consul API spec this project follows (routing, error texts, index
 * and blocking semantics, registration rules, TTL checks, maintenance,
 * catalog/health/status views, sessions and KV).
 */
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
#include "tests/doubles/consul/double.h"

#define MAX_WAIT_MS 600000
#define DEFAULT_WAIT_MS 300000
#define OUTPUT_MAX 4096

/* ---- small helpers --------------------------------------------------------- */

static const char *arg(struct MHD_Connection *c, const char *k)
{
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, k);
}

/* Presence of a query flag, with or without a value. */
static int has_arg(struct MHD_Connection *c, const char *k)
{
    const char *v = NULL;
    size_t vl = 0;
    return MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, k, strlen(k), &v, &vl) == MHD_YES;
}

static enum MHD_Result json_reply(struct MHD_Connection *c, unsigned status, cJSON *o,
                                  const char *const *headers)
{
    char *s = has_arg(c, "pretty") ? json_pretty(o) : json_out(o);
    cJSON_Delete(o);
    if (s == NULL)
        return reply_text(c, 500, "out of memory");
    enum MHD_Result r = reply(c, status, "application/json", s, strlen(s), headers);
    free(s);
    return r;
}

/* ?filter over an answer (checked for syntax before the query ran). */
static void apply_filter(struct MHD_Connection *c, cJSON *body)
{
    const char *expr = arg(c, "filter");
    char err[300];
    if (expr == NULL || *expr == '\0')
        return;
    struct dfilter *f = dfilter_new(expr, err, sizeof err);
    dfilter_apply(f, body);
    dfilter_free(f);
}

static enum MHD_Result empty_ok(struct MHD_Connection *c)
{
    return reply(c, 200, NULL, "", 0, NULL);
}

static int parse_bool(const char *s, int *out)
{
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (int i = 0; s && i < 6; i++) {
        if (!strcmp(s, t[i])) { *out = 1; return 0; }
        if (!strcmp(s, f[i])) { *out = 0; return 0; }
    }
    return -1;
}

/* Go duration from JSON (string or nanoseconds). 0 ok, -1 with Go's text. */
static int json_dur(const cJSON *v, int64_t *ms, char *err, size_t len)
{
    if (cJSON_IsNumber(v)) {
        *ms = (int64_t)(v->valuedouble / 1e6);
        return 0;
    }
    if (!cJSON_IsString(v)) {
        snprintf(err, len, "json: cannot unmarshal %s into Go value of type time.Duration",
                 cJSON_IsBool(v) ? "bool" : cJSON_IsArray(v) ? "array" : "object");
        return -1;
    }
    const char *s = v->valuestring;
    if (dur_parse_ms(s, ms) == 0)
        return 0;
    int digits_only = *s != '\0';
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p) && *p != '.')
            digits_only = 0;
    if (digits_only)
        snprintf(err, len, "time: missing unit in duration \"%s\"", s);
    else
        snprintf(err, len, "time: invalid duration \"%s\"", s);
    return -1;
}

static const char *canon(const char *key, const char *const *names)
{
    for (const char *const *n = names; *n; n++)
        if (strcasecmp(key, *n) == 0)
            return *n;
    return NULL;
}

/* ---- views ---------------------------------------------------------------- */

static int node_visible(const struct node *n)
{
    return n->used && n->status != 3;
}

static cJSON *tagged_v4(const char *addr, int port)
{
    cJSON *t = cJSON_CreateObject();
    if (addr[0] && strchr(addr, '.') && !strchr(addr, ':')) {
        int ok = 1;
        for (const char *p = addr; *p; p++)
            if (!isdigit((unsigned char)*p) && *p != '.')
                ok = 0;
        if (ok) {
            cJSON *a = cJSON_AddObjectToObject(t, "lan_ipv4");
            cJSON_AddStringToObject(a, "Address", addr);
            cJSON_AddNumberToObject(a, "Port", port);
            a = cJSON_AddObjectToObject(t, "wan_ipv4");
            cJSON_AddStringToObject(a, "Address", addr);
            cJSON_AddNumberToObject(a, "Port", port);
        }
    }
    return t;
}

static cJSON *node_json(const struct node *n)
{
    cJSON *o = cJSON_CreateObject();
    char id[64];
    snprintf(id, sizeof id, "00000000-0000-4000-8000-%012x", (unsigned)(n - S.nodes) + 1);
    cJSON_AddStringToObject(o, "ID", id);
    cJSON_AddStringToObject(o, "Node", n->name);
    cJSON_AddStringToObject(o, "Address", n->address);
    cJSON_AddStringToObject(o, "Datacenter", S.dc);
    cJSON *t = cJSON_AddObjectToObject(o, "TaggedAddresses");
    cJSON_AddStringToObject(t, "lan", n->address);
    cJSON_AddStringToObject(t, "lan_ipv4", n->address);
    cJSON_AddStringToObject(t, "wan", n->address);
    cJSON_AddStringToObject(t, "wan_ipv4", n->address);
    cJSON *m = cJSON_AddObjectToObject(o, "Meta");
    cJSON_AddStringToObject(m, "consul-network-segment", "");
    cJSON_AddStringToObject(m, "consul-version", "1.17.3");
    cJSON_AddNumberToObject(o, "CreateIndex", (double)n->create_index);
    cJSON_AddNumberToObject(o, "ModifyIndex", (double)n->modify_index);
    return o;
}

static const struct service *svc_of(const struct node *n, const char *id)
{
    for (int i = 0; i < S.maxn; i++)
        if (n->services[i].used && strcmp(n->services[i].id, id) == 0)
            return &n->services[i];
    return NULL;
}

/* catalog: the output as last synced (status changes sync at once). */
static cJSON *check_json(const struct node *n, const struct check *k, int agent_view)
{
    cJSON *o = cJSON_CreateObject();
    const struct service *s = k->service_id[0] ? svc_of(n, k->service_id) : NULL;
    cJSON_AddStringToObject(o, "Node", n->name);
    cJSON_AddStringToObject(o, "CheckID", k->id);
    cJSON_AddStringToObject(o, "Name", k->name);
    cJSON_AddStringToObject(o, "Status", status_name(k->status));
    cJSON_AddStringToObject(o, "Notes", k->notes);
    cJSON_AddStringToObject(o, "Output", k->output ? k->output : "");
    cJSON_AddStringToObject(o, "ServiceID", k->service_id);
    cJSON_AddStringToObject(o, "ServiceName", s ? s->name : "");
    cJSON_AddItemToObject(o, "ServiceTags", s && s->tags ? cJSON_Duplicate(s->tags, 1) : cJSON_CreateArray());
    cJSON_AddStringToObject(o, "Type", k->type);
    cJSON_AddStringToObject(o, "Interval", k->interval);
    cJSON_AddStringToObject(o, "Timeout", k->timeout);
    cJSON_AddNumberToObject(o, "ExposedPort", 0);
    cJSON_AddItemToObject(o, "Definition", cJSON_CreateObject());
    cJSON_AddNumberToObject(o, "CreateIndex", agent_view ? 0 : (double)k->create_index);
    cJSON_AddNumberToObject(o, "ModifyIndex", agent_view ? 0 : (double)k->modify_index);
    return o;
}

static cJSON *serf_json(const struct node *n)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "Node", n->name);
    cJSON_AddStringToObject(o, "CheckID", "serfHealth");
    cJSON_AddStringToObject(o, "Name", "Serf Health Status");
    cJSON_AddStringToObject(o, "Status", status_name(n->serf));
    cJSON_AddStringToObject(o, "Notes", "");
    cJSON_AddStringToObject(o, "Output", n->serf == ST_PASSING ? "Agent alive and reachable"
                                                               : "Agent not live or unreachable");
    cJSON_AddStringToObject(o, "ServiceID", "");
    cJSON_AddStringToObject(o, "ServiceName", "");
    cJSON_AddItemToObject(o, "ServiceTags", cJSON_CreateArray());
    cJSON_AddStringToObject(o, "Type", "");
    cJSON_AddStringToObject(o, "Interval", "");
    cJSON_AddStringToObject(o, "Timeout", "");
    cJSON_AddNumberToObject(o, "ExposedPort", 0);
    cJSON_AddItemToObject(o, "Definition", cJSON_CreateObject());
    cJSON_AddNumberToObject(o, "CreateIndex", (double)n->create_index);
    cJSON_AddNumberToObject(o, "ModifyIndex", (double)n->serf_index);
    return o;
}

static cJSON *health_service_json(const struct service *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "ID", s->id);
    cJSON_AddStringToObject(o, "Service", s->name);
    cJSON_AddItemToObject(o, "Tags", s->tags ? cJSON_Duplicate(s->tags, 1) : cJSON_CreateArray());
    cJSON_AddStringToObject(o, "Address", s->address);
    cJSON *t = tagged_v4(s->address, s->port);
    if (cJSON_GetArraySize(t))
        cJSON_AddItemToObject(o, "TaggedAddresses", t);
    else
        cJSON_Delete(t);
    if (s->meta && cJSON_GetArraySize(s->meta))
        cJSON_AddItemToObject(o, "Meta", cJSON_Duplicate(s->meta, 1));
    else
        cJSON_AddNullToObject(o, "Meta");
    if (s->port)
        cJSON_AddNumberToObject(o, "Port", s->port);
    cJSON *w = cJSON_AddObjectToObject(o, "Weights");
    cJSON_AddNumberToObject(w, "Passing", s->w_passing);
    cJSON_AddNumberToObject(w, "Warning", s->w_warning);
    cJSON_AddBoolToObject(o, "EnableTagOverride", s->tag_override);
    cJSON *p = cJSON_AddObjectToObject(o, "Proxy");
    cJSON_AddStringToObject(p, "Mode", "");
    cJSON_AddItemToObject(p, "MeshGateway", cJSON_CreateObject());
    cJSON_AddItemToObject(p, "Expose", cJSON_CreateObject());
    cJSON_AddItemToObject(o, "Connect", cJSON_CreateObject());
    cJSON_AddStringToObject(o, "PeerName", "");
    cJSON_AddNumberToObject(o, "CreateIndex", (double)s->create_index);
    cJSON_AddNumberToObject(o, "ModifyIndex", (double)s->modify_index);
    return o;
}

static cJSON *agent_service_json(const struct service *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "ID", s->id);
    cJSON_AddStringToObject(o, "Service", s->name);
    cJSON_AddItemToObject(o, "Tags", s->tags ? cJSON_Duplicate(s->tags, 1) : cJSON_CreateArray());
    cJSON_AddItemToObject(o, "Meta", s->meta ? cJSON_Duplicate(s->meta, 1) : cJSON_CreateObject());
    cJSON_AddNumberToObject(o, "Port", s->port);
    cJSON_AddStringToObject(o, "Address", s->address);
    cJSON *t = s->tagged && cJSON_GetArraySize(s->tagged) ? cJSON_Duplicate(s->tagged, 1)
                                                           : tagged_v4(s->address, s->port);
    if (cJSON_GetArraySize(t))
        cJSON_AddItemToObject(o, "TaggedAddresses", t);
    else
        cJSON_Delete(t);
    cJSON *w = cJSON_AddObjectToObject(o, "Weights");
    cJSON_AddNumberToObject(w, "Passing", s->w_passing);
    cJSON_AddNumberToObject(w, "Warning", s->w_warning);
    cJSON_AddBoolToObject(o, "EnableTagOverride", s->tag_override);
    cJSON_AddStringToObject(o, "Datacenter", S.dc);
    return o;
}

/* ---- common query handling -------------------------------------------------- */

struct query {
    uint64_t index;
    int64_t wait_ms;
    int stale, consistent;
};

/* 0 ok; else the response was queued (*ret). */
static int common_params(struct MHD_Connection *c, struct query *q, int need_leader,
                         enum MHD_Result *ret)
{
    const char *v;
    memset(q, 0, sizeof *q);
    if ((v = arg(c, "dc")) && *v && strcmp(v, S.dc) != 0) {
        *ret = reply_text(c, 500, "No path to datacenter");
        return -1;
    }
    if ((v = arg(c, "index")) && *v) {
        char *e;
        errno = 0;
        unsigned long long x = strtoull(v, &e, 10);
        if (*e || errno || v[0] == '-') {
            *ret = reply_text(c, 400, "Invalid index");
            return -1;
        }
        q->index = x;
    }
    q->wait_ms = 0;
    if ((v = arg(c, "wait")) && *v) {
        if (dur_parse_ms(v, &q->wait_ms) < 0) {
            *ret = reply_text(c, 400, "Invalid wait time");
            return -1;
        }
    }
    q->stale = has_arg(c, "stale");
    q->consistent = has_arg(c, "consistent");
    if (q->stale && q->consistent) {
        *ret = reply_text(c, 400, "Cannot specify ?stale with ?consistent, conflicting semantics.");
        return -1;
    }
    if (need_leader && !q->stale && S.leader[0] == '\0') {
        *ret = reply_text(c, 500, "No cluster leader");
        return -1;
    }
    return 0;
}

typedef cJSON *(*view_fn)(struct MHD_Connection *c, const void *ctx, uint64_t *index,
                          int *status);
static cJSON *view_kv(struct MHD_Connection *c, const void *ctx, uint64_t *index, int *status);
static cJSON *view_catalog_services(struct MHD_Connection *c, const void *ctx, uint64_t *index,
                                    int *status);

/*
 * Every change wakes every parked blocking query. A real Consul wakes only
 * those whose data moved (memdb watch sets); here a parked health query
 * first looks its service's index up in a table made once per wake-up (by
 * the same rule as view_health_service) and rebuilds its view only when
 * that index passed its own, so 1,000 parked queries cost one pass over the
 * catalog a change, not 1,000 views.
 */
#define HIDX_SLOTS 65536u

static uint64_t max64(uint64_t a, uint64_t b);
static cJSON *view_health_service(struct MHD_Connection *c, const void *ctx, uint64_t *index,
                                  int *status);

static struct {
    uint64_t wakes;                 /* S.wakes it was made at; 0 = never */
    struct { const char *name; uint64_t idx; } by_name[HIDX_SLOTS];
    struct { const struct node *n; const char *id, *name; } by_id[HIDX_SLOTS];
} HI;

static uint32_t hidx_hash(const char *s, uintptr_t salt)
{
    uint32_t h = 2166136261u ^ (uint32_t)salt;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void hidx_raise(const char *name, uint64_t idx)
{
    for (uint32_t i = hidx_hash(name, 0) % HIDX_SLOTS;; i = (i + 1) % HIDX_SLOTS) {
        if (HI.by_name[i].name == NULL)
            HI.by_name[i].name = name;
        if (strcmp(HI.by_name[i].name, name) == 0) {
            HI.by_name[i].idx = max64(HI.by_name[i].idx, idx);
            return;
        }
    }
}

static const char *hidx_service_of(const struct node *n, const char *id)
{
    for (uint32_t i = hidx_hash(id, (uintptr_t)n) % HIDX_SLOTS; HI.by_id[i].id;
         i = (i + 1) % HIDX_SLOTS)
        if (HI.by_id[i].n == n && strcmp(HI.by_id[i].id, id) == 0)
            return HI.by_id[i].name;
    return NULL;
}

static void hidx_build(void)
{
    memset(HI.by_name, 0, sizeof HI.by_name);
    memset(HI.by_id, 0, sizeof HI.by_id);
    for (int i = 0; i < 64; i++) {
        const struct node *n = &S.nodes[i];
        if (!node_visible(n))
            continue;
        uint64_t node_idx = n->serf_index;
        for (int k = 0; k < S.maxn; k++)
            if (n->checks[k].used && !n->checks[k].service_id[0])
                node_idx = max64(node_idx, n->checks[k].modify_index);
        for (int j = 0; j < S.maxn; j++) {
            const struct service *s = &n->services[j];
            if (!s->used)
                continue;
            hidx_raise(s->name, max64(node_idx, s->modify_index));
            uint32_t h = hidx_hash(s->id, (uintptr_t)n) % HIDX_SLOTS;
            while (HI.by_id[h].id)
                h = (h + 1) % HIDX_SLOTS;
            HI.by_id[h].n = n;
            HI.by_id[h].id = s->id;
            HI.by_id[h].name = s->name;
        }
        for (int k = 0; k < S.maxn; k++) {
            const char *name;
            if (n->checks[k].used && n->checks[k].service_id[0] &&
                (name = hidx_service_of(n, n->checks[k].service_id)) != NULL)
                hidx_raise(name, n->checks[k].modify_index);
        }
    }
    HI.wakes = S.wakes ? S.wakes : 1;
}

/* The index view_health_service would give name; 0 when it has no instance. */
static uint64_t health_service_index(const char *name)
{
    if (HI.wakes != (S.wakes ? S.wakes : 1))
        hidx_build();
    for (uint32_t i = hidx_hash(name, 0) % HIDX_SLOTS; HI.by_name[i].name;
         i = (i + 1) % HIDX_SLOTS)
        if (strcmp(HI.by_name[i].name, name) == 0)
            return HI.by_name[i].idx;
    return 0;
}

/* The headers of a blocking view's answer at index idx (in vh). */
struct view_headers {
    char index[32], contact[8];
    const char *h[11];
};

static const char *const *view_headers(struct view_headers *vh, const struct query *q,
                                       uint64_t idx)
{
    snprintf(vh->index, sizeof vh->index, "%" PRIu64, idx);
    snprintf(vh->contact, sizeof vh->contact, "%d", q->stale ? 10 : 0);
    const char *h[] = {"X-Consul-Index", vh->index,
                       "X-Consul-Knownleader", S.leader[0] ? "true" : "false",
                       "X-Consul-Lastcontact", vh->contact,
                       "X-Consul-Effective-Consistency",
                       q->stale ? "stale" : q->consistent ? "consistent" : "leader",
                       "X-Consul-Query-Backend", "blocking-query", NULL};
    memcpy(vh->h, h, sizeof h);
    return vh->h;
}

/* When a blocking query gives up: its ?wait (default 5 min, at most 10),
 * plus up to 1/16 of it, as Consul adds jitter. */
static struct timespec wait_deadline(const struct query *q)
{
    int64_t wait = q->wait_ms > 0 ? q->wait_ms : DEFAULT_WAIT_MS;
    if (wait > MAX_WAIT_MS)
        wait = MAX_WAIT_MS;
    wait += (int64_t)(rand() % (int)(wait / 16 + 1));
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += wait / 1000;
    dl.tv_nsec += (wait % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    return dl;
}

/* A parked /v1/health/service query, woken only when its service's index
 * passes its own (or its agent goes down): a real Consul wakes the watchers
 * of what changed, not every parked query, and 1,000 threads woken on every
 * change took one lock in turn. */
struct svc_waiter {
    const char *name;
    uint64_t index;
    const struct agent *a;
    pthread_cond_t cond;
    struct svc_waiter *prev, *next;
};
static struct svc_waiter *waiters;

static void waiter_add(struct svc_waiter *w, const char *name, uint64_t index,
                       const struct agent *a)
{
    *w = (struct svc_waiter){name, index, a, PTHREAD_COND_INITIALIZER, NULL, waiters};
    if (waiters)
        waiters->prev = w;
    waiters = w;
}

static void waiter_remove(struct svc_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    pthread_cond_destroy(&w->cond);
}

void api_wake_waiters(void)
{
    for (struct svc_waiter *w = waiters; w; w = w->next) {
        uint64_t peek = health_service_index(w->name);
        if (w->a->down || peek == 0 || max64(peek, svc_touched(w->name)) > w->index)
            pthread_cond_signal(&w->cond);
    }
}

/* Runs a view, parking while its index has not passed the client's. Call
 * with S.mu held; returns with it held. */
static enum MHD_Result blocking_view(struct agent *a, struct MHD_Connection *c,
                                     const struct query *q, view_fn fn, const void *ctx)
{
    uint64_t idx = 0;
    int status = 200;
    cJSON *body = fn(c, ctx, &idx, &status);
    if (q->index > 0 && idx <= q->index) {
        struct timespec dl = wait_deadline(q);
        struct svc_waiter w;
        int targeted = fn == view_health_service && status == 200;
        if (targeted)
            waiter_add(&w, ctx, q->index, a);
        while (idx <= q->index && !a->down) {
            if (pthread_cond_timedwait(targeted ? &w.cond : &S.changed, &S.mu, &dl) == ETIMEDOUT)
                break;
            if (targeted && !a->down) {
                uint64_t peek = health_service_index(ctx);
                if (peek > 0 && max64(peek, svc_touched(ctx)) <= q->index)
                    continue;   /* its service did not move: stay parked */
            }
            if (fn == view_catalog_services && !a->down && S.services_index <= q->index)
                continue;   /* its index is known without building the view */
            cJSON_Delete(body);
            body = fn(c, ctx, &idx, &status);
        }
        if (targeted)
            waiter_remove(&w);
        if (a->down) {
            cJSON_Delete(body);
            return MHD_NO;
        }
        if (idx <= q->index) {
            cJSON_Delete(body);
            body = fn(c, ctx, &idx, &status);
        }
    }
    if (idx == 0)
        idx = 1;
    struct view_headers vh;
    const char *const *h = view_headers(&vh, q, idx);
    pthread_mutex_unlock(&S.mu);
    if (fn != view_kv && fn != view_catalog_services)
        apply_filter(c, body);
    enum MHD_Result r;
    if (body == NULL && status == 400)
        r = reply(c, 400, "text/plain; charset=utf-8", "Invalid value for ?passing", 26, h);
    else if (body == NULL)
        r = reply(c, (unsigned)status, "text/plain; charset=utf-8", "", 0, h);
    else
        r = json_reply(c, (unsigned)status, body, h);
    pthread_mutex_lock(&S.mu);
    return r;
}

/* /v1/health/state/<state> without ?filter or ?pretty: parked on the
 * checks index alone (nothing is built while it waits) and written
 * straight from memory (render.c). Called and returns with S.mu held. */
static enum MHD_Result blocking_state(struct agent *a, struct MHD_Connection *c,
                                      const struct query *q, const char *state)
{
    if (q->index > 0 && S.checks_index <= q->index) {
        struct timespec dl = wait_deadline(q);
        while (S.checks_index <= q->index && !a->down)
            if (pthread_cond_timedwait(&S.changed, &S.mu, &dl) == ETIMEDOUT)
                break;
        if (a->down)
            return MHD_NO;
    }
    struct buf b;
    buf_init(&b, 0);
    int rc = render_health_state(&b, state);
    uint64_t idx = S.checks_index ? S.checks_index : 1;
    struct view_headers vh;
    const char *const *h = view_headers(&vh, q, idx);
    pthread_mutex_unlock(&S.mu);
    enum MHD_Result r = rc < 0 ? reply_text(c, 500, "out of memory")
                               : reply(c, 200, "application/json", b.data, b.len, h);
    buf_free(&b);
    pthread_mutex_lock(&S.mu);
    return r;
}

/* ---- health and catalog views ------------------------------------------------ */

struct tag_walk {
    const struct service *s;
    int ok;
};

static enum MHD_Result tag_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    struct tag_walk *w = cls;
    (void)kind;
    if (strcmp(key, "tag") != 0 || value == NULL)
        return MHD_YES;
    int found = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, w->s->tags) if (cJSON_IsString(t) && strcasecmp(t->valuestring, value) == 0)
        found = 1;
    if (!found)
        w->ok = 0;
    return MHD_YES;
}

static int service_has_tags(struct MHD_Connection *c, const struct service *s)
{
    struct tag_walk w = {s, 1};
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, tag_iter, &w);
    return w.ok;
}

static uint64_t max64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

static cJSON *view_health_service(struct MHD_Connection *c, const void *ctx, uint64_t *index,
                                  int *status)
{
    const char *name = ctx;
    int passing = 0;
    const char *pv = NULL;
    size_t pl = 0;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "passing", 7, &pv, &pl) == MHD_YES) {
        if (pv == NULL || *pv == '\0')
            passing = 1;
        else if (parse_bool(pv, &passing) < 0) {
            *status = 400;
            *index = S.extinction;
            return NULL;
        }
    }
    cJSON *arr = cJSON_CreateArray();
    uint64_t idx = 0;
    int found = 0;
    for (int i = 0; i < 64; i++) {
        const struct node *n = &S.nodes[i];
        if (!node_visible(n))
            continue;
        for (int j = 0; j < S.maxn; j++) {
            const struct service *s = &n->services[j];
            if (!s->used || strcmp(s->name, name) != 0)
                continue;
            found = 1;
            idx = max64(idx, s->modify_index);
            idx = max64(idx, n->serf_index);
            for (int k = 0; k < S.maxn; k++)
                if (n->checks[k].used && (!n->checks[k].service_id[0] ||
                                          !strcmp(n->checks[k].service_id, s->id)))
                    idx = max64(idx, n->checks[k].modify_index);
            if (!service_has_tags(c, s))
                continue;
            int all_passing = n->serf == ST_PASSING;
            cJSON *checks = cJSON_CreateArray();
            cJSON_AddItemToArray(checks, serf_json(n));
            for (int k = 0; k < S.maxn; k++)
                if (n->checks[k].used && !n->checks[k].service_id[0]) {
                    cJSON_AddItemToArray(checks, check_json(n, &n->checks[k], 0));
                    all_passing &= n->checks[k].status == ST_PASSING;
                }
            for (int k = 0; k < S.maxn; k++)
                if (n->checks[k].used && !strcmp(n->checks[k].service_id, s->id)) {
                    cJSON_AddItemToArray(checks, check_json(n, &n->checks[k], 0));
                    all_passing &= n->checks[k].status == ST_PASSING;
                }
            if (passing && !all_passing) {
                cJSON_Delete(checks);
                continue;
            }
            cJSON *e = cJSON_CreateObject();
            cJSON_AddItemToObject(e, "Node", node_json(n));
            cJSON_AddItemToObject(e, "Service", health_service_json(s));
            cJSON_AddItemToObject(e, "Checks", checks);
            cJSON_AddItemToArray(arr, e);
        }
    }
    idx = max64(idx, svc_touched(name));
    *index = found ? idx : (S.extinction ? S.extinction : 1);
    if (*status == 400) {
        cJSON_Delete(arr);
        return NULL;
    }
    return arr;
}

static int service_name_cmp(const void *a, const void *b)
{
    const struct service *x = *(struct service *const *)a, *y = *(struct service *const *)b;
    return strcmp(x->name, y->name);
}

static cJSON *view_catalog_services(struct MHD_Connection *c, const void *ctx, uint64_t *index,
                                    int *status)
{
    (void)c;
    (void)ctx;
    (void)status;
    /* Sorted by name first: one key per service without a linear lookup per
     * instance (a blocking query re-runs this on every change). */
    size_t n_all = 0, cap = 0;
    const struct service **all = NULL;
    for (int i = 0; i < 64; i++) {
        const struct node *n = &S.nodes[i];
        if (!node_visible(n))
            continue;
        for (int j = 0; j < S.maxn; j++) {
            if (!n->services[j].used)
                continue;
            if (n_all == cap) {
                cap = cap ? cap * 2 : 256;
                const struct service **g = realloc(all, cap * sizeof *g);
                if (g == NULL)
                    break;
                all = g;
            }
            all[n_all++] = &n->services[j];
        }
    }
    if (n_all)
        qsort(all, n_all, sizeof *all, service_name_cmp);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "consul", cJSON_CreateArray());
    cJSON *tags = NULL;
    for (size_t k = 0; k < n_all; k++) {
        const struct service *s = all[k];
        if (k == 0 || strcmp(all[k - 1]->name, s->name) != 0)
            tags = cJSON_AddArrayToObject(o, s->name);
        const cJSON *t;
        cJSON_ArrayForEach(t, s->tags) {
            int dup = 0;
            const cJSON *x;
            cJSON_ArrayForEach(x, tags) if (!strcmp(x->valuestring, t->valuestring)) dup = 1;
            if (!dup)
                cJSON_AddItemToArray(tags, cJSON_CreateString(t->valuestring));
        }
    }
    free(all);
    *index = S.services_index;
    return o;
}

static int node_cmp(const void *a, const void *b)
{
    const struct node *x = *(struct node *const *)a, *y = *(struct node *const *)b;
    return strcmp(x->name, y->name);
}

static cJSON *view_catalog_nodes(struct MHD_Connection *c, const void *ctx, uint64_t *index,
                                 int *status)
{
    (void)c;
    (void)ctx;
    (void)status;
    const struct node *list[64];
    int n = 0;
    for (int i = 0; i < 64; i++)
        if (node_visible(&S.nodes[i]))
            list[n++] = &S.nodes[i];
    qsort(list, (size_t)n, sizeof list[0], node_cmp);
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, node_json(list[i]));
    *index = S.nodes_index;
    return arr;
}

static cJSON *view_catalog_service(struct MHD_Connection *c, const void *ctx, uint64_t *index,
                                   int *status)
{
    const char *name = ctx;
    (void)status;
    cJSON *arr = cJSON_CreateArray();
    uint64_t idx = 0;
    int found = 0;
    for (int i = 0; i < 64; i++) {
        const struct node *n = &S.nodes[i];
        if (!node_visible(n))
            continue;
        for (int j = 0; j < S.maxn; j++) {
            const struct service *s = &n->services[j];
            if (!s->used || strcmp(s->name, name) != 0)
                continue;
            found = 1;
            idx = max64(idx, s->modify_index);
            if (!service_has_tags(c, s))
                continue;
            cJSON *e = node_json(n);
            cJSON_DeleteItemFromObject(e, "CreateIndex");
            cJSON_DeleteItemFromObject(e, "ModifyIndex");
            cJSON_AddStringToObject(e, "ServiceKind", "");
            cJSON_AddStringToObject(e, "ServiceID", s->id);
            cJSON_AddStringToObject(e, "ServiceName", s->name);
            cJSON_AddItemToObject(e, "ServiceTags", s->tags ? cJSON_Duplicate(s->tags, 1) : cJSON_CreateArray());
            cJSON_AddStringToObject(e, "ServiceAddress", s->address);
            cJSON *w = cJSON_AddObjectToObject(e, "ServiceWeights");
            cJSON_AddNumberToObject(w, "Passing", s->w_passing);
            cJSON_AddNumberToObject(w, "Warning", s->w_warning);
            if (s->meta && cJSON_GetArraySize(s->meta))
                cJSON_AddItemToObject(e, "ServiceMeta", cJSON_Duplicate(s->meta, 1));
            else
                cJSON_AddNullToObject(e, "ServiceMeta");
            cJSON_AddNumberToObject(e, "ServicePort", s->port);
            cJSON_AddStringToObject(e, "ServiceSocketPath", "");
            cJSON_AddBoolToObject(e, "ServiceEnableTagOverride", s->tag_override);
            cJSON_AddNullToObject(e, "ServiceLocality");
            cJSON_AddNumberToObject(e, "CreateIndex", (double)s->create_index);
            cJSON_AddNumberToObject(e, "ModifyIndex", (double)s->modify_index);
            cJSON_AddItemToArray(arr, e);
        }
    }
    idx = max64(idx, svc_touched(name));
    *index = found ? idx : (S.extinction ? S.extinction : 1);
    return arr;
}

struct checks_ctx {
    int mode;          /* 0 of a service, 1 by state, 2 of a node */
    const char *arg;
};

static cJSON *view_checks(struct MHD_Connection *c, const void *ctx, uint64_t *index, int *status)
{
    const struct checks_ctx *cc = ctx;
    (void)c;
    (void)status;
    cJSON *arr = cJSON_CreateArray();
    uint64_t idx = 0;
    for (int i = 0; i < 64; i++) {
        const struct node *n = &S.nodes[i];
        if (!node_visible(n))
            continue;
        if (cc->mode == 2 && strcmp(n->name, cc->arg) != 0)
            continue;
        if (cc->mode != 0) {
            const char *st = status_name(n->serf);
            if (cc->mode == 2 || !strcmp(cc->arg, "any") || !strcmp(cc->arg, st))
                cJSON_AddItemToArray(arr, serf_json(n));
            idx = max64(idx, n->serf_index);
        }
        for (int k = 0; k < S.maxn; k++) {
            const struct check *ck = &n->checks[k];
            if (!ck->used)
                continue;
            if (cc->mode == 0) {
                const struct service *s = ck->service_id[0] ? svc_of(n, ck->service_id) : NULL;
                if (s == NULL || strcmp(s->name, cc->arg) != 0)
                    continue;
            }
            if (cc->mode == 1 && strcmp(cc->arg, "any") && strcmp(cc->arg, status_name(ck->status)))
                continue;
            idx = max64(idx, ck->modify_index);
            cJSON_AddItemToArray(arr, check_json(n, ck, 0));
        }
    }
    *index = cc->mode == 1 ? S.checks_index : idx ? idx : (S.extinction ? S.extinction : 1);
    return arr;
}

/* ---- agent state changes ---------------------------------------------------------- */

static struct service *svc_find(struct node *n, const char *id)
{
    for (int i = 0; i < S.maxn; i++)
        if (n->services[i].used && strcmp(n->services[i].id, id) == 0)
            return &n->services[i];
    return NULL;
}

static struct check *check_find(struct node *n, const char *id)
{
    for (int i = 0; i < S.maxn; i++)
        if (n->checks[i].used && strcmp(n->checks[i].id, id) == 0)
            return &n->checks[i];
    return NULL;
}

static struct check *check_slot(struct node *n)
{
    for (int i = 0; i < S.maxn; i++)
        if (!n->checks[i].used)
            return &n->checks[i];
    return NULL;
}

static void check_free_slot(struct check *k);

/* A check of a service went away: that service's index moves. */
static void touch_check_service(struct node *n, const struct check *k, uint64_t idx)
{
    for (int i = 0; k->service_id[0] && i < S.maxn; i++)
        if (n->services[i].used && strcmp(n->services[i].id, k->service_id) == 0)
            svc_touch(n->services[i].name, idx);
}

static void check_free_slot(struct check *k)
{
    free(k->output);
    memset(k, 0, sizeof *k);
}

static void set_output(struct check *k, const char *out)
{
    size_t n = out ? strlen(out) : 0;
    free(k->output);
    if (n > OUTPUT_MAX) {
        k->output = malloc(OUTPUT_MAX + 64);
        if (k->output)
            snprintf(k->output, OUTPUT_MAX + 64, "%.*s ... (captured %d of %zu bytes)", OUTPUT_MAX,
                     out, OUTPUT_MAX, n);
    } else {
        k->output = strdup(out ? out : "");
    }
}

/* A status update (TTL pass/warn/fail/update, TTL expiry). */
static void check_update(struct check *k, enum cstatus st, const char *output)
{
    uint64_t now = now_ms();
    int status_changed = k->status != st;
    k->updated = 1;
    if (st == ST_CRITICAL) {
        if (k->critical_since == 0 || status_changed)
            k->critical_since = k->critical_since ? k->critical_since : now;
    } else {
        k->critical_since = 0;
    }
    k->status = st;
    set_output(k, output);
    if (k->ttl_ms > 0)
        k->ttl_deadline = now + (uint64_t)k->ttl_ms;
    /* Status changes reach the catalog at once; output-only changes would
     * be deferred by a real agent (2.5-7.5 min): here they are not indexed. */
    if (status_changed) {
        k->modify_index = bump();
        S.checks_index = k->modify_index;
    }
    changed();
}

static void remove_service(struct node *n, struct service *s)
{
    for (int i = 0; i < S.maxn; i++)
        if (n->checks[i].used && strcmp(n->checks[i].service_id, s->id) == 0)
            check_free_slot(&n->checks[i]);
    char name[256];
    snprintf(name, sizeof name, "%s", s->name);
    cJSON_Delete(s->tags);
    cJSON_Delete(s->meta);
    cJSON_Delete(s->tagged);
    memset(s, 0, sizeof *s);
    S.extinction = bump();
    S.services_index = S.checks_index = S.extinction;
    svc_touch(name, S.extinction);
    changed();
}

void node_restart(struct node *n, int persist)
{
    uint64_t now = now_ms();
    if (!persist) {
        for (int i = 0; i < S.maxn; i++)
            if (n->services[i].used)
                remove_service(n, &n->services[i]);
        for (int i = 0; i < S.maxn; i++)
            if (n->checks[i].used)
                check_free_slot(&n->checks[i]);
        return;
    }
    for (int i = 0; i < S.maxn; i++) {
        struct check *k = &n->checks[i];
        if (!k->used)
            continue;
        if (k->ttl_ms > 0 && k->ttl_deadline > now)
            continue;   /* unexpired TTL state is restored */
        if (k->status != ST_CRITICAL) {
            k->status = ST_CRITICAL;
            k->modify_index = bump();
            S.checks_index = k->modify_index;
        }
    }
    changed();
}

void session_invalidate(struct session *s)
{
    uint64_t now = now_ms();
    for (int i = 0; i < 1024; i++) {
        struct kv *k = &S.kvs[i];
        if (!k->used || strcmp(k->session, s->id) != 0)
            continue;
        if (strcmp(s->behavior, "delete") == 0) {
            /* The key goes, its lock delay stays (by key name, as Consul's),
             * and the deletion moves the index so watchers of the key wake. */
            int d = 0;
            for (int j = 1; j < 64; j++)
                if (S.deleted_delay[j].until < S.deleted_delay[d].until)
                    d = j;
            size_t kl = strnlen(k->key, sizeof k->key - 1);
            memcpy(S.deleted_delay[d].key, k->key, kl);   /* both 512 bytes */
            S.deleted_delay[d].key[kl] = '\0';
            S.deleted_delay[d].until = now + (uint64_t)s->lock_delay_ms;
            free(k->value);
            memset(k, 0, sizeof *k);
            S.lock_delay_until[i] = 0;
            S.kv_index = bump();
            continue;
        }
        k->session[0] = '\0';
        k->modify_index = bump();
        S.kv_index = S.raft;
        S.lock_delay_until[i] = now + (uint64_t)s->lock_delay_ms;
    }
    memset(s, 0, sizeof *s);
    S.sessions_index = bump();
    changed();
}

void node_set_status(struct node *n, int status)
{
    if (n->status == status)
        return;
    n->status = status;
    enum cstatus serf = status == 4 ? ST_CRITICAL : ST_PASSING;
    if (serf != n->serf) {
        n->serf = serf;
        n->serf_index = bump();
        S.checks_index = n->serf_index;
    }
    if (status == 3 || status == 4) {
        /* Sessions tied to the node's health are invalidated. */
        for (int i = 0; i < MAX_SESSIONS; i++)
            if (S.sessions[i].used && strcmp(S.sessions[i].node, n->name) == 0)
                session_invalidate(&S.sessions[i]);
    }
    if (status == 3) {
        n->modify_index = bump();
        S.nodes_index = S.services_index = n->modify_index;
        S.extinction = n->modify_index;
        for (int i = 0; i < S.maxn; i++)
            if (n->services[i].used)
                svc_touch(n->services[i].name, n->modify_index);
    }
    if (status == 1 && n->modify_index < S.nodes_index) {
        n->modify_index = bump();
        S.nodes_index = n->modify_index;
    }
    changed();
}

/* ---- registration --------------------------------------------------------------- */

static const char *const SERVICE_KEYS[] = {
    "ID", "Name", "Tags", "Address", "TaggedAddresses", "tagged_addresses", "Meta", "Port",
    "SocketPath", "Kind", "Proxy", "Connect", "Weights", "Token", "EnableTagOverride",
    "enable_tag_override", "Check", "Checks", "Locality", NULL};
static const char *const CHECK_KEYS[] = {
    "CheckID", "Name", "Status", "Notes", "ScriptArgs", "Args", "args", "script_args", "HTTP",
    "Header", "Method", "Body", "DisableRedirects", "TCP", "UDP", "GRPC", "GRPCUseTLS", "H2PING",
    "H2PingUseTLS", "OSService", "AliasNode", "AliasService", "DockerContainerID", "Shell",
    "TLSServerName", "TLSSkipVerify", "Interval", "Timeout", "TTL",
    "DeregisterCriticalServiceAfter", "deregister_critical_service_after",
    "SuccessBeforePassing", "FailuresBeforeWarning", "FailuresBeforeCritical", "OutputMaxSize",
    "ServiceID", "service_id", "ID", NULL};

/* Case-insensitive lookup among an object's keys (last wins, as in Go). */
static const cJSON *iget(const cJSON *o, const char *name)
{
    const cJSON *found = NULL, *k;
    cJSON_ArrayForEach(k, o) if (strcasecmp(k->string, name) == 0) found = k;
    return found;
}

static const cJSON *iget2(const cJSON *o, const char *a, const char *b)
{
    const cJSON *x = iget(o, a);
    return x ? x : iget(o, b);
}

struct parsed_check {
    char id[256], name[256], notes[512], status[16], type[32], interval[32], timeout[32];
    int64_t ttl_ms, dereg_ms, interval_ms;
    int has_status;
};

static int parse_check(const cJSON *in, struct parsed_check *pc, int embedded, char *err, size_t len)
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
    const char *types[][2] = {{"HTTP", "http"}, {"TCP", "tcp"}, {"UDP", "udp"}, {"GRPC", "grpc"},
                              {"H2PING", "h2ping"}, {"OSService", "os_service"},
                              {"DockerContainerID", "docker"}, {"AliasService", "alias"},
                              {"AliasNode", "alias"}, {"ScriptArgs", "script"}, {"Args", "script"}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (iget(in, types[i][0]) && !pc->type[0])
            snprintf(pc->type, sizeof pc->type, "%s", types[i][1]);
    int needs_interval = pc->type[0] && strcmp(pc->type, "alias") && strcmp(pc->type, "docker");
    if (interval > 0 && ttl > 0) {
        snprintf(err, len, "Invalid check: Interval and TTL cannot both be specified");
        return 400;
    }
    if (needs_interval && interval <= 0) {
        snprintf(err, len, "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks");
        return 400;
    }
    if (!pc->type[0]) {
        if (ttl <= 0) {
            snprintf(err, len, "Invalid check: TTL must be > 0 for TTL checks");
            return 400;
        }
        snprintf(pc->type, sizeof pc->type, "ttl");
    }
    if (pc->has_status && strcmp(pc->status, "passing") && strcmp(pc->status, "warning") &&
        strcmp(pc->status, "critical")) {
        snprintf(err, len, embedded ? "Status for checks must 'passing', 'warning', 'critical'"
                                    : "Bad check status");
        return 400;
    }
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
        k->status = pc->has_status ? (!strcmp(pc->status, "passing") ? ST_PASSING
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

static enum MHD_Result service_register(struct agent *a, struct MHD_Connection *c,
                                        const char *body, size_t len)
{
    char err[600];
    if (len == 0)
        return reply_text(c, 400, "Request decode failed: EOF");
    cJSON *in = cJSON_ParseWithLength(body, len);
    if (in == NULL)
        return reply_text(c, 400, "Request decode failed: unexpected EOF");
    if (!cJSON_IsObject(in)) {
        cJSON_Delete(in);
        return reply_text(c, 400, "Request decode failed: json: cannot unmarshal into Go value of type structs.ServiceDefinition");
    }
    enum MHD_Result ret;
    const cJSON *k;
    cJSON_ArrayForEach(k, in) {
        if (canon(k->string, SERVICE_KEYS) == NULL) {
            snprintf(err, sizeof err, "Request decode failed: json: unknown field \"%s\"", k->string);
            ret = reply_text(c, 400, err);
            goto out;
        }
    }
    const cJSON *name = iget(in, "Name"), *id = iget(in, "ID"), *addr = iget(in, "Address");
    const cJSON *port = iget(in, "Port"), *tags = iget(in, "Tags"), *meta = iget(in, "Meta");
    const cJSON *weights = iget(in, "Weights"), *eto = iget2(in, "EnableTagOverride", "enable_tag_override");
    const cJSON *check = iget(in, "Check"), *checks = iget(in, "Checks");
    const cJSON *tagged = iget2(in, "TaggedAddresses", "tagged_addresses");
    if ((port && !cJSON_IsNumber(port)) || (tags && !cJSON_IsNull(tags) && !cJSON_IsArray(tags)) ||
        (meta && !cJSON_IsNull(meta) && !cJSON_IsObject(meta)) || (name && !cJSON_IsString(name)) ||
        (checks && !cJSON_IsNull(checks) && !cJSON_IsArray(checks))) {
        ret = reply_text(c, 400, "Request decode failed: json: cannot unmarshal value into a field of the wrong type");
        goto out;
    }
    /* Durations first: Go's decoder fails on them before validation. */
    struct parsed_check pcs[64];
    int npc = 0;
    const cJSON *list[64];
    int nl = 0;
    if (cJSON_IsObject(check) && cJSON_GetArraySize(check) > 0)
        list[nl++] = check;
    const cJSON *ce;
    cJSON_ArrayForEach(ce, checks) if (nl < 64) list[nl++] = ce;
    if (!cJSON_IsString(name) || name->valuestring[0] == '\0') {
        ret = reply_text(c, 400, "Missing service name");
        goto out;
    }
    if (cJSON_IsString(addr) && (!strcmp(addr->valuestring, "0.0.0.0") || !strcmp(addr->valuestring, "::") ||
                                 !strcmp(addr->valuestring, "[::]"))) {
        ret = reply_text(c, 400, "Invalid service address");
        goto out;
    }
    int wp = 1, ww = 1;
    if (cJSON_IsObject(weights)) {
        const cJSON *p = iget(weights, "Passing"), *w = iget(weights, "Warning");
        wp = cJSON_IsNumber(p) ? p->valueint : 0;
        ww = cJSON_IsNumber(w) ? w->valueint : 0;
        if (wp < 1) {
            ret = reply_text(c, 400, "Invalid Weights: Passing must be greater than 0");
            goto out;
        }
        if (ww < 0) {
            ret = reply_text(c, 400, "Invalid Weights: Warning must be greater or equal than 0");
            goto out;
        }
        if (wp > 65535 || ww > 65535) {
            ret = reply_text(c, 400, "Invalid Weights: DNS Weight must be between 0 and 65535");
            goto out;
        }
    }
    if (cJSON_IsObject(meta)) {
        if (cJSON_GetArraySize(meta) > 64) {
            ret = reply_text(c, 400, "Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs");
            goto out;
        }
        const cJSON *m;
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
                snprintf(err, sizeof err, "Invalid Service Meta: Couldn't load metadata pair ('%s', '%s'): %s",
                         m->string, cJSON_IsString(m) ? m->valuestring : "", why);
                ret = reply_text(c, 400, err);
                goto out;
            }
        }
    }
    for (int i = 0; i < nl; i++) {
        int st = parse_check(list[i], &pcs[npc], 1, err, sizeof err);
        if (st) {
            ret = reply_text(c, (unsigned)st, err);
            goto out;
        }
        npc++;
    }
    const char *sid = cJSON_IsString(id) && id->valuestring[0] ? id->valuestring : name->valuestring;
    for (int i = 0; i < npc; i++) {
        if (!pcs[i].id[0]) {
            if (npc == 1)
                snprintf(pcs[i].id, sizeof pcs[i].id, "service:%s", sid);
            else
                snprintf(pcs[i].id, sizeof pcs[i].id, "service:%s:%d", sid, i + 1);
        }
        if (!pcs[i].name[0])
            snprintf(pcs[i].name, sizeof pcs[i].name, "Service '%s' check", name->valuestring);
    }

    pthread_mutex_lock(&S.mu);
    struct node *n = a->node;
    struct service *s = svc_find(n, sid);
    uint64_t idx = bump();
    if (s == NULL) {
        for (int i = 0; i < S.maxn && s == NULL; i++)
            if (!n->services[i].used)
                s = &n->services[i];
        if (s == NULL) {
            pthread_mutex_unlock(&S.mu);
            ret = reply_text(c, 500, "too many services on this agent (double limit)");
            goto out;
        }
        memset(s, 0, sizeof *s);
        s->used = 1;
        s->create_index = idx;
        snprintf(s->id, sizeof s->id, "%s", sid);
    }
    snprintf(s->name, sizeof s->name, "%s", name->valuestring);
    snprintf(s->address, sizeof s->address, "%s", cJSON_IsString(addr) ? addr->valuestring : "");
    s->port = cJSON_IsNumber(port) ? port->valueint : 0;
    cJSON_Delete(s->tags);
    cJSON_Delete(s->meta);
    cJSON_Delete(s->tagged);
    s->tags = cJSON_IsArray(tags) ? cJSON_Duplicate(tags, 1) : cJSON_CreateArray();
    s->meta = cJSON_IsObject(meta) ? cJSON_Duplicate(meta, 1) : cJSON_CreateObject();
    s->tagged = cJSON_IsObject(tagged) ? cJSON_Duplicate(tagged, 1) : NULL;
    s->w_passing = wp;
    s->w_warning = ww;
    s->tag_override = cJSON_IsTrue(eto);
    s->modify_index = idx;
    S.services_index = idx;
    for (int i = 0; i < npc; i++)
        install_check(n, &pcs[i], s->id);
    const char *rep = NULL;
    size_t rl = 0;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "replace-existing-checks", 23,
                                      &rep, &rl) == MHD_YES &&
        (rep == NULL || *rep == '\0' || strcmp(rep, "true") == 0)) {
        for (int i = 0; i < S.maxn; i++) {
            struct check *old = &n->checks[i];
            if (!old->used || strcmp(old->service_id, s->id) != 0 ||
                strncmp(old->id, "_service_maintenance:", 21) == 0)
                continue;
            int keep = 0;
            for (int j = 0; j < npc; j++)
                keep |= strcmp(pcs[j].id, old->id) == 0;
            if (!keep) {
                S.checks_index = bump();
                touch_check_service(n, old, S.checks_index);
                check_free_slot(old);
            }
        }
    }
    changed();
    pthread_mutex_unlock(&S.mu);
    ret = empty_ok(c);
out:
    cJSON_Delete(in);
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
    snprintf(err, sizeof err, "Unknown check ID \"%s\". Ensure that the check ID is passed, not the check name.", id);
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
        snprintf(err, sizeof err, "Unknown service ID \"%s\". Ensure that the service ID is passed, not the service name.", id);
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
            snprintf(k->notes, sizeof k->notes, "%s", reason && *reason ? reason :
                     "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.");
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

/* ---- sessions and KV ------------------------------------------------------------ */

static struct session *session_find(const char *id)
{
    for (int i = 0; i < MAX_SESSIONS; i++)
        if (S.sessions[i].used && strcmp(S.sessions[i].id, id) == 0)
            return &S.sessions[i];
    return NULL;
}

static cJSON *session_json(const struct session *s)
{
    char b[32];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "ID", s->id);
    cJSON_AddStringToObject(o, "Name", s->name);
    cJSON_AddStringToObject(o, "Node", s->node);
    cJSON_AddNumberToObject(o, "LockDelay", (double)s->lock_delay_ms * 1e6);
    cJSON_AddStringToObject(o, "Behavior", s->behavior);
    cJSON_AddStringToObject(o, "TTL", s->ttl_ms ? dur_format_ms(s->ttl_ms, b, sizeof b) : "");
    cJSON *nc = cJSON_AddArrayToObject(o, "NodeChecks");
    cJSON_AddItemToArray(nc, cJSON_CreateString("serfHealth"));
    cJSON_AddNullToObject(o, "ServiceChecks");
    cJSON_AddNumberToObject(o, "CreateIndex", (double)s->create_index);
    cJSON_AddNumberToObject(o, "ModifyIndex", (double)s->modify_index);
    return o;
}

/* /v1/session/info/:id (by id), /node/:node (by node), /list (all): a
 * blocking view on the sessions' index, which every create, destroy and
 * invalidation moves (a renew does not, as in Consul). */
struct session_query {
    int by_id, by_node;
    const char *name;
};

static cJSON *view_sessions(struct MHD_Connection *c, const void *ctx, uint64_t *index,
                            int *status)
{
    const struct session_query *sq = ctx;
    (void)c;
    (void)status;
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < MAX_SESSIONS; i++) {
        const struct session *s = &S.sessions[i];
        if (!s->used || (sq->by_id && strcmp(s->id, sq->name)) ||
            (sq->by_node && strcmp(s->node, sq->name)))
            continue;
        cJSON_AddItemToArray(arr, session_json(s));
    }
    *index = S.sessions_index ? S.sessions_index : 1;
    return arr;
}

static enum MHD_Result session_create(struct agent *a, struct MHD_Connection *c, const char *body,
                                      size_t len)
{
    char err[300];
    cJSON *in = len ? cJSON_ParseWithLength(body, len) : cJSON_CreateObject();
    if (!cJSON_IsObject(in)) {
        cJSON_Delete(in);
        return reply_text(c, 400, "Request decode failed: unexpected EOF");
    }
    int64_t ttl = 0, delay = 15000;
    const cJSON *v;
    if ((v = iget(in, "TTL")) && cJSON_IsString(v) && v->valuestring[0]) {
        /* Consul's texts (Session.Apply): the TTL in nanoseconds, the bounds
         * as Go durations; "0s" means no TTL. The status is the SPEC's 400. */
        char lo[32], hi[32];
        if (dur_parse_ms(v->valuestring, &ttl) < 0) {
            snprintf(err, sizeof err, "Session TTL '%s' invalid: time: invalid duration \"%s\"",
                     v->valuestring, v->valuestring);
            cJSON_Delete(in);
            return reply_text(c, 400, err);
        }
        if (ttl != 0 && (ttl < S.session_ttl_min_ms || ttl > 86400000)) {
            snprintf(err, sizeof err, "Invalid Session TTL '%lld', must be between [%s=%s]",
                     (long long)ttl * 1000000LL, dur_format_ms(S.session_ttl_min_ms, lo, sizeof lo),
                     dur_format_ms(86400000, hi, sizeof hi));
            cJSON_Delete(in);
            return reply_text(c, 400, err);
        }
    }
    if ((v = iget(in, "LockDelay"))) {
        if (json_dur(v, &delay, err, sizeof err) < 0) {
            cJSON_Delete(in);
            return reply_text(c, 400, "Request decode failed: invalid LockDelay");
        }
        if (delay > 60000)
            delay = 60000;
    }
    const char *behavior = "release";
    if ((v = iget(in, "Behavior")) && cJSON_IsString(v) && v->valuestring[0]) {
        if (strcmp(v->valuestring, "release") && strcmp(v->valuestring, "delete")) {
            snprintf(err, sizeof err, "Invalid Behavior setting '%s'", v->valuestring);
            cJSON_Delete(in);
            return reply_text(c, 400, err);
        }
        behavior = v->valuestring;
    }
    pthread_mutex_lock(&S.mu);
    if (S.leader[0] == '\0') {
        pthread_mutex_unlock(&S.mu);
        cJSON_Delete(in);
        return reply_text(c, 500, "No cluster leader");
    }
    struct session *s = NULL;
    for (int i = 0; i < MAX_SESSIONS && s == NULL; i++)
        if (!S.sessions[i].used)
            s = &S.sessions[i];
    if (s == NULL) {
        pthread_mutex_unlock(&S.mu);
        cJSON_Delete(in);
        return reply_text(c, 500, "too many sessions (double limit)");
    }
    memset(s, 0, sizeof *s);
    s->used = 1;
    snprintf(s->id, sizeof s->id, "%08x-%04x-4%03x-8%03x-%012llx", (unsigned)rand(),
             (unsigned)rand() & 0xffff, (unsigned)rand() & 0xfff, (unsigned)rand() & 0xfff,
             (unsigned long long)rand() * 4096ULL + (unsigned long long)(rand() & 0xfff));
    const cJSON *nm = iget(in, "Name"), *nd = iget(in, "Node");
    snprintf(s->name, sizeof s->name, "%s", cJSON_IsString(nm) ? nm->valuestring : "");
    snprintf(s->node, sizeof s->node, "%s", cJSON_IsString(nd) && nd->valuestring[0] ? nd->valuestring : a->node->name);
    snprintf(s->behavior, sizeof s->behavior, "%s", behavior);
    s->ttl_ms = ttl;
    s->lock_delay_ms = delay;
    s->expires = ttl ? now_ms() + (uint64_t)ttl : 0;
    s->create_index = s->modify_index = bump();
    S.sessions_index = s->modify_index;
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "ID", s->id);
    changed();
    pthread_mutex_unlock(&S.mu);
    cJSON_Delete(in);
    return json_reply(c, 200, out, NULL);
}

static struct kv *kv_find(const char *key, int *slot)
{
    for (int i = 0; i < 1024; i++) {
        if (S.kvs[i].used && strcmp(S.kvs[i].key, key) == 0) {
            if (slot)
                *slot = i;
            return &S.kvs[i];
        }
    }
    return NULL;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64enc(const char *in, size_t n)
{
    char *out = malloc(n / 3 * 4 + 8), *o = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < n) v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < n) v |= (unsigned char)in[i + 2];
        *o++ = b64[(v >> 18) & 63];
        *o++ = b64[(v >> 12) & 63];
        *o++ = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? b64[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

static cJSON *kv_json(const struct kv *k)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "LockIndex", (double)k->lock_index);
    cJSON_AddStringToObject(o, "Key", k->key);
    cJSON_AddNumberToObject(o, "Flags", (double)k->flags);
    if (k->has_value) {
        char *e = b64enc(k->value ? k->value : "", k->value_len);
        cJSON_AddStringToObject(o, "Value", e ? e : "");
        free(e);
    } else {
        cJSON_AddNullToObject(o, "Value");
    }
    if (k->session[0])
        cJSON_AddStringToObject(o, "Session", k->session);
    cJSON_AddNumberToObject(o, "CreateIndex", (double)k->create_index);
    cJSON_AddNumberToObject(o, "ModifyIndex", (double)k->modify_index);
    return o;
}

static cJSON *view_kv(struct MHD_Connection *c, const void *ctx, uint64_t *index, int *status)
{
    const char *key = ctx;
    int recurse = has_arg(c, "recurse"), keys = has_arg(c, "keys");
    cJSON *arr = cJSON_CreateArray();
    uint64_t idx = 0;
    for (int i = 0; i < 1024; i++) {
        const struct kv *k = &S.kvs[i];
        if (!k->used)
            continue;
        int match = (recurse || keys) ? strncmp(k->key, key, strlen(key)) == 0 : strcmp(k->key, key) == 0;
        if (!match)
            continue;
        idx = max64(idx, k->modify_index);
        cJSON_AddItemToArray(arr, keys ? cJSON_CreateString(k->key) : kv_json(k));
    }
    if (cJSON_GetArraySize(arr) == 0) {
        *status = 404;
        *index = S.kv_index ? S.kv_index : 1;
        cJSON_Delete(arr);
        return NULL;
    }
    *index = idx;
    return arr;
}

static enum MHD_Result kv_write(struct MHD_Connection *c, const char *method, const char *key,
                                const char *body, size_t len)
{
    char err[300];
    if (len > 512 * 1024)
        return reply_text(c, 413, "Value exceeds 524288 byte limit");
    pthread_mutex_lock(&S.mu);
    if (S.leader[0] == '\0') {
        pthread_mutex_unlock(&S.mu);
        return reply_text(c, 500, "No cluster leader");
    }
    int slot = -1;
    struct kv *k = kv_find(key, &slot);
    const char *acq = arg(c, "acquire"), *rel = arg(c, "release"), *cas = arg(c, "cas");
    const char *result = "true";
    if (strcmp(method, "DELETE") == 0) {
        if (k) {
            free(k->value);
            memset(k, 0, sizeof *k);
            S.kv_index = bump();
        }
        goto done;
    }
    if (cas) {
        unsigned long long want = strtoull(cas, NULL, 10);
        if ((k ? k->modify_index : 0) != want) {
            result = "false";
            goto done;
        }
    }
    struct session *sess = NULL;
    if (acq || rel) {
        sess = session_find(acq ? acq : rel);
        if (sess == NULL && acq) {
            pthread_mutex_unlock(&S.mu);
            snprintf(err, sizeof err, "invalid session \"%s\"", acq);
            return reply_text(c, 500, err);
        }
    }
    if (rel) {
        if (k == NULL || strcmp(k->session, rel) != 0) {
            result = "false";
            goto done;
        }
        k->session[0] = '\0';
        k->modify_index = bump();
        S.kv_index = k->modify_index;
        goto done;
    }
    if (acq) {
        if (k && k->session[0] && strcmp(k->session, acq) != 0) {
            result = "false";
            goto done;
        }
        if (slot >= 0 && S.lock_delay_until[slot] > now_ms() && !(k && !strcmp(k->session, acq))) {
            result = "false";
            goto done;
        }
        for (int j = 0; k == NULL && j < 64; j++) {
            if (S.deleted_delay[j].until > now_ms() && !strcmp(S.deleted_delay[j].key, key)) {
                result = "false";   /* deleted with its session: still delayed */
                goto done;
            }
        }
    }
    if (k == NULL) {
        for (int i = 0; i < 1024 && k == NULL; i++)
            if (!S.kvs[i].used) {
                k = &S.kvs[i];
                slot = i;
            }
        if (k == NULL) {
            pthread_mutex_unlock(&S.mu);
            return reply_text(c, 500, "too many keys (double limit)");
        }
        memset(k, 0, sizeof *k);
        k->used = 1;
        snprintf(k->key, sizeof k->key, "%s", key);
        k->create_index = S.raft + 1;
        S.lock_delay_until[slot] = 0;
    }
    free(k->value);
    k->value = malloc(len + 1);
    if (k->value) {
        memcpy(k->value, body, len);
        k->value[len] = '\0';
    }
    k->value_len = len;
    k->has_value = 1;
    const char *fl = arg(c, "flags");
    if (fl)
        k->flags = strtoull(fl, NULL, 10);
    if (acq && strcmp(k->session, acq) != 0) {
        snprintf(k->session, sizeof k->session, "%s", acq);
        k->lock_index++;
    }
    k->modify_index = bump();
    S.kv_index = k->modify_index;
done:
    changed();
    pthread_mutex_unlock(&S.mu);
    return reply(c, 200, "application/json", result, strlen(result), NULL);
}

/* ---- routing ----------------------------------------------------------------------- */

struct route {
    const char *pattern;
    int prefix;
    const char *methods;   /* "GET", "PUT", "GET,PUT,DELETE" */
    int id;
};

enum {
    R_SELF, R_SERVICES, R_CHECKS, R_MEMBERS, R_SERVICE, R_REGISTER, R_DEREGISTER, R_MAINT,
    R_CHECK_REGISTER, R_CHECK_DEREGISTER, R_PASS, R_WARN, R_FAIL, R_UPDATE, R_NODE_MAINT,
    R_CAT_SERVICES, R_CAT_NODES, R_CAT_SERVICE, R_CAT_NODE, R_H_SERVICE, R_H_CHECKS, R_H_STATE,
    R_H_NODE, R_LEADER, R_PEERS, R_S_CREATE, R_S_RENEW, R_S_DESTROY, R_S_INFO, R_S_NODE,
    R_S_LIST, R_KV
};

static const struct route routes[] = {
    {"/v1/agent/self", 0, "GET", R_SELF},
    {"/v1/agent/services", 0, "GET", R_SERVICES},
    {"/v1/agent/checks", 0, "GET", R_CHECKS},
    {"/v1/agent/members", 0, "GET", R_MEMBERS},
    {"/v1/agent/service/", 1, "GET", R_SERVICE},
    {"/v1/agent/service/register", 0, "PUT", R_REGISTER},
    {"/v1/agent/service/deregister/", 1, "PUT", R_DEREGISTER},
    {"/v1/agent/service/maintenance/", 1, "PUT", R_MAINT},
    {"/v1/agent/check/register", 0, "PUT", R_CHECK_REGISTER},
    {"/v1/agent/check/deregister/", 1, "PUT", R_CHECK_DEREGISTER},
    {"/v1/agent/check/pass/", 1, "PUT", R_PASS},
    {"/v1/agent/check/warn/", 1, "PUT", R_WARN},
    {"/v1/agent/check/fail/", 1, "PUT", R_FAIL},
    {"/v1/agent/check/update/", 1, "PUT", R_UPDATE},
    {"/v1/agent/maintenance", 0, "PUT", R_NODE_MAINT},
    {"/v1/catalog/services", 0, "GET", R_CAT_SERVICES},
    {"/v1/catalog/nodes", 0, "GET", R_CAT_NODES},
    {"/v1/catalog/service/", 1, "GET", R_CAT_SERVICE},
    {"/v1/catalog/node/", 1, "GET", R_CAT_NODE},
    {"/v1/health/service/", 1, "GET", R_H_SERVICE},
    {"/v1/health/checks/", 1, "GET", R_H_CHECKS},
    {"/v1/health/state/", 1, "GET", R_H_STATE},
    {"/v1/health/node/", 1, "GET", R_H_NODE},
    {"/v1/status/leader", 0, "GET", R_LEADER},
    {"/v1/status/peers", 0, "GET", R_PEERS},
    {"/v1/session/create", 0, "PUT", R_S_CREATE},
    {"/v1/session/renew/", 1, "PUT", R_S_RENEW},
    {"/v1/session/destroy/", 1, "PUT", R_S_DESTROY},
    {"/v1/session/info/", 1, "GET", R_S_INFO},
    {"/v1/session/node/", 1, "GET", R_S_NODE},
    {"/v1/session/list", 0, "GET", R_S_LIST},
    {"/v1/kv/", 1, "GET,PUT,DELETE", R_KV},
};

static const struct route *route_for(const char *url)
{
    const struct route *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        size_t l = strlen(routes[i].pattern);
        int match = routes[i].prefix ? strncmp(url, routes[i].pattern, l) == 0
                                     : strcmp(url, routes[i].pattern) == 0;
        if (match && l > best_len) {
            best = &routes[i];
            best_len = l;
        }
    }
    return best;
}

static int method_allowed(const struct route *r, const char *method)
{
    char list[64];
    snprintf(list, sizeof list, "%s", r->methods);
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (strcmp(t, method) == 0)
            return 1;
    return 0;
}

static cJSON *members_json(void)
{
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
    return arr;
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

enum MHD_Result api_handle(struct agent *a, struct MHD_Connection *c, const char *url,
                           const char *method, const char *body, size_t body_len)
{
    char err[600];
    if (strncmp(url, "/v1/", 4) != 0)
        return reply_text(c, 404, "404 page not found\n");
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p < 0x20)
            return reply(c, 400, NULL, "", 0, NULL);
    const struct route *r = route_for(url);
    if (r == NULL)
        return reply_text(c, 404, "Invalid URL path: not a recognized HTTP API endpoint\n");
    if (strcmp(method, "OPTIONS") == 0 || !method_allowed(r, method)) {
        char allow[80];
        snprintf(allow, sizeof allow, "OPTIONS,%s", r->methods);
        const char *h[] = {"Allow", allow, NULL};
        if (strcmp(method, "OPTIONS") == 0)
            return reply(c, 200, NULL, "", 0, h);
        snprintf(err, sizeof err, "method %s not allowed", method);
        return reply(c, 405, "text/plain; charset=utf-8", err, strlen(err), h);
    }
    const char *rest = url + strlen(r->pattern);
    struct query q;
    enum MHD_Result ret = MHD_NO;
    const char *expr = arg(c, "filter");
    if (expr && *expr && (r->id == R_SERVICES || r->id == R_CHECKS || r->id == R_CAT_SERVICE ||
                          r->id == R_CAT_NODES || r->id == R_CAT_NODE || r->id == R_H_SERVICE ||
                          r->id == R_H_CHECKS || r->id == R_H_STATE || r->id == R_H_NODE)) {
        char ferr[300];
        struct dfilter *f = dfilter_new(expr, ferr, sizeof ferr);
        if (f == NULL) {
            snprintf(err, sizeof err, "Failed to create boolean expression evaluator: %s", ferr);
            return reply_text(c, 500, err);
        }
        dfilter_free(f);
    }
    switch (r->id) {
    case R_REGISTER:
        return service_register(a, c, body, body_len);
    case R_CHECK_REGISTER:
        return check_register(a, c, body, body_len);
    case R_DEREGISTER: {
        pthread_mutex_lock(&S.mu);
        struct service *s = svc_find(a->node, rest);
        if (s == NULL) {
            pthread_mutex_unlock(&S.mu);
            snprintf(err, sizeof err, "Unknown service ID \"%s\". Ensure that the service ID is passed, not the service name.", rest);
            return reply_text(c, 404, err);
        }
        remove_service(a->node, s);
        pthread_mutex_unlock(&S.mu);
        return empty_ok(c);
    }
    case R_CHECK_DEREGISTER: {
        pthread_mutex_lock(&S.mu);
        struct check *k = check_find(a->node, rest);
        if (k == NULL) {
            pthread_mutex_unlock(&S.mu);
            return unknown_check(c, rest);
        }
        S.checks_index = bump();
        touch_check_service(a->node, k, S.checks_index);
        check_free_slot(k);
        changed();
        pthread_mutex_unlock(&S.mu);
        return empty_ok(c);
    }
    case R_PASS:
    case R_WARN:
    case R_FAIL: {
        const char *note = arg(c, "note");
        return ttl_update(a, c, rest, r->id == R_PASS ? ST_PASSING : r->id == R_WARN ? ST_WARNING : ST_CRITICAL,
                          note ? note : "");
    }
    case R_UPDATE: {
        cJSON *in = cJSON_ParseWithLength(body, body_len);
        const cJSON *st = iget(in, "Status"), *out = iget(in, "Output");
        const char *sv = cJSON_IsString(st) ? st->valuestring : "";
        enum cstatus cs;
        if (!strcmp(sv, "passing"))
            cs = ST_PASSING;
        else if (!strcmp(sv, "warning"))
            cs = ST_WARNING;
        else if (!strcmp(sv, "critical"))
            cs = ST_CRITICAL;
        else {
            snprintf(err, sizeof err, "Invalid check status: '%s'", sv);
            cJSON_Delete(in);
            return reply_text(c, 400, err);
        }
        ret = ttl_update(a, c, rest, cs, cJSON_IsString(out) ? out->valuestring : "");
        cJSON_Delete(in);
        return ret;
    }
    case R_MAINT:
        return maintenance(a, c, rest);
    case R_NODE_MAINT:
        return empty_ok(c);
    case R_SERVICES: {
        pthread_mutex_lock(&S.mu);
        cJSON *o = cJSON_CreateObject();
        for (int i = 0; i < S.maxn; i++)
            if (a->node->services[i].used)
                cJSON_AddItemToObject(o, a->node->services[i].id, agent_service_json(&a->node->services[i]));
        pthread_mutex_unlock(&S.mu);
        apply_filter(c, o);
        return json_reply(c, 200, sorted(o), NULL);
    }
    case R_SERVICE: {
        pthread_mutex_lock(&S.mu);
        struct service *s = svc_find(a->node, rest);
        if (s == NULL) {
            pthread_mutex_unlock(&S.mu);
            snprintf(err, sizeof err, "unknown service ID: %s", rest);
            return reply_text(c, 404, err);
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
        return json_reply(c, 200, o, hd);
    }
    case R_CHECKS: {
        pthread_mutex_lock(&S.mu);
        cJSON *o = cJSON_CreateObject();
        for (int i = 0; i < S.maxn; i++)
            if (a->node->checks[i].used)
                cJSON_AddItemToObject(o, a->node->checks[i].id, check_json(a->node, &a->node->checks[i], 1));
        pthread_mutex_unlock(&S.mu);
        apply_filter(c, o);
        return json_reply(c, 200, sorted(o), NULL);
    }
    case R_MEMBERS: {
        pthread_mutex_lock(&S.mu);
        cJSON *o = members_json();
        pthread_mutex_unlock(&S.mu);
        return json_reply(c, 200, o, NULL);
    }
    case R_SELF: {
        pthread_mutex_lock(&S.mu);
        cJSON *o = cJSON_CreateObject();
        cJSON *cfg = cJSON_AddObjectToObject(o, "Config");
        cJSON_AddStringToObject(cfg, "Datacenter", S.dc);
        cJSON_AddStringToObject(cfg, "PrimaryDatacenter", S.dc);
        cJSON_AddStringToObject(cfg, "NodeName", a->node->name);
        cJSON_AddStringToObject(cfg, "NodeID", "00000000-0000-4000-8000-000000000000");
        cJSON_AddStringToObject(cfg, "Revision", "double");
        cJSON_AddBoolToObject(cfg, "Server", 0);
        cJSON_AddStringToObject(cfg, "Version", "1.17.3");
        cJSON_AddStringToObject(cfg, "BuildDate", "2024-01-01T00:00:00Z");
        cJSON *dbg = cJSON_AddObjectToObject(o, "DebugConfig");
        cJSON_AddStringToObject(dbg, "Datacenter", S.dc);
        cJSON_AddStringToObject(dbg, "NodeName", a->node->name);
        cJSON *coord = cJSON_AddObjectToObject(o, "Coord");
        cJSON *vec = cJSON_AddArrayToObject(coord, "Vec");
        for (int i = 0; i < 8; i++)
            cJSON_AddItemToArray(vec, cJSON_CreateNumber(0));
        cJSON_AddNumberToObject(coord, "Error", 1.5);
        cJSON_AddNumberToObject(coord, "Adjustment", 0);
        cJSON_AddNumberToObject(coord, "Height", 1e-5);
        cJSON *m = cJSON_AddObjectToObject(o, "Member");
        cJSON_AddStringToObject(m, "Name", a->node->name);
        cJSON_AddStringToObject(m, "Addr", a->node->address);
        cJSON_AddNumberToObject(m, "Port", 8301);
        cJSON *tags = cJSON_AddObjectToObject(m, "Tags");
        cJSON_AddStringToObject(tags, "dc", S.dc);
        cJSON_AddStringToObject(tags, "role", "node");
        cJSON_AddNumberToObject(m, "Status", a->node->status);
        cJSON_AddItemToObject(o, "Stats", cJSON_CreateObject());
        cJSON_AddItemToObject(o, "Meta", cJSON_CreateObject());
        pthread_mutex_unlock(&S.mu);
        return json_reply(c, 200, o, NULL);
    }
    case R_LEADER:
    case R_PEERS: {
        if (arg(c, "dc") && *arg(c, "dc") && strcmp(arg(c, "dc"), S.dc))
            return reply_text(c, 500, "No path to datacenter");
        pthread_mutex_lock(&S.mu);
        cJSON *o;
        if (r->id == R_LEADER) {
            const struct node *l = S.leader[0] ? node_by_name(S.leader) : NULL;
            char addr[80] = "";
            if (l)
                snprintf(addr, sizeof addr, "%s:8300", l->address);
            o = cJSON_CreateString(addr);
        } else {
            o = cJSON_CreateArray();
            for (int i = 0; i < 64; i++)
                if (S.nodes[i].used && S.nodes[i].server && S.nodes[i].status != 3) {
                    char addr[80];
                    snprintf(addr, sizeof addr, "%s:8300", S.nodes[i].address);
                    cJSON_AddItemToArray(o, cJSON_CreateString(addr));
                }
        }
        pthread_mutex_unlock(&S.mu);
        return json_reply(c, 200, o, NULL);
    }
    case R_S_CREATE:
        return session_create(a, c, body, body_len);
    case R_S_RENEW:
    case R_S_DESTROY: {
        pthread_mutex_lock(&S.mu);
        struct session *s = session_find(rest);
        if (r->id == R_S_DESTROY) {
            if (s)
                session_invalidate(s);
            pthread_mutex_unlock(&S.mu);
            return reply(c, 200, "application/json", "true", 4, NULL);
        }
        if (s == NULL) {
            pthread_mutex_unlock(&S.mu);
            snprintf(err, sizeof err, "Session id '%s' not found", rest);
            return reply_text(c, 404, err);
        }
        if (s->ttl_ms)
            s->expires = now_ms() + (uint64_t)s->ttl_ms;
        cJSON *arr = cJSON_CreateArray();
        cJSON_AddItemToArray(arr, session_json(s));
        pthread_mutex_unlock(&S.mu);
        return json_reply(c, 200, arr, NULL);
    }
    case R_S_INFO:
        if (rest[0] == '\0')
            return reply_text(c, 400, "Missing session");
        break;   /* a blocking view, below */
    case R_S_NODE:
        if (rest[0] == '\0')
            return reply_text(c, 400, "Missing node name");
        break;
    case R_S_LIST:
        break;
    case R_KV:
        if (strcmp(method, "GET") != 0)
            return kv_write(c, method, rest, body, body_len);
        if (has_arg(c, "raw")) {
            pthread_mutex_lock(&S.mu);
            struct kv *k = kv_find(rest, NULL);
            if (k == NULL) {
                pthread_mutex_unlock(&S.mu);
                return reply(c, 404, NULL, "", 0, NULL);
            }
            ret = reply(c, 200, "text/plain; charset=utf-8", k->value ? k->value : "", k->value_len, NULL);
            pthread_mutex_unlock(&S.mu);
            return ret;
        }
        /* fall through: a blocking view */
        break;
    default:
        break;
    }

    /* Catalog, health and KV reads: common parameters and blocking. */
    if ((r->id == R_CAT_SERVICE || r->id == R_H_SERVICE || r->id == R_H_CHECKS) && rest[0] == '\0')
        return reply_text(c, 400, "Missing service name");
    if (r->id == R_H_STATE && rest[0] == '\0')
        return reply_text(c, 400, "Missing check state");
    if (common_params(c, &q, 1, &ret) < 0)
        return ret;
    struct checks_ctx cc = {0, rest};
    struct session_query sq = {r->id == R_S_INFO, r->id == R_S_NODE, rest};
    pthread_mutex_lock(&S.mu);
    switch (r->id) {
    case R_H_SERVICE: {
        ret = blocking_view(a, c, &q, view_health_service, rest);
        break;
    }
    case R_CAT_SERVICES:
        ret = blocking_view(a, c, &q, view_catalog_services, NULL);
        break;
    case R_CAT_NODES:
        ret = blocking_view(a, c, &q, view_catalog_nodes, NULL);
        break;
    case R_CAT_SERVICE:
        ret = blocking_view(a, c, &q, view_catalog_service, rest);
        break;
    case R_H_CHECKS:
        cc.mode = 0;
        ret = blocking_view(a, c, &q, view_checks, &cc);
        break;
    case R_H_STATE:
        cc.mode = 1;
        if ((expr == NULL || *expr == '\0') && !has_arg(c, "pretty") && !S.pretty && !S.dev)
            ret = blocking_state(a, c, &q, rest);
        else
            ret = blocking_view(a, c, &q, view_checks, &cc);
        break;
    case R_H_NODE:
    case R_CAT_NODE:
        cc.mode = 2;
        ret = blocking_view(a, c, &q, view_checks, &cc);
        break;
    case R_KV:
        ret = blocking_view(a, c, &q, view_kv, rest);
        break;
    case R_S_INFO:
    case R_S_NODE:
    case R_S_LIST:
        ret = blocking_view(a, c, &q, view_sessions, &sq);
        break;
    default:
        pthread_mutex_unlock(&S.mu);
        return reply_text(c, 404, "Invalid URL path: not a recognized HTTP API endpoint\n");
    }
    pthread_mutex_unlock(&S.mu);
    return ret;
}
