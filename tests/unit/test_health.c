/* Unit tests for health/ttl.c (when to feed a TTL check) and lib/metrics.c
 * (Prometheus text rendering). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "lib/unconst.h"
#include "health/probe.h"
#include "health/ttl.h"
#include "lib/loop.h"
#include "lib/metrics.h"
#include "lib/rand.h"
#include "tests/unit/unit.h"

/* ---- probes against a scripted HTTP server ----------------------------------- */

static int script_status[16];
static int n_script, served;

static enum MHD_Result serve_script(void *cls, struct MHD_Connection *c, const char *url,
                                    const char *method, const char *version, const char *upload,
                                    size_t *upload_size, void **state)
{
    (void)cls, (void)url, (void)method, (void)version, (void)upload, (void)upload_size;
    (void)state;
    int st = script_status[served < n_script ? served : n_script - 1];
    served++;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(2, (void *)"ok", MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)st, r);
    MHD_destroy_response(r);
    return ret;
}

static char reports[16][16];
static int n_reports;

static void on_probe(const char *status, const char *output, void *arg)
{
    (void)output, (void)arg;
    if (n_reports < 16)
        snprintf(reports[n_reports], sizeof reports[0], "%s", status);
    n_reports++;
}

/* Runs a probe over a script of HTTP statuses (one per interval) and
 * returns what it reported, joined with spaces. */
static const char *probe_over(const int *statuses, int n, int succ, int fail_warn, int fail_crit)
{
    static char out[256];
    memcpy(script_status, statuses, (size_t)n * sizeof *statuses);
    n_script = n;
    served = 0;
    n_reports = 0;
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                                            serve_script, NULL, MHD_OPTION_END);
    ck_assert_ptr_nonnull(d);
    char url[64], err[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/health",
             MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port);
    struct loop *l = loop_new();
    struct probe_spec spec = {.kind = PROBE_HTTP,
                              .target = url,
                              .interval_ms = 10,
                              .timeout_ms = 1000,
                              .success_before_passing = succ,
                              .failures_before_warning = fail_warn,
                              .failures_before_critical = fail_crit};
    struct probe *p = probe_new(l, &spec, on_probe, NULL, err, sizeof err);
    ck_assert_msg(p != NULL, "%s", err);
    probe_start(p);
    uint64_t t0 = loop_clock_ms();
    while (served < n && loop_clock_ms() - t0 < 5000)
        loop_run_once(l, 5);
    while (loop_clock_ms() - t0 < 5000 && n_reports < 16) {
        /* let the last answer be judged */
        int before = served;
        loop_run_once(l, 5);
        if (served > before)
            break;
    }
    probe_free(p);
    loop_free(l);
    MHD_stop_daemon(d);
    out[0] = '\0';
    for (int i = 0; i < n_reports && i < 16; i++)
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", i ? " " : "", reports[i]);
    return out;
}

/* A TCP probe passes only when the port accepts: a refused port, or a
 * target that cannot even be resolved, is critical (never "fails open"). */
static const char *tcp_probe_once(const char *target)
{
    n_reports = 0;
    char err[128];
    struct loop *l = loop_new();
    struct probe_spec spec = {
        .kind = PROBE_TCP, .target = unconst(target), .interval_ms = 1000, .timeout_ms = 500};
    struct probe *p = probe_new(l, &spec, on_probe, NULL, err, sizeof err);
    ck_assert_msg(p != NULL, "%s", err);
    probe_start(p);
    uint64_t t0 = loop_clock_ms();
    while (n_reports == 0 && loop_clock_ms() - t0 < 3000)
        loop_run_once(l, 20);
    probe_free(p);
    loop_free(l);
    return n_reports ? reports[0] : "none";
}

START_TEST(test_tcp_probe_passes_only_when_the_port_accepts)
{
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                                            serve_script, NULL, MHD_OPTION_END);
    ck_assert_ptr_nonnull(d);
    char open_port[64], closed_port[64];
    int port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    snprintf(open_port, sizeof open_port, "127.0.0.1:%d", port);
    script_status[0] = 200;
    n_script = 1;
    ck_assert_str_eq(tcp_probe_once(open_port), "passing");
    MHD_stop_daemon(d);
    snprintf(closed_port, sizeof closed_port, "127.0.0.1:%d", port); /* now closed */
    ck_assert_str_eq(tcp_probe_once(closed_port), "critical");
    ck_assert_str_eq(tcp_probe_once("no-such-host.invalid:80"), "critical");
}
END_TEST

START_TEST(test_probe_thresholds_are_consul_s)
{
    /* failures_before_critical 3: two failures keep passing, the third
     * turns it critical; success_before_passing 2: one success is not
     * enough to come back. */
    static const int a[] = {200, 500, 500, 500, 200, 200};
    ck_assert_str_eq(probe_over(a, 6, 2, 0, 3), "passing critical passing");
    /* failures_before_warning 1 < failures_before_critical 2: warning first. */
    static const int b[] = {200, 503, 503};
    ck_assert_str_eq(probe_over(b, 3, 0, 1, 2), "passing warning critical");
    /* 429 is warning, and counts as a success toward success_before_passing. */
    static const int c[] = {500, 429, 429, 200};
    ck_assert_str_eq(probe_over(c, 4, 2, 0, 0), "critical warning passing");
}
END_TEST

