/* How the upstreams are followed: a blocking query each, or a change
 * detector per datacenter; see sync_int.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/http.h"
#include "lib/log.h"
#include "lib/rand.h"
#include "sidecar/sync_int.h"

/* ---- the change detector ----------------------------------------------------
 *
 * Following many services with one long-poll each would use as many
 * connections (Consul limits them per client address, 200 by default). Above
 * max_blocking upstreams, three long-polls serve all the upstreams of one
 * datacenter (a detector per datacenter, each asking with its ?dc=):
 *   /v1/health/state/critical, /v1/health/state/warning
 *                         - their index moves on every check change, and
 *                           they list the checks not passing, each with its
 *                           service name, node and ModifyIndex;
 *   /v1/catalog/services  - its index moves on every registration change.
 * Every change of a check's status moves a check into or out of one of the
 * two lists, so they tell every change that matters to routing, and their
 * size is that of what fails, not of the datacenter (Consul finds them by
 * its status index). From each answer, an upstream is re-read (one
 * non-blocking, queued request) only when the number or the highest
 * ModifyIndex of its service's checks in that state moved, or the
 * node-level checks (serfHealth, node maintenance) in that state of a node
 * holding one of its instances did. A catalog/services change (a
 * registration or deregistration, which the lists may not reveal: an
 * instance passing or without checks) re-reads every upstream of that
 * datacenter: rarer, and still bounded by the client's 4 requests in flight.
 */

#define DET_CATALOG_GAP_MS 1000

/* The followed services of d, each once (upstreams of one service share
 * a tally); built when the detector's upstreams change. -1: out of memory. */
static int map_services(struct detector *d)
{
    struct sync *s = d->s;
    int added;
    if (d->mapped == d->n_ups)
        return 0;
    strmap_clear(&d->by_service);
    for (size_t i = 0; i < s->n_ups; i++) {
        struct upstream *u = s->ups[i];
        if (u->det != d)
            continue;
        uint64_t *v =
            strmap_put(&d->by_service, u->service, strlen(u->service), d->by_service.n, &added);
        if (v == NULL)
            return -1;
        u->det_slot = (size_t)*v;
    }
    for (int w = 0; w < DET_STATES; w++) {
        struct det_state *st = &d->st[w];
        free(st->tally);
        st->n_tally = d->by_service.n ? d->by_service.n : 1;
        if ((st->tally = calloc(st->n_tally, sizeof *st->tally)) == NULL)
            return -1;
    }
    d->mapped = d->n_ups;
    return 0;
}

static int node_cmp(const void *a, const void *b)
{
    return strcmp(((const struct det_node *)a)->name, ((const struct det_node *)b)->name);
}

static void nodes_free(struct det_node *n, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(n[i].name);
    free(n);
}

/* The answer's node-level checks, a fingerprint per node (their number
 * and highest ModifyIndex), sorted by node; *out NULL when there are none.
 * -1: out of memory. */
static int node_prints(struct det_state *st, struct det_node **out, size_t *n_out)
{
    const struct consul_state_check *e = st->scan.e;
    struct det_node *v = NULL;
    size_t n = 0;
    int added;
    strmap_clear(&st->node_map);
    for (size_t k = 0; k < st->scan.n; k++) {
        if (e[k].service_len > 0)
            continue;
        uint64_t *slot = strmap_put(&st->node_map, e[k].node, e[k].node_len, n, &added);
        if (slot == NULL)
            goto oom;
        if (added) {
            struct det_node *nv = realloc(v, (n + 1) * sizeof *v);
            if (nv == NULL)
                goto oom;
            v = nv;
            v[n].t = (struct det_tally){0, 0};
            if ((v[n++].name = strdup(e[k].node)) == NULL)
                goto oom;
        }
        struct det_tally *t = &v[*slot].t;
        t->count++;
        if (e[k].modify_index > t->top)
            t->top = e[k].modify_index;
    }
    if (n > 1)
        qsort(v, n, sizeof *v, node_cmp);
    *out = v;
    *n_out = n;
    return 0;
oom:
    nodes_free(v, n);
    return -1;
}

