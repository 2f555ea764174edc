/*
 * The control API of consul-double (its own port): inspection and fault
 * injection for tests. See README.md for the full list with examples.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/doubles/consul/double.h"

static enum MHD_Result ok_json(struct MHD_Connection *c, cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    enum MHD_Result r = reply(c, 200, "application/json", s ? s : "{}", s ? strlen(s) : 2, NULL);
    free(s);
    return r;
}

static enum MHD_Result bad(struct MHD_Connection *c, const char *why)
{
    return reply_text(c, 400, why);
}

static struct agent *agent_by_name(const char *name)
{
    for (int i = 0; i < S.n_agents; i++)
        if (strcmp(S.agents[i].name, name) == 0)
            return &S.agents[i];
    return NULL;
}

static cJSON *state_json(void)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "index", (double)S.raft);
    cJSON_AddStringToObject(o, "leader", S.leader);
    cJSON *nodes = cJSON_AddArrayToObject(o, "nodes");
    for (int i = 0; i < 64; i++) {
        const struct node *n = &S.nodes[i];
        if (!n->used)
            continue;
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", n->name);
        cJSON_AddNumberToObject(x, "status", n->status);
        cJSON_AddBoolToObject(x, "server", n->server);
        if (n->agent) {
            cJSON_AddNumberToObject(x, "port", n->agent->port);
            cJSON_AddBoolToObject(x, "down", n->agent->down);
            cJSON_AddBoolToObject(x, "hang", n->agent->hang);
            cJSON_AddNumberToObject(x, "open_conns", n->agent->open_conns);
            cJSON_AddNumberToObject(x, "refused_conns", n->agent->refused_conns);
        }
        cJSON *svcs = cJSON_AddArrayToObject(x, "services");
        for (int j = 0; j < S.maxn; j++)
            if (n->services[j].used)
                cJSON_AddItemToArray(svcs, cJSON_CreateString(n->services[j].id));
        cJSON *checks = cJSON_AddObjectToObject(x, "checks");
        for (int j = 0; j < S.maxn; j++)
            if (n->checks[j].used)
                cJSON_AddStringToObject(checks, n->checks[j].id, status_name(n->checks[j].status));
        cJSON_AddItemToArray(nodes, x);
    }
    cJSON *sess = cJSON_AddArrayToObject(o, "sessions");
    for (int i = 0; i < MAX_SESSIONS; i++)
        if (S.sessions[i].used)
            cJSON_AddItemToArray(sess, cJSON_CreateString(S.sessions[i].id));
    return o;
}

enum MHD_Result control_handle(struct MHD_Connection *c, const char *url, const char *method,
                               const char *body, size_t body_len)
{
    cJSON *in = body_len ? cJSON_ParseWithLength(body, body_len) : cJSON_CreateObject();
    enum MHD_Result ret;
    char name[128];
    pthread_mutex_lock(&S.mu);
    if (!strcmp(url, "/state") && !strcmp(method, "GET")) {
        cJSON *o = state_json();
        pthread_mutex_unlock(&S.mu);
        cJSON_Delete(in);
        return ok_json(c, o);
    }
    if (!strcmp(url, "/requests")) {
        if (!strcmp(method, "DELETE")) {
            cJSON_Delete(S.requests);
            S.requests = cJSON_CreateArray();
            S.n_requests = 0;
            pthread_mutex_unlock(&S.mu);
            cJSON_Delete(in);
            return ok_json(c, cJSON_CreateObject());
        }
        char *s = cJSON_PrintUnformatted(S.requests);
        pthread_mutex_unlock(&S.mu);
        cJSON_Delete(in);
        ret = reply(c, 200, "application/json", s ? s : "[]", s ? strlen(s) : 2, NULL);
        free(s);
        return ret;
    }
    if (!strcmp(url, "/faults")) {
        if (!strcmp(method, "DELETE")) {
            S.n_faults = 0;
        } else {
            const cJSON *v;
            if (S.n_faults == 64 || !cJSON_IsObject(in)) {
                pthread_mutex_unlock(&S.mu);
                cJSON_Delete(in);
                return bad(c, "expected a JSON fault object (and at most 64 faults)");
            }
            struct fault *f = &S.faults[S.n_faults];
            memset(f, 0, sizeof *f);
            f->count = 1;
            if ((v = cJSON_GetObjectItem(in, "agent")) && cJSON_IsString(v))
                snprintf(f->agent, sizeof f->agent, "%s", v->valuestring);
            if ((v = cJSON_GetObjectItem(in, "path")) && cJSON_IsString(v))
                snprintf(f->path, sizeof f->path, "%s", v->valuestring);
            if ((v = cJSON_GetObjectItem(in, "kind")) && cJSON_IsString(v))
                snprintf(f->kind, sizeof f->kind, "%s", v->valuestring);
            if ((v = cJSON_GetObjectItem(in, "body")) && cJSON_IsString(v))
                snprintf(f->body, sizeof f->body, "%s", v->valuestring);
            if ((v = cJSON_GetObjectItem(in, "index_raw")) && cJSON_IsString(v))
                snprintf(f->index_raw, sizeof f->index_raw, "%s", v->valuestring);
            if ((v = cJSON_GetObjectItem(in, "count")) && cJSON_IsNumber(v))
                f->count = v->valueint;
            if ((v = cJSON_GetObjectItem(in, "status")) && cJSON_IsNumber(v))
                f->status = v->valueint;
            if ((v = cJSON_GetObjectItem(in, "delay_ms")) && cJSON_IsNumber(v))
                f->delay_ms = (long)v->valuedouble;
            if ((v = cJSON_GetObjectItem(in, "index")) && cJSON_IsNumber(v))
                f->index = (uint64_t)v->valuedouble;
            if ((v = cJSON_GetObjectItem(in, "size_bytes")) && cJSON_IsNumber(v))
                f->size_bytes = (size_t)v->valuedouble;
            static const char *const kinds[] = {"delay", "status", "garbage", "truncated",
                                                "big", "close", "index"};
            int known = 0;
            for (int i = 0; i < 7; i++)
                known |= strcmp(f->kind, kinds[i]) == 0;
            if (!known) {
                pthread_mutex_unlock(&S.mu);
                cJSON_Delete(in);
                return bad(c, "kind must be one of delay, status, garbage, truncated, big, close, index");
            }
            S.n_faults++;
        }
        pthread_mutex_unlock(&S.mu);
        cJSON_Delete(in);
        return ok_json(c, cJSON_CreateObject());
    }
    if (!strcmp(url, "/leader") && !strcmp(method, "POST")) {
        const cJSON *l = cJSON_GetObjectItem(in, "leader");
        if (!cJSON_IsString(l) || (l->valuestring[0] && !node_by_name(l->valuestring))) {
            pthread_mutex_unlock(&S.mu);
            cJSON_Delete(in);
            return bad(c, "expected {\"leader\": \"server-N\"} or {\"leader\": \"\"}");
        }
        snprintf(S.leader, sizeof S.leader, "%s", l->valuestring);
        changed();
        pthread_mutex_unlock(&S.mu);
        cJSON_Delete(in);
        return ok_json(c, cJSON_CreateObject());
    }
    if (!strcmp(url, "/agents") && !strcmp(method, "POST")) {
        const cJSON *n = cJSON_GetObjectItem(in, "name");
        struct agent *a = cJSON_IsString(n) ? agent_add(n->valuestring) : NULL;
        if (a == NULL || agent_start(a) < 0) {
            pthread_mutex_unlock(&S.mu);
            cJSON_Delete(in);
            return bad(c, "expected {\"name\": \"<new agent>\"} (unique, at most 64 agents)");
        }
        write_port_file();
        changed();
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", a->name);
        cJSON_AddNumberToObject(o, "port", a->port);
        pthread_mutex_unlock(&S.mu);
        cJSON_Delete(in);
        return ok_json(c, o);
    }
    if (sscanf(url, "/members/%127s", name) == 1 && !strcmp(method, "POST")) {
        struct node *n = node_by_name(name);
        const cJSON *st = cJSON_GetObjectItem(in, "status");
        static const char *const names[] = {"none", "alive", "leaving", "left", "failed"};
        int status = -1;
        for (int i = 1; i < 5 && cJSON_IsString(st); i++)
            if (!strcmp(st->valuestring, names[i]))
                status = i;
        if (n == NULL || status < 0) {
            pthread_mutex_unlock(&S.mu);
            cJSON_Delete(in);
            return bad(c, "unknown member, or status not one of alive, leaving, left, failed");
        }
        node_set_status(n, status);
        pthread_mutex_unlock(&S.mu);
        cJSON_Delete(in);
        return ok_json(c, cJSON_CreateObject());
    }
    char verb[32];
    if (sscanf(url, "/agents/%127[^/]/%31s", name, verb) == 2 && !strcmp(method, "POST")) {
        struct agent *a = agent_by_name(name);
        if (a == NULL) {
            pthread_mutex_unlock(&S.mu);
            cJSON_Delete(in);
            return bad(c, "unknown agent");
        }
        if (!strcmp(verb, "restart")) {
            const cJSON *p = cJSON_GetObjectItem(in, "persist");
            const cJSON *rj = cJSON_GetObjectItem(in, "rejoin_ms");
            node_restart(a->node, !cJSON_IsFalse(p));
            if (cJSON_IsNumber(rj) && rj->valuedouble > 0 && rj->valuedouble <= 3600000) {
                /* A process restart: every connection dropped, the port
                 * closed a moment, then a rejoin window of empty answers. */
                a->rejoin_until = now_ms() + (uint64_t)rj->valuedouble;
                if (!a->down) {
                    a->down = 1;
                    a->hang = 0;
                    changed();
                    pthread_mutex_unlock(&S.mu);
                    agent_stop(a);
                    struct timespec gone = {0, 300 * 1000000L};   /* the process starting */
                    nanosleep(&gone, NULL);
                    pthread_mutex_lock(&S.mu);
                    a->down = 0;
                    if (agent_start(a) < 0) {
                        pthread_mutex_unlock(&S.mu);
                        cJSON_Delete(in);
                        return reply_text(c, 500, "cannot listen on the agent's port again");
                    }
                }
            }
        } else if (!strcmp(verb, "down")) {
            a->down = 1;
            a->hang = 0;
            changed();
            pthread_mutex_unlock(&S.mu);
            agent_stop(a);
            cJSON_Delete(in);
            return ok_json(c, cJSON_CreateObject());
        } else if (!strcmp(verb, "up")) {
            a->hang = 0;
            if (a->down) {
                a->down = 0;
                if (agent_start(a) < 0) {
                    pthread_mutex_unlock(&S.mu);
                    cJSON_Delete(in);
                    return reply_text(c, 500, "cannot listen on the agent's port again");
                }
            }
            changed();
        } else if (!strcmp(verb, "hang")) {
            a->hang = 1;
        } else if (!strcmp(verb, "limit")) {
            const cJSON *m = cJSON_GetObjectItem(in, "max_conns");
            const cJSON *mode = cJSON_GetObjectItem(in, "mode");
            if (!cJSON_IsNumber(m) || m->valuedouble < 0 || m->valuedouble > 100000 ||
                (mode && (!cJSON_IsString(mode) || (strcmp(mode->valuestring, "close") &&
                                                    strcmp(mode->valuestring, "reset") &&
                                                    strcmp(mode->valuestring, "429"))))) {
                pthread_mutex_unlock(&S.mu);
                cJSON_Delete(in);
                return bad(c, "expected {\"max_conns\": N (0: no limit), \"mode\": \"close\", "
                              "\"reset\" or \"429\"}");
            }
            a->max_conns = m->valueint;
            a->limit_mode = !mode || !strcmp(mode->valuestring, "close") ? LIMIT_CLOSE
                            : !strcmp(mode->valuestring, "reset")       ? LIMIT_RESET
                                                                        : LIMIT_429;
        } else {
            pthread_mutex_unlock(&S.mu);
            cJSON_Delete(in);
            return bad(c, "verb must be restart, down, up, hang or limit");
        }
        pthread_mutex_unlock(&S.mu);
        cJSON_Delete(in);
        return ok_json(c, cJSON_CreateObject());
    }
    pthread_mutex_unlock(&S.mu);
    cJSON_Delete(in);
    return reply_text(c, 404, "unknown control endpoint; see tests/doubles/consul/README.md");
}