START_TEST(test_ttl_sends_first_result_and_changes_at_once)
{
    struct ttl_feeder f;
    ttl_feeder_init(&f, 10000);
    ck_assert(ttl_should_send(&f, 1000, "passing", "ok"));
    ttl_mark_sent(&f, 1000, "passing", "ok");
    ck_assert(!ttl_should_send(&f, 1001, "passing", "ok"));
    ck_assert(ttl_should_send(&f, 1001, "critical", "ok"));
    ck_assert(ttl_should_send(&f, 1001, "passing", "different output"));
}
END_TEST

START_TEST(test_ttl_refreshes_before_it_lapses_and_not_more)
{
    struct ttl_feeder f;
    rand_seed_with(7);
    ttl_feeder_init(&f, 10000);
    ttl_mark_sent(&f, 0, "passing", "ok");
    uint64_t due = ttl_next_deadline(&f);
    ck_assert_uint_ge(due, 4000); /* about TTL/2 (jittered by a fifth) ... */
    ck_assert_uint_le(due, 6000);
    ck_assert(!ttl_should_send(&f, due - 1, "passing", "ok"));
    ck_assert(ttl_should_send(&f, due, "passing", "ok"));
    /* Count sends over a minute of unchanged results: one per ~TTL/2. */
    int sends = 0;
    ttl_feeder_init(&f, 10000);
    for (uint64_t t = 0; t < 60000; t += 100)
        if (ttl_should_send(&f, t, "passing", "ok")) {
            ttl_mark_sent(&f, t, "passing", "ok");
            sends++;
        }
    ck_assert_int_ge(sends, 10);
    ck_assert_int_le(sends, 15);
    /* The refresh is spread over TTL/2 ±20 %, not bunched near TTL/2: a
     * fleet started together must not keep refreshing together. */
    uint64_t lo = UINT64_MAX, hi = 0;
    for (unsigned seed = 1; seed <= 200; seed++) {
        rand_seed_with(seed);
        ttl_feeder_init(&f, 10000);
        ttl_mark_sent(&f, 0, "passing", "ok");
        due = ttl_next_deadline(&f);
        lo = due < lo ? due : lo;
        hi = due > hi ? due : hi;
    }
    ck_assert_uint_lt(lo, 4500);
    ck_assert_uint_gt(hi, 5500);
    /* A short TTL still refreshes at least 1 s early... or at half. */
    ttl_feeder_init(&f, 1500);
    ttl_mark_sent(&f, 0, "passing", "ok");
    ck_assert_uint_le(ttl_next_deadline(&f), 800);
}
END_TEST

START_TEST(test_ttl_retries_failed_sends_before_the_ttl)
{
    struct ttl_feeder f;
    ttl_feeder_init(&f, 8000);
    ttl_mark_failed(&f, 100);
    uint64_t r = ttl_next_deadline(&f);
    ck_assert_uint_gt(r, 100);
    ck_assert_uint_le(r, 100 + 2000);
    ck_assert(!ttl_should_send(&f, 100, "passing", "ok"));
    ck_assert(ttl_should_send(&f, r, "passing", "ok"));
    ttl_feeder_reset(&f);
    ck_assert(ttl_should_send(&f, 0, "passing", "ok"));
}
END_TEST

START_TEST(test_metrics_render_valid_text_with_escaped_labels)
{
    struct metrics *m = metrics_new();
    struct metrics_counter *c =
        metrics_counter(m, "cs_calls_total", "Calls \\ by \"result\"", "result");
    struct metrics_gauge *g = metrics_gauge(m, "cs_targets", "Targets", "upstream");
    double b[] = {0.01, 0.1, 1};
    struct metrics_histogram *h = metrics_histogram(m, "cs_latency_seconds", "Latency", NULL, b, 3);
    ck_assert_ptr_null(metrics_counter(m, "bad name", "x", NULL));
    ck_assert_ptr_null(metrics_gauge(m, "cs_calls_total", "x", NULL)); /* another type */
    metrics_counter_inc(c, "ok", 2);
    metrics_counter_inc(c, "a\"b\nc", 1);
    metrics_gauge_set(g, "orders", 3);
    metrics_histogram_observe(h, NULL, 0.005);
    metrics_histogram_observe(h, NULL, 0.5);
    metrics_histogram_observe(h, NULL, 5);
    struct buf out;
    buf_init(&out, 0);
    ck_assert_int_eq(metrics_render(m, &out), 0);
    const char *t = out.data;
    ck_assert_ptr_nonnull(strstr(
        t, "# HELP cs_calls_total Calls \\\\ by \"result\"\n# TYPE cs_calls_total counter\n"));
    ck_assert_ptr_nonnull(strstr(t, "cs_calls_total{result=\"ok\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "cs_calls_total{result=\"a\\\"b\\nc\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(t, "cs_targets{upstream=\"orders\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(t, "cs_latency_seconds_bucket{le=\"0.01\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(t, "cs_latency_seconds_bucket{le=\"1\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "cs_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(t, "cs_latency_seconds_count 3\n"));
    ck_assert_ptr_nonnull(strstr(t, "cs_latency_seconds_sum 5.505\n"));
    buf_free(&out);
    metrics_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("health");
    TCase *t = tcase_create("core");
    tcase_add_test(t, test_ttl_sends_first_result_and_changes_at_once);
    tcase_add_test(t, test_probe_thresholds_are_consul_s);
    tcase_add_test(t, test_tcp_probe_passes_only_when_the_port_accepts);
    tcase_add_test(t, test_ttl_refreshes_before_it_lapses_and_not_more);
    tcase_add_test(t, test_ttl_retries_failed_sends_before_the_ttl);
    tcase_add_test(t, test_metrics_render_valid_text_with_escaped_labels);
    suite_add_tcase(s, t);
    return unit_run(s);
}
