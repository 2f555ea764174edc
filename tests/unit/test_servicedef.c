/* Unit tests for consul/servicedef.c alone: a parsed service definition in
 * Consul's format becomes the canonical register body, with Consul's IDs
 * and names for checks, the ownership mark, one-line errors naming the key,
 * and a caller's extension key handed over through its hook. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/servicedef.h"
#include "tests/unit/unit.h"

/* What a fake extension hook saw. */
struct seen {
    int checks, attaches;
    char service_id[64], check_id[64], path[128];
    int64_t ttl_ms;
    int has_ttl_in_body;
};

static int fake_check(void *arg, struct jread *c, const cJSON *v, const char *path)
{
    struct seen *s = arg;
    s->checks++;
    if (!cJSON_IsObject(v))
        return jread_fail(c, path, "expected an object");
    return 0;
}

static int fake_attach(void *arg, struct jread *c, const cJSON *v, const char *path,
                       const char *service_id, const char *check_id, int64_t ttl_ms,
                       const cJSON *check)
{
    struct seen *s = arg;
    s->attaches++;
    snprintf(s->service_id, sizeof s->service_id, "%s", service_id);
    snprintf(s->check_id, sizeof s->check_id, "%s", check_id);
    snprintf(s->path, sizeof s->path, "%s", path);
    s->ttl_ms = ttl_ms;
    s->has_ttl_in_body = cJSON_GetObjectItemCaseSensitive(check, "TTL") != NULL;
    return 0;
}

static struct seen seen;
static const struct servicedef_ext ext = {"probe", fake_check, fake_attach, &seen};
static char err[400];
static struct consul_service svc;

/* Builds the definition in text (at "service"); the return of
 * servicedef_build. */
static int build(const char *text, const struct servicedef_ext *x)
{
    struct jread c = {"f.json", err, sizeof err, 0};
    struct svc_build b = {&c, "node-1", &svc, x};
    cJSON *in = cJSON_Parse(text);
    ck_assert_ptr_nonnull(in);
    memset(&seen, 0, sizeof seen);
    err[0] = '\0';
    int rc = servicedef_build(&b, in, "service");
    cJSON_Delete(in);
    return rc;
}

static void svc_free(void)
{
    cJSON_Delete(svc.definition);
    free(svc.id);
    free(svc.name);
    for (size_t i = 0; i < svc.n_checks; i++) {
        free(svc.checks[i].check_id);
        free(svc.checks[i].name);
    }
    free(svc.checks);
    memset(&svc, 0, sizeof svc);
}

static const char *body_str(const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(svc.definition, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

START_TEST(test_definition_becomes_the_canonical_register_body)
{
    ck_assert_int_eq(build("{\"name\": \"web\", \"port\": 80, \"tags\": [\"a\"], "
                           "\"enable_tag_override\": true, \"check\": {\"ttl\": \"10s\"}}",
                           NULL),
                     0);
    ck_assert_str_eq(svc.name, "web");
    ck_assert_str_eq(svc.id, "web");
    ck_assert_str_eq(body_str("Name"), "web");
    ck_assert_str_eq(body_str("ID"), "web");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(svc.definition, "EnableTagOverride")));
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(svc.definition, "Port")->valueint, 80);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(svc.definition, "Meta");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(meta, CONSUL_META_MANAGED_BY)->valuestring,
                     CONSUL_META_MANAGED_BY_VAL);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(meta, CONSUL_META_SIDECAR_NODE)->valuestring,
                     "node-1");
    /* Check goes into Checks, with the ID and name Consul gives a lone one. */
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(svc.definition, "Check"));
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(svc.definition, "Checks")),
                     1);
    ck_assert_uint_eq(svc.n_checks, 1);
    ck_assert_str_eq(svc.checks[0].check_id, "service:web");
    ck_assert_str_eq(svc.checks[0].name, "Service 'web' check");
    ck_assert_int_eq(svc.checks[0].ttl_ms, 10000);
    svc_free();
}
END_TEST

