/* Unit tests for sidecar/registrar.c's decisions, on the real loop and
 * Consul client, against the Consul double (its agent node-1): what is
 * written, and that nothing is written while nothing changed. */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/agent.h"
#include "consul/client.h"
#include "consul/servicedef.h"
#include "lib/loop.h"
#include "sidecar/registrar.h"
#include "tests/unit/unit.h"
#include "tests/unit/unit_double.h"

static struct {
    struct unit_double d;
    struct loop *l;
    struct consul_client *c;
    struct registrar *r;
    struct consul_service svcs[2];
    size_t n;
} T;

static void build(struct consul_service *svc, const char *json)
{
    char err[256];
    struct jread c = {"test", err, sizeof err, 0};
    cJSON *in = cJSON_Parse(json);
    struct svc_build b = {&c, "node-1", svc, NULL};
    ck_assert_msg(servicedef_build(&b, in, "service") == 0, "%s", err);
    cJSON_Delete(in);
}

static void setup(int64_t resync_ms)
{
    char err[256];
    memset(&T, 0, sizeof T);
    unit_double_start(&T.d);
    T.l = loop_new();
    struct consul_client_opts co = {.address = T.d.agent};
    T.c = consul_client_new(T.l, &co, err, sizeof err);
    ck_assert_msg(T.c != NULL, "%s", err);
    struct registrar_opts ro = {
        .loop = T.l,
        .consul = T.c,
        .node = "node-1",
        .resync_ms = resync_ms,
        .drain_ms = 100,
    };
    T.r = registrar_new(&ro);
    build(&T.svcs[0], "{\"Name\":\"web\",\"ID\":\"web-1\",\"Port\":8080,"
                      "\"Check\":{\"CheckID\":\"web-ttl\",\"TTL\":\"10m\"}}");
    build(&T.svcs[1], "{\"Name\":\"api\",\"ID\":\"api-1\",\"Port\":9090,\"Tags\":[\"v1\"]}");
    T.n = 2;
    ck_assert_int_eq(registrar_set_services(T.r, T.svcs, T.n), 0);
    registrar_start(T.r);
}

static void teardown(void)
{
    registrar_free(T.r);
    consul_client_free(T.c);
    loop_free(T.l);
    for (size_t i = 0; i < T.n; i++)
        consul_service_free(&T.svcs[i]);
    unit_double_stop(&T.d);
}

/* The agent's own view of a service (GET /v1/agent/service/ID), or NULL. */
static char *agent_service(const char *id)
{
    char url[160];
    long status;
    snprintf(url, sizeof url, "http://%s/v1/agent/service/%s", T.d.agent, id);
    char *b = unit_http("GET", url, NULL, &status);
    if (status != 200) {
        free(b);
        return NULL;
    }
    return b;
}

static int agent_has(const char *id, const char *needle)
{
    char *b = agent_service(id);
    int yes = b && strstr(b, needle) != NULL;
    free(b);
    return yes;
}

#define RUN_UNTIL(ms, cond) UNIT_RUN_UNTIL(T.l, ms, cond)

/* Anti-entropy rounds the registrar has begun since the log was cleared. */
static int rounds(void)
{
    return unit_double_count(&T.d, "GET", "/v1/agent/checks");
}

static int registered(void)
{
    char why[256];
    return registrar_healthy(T.r, why, sizeof why);
}

START_TEST(test_registrar_registers_once_then_quiet_rounds_write_nothing)
{
    setup(200);
    RUN_UNTIL(5000,
              registered() && agent_has("web-1", "\"Port\":8080") && agent_has("api-1", "\"v1\""));
    ck_assert(agent_has("web-1", "\"Port\":8080"));
    ck_assert(agent_has("api-1", "\"v1\""));
    ck_assert_int_eq(unit_double_count(&T.d, "PUT", "/v1/agent/service/register"), 2);
    unit_double_clear_log(&T.d);
    RUN_UNTIL(5000, rounds() >= 3);
    ck_assert_int_ge(rounds(), 3);
    ck_assert_int_eq(unit_double_count(&T.d, "PUT", "/"), 0); /* compared, not rewritten */
    teardown();
}
END_TEST

