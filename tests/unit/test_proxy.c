/* Unit tests for proxy/: HAProxy `show servers state` parsing and server
 * naming, Kong target normalization, page parsing and error bodies, nginx
 * rendering and reading back. */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/unconst.h"
#include "lib/buf.h"
#include "lib/loop.h"
#include "proxy/haproxy.h"
#include "proxy/kong.h"
#include "proxy/nginx.h"
#include "tests/unit/unit.h"

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
        "3 be_orders 4 cs-fd00::1:81 fd00::1 2 0 3 1 5 1 0 0 0 0 0 0 - 81 - 0 0 - - 0\n"
        "3 be_orders 5 cs-10.0.0.3:80 10.0.0.3 2 8 1 1 5 1 0 0 0 0 0 0 - 80 - 0 0 - - 0\n\n";
    struct proxy_target_set set;
    char err[256];
    ck_assert_int_eq(
        haproxy_parse_servers_state(text, HAPROXY_SERVER_PREFIX, &set, err, sizeof err), 0);
    ck_assert_uint_eq(set.n, 2); /* manual: not ours; cs-10.0.0.2 in forced maint,
                                  * cs-10.0.0.3 left in drain */
    ck_assert_str_eq(set.items[0].host, "10.0.0.1");
    ck_assert_int_eq(set.items[0].weight, 7);
    ck_assert_str_eq(set.items[1].host, "fd00::1");
    ck_assert_int_eq(set.items[1].port, 81);
    proxy_target_set_free(&set);
    /* The captured 2.6.12 fixture has no server of ours. */
    char *fx = slurp("tests/fixtures/haproxy/show_servers_state.txt");
    ck_assert_int_eq(haproxy_parse_servers_state(fx, HAPROXY_SERVER_PREFIX, &set, err, sizeof err),
                     0);
    ck_assert_uint_eq(set.n, 0);
    ck_assert_int_eq(haproxy_parse_servers_state(fx, "orders", &set, err, sizeof err), 0);
    ck_assert_uint_eq(set.n, 1); /* orders1 ready; orders2/3 are config-disabled maint slots */
    proxy_target_set_free(&set);
    free(fx);
    ck_assert_int_eq(
        haproxy_parse_servers_state("Can't find backend.\n\n", "cs-", &set, err, sizeof err), -1);
    ck_assert_str_eq(err, "Can't find backend.");
    ck_assert_int_eq(haproxy_parse_servers_state("1\n3 be x\n", "cs-", &set, err, sizeof err), -1);
    struct proxy_target t = {"10.0.3.21", 8080, 1};
    char name[64];
    ck_assert_str_eq(haproxy_server_name(&t, name, sizeof name), "cs-10.0.3.21:8080");
    /* Another spelling of an IPv6 address names the server HAProxy shows. */
    struct proxy_target t6 = {"FD00:0:0::1", 81, 1};
    ck_assert_str_eq(haproxy_server_name(&t6, name, sizeof name), "cs-fd00::1:81");
}
END_TEST

