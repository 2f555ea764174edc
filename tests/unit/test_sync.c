/* Unit tests for sidecar/sync.c's decisions, on the real loop and Consul
 * client: an in-process fake of /v1/health/service whose answer the test
 * sets, and a fake proxy driver that keeps its targets in memory and
 * counts the reads and applies the sync asks of it. */
#include <check.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "consul/client.h"
#include "lib/loop.h"
#include "proxy/proxy.h"
#include "sidecar/sync.h"
#include "tests/unit/unit.h"

/* ---- the fake Consul -------------------------------------------------------- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t moved;
    uint64_t index;
    char body[2048];
    int status;      /* what it answers with: 200, or a failure */
    int arrivals;    /* requests come in so far */
    int requests;    /* answered so far */
    int plain_reads; /* answered without ?index (not a long-poll) */
    int bad_answers; /* answered with status != 200 or garbage */
} C = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 1, "[]", 200, 0, 0, 0, 0};

#define INST(id, port)                                                               \
    "{\"Node\":{\"Node\":\"n1\",\"Address\":\"10.0.0.1\"},\"Service\":{\"ID\":\"" id \
    "\",\"Address\":\"10.0.0.1\",\"Port\":" #port ",\"Weights\":{\"Passing\":1,"     \
    "\"Warning\":1}},\"Checks\":[{\"Status\":\"passing\"}]}"
#define TWO "[" INST("a", 8001) "," INST("b", 8002) "]"
#define ONE "[" INST("a", 8001) "]"

/* The next answer: body at a new index, answered with status. */
static void consul_says(int status, const char *body)
{
    pthread_mutex_lock(&C.mu);
    C.status = status;
    snprintf(C.body, sizeof C.body, "%s", body);
    C.index++;
    pthread_cond_broadcast(&C.moved);
    pthread_mutex_unlock(&C.mu);
}

static int consul_count(const int *what)
{
    pthread_mutex_lock(&C.mu);
    int n = *what;
    pthread_mutex_unlock(&C.mu);
    return n;
}

/* A long-poll at the current index waits (at most 1 s here) for a change. */
static void park(const char *index)
{
    uint64_t asked = index ? strtoull(index, NULL, 10) : 0;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 1;
    while (asked && C.index <= asked)
        if (pthread_cond_timedwait(&C.moved, &C.mu, &dl) != 0)
            break;
}

static enum MHD_Result serve(void *cls, struct MHD_Connection *c, const char *url,
                             const char *method, const char *version, const char *upload,
                             size_t *upload_size, void **state)
{
    static int first;
    (void)cls, (void)method, (void)version, (void)upload;
    if (*state == NULL) {
        *state = &first;
        return MHD_YES;
    }
    *upload_size = 0;
    const char *index = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "index");
    pthread_mutex_lock(&C.mu);
    C.arrivals++;
    if (strncmp(url, "/v1/health/service/", 19) == 0)
        park(index);
    char body[2048], idx[32];
    int status = strncmp(url, "/v1/health/service/", 19) == 0 ? C.status : 404;
    snprintf(body, sizeof body, "%s", status == 200 ? C.body : "boom");
    snprintf(idx, sizeof idx, "%llu", (unsigned long long)C.index);
    C.requests++;
    C.plain_reads += index == NULL;
    C.bad_answers += status != 200 || body[0] != '[';
    pthread_mutex_unlock(&C.mu);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "X-Consul-Index", idx);
    MHD_add_response_header(r, "X-Consul-Knownleader", "true");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- the fake proxy --------------------------------------------------------- */

struct fake {
    struct proxy base;
    struct proxy_target_set set;
    int reads, applies, fail_applies;
    struct loop_timer *timer; /* reports the call below from the loop */
    int doing;                /* 0 nothing, 1 a read, 2 an apply */
    int ok;
    proxy_read_fn rfn;
    proxy_apply_fn afn;
    void *arg;
    struct proxy_op_result *results;
    size_t n;
};

static void fake_report(void *arg)
{
    struct fake *f = arg;
    int doing = f->doing;
    f->doing = 0;
    if (doing == 1)
        f->rfn(&f->set, NULL, f->arg);
    else if (doing == 2)
        f->afn(f->ok, f->results, f->n, f->ok ? NULL : "refused", f->arg);
}

static int fake_read(struct proxy *p, const char *upstream, proxy_read_fn fn, void *arg, char *err,
                     size_t errlen)
{
    struct fake *f = (struct fake *)p;
    (void)upstream, (void)err, (void)errlen;
    ck_assert_int_eq(f->doing, 0); /* one call at a time for one upstream */
    f->reads++;
    f->doing = 1;
    f->rfn = fn;
    f->arg = arg;
    loop_timer_start(f->timer, 0);
    return 0;
}

static ssize_t find_target(const struct proxy_target_set *s, const struct proxy_target *t)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->items[i].host, t->host) == 0 && s->items[i].port == t->port)
            return (ssize_t)i;
    return -1;
}