START_TEST(test_registrar_repairs_only_what_the_agent_lost_or_changed)
{
    setup(200);
    RUN_UNTIL(5000, registered() && agent_has("api-1", "\"v1\""));
    unit_double_clear_log(&T.d);
    /* The agent lost one service; someone re-registered the other with
     * another port. */
    unit_double_agent_put(&T.d, "/v1/agent/service/deregister/web-1", NULL);
    unit_double_agent_put(&T.d, "/v1/agent/service/register",
                          "{\"Name\":\"api\",\"ID\":\"api-1\",\"Port\":1,\"Tags\":[\"v1\"]}");
    RUN_UNTIL(5000, agent_has("web-1", "\"Port\":8080") && agent_has("api-1", "\"Port\":9090"));
    ck_assert(agent_has("web-1", "\"Port\":8080"));
    ck_assert(agent_has("api-1", "\"Port\":9090"));
    /* Two repairs (the test's own two PUTs are in the log too), and then
     * quiet again. */
    ck_assert_int_eq(unit_double_count(&T.d, "PUT", "/v1/agent/service/register"), 3);
    int before = rounds();
    RUN_UNTIL(5000, rounds() >= before + 2);
    ck_assert_int_eq(unit_double_count(&T.d, "PUT", "/v1/agent/service/register"), 3);
    teardown();
}
END_TEST

START_TEST(test_registrar_sends_a_ttl_result_only_when_it_changes)
{
    setup(60000);
    RUN_UNTIL(5000, registered());
    ck_assert(registered());
    unit_double_clear_log(&T.d);
    registrar_check_result(T.r, "web-ttl", "passing", "ok");
    RUN_UNTIL(3000, unit_double_count(&T.d, "PUT", "/v1/agent/check/update/web-ttl") >= 1);
    registrar_check_result(T.r, "web-ttl", "passing", "ok"); /* the same: not sent */
    registrar_check_result(T.r, "web-ttl", "critical", "down");
    RUN_UNTIL(3000, unit_double_count(&T.d, "PUT", "/v1/agent/check/update/web-ttl") >= 2);
    ck_assert_int_eq(unit_double_count(&T.d, "PUT", "/v1/agent/check/update/web-ttl"), 2);
    ck_assert(agent_has("web-1", "web"));
    char url[160];
    snprintf(url, sizeof url, "http://%s/v1/agent/checks", T.d.agent);
    char *checks = unit_http("GET", url, NULL, NULL);
    ck_assert_ptr_nonnull(
        strstr(checks, "\"Status\":\"critical\",\"Notes\":\"\",\"Output\":\"down\""));
    free(checks);
    teardown();
}
END_TEST

static void on_done(void *arg)
{
    *(int *)arg = 1;
}

START_TEST(test_registrar_shutdown_goes_to_maintenance_then_deregisters)
{
    setup(60000);
    RUN_UNTIL(5000, registered());
    unit_double_clear_log(&T.d);
    int done = 0;
    registrar_shutdown(T.r, 1, on_done, &done);
    RUN_UNTIL(5000, done);
    ck_assert(done);
    ck_assert_int_eq(unit_double_count(&T.d, "PUT", "/v1/agent/service/maintenance/"), 2);
    ck_assert_int_eq(unit_double_count(&T.d, "PUT", "/v1/agent/service/deregister/"), 2);
    ck_assert_ptr_null(agent_service("web-1"));
    ck_assert_ptr_null(agent_service("api-1"));
    teardown();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("registrar");
    TCase *t = tcase_create("core");
    tcase_add_test(t, test_registrar_registers_once_then_quiet_rounds_write_nothing);
    tcase_add_test(t, test_registrar_repairs_only_what_the_agent_lost_or_changed);
    tcase_add_test(t, test_registrar_sends_a_ttl_result_only_when_it_changes);
    tcase_add_test(t, test_registrar_shutdown_goes_to_maintenance_then_deregisters);
    tcase_set_timeout(t, 60);
    suite_add_tcase(s, t);
    return unit_run(s);
}
