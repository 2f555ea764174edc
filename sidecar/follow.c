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
 * max_blocking upstreams, two long-polls serve all the upstreams of one
 * datacenter (a detector per datacenter, each asking with its ?dc=):
 *   /v1/health/state/any  - its index moves on every check change, and each
 *                           check carries its service name, node and
 *                           ModifyIndex;
 *   /v1/catalog/services  - its index moves on every registration change.
 * From a health/state answer, an upstream is re-read (one non-blocking,
 * queued request) only when the highest ModifyIndex among its service's
 * checks, or among node-level checks of nodes hosting it, moved. A
 * catalog/services change (a registration or deregistration, which a check
 * may not reveal: an instance without checks) re-reads every upstream of that
 * datacenter: rarer, and still bounded by the client's 4 requests in flight.
 */

/* The followed services of d, each once (upstreams of one service share
 * a tally); built when the detector's upstreams change. -1: out of memory. */
static int map_services(struct detector *d)
{
    struct sync *s = d->s;
    int added;
    if (d->mapped == d->n_ups)
        return 0;
    strmap_clear(&d->by_service);
    free(d->tally);
    d->tally = calloc(d->n_ups ? d->n_ups : 1, sizeof *d->tally);
    if (d->tally == NULL)
        return -1;
    for (size_t i = 0; i < s->n_ups; i++) {
        struct upstream *u = s->ups[i];
        if (u->det != d)
            continue;
        uint64_t *v = strmap_put(&d->by_service, u->service, strlen(u->service), d->by_service.n,
                               &added);
        if (v == NULL)
            return -1;
        u->det_slot = (size_t)*v;
    }
    d->mapped = d->n_ups;
    return 0;
}

/* Each followed service's fingerprint in the answer d->scan holds: the
 * highest ModifyIndex and the number of its checks, and the highest of the
 * node-level checks (serfHealth, node maintenance) of every node that holds
 * one of them. A pure function of the answer (the nodes come from the
 * answer, not from the last read, which leaves critical instances out), so
 * it moves on a change, a removal or a node recovering, and only then. One
 * pass over the node-level checks, one over the others, each a hash lookup. */
static int tally_checks(struct detector *d)
{
    const struct consul_state_check *e = d->scan.e;
    size_t n = d->scan.n;
    int added;
    if (map_services(d) < 0)
        return -1;
    memset(d->tally, 0, d->by_service.n * sizeof *d->tally);
    strmap_clear(&d->nodes);
    for (size_t k = 0; k < n; k++) {
        if (e[k].service_len > 0)
            continue;
        uint64_t *top = strmap_put(&d->nodes, e[k].node, e[k].node_len, 0, &added);
        if (top == NULL)
            return -1;
        if (e[k].modify_index > *top)
            *top = e[k].modify_index;
    }
    for (size_t k = 0; k < n; k++) {
        const uint64_t *slot = e[k].service_len
                                 ? strmap_get(&d->by_service, e[k].service, e[k].service_len)
                                 : NULL;
        if (slot == NULL)
            continue;
        struct det_tally *t = &d->tally[*slot];
        const uint64_t *node_top = strmap_get(&d->nodes, e[k].node, e[k].node_len);
        t->count++;
        if (e[k].modify_index > t->top)
            t->top = e[k].modify_index;
        if (node_top && *node_top > t->top)
            t->top = *node_top;
    }
    return 0;
}

static void det_refused(struct detector *d, const char *err)
{
    if (strcmp(err, d->error) != 0)
        log_error("change detector%s%s%s: bad answer from /v1/health/state/any: %s",
                  d->dc ? " (datacenter '" : "", d->dc ? d->dc : "", d->dc ? "')" : "", err);
    snprintf(d->error, sizeof d->error, "%s", err);
    consul_watch_reject(d->checks);
}

