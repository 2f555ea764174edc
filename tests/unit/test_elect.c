/* Unit tests for sidecar/elect.c on the real loop and Consul client,
 * against an in-process fake of the endpoints the lock recipe uses, whose
 * answers the test holds back to put the election where it wants. */
#include <check.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "consul/client.h"
#include "lib/loop.h"
#include "sidecar/elect.h"
#include "tests/unit/unit.h"

#define KEY "consul-sidecar/dc1/kong-writer"

/* What the fake saw, in its own clock (ms). */
static struct {
    pthread_mutex_t mu;
    int64_t hold_acquire_ms; /* how long an acquire is held back */
    int acquires, renews;
    uint64_t acquire_answered;  /* when the first acquire was answered */
    uint64_t first_renew_after; /* the first renew after that; 0 none */
    int acquired;
} F = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0, 0};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, const char *body)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)(uintptr_t)body,
                                                             MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "X-Consul-Index", "5");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* The key as the lock recipe reads it: held by s-1 once acquired. */
static enum MHD_Result kv_read(struct MHD_Connection *c)
{
    const char *index = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "index");
    if (index && strcmp(index, "5") == 0) {
        struct timespec ts = {0, 300 * 1000000L}; /* a short blocking wait */
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&F.mu);
    int held = F.acquired;
    pthread_mutex_unlock(&F.mu);
    if (!held)
        return answer(c, 404, "");
    return answer(c, 200,
                  "[{\"Key\":\"" KEY "\",\"Session\":\"s-1\",\"Value\":\"bjE=\","
                  "\"LockIndex\":1,\"Flags\":0,\"CreateIndex\":5,\"ModifyIndex\":5}]");
}

static enum MHD_Result serve(void *cls, struct MHD_Connection *c, const char *url,
                             const char *method, const char *version, const char *upload,
                             size_t *upload_size, void **state)
{
    static int first;
    if (*state == NULL) {
        *state = &first;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(url, "/v1/session/create") == 0)
        return answer(c, 200, "{\"ID\":\"s-1\"}");
    if (strcmp(url, "/v1/session/renew/s-1") == 0) {
        pthread_mutex_lock(&F.mu);
        F.renews++;
        if (F.acquire_answered && !F.first_renew_after)
            F.first_renew_after = mono_ms();
        pthread_mutex_unlock(&F.mu);
        return answer(c, 200, "[{\"ID\":\"s-1\",\"TTL\":\"2s\"}]");
    }
    if (strcmp(url, "/v1/kv/" KEY) == 0 && strcmp(method, "PUT") == 0) {
        pthread_mutex_lock(&F.mu);
        int64_t hold = F.acquires++ == 0 ? F.hold_acquire_ms : 0;
        pthread_mutex_unlock(&F.mu);
        struct timespec ts = {hold / 1000, (hold % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&F.mu);
        if (!F.acquire_answered)
            F.acquire_answered = mono_ms();
        F.acquired = 1;
        pthread_mutex_unlock(&F.mu);
        return answer(c, 200, "true");
    }
    if (strcmp(url, "/v1/kv/" KEY) == 0)
        return kv_read(c);
    return answer(c, 404, "");
}

static void on_change(int is_writer, const char *holder, void *arg)
{
    (void)is_writer;
    (void)holder;
    (void)arg;
}

/* A renew falls due while the session's only call slot is taken by the
 * first acquire (held back past TTL/2). It must go out once the acquire is
 * answered: a renew skipped then was never re-armed, the session deadline
 * ran out and the new writer gave the lock up (fixed in ab76ace). */
START_TEST(test_a_renew_due_during_an_acquire_goes_right_after_it)
{
    F.hold_acquire_ms = 1500; /* TTL 2 s: the renew is due at about 1 s */
    char addr[64], err[256];
    struct MHD_Daemon *d = unit_server(serve, addr, sizeof addr);
    struct loop *l = loop_new();
    struct consul_client_opts co = {.address = addr};
    struct consul_client *c = consul_client_new(l, &co, err, sizeof err);
    ck_assert_ptr_nonnull(c);
    struct elect_opts eo = {
        .loop = l,
        .consul = c,
        .what = "kong",
        .key = KEY,
        .node = "n1",
        .session_ttl_ms = 2000,
        .lock_delay_ms = 0,
        .wait_ms = 1000,
        .on_change = on_change,
    };
    struct elect *e = elect_new(&eo, err, sizeof err);
    ck_assert_msg(e != NULL, "%s", err);
    elect_start(e);
    /* Until a renew came after the acquire's answer, or 5 s more. */
    uint64_t end = mono_ms() + 8000;
    for (;;) {
        pthread_mutex_lock(&F.mu);
        uint64_t answered = F.acquire_answered, renewed = F.first_renew_after;
        pthread_mutex_unlock(&F.mu);
        if (renewed || mono_ms() > end || (answered && mono_ms() > answered + 5000))
            break;
        loop_run_once(l, 50);
    }
    ck_assert_msg(F.acquire_answered != 0, "the acquire was never answered");
    ck_assert_msg(F.first_renew_after != 0,
                  "no renew after the acquire was answered (renews before it: %d)", F.renews);
    ck_assert_uint_lt(F.first_renew_after - F.acquire_answered, 1000);
    ck_assert(elect_is_writer(e));
    elect_free(e);
    consul_client_free(c);
    loop_free(l);
    MHD_stop_daemon(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("elect");
    TCase *t = tcase_create("core");
    tcase_add_test(t, test_a_renew_due_during_an_acquire_goes_right_after_it);
    tcase_set_timeout(t, 30);
    suite_add_tcase(s, t);
    return unit_run(s);
}
