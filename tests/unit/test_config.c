/* Unit tests for the configuration loader and the command line: every bad
 * input gives one line naming file, key path and reason; Consul's
 * case-insensitive keys and aliases; check IDs; the ownership mark;
 * precedence flags > environment > files; secrets. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/unconst.h"
#include "sidecar/cli.h"
#include "proxy/kong.h"
#include "sidecar/config.h"
#include "sidecar/sync.h"
#include "tests/unit/unit.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/cs-config.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *write_file(const char *name, const char *text, mode_t mode)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
    return path;
}

static int load(const char *text, struct config *cfg, char *err, size_t len)
{
    const char *p = write_file("c.json", text, 0600);
    const char *paths[] = {p};
    return config_load(cfg, paths, 1, NULL, NULL, err, len);
}

static const struct {
    const char *json;
    const char *message; /* expected substring after "c.json: " */
} bad[] = {
    {"{\"proxy\": {\"haproxy\": {\"runtime\": \"tcp://127.0.0.1:9999\", \"writer\": \"elected\"}}}",
     "proxy.haproxy.writer: \"elected\" is for Kong only"},
    {"{\"proxy\": {\"nginx\": {\"upstream_dir\": \"/tmp\", \"writer\": \"elected\"}}}",
     "proxy.nginx.writer: \"elected\" is for Kong only"},
    {"{\"service\": {\"name\": \"w\", \"check\": {\"http\": \"http://x/\", \"interval\": \"10\"}}}",
     "service.check.interval: invalid duration \"10\""},
    {"{\"services\": [{\"name\": \"a\"}, {\"name\": \"b\", \"check\": {\"interval\": \"10\", \"tcp\": \"x:1\"}}]}",
     "services[1].check.interval: invalid duration \"10\""},
    {"{\"consul\": {\"adress\": \"x\"}}", "consul: unknown key \"adress\""},
    {"{\"services\": [{\"name\": \"b\", \"port\": \"80\"}]}",
     "services[0].port: expected an integer"},
    {"{\"service\": {\"name\": \"b\", \"port\": 70000}}",
     "service.port: must be between 0 and 65535"},
    {"{\"deregister\": \"sometimes\"}", "deregister: must be one of always, on-success, never"},
    {"{\"service\": {\"port\": 80}}", "service.name: missing service name"},
    {"{\"service\": {\"name\": \"w\", \"nmae\": 1}}", "service: unknown key \"nmae\""},
    {"{\"service\": {\"name\": \"w\", \"address\": \"0.0.0.0\"}}",
     "service.address: invalid service address"},
    {"{\"service\": {\"name\": \"w\", \"weights\": {\"passing\": 0}}}",
     "service.weights.Passing: must be between 1"},
    {"{\"service\": {\"name\": \"w\", \"meta\": {\"consul-x\": \"1\"}}}",
     "reserved for internal use"},
    {"{\"service\": {\"name\": \"w\", \"check\": {\"ttl\": \"10s\", \"interval\": \"5s\"}}}",
     "Interval and TTL cannot both be specified"},
    {"{\"service\": {\"name\": \"w\", \"check\": {\"http\": \"http://x/\"}}}",
     "Interval must be > 0"},
    {"{\"service\": {\"name\": \"w\", \"check\": {\"status\": \"ok\", \"ttl\": \"5s\"}}}",
     "must be passing, warning or critical"},
    {"{\"service\": {\"name\": \"w\", \"check\": {\"interval\": \"5s\", \"http\": \"http://x/\", \"probe\": {\"http\": \"http://127.0.0.1/\"}}}}",
     "probe needs ttl"},
    {"{\"service\": {\"name\": \"w\", \"check\": {\"ttl\": \"5s\", \"probe\": {\"http\": \"ftp://x\"}}}}",
     "service.check.probe.http: expected an http:// or https:// URL"},
    {"{\"upstreams\": [{\"service\": \"o\", \"proxy\": \"envoy\"}]}",
     "upstreams[0].proxy: must be one of kong, haproxy, nginx"},
    {"{\"upstreams\": [{\"service\": \"o\"}]}", "upstreams[0].proxy: no proxy is configured"},
    {"{\"upstreams\": [{\"service\": \"o\", \"proxy\": \"kong\"}], \"proxy\": {\"nginx\": {}}}",
     "upstreams[0].proxy: proxy \"kong\" is not configured"},
    {"{\"upstreams\": [{\"name\": \"o\"}], \"proxy\": {\"nginx\": {}}}",
     "upstreams[0].service: required"},
    {"{\"upstreams\": [{\"service\": \"o\", \"name\": \"a b\"}], \"proxy\": {\"nginx\": {}}}",
     "upstreams[0].name"},
    {"{\"watch\": {\"quiescence\": {\"mni\": \"1s\"}}}", "watch.quiescence: unknown key \"mni\""},
    {"{\"watch\": {\"wait\": \"20m\"}}", "watch.wait: must be between 1s and 10m"},
    {"{\"proxy\": {\"haproxy\": {\"runtime\": \"/run/x.sock\"}}}",
     "proxy.haproxy.runtime: expected unix:///path"},
    {"{\"proxy\": {\"haproxy\": {\"drain_timeout\": \"2h\"}}}",
     "proxy.haproxy.drain_timeout: must be at most 1h"},
    {"{\"proxy\": {\"haproxy\": {\"drain_timeout\": \"5\"}}}",
     "proxy.haproxy.drain_timeout: invalid duration"},
    {"{\"proxy\": {\"kong\": {\"lock_delay\": \"2m\"}}}",
     "proxy.kong.lock_delay: must be at most 60s"},
    {"{\"proxy\": {\"kong\": {\"max_in_flight\": 0}}}",
     "proxy.kong.max_in_flight: must be between 1 and 256"},
    /* Past what a long or an int64 holds: refused, never converted. */
    {"{\"proxy\": {\"kong\": {\"max_in_flight\": 8e75}}}",
     "proxy.kong.max_in_flight: must be between 1 and 256"},
    {"{\"service\": {\"name\": \"b\", \"port\": -1e300}}",
     "service.port: must be between 0 and 65535"},
    {"{\"service\": {\"name\": \"b\", \"port\": 80.5}}", "service.port: expected an integer"},
    {"{\"consul\": {\"resync\": 1e300}}", "consul.resync: duration out of range"},
    {"{\"watch\": {\"max_streams\": 100001}}", "watch.max_streams: must be between 1 and 100000"},
    {"{\"watch\": {\"cluster_poll\": \"500ms\"}}",
     "watch.cluster_poll: must be between 1s and 10m"},
    {"{\"watch\": {\"mode\": \"fast\"}}", "watch.mode: must be one of auto, streams, detector"},
    {"{\"service\": {\"name\": \"w\",}}", "invalid JSON at line 1, column"},
    {"[]", "expected a JSON object"},
    {"{\"services\": [{\"name\": \"a\"}, {\"name\": \"a\"}]}",
     "a second service with the ID \"a\""},
    {"{\"log_level\": \"loud\"}", "log_level: must be one of trace"},
};