static void apply_op(struct proxy_target_set *s, const struct proxy_op *op)
{
    ssize_t i = find_target(s, &op->target);
    if (op->kind == PROXY_OP_ADD && i < 0) {
        s->items = realloc(s->items, (s->n + 1) * sizeof *s->items);
        s->items[s->n] = op->target;
        s->items[s->n++].host = strdup(op->target.host);
    } else if (op->kind == PROXY_OP_REMOVE && i >= 0) {
        free(s->items[i].host);
        s->items[i] = s->items[--s->n];
    } else if (op->kind == PROXY_OP_SET_WEIGHT && i >= 0) {
        s->items[i].weight = op->target.weight;
    }
}

static int fake_apply(struct proxy *p, const char *upstream, const struct proxy_op *ops, size_t n,
                      const struct proxy_target_set *desired, proxy_apply_fn fn, void *arg,
                      char *err, size_t errlen)
{
    struct fake *f = (struct fake *)p;
    (void)upstream, (void)desired, (void)err, (void)errlen;
    ck_assert_int_eq(f->doing, 0);
    f->applies++;
    f->ok = f->fail_applies == 0;
    if (f->fail_applies > 0)
        f->fail_applies--;
    free(f->results);
    f->results = calloc(n ? n : 1, sizeof *f->results);
    f->n = n;
    for (size_t i = 0; i < n; i++) {
        f->results[i].ok = f->ok;
        if (f->ok)
            apply_op(&f->set, &ops[i]);
    }
    f->doing = 2;
    f->afn = fn;
    f->arg = arg;
    loop_timer_start(f->timer, 0);
    return 0;
}

static void fake_free(struct proxy *p)
{
    struct fake *f = (struct fake *)p;
    loop_timer_free(f->timer);
    proxy_target_set_free(&f->set);
    free(f->results);
    free(f);
}

static const struct proxy_ops fake_ops = {"fake", fake_read, fake_apply, fake_free, 0, NULL};

/* ---- one sync against both fakes -------------------------------------------- */

static struct {
    struct MHD_Daemon *d;
    struct loop *l;
    struct consul_client *c;
    struct sync *s;
    struct fake *p; /* owned by s */
} T;

static void setup(int64_t hold_down_ms, int writer)
{
    char addr[64], err[256];
    pthread_mutex_lock(&C.mu);
    snprintf(C.body, sizeof C.body, "%s", TWO);
    C.status = 200;
    C.index++;
    C.arrivals = C.requests = C.plain_reads = C.bad_answers = 0;
    pthread_mutex_unlock(&C.mu);
    T.d = unit_server(serve, addr, sizeof addr);
    T.l = loop_new();
    struct consul_client_opts co = {.address = addr};
    T.c = consul_client_new(T.l, &co, err, sizeof err);
    ck_assert_msg(T.c != NULL, "%s", err);
    struct sync_opts so = {
        .loop = T.l,
        .consul = T.c,
        .watch = {.wait_ms = 1000,
                  .quiescence_min_ms = 10,
                  .quiescence_max_ms = 50,
                  .hold_down_ms = hold_down_ms,
                  .max_blocking = 8,
                  .max_streams = 100,
                  .mode = SYNC_MODE_STREAMS},
    };
    T.s = sync_new(&so, err, sizeof err);
    ck_assert_msg(T.s != NULL, "%s", err);
    T.p = calloc(1, sizeof *T.p);
    T.p->base.ops = &fake_ops;
    T.p->base.loop = T.l;
    T.p->timer = loop_timer_new(T.l, fake_report, T.p);
    ck_assert_int_eq(sync_add_proxy(T.s, "fake", &T.p->base), 0);
    struct sync_upstream_spec sp = {.name = "orders", .service = "orders", .proxy = "fake"};
    ck_assert_msg(sync_add_upstream(T.s, &sp, err, sizeof err) == 0, "%s", err);
    sync_set_writer(T.s, "fake", writer);
    sync_start(T.s);
}

static void teardown(void)
{
    sync_free(T.s);
    consul_client_free(T.c);
    loop_free(T.l);
    MHD_stop_daemon(T.d);
}

/* The proxy's targets as "host:port=weight ..." in port order. */
static const char *targets(char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (int port = 8000; port < 8010; port++) {
        for (size_t i = 0; i < T.p->set.n; i++)
            if (T.p->set.items[i].port == port)
                used += (size_t)snprintf(out + used, len - used, "%s%s:%d=%d", used ? " " : "",
                                         T.p->set.items[i].host, port, T.p->set.items[i].weight);
    }
    return out;
}

static int targets_are(const char *want)
{
    char b[256];
    return strcmp(targets(b, sizeof b), want) == 0;
}

/* The suite's loop turned until cond holds or ms pass (unit.h). */
#define RUN_UNTIL(ms, cond) UNIT_RUN_UNTIL(T.l, ms, cond)

#define BOTH "10.0.0.1:8001=1 10.0.0.1:8002=1"

