/* Unit tests for proxy/: HAProxy `show servers state` parsing and server
 * naming, Kong target normalization, page parsing and error bodies, nginx
 * rendering and reading back. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "proxy/haproxy.h"
#include "proxy/kong.h"
#include "proxy/nginx.h"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "missing %s", path);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strdup(buf);
}

START_TEST(test_haproxy_reads_only_its_own_servers)
{
    const char *text =
        "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
        "srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health "
        "srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord "
        "srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n"
        "3 be_orders 1 manual 127.0.0.1 2 0 1 1 5 1 0 0 0 0 0 0 - 8080 - 0 0 - - 0\n"
        "3 be_orders 2 cs-10.0.0.1:80 10.0.0.1 2 0 7 1 5 1 0 0 0 0 0 0 - 80 - 0 0 - - 0\n"
        "3 be_orders 3 cs-10.0.0.2:80 10.0.0.2 0 1 1 1 5 1 0 0 0 0 0 0 - 80 - 0 0 - - 0\n"
        "3 be_orders 4 cs-fd00::1:81 fd00::1 2 0 3 1 5 1 0 0 0 0 0 0 - 81 - 0 0 - - 0\n\n";
    struct proxy_target_set set;
    char err[256];
    ck_assert_int_eq(haproxy_parse_servers_state(text, HAPROXY_SERVER_PREFIX, &set, err, sizeof err), 0);
    ck_assert_uint_eq(set.n, 2); /* manual: not ours; cs-10.0.0.2 in forced maint */
    ck_assert_str_eq(set.items[0].host, "10.0.0.1");
    ck_assert_int_eq(set.items[0].weight, 7);
    ck_assert_str_eq(set.items[1].host, "fd00::1");
    ck_assert_int_eq(set.items[1].port, 81);
    proxy_target_set_free(&set);
    /* The captured 2.6.12 fixture has no server of ours. */
    char *fx = slurp("tests/fixtures/haproxy/show_servers_state.txt");
    ck_assert_int_eq(haproxy_parse_servers_state(fx, HAPROXY_SERVER_PREFIX, &set, err, sizeof err), 0);
    ck_assert_uint_eq(set.n, 0);
    ck_assert_int_eq(haproxy_parse_servers_state(fx, "orders", &set, err, sizeof err), 0);
    ck_assert_uint_eq(set.n, 1); /* orders1 ready; orders2/3 are config-disabled maint slots */
    proxy_target_set_free(&set);
    free(fx);
    ck_assert_int_eq(haproxy_parse_servers_state("Can't find backend.\n\n", "cs-", &set, err, sizeof err), -1);
    ck_assert_str_eq(err, "Can't find backend.");
    ck_assert_int_eq(haproxy_parse_servers_state("1\n3 be x\n", "cs-", &set, err, sizeof err), -1);
    struct proxy_target t = {"10.0.3.21", 8080, 1};
    char name[64];
    ck_assert_str_eq(haproxy_server_name(&t, name, sizeof name), "cs-10.0.3.21:8080");
}
END_TEST

static const struct {
    const char *host;
    int port;
    const char *want;
} norms[] = {
    {"10.0.0.1", 80, "10.0.0.1:80"},
    {"fd00::21", 8000, "[fd00:0000:0000:0000:0000:0000:0000:0021]:8000"},
    {"::1", 80, "[0000:0000:0000:0000:0000:0000:0000:0001]:80"},
    {"orders.internal", 8080, "orders.internal:8080"},
};

START_TEST(test_kong_normalizes_targets_like_kong)
{
    char out[128];
    ck_assert_str_eq(kong_normalize_target(norms[_i].host, norms[_i].port, out, sizeof out), norms[_i].want);
}
END_TEST

