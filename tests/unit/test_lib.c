/* Unit tests for lib/: durations, buffers, jitter/backoff, the event loop
 * and async HTTP (against an in-process libmicrohttpd server). */
#include <check.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/dur.h"
#include "lib/fileio.h"
#include "lib/http.h"
#include "lib/jread.h"
#include "lib/jsonstr.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/queue.h"
#include "lib/rand.h"
#include "lib/strmap.h"
#include "tests/unit/unit.h"

/* ---- durations ----------------------------------------------------------- */

static const struct {
    const char *in;
    int ok;
    int64_t ms;
} dur_cases[] = {
    {"0", 1, 0},          {"10s", 1, 10000}, {"500ms", 1, 500}, {"1m30s", 1, 90000},
    {"1.5h", 1, 5400000}, {"-2s", 1, -2000}, {"300us", 1, 1},   {"2h45m", 1, 9900000},
    {"1000000ns", 1, 1},  {"10", 0, 0},      {"", 0, 0},        {"s", 0, 0},
    {"1x", 0, 0},         {"1.s", 1, 1000},  {".5s", 1, 500},   {"5 s", 0, 0},
    {"+", 0, 0},          {"1e3s", 0, 0},
};

START_TEST(test_dur_parses_go_durations)
{
    int64_t ms = 777;
    int rc = dur_parse_ms(dur_cases[_i].in, &ms);
    ck_assert_msg(rc == (dur_cases[_i].ok ? 0 : -1), "input %s", dur_cases[_i].in);
    if (dur_cases[_i].ok)
        ck_assert_int_eq(ms, dur_cases[_i].ms);
    else
        ck_assert_int_eq(ms, 777); /* untouched on failure */
}
END_TEST

START_TEST(test_dur_formats_like_go)
{
    char b[32];
    ck_assert_str_eq(dur_format_ms(0, b, sizeof b), "0s");
    ck_assert_str_eq(dur_format_ms(500, b, sizeof b), "500ms");
    ck_assert_str_eq(dur_format_ms(90000, b, sizeof b), "1m30s");
    ck_assert_str_eq(dur_format_ms(1500, b, sizeof b), "1.5s");
    ck_assert_str_eq(dur_format_ms(3600000, b, sizeof b), "1h0m0s");
    ck_assert_str_eq(dur_format_ms(-10000, b, sizeof b), "-10s");
    int64_t back;
    ck_assert_int_eq(dur_parse_ms(dur_format_ms(5432100, b, sizeof b), &back), 0);
    ck_assert_int_eq(back, 5432100);
}
END_TEST

/* ---- buffers ------------------------------------------------------------- */

START_TEST(test_buf_refuses_to_grow_past_its_cap)
{
    struct buf b;
    buf_init(&b, 10);
    ck_assert_int_eq(buf_puts(&b, "12345"), 0);
    ck_assert_int_eq(buf_puts(&b, "678901"), -1);
    ck_assert(b.overflow);
    ck_assert_str_eq(b.data, "12345"); /* left as it was */
    ck_assert_int_eq(buf_printf(&b, "%d", 12345), 0);
    ck_assert_str_eq(b.data, "1234512345");
    char *s = buf_steal(&b);
    ck_assert_str_eq(s, "1234512345");
    ck_assert_ptr_null(b.data);
    free(s);
    buf_free(&b);
}
END_TEST

/* ---- rand ---------------------------------------------------------------- */

START_TEST(test_backoff_is_capped_jittered_and_resets)
{
    struct backoff b;
    rand_seed_with(42);
    backoff_init(&b, 100, 2000);
    uint64_t seen_max = 0, prev_ceil = 100;
    for (int i = 0; i < 20; i++) {
        uint64_t d = backoff_next(&b);
        ck_assert_uint_ge(d, 50);
        ck_assert_uint_le(d, 2000);
        if (d > seen_max)
            seen_max = d;
        (void)prev_ceil;
    }
    ck_assert_uint_gt(seen_max, 1000); /* it does grow */
    backoff_reset(&b);
    ck_assert_uint_le(backoff_next(&b), 100);
    /* Jitter differs between draws: a fleet does not act in lock-step. */
    int differ = 0;
    uint64_t first = rand_jitter_up(10000, 1.0 / 16);
    for (int i = 0; i < 10; i++) {
        uint64_t j = rand_jitter_up(10000, 1.0 / 16);
        ck_assert_uint_ge(j, 10000);
        ck_assert_uint_lt(j, 10625);
        differ |= j != first;
    }
    ck_assert(differ);
}
END_TEST

