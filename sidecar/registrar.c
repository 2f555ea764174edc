/*
 * Registration lifecycle; see registrar.h. One entry per wanted service, at
 * most one write in flight per service; TTL checks fed by the probes;
 * maintenance, shutdown and status. The start-up cleanup and anti-entropy
 * rounds are in registrar_ae.c.
 */
#include "sidecar/registrar_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/agent.h"
#include "health/ttl.h"
#include "lib/log.h"
#include "lib/rand.h"
#include "lib/unconst.h"

static void check_feed(struct reg_check *c);
static void reg_check_shutdown(struct registrar *r);

/* ---- copies of wanted services ------------------------------------------- */

static int svc_copy(struct consul_service *dst, const struct consul_service *src)
{
    memset(dst, 0, sizeof *dst);
    dst->id = strdup(src->id);
    dst->name = strdup(src->name);
    dst->definition = cJSON_Duplicate(src->definition, 1);
    dst->checks = src->n_checks ? calloc(src->n_checks, sizeof *dst->checks) : NULL;
    if (!dst->id || !dst->name || !dst->definition || (src->n_checks && !dst->checks))
        goto fail;
    for (size_t i = 0; i < src->n_checks; i++) {
        dst->checks[i].check_id = strdup(src->checks[i].check_id);
        dst->checks[i].name = strdup(src->checks[i].name ? src->checks[i].name : "");
        dst->checks[i].ttl_ms = src->checks[i].ttl_ms;
        dst->n_checks = i + 1;
        if (!dst->checks[i].check_id || !dst->checks[i].name)
            goto fail;
    }
    return 0;
fail:
    consul_service_free(dst);
    return -1;
}

static int svc_same(const struct consul_service *a, const struct consul_service *b)
{
    return strcmp(a->id, b->id) == 0 && cJSON_Compare(a->definition, b->definition, 1);
}

/* ---- lifecycle ----------------------------------------------------------- */

static void on_retry_timer(void *arg);
static void on_splay_timer(void *arg);

struct registrar *registrar_new(const struct registrar_opts *o)
{
    struct registrar *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->o = *o;
    r->node = o->node ? strdup(o->node) : NULL;
    r->agent_up = -1;
    backoff_init(&r->backoff, 500, 30000);
    r->resync_timer = loop_timer_new(o->loop, on_resync_timer, r);
    r->retry_timer = loop_timer_new(o->loop, on_retry_timer, r);
    r->splay_timer = loop_timer_new(o->loop, on_splay_timer, r);
    if (!r->resync_timer || !r->retry_timer || !r->splay_timer || (o->node && !r->node)) {
        registrar_free(r);
        return NULL;
    }
    if (o->metrics)
        r->m_writes = metrics_counter(o->metrics, "consul_sidecar_consul_writes_total",
                                      "Writes made to the local Consul agent, by kind", "kind");
    return r;
}

static void check_free(struct reg_check *c)
{
    if (c == NULL)
        return;
    consul_cancel(c->call);
    loop_timer_free(c->timer);
    free(c->check_id);
    free(c->service_id);
    free(c->status);
    free(c->output);
    free(c->sent_status);
    free(c->sent_output);
    free(c);
}

void service_free(struct reg_service *s)
{
    if (s == NULL)
        return;
    consul_cancel(s->call);
    if (s->read_call) {
        consul_cancel(s->read_call);
        s->r->ae_pending--;
    }
    consul_service_free(&s->svc);
    free(s);
}

void registrar_free(struct registrar *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_svcs; i++)
        service_free(r->svcs[i]);
    free(r->svcs);
    for (size_t i = 0; i < r->n_checks; i++)
        check_free(r->checks[i]);
    free(r->checks);
    consul_cancel(r->list_call);
    consul_cancel(r->checks_call);
    cJSON_Delete(r->agent_checks);
    loop_timer_free(r->resync_timer);
    loop_timer_free(r->retry_timer);
    loop_timer_free(r->splay_timer);
    loop_timer_free(r->drain_timer);
    loop_timer_free(r->shutdown_deadline);
    free(r->maint_reason);
    free(r->node);
    free(r);
}