START_TEST(test_kong_pages_keep_only_owned_targets_and_follow_next)
{
    const char *page =
        "{\"data\":[{\"target\":\"10.0.0.1:80\",\"weight\":5,\"tags\":[\"managed-by-consul-sidecar\"]},"
        "{\"target\":\"10.0.0.2:80\",\"weight\":1,\"tags\":null},"
        "{\"target\":\"[fd00:0000:0000:0000:0000:0000:0000:0021]:81\",\"weight\":0,\"tags\":[\"x\",\"managed-by-consul-sidecar\"]}],"
        "\"next\":\"/upstreams/o/targets?offset=3\",\"offset\":\"3\"}";
    struct proxy_target_set set = {0};
    char next[256], err[256];
    ck_assert_int_eq(kong_parse_targets_page(page, strlen(page), KONG_DEFAULT_TAG, &set, next,
                                             sizeof next, err, sizeof err), 0);
    ck_assert_uint_eq(set.n, 2);
    ck_assert_str_eq(set.items[1].host, "fd00:0000:0000:0000:0000:0000:0000:0021");
    ck_assert_int_eq(set.items[1].weight, 0);
    ck_assert_str_eq(next, "/upstreams/o/targets?offset=3");
    /* Garbage never reads as a set. */
    const char *bad = "{\"data\":[{\"target\":\"10.0.0.1\",\"weight\":\"5\"}],\"next\":null}";
    ck_assert_int_eq(kong_parse_targets_page(bad, strlen(bad), KONG_DEFAULT_TAG, &set, next,
                                             sizeof next, err, sizeof err), -1);
    ck_assert_uint_eq(set.n, 2);
    ck_assert_int_eq(kong_parse_targets_page("{\"data\": 1}", 11, KONG_DEFAULT_TAG, &set, next,
                                             sizeof next, err, sizeof err), -1);
    proxy_target_set_free(&set);
    char *fx = slurp("tests/fixtures/kong/targets_list.json");
    ck_assert_int_eq(kong_parse_targets_page(fx, strlen(fx), "managed-by:consul-sidecar", &set, next,
                                             sizeof next, err, sizeof err), 0);
    ck_assert_uint_ge(set.n, 1);
    ck_assert_str_eq(next, "");
    proxy_target_set_free(&set);
    free(fx);
}
END_TEST

START_TEST(test_kong_error_bodies_are_described_by_their_message)
{
    char out[400];
    char *fx = slurp("tests/fixtures/kong/error_409_target_duplicate.json");
    kong_describe_error(409, fx, out, sizeof out);
    ck_assert_ptr_nonnull(strstr(out, "409 UNIQUE violation detected"));
    free(fx);
    kong_describe_error(404, "{\"message\":\"Not found\"}", out, sizeof out);
    ck_assert_str_eq(out, "404 Not found");
    kong_describe_error(502, "<html>\nbad gateway</html>", out, sizeof out);
    ck_assert_ptr_null(strchr(out, '\n'));
}
END_TEST

START_TEST(test_nginx_renders_deterministically_and_reads_back)
{
    struct proxy_target items[] = {{"10.0.0.2", 80, 5}, {"10.0.0.1", 80, 0},
                                   {"fd00::1", 81, 2}, {"orders.internal", 80, 1}};
    struct proxy_target_set set = {items, 4};
    struct buf a, b;
    buf_init(&a, 0);
    buf_init(&b, 0);
    ck_assert_int_eq(nginx_render("orders", &set, "max_fails=1", &a), 3); /* host name skipped */
    struct proxy_target rev[] = {items[3], items[2], items[1], items[0]};
    struct proxy_target_set set2 = {rev, 4};
    nginx_render("orders", &set2, "max_fails=1", &b);
    ck_assert_str_eq(a.data, b.data); /* order-independent: no change, no reload */
    ck_assert_ptr_nonnull(strstr(a.data, "server 10.0.0.1:80 down max_fails=1;"));
    ck_assert_ptr_nonnull(strstr(a.data, "server 10.0.0.2:80 weight=5 max_fails=1;"));
    ck_assert_ptr_nonnull(strstr(a.data, "server [fd00::1]:81 weight=2"));
    ck_assert_ptr_null(strstr(a.data, "weight=0"));
    ck_assert_ptr_null(strstr(a.data, "orders.internal"));
    struct proxy_target_set back;
    char err[256];
    ck_assert_int_eq(nginx_parse(a.data, &back, err, sizeof err), 0);
    ck_assert_uint_eq(back.n, 3);
    int found_down = 0;
    for (size_t i = 0; i < back.n; i++)
        found_down |= !strcmp(back.items[i].host, "10.0.0.1") && back.items[i].weight == 0;
    ck_assert(found_down);
    proxy_target_set_free(&back);
    struct proxy_target_set none = {NULL, 0};
    buf_reset(&a);
    ck_assert_int_eq(nginx_render("orders", &none, NULL, &a), 0); /* the driver refuses to write it */
    buf_free(&a);
    buf_free(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("proxy");
    TCase *t = tcase_create("core");
    tcase_add_test(t, test_haproxy_reads_only_its_own_servers);
    tcase_add_loop_test(t, test_kong_normalizes_targets_like_kong, 0, (int)(sizeof norms / sizeof norms[0]));
    tcase_add_test(t, test_kong_pages_keep_only_owned_targets_and_follow_next);
    tcase_add_test(t, test_kong_error_bodies_are_described_by_their_message);
    tcase_add_test(t, test_nginx_renders_deterministically_and_reads_back);
    suite_add_tcase(s, t);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
