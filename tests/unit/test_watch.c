/* Unit tests for consul/watch.c: the blocking-query engine driven by a
 * scripted fake Consul on the real loop (indexes, waits, resets, rate
 * limits, backoff, restarts of a dead query). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/client.h"
#include "consul/watch.h"
#include "lib/loop.h"
#include "tests/unit/unit.h"

/* ---- the watch engine against a scripted fake Consul ---------------------- */

struct answer {
    long status;
    int has_index;
    uint64_t index;
    enum http_error err;
};

struct fake {
    struct loop *loop;
    struct answer script[64];
    int n_script, next;
    char paths[64][256];
    long timeouts[64];
    int n_requests;
    consul_done_fn fn;
    void *arg;
    struct loop_timer *timer;
    int changes, errors, backwards;
    uint64_t last_change_index;
    uint64_t reject_index; /* on_change rejects the answer of this index */
    int64_t rest_ms;       /* on_change asks the watch to rest this long */
    struct consul_watch *w;
};

static struct consul_call *fake_call = (struct consul_call *)0x1;

static void fake_deliver(void *arg)
{
    struct fake *f = arg;
    struct answer a = f->script[f->next < f->n_script ? f->next : f->n_script - 1];
    f->next++;
    struct consul_response r = {.status = a.status,
                                .err = a.err,
                                .body = "[]",
                                .body_len = 2,
                                .has_index = a.has_index,
                                .index = a.index,
                                .known_leader = 1,
                                .last_contact_ms = 0,
                                .error = a.err ? "simulated" : NULL};
    f->fn(&r, f->arg);
}

static struct consul_call *fake_get(void *ctx, const char *pq, long timeout_ms, int blocking,
                                    consul_done_fn fn, void *arg, char *err, size_t errlen)
{
    struct fake *f = ctx;
    (void)blocking;
    (void)err;
    (void)errlen;
    if (f->n_requests < 64) {
        snprintf(f->paths[f->n_requests], sizeof f->paths[0], "%s", pq);
        f->timeouts[f->n_requests] = timeout_ms;
    }
    f->n_requests++;
    f->fn = fn;
    f->arg = arg;
    loop_timer_start(f->timer, 0);
    return fake_call;
}

static void fake_cancel(void *ctx, struct consul_call *call)
{
    struct fake *f = ctx;
    (void)call;
    loop_timer_stop(f->timer);
}

static void on_change(const struct consul_response *r, void *arg)
{
    struct fake *f = arg;
    if (f->reject_index && r->index == f->reject_index) {
        consul_watch_reject(f->w);
        return;
    }
    f->changes++;
    f->last_change_index = r->index;
    if (f->rest_ms)
        consul_watch_rest(f->w, f->rest_ms);
}

static void on_error(const struct consul_response *r, const char *what, void *arg)
{
    struct fake *f = arg;
    (void)r;
    f->errors++;
    if (strstr(what, "went backwards"))
        f->backwards++;
}

static struct consul_watch *fake_watch_with(struct fake *f, const struct consul_watch_opts *o)
{
    char err[128];
    memset(f, 0, sizeof *f);
    f->loop = loop_new();
    f->timer = loop_timer_new(f->loop, fake_deliver, f);
    f->w = consul_watch_new(f->loop, fake_get, fake_cancel, f, o, on_change, on_error, f, err,
                            sizeof err);
    return f->w;
}

static struct consul_watch *fake_watch(struct fake *f, int64_t min_interval_ms)
{
    struct consul_watch_opts o = {.path = "/v1/health/service/web",
                                  .query = "tag=v1",
                                  .wait_ms = 60000,
                                  .min_interval_ms = min_interval_ms,
                                  .backoff_min_ms = 10,
                                  .backoff_max_ms = 80};
    return fake_watch_with(f, &o);
}

static void run_until(struct fake *f, int requests, uint64_t max_ms)
{
    uint64_t t0 = loop_clock_ms();
    while (f->n_requests < requests && loop_clock_ms() - t0 < max_ms)
        loop_run_once(f->loop, 20);
}