/* ---- loop ---------------------------------------------------------------- */

static int order[8], norder;

static void record(void *arg)
{
    order[norder++] = (int)(intptr_t)arg;
}

START_TEST(test_loop_fires_timers_in_due_order)
{
    struct loop *l = loop_new();
    struct loop_timer *a = loop_timer_new(l, record, (void *)1);
    struct loop_timer *b = loop_timer_new(l, record, (void *)2);
    struct loop_timer *c = loop_timer_new(l, record, (void *)3);
    norder = 0;
    uint64_t t0 = loop_clock_ms();
    loop_timer_start(a, 30);
    loop_timer_start(b, 10);
    loop_timer_start(c, 20);
    loop_timer_stop(c);
    ck_assert(!loop_timer_active(c));
    while (norder < 2 && loop_clock_ms() - t0 < 2000)
        loop_run_once(l, 100);
    ck_assert_int_eq(norder, 2);
    ck_assert_int_eq(order[0], 2);
    ck_assert_int_eq(order[1], 1);
    ck_assert_uint_ge(loop_clock_ms() - t0, 30);
    loop_timer_free(a);
    loop_timer_free(b);
    loop_timer_free(c);
    loop_free(l);
}
END_TEST

static int fd_hits, hup_seen;

static void on_pipe(int fd, short revents, void *arg)
{
    struct loop *l = arg;
    char c;
    if (revents & POLLIN) {
        if (read(fd, &c, 1) == 1)
            fd_hits++;
        else
            hup_seen = 1;
    }
    if (revents & POLLHUP) {
        hup_seen = 1;
        loop_fd_unwatch(l, fd);
    }
}

START_TEST(test_loop_reports_readable_fds_and_hangups)
{
    struct loop *l = loop_new();
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    fd_hits = hup_seen = 0;
    loop_fd_watch(l, p[0], POLLIN, on_pipe, l);
    ck_assert_int_eq(write(p[1], "x", 1), 1);
    loop_run_once(l, 1000);
    ck_assert_int_eq(fd_hits, 1);
    close(p[1]);
    /* A closed writer must be reported (POLLHUP), not spin silently. */
    uint64_t wake0 = loop_wakeups(l);
    for (int i = 0; i < 5 && !hup_seen; i++)
        loop_run_once(l, 1000);
    ck_assert(hup_seen);
    ck_assert_uint_le(loop_wakeups(l) - wake0, 5);
    close(p[0]);
    loop_free(l);
}
END_TEST

static int got_signal;

static void on_usr1(int signo, void *arg)
{
    got_signal = signo;
    loop_stop(arg);
}

START_TEST(test_loop_delivers_signals_through_the_self_pipe)
{
    struct loop *l = loop_new();
    got_signal = 0;
    ck_assert_int_eq(loop_signal_watch(l, SIGUSR1, on_usr1, l), 0);
    raise(SIGUSR1);
    loop_run(l);
    ck_assert_int_eq(got_signal, SIGUSR1);
    signal(SIGUSR1, SIG_DFL);
    loop_free(l);
}
END_TEST

START_TEST(test_loop_idle_does_not_wake_up)
{
    struct loop *l = loop_new();
    uint64_t w0 = loop_wakeups(l);
    loop_run_once(l, 200); /* nothing registered: one wake-up at the limit */
    ck_assert_uint_eq(loop_wakeups(l) - w0, 1);
    loop_free(l);
}
END_TEST

/* ---- http ---------------------------------------------------------------- */

static char last_token[128], last_url[256];

