/* Unit tests for the reconciler's pure core (sidecar/recon.c) and the state
 * file (sidecar/state.c). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sidecar/recon.h"
#include "sidecar/state.h"
#include "tests/unit/unit.h"

/* Builds a set from "host:port=weight" strings (IPv6 in brackets). */
static struct proxy_target_set set_of(const char *const *spec, size_t n)
{
    struct proxy_target_set s = {calloc(n ? n : 1, sizeof(struct proxy_target)), 0, NULL};
    for (size_t i = 0; i < n; i++) {
        char host[128];
        int port, weight;
        if (spec[i][0] == '[')
            ck_assert_int_eq(sscanf(spec[i], "[%127[^]]]:%d=%d", host, &port, &weight), 3);
        else
            ck_assert_int_eq(sscanf(spec[i], "%127[^:]:%d=%d", host, &port, &weight), 3);
        s.items[s.n++] = (struct proxy_target){strdup(host), port, weight};
    }
    return s;
}

#define SET(...)                               \
    set_of((const char *const[]){__VA_ARGS__}, \
           sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *))
#define EMPTY set_of(NULL, 0)

static struct consul_instances instances_of(struct proxy_target_set s, enum consul_health h)
{
    struct consul_instances in = {
        .items = calloc(s.n ? s.n : 1, sizeof(struct consul_instance)), .n = s.n, .index = 7};
    for (size_t i = 0; i < s.n; i++) {
        in.items[i].address = s.items[i].host;
        in.items[i].port = s.items[i].port;
        in.items[i].weight = s.items[i].weight;
        in.items[i].health = h;
    }
    return in;
}