/* Each followed service's checks in this state: their number and highest
 * ModifyIndex. One pass, a hash lookup a check. */
static void tally_services(struct det_state *st)
{
    const struct consul_state_check *e = st->scan.e;
    memset(st->tally, 0, st->n_tally * sizeof *st->tally);
    for (size_t k = 0; k < st->scan.n; k++) {
        const uint64_t *slot = e[k].service_len
                                   ? strmap_get(&st->d->by_service, e[k].service, e[k].service_len)
                                   : NULL;
        if (slot == NULL)
            continue;
        struct det_tally *t = &st->tally[*slot];
        t->count++;
        if (e[k].modify_index > t->top)
            t->top = e[k].modify_index;
    }
}

/* Whether u has an instance on a node whose node-level checks in this
 * state moved between old[] and new[] (both sorted): a node failing,
 * recovering, or going into or out of maintenance. An upstream without an
 * answer yet may be on any. */
static int node_moved(const struct upstream *u, const struct det_node *old, size_t n_old,
                      const struct det_node *now, size_t n_now)
{
    size_t i = 0, j = 0;
    while (i < n_old || j < n_now) {
        int c = i == n_old ? 1 : j == n_now ? -1 : strcmp(old[i].name, now[j].name);
        const char *name = c < 0 ? old[i].name : now[j].name;
        int moved = c != 0 || old[i].t.top != now[j].t.top || old[i].t.count != now[j].t.count;
        if (moved && (!u->have_answer || consul_instances_on_node(&u->last_answer, name)))
            return 1;
        i += c <= 0;
        j += c >= 0;
    }
    return 0;
}

static const char *det_where(const struct detector *d, char *buf, size_t len)
{
    if (d->dc)
        snprintf(buf, len, " (datacenter '%s')", d->dc);
    else
        buf[0] = '\0';
    return buf;
}

static void det_refused(struct det_state *st, const char *err)
{
    struct detector *d = st->d;
    char where[200];
    if (strcmp(err, d->error) != 0)
        log_error("change detector%s: bad answer from /v1/health/state/%s: %s",
                  det_where(d, where, sizeof where), st->name, err);
    snprintf(d->error, sizeof d->error, "%s", err);
    consul_watch_reject(st->watch);
}

/* Reads u now, with the timeline of the answer that showed its change. */
static void det_fetch(struct upstream *u, const struct consul_response *r, size_t checks,
                      uint64_t arrived, uint64_t decoded)
{
    u->seen_once = true;
    u->tl.arrived = arrived;
    u->tl.decoded = decoded;
    u->tl.asked = loop_clock_us();
    u->tl.answered = 0;
    u->tl.body_us = r->raw ? r->raw->body_us : 0;
    u->tl.bytes = r->body_len;
    u->tl.checks = checks;
    sync_up_fetch(u);
}

/*
 * Every check change anywhere moves both lists' index, so both come back.
 * In a storm of changes to services nobody here follows (a fleet's gateways
 * registering again, their checks going critical, then passing) every
 * sidecar would ask again for each one. A change that re-reads nothing
 * here, coming within a second of the last such one, is followed by a
 * rest that doubles (250 ms up to 4 s, jittered) while they keep coming;
 * a change that re-reads an upstream, or a quiet second (twice the rest),
 * ends it. The cost: in such a storm, a change of a
 * followed service is seen up to 4 s late.
 */
#define DET_IDLE_REST_MS 250
#define DET_IDLE_REST_MAX_MS 4000

/* An event of a storm: the wait after it (jittered by a fifth; 0: none).
 * Within twice the last wait (at least a second) of the last event, the
 * wait doubles from min up to max; after a quiet spell it is first. */