/* Runs the loop for ms, polling every step ms. */
static void run_for(struct fake *f, uint64_t ms, int step)
{
    uint64_t t0 = loop_clock_ms();
    while (loop_clock_ms() - t0 < ms)
        loop_run_once(f->loop, step);
}

/* A server whose index moves on every answer: 10, 11, 12, ... */
static void script_rising(struct fake *f)
{
    for (int i = 0; i < 64; i++)
        f->script[i] = (struct answer){200, 1, (uint64_t)(10 + i), HTTP_OK};
    f->n_script = 64;
}

/* A watch on a server whose index moves on every answer, with min_gap
 * and a rest that on_change asks for. */
static struct consul_watch *rising_watch(struct fake *f, int64_t min_gap_ms, int64_t rest_ms)
{
    struct consul_watch_opts o = {.path = "/v1/health/state/any",
                                  .wait_ms = 60000,
                                  .min_interval_ms = 1000,
                                  .min_gap_ms = min_gap_ms,
                                  .backoff_min_ms = 10,
                                  .backoff_max_ms = 80};
    struct consul_watch *w = fake_watch_with(f, &o);
    script_rising(f);
    f->rest_ms = rest_ms;
    return w;
}

/* Started, w asks about once per 100 ms over a second, not hundreds. */
static void expect_one_per_100ms(struct fake *f, struct consul_watch *w)
{
    consul_watch_start(w);
    run_for(f, 1000, 5);
    ck_assert_int_le(f->n_requests, 12);
    ck_assert_int_ge(f->n_requests, 8);
}

static void fake_free(struct fake *f, struct consul_watch *w)
{
    consul_watch_free(w);
    loop_timer_free(f->timer);
    loop_free(f->loop);
}

START_TEST(test_watch_sends_index_and_wait_and_times_out_after_wait_plus_jitter)
{
    struct fake f;
    struct consul_watch *w = fake_watch(&f, 1000);
    f.script[0] = (struct answer){200, 1, 10, HTTP_OK};
    f.script[1] = (struct answer){200, 1, 11, HTTP_OK};
    f.n_script = 2;
    consul_watch_start(w);
    run_until(&f, 3, 2000);
    ck_assert_str_eq(f.paths[0], "/v1/health/service/web?tag=v1");
    ck_assert_ptr_nonnull(strstr(f.paths[1], "?tag=v1&index=10&wait="));
    ck_assert_ptr_nonnull(strstr(f.paths[2], "index=11&wait="));
    /* wait (jittered by 5%) + wait/16 + a 5 s margin */
    ck_assert_int_ge(f.timeouts[1], 57000 + 57000 / 16 + 5000);
    ck_assert_int_le(f.timeouts[1], 63000 + 63000 / 16 + 5000);
    ck_assert_int_eq(f.changes, 2);
    fake_free(&f, w);
}
END_TEST

START_TEST(test_watch_resets_index_when_it_goes_backwards)
{
    struct fake f;
    struct consul_watch *w = fake_watch(&f, 1000);
    f.script[0] = (struct answer){200, 1, 50, HTTP_OK};
    f.script[1] = (struct answer){200, 1, 7, HTTP_OK};
    f.script[2] = (struct answer){200, 1, 8, HTTP_OK};
    f.n_script = 3;
    consul_watch_start(w);
    run_until(&f, 4, 3000);
    ck_assert_int_eq(f.backwards, 1);
    ck_assert_str_eq(f.paths[2], "/v1/health/service/web?tag=v1"); /* back to index 0 */
    ck_assert_int_eq(f.last_change_index, 8);
    fake_free(&f, w);
}
END_TEST

