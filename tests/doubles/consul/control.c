/*
 * The control API of consul-double (its own port): inspection and fault
 * injection for tests. See README.md for the full list with examples.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/doubles/consul/double.h"

static enum MHD_Result ok_json(struct MHD_Connection *c, cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    enum MHD_Result r = reply(c, 200, "application/json", s ? s : "{}", s ? strlen(s) : 2, NULL);
    free(s);
    return r;
}

static struct agent *agent_by_name(const char *name)
{
    for (int i = 0; i < S.n_agents; i++)
        if (strcmp(S.agents[i].name, name) == 0)
            return &S.agents[i];
    return NULL;
}

static cJSON *state_json(void)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "index", (double)S.raft);
    cJSON_AddStringToObject(o, "leader", S.leader);
    cJSON *nodes = cJSON_AddArrayToObject(o, "nodes");
    for (int i = 0; i < 64; i++) {
        const struct node *n = &S.nodes[i];
        if (!n->used)
            continue;
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", n->name);
        cJSON_AddNumberToObject(x, "status", n->status);
        cJSON_AddBoolToObject(x, "server", n->server);
        if (n->agent) {
            cJSON_AddNumberToObject(x, "port", n->agent->port);
            cJSON_AddBoolToObject(x, "down", n->agent->down);
            cJSON_AddBoolToObject(x, "hang", n->agent->hang);
            cJSON_AddNumberToObject(x, "open_conns", n->agent->open_conns);
            cJSON_AddNumberToObject(x, "refused_conns", n->agent->refused_conns);
        }
        cJSON *svcs = cJSON_AddArrayToObject(x, "services");
        for (int j = 0; j < S.maxn; j++)
            if (n->services[j].used)
                cJSON_AddItemToArray(svcs, cJSON_CreateString(n->services[j].id));
        cJSON *checks = cJSON_AddObjectToObject(x, "checks");
        for (int j = 0; j < S.maxn; j++)
            if (n->checks[j].used)
                cJSON_AddStringToObject(checks, n->checks[j].id, status_name(n->checks[j].status));
        cJSON_AddItemToArray(nodes, x);
    }
    cJSON *sess = cJSON_AddArrayToObject(o, "sessions");
    for (int i = 0; i < MAX_SESSIONS; i++)
        if (S.sessions[i].used)
            cJSON_AddItemToArray(sess, cJSON_CreateString(S.sessions[i].id));
    return o;
}

/*
 * Each control endpoint is a handler run with S.mu held (it may let go of
 * the lock while it waits, and takes it back before it returns). It gives
 * the JSON to answer with, or NULL with a status and a text, or NULL and
 * its answer already printed (text).
 */
struct ctl {
    struct MHD_Connection *c;
    const char *method;
    const cJSON *in;  /* the body; {} when there is none */
    const char *name; /* /members/NAME, /agents/NAME/VERB */
    unsigned status;  /* for a NULL answer */
    const char *why;
    char *text; /* a JSON answer printed under the lock; owned */
};
typedef cJSON *(*ctl_fn)(struct ctl *x);

static cJSON *refuse(struct ctl *x, unsigned status, const char *why)
{
    x->status = status;
    x->why = why;
    return NULL;
}

static cJSON *ctl_state(struct ctl *x)
{
    return state_json();
}

/* GET: the request log; DELETE: forget it. */
static cJSON *ctl_requests(struct ctl *x)
{
    if (strcmp(x->method, "DELETE") != 0) {
        /* Printed here, not copied: it can hold 200,000 entries. */
        x->text = cJSON_PrintUnformatted(S.requests);
        return x->text ? NULL : refuse(x, 500, "out of memory");
    }
    cJSON_Delete(S.requests);
    S.requests = cJSON_CreateArray();
    S.n_requests = 0;
    return cJSON_CreateObject();
}

static void copy_str(const cJSON *in, const char *k, char *out, size_t size)
{
    const cJSON *v = cJSON_GetObjectItem(in, k);
    if (cJSON_IsString(v))
        snprintf(out, size, "%s", v->valuestring);
}

