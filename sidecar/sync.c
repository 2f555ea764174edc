/* Upstream sync orchestration; see sync.h. */
#include "sidecar/sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "consul/decode.h"
#include "consul/watch.h"
#include "lib/log.h"
#include "lib/rand.h"
#include "sidecar/recon.h"
#include "sidecar/state.h"

#include "sidecar/sync_int.h"

static void up_sync(struct upstream *u);

#define SYNC_SAVE_EVERY_MS 1000

/* ---- setup ---------------------------------------------------------------- */

struct sync *sync_new(const struct sync_opts *o, char *err, size_t errlen)
{
    struct sync *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->o = *o;
    s->o.datacenter = NULL; /* a copy of ours below: the caller's may be freed */
    if (o->datacenter && (s->o.datacenter = s->datacenter = strdup(o->datacenter)) == NULL) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (o->state_dir && (s->state_dir = strdup(o->state_dir)) == NULL) {
        free(s->datacenter);
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (o->metrics) {
        static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,    1,     2.5,  5,     10};
        s->m_latency = metrics_histogram(o->metrics, "consul_sidecar_sync_latency_seconds",
                                         "From a Consul index change to the proxy applied",
                                         "upstream", buckets, sizeof buckets / sizeof buckets[0]);
        s->m_calls = metrics_counter(o->metrics, "consul_sidecar_proxy_calls_total",
                                     "Proxy operations applied, by upstream and result", "result");
        s->m_consul = metrics_counter(o->metrics, "consul_sidecar_watch_events_total",
                                      "Watch answers and errors, by kind", "kind");
        s->m_targets = metrics_gauge(o->metrics, "consul_sidecar_upstream_targets",
                                     "Targets currently applied per upstream", "upstream");
        s->m_saves =
            metrics_counter(o->metrics, "consul_sidecar_state_saves_total",
                            "State file rewrites (at most one a second), by result", "result");
    }
    return s;
}

static void up_free(struct upstream *u)
{
    if (u == NULL)
        return;
    consul_watch_free(u->watch);
    consul_cancel(u->fetch);
    loop_timer_free(u->timer);
    loop_timer_free(u->resync);
    recon_policy_free(&u->policy);
    if (u->have_answer)
        consul_instances_free(&u->last_answer);
    for (size_t i = 0; i < u->n_tags; i++)
        free(u->tags[i]);
    free(u->tags);
    free(u->name);
    free(u->service);
    free(u->dc);
    free(u->fetch_path);
    free(u->last_error);
    free(u->last_cause);
    free(u->last_watch_error);
    free(u);
}

/* Sets *note to a copy of text (NULL clears it): 1 when it changed. */
static int note_set(char **note, const char *text)
{
    if (text == NULL ? *note == NULL : *note != NULL && strcmp(*note, text) == 0)
        return 0;
    free(*note);
    *note = text ? strdup(text) : NULL;
    return 1;
}

static void save_state_now(struct sync *s)
{
    char err[300];
    s->state_dirty = 0;
    s->last_save_ms = loop_clock_ms();
    int rc = state_save(s->state_dir, &s->state, err, sizeof err);
    metrics_counter_inc(s->m_saves, rc < 0 ? "error" : "ok", 1);
    if (rc < 0) {
        if (strcmp(err, s->save_error) != 0)
            log_error("Cannot save state: %s (the proxy is up to date; only restart recovery "
                      "is affected)",
                      err);
        snprintf(s->save_error, sizeof s->save_error, "%s", err);
        return;
    }
    if (s->save_error[0])
        log_info("State saved again in %s", s->state_dir);
    s->save_error[0] = '\0';
}

static void on_save_timer(void *arg)
{
    save_state_now(arg);
}

static void state_changed(struct sync *s)
{
    s->state_dirty = 1;
    if (s->save_timer == NULL || loop_timer_active(s->save_timer))
        return;
    uint64_t now = loop_clock_ms(), next = s->last_save_ms + SYNC_SAVE_EVERY_MS;
    loop_timer_start(s->save_timer, s->last_save_ms && next > now ? next - now : 0);
}