START_TEST(test_haproxy_counts_sessions_of_a_draining_server)
{
    /* Captured from 2.6.12: "show stat be_x 4 -1" with two idle servers. */
    char *fx = slurp("tests/fixtures/haproxy/show_stat_servers.csv");
    ck_assert_int_eq(haproxy_parse_stat_sessions(fx, "cs-127.0.0.1:9"), 0);
    ck_assert_int_eq(haproxy_parse_stat_sessions(fx, "manual"), 0);
    ck_assert_int_eq(haproxy_parse_stat_sessions(fx, "cs-127.0.0.1:10"), -1);
    ck_assert_int_eq(haproxy_parse_stat_sessions(fx, "cs-127.0.0.1"), -1); /* whole name only */
    free(fx);
    /* Sessions in flight (scur 2) and queued (qcur 1) both count. */
    const char *busy = "# pxname,svname,qcur,qmax,scur,smax\n"
                       "be,cs-10.0.0.1:80,1,1,2,5\n"
                       "be,cs-fd00::1:81,,0,0,1\n";
    ck_assert_int_eq(haproxy_parse_stat_sessions(busy, "cs-10.0.0.1:80"), 3);
    ck_assert_int_eq(haproxy_parse_stat_sessions(busy, "cs-fd00::1:81"), 0);
    ck_assert_int_eq(
        haproxy_parse_stat_sessions("# pxname,svname,qcur,scur\n"
                                    "be,cs-x,99999999999999999999,99999999999999999999\n",
                                    "cs-x"),
        2000000);
    /* Error lines and unknown layouts are not a count. */
    ck_assert_int_eq(haproxy_parse_stat_sessions("No such proxy.\n", "cs-10.0.0.1:80"), -2);
    ck_assert_int_eq(haproxy_parse_stat_sessions("# pxname,svname\nbe,cs-x,1\n", "cs-x"), -2);
    ck_assert_int_eq(
        haproxy_parse_stat_sessions("# pxname,svname,qcur,scur\nbe,cs-x,0,z\n", "cs-x"), -2);
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

/* HAProxy's socket is gone (restarted, stopped): every queued command fails
 * from the loop, after the call that queued it has returned, one at a time
 * (a long batch does not recurse), and freeing the driver with commands
 * still queued releases them exactly once. */
struct hap_seen {
    int reads, applies, in_call;
    int fired_in_call;
    size_t failed_ops;
    char err[300];
};

static void hap_on_read(const struct proxy_target_set *actual, const char *err, void *arg)
{
    struct hap_seen *s = arg;
    s->reads++;
    s->fired_in_call |= s->in_call;
    ck_assert_ptr_null(actual);
    snprintf(s->err, sizeof s->err, "%s", err);
}

static void hap_on_apply(int ok, const struct proxy_op_result *r, size_t n, const char *err,
                         void *arg)
{
    struct hap_seen *s = arg;
    s->applies++;
    s->fired_in_call |= s->in_call;
    ck_assert_int_eq(ok, 0);
    for (size_t i = 0; i < n; i++)
        s->failed_ops += !r[i].ok;
}

START_TEST(test_haproxy_unreachable_socket_fails_from_the_loop)
{
    struct loop *l = loop_new();
    char err[256], path[200], rt[220], host[32];
    snprintf(path, sizeof path, "/tmp/cs-unit-no-haproxy-%d.sock", (int)getpid());
    unlink(path);
    snprintf(rt, sizeof rt, "unix://%s", path);
    struct haproxy_opts o = {.runtime = rt, .timeout_ms = 1000};
    struct proxy *p = haproxy_new(l, &o, err, sizeof err);
    ck_assert_ptr_nonnull(p);
    struct hap_seen s = {0};
    enum { N = 20000 };
    struct proxy_op *ops = calloc(N, sizeof *ops);
    for (int i = 0; i < N; i++) {
        snprintf(host, sizeof host, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        ops[i].kind = PROXY_OP_ADD;
        ops[i].target.host = strdup(host);
        ops[i].target.port = 80;
        ops[i].target.weight = 1;
    }
    struct proxy_target_set want = {0};
    s.in_call = 1;
    ck_assert_int_eq(p->ops->read(p, "orders", hap_on_read, &s, err, sizeof err), 0);
    ck_assert_int_eq(p->ops->apply(p, "orders", ops, N, &want, hap_on_apply, &s, err, sizeof err),
                     0);
    s.in_call = 0;
    ck_assert_int_eq(s.reads + s.applies, 0);
    for (int i = 0; i < 200000 && s.applies == 0; i++)
        loop_run_once(l, 100);
    ck_assert_int_eq(s.fired_in_call, 0);
    ck_assert_int_eq(s.reads, 1);
    ck_assert_int_eq(s.applies, 1);
    ck_assert_uint_eq(s.failed_ops, N);
    ck_assert_msg(strstr(s.err, "cannot connect to the HAProxy runtime API at unix://") != NULL,
                  "%s", s.err);
    /* Freed with a read and a batch still queued: no leak, no double free
     * (ASan and valgrind judge). */
    ck_assert_int_eq(p->ops->read(p, "orders", hap_on_read, &s, err, sizeof err), 0);
    ck_assert_int_eq(p->ops->apply(p, "orders", ops, 3, &want, hap_on_apply, &s, err, sizeof err),
                     0);
    ck_assert_int_eq(p->ops->apply(p, "users", ops, 3, &want, hap_on_apply, &s, err, sizeof err),
                     0);
    p->ops->free(p);
    ck_assert_int_eq(s.reads, 1);
    for (int i = 0; i < N; i++)
        free(ops[i].target.host);
    free(ops);
    loop_free(l);
}
END_TEST

START_TEST(test_kong_normalizes_targets_like_kong)
{
    char out[128];
    ck_assert_str_eq(kong_normalize_target(norms[_i].host, norms[_i].port, out, sizeof out),
                     norms[_i].want);
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
                                             sizeof next, err, sizeof err),
                     0);
    ck_assert_uint_eq(set.n, 2);
    ck_assert_str_eq(set.items[1].host, "fd00:0000:0000:0000:0000:0000:0000:0021");
    ck_assert_int_eq(set.items[1].weight, 0);
    ck_assert_str_eq(next, "/upstreams/o/targets?offset=3");
    /* Garbage never reads as a set. */
    const char *bad = "{\"data\":[{\"target\":\"10.0.0.1\",\"weight\":\"5\"}],\"next\":null}";
    ck_assert_int_eq(kong_parse_targets_page(bad, strlen(bad), KONG_DEFAULT_TAG, &set, next,
                                             sizeof next, err, sizeof err),
                     -1);
    ck_assert_uint_eq(set.n, 2);
    ck_assert_int_eq(kong_parse_targets_page("{\"data\": 1}", 11, KONG_DEFAULT_TAG, &set, next,
                                             sizeof next, err, sizeof err),
                     -1);
    proxy_target_set_free(&set);
    char *fx = slurp("tests/fixtures/kong/targets_list.json");
    ck_assert_int_eq(kong_parse_targets_page(fx, strlen(fx), "managed-by:consul-sidecar", &set,
                                             next, sizeof next, err, sizeof err),
                     0);
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
    struct proxy_target items[] = {
        {"10.0.0.2", 80, 5}, {"10.0.0.1", 80, 0}, {"fd00::1", 81, 2}, {"orders.internal", 80, 1}};
    struct proxy_target_set set = {items, 4, NULL};
    struct buf a, b;
    buf_init(&a, 0);
    buf_init(&b, 0);
    ck_assert_int_eq(nginx_render("orders", &set, "max_fails=1", &a), 3); /* host name skipped */
    struct proxy_target rev[] = {items[3], items[2], items[1], items[0]};
    struct proxy_target_set set2 = {rev, 4, NULL};
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
    struct proxy_target_set none = {NULL, 0, NULL};
    buf_reset(&a);
    ck_assert_int_eq(nginx_render("orders", &none, NULL, &a),
                     0); /* the driver refuses to write it */
    buf_free(&a);
    buf_free(&b);
}
END_TEST

