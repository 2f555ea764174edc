/* Catalog, health and status reads of the Consul double. */
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

/* ---- views ---------------------------------------------------------------- */

int node_visible(const struct node *n)
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
cJSON *check_json(const struct node *n, const struct check *k, int agent_view)
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
    cJSON_AddItemToObject(o, "ServiceTags",
                          s && s->tags ? cJSON_Duplicate(s->tags, 1) : cJSON_CreateArray());
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
    cJSON_AddStringToObject(o, "Output",
                            n->serf == ST_PASSING ? "Agent alive and reachable"
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

cJSON *agent_service_json(const struct service *s)
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
    cJSON_ArrayForEach(t, w->s->tags)
        if (cJSON_IsString(t) && strcasecmp(t->valuestring, value) == 0)
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

/* A walk over the instances of one service on the visible nodes. */
struct walk {
    const char *name;
    int node, slot;
};

static const struct service *next_instance(struct walk *w, const struct node **n)
{
    for (; w->node < 64; w->node++, w->slot = -1) {
        *n = &S.nodes[w->node];
        if (!node_visible(*n))
            continue;
        while (++w->slot < S.maxn) {
            const struct service *s = &(*n)->services[w->slot];
            if (s->used && strcmp(s->name, w->name) == 0)
                return s;
        }
    }
    return NULL;
}

/* A service view's index: the highest of its instances' (idx), or of its
 * last removal; the extinction index when it has none. */
static uint64_t instances_index(const char *name, int found, uint64_t idx)
{
    idx = max64(idx, svc_touched(name));
    return found ? idx : (S.extinction ? S.extinction : 1);
}

cJSON *view_health_service(struct MHD_Connection *c, const void *ctx, uint64_t *index, int *status)
{
    const char *name = ctx;
    int passing = 0;
    const char *pv = NULL;
    size_t pl = 0;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "passing", 7, &pv, &pl) ==
        MHD_YES) {
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
    const struct node *n;
    const struct service *s;
    for (struct walk it = {name, 0, -1}; (s = next_instance(&it, &n)) != NULL;) {
        found = 1;
        idx = max64(idx, s->modify_index);
        idx = max64(idx, n->serf_index);
        for (int k = 0; k < S.maxn; k++)
            if (n->checks[k].used &&
                (!n->checks[k].service_id[0] || !strcmp(n->checks[k].service_id, s->id)))
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
    *index = instances_index(name, found, idx);
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

cJSON *view_catalog_services(struct MHD_Connection *c, const void *ctx, uint64_t *index,
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
            cJSON_ArrayForEach(x, tags)
                if (!strcmp(x->valuestring, t->valuestring))
                    dup = 1;
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
    const struct node *n;
    const struct service *s;
    for (struct walk it = {name, 0, -1}; (s = next_instance(&it, &n)) != NULL;) {
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
        cJSON_AddItemToObject(e, "ServiceTags",
                              s->tags ? cJSON_Duplicate(s->tags, 1) : cJSON_CreateArray());
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
    *index = instances_index(name, found, idx);
    return arr;
}

struct checks_ctx {
    int mode; /* 0 of a service, 1 by state, 2 of a node */
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

/* ---- handlers -------------------------------------------------------------------- */

enum MHD_Result h_catalog_services(const struct req *r)
{
    return serve_view(r, view_catalog_services, NULL);
}

enum MHD_Result h_catalog_nodes(const struct req *r)
{
    return serve_view(r, view_catalog_nodes, NULL);
}

enum MHD_Result h_catalog_service(const struct req *r)
{
    if (r->rest[0] == '\0')
        return reply_text(r->c, 400, "Missing service name");
    return serve_view(r, view_catalog_service, r->rest);
}

enum MHD_Result h_health_service(const struct req *r)
{
    if (r->rest[0] == '\0')
        return reply_text(r->c, 400, "Missing service name");
    return serve_view(r, view_health_service, r->rest);
}

enum MHD_Result h_health_checks(const struct req *r)
{
    if (r->rest[0] == '\0')
        return reply_text(r->c, 400, "Missing service name");
    struct checks_ctx cc = {0, r->rest};
    return serve_view(r, view_checks, &cc);
}

/* Without ?filter or ?pretty the answer is written straight from memory and
 * parked on the checks index alone (blocking_state). */
enum MHD_Result h_health_state(const struct req *r)
{
    if (r->rest[0] == '\0')
        return reply_text(r->c, 400, "Missing check state");
    const char *expr = arg(r->c, "filter");
    if ((expr && *expr) || has_arg(r->c, "pretty") || S.pretty || S.dev) {
        struct checks_ctx cc = {1, r->rest};
        return serve_view(r, view_checks, &cc);
    }
    struct query q;
    enum MHD_Result ret;
    if (common_params(r->c, &q, 1, &ret) < 0)
        return ret;
    pthread_mutex_lock(&S.mu);
    ret = blocking_state(r->a, r->c, &q, r->rest);
    pthread_mutex_unlock(&S.mu);
    return ret;
}

/* /v1/health/node/ and /v1/catalog/node/ answer the same checks view. */
enum MHD_Result h_health_node(const struct req *r)
{
    struct checks_ctx cc = {2, r->rest};
    return serve_view(r, view_checks, &cc);
}

enum MHD_Result h_catalog_node(const struct req *r)
{
    return h_health_node(r);
}

static int other_dc(const struct req *r)
{
    const char *dc = arg(r->c, "dc");
    return dc && *dc && strcmp(dc, S.dc) != 0;
}

enum MHD_Result h_status_leader(const struct req *r)
{
    if (other_dc(r))
        return reply_text(r->c, 500, "No path to datacenter");
    pthread_mutex_lock(&S.mu);
    const struct node *l = S.leader[0] ? node_by_name(S.leader) : NULL;
    char addr[80] = "";
    if (l)
        snprintf(addr, sizeof addr, "%s:8300", l->address);
    pthread_mutex_unlock(&S.mu);
    return json_reply(r->c, 200, cJSON_CreateString(addr), NULL);
}

enum MHD_Result h_status_peers(const struct req *r)
{
    if (other_dc(r))
        return reply_text(r->c, 500, "No path to datacenter");
    pthread_mutex_lock(&S.mu);
    cJSON *o = cJSON_CreateArray();
    for (int i = 0; i < 64; i++)
        if (S.nodes[i].used && S.nodes[i].server && S.nodes[i].status != 3) {
            char addr[80];
            snprintf(addr, sizeof addr, "%s:8300", S.nodes[i].address);
            cJSON_AddItemToArray(o, cJSON_CreateString(addr));
        }
    pthread_mutex_unlock(&S.mu);
    return json_reply(r->c, 200, o, NULL);
}