static double get_num(const cJSON *in, const char *k, double dflt)
{
    const cJSON *v = cJSON_GetObjectItem(in, k);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* POST: one more fault; DELETE: none. */
static cJSON *ctl_faults(struct ctl *x)
{
    static const char *const kinds[] = {"delay", "status", "garbage", "truncated",
                                        "big",   "close",  "index"};
    if (strcmp(x->method, "DELETE") == 0) {
        S.n_faults = 0;
        return cJSON_CreateObject();
    }
    if (S.n_faults == 64 || !cJSON_IsObject(x->in))
        return refuse(x, 400, "expected a JSON fault object (and at most 64 faults)");
    struct fault *f = &S.faults[S.n_faults];
    memset(f, 0, sizeof *f);
    copy_str(x->in, "agent", f->agent, sizeof f->agent);
    copy_str(x->in, "path", f->path, sizeof f->path);
    copy_str(x->in, "kind", f->kind, sizeof f->kind);
    copy_str(x->in, "body", f->body, sizeof f->body);
    copy_str(x->in, "index_raw", f->index_raw, sizeof f->index_raw);
    const cJSON *cnt = cJSON_GetObjectItem(x->in, "count"),
                *st = cJSON_GetObjectItem(x->in, "status");
    f->count = cJSON_IsNumber(cnt) ? cnt->valueint : 1;
    f->status = cJSON_IsNumber(st) ? st->valueint : 0;
    f->delay_ms = (long)get_num(x->in, "delay_ms", 0);
    f->index = (uint64_t)get_num(x->in, "index", 0);
    f->size_bytes = (size_t)get_num(x->in, "size_bytes", 0);
    int known = 0;
    for (int i = 0; i < 7; i++)
        known |= strcmp(f->kind, kinds[i]) == 0;
    if (!known)
        return refuse(x, 400,
                      "kind must be one of delay, status, garbage, truncated, big, close, index");
    S.n_faults++;
    return cJSON_CreateObject();
}

static cJSON *ctl_leader(struct ctl *x)
{
    const cJSON *l = cJSON_GetObjectItem(x->in, "leader");
    if (!cJSON_IsString(l) || (l->valuestring[0] && !node_by_name(l->valuestring)))
        return refuse(x, 400, "expected {\"leader\": \"server-N\"} or {\"leader\": \"\"}");
    snprintf(S.leader, sizeof S.leader, "%s", l->valuestring);
    changed();
    return cJSON_CreateObject();
}

static cJSON *ctl_agent_add(struct ctl *x)
{
    const cJSON *n = cJSON_GetObjectItem(x->in, "name");
    struct agent *a = cJSON_IsString(n) ? agent_add(n->valuestring) : NULL;
    if (a == NULL || agent_start(a) < 0)
        return refuse(x, 400, "expected {\"name\": \"<new agent>\"} (unique, at most 64 agents)");
    write_port_file();
    changed();
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", a->name);
    cJSON_AddNumberToObject(o, "port", a->port);
    return o;
}

static cJSON *ctl_member(struct ctl *x)
{
    static const char *const names[] = {"none", "alive", "leaving", "left", "failed"};
    struct node *n = node_by_name(x->name);
    const cJSON *st = cJSON_GetObjectItem(x->in, "status");
    int status = -1;
    for (int i = 1; i < 5 && cJSON_IsString(st); i++)
        if (!strcmp(st->valuestring, names[i]))
            status = i;
    if (n == NULL || status < 0)
        return refuse(x, 400, "unknown member, or status not one of alive, leaving, left, failed");
    node_set_status(n, status);
    return cJSON_CreateObject();
}

/* ---- /agents/NAME/VERB ---- */

/* The agent's listener goes; its parked queries are answered with nothing. */
static void agent_take_down(struct agent *a)
{
    a->down = 1;
    a->hang = 0;
    changed();
    pthread_mutex_unlock(&S.mu);
    agent_stop(a);
    pthread_mutex_lock(&S.mu);
}

/* 0, or -1 with the refusal in x. */
static int agent_bring_up(struct ctl *x, struct agent *a)
{
    a->down = 0;
    if (agent_start(a) == 0)
        return 0;
    refuse(x, 500, "cannot listen on the agent's port again");
    return -1;
}

static cJSON *verb_restart(struct ctl *x, struct agent *a)
{
    const cJSON *p = cJSON_GetObjectItem(x->in, "persist");
    const cJSON *rj = cJSON_GetObjectItem(x->in, "rejoin_ms");
    node_restart(a->node, !cJSON_IsFalse(p));
    if (!cJSON_IsNumber(rj) || rj->valuedouble <= 0 || rj->valuedouble > 3600000)
        return cJSON_CreateObject();
    /* A process restart: every connection dropped, the port closed a
     * moment, then a rejoin window of empty answers. */
    a->rejoin_until = now_ms() + (uint64_t)rj->valuedouble;
    if (a->down)
        return cJSON_CreateObject();
    agent_take_down(a);
    struct timespec gone = {0, 300 * 1000000L}; /* the process starting */
    pthread_mutex_unlock(&S.mu);
    nanosleep(&gone, NULL);
    pthread_mutex_lock(&S.mu);
    return agent_bring_up(x, a) == 0 ? cJSON_CreateObject() : NULL;
}

static cJSON *verb_down(struct ctl *x, struct agent *a)
{
    agent_take_down(a);
    return cJSON_CreateObject();
}

static cJSON *verb_up(struct ctl *x, struct agent *a)
{
    a->hang = 0;
    if (a->down && agent_bring_up(x, a) < 0)
        return NULL;
    changed();
    return cJSON_CreateObject();
}

static cJSON *verb_hang(struct ctl *x, struct agent *a)
{
    a->hang = 1;
    return cJSON_CreateObject();
}

static cJSON *verb_limit(struct ctl *x, struct agent *a)
{
    static const char *const modes[] = {"close", "reset", "429"};
    static const int mode_of[] = {LIMIT_CLOSE, LIMIT_RESET, LIMIT_429};
    const cJSON *m = cJSON_GetObjectItem(x->in, "max_conns");
    const cJSON *mode = cJSON_GetObjectItem(x->in, "mode");
    int i = 0;
    if (mode && cJSON_IsString(mode))
        while (i < 3 && strcmp(mode->valuestring, modes[i]) != 0)
            i++;
    if (!cJSON_IsNumber(m) || m->valuedouble < 0 || m->valuedouble > 100000 ||
        (mode && (!cJSON_IsString(mode) || i == 3)))
        return refuse(x, 400,
                      "expected {\"max_conns\": N (0: no limit), \"mode\": \"close\", "
                      "\"reset\" or \"429\"}");
    a->max_conns = m->valueint;
    a->limit_mode = mode_of[i];
    return cJSON_CreateObject();
}

static const struct {
    const char *verb;
    cJSON *(*fn)(struct ctl *x, struct agent *a);
} verbs[] = {
    {"restart", verb_restart}, {"down", verb_down},   {"up", verb_up},
    {"hang", verb_hang},       {"limit", verb_limit},
};

static cJSON *ctl_agent_verb(struct ctl *x)
{
    char name[128], verb[32];
    if (sscanf(x->name, "%127[^/]/%31s", name, verb) != 2)
        return refuse(x, 404, "unknown control endpoint; see tests/doubles/consul/README.md");
    struct agent *a = agent_by_name(name);
    if (a == NULL)
        return refuse(x, 400, "unknown agent");
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(verb, verbs[i].verb) == 0)
            return verbs[i].fn(x, a);
    return refuse(x, 400, "verb must be restart, down, up, hang or limit");
}

