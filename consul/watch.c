/* Blocking-query loop; see watch.h. */
#include "consul/watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/rand.h"

#define WATCH_MARGIN_MS 5000
#define WATCH_BUCKET_BURST 2.0

struct consul_watch {
    struct loop *loop;
    consul_get_fn get;
    consul_cancel_fn cancel;
    void *ctx;
    char *path, *query;
    int64_t wait_ms, min_interval_ms, min_gap_ms, rest_ms;
    int stale, accept_404;
    uint64_t sent_at; /* when the last request was sent */
    consul_watch_fn on_change;
    consul_watch_err_fn on_error;
    void *arg;

    struct consul_call *call;
    struct loop_timer *timer;
    struct backoff backoff;
    uint64_t index; /* 0: next request does not block */
    int have_answer;
    int index_moved; /* the last answer changed the index */
    int failing;     /* last request failed: errors are reported once */
    int noindex;     /* a missing index was reported */
    int rejected;    /* on_change called consul_watch_reject */
    double tokens;
    uint64_t tokens_at;
    long request_timeout;
    struct consul_watch_stats stats;
};

static void issue(struct consul_watch *w);

static void on_timer(void *arg)
{
    issue(arg);
}

struct consul_watch *consul_watch_new(struct loop *l, consul_get_fn get, consul_cancel_fn cancel,
                                      void *ctx, const struct consul_watch_opts *o,
                                      consul_watch_fn on_change, consul_watch_err_fn on_error,
                                      void *arg, char *err, size_t errlen)
{
    struct consul_watch *w = calloc(1, sizeof *w);
    if (w == NULL)
        goto oom;
    w->loop = l;
    w->get = get;
    w->cancel = cancel;
    w->ctx = ctx;
    w->path = strdup(o->path);
    w->query = o->query && *o->query ? strdup(o->query) : NULL;
    if (w->path == NULL || (o->query && *o->query && w->query == NULL))
        goto oom;
    w->wait_ms = o->wait_ms > 0 ? o->wait_ms : 300000;
    if (w->wait_ms > 600000)
        w->wait_ms = 600000; /* Consul caps at 10 minutes */
    w->min_interval_ms = o->min_interval_ms > 0 ? o->min_interval_ms : 1000;
    w->min_gap_ms = o->min_gap_ms > 0 ? o->min_gap_ms : 0;
    w->stale = o->stale;
    w->accept_404 = o->accept_404;
    w->on_change = on_change;
    w->on_error = on_error;
    w->arg = arg;
    backoff_init(&w->backoff, (uint64_t)(o->backoff_min_ms > 0 ? o->backoff_min_ms : 500),
                 (uint64_t)(o->backoff_max_ms > 0 ? o->backoff_max_ms : 30000));
    w->tokens = WATCH_BUCKET_BURST;
    w->timer = loop_timer_new(l, on_timer, w);
    if (w->timer == NULL)
        goto oom;
    return w;
oom:
    snprintf(err, errlen, "out of memory");
    consul_watch_free(w);
    return NULL;
}

void consul_watch_free(struct consul_watch *w)
{
    if (w == NULL)
        return;
    if (w->call)
        w->cancel(w->ctx, w->call);
    loop_timer_free(w->timer);
    free(w->path);
    free(w->query);
    free(w);
}

uint64_t consul_watch_index(const struct consul_watch *w)
{
    return w->index;
}

const struct consul_watch_stats *consul_watch_stats(const struct consul_watch *w)
{
    return &w->stats;
}

static void report(struct consul_watch *w, const struct consul_response *r, const char *what)
{
    if (w->on_error)
        w->on_error(r, what, w->arg);
}

/* Token bucket for re-queries that follow an unchanged index. */
static uint64_t bucket_delay(struct consul_watch *w)
{
    uint64_t now = loop_clock_ms();
    if (w->tokens_at)
        w->tokens += (double)(now - w->tokens_at) / (double)w->min_interval_ms;
    if (w->tokens > WATCH_BUCKET_BURST)
        w->tokens = WATCH_BUCKET_BURST;
    w->tokens_at = now;
    if (w->tokens >= 1.0) {
        w->tokens -= 1.0;
        return 0;
    }
    uint64_t wait = (uint64_t)((1.0 - w->tokens) * (double)w->min_interval_ms) + 1;
    w->tokens = 0;
    w->tokens_at = now + wait;
    return wait;
}

static void schedule(struct consul_watch *w, uint64_t delay)
{
    loop_timer_start(w->timer, delay);
}

/* Hands an answer to on_change. An answer it rejects (garbage under a valid
 * index) is not taken: the index goes back to what it was, so the data of
 * that index is asked for again, after a backoff, instead of being blocked
 * past. Returns 1 when taken. */
static int deliver(struct consul_watch *w, const struct consul_response *r, uint64_t prev,
                   int had_answer)
{
    w->have_answer = 1;
    w->rejected = 0;
    w->on_change(r, w->arg);
    if (!w->rejected)
        return 1;
    w->rejected = 0;
    w->index = prev;
    w->index_moved = 0;
    w->have_answer = had_answer;
    w->failing = 1;
    schedule(w, backoff_next(&w->backoff));
    return 0;
}

void consul_watch_reject(struct consul_watch *w)
{
    w->rejected = 1;
}

/* A failed answer: reported, then asked again (at once with the same index
 * after a blocking query the server let hang; with backoff otherwise). */
