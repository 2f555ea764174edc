/* Leader and membership following; see clusterview.h. */
#include "sidecar/clusterview.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/decode.h"
#include "consul/watch.h"
#include "lib/log.h"
#include "lib/rand.h"

#define CV_POLL_MS 5000

struct clusterview {
    struct loop *loop;
    struct consul_client *consul;
    struct consul_watch *nodes;
    struct loop_timer *poll;
    int64_t poll_ms; /* watch.cluster_poll */
    struct consul_call *leader_call, *peers_call, *members_call;
    int have_leader; /* a first answer arrived */
    char leader[256];
    char **peers;
    size_t n_peers;
    struct consul_member *members;
    size_t n_members;
    int have_members;
    /* The peers are read when want is ahead of have: at start, after a
     * leader or member change or a reconnect (want++); a read answers the
     * want it was asked at. */
    unsigned peers_want, peers_asked, peers_have;
    struct metrics_counter *m_leader_changes;
    struct metrics_gauge *m_members;
    struct metrics_gauge *m_leader;
};

void clusterview_diff_members(const struct consul_member *old, size_t n_old,
                              const struct consul_member *cur, size_t n_cur,
                              clusterview_event_fn fn, void *arg)
{
    for (size_t i = 0; i < n_cur; i++) {
        size_t j;
        for (j = 0; j < n_old; j++)
            if (strcmp(old[j].name, cur[i].name) == 0)
                break;
        int before = j < n_old ? old[j].status : -1;
        if (before != cur[i].status)
            fn(cur[i].name, before, cur[i].status, arg);
    }
    for (size_t j = 0; j < n_old; j++) {
        size_t i;
        for (i = 0; i < n_cur; i++)
            if (strcmp(old[j].name, cur[i].name) == 0)
                break;
        if (i == n_cur && old[j].status != 3)
            fn(old[j].name, old[j].status, 3, arg); /* gone: it left (or was reaped) */
    }
}

static void log_member(const char *name, int old_status, int new_status, void *arg)
{
    (void)arg;
    switch (new_status) {
    case 1:
        log_info("member '%s' joined, marking health alive", name);
        break;
    case 2:
        log_info("member '%s' is leaving", name);
        break;
    case 3:
        if (old_status != 3)
            log_info("member '%s' left", name);
        break;
    case 4:
        log_warn("member '%s' failed", name);
        break;
    default:
        break;
    }
}

static void ask_peers(struct clusterview *cv);

/* A member event: logged, and the Raft peers read again (a server that
 * joins, leaves or fails may change them). */
static void member_changed(const char *name, int old_status, int new_status, void *arg)
{
    struct clusterview *cv = arg;
    log_member(name, old_status, new_status, arg);
    cv->peers_want++;
}

static void on_members(const struct consul_response *r, void *arg)
{
    struct clusterview *cv = arg;
    struct consul_member *m;
    size_t n;
    char err[256];
    cv->members_call = NULL;
    if (r->err != HTTP_OK || r->status != 200 ||
        consul_decode_members(r->body, r->body_len, &m, &n, err, sizeof err) < 0)
        return;
    if (cv->have_members)
        clusterview_diff_members(cv->members, cv->n_members, m, n, member_changed, cv);
    consul_members_free(cv->members, cv->n_members);
    cv->members = m;
    cv->n_members = n;
    cv->have_members = 1;
    if (cv->m_members) {
        size_t alive = 0;
        for (size_t i = 0; i < n; i++)
            alive += m[i].status == 1;
        metrics_gauge_set(cv->m_members, "alive", (double)alive);
        metrics_gauge_set(cv->m_members, "total", (double)n);
    }
    ask_peers(cv);
}

static void on_leader(const struct consul_response *r, void *arg)
{
    struct clusterview *cv = arg;
    char leader[256], err[256];
    cv->leader_call = NULL;
    if (r->err != HTTP_OK || r->status != 200 ||
        consul_decode_leader(r->body, r->body_len, leader, sizeof leader, err, sizeof err) < 0)
        return;
    if (cv->have_leader && strcmp(leader, cv->leader) == 0)
        return;
    if (leader[0])
        log_info("New leader elected: %s", leader);
    else
        log_warn("No cluster leader");
    if (cv->have_leader) { /* a change, not the first answer: the peers may have moved */
        cv->peers_want++;
        if (cv->m_leader_changes)
            metrics_counter_inc(cv->m_leader_changes, NULL, 1);
    }
    snprintf(cv->leader, sizeof cv->leader, "%s", leader);
    cv->have_leader = 1;
    if (cv->m_leader)
        metrics_gauge_set(cv->m_leader, NULL, leader[0] ? 1 : 0);
    ask_peers(cv);
}

static void on_peers(const struct consul_response *r, void *arg)
{
    struct clusterview *cv = arg;
    char **p;
    size_t n;
    char err[256];
    cv->peers_call = NULL;
    if (r->err != HTTP_OK || r->status != 200 ||
        consul_decode_peers(r->body, r->body_len, &p, &n, err, sizeof err) < 0)
        return; /* still due: read at the next poll */
    cv->peers_have = cv->peers_asked;
    consul_strings_free(cv->peers, cv->n_peers);
    cv->peers = p;
    cv->n_peers = n;
    ask_peers(cv); /* a change came while this read was out */
}