/* A scripted HAProxy runtime API on a unix socket, served by the same loop:
 * it logs every command and answers like 2.6 in interactive mode; "show
 * stat" reports `scur` sessions on every server. */
struct fake_hap {
    struct loop *l;
    int lfd, cfd;
    char path[200];
    char in[8192];
    size_t in_len;
    char cmds[256][200];
    int n_cmds;
    int scur;
    int dying;   /* shutdown sessions sent: they close a moment later */
    int deleted; /* del server answered "Server deleted." */
};

static void fake_reply(struct fake_hap *f, const char *cmd)
{
    char out[2048];
    const char *server = strrchr(cmd, '/');
    if (strcmp(cmd, "prompt") == 0) {
        snprintf(out, sizeof out, "\n> ");
    } else if (strncmp(cmd, "show stat ", 10) == 0) {
        if (f->dying)
            f->scur = f->dying = 0; /* by now the killed sessions are gone */
        snprintf(out, sizeof out,
                 "# pxname,svname,qcur,qmax,scur,smax\n"
                 "be_orders,cs-10.0.0.1:80,0,0,%d,9\nbe_orders,cs-10.0.0.2:80,0,0,%d,9\n"
                 "be_orders,cs-10.0.0.3:80,0,0,%d,9\n\n> ",
                 f->scur, f->scur, f->scur);
    } else if (strncmp(cmd, "add server ", 11) == 0) {
        snprintf(out, sizeof out, "Already exists a server with the same name in backend.\n\n> ");
    } else if (strncmp(cmd, "del server ", 11) == 0) {
        f->deleted += !f->scur;
        snprintf(out, sizeof out, "%s\n> ",
                 f->scur ? "Server still has connections attached to it, "
                           "cannot remove it.\n"
                         : "Server deleted.\n");
    } else if (strncmp(cmd, "shutdown sessions ", 18) == 0) {
        f->dying = 1; /* like 2.6: closed asynchronously, not at once */
        snprintf(out, sizeof out, "\n\n> ");
    } else {
        snprintf(out, sizeof out, "\n\n> "); /* set server ...: success */
    }
    (void)server;
    ck_assert(send(f->cfd, out, strlen(out), MSG_NOSIGNAL) == (ssize_t)strlen(out));
}