static void on_failure(struct consul_watch *w, const struct consul_response *r)
{
    char what[512];
    w->stats.errors++;
    w->index_moved = 0;
    if (r->err == HTTP_ERR_TIMEOUT && w->index > 0) {
        w->stats.dead_restarts++;
        snprintf(what, sizeof what, "blocking query on %s did not return within %ld ms, restarting",
                 w->path, w->request_timeout);
        report(w, r, what);
        /* The server simply went silent on that connection. */
        schedule(w, rand_below(250));
        return;
    }
    if (r->limited) {
        /* Reported (r->limited tells the caller the client has already said
         * it once for all its requests), and backed off. */
        snprintf(what, sizeof what, "GET %s: Consul is limiting connections", w->path);
    } else if (r->err != HTTP_OK) {
        snprintf(what, sizeof what, "GET %s: %s", w->path, r->error ? r->error : "transport error");
    } else {
        char body[160];
        size_t n = r->body_len < sizeof body - 1 ? r->body_len : sizeof body - 1, k = 0;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)r->body[i] >= 0x20 && r->body[i] != 0x7f)
                body[k++] = r->body[i];
        body[k] = '\0';
        snprintf(what, sizeof what, "GET %s: %ld %s", w->path, r->status, body);
    }
    report(w, r, what);
    w->failing = 1;
    schedule(w, backoff_next(&w->backoff));
}

/* An answer without an index: nothing to block on. It is delivered, and
 * asked again without blocking, rate-limited. */
static void on_no_index(struct consul_watch *w, const struct consul_response *r)
{
    char what[512];
    w->stats.changes++;
    w->index = 0;
    w->have_answer = 1;
    w->index_moved = 0;
    if (!w->noindex) {
        snprintf(what, sizeof what,
                 "GET %s: answers without a valid X-Consul-Index; "
                 "polling without blocking",
                 w->path);
        report(w, r, what);
    }
    w->noindex = 1;
    if (deliver(w, r, 0, 0))
        schedule(w, bucket_delay(w));
}

static void on_answer(const struct consul_response *r, void *arg)
{
    struct consul_watch *w = arg;
    char what[512];
    w->call = NULL;
    if (!(r->err == HTTP_OK && (r->status == 200 || (w->accept_404 && r->status == 404)))) {
        on_failure(w, r);
        return;
    }
    backoff_reset(&w->backoff);
    w->failing = 0;
    uint64_t prev = w->index;
    if (!r->has_index) {
        on_no_index(w, r);
        return;
    }
    uint64_t idx = r->index;
    w->noindex = 0;
    if (idx < prev) {
        w->stats.resets++;
        snprintf(what, sizeof what, "index on %s went backwards (%llu -> %llu), resetting", w->path,
                 (unsigned long long)prev, (unsigned long long)idx);
        report(w, r, what);
        w->index = 0;
        w->index_moved = 0;
        schedule(w, bucket_delay(w));
        return;
    }
    if (idx < 1)
        idx = 1;
    int had_answer = w->have_answer;
    int moved = !w->have_answer || idx > prev;
    w->index = idx;
    w->index_moved = moved;
    if (!moved) {
        schedule(w, bucket_delay(w));
        return;
    }
    w->stats.changes++;
    if (!deliver(w, r, prev, had_answer))
        return;
    /* The first change of a burst was answered at once; the next request
     * waits out min_gap so what follows comes in one answer, and the rest
     * on_change asked for. */
    uint64_t now = loop_clock_ms(), next = w->sent_at + (uint64_t)w->min_gap_ms;
    if (now + (uint64_t)w->rest_ms > next)
        next = now + (uint64_t)w->rest_ms;
    w->rest_ms = 0;
    schedule(w, next > now ? next - now : 0);
}

static void issue(struct consul_watch *w)
{
    char pq[2048], err[256];
    size_t n = 0;
    if (w->call)
        return;
    n += (size_t)snprintf(pq + n, sizeof pq - n, "%s", w->path);
    char sep = '?';
    if (w->query) {
        n += (size_t)snprintf(pq + n, sizeof pq - n, "%c%s", sep, w->query);
        sep = '&';
    }
    if (w->stale) {
        n += (size_t)snprintf(pq + n, sizeof pq - n, "%cstale", sep);
        sep = '&';
    }
    long timeout = 10000;
    int blocking = w->index > 0;
    if (blocking) {
        /* Jitter each wait a little so a fleet's long-polls drift apart. */
        uint64_t wait = rand_jitter_around((uint64_t)w->wait_ms, 0.05);
        snprintf(pq + n, sizeof pq - n, "%cindex=%llu&wait=%llums", sep,
                 (unsigned long long)w->index, (unsigned long long)wait);
        timeout = (long)(wait + wait / 16 + WATCH_MARGIN_MS);
    }
    w->request_timeout = timeout;
    w->stats.requests++;
    w->sent_at = loop_clock_ms();
    w->call = w->get(w->ctx, pq, timeout, blocking, on_answer, w, err, sizeof err);
    if (w->call == NULL) {
        w->stats.errors++;
        report(w, NULL, err);
        schedule(w, backoff_next(&w->backoff));
    }
}

void consul_watch_start(struct consul_watch *w)
{
    issue(w);
}

void consul_watch_retry(struct consul_watch *w)
{
    if (w == NULL || !w->failing || w->call)
        return;
    /* Asked afresh (no index): the answer is delivered at once, so the
     * caller learns the outage is over even if nothing changed in it. */
    w->index = 0;
    loop_timer_stop(w->timer);
    issue(w);
}

void consul_watch_rest(struct consul_watch *w, int64_t rest_ms)
{
    w->rest_ms = rest_ms > 0 ? rest_ms : 0;
}

void consul_watch_set_min_gap(struct consul_watch *w, int64_t min_gap_ms)
{
    w->min_gap_ms = min_gap_ms > 0 ? min_gap_ms : 0;
}
