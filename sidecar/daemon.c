/* The daemon: wiring and signals; see daemon.h. */
#include "sidecar/daemon.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "consul/client.h"
#include "consul/decode.h"
#include "health/probe.h"
#include "lib/dur.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/rand.h"
#include "proxy/haproxy.h"
#include "proxy/kong.h"
#include "proxy/nginx.h"
#include "sidecar/cli.h"
#include "sidecar/clusterview.h"
#include "sidecar/elect.h"
#include "sidecar/notify.h"
#include "sidecar/registrar.h"
#include "sidecar/state.h"
#include "sidecar/status.h"
#include "sidecar/sync.h"

extern char **environ;

struct daemon_probe {
    struct daemon *d;
    struct probe *probe;
    char *check_id;
};

struct daemon {
    struct config cfg;
    int argc;
    char **argv;
    int once;
    int exit_code;
    int stopping;
    char user_agent[256];
    struct loop *loop;
    struct metrics *metrics;
    struct consul_client *consul;
    struct registrar *reg;
    struct sync *sync;
    struct elect *elect;
    struct clusterview *cluster;
    struct status_server *status;
    struct daemon_probe *probes;
    size_t n_probes;
    struct loop_timer *ready_timer; /* systemd: waiting to say READY=1 */
    uint64_t ready_delay_ms;
    int ready_told;
    struct loop_timer *once_timer;
    struct loop_timer *once_deadline;
    struct loop_timer *release_wait; /* shutdown: a Kong write still on the wire */
    char last_holder[256];           /* writer lock holder at the last scrape */
    uint64_t release_by;
    int pending_stops;
    /* Without a configured datacenter, the agent's (GET /v1/agent/self). */
    char agent_dc[128];
    struct consul_call *self_call;
    struct loop_timer *self_retry;
    struct backoff self_backoff;
    char self_error[300];   /* last bad answer logged, once */
    int elect_waits_for_dc; /* the default lock key needs agent_dc */
};

/* ---- probes ---------------------------------------------------------------- */

static void on_probe(const char *status, const char *output, void *arg)
{
    struct daemon_probe *p = arg;
    registrar_check_result(p->d->reg, p->check_id, status, output);
}

static void probes_free(struct daemon *d)
{
    for (size_t i = 0; i < d->n_probes; i++) {
        probe_free(d->probes[i].probe);
        free(d->probes[i].check_id);
    }
    free(d->probes);
    d->probes = NULL;
    d->n_probes = 0;
}

static int probes_start(struct daemon *d, char *err, size_t errlen)
{
    d->probes = d->cfg.n_probes ? calloc(d->cfg.n_probes, sizeof *d->probes) : NULL;
    if (d->cfg.n_probes && d->probes == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < d->cfg.n_probes; i++) {
        struct daemon_probe *p = &d->probes[i];
        p->d = d;
        p->check_id = strdup(d->cfg.probes[i].check_id);
        p->probe = probe_new(d->loop, &d->cfg.probes[i].spec, on_probe, p, err, errlen);
        d->n_probes = i + 1;
        if (p->check_id == NULL || p->probe == NULL)
            return -1;
        probe_start(p->probe);
    }
    return 0;
}

/* ---- Consul's connection limit ---------------------------------------------- */

/* One line per client, however many requests hit the limit; every module
 * backs off by itself meanwhile. */
static void on_consul_limit(int limited, const char *why, void *arg)
{
    (void)arg;
    if (limited)
        log_warn("Consul is limiting connections from this address (%s); backing off", why);
    else
        log_info("Consul agent %s accepts our connections again", why);
}

/* ---- status endpoint providers --------------------------------------------- */

static int health_provider(char *why, size_t len, void *arg)
{
    struct daemon *d = arg;
    if (!registrar_agent_reachable(d->reg) && d->cfg.n_services > 0) {
        snprintf(why, len, "Consul agent not reachable");
        return 0;
    }
    if (!registrar_healthy(d->reg, why, len))
        return 0;
    if (!sync_healthy(d->sync, why, len))
        return 0;
    return 1;
}