void sync_free(struct sync *s)
{
    if (s == NULL)
        return;
    if (s->state_dirty)
        save_state_now(s); /* what the last second applied */
    loop_timer_free(s->save_timer);
    consul_cancel(s->proto_probe);
    loop_timer_free(s->proto_timer);
    follow_free(s);
    for (size_t i = 0; i < s->n_ups; i++)
        up_free(s->ups[i]);
    free(s->ups);
    for (size_t i = 0; i < s->n_proxies; i++) {
        if (s->proxies[i]->driver)
            s->proxies[i]->driver->ops->free(s->proxies[i]->driver);
        free(s->proxies[i]->name);
        free(s->proxies[i]);
    }
    free(s->proxies);
    state_free(&s->state);
    free(s->state_dir);
    free(s->datacenter);
    free(s);
}

int sync_add_proxy(struct sync *s, const char *name, struct proxy *driver)
{
    struct sync_proxy *p = calloc(1, sizeof *p);
    struct sync_proxy **arr = realloc(s->proxies, (s->n_proxies + 1) * sizeof *arr);
    if (arr)
        s->proxies = arr;
    if (p == NULL || arr == NULL || (p->name = strdup(name)) == NULL) {
        free(p);
        driver->ops->free(driver);
        return -1;
    }
    p->driver = driver;
    p->writer = 1;
    s->proxies[s->n_proxies++] = p;
    return 0;
}

static struct sync_proxy *find_proxy(const struct sync *s, const char *name)
{
    for (size_t i = 0; i < s->n_proxies; i++)
        if (strcmp(s->proxies[i]->name, name) == 0)
            return s->proxies[i];
    return NULL;
}

static void on_up_timer(void *arg);
static void on_up_resync(void *arg);
static void on_watch_change(const struct consul_response *r, void *arg);
static void on_watch_error(const struct consul_response *r, const char *what, void *arg);

static struct consul_call *watch_get(void *ctx, const char *pq, long timeout_ms, int blocking,
                                     consul_done_fn fn, void *arg, char *err, size_t errlen)
{
    return consul_request(ctx, "GET", pq, NULL, 0, timeout_ms, blocking, fn, arg, err, errlen);
}

static void watch_cancel(void *ctx, struct consul_call *call)
{
    (void)ctx;
    consul_cancel(call);
}

/* The blocking query of an upstream: /v1/health/service/<svc> and its
 * ?tag=..&dc=.. (without ?stale, which the watch adds). ?passing is not
 * sent: the decoder applies it, so warning instances can be re-weighted
 * instead of vanishing. -1 when out of memory. */
static int health_query(const struct sync *s, const struct sync_upstream_spec *sp, char *path,
                        size_t pathlen, char *query, size_t querylen)
{
    char *esc = http_escape(sp->service);
    size_t qlen = 0;
    if (esc == NULL)
        return -1;
    snprintf(path, pathlen, "/v1/health/service/%s", esc);
    free(esc);
    for (size_t i = 0; i < sp->n_tags; i++) {
        char *t = http_escape(sp->tags[i]);
        if (t == NULL)
            return -1;
        qlen += (size_t)snprintf(query + qlen, querylen - qlen, "%stag=%s", qlen ? "&" : "", t);
        free(t);
    }
    /* An upstream's own datacenter, else the sidecar's (-datacenter), else
     * none: the agent's own, as for the consul CLI. */
    const char *dc = sp->datacenter ? sp->datacenter : s->o.datacenter;
    if (dc) {
        char *d = http_escape(dc);
        if (d == NULL)
            return -1;
        snprintf(query + qlen, querylen - qlen, "%sdc=%s", qlen ? "&" : "", d);
        free(d);
    }
    return 0;
}