START_TEST(test_config_bad_input_names_file_key_and_reason)
{
    struct config cfg;
    char err[512];
    ck_assert_int_eq(load(bad[_i].json, &cfg, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "c.json") != NULL, "no file in: %s", err);
    ck_assert_msg(strstr(err, bad[_i].message) != NULL, "want \"%s\" in: %s", bad[_i].message, err);
    ck_assert_ptr_null(strchr(err, '\n'));
    ck_assert_ptr_null(cfg.services); /* nothing half-built */
}
END_TEST

START_TEST(test_config_keys_are_case_insensitive_with_consul_aliases)
{
    struct config cfg;
    char err[512];
    ck_assert_int_eq(
        load(
            "{\"service\": {\"NAME\": \"web\", \"Port\": 80, \"enable_tag_override\": true,"
            " \"Checks\": [{\"TTL\": \"10s\", \"deregister_critical_service_after\": \"90m\"},"
            "              {\"HTTP\": \"http://127.0.0.1/\", \"interval\": \"10s\", \"id\": \"h\"}]},"
            " \"node\": \"n1\"}",
            &cfg, err, sizeof err),
        0);
    ck_assert_uint_eq(cfg.n_services, 1);
    const struct consul_service *s = &cfg.services[0];
    ck_assert_str_eq(s->id, "web");
    cJSON *d = s->definition;
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "EnableTagOverride")));
    const cJSON *checks = cJSON_GetObjectItemCaseSensitive(d, "Checks");
    ck_assert_int_eq(cJSON_GetArraySize(checks), 2);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(checks, 0),
                                                      "DeregisterCriticalServiceAfter")
                         ->valuestring,
                     "90m");
    ck_assert_uint_eq(s->n_checks, 2);
    ck_assert_str_eq(s->checks[0].check_id, "service:web:1");
    ck_assert_int_eq(s->checks[0].ttl_ms, 10000);
    ck_assert_str_eq(s->checks[1].check_id, "h");
    /* The ownership mark, with this node. */
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(d, "Meta");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(meta, "managed-by")->valuestring,
                     "consul-sidecar");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(meta, "sidecar-node")->valuestring, "n1");
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_single_check_gets_consuls_id_and_probe_is_extracted)
{
    struct config cfg;
    char err[512];
    ck_assert_int_eq(
        load(
            "{\"service\": {\"name\": \"gw\", \"id\": \"gw-1\", \"check\": {\"ttl\": \"15s\","
            " \"failures_before_critical\": 3, \"probe\": {\"tcp\": \"127.0.0.1:8000\", \"interval\": \"2s\"}}}}",
            &cfg, err, sizeof err),
        0);
    ck_assert_str_eq(cfg.services[0].checks[0].check_id, "service:gw-1");
    ck_assert_uint_eq(cfg.n_probes, 1);
    ck_assert_str_eq(cfg.probes[0].check_id, "service:gw-1");
    ck_assert_int_eq(cfg.probes[0].spec.kind, PROBE_TCP);
    ck_assert_int_eq(cfg.probes[0].spec.interval_ms, 2000);
    ck_assert_int_eq(cfg.probes[0].spec.timeout_ms, 2000);
    ck_assert_int_eq(cfg.probes[0].spec.failures_before_critical, 3);
    /* The probe extension is not sent to Consul. */
    const cJSON *c = cJSON_GetArrayItem(
        cJSON_GetObjectItemCaseSensitive(cfg.services[0].definition, "Checks"), 0);
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(c, "probe"));
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_directories_merge_in_order)
{
    char sub[128];
    snprintf(sub, sizeof sub, "%s/d", dir);
    mkdir(sub, 0700);
    char p1[128], p2[128];
    snprintf(p1, sizeof p1, "d/10-a.json");
    snprintf(p2, sizeof p2, "d/20-b.json");
    write_file(
        p1,
        "{\"service\": {\"name\": \"a\"}, \"consul\": {\"address\": \"h1:1\", \"resync\": \"5s\"}}",
        0600);
    write_file(p2, "{\"service\": {\"name\": \"b\"}, \"consul\": {\"address\": \"h2:2\"}}", 0600);
    write_file("d/notes.txt", "not read", 0600);
    char d[128];
    snprintf(d, sizeof d, "%s/d", dir);
    const char *paths[] = {d};
    struct config cfg;
    char err[512];
    ck_assert_int_eq(config_load(&cfg, paths, 1, NULL, NULL, err, sizeof err), 0);
    ck_assert_uint_eq(cfg.n_services, 2);
    ck_assert_str_eq(cfg.services[0].name, "a");
    ck_assert_str_eq(cfg.consul_addr, "h2:2"); /* later file wins */
    ck_assert_int_eq(cfg.resync_ms, 5000);     /* objects merge key-wise */
    config_free(&cfg);
}
END_TEST