static cJSON *status_provider(void *arg)
{
    struct daemon *d = arg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", SIDECAR_VERSION);
    cJSON_AddStringToObject(o, "node", d->cfg.node ? d->cfg.node : "");
    if (d->cfg.datacenter || d->agent_dc[0])
        cJSON_AddStringToObject(o, "datacenter",
                                d->cfg.datacenter ? d->cfg.datacenter : d->agent_dc);
    else
        cJSON_AddNullToObject(o, "datacenter"); /* the agent has not said yet */
    cJSON *c = cJSON_AddObjectToObject(o, "consul");
    cJSON_AddStringToObject(c, "address", d->cfg.consul_addr);
    cJSON_AddBoolToObject(c, "reachable", registrar_agent_reachable(d->reg));
    if (d->cluster)
        clusterview_status_json(d->cluster, o);
    cJSON_AddItemToObject(o, "services", registrar_status_json(d->reg));
    cJSON_AddBoolToObject(o, "maintenance", registrar_in_maintenance(d->reg));
    cJSON_AddItemToObject(o, "upstreams", sync_status_json(d->sync));
    if (d->elect)
        cJSON_AddItemToObject(o, "writer", elect_status_json(d->elect));
    return o;
}

/* Copies numbers kept by the modules into the registry at scrape time. */
static void collect(struct metrics *m, void *arg)
{
    struct daemon *d = arg;
    const struct consul_client_stats *cs = consul_client_stats(d->consul);
    struct metrics_counter *req = metrics_counter(m, "consul_sidecar_consul_requests_total",
                                                  "Requests to Consul, by result", "result");
    metrics_counter_set(req, "ok", (double)cs->ok);
    metrics_counter_set(req, "http_error", (double)cs->http_error);
    metrics_counter_set(req, "transport_error", (double)cs->transport_error);
    metrics_gauge_set(metrics_gauge(m, "consul_sidecar_consul_connections",
                                    "Connections open to the Consul agent", NULL),
                      NULL, (double)consul_client_connections(d->consul));
    metrics_gauge_set(metrics_gauge(m, "consul_sidecar_consul_http_version",
                                    "HTTP version of the agent's last answer (2: HTTP/2 "
                                    "streams share the connections; 0: none yet)",
                                    NULL),
                      NULL, (double)consul_client_http_version(d->consul));
    registrar_collect(d->reg, m);
    sync_collect(d->sync, m);
    /* The cluster view's and the writer election's long-polls beside the
     * upstreams' (sync_collect registered the family). */
    struct metrics_counter *restarts = metrics_counter(
        m, "consul_sidecar_watch_restarts_total",
        "Blocking queries cancelled and reissued because they did not return in time", "upstream");
    if (d->cluster)
        metrics_counter_set(restarts, "(cluster) catalog/nodes",
                            (double)clusterview_watch_restarts(d->cluster));
    if (d->elect)
        metrics_counter_set(restarts, "(writer lock) kong", (double)elect_watch_restarts(d->elect));
    if (d->elect) {
        struct metrics_gauge *w = metrics_gauge(
            m, "consul_sidecar_writer", "1 while this sidecar is the elected writer", "proxy");
        metrics_gauge_set(w, "kong", elect_is_writer(d->elect));
        /* Who holds the lock, as every sidecar sees it: 1 for the holder, 0
         * for a node that held it before. */
        struct metrics_gauge *h =
            metrics_gauge(m, "consul_sidecar_writer_holder",
                          "1 for the node holding the Kong writer lock", "holder");
        const char *holder = elect_holder(d->elect) ? elect_holder(d->elect) : "";
        if (d->last_holder[0] && strcmp(d->last_holder, holder) != 0)
            metrics_gauge_set(h, d->last_holder, 0);
        if (holder[0])
            metrics_gauge_set(h, holder, 1);
        snprintf(d->last_holder, sizeof d->last_holder, "%s", holder);
    }
}

/* ---- shutdown and signals -------------------------------------------------- */

static void stop_step_done(void *arg)
{
    struct daemon *d = arg;
    if (--d->pending_stops == 0) {
        log_info("Shutdown complete");
        loop_stop(d->loop);
    }
}

