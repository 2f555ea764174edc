/* Unit tests for sidecar/clusterview.c on the real loop and Consul client,
 * against the Consul double's cluster (three servers, agent node-1): what
 * it reports and logs as the leader and the members change, each event
 * logged once. */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/client.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "sidecar/clusterview.h"
#include "tests/unit/unit.h"
#include "tests/unit/unit_double.h"

static struct {
    struct unit_double d;
    struct loop *l;
    struct consul_client *c;
    struct clusterview *cv;
    char *logbuf;
    size_t loglen;
    FILE *log;
} T;

static void setup(void)
{
    char err[256];
    memset(&T, 0, sizeof T);
    unit_double_start(&T.d);
    T.log = open_memstream(&T.logbuf, &T.loglen);
    log_set_stream(T.log);
    T.l = loop_new();
    struct consul_client_opts co = {.address = T.d.agent};
    T.c = consul_client_new(T.l, &co, err, sizeof err);
    ck_assert_msg(T.c != NULL, "%s", err);
    T.cv = clusterview_new(T.l, T.c, NULL, 2000, 200, err, sizeof err);
    ck_assert_msg(T.cv != NULL, "%s", err);
    clusterview_start(T.cv);
}

static void teardown(void)
{
    clusterview_free(T.cv);
    consul_client_free(T.c);
    loop_free(T.l);
    log_set_stream(stderr);
    fclose(T.log);
    free(T.logbuf);
    unit_double_stop(&T.d);
}

/* The view as /status shows it, compact. */
static char *view(void)
{
    cJSON *o = cJSON_CreateObject();
    clusterview_status_json(T.cv, o);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int view_has(const char *needle)
{
    char *v = view();
    int yes = strstr(v, needle) != NULL;
    free(v);
    return yes;
}

/* How many log lines so far contain needle. */
static int logged(const char *needle)
{
    fflush(T.log);
    int n = 0;
    for (const char *p = T.logbuf; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

#define RUN_UNTIL(ms, cond) UNIT_RUN_UNTIL(T.l, ms, cond)

/* Runs the loop for n more polls of the leader (the view's clock). */
static void polls(int n)
{
    int before = unit_double_count(&T.d, "GET", "/v1/status/leader");
    RUN_UNTIL(5000, unit_double_count(&T.d, "GET", "/v1/status/leader") >= before + n);
    ck_assert_int_ge(unit_double_count(&T.d, "GET", "/v1/status/leader"), before + n);
}

START_TEST(test_clusterview_follows_the_leader_and_logs_each_change_once)
{
    setup();
    RUN_UNTIL(5000, view_has("\"leader\":\"10.0.0.1:8300\"") && view_has("\"node-1\"") &&
                        view_has("\"10.0.0.3:8300\"]"));
    ck_assert(view_has("\"leader\":\"10.0.0.1:8300\""));
    ck_assert(view_has("\"peers\":[\"10.0.0.1:8300\",\"10.0.0.2:8300\",\"10.0.0.3:8300\"]"));
    unit_double_control(&T.d, "/leader", "{\"leader\":\"server-2\"}");
    RUN_UNTIL(5000, view_has("\"leader\":\"10.0.0.2:8300\""));
    ck_assert(view_has("\"leader\":\"10.0.0.2:8300\""));
    unit_double_control(&T.d, "/leader", "{\"leader\":\"\"}");
    RUN_UNTIL(5000, view_has("\"leader\":\"\""));
    ck_assert(view_has("\"leader\":\"\""));
    polls(3); /* still no leader: not logged again */
    ck_assert_int_eq(logged("[WARN] sidecar: No cluster leader"), 1);
    unit_double_control(&T.d, "/leader", "{\"leader\":\"server-3\"}");
    RUN_UNTIL(5000, view_has("\"leader\":\"10.0.0.3:8300\""));
    polls(3);
    ck_assert_int_eq(logged("New leader elected: 10.0.0.1:8300"), 1);
    ck_assert_int_eq(logged("New leader elected: 10.0.0.2:8300"), 1);
    ck_assert_int_eq(logged("New leader elected: 10.0.0.3:8300"), 1);
    teardown();
}
END_TEST

START_TEST(test_clusterview_reports_members_failing_and_leaving)
{
    setup();
    RUN_UNTIL(5000, view_has("{\"name\":\"server-3\",\"addr\":\"10.0.0.3\",\"status\":\"alive\"}"));
    ck_assert(view_has("{\"name\":\"server-3\",\"addr\":\"10.0.0.3\",\"status\":\"alive\"}"));
    unit_double_control(&T.d, "/members/server-3", "{\"status\":\"failed\"}");
    RUN_UNTIL(5000, view_has("\"server-3\",\"addr\":\"10.0.0.3\",\"status\":\"failed\""));
    ck_assert(view_has("\"server-3\",\"addr\":\"10.0.0.3\",\"status\":\"failed\""));
    polls(3);
    ck_assert_int_eq(logged("member 'server-3' failed"), 1);
    unit_double_control(&T.d, "/members/server-3", "{\"status\":\"left\"}");
    RUN_UNTIL(5000, view_has("\"server-3\",\"addr\":\"10.0.0.3\",\"status\":\"left\"") ||
                        !view_has("\"server-3\""));
    polls(2);
    ck_assert_int_eq(logged("member 'server-3' left"), 1);
    ck_assert_int_eq(logged("member 'server-3' failed"), 1);
    teardown();
}
END_TEST

/* The peers change only with the servers: read once, then again only
 * after something changed, never at every poll. */
START_TEST(test_clusterview_reads_the_peers_only_after_a_change)
{
    setup();
    RUN_UNTIL(5000, view_has("\"peers\":[\"10.0.0.1:8300\""));
    polls(4);
    ck_assert_int_eq(unit_double_count(&T.d, "GET", "/v1/status/peers"), 1);
    unit_double_control(&T.d, "/leader", "{\"leader\":\"server-2\"}");
    RUN_UNTIL(5000, unit_double_count(&T.d, "GET", "/v1/status/peers") >= 2);
    polls(3);
    ck_assert_int_eq(unit_double_count(&T.d, "GET", "/v1/status/peers"), 2);
    unit_double_control(&T.d, "/members/server-3", "{\"status\":\"failed\"}");
    RUN_UNTIL(5000, unit_double_count(&T.d, "GET", "/v1/status/peers") >= 3);
    polls(3);
    ck_assert_int_eq(unit_double_count(&T.d, "GET", "/v1/status/peers"), 3);
    teardown();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("clusterview");
    TCase *t = tcase_create("core");
    tcase_add_test(t, test_clusterview_follows_the_leader_and_logs_each_change_once);
    tcase_add_test(t, test_clusterview_reports_members_failing_and_leaving);
    tcase_add_test(t, test_clusterview_reads_the_peers_only_after_a_change);
    tcase_set_timeout(t, 60);
    suite_add_tcase(s, t);
    return unit_run(s);
}