START_TEST(test_cli_precedence_flags_over_env_over_files)
{
    const char *p = write_file(
        "c.json",
        "{\"consul\": {\"address\": \"file:1\", \"datacenter\": \"dcf\"}, \"listen\": \"127.0.0.1:1\"}",
        0600);
    char *argv[] = {"consul-sidecar", "-config", unconst(p), "-datacenter=dcflag", NULL};
    char *envp[] = {"CONSUL_HTTP_ADDR=env:2", "CONSUL_HTTP_TOKEN=tok", NULL};
    enum cli_action a;
    struct config cfg;
    char err[512];
    ck_assert_int_eq(cli_parse(4, argv, envp, &a, &cfg, err, sizeof err), 0);
    ck_assert_int_eq(a, CLI_RUN);
    ck_assert_str_eq(cfg.consul_addr, "env:2");
    ck_assert_str_eq(cfg.datacenter, "dcflag");
    ck_assert_str_eq(cfg.listen, "127.0.0.1:1");
    ck_assert_str_eq(cfg.token, "tok");
    config_free(&cfg);
    char *argv2[] = {"consul-sidecar", "-config", unconst(p), "-consul-addr", "flag:3", NULL};
    ck_assert_int_eq(cli_parse(5, argv2, envp, &a, &cfg, err, sizeof err), 0);
    ck_assert_str_eq(cfg.consul_addr, "flag:3");
    config_free(&cfg);
}
END_TEST

