/* Unit tests for consul/: decoders (fixtures from the Consul API spec and
 * hostile inputs), address and index parsing, the client's connection
 * budget and drift detection. The blocking-query engine: test_watch.c. */
#include <check.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/agent.h"
#include "consul/client.h"
#include "consul/decode.h"
#include "lib/loop.h"
#include "tests/unit/unit.h"

static char *fixture(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/consul/%s", name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "missing fixture %s", path);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strdup(buf);
}

/* ---- decoders ------------------------------------------------------------ */

START_TEST(test_decode_health_service_fixture)
{
    char *body = fixture("health_service.json"), err[256];
    struct consul_instances in = {0};
    ck_assert_int_eq(consul_decode_health_service(body, strlen(body), 0, &in, err, sizeof err), 0);
    ck_assert_uint_ge(in.n, 1);
    for (size_t i = 0; i < in.n; i++) {
        ck_assert_int_ne(in.items[i].health, CONSUL_CRITICAL); /* critical never included */
        ck_assert_int_gt(in.items[i].port, 0);
        ck_assert_ptr_nonnull(in.items[i].address);
    }
    consul_instances_free(&in);
    free(body);
}
END_TEST

START_TEST(test_decode_health_service_uses_node_address_when_service_has_none)
{
    const char *b =
        "[{\"Node\":{\"Node\":\"n1\",\"Address\":\"10.0.0.9\"},"
        "\"Service\":{\"ID\":\"w1\",\"Address\":\"\",\"Port\":80,\"Weights\":{\"Passing\":3,\"Warning\":1}},"
        "\"Checks\":[{\"Status\":\"passing\"}]},"
        "{\"Node\":{\"Node\":\"n2\",\"Address\":\"10.0.0.8\"},"
        "\"Service\":{\"ID\":\"w2\",\"Address\":\"10.1.1.1\",\"Port\":81,\"Weights\":{\"Passing\":3,\"Warning\":1}},"
        "\"Checks\":[{\"Status\":\"passing\"},{\"Status\":\"warning\"}]},"
        "{\"Node\":{\"Node\":\"n3\",\"Address\":\"10.0.0.7\"},"
        "\"Service\":{\"ID\":\"w3\",\"Address\":\"10.1.1.2\",\"Port\":82},"
        "\"Checks\":[{\"Status\":\"critical\"}]}]";
    char err[256];
    struct consul_instances in = {0};
    ck_assert_int_eq(consul_decode_health_service(b, strlen(b), 0, &in, err, sizeof err), 0);
    ck_assert_uint_eq(in.n, 2);
    ck_assert_str_eq(in.items[0].address, "10.0.0.9");
    ck_assert_int_eq(in.items[0].weight, 3);
    ck_assert_str_eq(in.items[1].address, "10.1.1.1");
    ck_assert_int_eq(in.items[1].weight, 1); /* warning instance: Weights.Warning */
    consul_instances_free(&in);
    /* passing_only drops the warning instance too. */
    ck_assert_int_eq(consul_decode_health_service(b, strlen(b), 1, &in, err, sizeof err), 0);
    ck_assert_uint_eq(in.n, 1);
    consul_instances_free(&in);
}
END_TEST

START_TEST(test_decode_health_service_tells_every_instance_node)
{
    /* The change detector needs the nodes of instances left out (critical,
     * no port) too: a node recovering brings those back. */
    const char *b =
        "[{\"Node\":{\"Node\":\"n2\",\"Address\":\"10.0.0.2\"},"
        "\"Service\":{\"ID\":\"a\",\"Port\":80},\"Checks\":[{\"Status\":\"passing\"}]},"
        "{\"Node\":{\"Node\":\"n1\",\"Address\":\"10.0.0.1\"},"
        "\"Service\":{\"ID\":\"b\",\"Port\":80},\"Checks\":[{\"Status\":\"critical\"}]},"
        "{\"Node\":{\"Node\":\"n2\",\"Address\":\"10.0.0.2\"},"
        "\"Service\":{\"ID\":\"c\",\"Port\":81},\"Checks\":[]},"
        "{\"Node\":{\"Node\":\"n3\",\"Address\":\"10.0.0.3\"},"
        "\"Service\":{\"ID\":\"d\"},\"Checks\":[]}]";
    char err[256];
    struct consul_instances in = {0};
    ck_assert_int_eq(consul_decode_health_service(b, strlen(b), 1, &in, err, sizeof err), 0);
    ck_assert_uint_eq(in.n, 2);
    ck_assert_uint_eq(in.n_nodes, 3);
    ck_assert_str_eq(in.nodes[0], "n1");
    ck_assert_str_eq(in.nodes[1], "n2");
    ck_assert_str_eq(in.nodes[2], "n3");
    ck_assert(consul_instances_on_node(&in, "n1"));
    ck_assert(consul_instances_on_node(&in, "n3"));
    ck_assert(!consul_instances_on_node(&in, "n4"));
    ck_assert(!consul_instances_on_node(&in, ""));
    consul_instances_free(&in);
    ck_assert_uint_eq(in.n_nodes, 0);
    ck_assert(!consul_instances_on_node(&in, "n1"));
    ck_assert_int_eq(consul_decode_health_service("[]", 2, 1, &in, err, sizeof err), 0);
    ck_assert_uint_eq(in.n_nodes, 0);
}
END_TEST