static void fake_on_conn(int fd, short revents, void *arg)
{
    struct fake_hap *f = arg;
    (void)revents;
    ssize_t n = recv(fd, f->in + f->in_len, sizeof f->in - f->in_len - 1, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        loop_fd_unwatch(f->l, fd);
        close(fd);
        f->cfd = -1;
        f->in_len = 0;
        return;
    }
    f->in_len += (size_t)n;
    f->in[f->in_len] = '\0';
    char *nl;
    while ((nl = strchr(f->in, '\n')) != NULL) {
        *nl = '\0';
        if (strcmp(f->in, "prompt") != 0 && f->n_cmds < 256)
            snprintf(f->cmds[f->n_cmds++], sizeof f->cmds[0], "%s", f->in);
        fake_reply(f, f->in);
        size_t used = (size_t)(nl + 1 - f->in);
        memmove(f->in, nl + 1, f->in_len - used + 1);
        f->in_len -= used;
    }
}

static void fake_on_accept(int fd, short revents, void *arg)
{
    struct fake_hap *f = arg;
    (void)revents;
    int c = accept(fd, NULL, NULL);
    if (c < 0)
        return;
    ck_assert_int_eq(f->cfd, -1); /* the driver uses one connection at a time */
    f->cfd = c;
    f->in_len = 0;
    loop_fd_watch(f->l, c, POLLIN, fake_on_conn, f);
}

static void fake_start(struct fake_hap *f, struct loop *l)
{
    memset(f, 0, sizeof *f);
    f->l = l;
    f->cfd = -1;
    snprintf(f->path, sizeof f->path, "/tmp/cs-unit-fake-haproxy-%d.sock", (int)getpid());
    unlink(f->path);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", f->path);
    f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge(f->lfd, 0);
    ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(f->lfd, 4), 0);
    loop_fd_watch(l, f->lfd, POLLIN, fake_on_accept, f);
}

static void fake_stop(struct fake_hap *f)
{
    if (f->cfd >= 0) {
        loop_fd_unwatch(f->l, f->cfd);
        close(f->cfd);
    }
    loop_fd_unwatch(f->l, f->lfd);
    close(f->lfd);
    unlink(f->path);
}

static int fake_count(const struct fake_hap *f, const char *prefix)
{
    int n = 0;
    for (int i = 0; i < f->n_cmds; i++)
        n += strncmp(f->cmds[i], prefix, strlen(prefix)) == 0;
    return n;
}

struct applied {
    int done, ok;
};

static void on_applied_ok(int ok, const struct proxy_op_result *r, size_t n, const char *err,
                          void *arg)
{
    struct applied *a = arg;
    (void)r;
    (void)n;
    (void)err;
    a->done++;
    a->ok = ok;
}

static void run_until(struct loop *l, const int *flag, int ms)
{
    uint64_t end = loop_clock_ms() + (uint64_t)ms;
    while (!*flag && loop_clock_ms() < end)
        loop_run_once(l, 10);
}

static void run_for(struct loop *l, int ms)
{
    int never = 0;
    run_until(l, &never, ms);
}

static struct proxy_op rm_op(const char *host)
{
    struct proxy_op op = {PROXY_OP_REMOVE, {unconst(host), 80, 1}};
    return op;
}

/* A removal is applied once the server is drained; the delete waits in the
 * background until its sessions have ended, then maint, then del server.
 * Three removals drained together ask for sessions once. */