/* method NULL: any. A pattern ending in '/' takes the rest as x->name. */
static const struct {
    const char *method, *pattern;
    ctl_fn fn;
} ctl_routes[] = {
    {"GET", "/state", ctl_state},         {NULL, "/requests", ctl_requests},
    {NULL, "/faults", ctl_faults},        {"POST", "/leader", ctl_leader},
    {"POST", "/agents", ctl_agent_add},   {"POST", "/members/", ctl_member},
    {"POST", "/agents/", ctl_agent_verb},
};

enum MHD_Result control_handle(struct MHD_Connection *c, const char *url, const char *method,
                               const char *body, size_t body_len)
{
    cJSON *in = body_len ? cJSON_ParseWithLength(body, body_len) : cJSON_CreateObject();
    struct ctl x = {c,   method, in,
                    "",  404,    "unknown control endpoint; see tests/doubles/consul/README.md",
                    NULL};
    cJSON *out = NULL;
    pthread_mutex_lock(&S.mu);
    for (size_t i = 0; i < sizeof ctl_routes / sizeof ctl_routes[0]; i++) {
        const char *p = ctl_routes[i].pattern;
        size_t l = strlen(p);
        int prefix = p[l - 1] == '/';
        if ((ctl_routes[i].method && strcmp(method, ctl_routes[i].method) != 0) ||
            (prefix ? strncmp(url, p, l) != 0 || url[l] == '\0' : strcmp(url, p) != 0))
            continue;
        x.name = url + (prefix ? l : 0);
        out = ctl_routes[i].fn(&x);
        break;
    }
    pthread_mutex_unlock(&S.mu);
    cJSON_Delete(in);
    if (x.text) {
        enum MHD_Result r = reply(c, 200, "application/json", x.text, strlen(x.text), NULL);
        free(x.text);
        return r;
    }
    return out ? ok_json(c, out) : reply_text(c, x.status, x.why);
}