static enum MHD_Result serve(void *cls, struct MHD_Connection *c, const char *url,
                             const char *method, const char *version, const char *upload,
                             size_t *upload_size, void **state)
{
    (void)cls;
    (void)method;
    (void)version;
    (void)upload;
    (void)state;
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    const char *tok = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Test-Token");
    snprintf(last_token, sizeof last_token, "%s", tok ? tok : "");
    snprintf(last_url, sizeof last_url, "%s", url);
    static char big[4096];
    memset(big, 'a', sizeof big);
    struct MHD_Response *r;
    if (strcmp(url, "/big") == 0)
        r = MHD_create_response_from_buffer(sizeof big, big, MHD_RESPMEM_PERSISTENT);
    else
        r = MHD_create_response_from_buffer(2, (void *)"ok", MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "X-Consul-Index", "42");
    enum MHD_Result ret = MHD_queue_response(c, strcmp(url, "/missing") ? 200 : 404, r);
    MHD_destroy_response(r);
    return ret;
}

static struct {
    long status;
    enum http_error err;
    char index[32];
    char body[64];
    int calls;
} res;

static void on_http(struct http_response *r, void *arg)
{
    res.calls++;
    res.status = r->status;
    res.err = r->err;
    if (!http_header(r, "x-consul-index", res.index, sizeof res.index))
        res.index[0] = '\0';
    snprintf(res.body, sizeof res.body, "%s", r->body.data ? r->body.data : "");
    loop_stop(arg);
}

static struct MHD_Daemon *start_server(int *port)
{
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
                                            NULL, NULL, serve, NULL, MHD_OPTION_END);
    ck_assert_ptr_nonnull(d);
    *port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    return d;
}