struct reg_service *find_service(const struct registrar *r, const char *id)
{
    for (size_t i = 0; i < r->n_svcs; i++)
        if (strcmp(r->svcs[i]->svc.id, id) == 0)
            return r->svcs[i];
    return NULL;
}

static struct reg_check *find_check(const struct registrar *r, const char *id)
{
    for (size_t i = 0; i < r->n_checks; i++)
        if (strcmp(r->checks[i]->check_id, id) == 0)
            return r->checks[i];
    return NULL;
}

static void count_write(struct registrar *r, const char *kind)
{
    if (r->m_writes)
        metrics_counter_inc(r->m_writes, kind, 1);
}

/* Agent reachability: log changes, not states. */
void agent_result(struct registrar *r, const struct consul_response *resp)
{
    if (resp->limited)
        return; /* up, but refusing connections: the daemon logs that once */
    int transport_failed = resp->err != HTTP_OK;
    if (transport_failed) {
        char line[300];
        consul_describe_error(resp, "PUT", "/v1/agent", line, sizeof line);
        if (r->agent_up != 0) {
            log_warn("Consul agent unreachable: %s; retrying with backoff",
                     resp->error ? resp->error : line);
            snprintf(r->last_agent_error, sizeof r->last_agent_error, "%s",
                     resp->error ? resp->error : line);
        }
        r->agent_up = 0;
        return;
    }
    if (r->agent_up == 0) {
        log_info("Consul agent reachable again; checking registrations");
        r->agent_up = 1;
        backoff_reset(&r->backoff);
        /* After a reconnect the agent may have lost everything. */
        if (!r->shutting_down)
            loop_timer_start(r->resync_timer, 0);
        return;
    }
    r->agent_up = 1;
}

/* ---- writes -------------------------------------------------------------- */

static void on_register_done(const struct consul_response *resp, void *arg)
{
    struct reg_service *s = arg;
    struct registrar *r = s->r;
    s->call = NULL;
    agent_result(r, resp);
    if (resp->err == HTTP_OK && resp->status == 200) {
        if (s->state != REG_SYNCED || s->last_error[0])
            log_info("Synced service '%s'", s->svc.id);
        s->last_error[0] = '\0';
        s->state = s->dirty ? REG_PENDING : REG_SYNCED;
        s->dirty = 0;
        s->maint = 0;
        /* Registration resets check state: send current probe results now. */
        for (size_t i = 0; i < r->n_checks; i++) {
            struct reg_check *c = r->checks[i];
            if (strcmp(c->service_id, s->svc.id) == 0) {
                ttl_feeder_reset(&c->feeder);
                check_feed(c);
            }
        }
        if (r->maintenance)
            registrar_set_maintenance(r, 1, r->maint_reason);
    } else {
        char line[300];
        consul_describe_error(resp, "PUT", "/v1/agent/service/register", line, sizeof line);
        if (resp->err == HTTP_OK && !resp->limited && strcmp(line, s->last_error) != 0)
            log_error("Failed to register service '%s': %s", s->svc.id, line);
        snprintf(s->last_error, sizeof s->last_error, "%s", line);
        s->state = REG_PENDING;
        reg_schedule_retry(r);
    }
    reg_kick(r);
}

