/* Unit tests for consul/scan: the change detector's decoder of
 * /v1/health/state answers, held against the cJSON decoder it replaces on
 * the detector's path (same entries for every answer it accepts) and
 * against hostile answers (a clear reason, no checks kept). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/decode.h"
#include "consul/scan.h"
#include "tests/unit/unit.h"

static char *fixture(const char *name, size_t *len)
{
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/consul/%s", name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "missing fixture %s", path);
    static char buf[1 << 16];
    *len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    char *b = malloc(*len + 1);
    memcpy(b, buf, *len);
    b[*len] = '\0';
    return b;
}

/* Both decoders accept body and agree entry by entry; returns the count. */
static size_t agree(const char *body, size_t len)
{
    struct consul_state_scan s = {0};
    struct consul_check_entry *e;
    size_t n;
    char err[256];
    ck_assert_msg(consul_decode_health_state(body, len, &e, &n, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(consul_scan_health_state(&s, body, len, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(s.n, n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_str_eq(s.e[i].node, e[i].node);
        ck_assert_str_eq(s.e[i].service, e[i].service_name);
        ck_assert_uint_eq(s.e[i].node_len, strlen(e[i].node));
        ck_assert_uint_eq(s.e[i].service_len, strlen(e[i].service_name));
        ck_assert_uint_eq(s.e[i].modify_index, e[i].modify_index);
    }
    consul_check_entries_free(e, n);
    consul_state_scan_free(&s);
    return n;
}

START_TEST(test_scan_agrees_with_cjson_on_consuls_answer)
{
    size_t len;
    char *body = fixture("health_state_critical.json", &len);
    ck_assert_uint_eq(agree(body, len), 1);
    free(body);
    /* The fixture's check beside a node-level one, escapes in both names,
     * a key spelled with an escape, duplicates (the first counts), fields
     * in another order, nested values to skip. */
    static const char two[] =
        " [{\"ModifyIndex\": 7, \"Node\": \"n\\u00e9-1\", \"ServiceName\": \"\",\n"
        "   \"CheckID\": \"serfHealth\", \"Definition\": {\"a\": [1, {\"b\": null}], \"c\": true}},\n"
        "  {\"Node\": \"n2\", \"Node\": \"ignored\", \"Servic\\u0065Name\": \"w\\\"e\\\\b\\/\\t\",\n"
        "   \"ModifyIndex\": 9007199254740992, \"ServiceTags\": [\"x\", \"\\ud83d\\ude00\"],\n"
        "   \"ExposedPort\": -1.5e+3, \"Output\": \"\"}]\r\n";
    ck_assert_uint_eq(agree(two, strlen(two)), 2);
    ck_assert_uint_eq(agree("[]", 2), 0);
}
END_TEST

START_TEST(test_scan_reuses_its_memory_between_answers)
{
    struct consul_state_scan s = {0};
    char err[256];
    size_t cap = 40000, len = 0;
    char *big = malloc(cap);
    len += (size_t)snprintf(big, cap, "[");
    for (int i = 0; i < 300; i++)
        len += (size_t)snprintf(big + len, cap - len,
                                "%s{\"Node\":\"node-%d\",\"ServiceName\":"
                                "\"svc-%d\",\"ModifyIndex\":%d}",
                                i ? "," : "", i % 7, i, i + 1);
    len += (size_t)snprintf(big + len, cap - len, "]");
    ck_assert_int_eq(consul_scan_health_state(&s, big, len, err, sizeof err), 0);
    ck_assert_uint_eq(s.n, 300);
    ck_assert_str_eq(s.e[299].service, "svc-299");
    ck_assert_str_eq(s.e[299].node, "node-5");
    ck_assert_uint_eq(s.e[299].modify_index, 300);
    const void *arena = s.arena, *e = s.e;
    ck_assert_int_eq(consul_scan_health_state(&s, big, len, err, sizeof err), 0);
    ck_assert_ptr_eq(s.arena, arena); /* the same memory, not a new allocation */
    ck_assert_ptr_eq(s.e, e);
    ck_assert_uint_eq(s.n, 300);
    /* A bad answer after a good one keeps none of the good one's checks. */
    ck_assert_int_eq(consul_scan_health_state(&s, big, len - 1, err, sizeof err), -1);
    ck_assert_uint_eq(s.n, 0);
    consul_state_scan_free(&s);
    free(big);
}
END_TEST

START_TEST(test_scan_refuses_what_is_not_an_array_of_checks)
{
    static const struct {
        const char *body, *err;
    } bad[] = {
        {"", "not valid JSON (byte 0: unexpected end)"},
        {"   ", "not valid JSON (byte 3: unexpected end)"},
        {"[", "not valid JSON (byte 1: unexpected end)"},
        {"[{\"Node\":\"n\",\"ServiceName\":\"s\",\"ModifyIndex\":1}",
         "not valid JSON (byte 47: unexpected end)"},
        {"[{\"Node\":\"n\" \"x\":1}]", "not valid JSON (byte 13: expected ',' or '}')"},
        {"[{\"Node\":\"n\",}]", "not valid JSON (byte 13: expected a key)"},
        {"[1,]", "not valid JSON (byte 3: unexpected character)"},
        {"[01]", "not valid JSON (byte 2: expected ',' or ']')"},
        {"[1.]", "not valid JSON (byte 3: bad number)"},
        {"[tru]", "not valid JSON (byte 1: unexpected character)"},
        {"[\"a\\x\"]", "not valid JSON (byte 3: bad escape in a string)"},
        {"[\"a\\u12\"]", "not valid JSON (byte 3: bad \\u escape in a string)"},
        {"[\"\\udc00\"]", "not valid JSON (byte 2: unpaired surrogate in a string)"},
        {"[\"\\ud800x\"]", "not valid JSON (byte 2: unpaired surrogate in a string)"},
        {"[\"a\tb\"]", "not valid JSON (byte 3: control character in a string)"},
        {"[\"abc", "not valid JSON (byte 5: unterminated string)"},
        {"[] []", "not valid JSON (byte 3: data after the answer)"},
        {"<html>502</html>", "not valid JSON (byte 0: unexpected character)"},
        {"{\"Node\":\"n\"}", "expected an array"},
        {"null", "expected an array"},
        {"[{\"Node\":\"n\",\"ServiceName\":\"s\",\"ModifyIndex\":1}, 5]",
         "check 1: missing or mistyped Node/ServiceName/ModifyIndex"},
        {"[{\"Node\":\"n\",\"ServiceName\":\"s\"}]",
         "check 0: missing or mistyped Node/ServiceName/ModifyIndex"},
        {"[{\"Node\":1,\"ServiceName\":\"s\",\"ModifyIndex\":1}]",
         "check 0: missing or mistyped Node/ServiceName/ModifyIndex"},
        {"[{\"Node\":1,\"Node\":\"n\",\"ServiceName\":\"s\",\"ModifyIndex\":1}]",
         "check 0: missing or mistyped Node/ServiceName/ModifyIndex"},
        {"[{\"Node\":\"n\",\"ServiceName\":\"s\",\"ModifyIndex\":-1}]",
         "check 0: missing or mistyped Node/ServiceName/ModifyIndex"},
        {"[{\"Node\":\"n\",\"ServiceName\":\"s\",\"ModifyIndex\":1.5}]",
         "check 0: missing or mistyped Node/ServiceName/ModifyIndex"},
        {"[{\"Node\":\"n\\u0000x\",\"ServiceName\":\"s\",\"ModifyIndex\":1}]",
         "check 0: missing or mistyped Node/ServiceName/ModifyIndex"},
        /* a syntax error later in the answer is the one reported */
        {"[5, [}", "not valid JSON (byte 5: unexpected character)"},
    };
    struct consul_state_scan s = {0};
    char err[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(
            consul_scan_health_state(&s, bad[i].body, strlen(bad[i].body), err, sizeof err) == -1,
            "accepted: %s", bad[i].body);
        ck_assert_msg(strcmp(err, bad[i].err) == 0, "%s -> \"%s\", want \"%s\"", bad[i].body, err,
                      bad[i].err);
        ck_assert_uint_eq(s.n, 0);
    }
    /* Nesting is bounded: 100 levels deep is refused, not recursed into. */
    char deep[260];
    int at = snprintf(deep, sizeof deep, "[{\"Definition\":");
    memset(deep + at, '[', 100);
    deep[at + 100] = '\0';
    ck_assert_int_eq(consul_scan_health_state(&s, deep, strlen(deep), err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "nested too deeply"));
    /* A name longer than the decoders take is a mistyped check. */
    char *long_name = malloc(2000);
    int n = snprintf(long_name, 2000,
                     "[{\"Node\":\"%01100d\",\"ServiceName\":\"s\",\"ModifyIndex\":1}]", 0);
    ck_assert_int_eq(consul_scan_health_state(&s, long_name, (size_t)n, err, sizeof err), -1);
    ck_assert_str_eq(err, "check 0: missing or mistyped Node/ServiceName/ModifyIndex");
    free(long_name);
    consul_state_scan_free(&s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("scan");
    TCase *t = tcase_create("core");
    tcase_add_test(t, test_scan_agrees_with_cjson_on_consuls_answer);
    tcase_add_test(t, test_scan_reuses_its_memory_between_answers);
    tcase_add_test(t, test_scan_refuses_what_is_not_an_array_of_checks);
    suite_add_tcase(s, t);
    return unit_run(s);
}