/* -validate refuses what the daemon would refuse at start, and a token file
 * wins over a token variable, as in Consul's own client. */
START_TEST(test_cli_checks_addresses_and_prefers_the_token_file)
{
    enum cli_action a;
    struct config cfg;
    char err[512];
    char *argv[] = {"consul-sidecar", "-validate", "-consul-addr", "ftp://x", NULL};
    ck_assert_int_eq(cli_parse(4, argv, NULL, &a, &cfg, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "consul address \"ftp://x\": unsupported scheme") != NULL, "%s", err);
    char *argv2[] = {"consul-sidecar", "-validate", "-listen", "nonsense", NULL};
    ck_assert_int_eq(cli_parse(4, argv2, NULL, &a, &cfg, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "listen address \"nonsense\": expected host:port") != NULL, "%s",
                  err);
    const char *tf = write_file("token", "from-file\n", 0600);
    char envline[600];
    snprintf(envline, sizeof envline, "CONSUL_HTTP_TOKEN_FILE=%s", tf);
    char *envp[] = {"CONSUL_HTTP_TOKEN=from-variable", envline, NULL};
    char *argv3[] = {"consul-sidecar", NULL};
    ck_assert_int_eq(cli_parse(1, argv3, envp, &a, &cfg, err, sizeof err), 0);
    ck_assert_str_eq(cfg.token, "from-file");
    config_free(&cfg);
}
END_TEST

START_TEST(test_cli_rejects_unknown_flags_and_missing_values)
{
    enum cli_action a;
    struct config cfg;
    char err[512];
    char *argv[] = {"consul-sidecar", "-nope", NULL};
    ck_assert_int_eq(cli_parse(2, argv, NULL, &a, &cfg, err, sizeof err), 2);
    ck_assert_ptr_nonnull(strstr(err, "flag provided but not defined: -nope"));
    char *argv2[] = {"consul-sidecar", "-listen", NULL};
    ck_assert_int_eq(cli_parse(2, argv2, NULL, &a, &cfg, err, sizeof err), 2);
    ck_assert_ptr_nonnull(strstr(err, "flag needs an argument: -listen"));
    char *argv3[] = {"consul-sidecar", "-version", NULL};
    ck_assert_int_eq(cli_parse(2, argv3, NULL, &a, &cfg, err, sizeof err), 0);
    ck_assert_int_eq(a, CLI_VERSION);
    char *envp[] = {"CONSUL_HTTP_SSL_VERIFY=maybe", NULL};
    char *argv4[] = {"consul-sidecar", NULL};
    ck_assert_int_eq(cli_parse(1, argv4, envp, &a, &cfg, err, sizeof err), 2);
    ck_assert_ptr_nonnull(strstr(err, "CONSUL_HTTP_SSL_VERIFY"));
    char *envp2[] = {"CONSUL_HTTP_SSL=true", "CONSUL_HTTP_ADDR=consul:8501",
                     "CONSUL_HTTP_SSL_VERIFY=false", NULL};
    ck_assert_int_eq(cli_parse(1, argv4, envp2, &a, &cfg, err, sizeof err), 0);
    ck_assert_str_eq(cfg.consul_addr, "https://consul:8501");
    ck_assert_int_eq(cfg.tls.insecure, 1);
    config_free(&cfg);
    /* CONSUL_HTTP_SSL also turns a flag's scheme-less address into https. */
    char *envp3[] = {"CONSUL_HTTP_SSL=true", NULL};
    char *argv5[] = {"consul-sidecar", "-consul-addr", "consul:8502", NULL};
    ck_assert_int_eq(cli_parse(3, argv5, envp3, &a, &cfg, err, sizeof err), 0);
    ck_assert_str_eq(cfg.consul_addr, "https://consul:8502");
    config_free(&cfg);
}
END_TEST