static void on_deregister_done(const struct consul_response *resp, void *arg)
{
    struct reg_service *s = arg;
    struct registrar *r = s->r;
    s->call = NULL;
    agent_result(r, resp);
    /* 404: it was already gone, which is what we wanted. */
    if (resp->err == HTTP_OK && (resp->status == 200 || resp->status == 404)) {
        log_info("Deregistered service '%s'", s->svc.id);
        for (size_t i = 0; i < r->n_svcs; i++) {
            if (r->svcs[i] == s) {
                r->svcs[i] = r->svcs[--r->n_svcs];
                break;
            }
        }
        service_free(s);
        /* Its anti-entropy read, cancelled, may have been the round's last. */
        if (r->agent_checks && r->ae_pending == 0)
            ae_finish(r);
    } else {
        char line[300];
        consul_describe_error(resp, "PUT", "/v1/agent/service/deregister", line, sizeof line);
        snprintf(s->last_error, sizeof s->last_error, "%s", line);
        if (resp->err == HTTP_OK && !resp->limited)
            log_error("Failed to deregister service '%s': %s", s->svc.id, line);
        reg_schedule_retry(r);
    }
    reg_kick(r);
}

static int start_register(struct reg_service *s)
{
    struct registrar *r = s->r;
    char err[256];
    char *body = consul_register_body(&s->svc);
    if (body == NULL)
        return -1;
    s->call =
        consul_request(r->o.consul, "PUT", "/v1/agent/service/register?replace-existing-checks",
                       body, strlen(body), REG_TIMEOUT_MS, 0, on_register_done, s, err, sizeof err);
    free(body);
    if (s->call == NULL) {
        log_error("Cannot register service '%s': %s", s->svc.id, err);
        return -1;
    }
    s->state = REG_WRITING;
    count_write(r, "register");
    return 0;
}

static int start_deregister(struct reg_service *s)
{
    struct registrar *r = s->r;
    char path[600], err[256];
    char *id = http_escape(s->svc.id);
    if (id == NULL)
        return -1;
    snprintf(path, sizeof path, "/v1/agent/service/deregister/%s", id);
    free(id);
    s->call = consul_request(r->o.consul, "PUT", path, NULL, 0, REG_TIMEOUT_MS, 0,
                             on_deregister_done, s, err, sizeof err);
    if (s->call == NULL)
        return -1;
    s->state = REG_REMOVING;
    count_write(r, "deregister");
    return 0;
}

/* Starts whatever writes are due, unless a retry is pending. */
void reg_kick(struct registrar *r)
{
    if (!r->started || !r->cleaned || loop_timer_active(r->retry_timer))
        return;
    for (size_t i = 0; i < r->n_svcs; i++) {
        struct reg_service *s = r->svcs[i];
        if (s->call)
            continue;
        if (s->remove) {
            if (start_deregister(s) < 0)
                reg_schedule_retry(r);
            continue;
        }
        if (s->state != REG_PENDING || r->shutting_down)
            continue;
        if (s->lost && loop_timer_active(r->splay_timer))
            continue; /* the splay timer kicks again */
        if (start_register(s) < 0)
            reg_schedule_retry(r);
        else
            s->lost = false;
    }
    reg_check_shutdown(r);
}

void reg_mark_lost(struct reg_service *s, const char *how)
{
    struct registrar *r = s->r;
    uint64_t now = loop_clock_ms();
    if (!loop_timer_active(r->splay_timer)) { /* a new loss: its own delay */
        uint64_t w = r->o.reregister_splay_ms > 0 ? (uint64_t)r->o.reregister_splay_ms : 0;
        r->rereg_at = now + (w ? rand_below(w) : 0);
        if (r->rereg_at > now)
            loop_timer_start(r->splay_timer, r->rereg_at - now);
    }
    s->state = REG_PENDING;
    s->lost = true;
    if (r->rereg_at > now)
        log_warn("%s; re-registering service '%s' in %.1fs (consul.reregister_splay)", how,
                 s->svc.id, (double)(r->rereg_at - now) / 1000.0);
    else
        log_warn("%s; re-registering service '%s' now", how, s->svc.id);
}

static void on_splay_timer(void *arg)
{
    reg_kick(arg);
}

void reg_schedule_retry(struct registrar *r)
{
    if (loop_timer_active(r->retry_timer))
        return;
    loop_timer_start(r->retry_timer, backoff_next(&r->backoff));
}

