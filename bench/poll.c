/*
 * The alternative the benchmark compares against: a poller that reads the
 * service from Consul every PERIOD (what a cron script or DNS-TTL discovery
 * does) and applies what changed to HAProxy. It uses the sidecar's own
 * decoder, reconciler and HAProxy driver, so the apply cost is the same and
 * only the way of learning about a change differs.
 *
 * poll CONSUL_URL SERVICE HAPROXY_SOCK BACKEND_PREFIX PERIOD_MS
 * Runs until SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/decode.h"
#include "lib/http.h"
#include "lib/loop.h"
#include "proxy/haproxy.h"
#include "sidecar/recon.h"

struct poller {
    struct loop *loop;
    struct proxy *hap;
    struct loop_timer *tick;
    char url[1024], upstream[256];
    long period_ms;
    struct proxy_target_set want;
    int busy;
};

static void next_tick(struct poller *p)
{
    p->busy = 0;
    loop_timer_start(p->tick, (uint64_t)p->period_ms);
}

static void on_applied(int ok, const struct proxy_op_result *r, size_t n, const char *err,
                       void *arg)
{
    (void)ok, (void)r, (void)n, (void)err;
    next_tick(arg);
}

static void on_read(const struct proxy_target_set *actual, const char *err, void *arg)
{
    struct poller *p = arg;
    struct proxy_op *ops = NULL;
    size_t n = 0;
    char e[256];
    if (actual == NULL || recon_diff(&p->want, actual, &ops, &n) < 0 || n == 0 ||
        p->hap->ops->apply(p->hap, p->upstream, ops, n, &p->want, on_applied, p, e, sizeof e) < 0)
        next_tick(p);
    (void)err;
    recon_ops_free(ops);
}

static void on_consul(struct http_response *r, void *arg)
{
    struct poller *p = arg;
    struct consul_instances in = {0};
    char err[256];
    if (r->err != HTTP_OK || r->status != 200 ||
        consul_decode_health_service(r->body.data, r->body.len, 1, &in, err, sizeof err) < 0) {
        next_tick(p);
        return;
    }
    proxy_target_set_free(&p->want);
    int rc = recon_desired_from_instances(&in, &p->want);
    consul_instances_free(&in);
    if (rc < 0 || p->hap->ops->read(p->hap, p->upstream, on_read, p, err, sizeof err) < 0)
        next_tick(p);
}

static void on_tick(void *arg)
{
    struct poller *p = arg;
    struct http_request rq = {.url = p->url, .timeout_ms = 5000};
    char err[256];
    p->busy = 1;
    if (http_start(p->loop, &rq, on_consul, p, err, sizeof err) == NULL)
        next_tick(p);
}

static void on_term(int signo, void *arg)
{
    (void)signo;
    loop_stop(arg);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: poll CONSUL_URL SERVICE HAPROXY_SOCK BACKEND_PREFIX PERIOD_MS\n");
        return 2;
    }
    struct poller p = {0};
    char err[256], rt[600];
    p.loop = loop_new();
    snprintf(p.url, sizeof p.url, "%s/v1/health/service/%s", argv[1], argv[2]);
    snprintf(p.upstream, sizeof p.upstream, "%s", argv[2]);
    snprintf(rt, sizeof rt, "unix://%s", argv[3]);
    p.period_ms = strtol(argv[5], NULL, 10);
    struct haproxy_opts o = {.runtime = rt, .backend_prefix = argv[4]};
    p.hap = haproxy_new(p.loop, &o, err, sizeof err);
    if (p.loop == NULL || p.hap == NULL || p.period_ms <= 0) {
        fprintf(stderr, "poll: %s\n", p.hap ? "bad period" : err);
        return 1;
    }
    p.tick = loop_timer_new(p.loop, on_tick, &p);
    loop_signal_watch(p.loop, SIGTERM, on_term, p.loop);
    loop_timer_start(p.tick, 0);
    loop_run(p.loop);
    loop_timer_free(p.tick);
    p.hap->ops->free(p.hap);
    proxy_target_set_free(&p.want);
    loop_free(p.loop);
    return 0;
}
