/* lib/hcl.c: the HCL Consul's files use, into the JSON tree a JSON file
 * gives, and every other input refused with its line and column. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hcl.h"
#include "tests/unit/unit.h"

/* The document as compact JSON (caller frees), or NULL with err set. */
static char *as_json(const char *hcl, char *err, size_t errlen)
{
    cJSON *root = hcl_parse(hcl, strlen(hcl), err, errlen);
    if (root == NULL)
        return NULL;
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static void expect(const char *hcl, const char *json)
{
    char err[300] = "";
    char *s = as_json(hcl, err, sizeof err);
    ck_assert_msg(s != NULL, "%s: %s", hcl, err);
    ck_assert_str_eq(s, json);
    free(s);
}

static void refuse(const char *hcl, const char *why)
{
    char err[300] = "";
    char *s = as_json(hcl, err, sizeof err);
    ck_assert_msg(s == NULL, "accepted: %s -> %s", hcl, s ? s : "");
    ck_assert_str_eq(err, why);
}

START_TEST(test_hcl_reads_what_consul_files_use)
{
    expect("", "{}");
    expect("# only a comment\n// and another\n/* and\na block */\n", "{}");
    expect("node = \"gw-1\"\nport = 8080\nratio = -1.5e2\nok = true\nno = false\n",
           "{\"node\":\"gw-1\",\"port\":8080,\"ratio\":-150,\"ok\":true,\"no\":false}");
    expect("a: 1\n", "{\"a\":1}");
    expect("service {\n  name = \"web\"\n  tags = [\"v1\", \"v2\",]\n}\n",
           "{\"service\":{\"name\":\"web\",\"tags\":[\"v1\",\"v2\"]}}");
    expect("service { name = \"a\" }\nservice { name = \"b\" }\n",
           "{\"service\":[{\"name\":\"a\"},{\"name\":\"b\"}]}");
    expect("service { name = \"a\" }\nservice { name = \"b\" }\nservice { name = \"c\" }\n",
           "{\"service\":[{\"name\":\"a\"},{\"name\":\"b\"},{\"name\":\"c\"}]}");
    expect("meta = { version = \"1\", \"team-name\" = \"gw\" }\n",
           "{\"meta\":{\"version\":\"1\",\"team-name\":\"gw\"}}");
    expect("checks = [\n  { id = \"a\"\n    ttl = \"5s\" },\n  {\n    id = \"b\"\n  }\n]\n",
           "{\"checks\":[{\"id\":\"a\",\"ttl\":\"5s\"},{\"id\":\"b\"}]}");
    expect("upstream \"orders\" \"eu\" { port = 1 }\n",
           "{\"upstream\":{\"orders\":{\"eu\":{\"port\":1}}}}");
    expect("s = \"q\\\"t \\\\ \\n\\t \\u00fc \\u20ac\"\n",
           "{\"s\":\"q\\\"t \\\\ \\n\\t \xc3\xbc \xe2\x82\xac\"}");
    expect("empty = []\nnone = {}\nz = null\n", "{\"empty\":[],\"none\":{},\"z\":null}");
    expect("a = 1, b = 2\n", "{\"a\":1,\"b\":2}");
    expect("a = 1 # why\nb = 2 // and\n", "{\"a\":1,\"b\":2}");
}
END_TEST

START_TEST(test_hcl_refuses_with_line_and_column)
{
    refuse("a = \"x\n", "line 1, column 5: unterminated string");
    refuse("a = 1\nb = \n", "line 2, column 5: expected a value");
    refuse("a = 1\nb = ", "line 2, column 5: expected a value, got the end of the file");
    refuse("a = 1 b = 2\n", "line 1, column 7: expected a new line or ',' after an item");
    refuse("a = 1\na = 2\n", "line 2, column 1: \"a\" given twice");
    refuse("service {\n  name = \"w\"\n", "line 1, column 9: unterminated block, missing }");
    refuse("}\n", "line 1, column 1: unexpected }");
    refuse("a = [1, 2\n", "line 1, column 5: unterminated list, missing ]");
    refuse("a = [1 2]\n", "line 1, column 8: expected ',' or ']' in a list");
    refuse("a = <<EOT\nx\nEOT\n", "line 1, column 5: heredoc strings are not supported");
    refuse("a = \"${var.x}\"\n", "line 1, column 6: templates (\"${...}\") are not supported");
    refuse("a = upper(\"x\")\n",
           "line 1, column 5: expected a value, got \"upper\" (expressions are not supported)");
    refuse("a = \"\\q\"\n", "line 1, column 6: unknown escape \\q");
    refuse("a = \"\\u12\"\n", "line 1, column 6: \\u needs 4 hexadecimal digits");
    refuse("a = \"\\u0000\"\n", "line 1, column 6: \\u0000 is not a character");
    refuse("a = 1.\n", "line 1, column 5: expected digits after the decimal point");
    refuse("a = 12ab\n", "line 1, column 7: unexpected character after a number");
    refuse("a = 8e999\n", "line 1, column 5: number out of range");
    refuse("\"a\nb\" = 1\n", "line 1, column 1: unterminated string");
    refuse("k \"l\\nm\" = 1\n", "line 1, column 10: expected '=' or a block after \"k\"");
    refuse("/* open\n", "line 1, column 1: unterminated /* comment");
    refuse("a = 1\nb {\n", "line 2, column 3: unterminated block, missing }");
    refuse("a = 1\nb { c = 1 }\nb = 2\n", "line 3, column 1: \"b\" given twice");
    refuse("x = 1\nx { }\n", "line 2, column 1: \"x\" is both a value and a block");
    refuse("k \"lbl\" = 1\n", "line 1, column 9: expected '=' or a block after \"k\"");
    refuse("= 1\n", "line 1, column 1: expected a key");
    char err[300];
    ck_assert_ptr_null(hcl_parse("a = 1\0", 6, err, sizeof err));
    ck_assert_str_eq(err, "a NUL byte in the file");
}
END_TEST

START_TEST(test_hcl_bounds_its_depth)
{
    char deep[400] = "a = ";
    memset(deep + 4, '[', 70);
    deep[74] = '\0';
    char err[300];
    ck_assert_ptr_null(hcl_parse(deep, strlen(deep), err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "nested more than 64 deep"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hcl");
    TCase *t = tcase_create("core");
    tcase_add_test(t, test_hcl_reads_what_consul_files_use);
    tcase_add_test(t, test_hcl_refuses_with_line_and_column);
    tcase_add_test(t, test_hcl_bounds_its_depth);
    suite_add_tcase(s, t);
    return unit_run(s);
}