START_TEST(test_diff_is_empty_when_nothing_changed)
{
    struct proxy_target_set d = SET("10.0.0.1:80=1", "10.0.0.2:80=1");
    struct proxy_target_set a = SET("10.0.0.2:80=1", "10.0.0.1:80=1");
    struct proxy_op *ops;
    size_t n;
    ck_assert_int_eq(recon_diff(&d, &a, &ops, &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(ops);
    proxy_target_set_free(&d);
    proxy_target_set_free(&a);
}
END_TEST

START_TEST(test_diff_adds_before_weights_before_removals)
{
    struct proxy_target_set d = SET("10.0.0.1:80=1", "10.0.0.3:80=1", "10.0.0.2:80=5");
    struct proxy_target_set a = SET("10.0.0.2:80=1", "10.0.0.9:80=1");
    struct proxy_op *ops;
    size_t n;
    ck_assert_int_eq(recon_diff(&d, &a, &ops, &n), 0);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(ops[0].kind, PROXY_OP_ADD);
    ck_assert_str_eq(ops[0].target.host, "10.0.0.1");
    ck_assert_int_eq(ops[1].kind, PROXY_OP_ADD);
    ck_assert_str_eq(ops[1].target.host, "10.0.0.3");
    ck_assert_int_eq(ops[2].kind, PROXY_OP_SET_WEIGHT);
    ck_assert_int_eq(ops[2].target.weight, 5);
    ck_assert_int_eq(ops[3].kind, PROXY_OP_REMOVE);
    ck_assert_str_eq(ops[3].target.host, "10.0.0.9");
    recon_ops_free(ops);
    proxy_target_set_free(&d);
    proxy_target_set_free(&a);
}
END_TEST

START_TEST(test_diff_compares_ipv6_by_value_not_spelling)
{
    struct proxy_target_set d = SET("[fd00::21]:80=1");
    struct proxy_target_set a = SET("[fd00:0000:0000:0000:0000:0000:0000:0021]:80=1");
    struct proxy_op *ops;
    size_t n;
    ck_assert_int_eq(recon_diff(&d, &a, &ops, &n), 0);
    ck_assert_uint_eq(n, 0);
    proxy_target_set_free(&d);
    proxy_target_set_free(&a);
}
END_TEST

START_TEST(test_capped_weights_read_back_are_not_a_change)
{
    struct proxy_target_set d = SET("10.0.0.1:80=1000", "10.0.0.2:80=7");
    struct proxy_target_set a = SET("10.0.0.1:80=256", "10.0.0.2:80=7");
    struct proxy_op *ops;
    size_t n;
    ck_assert_int_eq(recon_diff(&d, &a, &ops, &n), 0);
    ck_assert_uint_eq(n, 1); /* uncapped: looks like a weight change */
    recon_ops_free(ops);
    recon_cap_weights(&d, 256);
    ck_assert_int_eq(recon_diff(&d, &a, &ops, &n), 0);
    ck_assert_uint_eq(n, 0);
    recon_cap_weights(&d, 0); /* 0 = no cap */
    ck_assert_int_eq(d.items[1].weight, 7);
    proxy_target_set_free(&d);
    proxy_target_set_free(&a);
}
END_TEST

START_TEST(test_desired_drops_critical_and_merges_duplicates)
{
    struct proxy_target_set s = SET("10.0.0.2:80=1", "10.0.0.1:80=1", "10.0.0.1:80=3");
    struct consul_instances in = instances_of(s, CONSUL_PASSING);
    in.items[0].health = CONSUL_CRITICAL;
    struct proxy_target_set out;
    ck_assert_int_eq(recon_desired_from_instances(&in, &out), 0);
    ck_assert_uint_eq(out.n, 1);
    ck_assert_str_eq(out.items[0].host, "10.0.0.1");
    ck_assert_int_eq(out.items[0].weight, 3);
    proxy_target_set_free(&out);
    free(in.items);
    proxy_target_set_free(&s);
}
END_TEST

START_TEST(test_policy_keeps_last_good_on_errors)
{
    struct recon_policy p;
    recon_policy_init(&p, 10000, 1);
    struct proxy_target_set s = SET("10.0.0.1:80=1");
    struct consul_instances in = instances_of(s, CONSUL_PASSING);
    uint64_t recheck = 0;
    ck_assert_int_eq(recon_policy_feed(&p, &in, 1, 1000, &recheck), RECON_APPLY);
    ck_assert_int_eq(recon_policy_feed(&p, NULL, 1, 2000, &recheck), RECON_KEEP);
    ck_assert_uint_eq(p.last_good.n, 1);
    /* Same answer again: a return is not a change. */
    ck_assert_int_eq(recon_policy_feed(&p, &in, 1, 3000, &recheck), RECON_KEEP);
    free(in.items);
    proxy_target_set_free(&s);
    recon_policy_free(&p);
}
END_TEST

START_TEST(test_policy_empties_only_after_stable_hold_down)
{
    struct recon_policy p;
    recon_policy_init(&p, 10000, 1);
    struct proxy_target_set s = SET("10.0.0.1:80=1");
    struct consul_instances in = instances_of(s, CONSUL_PASSING);
    struct consul_instances none = {.index = 9};
    uint64_t recheck = 0;
    ck_assert_int_eq(recon_policy_feed(&p, &in, 1, 1000, &recheck), RECON_APPLY);
    ck_assert_int_eq(recon_policy_feed(&p, &none, 1, 2000, &recheck), RECON_HOLD);
    ck_assert_uint_eq(recheck, 12000);
    ck_assert_int_eq(recon_policy_feed(&p, &none, 1, 11999, &recheck), RECON_HOLD);
    ck_assert_uint_eq(p.last_good.n, 1);
    /* The instance came back inside the window: the hold is forgotten. */
    ck_assert_int_eq(recon_policy_feed(&p, &in, 1, 11000, &recheck), RECON_KEEP);
    ck_assert_int_eq(recon_policy_feed(&p, &none, 1, 20000, &recheck), RECON_HOLD);
    ck_assert_uint_eq(recheck, 30000);
    ck_assert_int_eq(recon_policy_feed(&p, &none, 1, 30000, &recheck), RECON_APPLY);
    ck_assert_uint_eq(p.last_good.n, 0);
    free(in.items);
    proxy_target_set_free(&s);
    recon_policy_free(&p);
}
END_TEST

/* Consul failing during a hold (down, garbage, no leader) breaks the
 * confirmation: the empty answer from before the error never empties the
 * upstream; the hold starts again from the next good answer. */
START_TEST(test_policy_error_during_hold_starts_it_again)
{
    struct recon_policy p;
    recon_policy_init(&p, 10000, 1);
    struct proxy_target_set s = SET("10.0.0.1:80=1");
    struct consul_instances in = instances_of(s, CONSUL_PASSING);
    struct consul_instances none = {.index = 9};
    uint64_t recheck = 0;
    ck_assert_int_eq(recon_policy_feed(&p, &in, 1, 1000, &recheck), RECON_APPLY);
    ck_assert_int_eq(recon_policy_feed(&p, &none, 1, 2000, &recheck), RECON_HOLD);
    ck_assert_int_eq(recon_policy_doubt(&p), 1);
    ck_assert_int_eq(recon_policy_doubt(&p), 0);
    ck_assert_int_eq(recon_policy_feed(&p, &none, 1, 12000, &recheck), RECON_HOLD);
    ck_assert_uint_eq(recheck, 22000);
    ck_assert_uint_eq(p.last_good.n, 1);
    ck_assert_int_eq(recon_policy_feed(&p, &none, 1, 22000, &recheck), RECON_APPLY);
    ck_assert_uint_eq(p.last_good.n, 0);
    free(in.items);
    proxy_target_set_free(&s);
    recon_policy_free(&p);
}
END_TEST

START_TEST(test_policy_never_empties_without_a_leader_or_for_nginx)
{
    struct recon_policy p, ng;
    recon_policy_init(&p, 0, 1);
    recon_policy_init(&ng, 0, 0);
    struct proxy_target_set s = SET("10.0.0.1:80=1");
    struct consul_instances in = instances_of(s, CONSUL_PASSING);
    struct consul_instances none = {.index = 9};
    uint64_t recheck = 0;
    recon_policy_feed(&p, &in, 1, 1, &recheck);
    recon_policy_feed(&ng, &in, 1, 1, &recheck);
    /* An agent that is rejoining answers [] with no known leader. */
    ck_assert_int_eq(recon_policy_feed(&p, &none, 0, 100000, &recheck), RECON_KEEP);
    ck_assert_uint_eq(p.last_good.n, 1);
    ck_assert_int_eq(recon_policy_feed(&ng, &none, 1, 100000, &recheck), RECON_KEEP);
    ck_assert_uint_eq(ng.last_good.n, 1);
    free(in.items);
    proxy_target_set_free(&s);
    recon_policy_free(&p);
    recon_policy_free(&ng);
}
END_TEST

START_TEST(test_quiesce_applies_first_change_at_once_and_coalesces_the_rest)
{
    struct recon_quiesce q;
    recon_quiesce_init(&q, 100, 1000);
    ck_assert_uint_eq(recon_quiesce_change(&q, 5000), 5000);
    recon_quiesce_applied(&q, 5000);
    /* Within min of the last apply: wait for quiet. */
    ck_assert_uint_eq(recon_quiesce_change(&q, 5050), 5150);
    ck_assert_uint_eq(recon_quiesce_change(&q, 5100), 5200);
    /* A stream of changes never delays beyond max. */
    uint64_t due = 0;
    for (uint64_t t = 5150; t < 7000; t += 50)
        due = recon_quiesce_change(&q, t);
    ck_assert_uint_eq(due, 6050);
    recon_quiesce_applied(&q, 6050);
    /* Quiet again: immediate. */
    ck_assert_uint_eq(recon_quiesce_change(&q, 9000), 9000);
}
END_TEST

START_TEST(test_quiesce_max_is_jittered_per_upstream)
{
    int64_t lo = INT64_MAX, hi = 0;
    for (int i = 0; i < 200; i++) {
        struct recon_quiesce q;
        recon_quiesce_init_jittered(&q, 100, 1000);
        ck_assert_int_ge(q.max_ms, 900);
        ck_assert_int_le(q.max_ms, 1100);
        ck_assert_int_eq(q.min_ms, 100);
        lo = q.max_ms < lo ? q.max_ms : lo;
        hi = q.max_ms > hi ? q.max_ms : hi;
    }
    ck_assert_int_ge(hi - lo, 100); /* spread, not one synchronised value */
    struct recon_quiesce q;
    recon_quiesce_init_jittered(&q, 1000, 1000); /* never below min */
    ck_assert_int_ge(q.max_ms, 1000);
    recon_quiesce_init_jittered(&q, 0, 0); /* off stays off */
    ck_assert_int_eq(q.max_ms, 0);
}
END_TEST

START_TEST(test_quiesce_off_is_immediate)
{
    struct recon_quiesce q;
    recon_quiesce_init(&q, 0, 0);
    ck_assert_uint_eq(recon_quiesce_change(&q, 10), 10);
    recon_quiesce_applied(&q, 10);
    ck_assert_uint_eq(recon_quiesce_change(&q, 11), 11);
}
END_TEST

/* ---- state file ----------------------------------------------------------- */

static char dir[64];

static void mkdir_tmp(void)
{
    snprintf(dir, sizeof dir, "/tmp/cs-state.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void rm_tmp(void)
{
    char p[128];
    snprintf(p, sizeof p, "%s/upstreams.json", dir);
    unlink(p);
    rmdir(dir);
}

/* The state file keeps what was applied by sharing the applied copy (one
 * block for both at 10,000 targets, not two); a copy to change is its own. */
START_TEST(test_target_sets_share_copies_and_copy_to_change)
{
    struct proxy_target_set raw = SET("10.0.0.1:80=1", "10.0.0.2:80=300");
    struct proxy_target_set applied, kept, want, from_raw;
    ck_assert_int_eq(proxy_target_set_copy(&applied, &raw), 0);
    ck_assert_int_eq(proxy_target_set_share(&kept, &applied), 0);
    ck_assert_ptr_eq(kept.items, applied.items); /* no second block */
    ck_assert_int_eq(proxy_target_set_share(&from_raw, &raw), 0);
    ck_assert_ptr_ne(from_raw.items, raw.items); /* not a copy: copied */
    ck_assert_int_eq(proxy_target_set_copy(&want, &applied), 0);
    ck_assert_ptr_ne(want.items, applied.items);
    recon_cap_weights(&want, 256);
    ck_assert_int_eq(applied.items[1].weight, 300); /* the shared one is untouched */
    proxy_target_set_free(&applied);                /* the holder that made it goes first */
    ck_assert(recon_sets_equal(&kept, &raw));
    ck_assert_str_eq(kept.items[1].host, "10.0.0.2");
    proxy_target_set_free(&kept);
    proxy_target_set_free(&want);
    proxy_target_set_free(&from_raw);
    proxy_target_set_free(&raw);
}
END_TEST

START_TEST(test_state_round_trips_and_missing_file_is_empty)
{
    mkdir_tmp();
    struct state st = {0}, back = {0};
    char err[256];
    ck_assert_int_eq(state_load(dir, &back, err, sizeof err), 0);
    ck_assert_uint_eq(back.n, 0);
    struct proxy_target_set s = SET("10.0.0.1:80=1", "[fd00::1]:81=7");
    ck_assert_int_eq(state_set(&st, "orders", "haproxy", 42, &s), 0);
    ck_assert_int_eq(state_save(dir, &st, err, sizeof err), 0);
    ck_assert_int_eq(state_load(dir, &back, err, sizeof err), 0);
    const struct state_upstream *u = state_get(&back, "haproxy", "orders");
    ck_assert_ptr_nonnull(u);
    ck_assert_str_eq(u->proxy, "haproxy");
    ck_assert_uint_eq(u->index, 42);
    ck_assert(recon_sets_equal(&u->targets, &s));
    /* Names that need escaping in JSON, an index past 2^53 and an
     * upstream with no targets come back as they went in. */
    struct proxy_target_set none = {0};
    ck_assert_int_eq(state_set(&st, "we\"ird\\na\tme\x01", "kong", 9007199254740993ull, &none), 0);
    ck_assert_int_eq(state_save(dir, &st, err, sizeof err), 0);
    state_free(&back);
    ck_assert_int_eq(state_load(dir, &back, err, sizeof err), 0);
    ck_assert_uint_eq(back.n, 2);
    u = state_get(&back, "kong", "we\"ird\\na\tme\x01");
    ck_assert_ptr_nonnull(u);
    ck_assert_uint_eq(u->targets.n, 0);
    ck_assert_ptr_nonnull(state_get(&back, "haproxy", "orders"));
    state_free(&st);
    state_free(&back);
    proxy_target_set_free(&s);
    rm_tmp();
}
END_TEST

START_TEST(test_state_tells_apart_the_same_name_on_two_proxies)
{
    mkdir_tmp();
    struct state st = {0}, back = {0};
    char err[256];
    struct proxy_target_set k = SET("10.0.0.1:80=1"), h = SET("10.0.0.2:8080=5", "10.0.0.3:8080=5");
    ck_assert_int_eq(state_set(&st, "orders", "kong", 7, &k), 0);
    ck_assert_int_eq(state_set(&st, "orders", "haproxy", 9, &h), 0);
    ck_assert_uint_eq(st.n, 2);
    /* Saving one proxy's upstream again replaces only its own entry. */
    ck_assert_int_eq(state_set(&st, "orders", "kong", 8, &k), 0);
    ck_assert_uint_eq(st.n, 2);
    ck_assert_int_eq(state_save(dir, &st, err, sizeof err), 0);
    ck_assert_int_eq(state_load(dir, &back, err, sizeof err), 0);
    ck_assert_uint_eq(back.n, 2);
    const struct state_upstream *uk = state_get(&back, "kong", "orders");
    const struct state_upstream *uh = state_get(&back, "haproxy", "orders");
    ck_assert_ptr_nonnull(uk);
    ck_assert_ptr_nonnull(uh);
    ck_assert_uint_eq(uk->index, 8);
    ck_assert(recon_sets_equal(&uk->targets, &k));
    ck_assert_uint_eq(uh->index, 9);
    ck_assert(recon_sets_equal(&uh->targets, &h));
    ck_assert_ptr_null(state_get(&back, "nginx", "orders"));
    state_free(&st);
    state_free(&back);
    proxy_target_set_free(&k);
    proxy_target_set_free(&h);
    rm_tmp();
}
END_TEST

START_TEST(test_state_reads_a_version_1_file_and_saves_version_2)
{
    mkdir_tmp();
    /* Written by an older sidecar: keyed by upstream name, proxy inside. */
    const char *v1 = "{\"version\":1,\"upstreams\":{"
                     "\"orders\":{\"proxy\":\"haproxy\",\"index\":42,"
                     "\"targets\":[{\"host\":\"10.0.0.1\",\"port\":8080,\"weight\":1}]},"
                     "\"pay\":{\"proxy\":\"kong\",\"index\":3,\"targets\":[]}}}\n";
    char p[128], err[256];
    snprintf(p, sizeof p, "%s/upstreams.json", dir);
    FILE *f = fopen(p, "w");
    fputs(v1, f);
    fclose(f);
    struct state st = {0}, back = {0};
    ck_assert_int_eq(state_load(dir, &st, err, sizeof err), 0);
    ck_assert_uint_eq(st.n, 2);
    const struct state_upstream *u = state_get(&st, "haproxy", "orders");
    ck_assert_ptr_nonnull(u);
    ck_assert_uint_eq(u->index, 42);
    ck_assert_uint_eq(u->targets.n, 1);
    ck_assert_str_eq(u->targets.items[0].host, "10.0.0.1");
    ck_assert_ptr_null(state_get(&st, "kong", "orders")); /* it was HAProxy's */
    ck_assert_ptr_nonnull(state_get(&st, "kong", "pay"));
    /* A Kong "orders" saved now sits beside HAProxy's, in a version-2 file. */
    struct proxy_target_set k = SET("10.0.0.9:80=1");
    ck_assert_int_eq(state_set(&st, "orders", "kong", 50, &k), 0);
    ck_assert_int_eq(state_save(dir, &st, err, sizeof err), 0);
    char text[4096];
    f = fopen(p, "r");
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    ck_assert_ptr_nonnull(strstr(text, "{\"version\":2,\"upstreams\":[\n{\"proxy\":"));
    ck_assert_int_eq(state_load(dir, &back, err, sizeof err), 0);
    ck_assert_uint_eq(back.n, 3);
    ck_assert_uint_eq(state_get(&back, "haproxy", "orders")->index, 42);
    ck_assert_uint_eq(state_get(&back, "kong", "orders")->index, 50);
    state_free(&st);
    state_free(&back);
    proxy_target_set_free(&k);
    rm_tmp();
}
END_TEST

static const char *const corrupt[] = {
    "",
    "{",
    "[]",
    "{\"version\":2,\"upstreams\":{}}",
    "{\"version\":1,\"upstreams\":{\"a\":{\"proxy\":\"kong\",\"index\":1,\"targets\":[{\"host\":\"x\",\"port\":0,\"weight\":1}]}}}",
    "{\"version\":1,\"upstreams\":{\"a\":{\"proxy\":\"kong\",\"index\":1,\"targets\":[{\"host\":1,\"port\":80,\"weight\":1}]}}}",
    "{\"version\":1,\"upstreams\":{\"a\":{\"proxy\":\"kong\",\"index\":1}}}",
    "{\"version\":3,\"upstreams\":[]}",
    "{\"version\":2,\"upstreams\":[{\"proxy\":\"kong\",\"index\":1,\"targets\":[]}]}",
    "{\"version\":2,\"upstreams\":[{\"proxy\":\"kong\",\"name\":\"a\",\"index\":1,\"targets\":[]},"
    "{\"proxy\":\"kong\",\"name\":\"a\",\"index\":2,\"targets\":[]}]}",
};

START_TEST(test_state_corrupt_file_is_refused_whole)
{
    mkdir_tmp();
    char p[128], err[256];
    snprintf(p, sizeof p, "%s/upstreams.json", dir);
    FILE *f = fopen(p, "w");
    fputs(corrupt[_i], f);
    fclose(f);
    struct state st = {0};
    ck_assert_int_eq(state_load(dir, &st, err, sizeof err), -1);
    ck_assert_uint_eq(st.n, 0);
    ck_assert_ptr_nonnull(strstr(err, "upstreams.json"));
    rm_tmp();
}
END_TEST

START_TEST(test_state_failed_write_keeps_the_old_file)
{
    if (geteuid() == 0) {
        /* root ignores directory permissions; use a path that cannot exist */
        struct state st = {0};
        char err[256];
        ck_assert_int_eq(state_save("/nonexistent/dir", &st, err, sizeof err), -1);
        ck_assert_ptr_nonnull(strstr(err, "/nonexistent/dir"));
        return;
    }
    mkdir_tmp();
    struct state st = {0}, back = {0};
    char err[256];
    struct proxy_target_set s = SET("10.0.0.1:80=1");
    state_set(&st, "orders", "kong", 1, &s);
    ck_assert_int_eq(state_save(dir, &st, err, sizeof err), 0);
    chmod(dir, 0500);
    state_set(&st, "orders", "kong", 2, &s);
    ck_assert_int_eq(state_save(dir, &st, err, sizeof err), -1);
    chmod(dir, 0700);
    ck_assert_int_eq(state_load(dir, &back, err, sizeof err), 0);
    ck_assert_uint_eq(state_get(&back, "kong", "orders")->index, 1);
    state_free(&st);
    state_free(&back);
    proxy_target_set_free(&s);
    rm_tmp();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("recon");
    TCase *t = tcase_create("core");
    tcase_add_test(t, test_diff_is_empty_when_nothing_changed);
    tcase_add_test(t, test_diff_adds_before_weights_before_removals);
    tcase_add_test(t, test_diff_compares_ipv6_by_value_not_spelling);
    tcase_add_test(t, test_capped_weights_read_back_are_not_a_change);
    tcase_add_test(t, test_desired_drops_critical_and_merges_duplicates);
    tcase_add_test(t, test_policy_keeps_last_good_on_errors);
    tcase_add_test(t, test_policy_empties_only_after_stable_hold_down);
    tcase_add_test(t, test_policy_error_during_hold_starts_it_again);
    tcase_add_test(t, test_policy_never_empties_without_a_leader_or_for_nginx);
    tcase_add_test(t, test_quiesce_applies_first_change_at_once_and_coalesces_the_rest);
    tcase_add_test(t, test_quiesce_off_is_immediate);
    tcase_add_test(t, test_quiesce_max_is_jittered_per_upstream);
    tcase_add_test(t, test_target_sets_share_copies_and_copy_to_change);
    tcase_add_test(t, test_state_round_trips_and_missing_file_is_empty);
    tcase_add_test(t, test_state_tells_apart_the_same_name_on_two_proxies);
    tcase_add_test(t, test_state_reads_a_version_1_file_and_saves_version_2);
    tcase_add_loop_test(t, test_state_corrupt_file_is_refused_whole, 0,
                        (int)(sizeof corrupt / sizeof corrupt[0]));
    tcase_add_test(t, test_state_failed_write_keeps_the_old_file);
    suite_add_tcase(s, t);
    return unit_run(s);
}