/* A TTL check whose TTL ran out goes critical, keeping its last output. */
static void ttl_expire(struct check *c, uint64_t now)
{
    char out[OUTPUT_MAX_TTL];
    c->ttl_deadline = 0;
    if (c->output && c->output[0])
        snprintf(out, sizeof out, "TTL expired (last output before timeout follows): %s",
                 c->output);
    else
        snprintf(out, sizeof out, "TTL expired");
    int changed_status = c->status != ST_CRITICAL;
    free(c->output);
    c->output = strdup(out);
    if (c->critical_since == 0 || changed_status)
        c->critical_since = now;
    c->updated = 1;
    c->status = ST_CRITICAL;
    if (changed_status) {
        c->modify_index = bump();
        S.checks_index = c->modify_index;
    }
    changed();
}

/* The reaper: a service whose check has been critical longer than its
 * DeregisterCriticalServiceAfter (and the reaper's minimum) goes, with
 * every check of it. */
static void reap(struct node *n, const struct check *c, uint64_t now)
{
    uint64_t after = (uint64_t)(c->dereg_ms > S.reap_min_ms ? c->dereg_ms : S.reap_min_ms);
    if (now - c->critical_since < after || !c->service_id[0])
        return;
    char sid[256];
    snprintf(sid, sizeof sid, "%s", c->service_id);
    for (int s = 0; s < S.maxn; s++) {
        if (!n->services[s].used || strcmp(n->services[s].id, sid))
            continue;
        for (int j = 0; j < S.maxn; j++)
            if (n->checks[j].used && !strcmp(n->checks[j].service_id, sid)) {
                free(n->checks[j].output);
                memset(&n->checks[j], 0, sizeof n->checks[j]);
            }
        S.extinction = bump();
        svc_touch(n->services[s].name, S.extinction);
        cJSON_Delete(n->services[s].tags);
        cJSON_Delete(n->services[s].meta);
        cJSON_Delete(n->services[s].tagged);
        memset(&n->services[s], 0, sizeof n->services[s]);
        S.services_index = S.checks_index = S.extinction;
        fprintf(stderr, "consul-double: reaped service %s on %s\n", sid, n->name);
        changed();
    }
}

/* TTL expiry, the critical-service reaper and session TTLs, every 50 ms. */
void *ticker(void *arg)
{
    (void)arg;
    uint64_t last_reap = now_ms();
    for (;;) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&S.mu);
        uint64_t now = now_ms();
        int reap_now = now - last_reap >= (uint64_t)S.reap_interval_ms;
        if (reap_now)
            last_reap = now;
        for (int i = 0; i < 64; i++) {
            struct node *n = &S.nodes[i];
            for (int k = 0; n->used && k < S.maxn; k++) {
                struct check *c = &n->checks[k];
                if (c->used && c->ttl_ms > 0 && c->ttl_deadline != 0 && now >= c->ttl_deadline)
                    ttl_expire(c, now);
            }
        }
        for (int i = 0; reap_now && i < 64; i++) {
            struct node *n = &S.nodes[i];
            for (int k = 0; n->used && k < S.maxn; k++) {
                const struct check *c = &n->checks[k];
                if (c->used && c->dereg_ms > 0 && c->status == ST_CRITICAL && c->critical_since)
                    reap(n, c, now);
            }
        }
        /* Session TTLs: invalidated between TTL and 2 x TTL, as servers do. */
        for (int i = 0; i < MAX_SESSIONS; i++) {
            struct session *s = &S.sessions[i];
            if (s->used && s->ttl_ms && now > s->expires + (uint64_t)s->ttl_ms / 2)
                session_invalidate(s);
        }
        pthread_mutex_unlock(&S.mu);
    }
    return NULL;
}