START_TEST(test_token_files_are_trimmed_checked_and_never_printed)
{
    const char *tok = write_file("token", "  s3cr3t-token\n", 0644);
    char tokpath[256];
    snprintf(tokpath, sizeof tokpath, "%s", tok);
    char cfgtext[512];
    snprintf(
        cfgtext, sizeof cfgtext,
        "{\"consul\": {\"token_file\": \"%s\"}, \"service\": {\"name\": \"w\", \"token\": \"svc-secret\"},"
        " \"proxy\": {\"kong\": {\"token\": \"kong-secret\"}}}",
        tokpath);
    struct config cfg;
    char err[512];
    ck_assert_int_eq(load(cfgtext, &cfg, err, sizeof err), 0);
    ck_assert_str_eq(cfg.token, "s3cr3t-token");
    ck_assert_uint_eq(cfg.n_warnings, 1);
    ck_assert_ptr_nonnull(strstr(cfg.warnings[0], "readable by group or others"));
    char *json = config_effective_json(&cfg);
    ck_assert_ptr_null(strstr(json, "s3cr3t"));
    ck_assert_ptr_null(strstr(json, "svc-secret"));
    ck_assert_ptr_null(strstr(json, "kong-secret"));
    ck_assert_ptr_nonnull(strstr(json, "<redacted>"));
    free(json);
    config_free(&cfg);
    /* Check headers and URL passwords are credentials too. */
    ck_assert_msg(
        load("{\"service\": {\"name\": \"w\", \"checks\": [{\"http\": "
             "\"http://u:url-secret@127.0.0.1:1/x\", \"interval\": \"10s\", "
             "\"header\": {\"Authorization\": [\"Bearer hdr-secret\"]}}, "
             "{\"ttl\": \"30s\", \"probe\": {\"http\": \"http://p:probe-secret@127.0.0.1:2/\"}}]}}",
             &cfg, err, sizeof err) == 0,
        "%s", err);
    json = config_effective_json(&cfg);
    ck_assert_ptr_null(strstr(json, "hdr-secret"));
    ck_assert_ptr_null(strstr(json, "url-secret"));
    ck_assert_ptr_null(strstr(json, "probe-secret"));
    ck_assert_ptr_nonnull(strstr(json, "http://<redacted>@127.0.0.1:1/x"));
    free(json);
    config_free(&cfg);
    /* Unreadable: one clear error, and the secret's path is named. */
    snprintf(cfgtext, sizeof cfgtext, "{\"consul\": {\"token_file\": \"%s/missing\"}}", dir);
    ck_assert_int_eq(load(cfgtext, &cfg, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "missing: cannot read"));
}
END_TEST