/* The lock is handed back only once no write of ours is on the wire: a
 * standby acquiring at once must not see a late write land after its own
 * first read (waits at most DAEMON_RELEASE_WAIT_MS). */
#define DAEMON_RELEASE_WAIT_MS 5000

static void release_when_quiet(void *arg)
{
    struct daemon *d = arg;
    if (sync_proxy_writing(d->sync, "kong") && loop_clock_ms() < d->release_by &&
        (d->release_wait || (d->release_wait = loop_timer_new(d->loop, release_when_quiet, d)))) {
        loop_timer_start(d->release_wait, 10);
        return;
    }
    elect_release(d->elect, stop_step_done, d);
}

/* ---- systemd (Type=notify) --------------------------------------------------- */

static void tell_systemd(struct daemon *d, const char *state)
{
    if (notify_send(state) < 0 && !d->ready_told)
        log_warn("Cannot notify systemd (NOTIFY_SOCKET): %s", strerror(errno));
}

/* READY=1 once every service is registered and every upstream applied
 * once, as -once waits for; asked again after 50 ms, then less often (at
 * most every second), and never again once told. */
static void on_ready_check(void *arg)
{
    struct daemon *d = arg;
    char why[256], state[300];
    if (d->stopping)
        return;
    if (registrar_healthy(d->reg, why, sizeof why) && sync_settled(d->sync)) {
        snprintf(state, sizeof state,
                 "READY=1\nSTATUS=%zu service(s) registered, %zu upstream(s) "
                 "synced",
                 d->cfg.n_services, d->cfg.n_upstreams);
        tell_systemd(d, state);
        d->ready_told = 1;
        log_info("Registered and synced: ready (told systemd)");
        return;
    }
    d->ready_delay_ms = d->ready_delay_ms ? d->ready_delay_ms * 2 : 50;
    if (d->ready_delay_ms > 1000)
        d->ready_delay_ms = 1000;
    loop_timer_start(d->ready_timer, d->ready_delay_ms);
}

static void begin_shutdown(struct daemon *d, const char *why)
{
    if (d->stopping)
        return;
    d->stopping = 1;
    log_info("Caught %s, shutting down", why);
    if (notify_wanted())
        tell_systemd(d, "STOPPING=1");
    d->pending_stops = 1 + (d->elect != NULL);
    consul_cancel(d->self_call);
    d->self_call = NULL;
    loop_timer_stop(d->self_retry);
    /* Stop writing to the proxy first: a standby may take over at once. */
    if (d->elect) {
        sync_set_writer(d->sync, "kong", 0);
        d->release_by = loop_clock_ms() + DAEMON_RELEASE_WAIT_MS;
        release_when_quiet(d);
    }
    int deregister = d->cfg.deregister != DEREGISTER_NEVER;
    registrar_shutdown(d->reg, deregister, stop_step_done, d);
}

static void on_sigterm(int signo, void *arg)
{
    begin_shutdown(arg, signo == SIGINT ? "interrupt" : "terminated");
}

static void reload(struct daemon *d)
{
    enum cli_action action;
    struct config fresh;
    char err[1024];
    if (d->stopping)
        return;
    log_info("Caught hangup, reloading configuration");
    if (cli_parse(d->argc, d->argv, environ, &action, &fresh, err, sizeof err) != 0) {
        log_error("Reload failed, keeping the current configuration: %s", err);
        return;
    }
    for (size_t i = 0; i < fresh.n_warnings; i++)
        log_warn("%s", fresh.warnings[i]);
    if (registrar_set_services(d->reg, fresh.services, fresh.n_services) < 0) {
        log_error("Reload failed, keeping the current configuration: out of memory");
        config_free(&fresh);
        return;
    }
    /* Probes follow the new checks. */
    probes_free(d);
    config_free(&d->cfg);
    d->cfg = fresh;
    if (probes_start(d, err, sizeof err) < 0)
        log_error("Reload: cannot start probes: %s", err);
    log_info("Configuration reloaded: %zu service(s), %zu upstream(s)", d->cfg.n_services,
             d->cfg.n_upstreams);
    sync_resync_now(d->sync);
}