static int64_t storm_next(struct storm *s, int64_t first, int64_t min, int64_t max)
{
    uint64_t now = loop_clock_ms();
    uint64_t window = s->wait > 500 ? 2 * (uint64_t)s->wait : 1000;
    if (s->at && now - s->at < window)
        s->wait = !s->wait ? min : s->wait * 2 < max ? s->wait * 2 : max;
    else
        s->wait = first;
    s->at = now;
    return s->wait ? (int64_t)rand_jitter_around((uint64_t)s->wait, 0.2) : 0;
}

/* The rest after a health/state answer: none after one that re-read an
 * upstream (and the storm is over), else as the storm has it, the first
 * after a quiet spell asked again at once. */
static int64_t state_backoff(struct det_state *st, int irrelevant)
{
    if (irrelevant)
        return storm_next(&st->idle, 0, DET_IDLE_REST_MS, DET_IDLE_REST_MAX_MS);
    st->idle.wait = 0;
    return 0;
}

static void on_det_checks(const struct consul_response *r, void *arg)
{
    struct det_state *st = arg;
    struct detector *d = st->d;
    struct sync *s = d->s;
    struct det_node *nodes;
    size_t n_nodes;
    char err[256];
    uint64_t arrived = loop_clock_us();
    if (consul_scan_health_state(&st->scan, r->body, r->body_len, err, sizeof err) < 0) {
        det_refused(st, err);
        return;
    }
    if (map_services(d) < 0 || node_prints(st, &nodes, &n_nodes) < 0) {
        det_refused(st, "out of memory");
        return;
    }
    tally_services(st);
    d->error[0] = '\0';
    st->seen = 1;
    int all_seen = d->st[DET_CRITICAL].seen && d->st[DET_WARNING].seen;
    uint64_t decoded = loop_clock_us();
    int w = (int)(st - d->st), fetched = 0;
    for (size_t i = 0; i < s->n_ups; i++) {
        struct upstream *u = s->ups[i];
        if (u->det != d)
            continue;
        const struct det_tally *t = &st->tally[u->det_slot];
        int moved = t->top != u->seen[w].top || t->count != u->seen[w].count;
        u->seen[w] = *t;
        /* Until both lists have their baseline, changes are not told
         * apart: the first reads come after both. */
        if (all_seen &&
            (!u->seen_once || moved || node_moved(u, st->nodes, st->n_nodes, nodes, n_nodes))) {
            det_fetch(u, r, st->scan.n, arrived, decoded);
            fetched++;
        }
    }
    nodes_free(st->nodes, st->n_nodes);
    st->nodes = nodes;
    st->n_nodes = n_nodes;
    /* In a burst of changes the next query rests as long as this answer
     * took to arrive and be decoded (at most 1 s), so the detector spends at
     * most half its time on it, whatever its size. The first change after a
     * quiet spell is answered at once (the query was parked). */
    uint64_t cost_us = (uint64_t)(r->raw ? r->raw->body_us : 0) + (decoded - arrived);
    int64_t rest = cost_us >= 1000000 ? 1000 : (int64_t)(cost_us / 1000);
    int64_t gap = all_seen ? state_backoff(st, fetched == 0) : 0;
    consul_watch_rest(st->watch, gap > rest ? gap : rest);
}

/* The health/state long-polls start once this one has its baseline:
 * every read their first answers trigger is then sent after the baseline
 * was taken, so a registration either shows in those reads or moves this
 * index later. */
static void start_det_checks(struct detector *d)
{
    if (!d->checks_started) {
        d->checks_started = 1;
        for (int w = 0; w < DET_STATES; w++)
            consul_watch_start(d->st[w].watch);
    }
}

/*
 * A registration anywhere re-reads every followed service. In a fleet, a
 * deploy or an agent restart registers hundreds of gateways within
 * seconds, and every sidecar would re-read all its upstreams for each of
 * them. The first registration after a quiet spell is read at once; while
 * they keep coming, the catalog is asked again only after a gap that
 * doubles (1 s up to 8 s) and each round reads what came meanwhile
 * together. The gap differs from sidecar to sidecar so a fleet does not
 * ask in step, and it is back to 1 s once a gap's length passes quiet.
 */
