/*
 * What the agent holds, checked against what is wanted: at start the
 * dangling registrations of an earlier run are removed; then every resync
 * an anti-entropy round reads the agent's checks once and each registered
 * service with GET /v1/agent/service/:id, and decides when the last answer
 * is in. See registrar.h.
 */
#include "sidecar/registrar_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/agent.h"
#include "lib/log.h"
#include "lib/rand.h"
#include "lib/unconst.h"

/* ---- start: dangling cleanup --------------------------------------------- */

/* Is this agent service one of ours (mark + node) that we no longer want? */
static int is_dangling(const struct registrar *r, const cJSON *svc)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(svc, "ID");
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(svc, "Meta");
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(meta, CONSUL_META_MANAGED_BY);
    const cJSON *node = cJSON_GetObjectItemCaseSensitive(meta, CONSUL_META_SIDECAR_NODE);
    if (!cJSON_IsString(id) || !cJSON_IsString(by) ||
        strcmp(by->valuestring, CONSUL_META_MANAGED_BY_VAL) != 0)
        return 0;
    if (r->node && (!cJSON_IsString(node) || strcmp(node->valuestring, r->node) != 0))
        return 0;
    return find_service(r, id->valuestring) == NULL;
}

static void on_cleanup_list(const struct consul_response *resp, void *arg)
{
    struct registrar *r = arg;
    r->list_call = NULL;
    agent_result(r, resp);
    if (resp->err != HTTP_OK || resp->status != 200) {
        if (resp->err == HTTP_OK && !resp->limited) {
            char line[300];
            consul_describe_error(resp, "GET", "/v1/agent/services", line, sizeof line);
            log_error("Cannot list agent services: %s", line);
        }
        reg_schedule_retry(r);
        return;
    }
    cJSON *all = cJSON_ParseWithLength(resp->body, resp->body_len);
    if (!cJSON_IsObject(all)) {
        log_error("GET /v1/agent/services: response is not a JSON object; retrying");
        cJSON_Delete(all);
        reg_schedule_retry(r);
        return;
    }
    const cJSON *svc;
    cJSON_ArrayForEach(svc, all) {
        if (!is_dangling(r, svc))
            continue;
        const char *id = cJSON_GetObjectItemCaseSensitive(svc, "ID")->valuestring;
        log_info("Removing service '%s': registered by consul-sidecar on this node but no "
                 "longer configured",
                 id);
        struct reg_service *s = calloc(1, sizeof *s);
        struct consul_service tmp = {.id = unconst(id), .name = unconst(id)};
        if (s == NULL)
            continue;
        s->r = r;
        s->svc.id = strdup(tmp.id);
        s->svc.name = strdup(tmp.name);
        s->svc.definition = cJSON_CreateObject();
        s->remove = 1;
        struct reg_service **n = realloc(r->svcs, (r->n_svcs + 1) * sizeof *n);
        if (n == NULL || !s->svc.id || !s->svc.name || !s->svc.definition) {
            if (n)
                r->svcs = n;
            service_free(s);
            continue;
        }
        r->svcs = n;
        r->svcs[r->n_svcs++] = s;
    }
    cJSON_Delete(all);
    r->cleaned = 1;
    backoff_reset(&r->backoff);
    reg_kick(r);
    loop_timer_start(r->resync_timer, rand_jitter_around((uint64_t)r->o.resync_ms, 0.1));
}

void registrar_start(struct registrar *r)
{
    char err[256];
    r->started = 1;
    if (r->list_call || r->shutting_down)
        return;
    r->list_call = consul_request(r->o.consul, "GET", "/v1/agent/services", NULL, 0, REG_TIMEOUT_MS,
                                  0, on_cleanup_list, r, err, sizeof err);
    if (r->list_call == NULL) {
        log_error("Cannot query the Consul agent: %s", err);
        reg_schedule_retry(r);
    }
}

/* ---- anti-entropy -------------------------------------------------------- */

static int ae_eligible(const struct reg_service *s)
{
    return !s->remove && s->state == REG_SYNCED && s->call == NULL;
}

/* The round is over: repairs start, the next round is timed. */
void ae_finish(struct registrar *r)
{
    cJSON_Delete(r->agent_checks);
    r->agent_checks = NULL;
    reg_kick(r);
    if (r->shutting_down)
        return;
    if (r->ae_again)
        loop_timer_start(r->resync_timer, 0);
    else if (r->ae_failed)
        loop_timer_start(r->resync_timer, backoff_next(&r->backoff));
    else
        loop_timer_start(r->resync_timer, rand_jitter_around((uint64_t)r->o.resync_ms, 0.1));
    r->ae_again = 0;
}