static void on_sighup(int signo, void *arg)
{
    struct daemon *d = arg;
    (void)signo;
    if (d->stopping)
        return;
    if (d->ready_told)
        tell_systemd(d, "RELOADING=1");
    reload(d);
    if (d->ready_told)
        tell_systemd(d, "READY=1");
}

static void on_sigusr1(int signo, void *arg)
{
    struct daemon *d = arg;
    (void)signo;
    if (d->stopping)
        return;
    int on = !registrar_in_maintenance(d->reg);
    registrar_set_maintenance(d->reg, on, on ? "maintenance requested with SIGUSR1" : NULL);
}

/* ---- writer election ------------------------------------------------------- */

/* The agent answers again after refused connections: whatever waits out a
 * backoff (up to 30 s after a long outage) asks now. */
static void on_consul_recovered(void *arg)
{
    struct daemon *d = arg;
    registrar_consul_recovered(d->reg);
    sync_consul_recovered(d->sync);
    if (d->cluster)
        clusterview_consul_recovered(d->cluster);
    if (d->self_retry && loop_timer_active(d->self_retry))
        loop_timer_start(d->self_retry, 0); /* the agent's datacenter */
}

static void on_writer(int is_writer, const char *holder, void *arg)
{
    struct daemon *d = arg;
    (void)holder;
    if (d->stopping)
        return;
    sync_set_writer(d->sync, "kong", is_writer);
    if (!is_writer) /* lost: another may write now */
        sync_abort_writes(d->sync, "kong");
}

/* The writer election; with the default lock key and no configured datacenter
 * it starts once the agent has told its datacenter, so sidecars of different
 * datacenters never contend for one key. */