START_TEST(test_haproxy_removal_waits_for_sessions_in_the_background)
{
    struct loop *l = loop_new();
    struct fake_hap f;
    char err[256], rt[220];
    fake_start(&f, l);
    snprintf(rt, sizeof rt, "unix://%s", f.path);
    struct haproxy_opts o = {.runtime = rt, .backend_prefix = "be_", .drain_timeout_ms = 5000};
    struct proxy *p = haproxy_new(l, &o, err, sizeof err);
    ck_assert_ptr_nonnull(p);
    struct proxy_target_set want = {0};
    struct applied a = {0};
    struct proxy_op ops[3] = {rm_op("10.0.0.1"), rm_op("10.0.0.2"), rm_op("10.0.0.3")};
    f.scur = 1;
    ck_assert_int_eq(p->ops->apply(p, "orders", ops, 3, &want, on_applied_ok, &a, err, sizeof err),
                     0);
    run_until(l, &a.done, 3000);
    ck_assert_int_eq(a.done, 1);
    ck_assert_int_eq(a.ok, 1); /* applied at the drain */
    ck_assert_int_eq(fake_count(&f, "set server be_orders/cs-10.0.0.1:80 state drain"), 1);
    run_for(l, 400); /* sessions in flight: only questions */
    ck_assert_int_ge(fake_count(&f, "show stat be_orders 4 -1"), 2);
    ck_assert_int_eq(fake_count(&f, "set server be_orders/cs-10.0.0.1:80 state maint"), 0);
    ck_assert_int_eq(fake_count(&f, "del server"), 0);
    f.scur = 0; /* the sessions end */
    run_for(l, 800);
    for (int k = 1; k <= 3; k++) {
        char m[100], d[100];
        snprintf(m, sizeof m, "set server be_orders/cs-10.0.0.%d:80 state maint", k);
        snprintf(d, sizeof d, "del server be_orders/cs-10.0.0.%d:80", k);
        ck_assert_int_eq(fake_count(&f, m), 1);
        ck_assert_int_eq(fake_count(&f, d), 1);
    }
    ck_assert_int_eq(fake_count(&f, "shutdown sessions"), 0); /* nothing was cut */
    /* Drained together, asked together: once idle, one question sees all three. */
    int asked = fake_count(&f, "show stat");
    f.n_cmds = 0;
    struct applied b = {0};
    ck_assert_int_eq(p->ops->apply(p, "orders", ops, 3, &want, on_applied_ok, &b, err, sizeof err),
                     0);
    run_until(l, &b.done, 3000);
    run_for(l, 300);
    ck_assert_int_eq(fake_count(&f, "del server"), 3);
    ck_assert_int_eq(fake_count(&f, "show stat"), 1);
    ck_assert_int_gt(asked, 1);
    p->ops->free(p);
    fake_stop(&f);
    loop_free(l);
}
END_TEST

/* A session that outlives drain_timeout is cut then (and the delete waits
 * for the cut sessions to be gone: a delete right after "shutdown sessions"
 * can still be refused); an instance added back while its server drains
 * cancels the pending removal. */