static void on_retry_timer(void *arg)
{
    struct registrar *r = arg;
    if (!r->cleaned)
        registrar_start(r);
    else
        reg_kick(r);
}

/* ---- wanted services ------------------------------------------------------ */

static int sync_checks(struct registrar *r)
{
    /* TTL checks that a probe feeds: one reg_check each. */
    for (size_t i = 0; i < r->n_checks; i++)
        r->checks[i]->service_id[0] = '\0'; /* mark; unmarked survivors kept */
    for (size_t i = 0; i < r->n_svcs; i++) {
        const struct consul_service *s = &r->svcs[i]->svc;
        if (r->svcs[i]->remove)
            continue;
        for (size_t j = 0; j < s->n_checks; j++) {
            if (s->checks[j].ttl_ms <= 0)
                continue;
            struct reg_check *c = find_check(r, s->checks[j].check_id);
            if (c) {
                free(c->service_id);
                c->service_id = strdup(s->id);
                c->ttl_ms = s->checks[j].ttl_ms;
                ttl_feeder_init(&c->feeder, c->ttl_ms);
                if (c->service_id == NULL)
                    return -1;
                continue;
            }
            c = calloc(1, sizeof *c);
            struct reg_check **n = realloc(r->checks, (r->n_checks + 1) * sizeof *n);
            if (n)
                r->checks = n;
            if (c == NULL || n == NULL) {
                free(c);
                return -1;
            }
            c->r = r;
            c->check_id = strdup(s->checks[j].check_id);
            c->service_id = strdup(s->id);
            c->ttl_ms = s->checks[j].ttl_ms;
            ttl_feeder_init(&c->feeder, c->ttl_ms);
            r->checks[r->n_checks++] = c;
            if (!c->check_id || !c->service_id)
                return -1;
        }
    }
    for (size_t i = 0; i < r->n_checks;) {
        if (r->checks[i]->service_id == NULL || r->checks[i]->service_id[0] == '\0') {
            check_free(r->checks[i]);
            r->checks[i] = r->checks[--r->n_checks];
        } else {
            i++;
        }
    }
    return 0;
}

int registrar_set_services(struct registrar *r, const struct consul_service *svcs, size_t n)
{
    /* Removed services: deregister (only once started). */
    for (size_t i = 0; i < r->n_svcs; i++) {
        struct reg_service *s = r->svcs[i];
        size_t j;
        for (j = 0; j < n; j++)
            if (strcmp(svcs[j].id, s->svc.id) == 0)
                break;
        if (j == n && !s->remove) {
            if (r->started)
                log_info("Service '%s' removed from the configuration; deregistering", s->svc.id);
            s->remove = 1;
        }
    }
    for (size_t j = 0; j < n; j++) {
        struct reg_service *s = find_service(r, svcs[j].id);
        if (s && !s->remove && svc_same(&s->svc, &svcs[j]))
            continue;
        struct consul_service copy;
        if (svc_copy(&copy, &svcs[j]) < 0)
            return -1;
        if (s) {
            consul_service_free(&s->svc);
            s->svc = copy;
            s->remove = 0;
            if (s->call)
                s->dirty = 1;
            else
                s->state = REG_PENDING;
            if (r->started)
                log_info("Service '%s' changed in the configuration; re-registering", s->svc.id);
            continue;
        }
        s = calloc(1, sizeof *s);
        struct reg_service **arr = realloc(r->svcs, (r->n_svcs + 1) * sizeof *arr);
        if (arr)
            r->svcs = arr;
        if (s == NULL || arr == NULL) {
            free(s);
            consul_service_free(&copy);
            return -1;
        }
        s->r = r;
        s->svc = copy;
        s->state = REG_PENDING;
        r->svcs[r->n_svcs++] = s;
    }
    /* Services marked for removal before start are simply forgotten. */
    if (!r->started) {
        for (size_t i = 0; i < r->n_svcs;) {
            if (r->svcs[i]->remove) {
                service_free(r->svcs[i]);
                r->svcs[i] = r->svcs[--r->n_svcs];
            } else {
                i++;
            }
        }
    }
    if (sync_checks(r) < 0)
        return -1;
    reg_kick(r);
    return 0;
}