int sync_add_upstream(struct sync *s, const struct sync_upstream_spec *sp, char *err, size_t errlen)
{
    struct sync_proxy *p = find_proxy(s, sp->proxy);
    if (p == NULL) {
        snprintf(err, errlen, "upstream '%s': proxy '%s' is not configured", sp->name, sp->proxy);
        return -1;
    }
    struct upstream *u = calloc(1, sizeof *u);
    struct upstream **arr = realloc(s->ups, (s->n_ups + 1) * sizeof *arr);
    if (arr)
        s->ups = arr;
    if (u == NULL || arr == NULL)
        goto oom;
    s->ups[s->n_ups++] = u;
    u->s = s;
    u->proxy = p;
    u->last_ok = -1;
    u->last_known_leader = -1;
    u->passing_only = sp->passing_only;
    u->name = strdup(sp->name);
    u->service = strdup(sp->service);
    u->proxy_name = p->name;
    u->dc = sp->datacenter ? strdup(sp->datacenter) : NULL;
    u->tags = sp->n_tags ? calloc(sp->n_tags, sizeof *u->tags) : NULL;
    if (!u->name || !u->service || (sp->datacenter && !u->dc) || (sp->n_tags && !u->tags))
        goto oom;
    for (size_t i = 0; i < sp->n_tags; i++) {
        if ((u->tags[i] = strdup(sp->tags[i])) == NULL)
            goto oom;
        u->n_tags = i + 1;
    }
    /* nginx cannot serve an upstream without servers: never render one. */
    recon_policy_init(&u->policy, s->o.watch.hold_down_ms, strcmp(sp->proxy, "nginx") != 0);
    recon_quiesce_init_jittered(&u->quiesce, s->o.watch.quiescence_min_ms,
                                s->o.watch.quiescence_max_ms);
    backoff_init(&u->backoff, 500, 30000);
    backoff_init(&u->read_backoff, 1000, 30000);
    u->timer = loop_timer_new(s->o.loop, on_up_timer, u);
    u->resync = loop_timer_new(s->o.loop, on_up_resync, u);
    if (!u->timer || !u->resync)
        goto oom;

    char path[512], query[1024] = "";
    if (health_query(s, sp, path, sizeof path, query, sizeof query) < 0)
        goto oom;
    char fetch[1600];
    snprintf(fetch, sizeof fetch, "%s%s%s%s", path, query[0] || s->o.watch.stale ? "?" : "", query,
             s->o.watch.stale ? (query[0] ? "&stale" : "stale") : "");
    if ((u->fetch_path = strdup(fetch)) == NULL)
        goto oom;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* The upstream's own long-poll, made when it is to be followed by one
 * (not by a change detector, which most are at scale: a watch each would
 * be kept for nothing). 0, or -1 with err. */
int sync_up_open_watch(struct upstream *u, char *err, size_t errlen)
{
    struct sync *s = u->s;
    if (u->watch)
        return 0;
    struct sync_upstream_spec sp = {.service = u->service,
                                    .tags = (const char *const *)u->tags,
                                    .n_tags = u->n_tags,
                                    .datacenter = u->dc};
    char path[512], query[1024] = "";
    if (health_query(s, &sp, path, sizeof path, query, sizeof query) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    struct consul_watch_opts wo = {
        .path = path,
        .query = query[0] ? query : NULL,
        .wait_ms = s->o.watch.wait_ms,
        .min_interval_ms = 1000,
        .backoff_min_ms = 500,
        .backoff_max_ms = 30000,
        .stale = s->o.watch.stale,
    };
    u->watch = consul_watch_new(s->o.loop, watch_get, watch_cancel, s->o.consul, &wo,
                                on_watch_change, on_watch_error, u, err, errlen);
    return u->watch ? 0 : -1;
}

/* ---- watch events --------------------------------------------------------- */

static void count(struct metrics_counter *c, const char *label)
{
    if (c)
        metrics_counter_inc(c, label, 1);
}

static void up_schedule(struct upstream *u, uint64_t at)
{
    uint64_t now = loop_clock_ms();
    loop_timer_start(u->timer, at > now ? at - now : 0);
}

/* Runs the fail-static policy on the latest answer. */
static void up_feed(struct upstream *u)
{
    uint64_t now = loop_clock_ms(), recheck = 0;
    size_t before = u->policy.have_good ? u->policy.last_good.n : 0;
    enum recon_verdict v =
        recon_policy_feed(&u->policy, &u->last_answer, u->last_known_leader, now, &recheck);
    switch (v) {
    case RECON_KEEP:
        if (u->last_answer.n == 0 && before > 0 && u->last_known_leader == 0)
            log_warn("Upstream '%s': Consul answered no instances without a known leader; "
                     "keeping %zu target(s)",
                     u->name, before);
        return;
    case RECON_HOLD:
        if (u->policy.empty_since == now)
            log_warn("Upstream '%s': Consul reports no healthy instance of '%s'; keeping "
                     "%zu target(s) for the hold-down period",
                     u->name, u->service, before);
        up_schedule(u, recheck);
        return;
    case RECON_APPLY:
        if (u->sync != UP_BEHIND)
            u->change_at = now;
        u->sync = UP_BEHIND;
        u->index = u->last_answer.index;
        up_schedule(u, recon_quiesce_change(&u->quiesce, now));
        return;
    }
}

/* An answer about the upstream's service, from its watch or a plain read:
 * taken, or -1 when its body cannot be decoded (logged; nothing changes). */
static int take_answer(struct upstream *u, const struct consul_response *r)
{
    struct consul_instances in = {0};
    char err[256];
    count(u->s->m_consul, "change");
    if (consul_decode_health_service(r->body, r->body_len, u->passing_only, &in, err, sizeof err) <
        0) {
        /* Garbage never changes the proxy. */
        char line[300];
        snprintf(line, sizeof line, "bad answer from /v1/health/service/%s: %s", u->service, err);
        if (note_set(&u->last_watch_error, line))
            log_error("Upstream '%s': %s; keeping the last known good targets", u->name, line);
        count(u->s->m_consul, "decode_error");
        return -1;
    }
    u->read_owed = false; /* a fresh answer: no read owed any more */
    backoff_reset(&u->read_backoff);
    if (note_set(&u->last_watch_error, NULL))
        log_info("Upstream '%s': watch on '%s' recovered", u->name, u->service);
    in.index = r->index;
    if (u->have_answer)
        consul_instances_free(&u->last_answer);
    else if (++u->s->n_answered == u->s->n_ups && u->s->h2_streams)
        log_info("HTTP/2: %zu blocking queries share %d connection(s) to the agent", u->s->n_ups,
                 consul_client_connections(u->s->o.consul));
    u->last_answer = in;
    u->have_answer = true;
    u->last_known_leader = r->known_leader;
    up_feed(u);
    /* Its targets are in the policy now; the detector needs its nodes. */
    consul_instances_keep_nodes(&u->last_answer);
    return 0;
}

/* A fresh read of the service is owed: made after a backoff (at once when
 * the agent comes back: sync_consul_recovered), until one is answered. */
static void owe_read(struct upstream *u)
{
    u->read_owed = true;
    up_schedule(u, loop_clock_ms() + backoff_next(&u->read_backoff));
}

static void on_watch_change(const struct consul_response *r, void *arg)
{
    struct upstream *u = arg;
    if (take_answer(u, r) < 0)
        consul_watch_reject(u->watch); /* asked again, from the same index */
}

static void on_watch_error(const struct consul_response *r, const char *what, void *arg)
{
    struct upstream *u = arg;
    char line[300];
    (void)r;
    count(u->s->m_consul, "error");
    /* An empty answer was being confirmed: start over once Consul answers
     * again. */
    if (recon_policy_doubt(&u->policy) || u->read_owed)
        owe_read(u);
    if (r && r->limited)
        return; /* logged once for the whole client (on_limit) */
    snprintf(line, sizeof line, "%s", what ? what : "watch error");
    if (note_set(&u->last_watch_error, line))
        log_warn("Upstream '%s': %s; keeping the last known good targets", u->name, line);
}

/* ---- read, diff, apply ---------------------------------------------------- */

/* what: "reading the proxy failed", detail: the driver's reason. */
static void up_failed(struct upstream *u, const char *what, const char *detail)
{
    char line[300];
    snprintf(line, sizeof line, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
    /* The cause is compared, not the step: a proxy that refuses the read
     * the same way it refused the write is the same event. */
    const char *cause = detail ? detail : what;
    if (note_set(&u->last_cause, cause) || u->last_ok != 0) {
        if (strcmp(cause, u->proxy->last_failure) != 0)
            log_error("Upstream '%s': %s; will retry", u->name, line);
        else /* one event for the whole proxy, logged once */
            log_debug("Upstream '%s': %s (as logged for another upstream); will retry", u->name,
                      line);
        snprintf(u->proxy->last_failure, sizeof u->proxy->last_failure, "%s", cause);
    }
    note_set(&u->last_error, line);
    u->last_ok = 0;
    u->last_sync = time(NULL);
    u->phase = UP_IDLE;
    up_schedule(u, loop_clock_ms() + backoff_next(&u->backoff));
}

/* Where the time of a change a detector saw went, from the first byte of
 * the health/state answer to the proxy's confirmation: logged at debug
 * level (make bench reads it). */
static void log_timeline(struct upstream *u)
{
    uint64_t now = loop_clock_us();
    log_debug("Upstream '%s': change applied: answer_bytes=%zu checks=%zu arrival_ms=%.2f "
              "decode_ms=%.2f ask_ms=%.2f read_ms=%.2f apply_ms=%.2f",
              u->name, u->tl.bytes, u->tl.checks, (double)u->tl.body_us / 1000.0,
              (double)(u->tl.decoded - u->tl.arrived) / 1000.0,
              (double)(u->tl.asked - u->tl.decoded) / 1000.0,
              (double)(u->tl.answered - u->tl.asked) / 1000.0,
              (double)(now - u->tl.answered) / 1000.0);
    memset(&u->tl, 0, sizeof u->tl);
}

static void up_succeeded(struct upstream *u, size_t n_ops)
{
    uint64_t now = loop_clock_ms();
    struct sync *s = u->s;
    if (u->last_ok == 0)
        log_info("Upstream '%s': proxy sync recovered", u->name);
    u->proxy->last_failure[0] = '\0';
    u->last_ok = 1;
    note_set(&u->last_error, NULL);
    u->last_sync = time(NULL);
    u->phase = UP_IDLE;
    backoff_reset(&u->backoff);
    if (n_ops) /* a read-back that changed nothing opens no window */
        recon_quiesce_applied(&u->quiesce, now);
    if (u->sync == UP_BEHIND && s->m_latency && u->change_at)
        metrics_histogram_observe(s->m_latency, u->name, (double)(now - u->change_at) / 1000.0);
    if (n_ops && u->tl.answered)
        log_timeline(u);
    u->sync = UP_IN_SYNC;
    if (s->m_targets)
        metrics_gauge_set(s->m_targets, u->name, (double)u->policy.last_good.n);
    if (n_ops)
        loop_release_memory_soon(s->o.loop);
    if (n_ops && s->state_dir) {
        if (state_set(&s->state, u->name, u->proxy_name, u->index, &u->policy.last_good) < 0)
            log_error("Cannot save state: out of memory (the proxy is up to date; only "
                      "restart recovery is affected)");
        else
            state_changed(s);
    }
    if (u->rerun) {
        u->rerun = false;
        up_schedule(u, now);
    }
}

static void on_applied(int ok, const struct proxy_op_result *results, size_t n, const char *err,
                       void *arg)
{
    struct upstream *u = arg;
    for (size_t i = 0; i < n; i++)
        count(u->s->m_calls, results[i].ok ? "ok" : "error");
    if (!ok) {
        up_failed(u, "applying changes failed", err);
        return;
    }
    up_succeeded(u, n);
}

static void on_read(const struct proxy_target_set *actual, const char *err, void *arg)
{
    struct upstream *u = arg;
    char e[300];
    if (actual == NULL) {
        up_failed(u, "reading the proxy failed", err);
        return;
    }
    if (!u->proxy->writer) {
        u->phase = UP_IDLE; /* the lock was lost while reading: no write */
        return;
    }
    /* Compare with what the proxy can store (HAProxy caps weights at 256):
     * a capped weight read back must not look like a change. */
    struct proxy_target_set want;
    if (proxy_target_set_copy(&want, &u->policy.last_good) < 0) {
        up_failed(u, "out of memory", NULL);
        return;
    }
    recon_cap_weights(&want, u->proxy->driver->ops->max_weight);
    struct proxy_op *ops = NULL;
    size_t n = 0;
    if (recon_diff(&want, actual, &ops, &n) < 0) {
        proxy_target_set_free(&want);
        up_failed(u, "out of memory", NULL);
        return;
    }
    if (n == 0) {
        proxy_target_set_free(&want);
        up_succeeded(u, 0);
        return;
    }
    size_t adds = 0, dels = 0, weights = 0;
    for (size_t i = 0; i < n; i++) {
        adds += ops[i].kind == PROXY_OP_ADD;
        dels += ops[i].kind == PROXY_OP_REMOVE;
        weights += ops[i].kind == PROXY_OP_SET_WEIGHT;
    }
    log_info("Upstream '%s': applying %zu change(s) to %s (+%zu -%zu ~%zu), %zu target(s)", u->name,
             n, u->proxy_name, adds, dels, weights, u->policy.last_good.n);
    for (size_t i = 0; i < n; i++) {
        char key[300];
        proxy_target_key(&ops[i].target, key, sizeof key);
        log_debug("Upstream '%s': %s %s weight %d", u->name,
                  ops[i].kind == PROXY_OP_ADD      ? "add"
                  : ops[i].kind == PROXY_OP_REMOVE ? "remove"
                                                   : "set weight",
                  key, ops[i].target.weight);
    }
    u->phase = UP_APPLYING;
    struct proxy *p = u->proxy->driver;
    int rc = p->ops->apply(p, u->name, ops, n, &u->policy.last_good, on_applied, u, e, sizeof e);
    recon_ops_free(ops);
    proxy_target_set_free(&want);
    if (rc < 0)
        up_failed(u, "applying changes failed", e);
}

static void up_sync(struct upstream *u)
{
    char err[300];
    if (!u->policy.have_good || !u->proxy->writer)
        return;
    if (u->phase != UP_IDLE) {
        u->rerun = true;
        return;
    }
    u->phase = UP_READING;
    struct proxy *p = u->proxy->driver;
    if (p->ops->read(p, u->name, on_read, u, err, sizeof err) < 0)
        up_failed(u, "reading the proxy failed", err);
}

static void on_up_timer(void *arg)
{
    struct upstream *u = arg;
    /* The end of a hold on an empty answer, or a hold broken by an error:
     * Consul is asked again (a plain read: a blocking query would not answer
     * while nothing changes), and only that fresh answer can empty the
     * upstream, never the one cached from before the hold. */
    if ((u->policy.empty_since && u->have_answer) || u->read_owed) {
        sync_up_fetch(u); /* read_owed stays set until an answer is in */
        return;
    }
    up_sync(u);
}

static void on_up_resync(void *arg)
{
    struct upstream *u = arg;
    up_sync(u);
    loop_timer_start(u->resync, rand_jitter_around((uint64_t)u->s->o.proxy_resync_ms, 0.1));
}

/* ---- reads between long-polls (the change detector's) ------------------ */

static void on_fetch(const struct consul_response *r, void *arg);

void sync_up_fetch(struct upstream *u)
{
    char err[256];
    if (u->fetch) {
        u->fetch_again = true;
        return;
    }
    u->fetch = consul_request(u->s->o.consul, "GET", u->fetch_path, NULL, 0, 10000, 0, on_fetch, u,
                              err, sizeof err);
    if (u->fetch == NULL)
        on_watch_error(NULL, err, u);
}

static void on_fetch(const struct consul_response *r, void *arg)
{
    struct upstream *u = arg;
    char what[300];
    u->fetch = NULL;
    if (u->tl.asked && !u->tl.answered)
        u->tl.answered = loop_clock_us();
    /* The change a failed read was for (a detector's fingerprint has moved
     * on already) must not be lost: it is read again. */
    if (r->err != HTTP_OK || r->status != 200) {
        consul_describe_error(r, "GET", u->fetch_path, what, sizeof what);
        on_watch_error(r, what, u);
        if (!u->read_owed)
            owe_read(u);
    } else if (take_answer(u, r) < 0) {
        owe_read(u);
    }
    if (u->fetch_again) {
        u->fetch_again = false;
        sync_up_fetch(u);
    }
}

/* ---- control -------------------------------------------------------------- */

void sync_start(struct sync *s)
{
    char err[300];
    if (s->state_dir && state_load(s->state_dir, &s->state, err, sizeof err) < 0)
        log_error("Ignoring saved state: %s", err);
    if (s->state_dir)
        s->save_timer = loop_timer_new(s->o.loop, on_save_timer, s);
    for (size_t i = 0; i < s->n_ups; i++) {
        struct upstream *u = s->ups[i];
        const struct state_upstream *saved = state_get(&s->state, u->proxy_name, u->name);
        if (saved && saved->targets.n > 0 && recon_policy_seed(&u->policy, &saved->targets) == 0) {
            log_info("Upstream '%s': restoring %zu saved target(s) before Consul answers", u->name,
                     saved->targets.n);
            u->index = saved->index;
            up_sync(u);
        }
        if (s->o.proxy_resync_ms > 0)
            loop_timer_start(u->resync, rand_jitter_around((uint64_t)s->o.proxy_resync_ms, 0.1));
    }
    follow_start(s);
}

void sync_set_writer(struct sync *s, const char *proxy, int is_writer)
{
    struct sync_proxy *p = find_proxy(s, proxy);
    if (p == NULL || p->writer == is_writer)
        return;
    p->writer = is_writer;
    if (p->driver)
        p->driver->writes_stopped = !is_writer; /* at once, mid-apply too */
    if (!is_writer)
        return;
    uint64_t now = loop_clock_ms();
    for (size_t i = 0; i < s->n_ups; i++) {
        if (s->ups[i]->proxy != p)
            continue;
        /* Changes a standby held count from the takeover, or the latency
         * histogram would show the whole time it was not the writer. */
        if (s->ups[i]->sync == UP_BEHIND)
            s->ups[i]->change_at = now;
        up_sync(s->ups[i]);
    }
}

int sync_proxy_writing(const struct sync *s, const char *proxy)
{
    struct sync_proxy *p = find_proxy(s, proxy);
    return p && p->driver && p->driver->writing;
}

void sync_abort_writes(struct sync *s, const char *proxy)
{
    struct sync_proxy *p = find_proxy(s, proxy);
    if (p && p->driver && p->driver->ops->abort_writes)
        p->driver->ops->abort_writes(p->driver);
}

void sync_consul_recovered(struct sync *s)
{
    follow_recovered(s);
    for (size_t i = 0; i < s->n_ups; i++) {
        if (s->ups[i]->watch)
            consul_watch_retry(s->ups[i]->watch);
        if (s->ups[i]->read_owed)
            sync_up_fetch(s->ups[i]); /* a hold broken by the outage starts again now */
    }
}

void sync_resync_now(struct sync *s)
{
    for (size_t i = 0; i < s->n_ups; i++)
        up_sync(s->ups[i]);
}

int sync_healthy(const struct sync *s, char *why, size_t len)
{
    for (size_t i = 0; i < s->n_ups; i++) {
        const struct upstream *u = s->ups[i];
        if (u->last_ok == 0) {
            snprintf(why, len, "upstream '%s': %s", u->name, u->last_error ? u->last_error : "");
            return 0;
        }
    }
    return 1;
}

int sync_settled(const struct sync *s)
{
    for (size_t i = 0; i < s->n_ups; i++) {
        const struct upstream *u = s->ups[i];
        if (u->proxy->writer && (u->sync != UP_IN_SYNC || u->phase != UP_IDLE))
            return 0;
    }
    return 1;
}

cJSON *sync_status_json(const struct sync *s)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < s->n_ups; i++) {
        const struct upstream *u = s->ups[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", u->name);
        cJSON_AddStringToObject(o, "service", u->service);
        cJSON_AddStringToObject(o, "proxy", u->proxy_name);
        cJSON_AddStringToObject(o, "role", u->proxy->writer ? "writer" : "standby");
        cJSON_AddNumberToObject(o, "consul_index", (double)u->index);
        cJSON *t = cJSON_AddArrayToObject(o, "targets");
        for (size_t j = 0; u->policy.have_good && j < u->policy.last_good.n; j++) {
            const struct proxy_target *pt = &u->policy.last_good.items[j];
            cJSON *x = cJSON_CreateObject();
            char key[300];
            cJSON_AddStringToObject(x, "target", proxy_target_key(pt, key, sizeof key));
            cJSON_AddNumberToObject(x, "weight", pt->weight);
            cJSON_AddItemToArray(t, x);
        }
        if (u->last_sync) {
            char ts[32];
            struct tm tm;
            gmtime_r(&u->last_sync, &tm);
            strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
            cJSON_AddStringToObject(o, "last_sync", ts);
        }
        cJSON_AddStringToObject(o, "last_result",
                                u->last_ok < 0 ? "none"
                                : u->last_ok   ? "ok"
                                               : "error");
        if (u->last_error)
            cJSON_AddStringToObject(o, "last_error", u->last_error);
        if (u->last_watch_error)
            cJSON_AddStringToObject(o, "watch_error", u->last_watch_error);
        if (u->policy.empty_since)
            cJSON_AddBoolToObject(o, "holding_empty", 1);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

void sync_collect(const struct sync *s, struct metrics *m)
{
    struct metrics_counter *restarts = metrics_counter(
        m, "consul_sidecar_watch_restarts_total",
        "Blocking queries cancelled and reissued because they did not return in time", "upstream");
    struct metrics_counter *resets =
        metrics_counter(m, "consul_sidecar_watch_index_resets_total",
                        "Blocking-query indexes reset because they went backwards", "upstream");
    for (size_t i = 0; i < s->n_ups; i++) {
        if (s->ups[i]->det || !s->ups[i]->watch)
            continue; /* followed by a detector: its long-polls count below */
        const struct consul_watch_stats *st = consul_watch_stats(s->ups[i]->watch);
        metrics_counter_set(restarts, s->ups[i]->name, (double)st->dead_restarts);
        metrics_counter_set(resets, s->ups[i]->name, (double)st->resets);
    }
    /* Each change detector's long-polls, under their own labels. */
    for (size_t i = 0; i < s->n_dets; i++) {
        const struct detector *d = s->dets[i];
        const struct consul_watch *det[DET_STATES + 1] = {d->st[DET_CRITICAL].watch,
                                                          d->st[DET_WARNING].watch, d->services};
        for (int k = 0; k < DET_STATES + 1; k++) {
            if (det[k] == NULL)
                continue;
            const struct consul_watch_stats *st = consul_watch_stats(det[k]);
            metrics_counter_set(restarts, s->dets[i]->label[k], (double)st->dead_restarts);
            metrics_counter_set(resets, s->dets[i]->label[k], (double)st->resets);
        }
    }
}