START_TEST(test_watch_never_blocks_on_zero)
{
    struct fake f;
    struct consul_watch *w = fake_watch(&f, 1000);
    f.script[0] = (struct answer){200, 1, 0, HTTP_OK};
    f.n_script = 1;
    consul_watch_start(w);
    run_until(&f, 2, 2000);
    ck_assert_ptr_nonnull(strstr(f.paths[1], "index=1&"));
    fake_free(&f, w);
}
END_TEST

START_TEST(test_watch_does_not_report_an_unchanged_index_and_rate_limits_requeries)
{
    struct fake f;
    struct consul_watch *w = fake_watch(&f, 100);
    f.script[0] = (struct answer){200, 1, 9, HTTP_OK};
    f.n_script = 1; /* the server answers at once with the same index, forever */
    consul_watch_start(w);
    run_for(&f, 1000, 20);
    ck_assert_int_eq(f.changes, 1);
    /* burst 2 + one per 100 ms over one second: no busy loop */
    ck_assert_int_le(f.n_requests, 14);
    ck_assert_int_ge(f.n_requests, 5);
    fake_free(&f, w);
}
END_TEST

/* min_gap: a server whose index moves on every answer (a burst of changes)
 * is asked at most once per gap, measured from the previous request (so a
 * change after a long blocking wait is asked about again at once). */
START_TEST(test_watch_min_gap_coalesces_a_burst_of_changes)
{
    struct fake f;
    struct consul_watch *w = rising_watch(&f, 100, 0);
    expect_one_per_100ms(&f, w);
    fake_free(&f, w);
}
END_TEST

/* A rest asked for from on_change holds the next request that long after
 * the answer, whatever min_gap says; asked for no more, the watch asks at
 * once again. */
START_TEST(test_watch_rests_as_long_as_on_change_asks)
{
    struct fake f;
    struct consul_watch *w = rising_watch(&f, 0, 100);
    expect_one_per_100ms(&f, w);
    int before = f.n_requests;
    f.rest_ms = 0;
    run_until(&f, before + 20, 300);
    ck_assert_int_ge(f.n_requests, before + 20); /* the fake answers at once: so does it */
    fake_free(&f, w);
}
END_TEST

START_TEST(test_watch_without_index_header_is_delivered_and_not_busy_looped)
{
    struct fake f;
    struct consul_watch *w = fake_watch(&f, 100);
    f.script[0] = (struct answer){200, 0, 0, HTTP_OK};
    f.n_script = 1;
    consul_watch_start(w);
    run_for(&f, 500, 20);
    ck_assert_int_ge(f.changes, 1);
    ck_assert_int_le(f.n_requests, 9);
    for (int i = 0; i < f.n_requests && i < 64; i++)
        ck_assert_ptr_null(strstr(f.paths[i], "index="));
    fake_free(&f, w);
}
END_TEST

START_TEST(test_watch_backs_off_on_errors_and_never_gives_up)
{
    struct fake f;
    struct consul_watch *w = fake_watch(&f, 1000);
    for (int i = 0; i < 8; i++)
        f.script[i] = (struct answer){500, 1, 3, HTTP_OK};
    f.script[8] = (struct answer){0, 0, 0, HTTP_ERR_CONNECT};
    f.script[9] = (struct answer){200, 1, 4, HTTP_OK};
    f.n_script = 10;
    consul_watch_start(w);
    run_until(&f, 11, 5000);
    ck_assert_int_ge(f.errors, 9);
    ck_assert_int_eq(f.changes, 1);
    ck_assert_int_eq(f.last_change_index, 4);
    fake_free(&f, w);
}
END_TEST

/* A garbled body under an index (a proxy in between, a torn answer): the
 * index is not taken, so the data of that index is asked for again rather
 * than blocked past (a change would be missed until the next one). */