START_TEST(test_http_gets_status_body_and_headers)
{
    int port;
    struct MHD_Daemon *d = start_server(&port);
    struct loop *l = loop_new();
    char url[128], err[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/x", port);
    const char *hdrs[] = {"X-Test-Token: s3cret", NULL};
    struct http_request rq = {.url = url, .headers = hdrs, .timeout_ms = 5000};
    memset(&res, 0, sizeof res);
    ck_assert_ptr_nonnull(http_start(l, &rq, on_http, l, err, sizeof err));
    loop_run(l);
    ck_assert_int_eq(res.calls, 1);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(res.index, "42");
    ck_assert_str_eq(res.body, "ok");
    ck_assert_str_eq(last_token, "s3cret");
    ck_assert_str_eq(last_url, "/v1/x");
    ck_assert_int_eq(http_inflight(), 0);
    loop_free(l);
    MHD_stop_daemon(d);
}
END_TEST

START_TEST(test_http_refuses_bodies_over_the_cap)
{
    int port;
    struct MHD_Daemon *d = start_server(&port);
    struct loop *l = loop_new();
    char url[128], err[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/big", port);
    struct http_request rq = {.url = url, .max_body = 1000};
    memset(&res, 0, sizeof res);
    ck_assert_ptr_nonnull(http_start(l, &rq, on_http, l, err, sizeof err));
    loop_run(l);
    ck_assert_int_eq(res.err, HTTP_ERR_TOO_LARGE);
    ck_assert_int_eq(res.status, 0);
    /* A probe keeps the status and the first bytes instead (as Consul). */
    struct http_request rq2 = {.url = url, .max_body = 40, .truncate_body = 1};
    memset(&res, 0, sizeof res);
    ck_assert_ptr_nonnull(http_start(l, &rq2, on_http, l, err, sizeof err));
    loop_run(l);
    ck_assert_int_eq(res.err, HTTP_OK);
    ck_assert_int_eq(res.status, 200);
    ck_assert_uint_eq(strlen(res.body), 40);
    loop_free(l);
    MHD_stop_daemon(d);
}
END_TEST

START_TEST(test_http_reports_connection_refused)
{
    struct loop *l = loop_new();
    char err[128];
    /* A port we bound and closed: nothing listens there. */
    int port;
    struct MHD_Daemon *d = start_server(&port);
    MHD_stop_daemon(d);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    struct http_request rq = {.url = url};
    memset(&res, 0, sizeof res);
    ck_assert_ptr_nonnull(http_start(l, &rq, on_http, l, err, sizeof err));
    loop_run(l);
    ck_assert_int_eq(res.err, HTTP_ERR_CONNECT);
    loop_free(l);
}
END_TEST

static void never(struct http_response *r, void *arg)
{
    (void)r;
    (void)arg;
    ck_abort_msg("cancelled call must not call back");
}

START_TEST(test_http_cancel_never_calls_back)
{
    int port;
    struct MHD_Daemon *d = start_server(&port);
    struct loop *l = loop_new();
    char url[128], err[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    struct http_request rq = {.url = url};
    struct http_call *c = http_start(l, &rq, never, NULL, err, sizeof err);
    ck_assert_ptr_nonnull(c);
    loop_run_once(l, 10);
    http_cancel(c);
    ck_assert_int_eq(http_inflight(), 0);
    loop_run_once(l, 50);
    loop_free(l);
    MHD_stop_daemon(d);
}
END_TEST

START_TEST(test_http_escape_encodes_reserved_characters)
{
    char *e = http_escape("a b/c?d=e&f%");
    ck_assert_str_eq(e, "a%20b%2Fc%3Fd%3De%26f%25");
    free(e);
}
END_TEST

START_TEST(test_log_escapes_control_characters)
{
    char *mem = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&mem, &len);
    log_set_stream(f);
    log_setup(LOG_INFO, LOG_FORMAT_TEXT);
    log_debug("hidden");
    log_info("evil\nfake line \"q\"");
    log_setup(LOG_INFO, LOG_FORMAT_JSON);
    log_warn("x\"y");
    fclose(f);
    log_set_stream(NULL);
    log_setup(LOG_INFO, LOG_FORMAT_TEXT);
    ck_assert_ptr_null(strstr(mem, "hidden"));
    ck_assert_ptr_nonnull(strstr(mem, "[INFO] sidecar: evil\\nfake line \"q\"\n"));
    ck_assert_ptr_nonnull(
        strstr(mem, "{\"@level\":\"warn\",\"@message\":\"x\\\"y\",\"@module\":\"sidecar\""));
    /* Two lines exactly: the newline in the message did not forge a third. */
    int lines = 0;
    for (char *p = mem; *p; p++)
        lines += *p == '\n';
    ck_assert_int_eq(lines, 2);
    free(mem);
}
END_TEST

START_TEST(test_strmap_finds_every_key_across_growth_and_clear)
{
    struct strmap m = {0};
    char keys[3000][16];
    int added;
    for (size_t i = 0; i < 3000; i++) {
        snprintf(keys[i], sizeof keys[i], "svc-%zu", i);
        uint64_t *v = strmap_put(&m, keys[i], strlen(keys[i]), i, &added);
        ck_assert_ptr_nonnull(v);
        ck_assert_int_eq(added, 1);
    }
    ck_assert_uint_eq(m.n, 3000);
    ck_assert_uint_ge(m.cap, 6000);
    for (size_t i = 0; i < 3000; i++) {
        uint64_t *v = strmap_get(&m, keys[i], strlen(keys[i]));
        ck_assert_ptr_nonnull(v);
        ck_assert_uint_eq(*v, i);
    }
    /* A prefix, a longer key and an embedded NUL are other keys. */
    ck_assert_ptr_null(strmap_get(&m, "svc-1", 4));
    ck_assert_ptr_null(strmap_get(&m, "svc-10000", 9));
    ck_assert_ptr_null(strmap_get(&m, "svc-1\0", 6));
    /* An existing key keeps its value; it is not added twice. */
    ck_assert_uint_eq(*strmap_put(&m, "svc-7", 5, 99, &added), 7);
    ck_assert_int_eq(added, 0);
    ck_assert_uint_eq(m.n, 3000);
    struct strmap_slot *slots = m.slots;
    strmap_clear(&m);
    ck_assert_ptr_null(strmap_get(&m, "svc-7", 5));
    ck_assert_ptr_eq(m.slots, slots);                        /* kept for the next fill */
    ck_assert_uint_eq(*strmap_put(&m, "", 0, 5, &added), 5); /* the empty key */
    ck_assert_uint_eq(*strmap_get(&m, "", 0), 5);
    strmap_free(&m);
}
END_TEST

START_TEST(test_json_string_escapes_as_cjson_prints)
{
    struct buf b;
    buf_init(&b, 0);
    const char *in =
        "plain, then a long run of ordinary bytes \"q\" \\ \b\f\n\r\t \x01\x1f \xc3\xbc/";
    ck_assert_int_eq(buf_json_string(&b, in), 0);
    ck_assert_str_eq(b.data, "\"plain, then a long run of ordinary bytes \\\"q\\\" \\\\ "
                             "\\b\\f\\n\\r\\t \\u0001\\u001f \xc3\xbc/\"");
    cJSON *o = cJSON_CreateString(in);
    char *want = cJSON_PrintUnformatted(o);
    ck_assert_str_eq(b.data, want); /* byte for byte what cJSON prints */
    cJSON_free(want);
    cJSON_Delete(o);
    /* The run ends at the first byte a string cannot hold, whatever its
     * place in an eight-byte word, and at end. */
    const char *p = "0123456789abcdef\"";
    for (size_t cut = 0; cut <= 16; cut++)
        ck_assert_ptr_eq(json_plain_run(p, p + cut), p + cut);
    ck_assert_ptr_eq(json_plain_run(p, p + 17), p + 16);
    const char *q = "abcdefghij\x7f\x1e"; /* DEL is plain; 0x1e is not */
    ck_assert_ptr_eq(json_plain_run(q, q + 12), q + 11);
    buf_free(&b);
}
END_TEST

/* ---- settings as tables (jread_section) ------------------------------------- */

static int only_even(struct jread *c, const cJSON *v, const char *path)
{
    if (!cJSON_IsNumber(v) || (int)v->valuedouble % 2)
        return jread_fail(c, path, "must be even");
    return 0;
}

static const char *const tsec_modes[] = {"a", "b"};
static const char *const tsec_urls[] = {"http://", "https://"};
static const struct jkey tsec_inner[] = {
    {.name = "wait", .kind = JK_DUR, .min = 1000, .max = 60000, .why = "must be between 1s and 1m"},
    {.name = "grace", .kind = JK_NNDUR},
};
static const struct jkey tsec_keys[] = {
    {.name = "url", .kind = JK_STR, .why = "expected a URL", .values = tsec_urls, .n = 2},
    {.name = "name", .kind = JK_NESTR},
    {.name = "on", .kind = JK_BOOL},
    {.name = "n", .kind = JK_INT, .min = 1, .max = 8},
    {.name = "mode", .kind = JK_ENUM, .values = tsec_modes, .n = 2},
    {.name = "inner", .kind = JK_SECTION, .sub = tsec_inner, .n = 2},
    {.name = "even", .kind = JK_FN, .check = only_even},
};

/* in: a JSON document; want: "" when it passes, else the one-line error. */
static const struct {
    const char *in, *want;
} tsec_cases[] = {
    {"{\"url\": \"https://x\", \"name\": \"a\", \"on\": true, \"n\": 8, \"mode\": \"b\", "
     "\"inner\": {\"wait\": \"1m\", \"grace\": \"0s\"}, \"even\": 4}",
     ""},
    {"{}", ""},
    {"{\"n\": \"x\", \"bogus\": 1}", "f.json: unknown key \"bogus\""},
    {"{\"url\": \"ftp://x\"}", "f.json: url: expected a URL, got \"ftp://x\""},
    {"{\"name\": \"\"}", "f.json: name: must not be empty"},
    {"{\"n\": 9}", NULL},
    {"{\"inner\": {\"wait\": \"500ms\"}}", "f.json: inner.wait: must be between 1s and 1m"},
    {"{\"inner\": {\"nope\": 1}}", "f.json: inner: unknown key \"nope\""},
    {"{\"inner\": []}", NULL},
    {"{\"inner\": {\"grace\": \"-1s\"}}", NULL},
    {"{\"even\": 3}", "f.json: even: must be even"},
    {"{\"mode\": \"c\"}", NULL},
};

START_TEST(test_jread_section_walks_a_table_of_keys)
{
    char err[300] = "";
    struct jread c = {"f.json", err, sizeof err, 0};
    cJSON *doc = cJSON_Parse(tsec_cases[_i].in);
    ck_assert_ptr_nonnull(doc);
    int rc = jread_section(&c, doc, "", tsec_keys, sizeof tsec_keys / sizeof tsec_keys[0]);
    cJSON_Delete(doc);
    if (tsec_cases[_i].want && tsec_cases[_i].want[0] == '\0') {
        ck_assert_msg(rc == 0, "%s: %s", tsec_cases[_i].in, err);
        return;
    }
    ck_assert_int_eq(rc, -1);
    ck_assert_ptr_null(strchr(err, '\n'));
    if (tsec_cases[_i].want)
        ck_assert_str_eq(err, tsec_cases[_i].want);
    else /* the typed read's own wording: it names the file and the key */
        ck_assert_msg(strncmp(err, "f.json: ", 8) == 0 && strlen(err) > 12, "%s", err);
}
END_TEST

/* ---- capped file reads ------------------------------------------------------ */

START_TEST(test_file_read_capped_reads_whole_files_up_to_the_cap)
{
    char dir[] = "/tmp/cs-fileio.XXXXXX", path[64], *data = NULL;
    size_t len = 7;
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/f", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 10000; i++)
        fputc('a' + i % 26, f);
    fclose(f);
    ck_assert_int_eq(file_read_capped(path, 10000, &data, &len), FILE_READ_OK);
    ck_assert_uint_eq(len, 10000);
    ck_assert_int_eq(data[9999], 'a' + 9999 % 26);
    ck_assert_int_eq(data[10000], '\0');
    free(data);
    data = NULL;
    ck_assert_int_eq(file_read_capped(path, 9999, &data, &len), FILE_READ_TOO_BIG);
    ck_assert_ptr_null(data);
    ck_assert_int_eq(file_read_capped(dir, 100, &data, &len), FILE_READ_ERROR);
    unlink(path);
    ck_assert_int_eq(file_read_capped(path, 100, &data, &len), FILE_READ_MISSING);
    f = fopen(path, "w");
    fclose(f);
    ck_assert_int_eq(file_read_capped(path, 100, &data, &len), FILE_READ_OK);
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(data, "");
    free(data);
    unlink(path);
    rmdir(dir);
}
END_TEST

/* Parts of 1,000 bytes, numbered: fail_at stops with -1 at that part. */
struct parts {
    int next, last, fail_at;
};

static int fill_parts(void *arg, struct buf *b)
{
    struct parts *p = arg;
    if (p->next == p->fail_at)
        return -1;
    buf_printf(b, "%04d", p->next);
    for (int i = 4; i < 1000; i++)
        buf_puts(b, "x");
    return ++p->next < p->last;
}

/* A file written a part at a time (past several 64 kB flushes) reads back
 * whole and in order; a part that fails leaves the old file as it was. */
START_TEST(test_file_write_atomic_parts_streams_and_fails_whole)
{
    char dir[] = "/tmp/cs-fileio.XXXXXX", path[64], err[256], *data = NULL;
    size_t len = 0;
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/f", dir);
    struct parts p = {0, 300, -1};
    ck_assert_int_eq(file_write_atomic_parts(path, fill_parts, &p, 0600, err, sizeof err), 0);
    ck_assert_int_eq(file_read_capped(path, 1 << 20, &data, &len), FILE_READ_OK);
    ck_assert_uint_eq(len, 300000);
    for (int i = 0; i < 300; i++) {
        char want[8];
        snprintf(want, sizeof want, "%04d", i);
        ck_assert_int_eq(memcmp(data + i * 1000, want, 4), 0);
    }
    free(data);
    data = NULL;
    struct parts bad = {0, 300, 200}; /* fails after three flushes went out */
    ck_assert_int_eq(file_write_atomic_parts(path, fill_parts, &bad, 0600, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, path));
    ck_assert_int_eq(file_read_capped(path, 1 << 20, &data, &len), FILE_READ_OK);
    ck_assert_uint_eq(len, 300000); /* the old file, and no temporary left */
    free(data);
    unlink(path);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

struct qitem {
    int v;
    struct qlink link;
};

/* The values of q, in order, as "1 2 3"; checks n against the walk. */
static const char *qvalues(const struct queue *q, char *out, size_t len)
{
    size_t used = 0, n = 0;
    out[0] = '\0';
    QUEUE_EACH(l, q) {
        used += (size_t)snprintf(out + used, len - used, "%s%d", n ? " " : "",
                                 QUEUE_ITEM(l, struct qitem, link)->v);
        n++;
    }
    ck_assert_uint_eq(n, q->n);
    if (q->n)
        ck_assert_ptr_null(q->tail->next);
    else
        ck_assert_ptr_null(q->tail);
    return out;
}

static int qpick_odd(const struct qlink *l, void *arg)
{
    (void)arg;
    return QUEUE_CITEM(l, struct qitem, link)->v % 2;
}

START_TEST(test_queue_keeps_order_through_push_pop_remove_and_move)
{
    struct qitem it[6];
    struct queue q = QUEUE_INIT, to = QUEUE_INIT;
    char b[64];
    ck_assert_ptr_null(queue_pop(&q));
    for (int i = 0; i < 6; i++) {
        it[i].v = i + 1;
        queue_push(&q, &it[i].link);
    }
    ck_assert_str_eq(qvalues(&q, b, sizeof b), "1 2 3 4 5 6");
    ck_assert_int_eq(QUEUE_ITEM(queue_pop(&q), struct qitem, link)->v, 1);
    ck_assert_int_eq(queue_remove(&q, &it[5].link), 1); /* the tail */
    ck_assert_int_eq(queue_remove(&q, &it[5].link), 0); /* not there any more */
    ck_assert_str_eq(qvalues(&q, b, sizeof b), "2 3 4 5");
    queue_push(&q, &it[5].link); /* pushed after a tail removal */
    ck_assert_str_eq(qvalues(&q, b, sizeof b), "2 3 4 5 6");
    ck_assert_uint_eq(queue_move_if(&q, &to, qpick_odd, NULL, 1), 1);
    ck_assert_str_eq(qvalues(&to, b, sizeof b), "3");
    ck_assert_uint_eq(queue_move_if(&q, &to, qpick_odd, NULL, 10), 1);
    ck_assert_str_eq(qvalues(&to, b, sizeof b), "3 5");
    ck_assert_str_eq(qvalues(&q, b, sizeof b), "2 4 6");
    struct qlink *all = queue_take_all(&q);
    ck_assert_str_eq(qvalues(&q, b, sizeof b), "");
    int n = 0;
    for (; all; all = all->next)
        n++;
    ck_assert_int_eq(n, 3);
    while (queue_pop(&to))
        ;
    ck_assert_ptr_null(to.head);
    ck_assert_ptr_null(to.tail);
}
END_TEST

/* One table checks, stores and prints: defaults for absent keys, secrets
 * redacted, a negated bool, a section stored only when given. */
struct jsettings {
    int64_t wait_ms;
    int n, insecure, mode, given;
    char *token, *name;
};

static const char *const jmodes[] = {"auto", "fast"};
static const struct jkey jopt_keys[] = {
    {.name = "n",
     .kind = JK_INT,
     .min = 0,
     .max = 9,
     .store = JS_INT,
     .off = offsetof(struct jsettings, n),
     .def = 3},
};
static const struct jkey jtop_keys[] = {
    {.name = "wait",
     .kind = JK_DUR,
     .store = JS_MS,
     .off = offsetof(struct jsettings, wait_ms),
     .def = 5000},
    {.name = "token",
     .kind = JK_STR,
     .store = JS_STR,
     .off = offsetof(struct jsettings, token),
     .flags = JF_SECRET},
    {.name = "name",
     .kind = JK_STR,
     .store = JS_STR,
     .off = offsetof(struct jsettings, name),
     .defs = "x"},
    {.name = "verify",
     .kind = JK_BOOL,
     .store = JS_BOOL,
     .off = offsetof(struct jsettings, insecure),
     .def = 1,
     .flags = JF_NOT},
    {.name = "mode",
     .kind = JK_ENUM,
     .values = jmodes,
     .n = 2,
     .store = JS_ENUM,
     .off = offsetof(struct jsettings, mode)},
    {.name = "opt",
     .kind = JK_SECTION,
     .sub = jopt_keys,
     .n = 1,
     .store = JS_GIVEN,
     .off = offsetof(struct jsettings, given)},
};

static char *jprinted(const struct jsettings *st)
{
    cJSON *o = cJSON_CreateObject();
    jread_print(o, jtop_keys, 6, st);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

START_TEST(test_jread_table_stores_defaults_and_prints_redacted)
{
    struct jsettings st = {0};
    cJSON *empty = cJSON_Parse("{}");
    ck_assert_int_eq(jread_store(empty, jtop_keys, 6, &st), 0);
    char *p = jprinted(&st);
    ck_assert_str_eq(p, "{\"wait\":\"5s\",\"token\":null,\"name\":\"x\",\"verify\":true,"
                        "\"mode\":\"auto\"}");
    ck_assert_int_eq(st.n, 0); /* a section not given is not stored */
    free(p);
    free(st.name);
    cJSON *full = cJSON_Parse("{\"wait\":\"2m\",\"token\":\"s3cret\",\"name\":\"y\","
                              "\"verify\":false,\"mode\":\"fast\",\"opt\":{}}");
    char e[128];
    struct jread c = {"f.json", e, sizeof e, 0};
    ck_assert_int_eq(jread_section(&c, full, "", jtop_keys, 6), 0);
    memset(&st, 0, sizeof st);
    ck_assert_int_eq(jread_store(full, jtop_keys, 6, &st), 0);
    ck_assert_int_eq(st.wait_ms, 120000);
    ck_assert_str_eq(st.token, "s3cret");
    ck_assert_int_eq(st.insecure, 1);
    ck_assert_int_eq(st.n, 3); /* given, its default */
    p = jprinted(&st);
    ck_assert_str_eq(p, "{\"wait\":\"2m0s\",\"token\":\"<redacted>\",\"name\":\"y\","
                        "\"verify\":false,\"mode\":\"fast\",\"opt\":{\"n\":3}}");
    free(p);
    free(st.token);
    free(st.name);
    cJSON_Delete(empty);
    cJSON_Delete(full);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lib");
    TCase *t = tcase_create("core");
    tcase_add_loop_test(t, test_dur_parses_go_durations, 0,
                        (int)(sizeof dur_cases / sizeof dur_cases[0]));
    tcase_add_test(t, test_dur_formats_like_go);
    tcase_add_test(t, test_file_read_capped_reads_whole_files_up_to_the_cap);
    tcase_add_test(t, test_file_write_atomic_parts_streams_and_fails_whole);
    tcase_add_loop_test(t, test_jread_section_walks_a_table_of_keys, 0,
                        (int)(sizeof tsec_cases / sizeof tsec_cases[0]));
    tcase_add_test(t, test_jread_table_stores_defaults_and_prints_redacted);
    tcase_add_test(t, test_strmap_finds_every_key_across_growth_and_clear);
    tcase_add_test(t, test_queue_keeps_order_through_push_pop_remove_and_move);
    tcase_add_test(t, test_json_string_escapes_as_cjson_prints);
    tcase_add_test(t, test_buf_refuses_to_grow_past_its_cap);
    tcase_add_test(t, test_backoff_is_capped_jittered_and_resets);
    tcase_add_test(t, test_loop_fires_timers_in_due_order);
    tcase_add_test(t, test_loop_reports_readable_fds_and_hangups);
    tcase_add_test(t, test_loop_delivers_signals_through_the_self_pipe);
    tcase_add_test(t, test_loop_idle_does_not_wake_up);
    tcase_add_test(t, test_http_gets_status_body_and_headers);
    tcase_add_test(t, test_http_refuses_bodies_over_the_cap);
    tcase_add_test(t, test_http_reports_connection_refused);
    tcase_add_test(t, test_http_cancel_never_calls_back);
    tcase_add_test(t, test_http_escape_encodes_reserved_characters);
    tcase_add_test(t, test_log_escapes_control_characters);
    tcase_set_timeout(t, 20);
    suite_add_tcase(s, t);
    return unit_run(s);
}