static const char *const hostile[] = {
    "",
    "{",
    "<html>not json</html>",
    "{\"Node\":{}}",
    "[{\"Node\":{\"Node\":\"n\",\"Address\":\"a\"},\"Service\":{\"ID\":\"x\",\"Port\":\"80\"},\"Checks\":[]}]",
    "[{\"Node\":{\"Node\":\"n\",\"Address\":\"a\"},\"Service\":{\"ID\":\"x\",\"Port\":70000},\"Checks\":[]}]",
    "[{\"Node\":{\"Node\":\"n\",\"Address\":\"a\"},\"Service\":{\"ID\":\"x\",\"Port\":80},\"Checks\":[{}]}]",
    "[{\"Node\":{\"Node\":\"n\",\"Address\":\"a\"},\"Service\":{\"ID\":\"x\",\"Port\":80,\"Weights\":{\"Passing\":-1}},\"Checks\":[]}]",
    "[{\"Node\":\"n\",\"Service\":{},\"Checks\":[]}]",
    "[{\"Node\":{\"Node\":\"n\",\"Address\":\"a\"},\"Service\":{\"ID\":\"x\",\"Port\":80,\"Tags\":[1]},\"Checks\":[]}]",
    "[{\"Node\":{\"Node\":\"n\",\"Address\":\"a\"},\"Service\":{\"ID\":\"x\",\"Port\":80},\"Checks\":[]}, 5]",
};

START_TEST(test_decode_refuses_garbage_whole_and_leaves_output_untouched)
{
    char err[256];
    struct consul_instances keep = {0};
    const char *good =
        "[{\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.1\"},\"Service\":{\"ID\":\"x\",\"Port\":80},\"Checks\":[]}]";
    ck_assert_int_eq(consul_decode_health_service(good, strlen(good), 1, &keep, err, sizeof err),
                     0);
    ck_assert_uint_eq(keep.n, 1);
    err[0] = '\0';
    ck_assert_int_eq(
        consul_decode_health_service(hostile[_i], strlen(hostile[_i]), 1, &keep, err, sizeof err),
        -1);
    ck_assert_uint_eq(keep.n, 1); /* a garbage answer never shrinks a set */
    ck_assert(err[0] != '\0');
    consul_instances_free(&keep);
}
END_TEST

START_TEST(test_decode_agent_self_gives_datacenter_and_node_or_fails_whole)
{
    char err[256], dc[64] = "keep", node[128] = "keep";
    char *b = fixture("agent_self_min.json");
    ck_assert_int_eq(
        consul_decode_agent_self(b, strlen(b), dc, sizeof dc, node, sizeof node, err, sizeof err),
        0);
    ck_assert_str_eq(dc, "dc1");
    ck_assert_str_eq(node, "node-a");
    free(b);
    static const char *const bad[] = {
        "[]",
        "{}",
        "{\"Config\":[]}",
        "{\"Config\":{\"NodeName\":\"n\"}}",
        "{\"Config\":{\"Datacenter\":\"\",\"NodeName\":\"n\"}}",
        "{\"Config\":{\"Datacenter\":\"eu\",\"NodeName\":7}}",
        "not json",
        "{\"Config\":{\"Datacenter\":\"eu/west?x\",\"NodeName\":\"n\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(dc, sizeof dc, "keep");
        err[0] = '\0';
        ck_assert_int_eq(consul_decode_agent_self(bad[i], strlen(bad[i]), dc, sizeof dc, node,
                                                  sizeof node, err, sizeof err),
                         -1);
        ck_assert_str_eq(dc, "keep");
        ck_assert(err[0] != '\0');
    }
    /* A datacenter longer than the caller's buffer is refused, not cut. */
    char small[4];
    const char *longdc = "{\"Config\":{\"Datacenter\":\"eu-west\",\"NodeName\":\"n\"}}";
    ck_assert_int_eq(consul_decode_agent_self(longdc, strlen(longdc), small, sizeof small, node,
                                              sizeof node, err, sizeof err),
                     -1);
}
END_TEST