START_TEST(test_haproxy_drain_is_bounded_and_cancelled_by_an_add)
{
    struct loop *l = loop_new();
    struct fake_hap f;
    char err[256], rt[220];
    fake_start(&f, l);
    snprintf(rt, sizeof rt, "unix://%s", f.path);
    struct haproxy_opts o = {.runtime = rt, .backend_prefix = "be_", .drain_timeout_ms = 300};
    struct proxy *p = haproxy_new(l, &o, err, sizeof err);
    struct proxy_target_set want = {0};
    struct proxy_op rm = rm_op("10.0.0.1");
    struct applied a = {0};
    f.scur = 1;
    uint64_t t0 = loop_clock_ms();
    ck_assert_int_eq(p->ops->apply(p, "orders", &rm, 1, &want, on_applied_ok, &a, err, sizeof err),
                     0);
    run_until(l, &a.done, 3000);
    ck_assert_int_eq(fake_count(&f, "del server"), 0);
    while (!f.deleted && loop_clock_ms() < t0 + 3000)
        loop_run_once(l, 10);
    ck_assert_int_eq(f.deleted, 1); /* refused, shutdown, the cut sessions gone, deleted */
    ck_assert_uint_ge(loop_clock_ms() - t0, 300); /* not before the timeout */
    ck_assert_int_eq(fake_count(&f, "shutdown sessions server be_orders/cs-10.0.0.1:80"), 1);
    /* Removed, then added back while its sessions run: no delete follows. */
    f.n_cmds = 0;
    f.scur = 1;
    struct applied b = {0}, c = {0};
    ck_assert_int_eq(p->ops->apply(p, "orders", &rm, 1, &want, on_applied_ok, &b, err, sizeof err),
                     0);
    run_until(l, &b.done, 3000);
    struct proxy_op add = {PROXY_OP_ADD, {"10.0.0.1", 80, 5}};
    ck_assert_int_eq(p->ops->apply(p, "orders", &add, 1, &want, on_applied_ok, &c, err, sizeof err),
                     0);
    run_until(l, &c.done, 3000);
    ck_assert_int_eq(c.ok, 1);
    ck_assert_int_eq(fake_count(&f, "set server be_orders/cs-10.0.0.1:80 state ready"), 1);
    run_for(l, 800); /* past the drain timeout */
    ck_assert_int_eq(fake_count(&f, "set server be_orders/cs-10.0.0.1:80 state maint"), 0);
    ck_assert_int_eq(fake_count(&f, "del server"), 0);
    /* Freed with a removal waiting in the background: nothing leaks. */
    ck_assert_int_eq(p->ops->apply(p, "orders", &rm, 1, &want, on_applied_ok, &b, err, sizeof err),
                     0);
    b.done = 0;
    run_until(l, &b.done, 3000);
    p->ops->free(p);
    fake_stop(&f);
    loop_free(l);
}
END_TEST

/* drain_timeout 0: sessions are not waited for; the server is deleted at
 * once (its sessions cut), still after the drain was reported applied. */
START_TEST(test_haproxy_drain_timeout_0_deletes_at_once)
{
    struct loop *l = loop_new();
    struct fake_hap f;
    char err[256], rt[220];
    fake_start(&f, l);
    snprintf(rt, sizeof rt, "unix://%s", f.path);
    struct haproxy_opts o = {.runtime = rt, .backend_prefix = "be_", .drain_timeout_ms = 0};
    struct proxy *p = haproxy_new(l, &o, err, sizeof err);
    struct proxy_target_set want = {0};
    struct proxy_op rm = rm_op("10.0.0.2");
    struct applied a = {0};
    f.scur = 1;
    uint64_t t0 = loop_clock_ms();
    ck_assert_int_eq(p->ops->apply(p, "orders", &rm, 1, &want, on_applied_ok, &a, err, sizeof err),
                     0);
    run_until(l, &a.done, 3000);
    ck_assert_int_eq(a.ok, 1);
    while (!f.deleted && loop_clock_ms() < t0 + 3000)
        loop_run_once(l, 10);
    ck_assert_int_eq(f.deleted, 1);
    ck_assert_uint_lt(loop_clock_ms() - t0, 1500);
    ck_assert_int_eq(fake_count(&f, "shutdown sessions server be_orders/cs-10.0.0.2:80"), 1);
    p->ops->free(p);
    fake_stop(&f);
    loop_free(l);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("proxy");
    TCase *t = tcase_create("core");
    tcase_set_timeout(t, 20); /* the drain tests run a loop for about a second each */
    tcase_add_test(t, test_haproxy_reads_only_its_own_servers);
    tcase_add_test(t, test_haproxy_counts_sessions_of_a_draining_server);
    tcase_add_test(t, test_haproxy_unreachable_socket_fails_from_the_loop);
    tcase_add_test(t, test_haproxy_removal_waits_for_sessions_in_the_background);
    tcase_add_test(t, test_haproxy_drain_is_bounded_and_cancelled_by_an_add);
    tcase_add_test(t, test_haproxy_drain_timeout_0_deletes_at_once);
    tcase_add_loop_test(t, test_kong_normalizes_targets_like_kong, 0,
                        (int)(sizeof norms / sizeof norms[0]));
    tcase_add_test(t, test_kong_pages_keep_only_owned_targets_and_follow_next);
    tcase_add_test(t, test_kong_error_bodies_are_described_by_their_message);
    tcase_add_test(t, test_nginx_renders_deterministically_and_reads_back);
    suite_add_tcase(s, t);
    return unit_run(s);
}