static void on_ae_service(const struct consul_response *resp, void *arg)
{
    struct reg_service *s = arg;
    struct registrar *r = s->r;
    s->read_call = NULL;
    r->ae_pending--;
    agent_result(r, resp);
    cJSON *view = NULL;
    if (resp->err == HTTP_OK && resp->status == 200)
        view = cJSON_ParseWithLength(resp->body, resp->body_len);
    int missing = resp->err == HTTP_OK && resp->status == 404;
    if (!missing && !cJSON_IsObject(view)) {
        /* Unreachable, an error or a bad answer: nothing is decided on it
         * (one line a round, however many services failed alike). */
        if (resp->err == HTTP_OK && !resp->limited && !r->ae_failed) {
            char line[300];
            consul_describe_error(resp, "GET", "/v1/agent/service/:id", line, sizeof line);
            log_warn(
                "Anti-entropy: could not read service '%s' from the agent (%s); will try again",
                s->svc.id, resp->status == 200 ? "not a JSON object" : line);
        }
        r->ae_failed = 1;
    } else if (ae_eligible(s)) {
        char why[256] = "";
        if (missing) {
            char how[300];
            snprintf(how, sizeof how, "Service '%s' is missing from the agent", s->svc.id);
            reg_mark_lost(s, how);
        } else if (consul_service_drift(&s->svc, view, why, sizeof why) ||
                   consul_checks_drift(&s->svc, r->agent_checks, why, sizeof why)) {
            log_warn("Service '%s' drifted on the agent (%s); re-registering", s->svc.id, why);
            s->state = REG_PENDING;
        }
    }
    cJSON_Delete(view);
    if (r->ae_pending == 0)
        ae_finish(r);
}

/* The agent's checks are in: read each registered service. */
static void on_ae_checks(const struct consul_response *resp, void *arg)
{
    struct registrar *r = arg;
    char path[600], err[256];
    r->checks_call = NULL;
    agent_result(r, resp);
    cJSON *checks = NULL;
    if (resp->err == HTTP_OK && resp->status == 200)
        checks = cJSON_ParseWithLength(resp->body, resp->body_len);
    if (!cJSON_IsObject(checks)) {
        if (resp->err == HTTP_OK && !resp->limited)
            log_warn("Anti-entropy: could not read the agent's checks; will try again");
        cJSON_Delete(checks);
        if (!r->shutting_down)
            loop_timer_start(r->resync_timer, r->ae_again ? 0 : backoff_next(&r->backoff));
        r->ae_again = 0;
        return;
    }
    r->agent_checks = checks;
    r->ae_failed = 0;
    for (size_t i = 0; i < r->n_svcs && !r->shutting_down; i++) {
        struct reg_service *s = r->svcs[i];
        if (!ae_eligible(s) || s->read_call)
            continue;
        char *id = http_escape(s->svc.id);
        if (id == NULL) {
            r->ae_failed = 1;
            continue;
        }
        snprintf(path, sizeof path, "/v1/agent/service/%s", id);
        free(id);
        s->read_call = consul_request(r->o.consul, "GET", path, NULL, 0, REG_TIMEOUT_MS, 0,
                                      on_ae_service, s, err, sizeof err);
        if (s->read_call)
            r->ae_pending++;
        else
            r->ae_failed = 1;
    }
    if (r->ae_pending == 0)
        ae_finish(r);
}

void on_resync_timer(void *arg)
{
    struct registrar *r = arg;
    char err[256];
    if (!r->cleaned || r->shutting_down)
        return;
    if (r->checks_call || r->agent_checks) {
        r->ae_again = 1; /* a reconnect during a round: one more right after */
        return;
    }
    r->checks_call = consul_request(r->o.consul, "GET", "/v1/agent/checks", NULL, 0, REG_TIMEOUT_MS,
                                    0, on_ae_checks, r, err, sizeof err);
    if (r->checks_call == NULL)
        loop_timer_start(r->resync_timer, backoff_next(&r->backoff));
}

void registrar_consul_recovered(struct registrar *r)
{
    if (r->shutting_down)
        return;
    if (loop_timer_active(r->retry_timer))
        loop_timer_start(r->retry_timer, 0);
    /* After a reconnect the agent may have lost everything (a round in
     * flight is followed by one more). */
    if (r->cleaned)
        loop_timer_start(r->resync_timer, 0);
}