START_TEST(test_connection_limit_is_a_429_or_a_new_connection_closed_at_once)
{
    /* status, err, closed_by_peer, new_connection, elapsed_ms */
    ck_assert(consul_is_connection_limit(429, HTTP_OK, 0, 1, 3));
    ck_assert(consul_is_connection_limit(429, HTTP_OK, 0, 0, 3));
    ck_assert(consul_is_connection_limit(0, HTTP_ERR_OTHER, 1, 1, 2));
    ck_assert(!consul_is_connection_limit(200, HTTP_OK, 0, 1, 3));
    ck_assert(!consul_is_connection_limit(500, HTTP_OK, 0, 1, 3));
    /* A long-poll cut after a while, or a reused connection gone stale. */
    ck_assert(!consul_is_connection_limit(0, HTTP_ERR_OTHER, 1, 1, 5000));
    ck_assert(!consul_is_connection_limit(0, HTTP_ERR_OTHER, 1, 0, 2));
    /* Refused (the agent is down), timed out, cut mid-answer: not the limit. */
    ck_assert(!consul_is_connection_limit(0, HTTP_ERR_CONNECT, 0, 1, 0));
    ck_assert(!consul_is_connection_limit(0, HTTP_ERR_TIMEOUT, 0, 1, 900));
    ck_assert(!consul_is_connection_limit(0, HTTP_ERR_OTHER, 0, 1, 3));
}
END_TEST