#define DET_CATALOG_GAP_MS 1000
#define DET_CATALOG_GAP_MAX_MS 8000

static void catalog_backoff(struct detector *d)
{
    consul_watch_set_min_gap(d->services, storm_next(&d->catalog, DET_CATALOG_GAP_MS,
                                                     DET_CATALOG_GAP_MS, DET_CATALOG_GAP_MAX_MS));
}

static void on_det_services(const struct consul_response *r, void *arg)
{
    struct detector *d = arg;
    struct sync *s = d->s;
    (void)r;
    if (!d->services_seen) {
        d->services_seen = 1; /* a baseline, not a change */
        start_det_checks(d);
        return;
    }
    catalog_backoff(d);
    for (size_t i = 0; i < s->n_ups; i++)
        if (s->ups[i]->det == d)
            sync_up_fetch(s->ups[i]);
}

static void on_det_error(const struct consul_response *r, const char *what, void *arg)
{
    struct detector *d = arg;
    char where[200];
    (void)r;
    if (strcmp(what, d->error) != 0)
        log_warn("change detector%s: %s; keeping the last known good targets",
                 det_where(d, where, sizeof where), what);
    snprintf(d->error, sizeof d->error, "%s", what);
    /* No baseline to be had (catalog/services refused): the checks
     * long-poll still reads everything on its first answer. */
    start_det_checks(d);
}

static void on_det_state_error(const struct consul_response *r, const char *what, void *arg)
{
    on_det_error(r, what, ((struct det_state *)arg)->d);
}

/* The datacenter an upstream's queries go to (NULL: the agent's). */
static const char *up_dc(const struct sync *s, const struct upstream *u)
{
    return u->dc ? u->dc : s->o.datacenter;
}