START_TEST(test_sync_applies_a_change_once_and_nothing_while_unchanged)
{
    setup(0, 1);
    RUN_UNTIL(3000, targets_are(BOTH) && sync_settled(T.s));
    ck_assert(targets_are(BOTH));
    ck_assert_int_eq(T.p->applies, 1); /* both adds in one apply */
    /* The same instances at a new index (another service moved): taken,
     * and the proxy is not even read. */
    int reads = T.p->reads, arrivals = consul_count(&C.arrivals);
    consul_says(200, TWO);
    RUN_UNTIL(3000, consul_count(&C.arrivals) > arrivals); /* the next long-poll */
    ck_assert_int_gt(consul_count(&C.arrivals), arrivals);
    ck_assert_int_eq(T.p->reads, reads);
    ck_assert_int_eq(T.p->applies, 1);
    /* One instance leaves: exactly one more apply. */
    consul_says(200, ONE);
    RUN_UNTIL(3000, targets_are("10.0.0.1:8001=1"));
    ck_assert(targets_are("10.0.0.1:8001=1"));
    ck_assert_int_eq(T.p->applies, 2);
    teardown();
}
END_TEST

START_TEST(test_sync_garbage_or_errors_from_consul_change_nothing)
{
    setup(0, 1);
    RUN_UNTIL(3000, targets_are(BOTH) && sync_settled(T.s));
    int bad = consul_count(&C.bad_answers);
    consul_says(200, "<html>not JSON</html>");
    RUN_UNTIL(3000, consul_count(&C.bad_answers) >= bad + 2); /* asked again after it */
    consul_says(500, "");
    RUN_UNTIL(5000, consul_count(&C.bad_answers) >= bad + 4);
    ck_assert_int_ge(consul_count(&C.bad_answers), bad + 4);
    ck_assert(targets_are(BOTH));
    ck_assert_int_eq(T.p->applies, 1);
    /* Sense again: the change made meanwhile is applied. */
    consul_says(200, ONE);
    RUN_UNTIL(5000, targets_are("10.0.0.1:8001=1"));
    ck_assert(targets_are("10.0.0.1:8001=1"));
    teardown();
}
END_TEST

START_TEST(test_sync_a_failed_apply_is_read_again_and_retried)
{
    setup(0, 1);
    T.p->fail_applies = 2;
    RUN_UNTIL(10000, targets_are(BOTH) && sync_settled(T.s));
    ck_assert(targets_are(BOTH));
    ck_assert_int_eq(T.p->applies, 3);
    ck_assert_int_ge(T.p->reads, 3); /* each retry reads the proxy first */
    char why[300];
    ck_assert(sync_healthy(T.s, why, sizeof why));
    teardown();
}
END_TEST

START_TEST(test_sync_a_standby_never_touches_the_proxy_until_it_writes)
{
    setup(0, 0);
    /* Two answers taken while standing by (the first and a change). */
    RUN_UNTIL(3000, consul_count(&C.requests) >= 2);
    consul_says(200, ONE);
    RUN_UNTIL(3000, consul_count(&C.requests) >= 3);
    ck_assert_int_ge(consul_count(&C.requests), 3);
    ck_assert_int_eq(T.p->reads, 0);
    ck_assert_int_eq(T.p->applies, 0);
    sync_set_writer(T.s, "fake", 1);
    RUN_UNTIL(3000, targets_are("10.0.0.1:8001=1"));
    ck_assert(targets_are("10.0.0.1:8001=1")); /* the latest answer, not the first */
    ck_assert_int_eq(T.p->applies, 1);
    teardown();
}
END_TEST

START_TEST(test_sync_an_empty_answer_is_held_then_confirmed_by_a_fresh_read)
{
    setup(300, 1);
    RUN_UNTIL(3000, targets_are(BOTH) && sync_settled(T.s));
    int plain = consul_count(&C.plain_reads);
    uint64_t t0 = loop_clock_ms();
    consul_says(200, "[]");
    /* Held: nothing removed for the hold-down (300 ms), then only after a
     * plain read has confirmed it. */
    RUN_UNTIL(3000, targets_are(""));
    ck_assert(targets_are(""));
    ck_assert_uint_ge(loop_clock_ms() - t0, 300);
    ck_assert_int_gt(consul_count(&C.plain_reads), plain);
    ck_assert_int_eq(T.p->applies, 2);
    teardown();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sync");
    TCase *t = tcase_create("core");
    tcase_add_test(t, test_sync_applies_a_change_once_and_nothing_while_unchanged);
    tcase_add_test(t, test_sync_garbage_or_errors_from_consul_change_nothing);
    tcase_add_test(t, test_sync_a_failed_apply_is_read_again_and_retried);
    tcase_add_test(t, test_sync_a_standby_never_touches_the_proxy_until_it_writes);
    tcase_add_test(t, test_sync_an_empty_answer_is_held_then_confirmed_by_a_fresh_read);
    tcase_set_timeout(t, 60);
    suite_add_tcase(s, t);
    return unit_run(s);
}