START_TEST(test_defaults_are_documented_values)
{
    struct config cfg;
    char err[512];
    ck_assert_int_eq(load("{}", &cfg, err, sizeof err), 0);
    ck_assert_str_eq(cfg.consul_addr, "127.0.0.1:8500");
    ck_assert_str_eq(cfg.listen, "127.0.0.1:9108");
    ck_assert_int_eq(cfg.resync_ms, 30000);
    ck_assert_int_eq(cfg.drain_ms, 5000);
    ck_assert_int_eq(cfg.deregister, DEREGISTER_ALWAYS);
    ck_assert_int_eq(cfg.watch.wait_ms, 300000);
    ck_assert_int_eq(cfg.watch.quiescence_min_ms, 100);
    ck_assert_int_eq(cfg.watch.quiescence_max_ms, 1000);
    ck_assert_int_eq(cfg.watch.mode, SYNC_MODE_AUTO);
    ck_assert_int_eq(cfg.watch.max_streams, 1000);
    ck_assert_int_eq(cfg.watch.cluster_poll_ms, 5000);
    config_free(&cfg);
    ck_assert_int_eq(load("{\"watch\": {\"cluster_poll\": \"30s\"}}", &cfg, err, sizeof err), 0);
    ck_assert_int_eq(cfg.watch.cluster_poll_ms, 30000);
    config_free(&cfg);
    ck_assert_int_eq(
        load("{\"watch\": {\"mode\": \"detector\"}, \"upstreams\": [{\"service\": \"o\", "
             "\"proxy\": \"kong\"}], \"proxy\": {\"kong\": {}}}",
             &cfg, err, sizeof err),
        0);
    ck_assert_int_eq(cfg.watch.mode, SYNC_MODE_DETECTOR);
    ck_assert_int_eq(cfg.kong.max_in_flight, KONG_DEFAULT_MAX_IN_FLIGHT);
    config_free(&cfg);
}
END_TEST

/* The writer lock's key: lock_prefix as given; else the configured
 * datacenter's default key; else none yet (the election asks the agent). */
START_TEST(test_kong_lock_key_follows_the_datacenter_or_is_left_to_the_agent)
{
    struct config cfg;
    char err[512];
    ck_assert_int_eq(load("{\"proxy\": {\"kong\": {}}}", &cfg, err, sizeof err), 0);
    ck_assert_int_eq(cfg.kong.lock_key_needs_dc, 1); /* the agent's, once it says */
    config_free(&cfg);
    ck_assert_int_eq(load("{\"consul\": {\"datacenter\": \"eu-west\"}, \"proxy\": {\"kong\": {}}}",
                          &cfg, err, sizeof err),
                     0);
    ck_assert_str_eq(cfg.kong.lock_key, "consul-sidecar/eu-west/kong-writer");
    ck_assert_int_eq(cfg.kong.lock_key_needs_dc, 0);
    config_free(&cfg);
    ck_assert_int_eq(load("{\"consul\": {\"datacenter\": \"eu-west\"}, \"proxy\": {\"kong\": "
                          "{\"lock_prefix\": \"locks/kong\"}}}",
                          &cfg, err, sizeof err),
                     0);
    ck_assert_str_eq(cfg.kong.lock_key, "locks/kong");
    config_free(&cfg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *t = tcase_create("core");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_loop_test(t, test_config_bad_input_names_file_key_and_reason, 0,
                        (int)(sizeof bad / sizeof bad[0]));
    tcase_add_test(t, test_config_keys_are_case_insensitive_with_consul_aliases);
    tcase_add_test(t, test_config_single_check_gets_consuls_id_and_probe_is_extracted);
    tcase_add_test(t, test_config_directories_merge_in_order);
    tcase_add_test(t, test_cli_precedence_flags_over_env_over_files);
    tcase_add_test(t, test_cli_rejects_unknown_flags_and_missing_values);
    tcase_add_test(t, test_cli_checks_addresses_and_prefers_the_token_file);
    tcase_add_test(t, test_token_files_are_trimmed_checked_and_never_printed);
    tcase_add_test(t, test_defaults_are_documented_values);
    tcase_add_test(t, test_kong_lock_key_follows_the_datacenter_or_is_left_to_the_agent);
    suite_add_tcase(s, t);
    return unit_run(s);
}