/* ---- TTL checks ----------------------------------------------------------- */

static void on_check_timer(void *arg)
{
    check_feed(arg);
}

static void on_check_update_done(const struct consul_response *resp, void *arg)
{
    struct reg_check *c = arg;
    struct registrar *r = c->r;
    c->call = NULL;
    agent_result(r, resp);
    uint64_t now = loop_clock_ms();
    if (resp->err == HTTP_OK && resp->status == 200) {
        ttl_mark_sent(&c->feeder, now, c->sent_status, c->sent_output);
    } else {
        ttl_mark_failed(&c->feeder, now);
        if (resp->err == HTTP_OK && resp->status == 404) {
            /* The agent lost the check (restarted without persistence, or an
             * operator removed it): re-register after the splay, not at the
             * next resync. */
            struct reg_service *s = find_service(r, c->service_id);
            char how[300];
            snprintf(how, sizeof how, "Check '%s' is unknown to the agent", c->check_id);
            if (s && s->state == REG_SYNCED)
                reg_mark_lost(s, how);
            /* The agent just answered: a retry still waiting out the backoff
             * of an earlier outage must not hold this back. */
            if (r->cleaned) {
                loop_timer_stop(r->retry_timer);
                backoff_reset(&r->backoff);
            }
            reg_kick(r);
            return;
        }
    }
    check_feed(c);
}

/* Sends the current result if the policy says so, and arms the timer for
 * the next refresh. */
static void check_feed(struct reg_check *c)
{
    struct registrar *r = c->r;
    char path[600], err[256];
    if (c->status == NULL || c->call || r->shutting_down)
        return;
    struct reg_service *s = find_service(r, c->service_id);
    if (s == NULL || s->state != REG_SYNCED)
        return; /* sent once the service is registered */
    uint64_t now = loop_clock_ms();
    if (!ttl_should_send(&c->feeder, now, c->status, c->output)) {
        if (c->timer == NULL)
            c->timer = loop_timer_new(r->o.loop, on_check_timer, c);
        uint64_t at = ttl_next_deadline(&c->feeder);
        if (c->timer)
            loop_timer_start(c->timer, at > now ? at - now : 0);
        return;
    }
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "Status", c->status);
    cJSON_AddStringToObject(body, "Output", c->output ? c->output : "");
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    char *id = http_escape(c->check_id);
    if (text == NULL || id == NULL) {
        free(text);
        free(id);
        return;
    }
    snprintf(path, sizeof path, "/v1/agent/check/update/%s", id);
    free(id);
    free(c->sent_status);
    free(c->sent_output);
    c->sent_status = strdup(c->status);
    c->sent_output = strdup(c->output ? c->output : "");
    if (c->sent_status == NULL || c->sent_output == NULL) {
        free(text);
        return;
    }
    c->call = consul_request(r->o.consul, "PUT", path, text, strlen(text), REG_TIMEOUT_MS, 0,
                             on_check_update_done, c, err, sizeof err);
    free(text);
    if (c->call)
        count_write(r, "check_update");
}

void registrar_check_result(struct registrar *r, const char *check_id, const char *status,
                            const char *output)
{
    struct reg_check *c = find_check(r, check_id);
    if (c == NULL)
        return;
    if (c->status == NULL || strcmp(c->status, status) != 0)
        log_info("Check '%s' is now %s%s%s", check_id, status, output && *output ? ": " : "",
                 output ? output : "");
    char *st = strdup(status), *out = strdup(output ? output : "");
    if (st == NULL || out == NULL) {
        free(st);
        free(out);
        return;
    }
    free(c->status);
    free(c->output);
    c->status = st;
    c->output = out;
    check_feed(c);
}