START_TEST(test_several_checks_are_numbered_and_duplicates_refused)
{
    ck_assert_int_eq(build("{\"name\": \"api\", \"id\": \"api-1\", \"check\": {\"ttl\": \"5s\"}, "
                           "\"checks\": [{\"TTL\": \"6s\", \"name\": \"mine\"}]}",
                           NULL),
                     0);
    ck_assert_uint_eq(svc.n_checks, 2);
    ck_assert_str_eq(svc.checks[0].check_id, "service:api-1:1");
    ck_assert_str_eq(svc.checks[1].check_id, "service:api-1:2");
    ck_assert_str_eq(svc.checks[1].name, "mine");
    svc_free();
    ck_assert_int_eq(build("{\"name\": \"api\", \"checks\": [{\"id\": \"x\", \"ttl\": \"5s\"}, "
                           "{\"CheckID\": \"x\", \"ttl\": \"5s\"}]}",
                           NULL),
                     -1);
    ck_assert_str_eq(err, "f.json: service: two checks with the ID \"x\"");
    ck_assert_ptr_null(svc.definition);
}
END_TEST

START_TEST(test_the_extension_is_handed_over_not_registered)
{
    ck_assert_int_eq(build("{\"name\": \"web\", \"check\": {\"ttl\": \"15s\", "
                           "\"probe\": {\"tcp\": \"127.0.0.1:80\"}}}",
                           &ext),
                     0);
    ck_assert_int_eq(seen.checks, 1);
    ck_assert_int_eq(seen.attaches, 1);
    ck_assert_str_eq(seen.service_id, "web");
    ck_assert_str_eq(seen.check_id, "service:web");
    ck_assert_str_eq(seen.path, "service.check.probe");
    ck_assert_int_eq(seen.ttl_ms, 15000);
    ck_assert_int_eq(seen.has_ttl_in_body, 1);
    const cJSON *ck =
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(svc.definition, "Checks"), 0);
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(ck, "probe"));
    svc_free();
}
END_TEST

/* text: a definition; want: the one-line error. */
static const struct {
    const char *text, *want;
    int with_ext;
} bad[] = {
    {"{\"port\": 80}", "f.json: service.name: missing service name", 0},
    {"{\"name\": \"a\", \"address\": \"0.0.0.0\"}",
     "f.json: service.address: invalid service address \"0.0.0.0\": a service must be reachable at it",
     0},
    {"{\"name\": \"a\", \"nope\": 1}", "f.json: service: unknown key \"nope\"", 0},
    {"{\"name\": \"a\", \"check\": {\"probe\": {}}}",
     "f.json: service.check: unknown key \"probe\"", 0},
    {"{\"name\": \"a\", \"check\": {\"probe\": {}}}",
     "f.json: service.check: probe needs ttl: the sidecar feeds a TTL check from it", 1},
    {"{\"name\": \"a\", \"check\": {\"ttl\": \"5s\", \"probe\": 1}}",
     "f.json: service.check.probe: expected an object", 1},
    {"{\"name\": \"a\", \"check\": {\"ttl\": \"5s\", \"interval\": \"5s\"}}",
     "f.json: service.check: Interval and TTL cannot both be specified", 0},
    {"{\"name\": \"a\", \"checks\": {}}",
     "f.json: service.checks: expected an array of checks, got an object", 0},
};

START_TEST(test_bad_definitions_give_one_line_naming_the_key)
{
    ck_assert_int_eq(build(bad[_i].text, bad[_i].with_ext ? &ext : NULL), -1);
    ck_assert_str_eq(err, bad[_i].want);
    ck_assert_ptr_null(svc.definition);
    ck_assert_ptr_null(svc.id);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("servicedef");
    TCase *t = tcase_create("core");
    tcase_add_test(t, test_definition_becomes_the_canonical_register_body);
    tcase_add_test(t, test_several_checks_are_numbered_and_duplicates_refused);
    tcase_add_test(t, test_the_extension_is_handed_over_not_registered);
    tcase_add_loop_test(t, test_bad_definitions_give_one_line_naming_the_key, 0,
                        (int)(sizeof bad / sizeof bad[0]));
    suite_add_tcase(s, t);
    return unit_run(s);
}