/* The peers change only with the servers: they are read when something
 * says they may have (peers_want), not at every poll. */
static void ask_peers(struct clusterview *cv)
{
    char err[256];
    if (cv->peers_want == cv->peers_have || cv->peers_call)
        return;
    cv->peers_asked = cv->peers_want;
    cv->peers_call = consul_request(cv->consul, "GET", "/v1/status/peers", NULL, 0, 5000, 0,
                                    on_peers, cv, err, sizeof err);
}

static void refresh(struct clusterview *cv)
{
    char err[256];
    if (!cv->leader_call)
        cv->leader_call = consul_request(cv->consul, "GET", "/v1/status/leader", NULL, 0, 5000, 0,
                                         on_leader, cv, err, sizeof err);
    ask_peers(cv);
    if (!cv->members_call)
        cv->members_call = consul_request(cv->consul, "GET", "/v1/agent/members", NULL, 0, 5000, 0,
                                          on_members, cv, err, sizeof err);
}

static void on_poll(void *arg)
{
    struct clusterview *cv = arg;
    refresh(cv);
    loop_timer_start(cv->poll, rand_jitter_around((uint64_t)cv->poll_ms, 0.1));
}

static void on_nodes(const struct consul_response *r, void *arg)
{
    struct clusterview *cv = arg;
    (void)r;
    refresh(cv);
}

static void on_nodes_error(const struct consul_response *r, const char *what, void *arg)
{
    (void)r;
    (void)arg;
    /* Consul being unreachable is reported by the registrar and the upstream
     * watches; a long-poll gone silent is this watch's own news. */
    if (what && strstr(what, "did not return within"))
        log_warn("cluster view: %s", what);
}

struct clusterview *clusterview_new(struct loop *l, struct consul_client *c, struct metrics *m,
                                    int64_t wait_ms, int64_t poll_ms, char *err, size_t errlen)
{
    struct clusterview *cv = calloc(1, sizeof *cv);
    if (cv == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    cv->loop = l;
    cv->consul = c;
    cv->poll_ms = poll_ms > 0 ? poll_ms : CV_POLL_MS;
    cv->peers_want++;
    struct consul_watch_opts o = {.path = "/v1/catalog/nodes",
                                  .wait_ms = wait_ms > 0 ? wait_ms : 300000,
                                  .min_interval_ms = 1000};
    cv->nodes = consul_watch_new(l, consul_get_adapter, consul_cancel_adapter, c, &o, on_nodes,
                                 on_nodes_error, cv, err, errlen);
    cv->poll = loop_timer_new(l, on_poll, cv);
    if (cv->nodes == NULL || cv->poll == NULL) {
        clusterview_free(cv);
        return NULL;
    }
    if (m) {
        cv->m_leader_changes = metrics_counter(m, "consul_sidecar_leader_changes_total",
                                               "Raft leader changes seen", NULL);
        cv->m_members = metrics_gauge(m, "consul_sidecar_cluster_members",
                                      "Gossip members, alive and total", "state");
        cv->m_leader = metrics_gauge(m, "consul_sidecar_cluster_leader",
                                     "1 while the cluster has a leader, 0 without one", NULL);
    }
    return cv;
}

void clusterview_start(struct clusterview *cv)
{
    consul_watch_start(cv->nodes);
    on_poll(cv);
}

void clusterview_consul_recovered(struct clusterview *cv)
{
    consul_watch_retry(cv->nodes);
    cv->peers_want++;
    loop_timer_start(cv->poll, 0);
}

void clusterview_free(struct clusterview *cv)
{
    if (cv == NULL)
        return;
    consul_watch_free(cv->nodes);
    consul_cancel(cv->leader_call);
    consul_cancel(cv->peers_call);
    consul_cancel(cv->members_call);
    loop_timer_free(cv->poll);
    consul_strings_free(cv->peers, cv->n_peers);
    consul_members_free(cv->members, cv->n_members);
    free(cv);
}

uint64_t clusterview_watch_restarts(const struct clusterview *cv)
{
    return consul_watch_stats(cv->nodes)->dead_restarts;
}

void clusterview_status_json(const struct clusterview *cv, cJSON *o)
{
    if (cv->have_leader)
        cJSON_AddStringToObject(o, "leader", cv->leader);
    else
        cJSON_AddNullToObject(o, "leader");
    cJSON *p = cJSON_AddArrayToObject(o, "peers");
    for (size_t i = 0; i < cv->n_peers; i++)
        cJSON_AddItemToArray(p, cJSON_CreateString(cv->peers[i]));
    cJSON *m = cJSON_AddArrayToObject(o, "members");
    for (size_t i = 0; i < cv->n_members; i++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", cv->members[i].name);
        cJSON_AddStringToObject(x, "addr", cv->members[i].addr);
        cJSON_AddStringToObject(x, "status", consul_member_status_name(cv->members[i].status));
        cJSON_AddItemToArray(m, x);
    }
}