/* ---- maintenance and shutdown -------------------------------------------- */

static void send_maint(struct registrar *r, struct reg_service *s);

static void on_maint_done(const struct consul_response *resp, void *arg)
{
    struct reg_service *s = arg;
    s->call = NULL;
    agent_result(s->r, resp);
    if (resp->err != HTTP_OK || resp->status != 200) {
        char line[300];
        consul_describe_error(resp, "PUT", "/v1/agent/service/maintenance", line, sizeof line);
        log_error("Failed to set maintenance for service '%s': %s", s->svc.id, line);
        s->maint = -1; /* unknown: the next toggle or restore sends it */
    } else if (s->maint != s->r->maintenance && !s->remove && s->state == REG_SYNCED) {
        /* Toggled again while this one was in flight (two quick SIGUSR1s):
         * the agent must end up as last asked, not as first asked. */
        send_maint(s->r, s);
    }
    reg_kick(s->r);
}

static void send_maint(struct registrar *r, struct reg_service *s)
{
    char path[900], err[256];
    int on = r->maintenance;
    const char *reason = r->maint_reason;
    char *id = http_escape(s->svc.id);
    char *why = http_escape(reason ? reason : "");
    if (id && why)
        snprintf(path, sizeof path, "/v1/agent/service/maintenance/%s?enable=%s%s%s", id,
                 on ? "true" : "false", on && reason ? "&reason=" : "", on && reason ? why : "");
    free(id);
    free(why);
    s->call = consul_request(r->o.consul, "PUT", path, NULL, 0, REG_TIMEOUT_MS, 0, on_maint_done, s,
                             err, sizeof err);
    if (s->call) {
        s->maint = on;
        count_write(r, "maintenance");
    }
}

void registrar_set_maintenance(struct registrar *r, int on, const char *reason)
{
    if (reason != r->maint_reason) {
        free(r->maint_reason);
        r->maint_reason = reason ? strdup(reason) : NULL;
    }
    if (r->maintenance != on)
        log_info("%s maintenance mode for %zu service(s)%s%s", on ? "Entering" : "Leaving",
                 r->n_svcs, on && reason ? ": " : "", on && reason ? reason : "");
    r->maintenance = on;
    /* A service with a call in flight follows when that call is done. */
    for (size_t i = 0; i < r->n_svcs; i++) {
        struct reg_service *s = r->svcs[i];
        if (!s->remove && s->state == REG_SYNCED && !s->call)
            send_maint(r, s);
    }
}

int registrar_in_maintenance(const struct registrar *r)
{
    return r->maintenance;
}

static void finish_shutdown(struct registrar *r)
{
    void (*done)(void *) = r->shutdown_done;
    r->shutdown_done = NULL;
    loop_timer_stop(r->shutdown_deadline);
    if (done)
        done(r->shutdown_arg);
}

static void reg_check_shutdown(struct registrar *r)
{
    if (!r->shutting_down || r->shutdown_done == NULL ||
        (r->drain_timer && loop_timer_active(r->drain_timer)))
        return;
    for (size_t i = 0; i < r->n_svcs; i++)
        if (r->svcs[i]->call || r->svcs[i]->remove)
            return;
    finish_shutdown(r);
}

static void on_shutdown_deadline(void *arg)
{
    struct registrar *r = arg;
    log_warn("Shutdown: the Consul agent did not answer in time; exiting anyway");
    finish_shutdown(r);
}

static void on_drain_done(void *arg)
{
    struct registrar *r = arg;
    for (size_t i = 0; i < r->n_svcs; i++) {
        struct reg_service *s = r->svcs[i];
        if (r->deregister_on_shutdown && (s->state == REG_SYNCED || s->state == REG_WRITING))
            s->remove = 1;
        else if (!r->deregister_on_shutdown)
            s->remove = 0;
    }
    loop_timer_start(r->shutdown_deadline, REG_SHUTDOWN_GRACE_MS);
    reg_kick(r);
    reg_check_shutdown(r);
}