/* TTL expiry, the critical-service reaper and session TTLs. */
void *ticker(void *arg)
{
    (void)arg;
    uint64_t last_reap = now_ms();
    for (;;) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&S.mu);
        uint64_t now = now_ms();
        for (int i = 0; i < 64; i++) {
            struct node *n = &S.nodes[i];
            if (!n->used)
                continue;
            for (int k = 0; k < S.maxn; k++) {
                struct check *c = &n->checks[k];
                if (!c->used || c->ttl_ms <= 0 || c->ttl_deadline == 0 || now < c->ttl_deadline)
                    continue;
                c->ttl_deadline = 0;
                char out[OUTPUT_MAX_TTL];
                if (c->output && c->output[0])
                    snprintf(out, sizeof out, "TTL expired (last output before timeout follows): %s", c->output);
                else
                    snprintf(out, sizeof out, "TTL expired");
                int changed_status = c->status != ST_CRITICAL;
                free(c->output);
                c->output = strdup(out);
                if (c->critical_since == 0 || changed_status)
                    c->critical_since = now;
                c->updated = 1;
                c->status = ST_CRITICAL;
                if (changed_status) {
                    c->modify_index = bump();
                    S.checks_index = c->modify_index;
                }
                changed();
            }
        }
        if (now - last_reap >= (uint64_t)S.reap_interval_ms) {
            last_reap = now;
            for (int i = 0; i < 64; i++) {
                struct node *n = &S.nodes[i];
                if (!n->used)
                    continue;
                for (int k = 0; k < S.maxn; k++) {
                    struct check *c = &n->checks[k];
                    if (!c->used || c->dereg_ms <= 0 || c->status != ST_CRITICAL || !c->critical_since)
                        continue;
                    uint64_t after = (uint64_t)(c->dereg_ms > S.reap_min_ms ? c->dereg_ms : S.reap_min_ms);
                    if (now - c->critical_since < after || !c->service_id[0])
                        continue;
                    char sid[256];
                    snprintf(sid, sizeof sid, "%s", c->service_id);
                    for (int s = 0; s < S.maxn; s++) {
                        if (!n->services[s].used || strcmp(n->services[s].id, sid))
                            continue;
                        for (int j = 0; j < S.maxn; j++)
                            if (n->checks[j].used && !strcmp(n->checks[j].service_id, sid)) {
                                free(n->checks[j].output);
                                memset(&n->checks[j], 0, sizeof n->checks[j]);
                            }
                        S.extinction = bump();
                        svc_touch(n->services[s].name, S.extinction);
                        cJSON_Delete(n->services[s].tags);
                        cJSON_Delete(n->services[s].meta);
                        cJSON_Delete(n->services[s].tagged);
                        memset(&n->services[s], 0, sizeof n->services[s]);
                        S.services_index = S.checks_index = S.extinction;
                        fprintf(stderr, "consul-double: reaped service %s on %s\n", sid, n->name);
                        changed();
                    }
                }
            }
        }
        /* Session TTLs: invalidated between TTL and 2 x TTL, as servers do. */
        for (int i = 0; i < MAX_SESSIONS; i++) {
            struct session *s = &S.sessions[i];
            if (s->used && s->ttl_ms && now > s->expires + (uint64_t)s->ttl_ms / 2)
                session_invalidate(s);
        }
        pthread_mutex_unlock(&S.mu);
    }
    return NULL;
}