START_TEST(test_watch_rejected_answer_does_not_advance_the_index)
{
    struct fake f;
    struct consul_watch *w = fake_watch(&f, 1000);
    f.reject_index = 999999;
    f.script[0] = (struct answer){200, 1, 10, HTTP_OK};
    f.script[1] = (struct answer){200, 1, 999999, HTTP_OK};
    f.script[2] = (struct answer){200, 1, 12, HTTP_OK};
    f.n_script = 3;
    consul_watch_start(w);
    run_until(&f, 4, 3000);
    ck_assert_ptr_nonnull(strstr(f.paths[2], "index=10&")); /* asked again from 10 */
    ck_assert_ptr_nonnull(strstr(f.paths[3], "index=12&"));
    ck_assert_int_eq(f.changes, 2);
    ck_assert_int_eq(f.last_change_index, 12);
    fake_free(&f, w);
}
END_TEST

/* consul_watch_retry: a watch waiting out its backoff asks at once; one
 * that is fine is left alone. */
START_TEST(test_watch_retry_skips_the_backoff)
{
    struct fake f;
    struct consul_watch_opts o = {.path = "/v1/health/service/web",
                                  .wait_ms = 60000,
                                  .backoff_min_ms = 60000,
                                  .backoff_max_ms = 60000};
    struct consul_watch *w = fake_watch_with(&f, &o);
    f.script[0] = (struct answer){200, 1, 5, HTTP_OK};
    f.script[1] = (struct answer){0, 0, 0, HTTP_ERR_CONNECT};
    f.script[2] = (struct answer){200, 1, 5, HTTP_OK}; /* nothing changed meanwhile */
    f.n_script = 3;
    consul_watch_start(w);
    run_until(&f, 3, 300);
    ck_assert_int_eq(f.n_requests, 2); /* backing off for 30-60 s */
    consul_watch_retry(w);
    ck_assert_int_eq(f.n_requests, 3);
    ck_assert_str_eq(f.paths[2], "/v1/health/service/web"); /* afresh, no index */
    loop_run_once(f.loop, 20);
    ck_assert_int_eq(f.changes, 2); /* delivered though the index did not move */
    int before = f.n_requests;
    consul_watch_retry(w); /* healthy (a long-poll in flight): nothing */
    ck_assert_int_eq(f.n_requests, before);
    fake_free(&f, w);
}
END_TEST

START_TEST(test_watch_restarts_a_dead_blocking_query)
{
    struct fake f;
    struct consul_watch *w = fake_watch(&f, 1000);
    f.script[0] = (struct answer){200, 1, 5, HTTP_OK};
    f.script[1] = (struct answer){0, 0, 0, HTTP_ERR_TIMEOUT};
    f.script[2] = (struct answer){200, 1, 6, HTTP_OK};
    f.n_script = 3;
    consul_watch_start(w);
    run_until(&f, 4, 3000);
    ck_assert_uint_eq(consul_watch_stats(w)->dead_restarts, 1);
    ck_assert_ptr_nonnull(strstr(f.paths[2], "index=5&")); /* same index, reissued */
    ck_assert_int_eq(f.last_change_index, 6);
    fake_free(&f, w);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("watch");
    TCase *t = tcase_create("core");
    tcase_add_test(t, test_watch_sends_index_and_wait_and_times_out_after_wait_plus_jitter);
    tcase_add_test(t, test_watch_resets_index_when_it_goes_backwards);
    tcase_add_test(t, test_watch_never_blocks_on_zero);
    tcase_add_test(t, test_watch_rejected_answer_does_not_advance_the_index);
    tcase_add_test(t, test_watch_retry_skips_the_backoff);
    tcase_add_test(t, test_watch_does_not_report_an_unchanged_index_and_rate_limits_requeries);
    tcase_add_test(t, test_watch_without_index_header_is_delivered_and_not_busy_looped);
    tcase_add_test(t, test_watch_min_gap_coalesces_a_burst_of_changes);
    tcase_add_test(t, test_watch_rests_as_long_as_on_change_asks);
    tcase_add_test(t, test_watch_backs_off_on_errors_and_never_gives_up);
    tcase_add_test(t, test_watch_restarts_a_dead_blocking_query);
    tcase_set_timeout(t, 30);
    suite_add_tcase(s, t);
    return unit_run(s);
}