static int start_election(struct daemon *d, char *err, size_t errlen)
{
    if (d->cfg.kong.lock_key_needs_dc) {
        char key[512];
        elect_default_key(d->agent_dc, key, sizeof key);
        char *k = strdup(key);
        if (k == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        free(d->cfg.kong.lock_key);
        d->cfg.kong.lock_key = k;
        d->cfg.kong.lock_key_needs_dc = 0;
    }
    struct elect_opts eo = {
        .loop = d->loop,
        .consul = d->consul,
        .what = "kong",
        .key = d->cfg.kong.lock_key,
        .node = d->cfg.node,
        .session_ttl_ms = d->cfg.kong.session_ttl_ms,
        .lock_delay_ms = d->cfg.kong.lock_delay_ms,
        .wait_ms = d->cfg.watch.wait_ms,
        .on_change = on_writer,
        .arg = d,
    };
    d->elect = elect_new(&eo, err, errlen);
    return d->elect ? 0 : -1;
}

/* ---- the agent's datacenter (GET /v1/agent/self) --------------------------- */

static void fetch_agent_self(void *arg);

static void on_agent_self(const struct consul_response *r, void *arg)
{
    struct daemon *d = arg;
    char dc[sizeof d->agent_dc], node[256], err[256], line[300];
    d->self_call = NULL;
    if ((r->err != HTTP_OK && r->err != HTTP_ERR_TOO_LARGE) || r->limited) {
        /* Unreachable or limiting us: said elsewhere, once; ask again. */
        loop_timer_start(d->self_retry, backoff_next(&d->self_backoff));
        return;
    }
    if (r->err != HTTP_OK || r->status != 200)
        consul_describe_error(r, "GET", "/v1/agent/self", line, sizeof line);
    else if (consul_decode_agent_self(r->body, r->body_len, dc, sizeof dc, node, sizeof node, err,
                                      sizeof err) < 0)
        snprintf(line, sizeof line, "GET /v1/agent/self: bad answer: %s", err);
    else
        line[0] = '\0';
    if (line[0] && r->err == HTTP_OK && r->status == 403) {
        /* The token lacks agent:read, and will: no use asking again. The
         * election takes the fallback key (a configuration change, the same
         * on every sidecar of the cluster, not a transient error). */
        if (d->elect_waits_for_dc)
            log_warn("Cannot learn the agent's datacenter: %s (the token needs agent:read); "
                     "set consul.datacenter; the writer lock key is '%s'",
                     line, d->cfg.kong.lock_key);
        else
            log_warn("Cannot learn the agent's datacenter: %s (the token needs agent:read); "
                     "set consul.datacenter",
                     line);
        d->cfg.kong.lock_key_needs_dc = 0;
    } else if (line[0]) {
        if (strcmp(line, d->self_error) != 0)
            log_error("Cannot learn the agent's datacenter: %s; asking again", line);
        snprintf(d->self_error, sizeof d->self_error, "%s", line);
        loop_timer_start(d->self_retry, backoff_next(&d->self_backoff));
        return;
    } else {
        snprintf(d->agent_dc, sizeof d->agent_dc, "%s", dc);
        log_info("Datacenter '%s' (the Consul agent's)", dc);
    }
    if (d->elect_waits_for_dc && !d->stopping) {
        d->elect_waits_for_dc = 0;
        if (start_election(d, err, sizeof err) < 0) {
            log_error("Cannot start the writer election: %s", err);
            return;
        }
        elect_start(d->elect);
    }
}

static void fetch_agent_self(void *arg)
{
    struct daemon *d = arg;
    char err[256];
    if (d->self_call || d->stopping)
        return;
    d->self_call = consul_request(d->consul, "GET", "/v1/agent/self", NULL, 0, 0, 0, on_agent_self,
                                  d, err, sizeof err);
    if (d->self_call == NULL)
        loop_timer_start(d->self_retry, backoff_next(&d->self_backoff));
}

/* ---- -once ----------------------------------------------------------------- */

static void on_once_check(void *arg)
{
    struct daemon *d = arg;
    char why[256];
    if (registrar_healthy(d->reg, why, sizeof why) && sync_settled(d->sync)) {
        log_info("Registered and synced once; exiting (-once)");
        loop_stop(d->loop);
        return;
    }
    loop_timer_start(d->once_timer, 50);
}

static void on_once_deadline(void *arg)
{
    struct daemon *d = arg;
    char why[256] = "";
    if (!registrar_healthy(d->reg, why, sizeof why))
        ;
    else
        sync_healthy(d->sync, why, sizeof why);
    char dur[32];
    log_error("-once: not done within %s%s%s",
              dur_format_ms(d->cfg.once_timeout_ms, dur, sizeof dur), why[0] ? ": " : "", why);
    d->exit_code = 1;
    /* A failed run leaves nothing half-registered with deregister "always";
     * "on-success" (and "never") keep what was registered, to look at. */
    if (d->cfg.deregister == DEREGISTER_ALWAYS) {
        d->stopping = 1;
        d->pending_stops = 1;
        registrar_shutdown(d->reg, 1, stop_step_done, d);
        return;
    }
    loop_stop(d->loop);
}

/* ---- set-up ---------------------------------------------------------------- */

static int add_drivers(struct daemon *d, char *err, size_t errlen)
{
    struct proxy *p;
    if (d->cfg.kong.enabled) {
        struct kong_opts ko = {
            .max_in_flight = d->cfg.kong.max_in_flight,
            .admin_url = d->cfg.kong.admin_url,
            .token = d->cfg.kong.token,
            .user_agent = d->user_agent,
            .upstream_defaults = d->cfg.kong.upstream_defaults,
        };
        if ((p = kong_new(d->loop, &ko, err, errlen)) == NULL ||
            sync_add_proxy(d->sync, "kong", p) < 0)
            return -1;
    }
    if (d->cfg.haproxy.enabled) {
        struct haproxy_opts ho = {
            .runtime = d->cfg.haproxy.runtime,
            .backend_prefix = d->cfg.haproxy.backend_prefix,
            .drain_timeout_ms = (long)d->cfg.haproxy.drain_timeout_ms,
        };
        if ((p = haproxy_new(d->loop, &ho, err, errlen)) == NULL ||
            sync_add_proxy(d->sync, "haproxy", p) < 0)
            return -1;
    }
    if (d->cfg.nginx.enabled) {
        struct nginx_opts no = {
            .upstream_dir = d->cfg.nginx.upstream_dir,
            .test_cmd = d->cfg.nginx.test_cmd,
            .reload_cmd = d->cfg.nginx.reload_cmd,
        };
        if ((p = nginx_new(d->loop, &no, err, errlen)) == NULL ||
            sync_add_proxy(d->sync, "nginx", p) < 0)
            return -1;
    }
    return 0;
}

/* The Consul client and the registrar of the wanted services. */
static int start_consul(struct daemon *d, char *err, size_t errlen)
{
    struct consul_client_opts co = {
        .address = d->cfg.consul_addr,
        .token = d->cfg.token,
        .datacenter = d->cfg.datacenter,
        .user_agent = d->user_agent,
        .tls = d->cfg.tls,
        .on_limit = on_consul_limit,
        .limit_arg = d,
    };
    d->consul = consul_client_new(d->loop, &co, err, errlen);
    if (d->consul == NULL)
        return -1;
    if (d->cfg.tls.insecure)
        log_warn("CONSUL_HTTP_SSL_VERIFY is false: the Consul agent's TLS certificate is NOT "
                 "verified; anyone on the path can impersonate it");
    struct registrar_opts ro = {
        .loop = d->loop,
        .consul = d->consul,
        .node = d->cfg.node,
        .resync_ms = d->cfg.resync_ms,
        .drain_ms = d->cfg.drain_ms,
        .reregister_splay_ms = d->cfg.reregister_splay_ms,
        .metrics = d->metrics,
    };
    d->reg = registrar_new(&ro);
    if (d->reg == NULL || registrar_set_services(d->reg, d->cfg.services, d->cfg.n_services) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* Sync, its proxy drivers and the upstreams it follows; the Kong writer's
 * election when one is elected. */
static int start_sync(struct daemon *d, char *err, size_t errlen)
{
    struct sync_opts so = {
        .loop = d->loop,
        .consul = d->consul,
        .watch = d->cfg.watch,
        .proxy_resync_ms = d->cfg.resync_ms,
        .datacenter = d->cfg.datacenter,
        .state_dir = d->cfg.state_dir[0] ? d->cfg.state_dir : NULL,
        .metrics = d->metrics,
    };
    d->sync = sync_new(&so, err, errlen);
    if (d->sync == NULL || add_drivers(d, err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < d->cfg.n_upstreams; i++) {
        const struct cfg_upstream *u = &d->cfg.upstreams[i];
        struct sync_upstream_spec sp = {
            .name = u->name,
            .service = u->service,
            .tags = (const char *const *)u->tags,
            .n_tags = u->n_tags,
            .datacenter = u->datacenter,
            .passing_only = u->passing_only,
            .proxy = u->proxy,
        };
        if (sync_add_upstream(d->sync, &sp, err, errlen) < 0)
            return -1;
    }
    if (d->cfg.kong.enabled && d->cfg.kong.writer == KONG_WRITER_ELECTED &&
        d->cfg.n_upstreams > 0) {
        if (d->cfg.kong.lock_key_needs_dc)
            d->elect_waits_for_dc = 1; /* started by on_agent_self */
        else if (start_election(d, err, errlen) < 0)
            return -1;
        sync_set_writer(d->sync, "kong", 0);
    }
    return 0;
}

/* What only a long-running sidecar has: the cluster view and the status
 * endpoint. */
static int start_observers(struct daemon *d, char *err, size_t errlen)
{
    d->cluster = clusterview_new(d->loop, d->consul, d->metrics, d->cfg.watch.wait_ms,
                                 d->cfg.watch.cluster_poll_ms, err, errlen);
    if (d->cluster == NULL)
        return -1;
    struct status_providers sp = {
        .health = health_provider,
        .status = status_provider,
        .metrics = d->metrics,
        .arg = d,
    };
    d->status = status_server_new(d->loop, d->cfg.listen, &sp, err, errlen);
    if (d->status == NULL)
        return -1;
    log_info("Status endpoint listening on %s", status_server_address(d->status));
    return 0;
}

struct daemon *daemon_new(struct config *cfg, int argc, char **argv, int once, char *err,
                          size_t errlen)
{
    struct daemon *d = calloc(1, sizeof *d);
    if (d == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg);
    d->argc = argc;
    d->argv = argv;
    d->once = once;
    snprintf(d->user_agent, sizeof d->user_agent, "consul-sidecar/%s (%s)", SIDECAR_VERSION,
             d->cfg.node ? d->cfg.node : "unknown");
    for (size_t i = 0; i < d->cfg.n_warnings; i++)
        log_warn("%s", d->cfg.warnings[i]);

    /* Before anything is registered or followed: a state directory that
     * cannot be used is refused now, not found out at the first save. */
    if (d->cfg.state_dir[0] == '\0') {
        log_info("State directory: none (state_dir \"\"): last known good upstreams are not "
                 "kept across restarts");
    } else if (state_dir_prepare(d->cfg.state_dir, err, errlen) < 0) {
        goto fail;
    }
    d->loop = loop_new();
    d->metrics = metrics_new();
    if (d->loop == NULL || d->metrics == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    metrics_build_info(d->metrics, SIDECAR_VERSION);
    metrics_on_collect(d->metrics, collect, d);
    if (start_consul(d, err, errlen) < 0 || start_sync(d, err, errlen) < 0)
        goto fail;
    backoff_init(&d->self_backoff, 500, 30000);
    if (d->cfg.datacenter == NULL &&
        (d->self_retry = loop_timer_new(d->loop, fetch_agent_self, d)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (!once && start_observers(d, err, errlen) < 0)
        goto fail;
    consul_client_on_recover(d->consul, on_consul_recovered, d);
    if (probes_start(d, err, errlen) < 0)
        goto fail;
    return d;
fail:
    daemon_free(d);
    return NULL;
}

int daemon_run(struct daemon *d)
{
    loop_signal_watch(d->loop, SIGTERM, on_sigterm, d);
    loop_signal_watch(d->loop, SIGINT, on_sigterm, d);
    loop_signal_watch(d->loop, SIGHUP, on_sighup, d);
    loop_signal_watch(d->loop, SIGUSR1, on_sigusr1, d);
    signal(SIGPIPE, SIG_IGN);

    log_info("consul-sidecar v%s starting: node '%s', Consul at %s, %zu service(s), "
             "%zu upstream(s)",
             SIDECAR_VERSION, d->cfg.node ? d->cfg.node : "", d->cfg.consul_addr, d->cfg.n_services,
             d->cfg.n_upstreams);
    registrar_start(d->reg);
    sync_start(d->sync);
    if (d->elect)
        elect_start(d->elect);
    if (d->self_retry)
        fetch_agent_self(d);
    if (d->cluster)
        clusterview_start(d->cluster);
    if (notify_wanted() && !d->once) {
        d->ready_timer = loop_timer_new(d->loop, on_ready_check, d);
        if (d->ready_timer)
            on_ready_check(d);
    }
    if (d->once) {
        d->once_timer = loop_timer_new(d->loop, on_once_check, d);
        d->once_deadline = loop_timer_new(d->loop, on_once_deadline, d);
        loop_timer_start(d->once_timer, 50);
        loop_timer_start(d->once_deadline, (uint64_t)d->cfg.once_timeout_ms);
    }
    if (loop_run(d->loop) < 0) {
        log_error("event loop failed");
        return 1;
    }
    return d->exit_code;
}

void daemon_free(struct daemon *d)
{
    if (d == NULL)
        return;
    probes_free(d);
    loop_timer_free(d->ready_timer);
    loop_timer_free(d->once_timer);
    loop_timer_free(d->once_deadline);
    loop_timer_free(d->release_wait);
    consul_cancel(d->self_call);
    loop_timer_free(d->self_retry);
    status_server_free(d->status);
    clusterview_free(d->cluster);
    elect_free(d->elect);
    sync_free(d->sync);
    registrar_free(d->reg);
    consul_client_free(d->consul);
    metrics_free(d->metrics);
    loop_free(d->loop);
    config_free(&d->cfg);
    free(d);
}