static void on_det_checks(const struct consul_response *r, void *arg)
{
    struct detector *d = arg;
    struct sync *s = d->s;
    char err[256];
    uint64_t arrived = loop_clock_us();
    if (consul_scan_health_state(&d->scan, r->body, r->body_len, err, sizeof err) < 0) {
        det_refused(d, err);
        return;
    }
    if (tally_checks(d) < 0) {
        det_refused(d, "out of memory");
        return;
    }
    d->error[0] = '\0';
    uint64_t decoded = loop_clock_us();
    for (size_t i = 0; i < s->n_ups; i++) {
        struct upstream *u = s->ups[i];
        if (u->det != d)
            continue;
        const struct det_tally *t = &d->tally[u->det_slot];
        uint64_t fp = t->top * 1000003u + t->count;
        if (fp != u->seen_fp || !u->seen_once) {
            u->seen_fp = fp;
            u->seen_once = 1;
            u->tl.arrived = arrived;
            u->tl.decoded = decoded;
            u->tl.asked = loop_clock_us();
            u->tl.answered = 0;
            u->tl.body_us = r->raw ? r->raw->body_us : 0;
            u->tl.bytes = r->body_len;
            u->tl.checks = d->scan.n;
            sync_up_fetch(u);
        }
    }
    /* The answer holds every check of the datacenter and comes back whole
     * on each change. The first change after a quiet spell is answered at
     * once (the query was parked); in a burst, the next query rests as long
     * as this answer took to arrive and be decoded (at most 1 s), so the
     * detector spends at most half its time on it and Consul sends it at
     * most as often as it can be taken in, whatever its size. */
    uint64_t cost_us = (uint64_t)(r->raw ? r->raw->body_us : 0) + (decoded - arrived);
    consul_watch_rest(d->checks, cost_us >= 1000000 ? 1000 : (int64_t)(cost_us / 1000));
}

/* The checks long-poll starts once this one has its baseline: every read
 * its first answer triggers is then sent after the baseline was taken, so
 * a registration either shows in those reads or moves this index later. */
static void start_det_checks(struct detector *d)
{
    if (!d->checks_started) {
        d->checks_started = 1;
        consul_watch_start(d->checks);
    }
}

static void on_det_services(const struct consul_response *r, void *arg)
{
    struct detector *d = arg;
    struct sync *s = d->s;
    (void)r;
    if (!d->services_seen) {
        d->services_seen = 1;   /* a baseline, not a change */
        start_det_checks(d);
        return;
    }
    for (size_t i = 0; i < s->n_ups; i++)
        if (s->ups[i]->det == d)
            sync_up_fetch(s->ups[i]);
}

static void on_det_error(const struct consul_response *r, const char *what, void *arg)
{
    struct detector *d = arg;
    (void)r;
    if (strcmp(what, d->error) != 0)
        log_warn("change detector%s%s%s: %s; keeping the last known good targets",
                 d->dc ? " (datacenter '" : "", d->dc ? d->dc : "", d->dc ? "')" : "", what);
    snprintf(d->error, sizeof d->error, "%s", what);
    /* No baseline to be had (catalog/services refused): the checks
     * long-poll still reads everything on its first answer. */
    start_det_checks(d);
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
    struct consul_watch_opts o = {.wait_ms = s->o.wait_ms, .min_interval_ms = 1000,
                                  .backoff_min_ms = 500, .backoff_max_ms = 30000,
                                  .stale = s->o.stale};
    if (dc) {
        char *esc = http_escape(dc);
        if (esc == NULL)
            return NULL;
        snprintf(dcq, sizeof dcq, "dc=%s", esc);
        free(esc);
        o.query = dcq;
    }
    /* Metric labels: the default datacenter's keep their historic names. */
    int other = dc && !same_dc(dc, s->o.datacenter);
    snprintf(d->label[0], sizeof d->label[0], "(detector%s%.100s) health/state",
             other ? " " : "", other ? dc : "");
    snprintf(d->label[1], sizeof d->label[1], "(detector%s%.100s) catalog/services",
             other ? " " : "", other ? dc : "");
    o.path = "/v1/health/state/any";
    d->checks = consul_watch_new(s->o.loop, consul_get_adapter, consul_cancel_adapter,
                                 s->o.consul, &o, on_det_checks, on_det_error, d, err, sizeof err);
    o.path = "/v1/catalog/services";
    d->services = consul_watch_new(s->o.loop, consul_get_adapter, consul_cancel_adapter,
                                   s->o.consul, &o, on_det_services, on_det_error, d, err,
                                   sizeof err);
    if (d->checks == NULL || d->services == NULL) {
        log_error("change detector: %s", err);
        return NULL;
    }
    return d;
}