START_TEST(test_decode_leader_peers_members_nodes_kv_session)
{
    char err[256], leader[64];
    char *b = fixture("status_leader.json");
    ck_assert_int_eq(consul_decode_leader(b, strlen(b), leader, sizeof leader, err, sizeof err), 0);
    ck_assert_str_eq(leader, "10.0.1.10:8300");
    free(b);
    ck_assert_int_eq(consul_decode_leader("\"\"", 2, leader, sizeof leader, err, sizeof err), 0);
    ck_assert_str_eq(leader, "");
    ck_assert_int_eq(consul_decode_leader("[]", 2, leader, sizeof leader, err, sizeof err), -1);

    char **peers;
    size_t n;
    b = fixture("status_peers.json");
    ck_assert_int_eq(consul_decode_peers(b, strlen(b), &peers, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 3);
    consul_strings_free(peers, n);
    free(b);

    struct consul_member *m;
    b = fixture("agent_members.json");
    ck_assert_int_eq(consul_decode_members(b, strlen(b), &m, &n, err, sizeof err), 0);
    ck_assert_uint_ge(n, 1);
    ck_assert_str_eq(m[0].name, "server-1");
    ck_assert_int_eq(m[0].server, 1);
    consul_members_free(m, n);
    free(b);

    char **nodes;
    b = fixture("catalog_nodes.json");
    ck_assert_int_eq(consul_decode_catalog_nodes(b, strlen(b), &nodes, &n, err, sizeof err), 0);
    ck_assert_uint_ge(n, 1);
    consul_strings_free(nodes, n);
    free(b);

    struct consul_kv kv;
    const char *kvb = "[{\"LockIndex\":1,\"Key\":\"k\",\"Flags\":0,\"Value\":\"a29uZy0y\","
                      "\"Session\":\"s-1\",\"CreateIndex\":5,\"ModifyIndex\":7}]";
    ck_assert_int_eq(consul_decode_kv(kvb, strlen(kvb), &kv, err, sizeof err), 0);
    ck_assert_str_eq(kv.value, "kong-2");
    ck_assert_str_eq(kv.session, "s-1");
    ck_assert_uint_eq(kv.lock_index, 1);
    consul_kv_free(&kv);
    char id[64];
    ck_assert_int_eq(
        consul_decode_session_id("{\"ID\":\"abc\"}", 12, id, sizeof id, err, sizeof err), 0);
    ck_assert_str_eq(id, "abc");
    ck_assert_int_eq(consul_decode_session_id("{}", 2, id, sizeof id, err, sizeof err), -1);
}
END_TEST

/* ---- client helpers ------------------------------------------------------ */

static const struct {
    const char *in;
    int ok;
    const char *base, *sock;
    int tls;
} addrs[] = {
    {"127.0.0.1:8500", 1, "http://127.0.0.1:8500", "", 0},
    {"http://consul:8500", 1, "http://consul:8500", "", 0},
    {"https://consul.service:8501/", 1, "https://consul.service:8501", "", 1},
    {"unix:///run/consul.sock", 1, "http://localhost", "/run/consul.sock", 0},
    {"[::1]:8500", 1, "http://[::1]:8500", "", 0},
    {"", 1, "http://127.0.0.1:8500", "", 0},
    {"ftp://x:1", 0, NULL, NULL, 0},
    {"unix://relative", 0, NULL, NULL, 0},
    {"host:99999", 0, NULL, NULL, 0},
    {"host:80/path", 0, NULL, NULL, 0},
    {"user@host:80", 0, NULL, NULL, 0},
};

START_TEST(test_client_parses_every_consul_http_addr_form)
{
    char base[512], sock[512], err[256];
    int tls;
    int rc = consul_parse_address(addrs[_i].in, base, sizeof base, sock, sizeof sock, &tls, err,
                                  sizeof err);
    ck_assert_msg(rc == (addrs[_i].ok ? 0 : -1), "address %s", addrs[_i].in);
    if (addrs[_i].ok) {
        ck_assert_str_eq(base, addrs[_i].base);
        ck_assert_str_eq(sock, addrs[_i].sock);
        ck_assert_int_eq(tls, addrs[_i].tls);
    } else {
        ck_assert_ptr_nonnull(strstr(err, "consul address"));
    }
}
END_TEST

START_TEST(test_client_parses_the_index_header_strictly)
{
    uint64_t v = 7;
    ck_assert_int_eq(consul_parse_index("42", &v), 0);
    ck_assert_uint_eq(v, 42);
    ck_assert_int_eq(consul_parse_index("18446744073709551615", &v), 0);
    ck_assert_int_eq(consul_parse_index("18446744073709551616", &v), -1);
    ck_assert_int_eq(consul_parse_index("", &v), -1);
    ck_assert_int_eq(consul_parse_index("abc", &v), -1);
    ck_assert_int_eq(consul_parse_index("-1", &v), -1);
    ck_assert_int_eq(consul_parse_index("12 ", &v), -1);
}
END_TEST

START_TEST(test_error_description_is_one_line_and_drops_the_query)
{
    struct consul_response r = {.status = 500, .body = "No cluster\nleader\n", .body_len = 18};
    char out[300];
    consul_describe_error(&r, "GET", "/v1/health/service/web?token=secret&index=3", out,
                          sizeof out);
    ck_assert_str_eq(out, "GET /v1/health/service/web: 500 No cluster\\x0aleader");
    ck_assert_ptr_null(strstr(out, "secret"));
}
END_TEST

/* ---- the client's connection budget --------------------------------------- */

/* A server whose /hold/... requests wait until the test lets them go (one
 * thread per connection), and whose other paths answer at once: a client
 * saturated with ordinary requests, without timing. */
static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cv = PTHREAD_COND_INITIALIZER;
static int hold_released;

static enum MHD_Result serve_held(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state)
{
    (void)cls;
    (void)method;
    (void)version;
    (void)upload;
    if (*state == NULL) {
        *state = (void *)1;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (strncmp(url, "/hold/", 6) == 0) {
        pthread_mutex_lock(&hold_mu);
        while (!hold_released)
            pthread_cond_wait(&hold_cv, &hold_mu);
        pthread_mutex_unlock(&hold_mu);
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(4, (void *)"true", MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static void release_held(void)
{
    pthread_mutex_lock(&hold_mu);
    hold_released = 1;
    pthread_cond_broadcast(&hold_cv);
    pthread_mutex_unlock(&hold_mu);
}

struct done_log {
    char order[16][32];
    int n;
};
struct done_arg {
    struct done_log *log;
    const char *name;
};

static void on_budget_done(const struct consul_response *r, void *arg)
{
    struct done_arg *a = arg;
    ck_assert_int_eq(r->err, HTTP_OK);
    if (a->log->n < 16)
        snprintf(a->log->order[a->log->n++], 32, "%s", a->name);
}

static void run_until_done(struct loop *l, const struct done_log *log, int n)
{
    uint64_t end = loop_clock_ms() + 5000;
    while (log->n < n && loop_clock_ms() < end)
        loop_run_once(l, 50);
    ck_assert_int_ge(log->n, n);
}

START_TEST(test_client_urgent_requests_are_never_queued_behind_ordinary_ones)
{
    hold_released = 0;
    char addr[64], err[256];
    struct MHD_Daemon *d = unit_server(serve_held, addr, sizeof addr);
    struct loop *l = loop_new();
    struct consul_client_opts o = {.address = addr, .max_inflight = 2};
    struct consul_client *c = consul_client_new(l, &o, err, sizeof err);
    ck_assert_ptr_nonnull(c);
    struct done_log log = {0};
    struct done_arg a[] = {{&log, "watch-1"}, {&log, "watch-2"},  {&log, "queued-3"},
                           {&log, "renew"},   {&log, "urgent-1"}, {&log, "urgent-2"},
                           {&log, "urgent-3"}};
    /* Every ordinary slot is taken by requests that do not answer, and one
     * more waits in the queue. */
    ck_assert_ptr_nonnull(consul_request(c, "GET", "/hold/1", NULL, 0, 5000, 0, on_budget_done,
                                         &a[0], err, sizeof err));
    ck_assert_ptr_nonnull(consul_request(c, "GET", "/hold/2", NULL, 0, 5000, 0, on_budget_done,
                                         &a[1], err, sizeof err));
    ck_assert_ptr_nonnull(consul_request(c, "GET", "/v1/catalog/services", NULL, 0, 5000, 0,
                                         on_budget_done, &a[2], err, sizeof err));
    ck_assert_int_eq(consul_client_queued(c), 1);
    /* A renew goes out at once and is answered while they still hang. */
    ck_assert_ptr_nonnull(consul_request(c, "PUT", "/v1/session/renew/x", NULL, 0, 5000,
                                         CONSUL_REQ_URGENT, on_budget_done, &a[3], err,
                                         sizeof err));
    ck_assert_int_eq(consul_client_queued(c), 1);
    ck_assert_int_eq(consul_client_inflight(c), 3);
    run_until_done(l, &log, 1);
    ck_assert_str_eq(log.order[0], "renew");

    /* Urgent requests have a bounded budget of their own: past it they
     * wait, in their own queue. */
    ck_assert_ptr_nonnull(consul_request(c, "PUT", "/hold/u1", NULL, 0, 5000, CONSUL_REQ_URGENT,
                                         on_budget_done, &a[4], err, sizeof err));
    ck_assert_ptr_nonnull(consul_request(c, "PUT", "/hold/u2", NULL, 0, 5000, CONSUL_REQ_URGENT,
                                         on_budget_done, &a[5], err, sizeof err));
    ck_assert_int_eq(consul_client_queued(c), 1);
    ck_assert_ptr_nonnull(consul_request(c, "PUT", "/v1/kv/k?acquire=x", NULL, 0, 5000,
                                         CONSUL_REQ_URGENT, on_budget_done, &a[6], err,
                                         sizeof err));
    ck_assert_int_eq(consul_client_queued(c), 2);
    ck_assert_int_eq(consul_client_inflight(c), 4);

    release_held();
    run_until_done(l, &log, 7);
    ck_assert_int_eq(consul_client_inflight(c), 0);
    ck_assert_int_eq(consul_client_queued(c), 0);
    consul_client_free(c);
    loop_free(l);
    MHD_stop_daemon(d);
}
END_TEST

/* ---- drift ---------------------------------------------------------------- */

static struct consul_service make_service(void)
{
    struct consul_service s = {0};
    s.id = "web-1";
    s.name = "web";
    s.definition =
        cJSON_Parse("{\"ID\":\"web-1\",\"Name\":\"web\",\"Port\":8080,\"Address\":\"10.0.0.1\","
                    "\"Tags\":[\"v1\",\"blue\"],\"Meta\":{\"version\":\"1\"}}");
    return s;
}

START_TEST(test_drift_ignores_agent_added_fields)
{
    struct consul_service s = make_service();
    cJSON *view =
        cJSON_Parse("{\"ID\":\"web-1\",\"Service\":\"web\",\"Port\":8080,\"Address\":\"10.0.0.1\","
                    "\"Tags\":[\"v1\",\"blue\"],\"Meta\":{\"version\":\"1\"},"
                    "\"TaggedAddresses\":{\"lan_ipv4\":{\"Address\":\"10.0.0.1\",\"Port\":8080}},"
                    "\"Weights\":{\"Passing\":1,\"Warning\":1},\"EnableTagOverride\":false,"
                    "\"Datacenter\":\"dc1\",\"ContentHash\":\"abc\"}");
    char why[256];
    ck_assert_int_eq(consul_service_drift(&s, view, why, sizeof why), 0);
    cJSON_ReplaceItemInObject(view, "Port", cJSON_CreateNumber(8081));
    ck_assert_int_eq(consul_service_drift(&s, view, why, sizeof why), 1);
    ck_assert_str_eq(why, "port 8081 != 8080");
    cJSON_ReplaceItemInObject(view, "Port", cJSON_CreateNumber(8080));
    cJSON_ReplaceItemInObject(view, "Tags", cJSON_Parse("[\"v1\"]"));
    ck_assert_int_eq(consul_service_drift(&s, view, why, sizeof why), 1);
    cJSON_ReplaceItemInObject(view, "Tags", cJSON_Parse("[\"v1\",\"blue\"]"));
    cJSON_ReplaceItemInObject(view, "Meta", cJSON_Parse("{\"version\":\"2\"}"));
    ck_assert_int_eq(consul_service_drift(&s, view, why, sizeof why), 1);
    ck_assert_ptr_nonnull(strstr(why, "version"));
    ck_assert_int_eq(consul_service_drift(&s, NULL, why, sizeof why), 1);
    cJSON_Delete(view);
    cJSON_Delete(s.definition);
}
END_TEST

START_TEST(test_checks_drift_names_the_missing_check)
{
    struct consul_service s = make_service();
    struct consul_check_ref refs[] = {{"service:web-1", "c", 10000}};
    s.checks = refs;
    s.n_checks = 1;
    cJSON *checks = cJSON_Parse("{\"service:web-1\":{\"ServiceID\":\"web-1\"}}");
    char why[256];
    ck_assert_int_eq(consul_checks_drift(&s, checks, why, sizeof why), 0);
    cJSON_Delete(checks);
    checks = cJSON_Parse("{}");
    ck_assert_int_eq(consul_checks_drift(&s, checks, why, sizeof why), 1);
    ck_assert_str_eq(why, "check \"service:web-1\" missing");
    cJSON_Delete(checks);
    cJSON_Delete(s.definition);
}
END_TEST

START_TEST(test_drift_sees_kind_socket_and_wanted_tagged_addresses)
{
    struct consul_service s = make_service();
    cJSON_AddItemToObject(s.definition, "TaggedAddresses",
                          cJSON_Parse("{\"lan\":{\"address\":\"10.0.0.9\",\"port\":80}}"));
    cJSON *view = cJSON_Parse("{\"Service\":\"web\",\"Port\":8080,\"Address\":\"10.0.0.1\","
                              "\"Tags\":[\"v1\",\"blue\"],\"Meta\":{\"version\":\"1\"},"
                              "\"TaggedAddresses\":{\"lan\":{\"Address\":\"10.0.0.9\",\"Port\":80},"
                              "\"lan_ipv4\":{\"Address\":\"10.0.0.1\",\"Port\":8080}}}");
    char why[256];
    ck_assert_int_eq(consul_service_drift(&s, view, why, sizeof why), 0);
    cJSON_ReplaceItemInObject(
        cJSON_GetObjectItem(cJSON_GetObjectItem(view, "TaggedAddresses"), "lan"), "Port",
        cJSON_CreateNumber(81));
    ck_assert_int_eq(consul_service_drift(&s, view, why, sizeof why), 1);
    ck_assert_str_eq(why, "tagged address \"lan\" differs");
    cJSON_DeleteItemFromObject(s.definition, "TaggedAddresses");
    ck_assert_int_eq(consul_service_drift(&s, view, why, sizeof why), 0);
    cJSON_AddStringToObject(view, "Kind", "connect-proxy");
    ck_assert_int_eq(consul_service_drift(&s, view, why, sizeof why), 1);
    ck_assert_str_eq(why, "Kind \"connect-proxy\" != \"\"");
    cJSON_Delete(view);
    cJSON_Delete(s.definition);
}
END_TEST

START_TEST(test_drift_ignores_tags_under_enable_tag_override)
{
    struct consul_service s = make_service();
    cJSON_AddTrueToObject(s.definition, "EnableTagOverride");
    cJSON *view = cJSON_Parse("{\"Service\":\"web\",\"Port\":8080,\"Address\":\"10.0.0.1\","
                              "\"Tags\":[\"edited-in-catalog\"],\"Meta\":{\"version\":\"1\"},"
                              "\"EnableTagOverride\":true}");
    char why[256];
    ck_assert_int_eq(consul_service_drift(&s, view, why, sizeof why), 0);
    cJSON_Delete(view);
    cJSON_Delete(s.definition);
}
END_TEST

/* A service with an HTTP check (90s written as the user did) and a TTL check,
 * against an agent's checks as Consul renders them. */
static cJSON *agent_checks_for_web(const char *interval)
{
    char text[1024];
    snprintf(
        text, sizeof text,
        "{\"service:web-1:1\":{\"CheckID\":\"service:web-1:1\",\"Name\":\"Service 'web' check\","
        "\"Notes\":\"\",\"ServiceID\":\"web-1\",\"Type\":\"http\",\"Interval\":\"%s\","
        "\"Timeout\":\"2s\",\"Definition\":{}},"
        "\"service:web-1:2\":{\"CheckID\":\"service:web-1:2\",\"Name\":\"alive\",\"Notes\":\"\","
        "\"ServiceID\":\"web-1\",\"Type\":\"ttl\",\"Interval\":\"\",\"Timeout\":\"\"},"
        "\"_service_maintenance:web-1\":{\"ServiceID\":\"web-1\",\"Type\":\"maintenance\"},"
        "\"other\":{\"ServiceID\":\"db\",\"Type\":\"ttl\"}}",
        interval);
    return cJSON_Parse(text);
}

START_TEST(test_checks_drift_compares_what_the_agent_shows)
{
    struct consul_service s = make_service();
    cJSON_AddItemToObject(s.definition, "Checks",
                          cJSON_Parse("[{\"HTTP\":\"http://127.0.0.1/h\",\"Interval\":\"90s\","
                                      "\"Timeout\":\"2s\"},{\"TTL\":\"30s\",\"Name\":\"alive\"}]"));
    struct consul_check_ref refs[] = {{"service:web-1:1", "Service 'web' check", 0},
                                      {"service:web-1:2", "alive", 30000}};
    s.checks = refs;
    s.n_checks = 2;
    char why[256];
    cJSON *checks = agent_checks_for_web("1m30s");
    ck_assert_int_eq(consul_checks_drift(&s, checks, why, sizeof why), 0);
    cJSON_Delete(checks);
    checks = agent_checks_for_web("20s");
    ck_assert_int_eq(consul_checks_drift(&s, checks, why, sizeof why), 1);
    ck_assert_str_eq(why, "check \"service:web-1:1\": interval \"20s\" != \"90s\"");
    /* Changed type (an HTTP check replaced by a TCP one). */
    cJSON_Delete(checks);
    checks = agent_checks_for_web("1m30s");
    cJSON *c1 = cJSON_GetObjectItem(checks, "service:web-1:1");
    cJSON_ReplaceItemInObject(c1, "Type", cJSON_CreateString("tcp"));
    ck_assert_int_eq(consul_checks_drift(&s, checks, why, sizeof why), 1);
    ck_assert_str_eq(why, "check \"service:web-1:1\": type tcp != http");
    cJSON_ReplaceItemInObject(c1, "Type", cJSON_CreateString("http"));
    cJSON_ReplaceItemInObject(c1, "Timeout", cJSON_CreateString("5s"));
    ck_assert_int_eq(consul_checks_drift(&s, checks, why, sizeof why), 1);
    ck_assert_str_eq(why, "check \"service:web-1:1\": timeout \"5s\" != \"2s\"");
    /* The TTL check sets no timeout: a default shown by the agent is fine. */
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(checks, "service:web-1:2"), "Timeout",
                              cJSON_CreateString("10s"));
    cJSON_ReplaceItemInObject(c1, "Timeout", cJSON_CreateString("2s"));
    ck_assert_int_eq(consul_checks_drift(&s, checks, why, sizeof why), 0);
    cJSON_ReplaceItemInObject(c1, "Timeout", cJSON_CreateString("2s"));
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(checks, "service:web-1:2"), "Name",
                              cJSON_CreateString("renamed"));
    ck_assert_int_eq(consul_checks_drift(&s, checks, why, sizeof why), 1);
    ck_assert_str_eq(why, "check \"service:web-1:2\": name \"renamed\" != \"alive\"");
    cJSON_Delete(checks);
    /* A check added to our service by hand. */
    checks = agent_checks_for_web("1m30s");
    cJSON_AddItemToObject(checks, "extra",
                          cJSON_Parse("{\"ServiceID\":\"web-1\",\"Type\":\"ttl\"}"));
    ck_assert_int_eq(consul_checks_drift(&s, checks, why, sizeof why), 1);
    ck_assert_str_eq(why, "check \"extra\" is not in the definition");
    cJSON_Delete(checks);
    cJSON_Delete(s.definition);
}
END_TEST

START_TEST(test_checks_drift_accepts_consuls_one_second_floor)
{
    struct consul_service s = make_service();
    cJSON_AddItemToObject(s.definition, "Checks",
                          cJSON_Parse("[{\"TCP\":\"127.0.0.1:1\",\"Interval\":\"500ms\"}]"));
    struct consul_check_ref refs[] = {{"service:web-1", "Service 'web' check", 0}};
    s.checks = refs;
    s.n_checks = 1;
    char why[256];
    cJSON *checks =
        cJSON_Parse("{\"service:web-1\":{\"Name\":\"Service 'web' check\",\"ServiceID\":"
                    "\"web-1\",\"Type\":\"tcp\",\"Interval\":\"1s\",\"Timeout\":\"\"}}");
    ck_assert_int_eq(consul_checks_drift(&s, checks, why, sizeof why), 0);
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(checks, "service:web-1"), "Interval",
                              cJSON_CreateString("500ms"));
    ck_assert_int_eq(consul_checks_drift(&s, checks, why, sizeof why), 0);
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(checks, "service:web-1"), "Interval",
                              cJSON_CreateString("2s"));
    ck_assert_int_eq(consul_checks_drift(&s, checks, why, sizeof why), 1);
    cJSON_Delete(checks);
    cJSON_Delete(s.definition);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("consul");
    TCase *t = tcase_create("core");
    tcase_add_test(t, test_decode_health_service_fixture);
    tcase_add_test(t, test_decode_health_service_uses_node_address_when_service_has_none);
    tcase_add_test(t, test_decode_health_service_tells_every_instance_node);
    tcase_add_loop_test(t, test_decode_refuses_garbage_whole_and_leaves_output_untouched, 0,
                        (int)(sizeof hostile / sizeof hostile[0]));
    tcase_add_test(t, test_decode_leader_peers_members_nodes_kv_session);
    tcase_add_test(t, test_decode_agent_self_gives_datacenter_and_node_or_fails_whole);
    tcase_add_test(t, test_connection_limit_is_a_429_or_a_new_connection_closed_at_once);
    tcase_add_loop_test(t, test_client_parses_every_consul_http_addr_form, 0,
                        (int)(sizeof addrs / sizeof addrs[0]));
    tcase_add_test(t, test_client_parses_the_index_header_strictly);
    tcase_add_test(t, test_error_description_is_one_line_and_drops_the_query);
    tcase_add_test(t, test_client_urgent_requests_are_never_queued_behind_ordinary_ones);
    tcase_add_test(t, test_drift_ignores_agent_added_fields);
    tcase_add_test(t, test_checks_drift_names_the_missing_check);
    tcase_add_test(t, test_drift_sees_kind_socket_and_wanted_tagged_addresses);
    tcase_add_test(t, test_drift_ignores_tags_under_enable_tag_override);
    tcase_add_test(t, test_checks_drift_compares_what_the_agent_shows);
    tcase_add_test(t, test_checks_drift_accepts_consuls_one_second_floor);
    tcase_set_timeout(t, 30);
    suite_add_tcase(s, t);
    return unit_run(s);
}