static int same_dc(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* A detector for datacenter dc (NULL: the default one), its long-polls
 * made but not started; NULL on failure (logged). */
static struct detector *detector_new(struct sync *s, const char *dc)
{
    char err[256], dcq[300] = "";
    struct detector *d = calloc(1, sizeof *d);
    struct detector **arr = realloc(s->dets, (s->n_dets + 1) * sizeof *arr);
    if (arr)
        s->dets = arr;
    if (d == NULL || arr == NULL || (dc && (d->dc = strdup(dc)) == NULL)) {
        free(d);
        log_error("change detector: out of memory");
        return NULL;
    }
    d->s = s;
    s->dets[s->n_dets++] = d;
    struct consul_watch_opts o = {.wait_ms = s->o.watch.wait_ms,
                                  .min_interval_ms = 1000,
                                  .backoff_min_ms = 500,
                                  .backoff_max_ms = 30000,
                                  .stale = s->o.watch.stale};
    if (dc) {
        char *esc = http_escape(dc);
        if (esc == NULL)
            return NULL;
        snprintf(dcq, sizeof dcq, "dc=%s", esc);
        free(esc);
        o.query = dcq;
    }
    /* Metric labels: the default datacenter's carry no name. */
    int other = dc && !same_dc(dc, s->o.datacenter);
    static const char *const names[DET_STATES] = {"critical", "warning"};
    for (int w = 0; w < DET_STATES; w++) {
        char path[64];
        struct det_state *st = &d->st[w];
        st->d = d;
        st->name = names[w];
        snprintf(d->label[w], sizeof d->label[w], "(detector%s%.100s) health/state/%s",
                 other ? " " : "", other ? dc : "", st->name);
        snprintf(path, sizeof path, "/v1/health/state/%s", st->name);
        o.path = path;
        st->watch =
            consul_watch_new(s->o.loop, consul_get_adapter, consul_cancel_adapter, s->o.consul, &o,
                             on_det_checks, on_det_state_error, st, err, sizeof err);
        if (st->watch == NULL) {
            log_error("change detector: %s", err);
            return NULL;
        }
    }
    snprintf(d->label[DET_STATES], sizeof d->label[DET_STATES],
             "(detector%s%.100s) catalog/services", other ? " " : "", other ? dc : "");
    o.path = "/v1/catalog/services";
    d->services =
        consul_watch_new(s->o.loop, consul_get_adapter, consul_cancel_adapter, s->o.consul, &o,
                         on_det_services, on_det_error, d, err, sizeof err);
    if (d->services == NULL) {
        log_error("change detector: %s", err);
        return NULL;
    }
    return d;
}

/* The upstreams of each datacenter are followed by that datacenter's change
 * detector (three long-polls) instead of one long-poll each; unless
 * forced, a datacenter with one or two upstreams keeps theirs, a detector
 * would use more. why ends the INFO line. */
static void assign_detectors(struct sync *s, int forced, const char *why)
{
    for (size_t i = 0; i < s->n_ups; i++) {
        struct upstream *u = s->ups[i];
        const char *dc = up_dc(s, u);
        size_t in_dc = 0, k;
        if (u->det)
            continue;
        for (k = 0; k < s->n_ups; k++)
            in_dc += same_dc(dc, up_dc(s, s->ups[k]));
        if (in_dc <= 2 && !forced)
            continue;
        for (k = 0; k < s->n_dets && !same_dc(dc, s->dets[k]->dc); k++)
            ;
        struct detector *d = k < s->n_dets ? s->dets[k] : detector_new(s, dc);
        if (d == NULL)
            continue; /* logged: these keep their own long-polls */
        for (k = i; k < s->n_ups; k++) {
            if (same_dc(dc, up_dc(s, s->ups[k]))) {
                s->ups[k]->det = d;
                d->n_ups++;
            }
        }
    }
    for (size_t k = 0; k < s->n_dets; k++) {
        struct detector *d = s->dets[k];
        if (d->st[DET_CRITICAL].watch == NULL || d->st[DET_WARNING].watch == NULL ||
            d->services == NULL) {
            for (size_t i = 0; i < s->n_ups; i++)
                if (s->ups[i]->det == d)
                    s->ups[i]->det = NULL;
            continue;
        }
        consul_watch_start(d->services);
        if (d->dc && !same_dc(d->dc, s->o.datacenter))
            log_info("Following %zu upstreams in datacenter '%s' with the change detector "
                     "(3 long-polls instead of %zu): %s",
                     d->n_ups, d->dc, d->n_ups, why);
        else
            log_info("Following %zu upstreams with the change detector (3 long-polls instead of "
                     "%zu): %s",
                     d->n_ups, d->n_ups, why);
    }
}

/* ---- how the upstreams are followed ----------------------------------------
 *
 * A blocking query per upstream is the fastest way to learn a change (the
 * answer is the service itself). Over HTTP/1.1 each one holds a connection,
 * and Consul limits those per client (http_max_conns_per_client, 200), so
 * above max_blocking upstreams the change detector follows them instead.
 * Over HTTP/2 (an https agent whose ALPN gave h2) the queries are streams
 * that share a few connections (Go's server allows 250 streams on one), so
 * one each is kept up to max_streams. watch.mode can force either way.
 */

static void follow_with(struct sync *s, int http2)
{
    char why[200];
    size_t n = s->n_ups;
    const char *proto = http2                                 ? "HTTP/2 (ALPN h2)"
                        : consul_client_is_https(s->o.consul) ? "HTTP/1.1 (ALPN gave no h2)"
                                                              : "plain HTTP";
    int limit = http2 ? s->o.watch.max_streams : s->o.watch.max_blocking;
    const char *limit_name = http2 ? "watch.max_streams" : "watch.max_blocking";
    s->following = 1;
    if (s->o.watch.mode == SYNC_MODE_DETECTOR) {
        assign_detectors(s, 1, "watch.mode \"detector\"");
    } else if (s->o.watch.mode == SYNC_MODE_AUTO && limit > 0 && n > (size_t)limit) {
        snprintf(why, sizeof why, "%s, more upstreams than %s (%d)", proto, limit_name, limit);
        assign_detectors(s, 0, why);
    }
    size_t own = 0;
    for (size_t i = 0; i < n; i++)
        own += s->ups[i]->det == NULL;
    if (own > 0) {
        s->h2_streams = http2;
        if (s->o.watch.mode == SYNC_MODE_STREAMS)
            snprintf(why, sizeof why, "watch.mode \"streams\", over %s", proto);
        else
            snprintf(why, sizeof why, "%s, up to %s (%d)", proto, limit_name, limit);
        log_info("Following %zu upstream(s) with a blocking query each (%s): %s", own,
                 http2 ? "streams on shared connections" : "a connection each", why);
    }
    for (size_t i = 0; i < n; i++) {
        struct upstream *u = s->ups[i];
        char err[256];
        if (u->det)
            continue;
        if (sync_up_open_watch(u, err, sizeof err) < 0) {
            log_error("Upstream '%s': cannot follow service '%s': %s", u->name, u->service, err);
            continue;
        }
        consul_watch_start(u->watch);
    }
}

static void ask_protocol(struct sync *s);

static void on_proto_answer(const struct consul_response *r, void *arg)
{
    struct sync *s = arg;
    s->proto_probe = NULL;
    if (r->err != HTTP_OK) { /* no answer yet: the agent's protocol is unknown */
        loop_timer_start(s->proto_timer, rand_jitter_around(1000, 0.2));
        return;
    }
    follow_with(s, consul_client_http_version(s->o.consul) == 2);
}

static void on_proto_timer(void *arg)
{
    ask_protocol(arg);
}

/* One cheap request over https tells whether ALPN gave h2. */
static void ask_protocol(struct sync *s)
{
    char err[256];
    if (s->proto_probe || s->following)
        return;
    loop_timer_stop(s->proto_timer);
    s->proto_probe = consul_request(s->o.consul, "GET", "/v1/status/leader", NULL, 0, 10000, 0,
                                    on_proto_answer, s, err, sizeof err);
    if (s->proto_probe == NULL)
        loop_timer_start(s->proto_timer, rand_jitter_around(1000, 0.2));
}

void follow_start(struct sync *s)
{
    int version = consul_client_http_version(s->o.consul);
    /* Over https, only auto mode with more upstreams than plain HTTP
     * would follow one by one needs to know the protocol first. */
    if (s->o.watch.mode == SYNC_MODE_AUTO && consul_client_is_https(s->o.consul) && version == 0 &&
        s->o.watch.max_blocking > 0 && s->n_ups > (size_t)s->o.watch.max_blocking) {
        s->proto_timer = loop_timer_new(s->o.loop, on_proto_timer, s);
        if (s->proto_timer != NULL) {
            ask_protocol(s);
            return;
        }
    }
    follow_with(s, version == 2);
}

void follow_free(struct sync *s)
{
    for (size_t i = 0; i < s->n_dets; i++) {
        struct detector *d = s->dets[i];
        for (int w = 0; w < DET_STATES; w++) {
            consul_watch_free(d->st[w].watch);
            consul_state_scan_free(&d->st[w].scan);
            free(d->st[w].tally);
            nodes_free(d->st[w].nodes, d->st[w].n_nodes);
            strmap_free(&d->st[w].node_map);
        }
        consul_watch_free(d->services);
        free(d->dc);
        strmap_free(&d->by_service);
        free(d);
    }
    free(s->dets);
}

void follow_recovered(struct sync *s)
{
    if (!s->following && s->proto_timer)
        ask_protocol(s);
    for (size_t i = 0; i < s->n_dets; i++) {
        for (int w = 0; w < DET_STATES; w++)
            consul_watch_retry(s->dets[i]->st[w].watch);
        consul_watch_retry(s->dets[i]->services);
    }
}