/* The upstreams of each datacenter are followed by that datacenter's change
 * detector (two long-polls) instead of one long-poll each; unless forced, a
 * datacenter with one or two upstreams keeps theirs, a detector would not
 * use fewer. why ends the INFO line. */
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
            continue;   /* logged: these keep their own long-polls */
        for (k = i; k < s->n_ups; k++) {
            if (same_dc(dc, up_dc(s, s->ups[k]))) {
                s->ups[k]->det = d;
                d->n_ups++;
            }
        }
    }
    for (size_t k = 0; k < s->n_dets; k++) {
        struct detector *d = s->dets[k];
        if (d->checks == NULL || d->services == NULL) {
            for (size_t i = 0; i < s->n_ups; i++)
                if (s->ups[i]->det == d)
                    s->ups[i]->det = NULL;
            continue;
        }
        consul_watch_start(d->services);
        if (d->dc && !same_dc(d->dc, s->o.datacenter))
            log_info("Following %zu upstreams in datacenter '%s' with the change detector "
                     "(2 long-polls instead of %zu): %s", d->n_ups, d->dc, d->n_ups, why);
        else
            log_info("Following %zu upstreams with the change detector (2 long-polls instead of "
                     "%zu): %s", d->n_ups, d->n_ups, why);
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
    const char *proto = http2 ? "HTTP/2 (ALPN h2)"
                        : consul_client_is_https(s->o.consul) ? "HTTP/1.1 (ALPN gave no h2)"
                                                              : "plain HTTP";
    int limit = http2 ? s->o.max_streams : s->o.max_blocking;
    const char *limit_name = http2 ? "watch.max_streams" : "watch.max_blocking";
    s->following = 1;
    if (s->o.mode == SYNC_MODE_DETECTOR) {
        assign_detectors(s, 1, "watch.mode \"detector\"");
    } else if (s->o.mode == SYNC_MODE_AUTO && limit > 0 && n > (size_t)limit) {
        snprintf(why, sizeof why, "%s, more upstreams than %s (%d)", proto, limit_name, limit);
        assign_detectors(s, 0, why);
    }
    size_t own = 0;
    for (size_t i = 0; i < n; i++)
        own += s->ups[i]->det == NULL;
    if (own > 0) {
        s->h2_streams = http2;
        if (s->o.mode == SYNC_MODE_STREAMS)
            snprintf(why, sizeof why, "watch.mode \"streams\", over %s", proto);
        else
            snprintf(why, sizeof why, "%s, up to %s (%d)", proto, limit_name, limit);
        log_info("Following %zu upstream(s) with a blocking query each (%s): %s", own,
                 http2 ? "streams on shared connections" : "a connection each", why);
    }
    for (size_t i = 0; i < n; i++)
        if (!s->ups[i]->det)
            consul_watch_start(s->ups[i]->watch);
}

static void ask_protocol(struct sync *s);

static void on_proto_answer(const struct consul_response *r, void *arg)
{
    struct sync *s = arg;
    s->proto_probe = NULL;
    if (r->err != HTTP_OK) {   /* no answer yet: the agent's protocol is unknown */
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
    if (s->o.mode == SYNC_MODE_AUTO && consul_client_is_https(s->o.consul) && version == 0 &&
        s->o.max_blocking > 0 && s->n_ups > (size_t)s->o.max_blocking) {
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
        consul_watch_free(s->dets[i]->checks);
        consul_watch_free(s->dets[i]->services);
        free(s->dets[i]->dc);
        consul_state_scan_free(&s->dets[i]->scan);
        strmap_free(&s->dets[i]->by_service);
        strmap_free(&s->dets[i]->nodes);
        free(s->dets[i]->tally);
        free(s->dets[i]);
    }
    free(s->dets);
}

void follow_recovered(struct sync *s)
{
    if (!s->following && s->proto_timer)
        ask_protocol(s);
    for (size_t i = 0; i < s->n_dets; i++) {
        consul_watch_retry(s->dets[i]->checks);
        consul_watch_retry(s->dets[i]->services);
    }
}