void registrar_shutdown(struct registrar *r, int deregister, void (*done)(void *), void *arg)
{
    r->shutting_down = 1;
    r->deregister_on_shutdown = deregister;
    r->shutdown_done = done;
    r->shutdown_arg = arg;
    loop_timer_stop(r->resync_timer);
    loop_timer_stop(r->retry_timer);
    for (size_t i = 0; i < r->n_checks; i++)
        loop_timer_stop(r->checks[i]->timer);
    r->shutdown_deadline = loop_timer_new(r->o.loop, on_shutdown_deadline, r);
    r->drain_timer = loop_timer_new(r->o.loop, on_drain_done, r);
    int registered = 0;
    for (size_t i = 0; i < r->n_svcs; i++)
        registered += r->svcs[i]->state == REG_SYNCED;
    if (r->o.drain_ms > 0 && registered && r->agent_up != 0) {
        registrar_set_maintenance(r, 1, "consul-sidecar is shutting down");
        log_info("Draining for %lld ms before deregistering", (long long)r->o.drain_ms);
        loop_timer_start(r->drain_timer, (uint64_t)r->o.drain_ms);
        return;
    }
    on_drain_done(r);
}

/* ---- status -------------------------------------------------------------- */

int registrar_healthy(const struct registrar *r, char *why, size_t len)
{
    for (size_t i = 0; i < r->n_svcs; i++) {
        const struct reg_service *s = r->svcs[i];
        if (!s->remove && s->state != REG_SYNCED) {
            snprintf(why, len, "service '%s' is not registered%s%s", s->svc.id,
                     s->last_error[0] ? ": " : "", s->last_error);
            return 0;
        }
    }
    return 1;
}

int registrar_agent_reachable(const struct registrar *r)
{
    return r->agent_up == 1;
}

cJSON *registrar_status_json(const struct registrar *r)
{
    static const char *const names[] = {"pending", "registering", "registered", "removing"};
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < r->n_svcs; i++) {
        const struct reg_service *s = r->svcs[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", s->svc.id);
        cJSON_AddStringToObject(o, "name", s->svc.name);
        cJSON_AddStringToObject(o, "state", s->remove ? "removing" : names[s->state]);
        cJSON_AddBoolToObject(o, "maintenance", s->maint == 1);
        if (s->last_error[0])
            cJSON_AddStringToObject(o, "last_error", s->last_error);
        cJSON *checks = cJSON_AddArrayToObject(o, "checks");
        for (size_t j = 0; j < s->svc.n_checks; j++) {
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "id", s->svc.checks[j].check_id);
            struct reg_check *rc = find_check(r, s->svc.checks[j].check_id);
            if (rc && rc->status) {
                cJSON_AddStringToObject(c, "status", rc->status);
                cJSON_AddStringToObject(c, "output", rc->output ? rc->output : "");
            }
            cJSON_AddItemToArray(checks, c);
        }
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

void registrar_collect(const struct registrar *r, struct metrics *m)
{
    struct metrics_gauge *reg =
        metrics_gauge(m, "consul_sidecar_registration_state",
                      "1 when the service is registered and in sync", "service");
    struct metrics_gauge *chk = metrics_gauge(m, "consul_sidecar_check_status",
                                              "Last probe result sent for a TTL check: 0 passing, "
                                              "1 warning, 2 critical",
                                              "check");
    for (size_t i = 0; i < r->n_svcs; i++)
        if (!r->svcs[i]->remove)
            metrics_gauge_set(reg, r->svcs[i]->svc.id, r->svcs[i]->state == REG_SYNCED);
    for (size_t i = 0; i < r->n_checks; i++) {
        const struct reg_check *c = r->checks[i];
        if (c->status)
            metrics_gauge_set(chk, c->check_id,
                              strcmp(c->status, "passing") == 0   ? 0
                              : strcmp(c->status, "warning") == 0 ? 1
                                                                  : 2);
    }
}
