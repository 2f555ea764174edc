/*
 * One blocking-query loop on one Consul path, with the index rules of
 * Consul's API (and the failures users of consul-template and fabio met):
 *
 *  - the first request carries no index; then the last X-Consul-Index;
 *  - an index lower than the last one resets to 0; an index of 0 is floored
 *    to 1 (never block on 0); a missing or non-numeric index is never
 *    blocked on;
 *  - an answer whose index did not move is not a change: on_change is not
 *    called, and such re-queries are rate-limited (token bucket: burst 2,
 *    then one per min_interval), so a server that answers at once with the
 *    same index cannot cause a busy loop;
 *  - errors back off (capped exponential, jittered), forever; an answer
 *    marked limited (Consul refusing connections past its per-client
 *    limit) is an error too: on_error sees r->limited and need not log it,
 *    the client reports the limit once for all its requests;
 *  - a blocking request that has not returned within wait + wait/16 + 5 s
 *    (a dead watch: the server accepted and went silent) is cancelled and
 *    reissued, reported through on_error.
 *
 * The engine is written against a request starter (consul/response-t.h), so
 * tests drive it with a fake Consul.
 */
#ifndef CONSUL_WATCH_H
#define CONSUL_WATCH_H

#include <stdint.h>

#include "consul/response-t.h"
#include "lib/loop.h"

struct consul_watch_opts {
    const char *path;        /* "/v1/health/service/web" */
    const char *query;       /* extra escaped query ("tag=v2&dc=dc1") or NULL */
    int64_t wait_ms;         /* blocking wait; default 5 min */
    int64_t min_interval_ms; /* rate limit when the index does not move; default 1 s */
    int64_t min_gap_ms;      /* after a change, the next request waits until this long
                                  after the last one was sent (coalesces a burst of
                                  changes into one answer); 0 = none */
    int64_t backoff_min_ms;  /* default 500 ms */
    int64_t backoff_max_ms;  /* default 30 s */
    int stale;               /* add ?stale */
    int accept_404;          /* a 404 is an answer (KV keys), not an error */
};

/* A 200 (or accepted 404) whose index moved, or the first answer. */
typedef void (*consul_watch_fn)(const struct consul_response *r, void *arg);
/* Something went wrong or was reset; what is one stable line for a log. r
 * may be NULL. */
typedef void (*consul_watch_err_fn)(const struct consul_response *r, const char *what, void *arg);

struct consul_watch_stats {
    uint64_t requests, changes, errors, resets, dead_restarts;
};

struct consul_watch;

struct consul_watch *consul_watch_new(struct loop *l, consul_get_fn get, consul_cancel_fn cancel,
                                      void *ctx, const struct consul_watch_opts *o,
                                      consul_watch_fn on_change, consul_watch_err_fn on_error,
                                      void *arg, char *err, size_t errlen);
void consul_watch_start(struct consul_watch *w);
/* Called from on_change: the answer is unusable (its body could not be
 * decoded). Its index is not taken; the same data is asked for again after
 * a backoff (a garbled answer must not make the watch block past it). */
void consul_watch_reject(struct consul_watch *w);
/* A watch backing off after errors asks again now (the agent is back),
 * without an index, so its answer is delivered whether or not anything
 * changed; otherwise (or NULL) nothing. The backoff itself is kept. */
void consul_watch_retry(struct consul_watch *w);
void consul_watch_free(struct consul_watch *w);
uint64_t consul_watch_index(const struct consul_watch *w);
/* Changes min_gap_ms (e.g. with the size of what the watch brings back). */
void consul_watch_set_min_gap(struct consul_watch *w, int64_t min_gap_ms);
/* From on_change: the request after this answer waits rest_ms from now (on
 * top of min_gap). A watch whose answers are costly to take in rests as
 * long as the last one cost, so it spends at most half its time on them. */
void consul_watch_rest(struct consul_watch *w, int64_t rest_ms);
const struct consul_watch_stats *consul_watch_stats(const struct consul_watch *w);

#endif
