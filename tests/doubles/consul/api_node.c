/* The Consul double's agent state: services and checks found, changed and
 * removed, and what restarts and member changes do to a node. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/doubles/consul/api_int.h"

/* ---- agent state changes ---------------------------------------------------------- */

struct service *svc_find(struct node *n, const char *id)
{
    for (int i = 0; i < S.maxn; i++)
        if (n->services[i].used && strcmp(n->services[i].id, id) == 0)
            return &n->services[i];
    return NULL;
}

struct check *check_find(struct node *n, const char *id)
{
    for (int i = 0; i < S.maxn; i++)
        if (n->checks[i].used && strcmp(n->checks[i].id, id) == 0)
            return &n->checks[i];
    return NULL;
}

struct check *check_slot(struct node *n)
{
    for (int i = 0; i < S.maxn; i++)
        if (!n->checks[i].used)
            return &n->checks[i];
    return NULL;
}

/* A check of a service went away: that service's index moves. */
void touch_check_service(struct node *n, const struct check *k, uint64_t idx)
{
    for (int i = 0; k->service_id[0] && i < S.maxn; i++)
        if (n->services[i].used && strcmp(n->services[i].id, k->service_id) == 0)
            svc_touch(n->services[i].name, idx);
}

void check_free_slot(struct check *k)
{
    free(k->output);
    memset(k, 0, sizeof *k);
}

static void set_output(struct check *k, const char *out)
{
    size_t n = out ? strlen(out) : 0;
    free(k->output);
    if (n > OUTPUT_MAX) {
        k->output = malloc(OUTPUT_MAX + 64);
        if (k->output)
            snprintf(k->output, OUTPUT_MAX + 64, "%.*s ... (captured %d of %zu bytes)", OUTPUT_MAX,
                     out, OUTPUT_MAX, n);
    } else {
        k->output = strdup(out ? out : "");
    }
}

/* A status update (TTL pass/warn/fail/update, TTL expiry). */
void check_update(struct check *k, enum cstatus st, const char *output)
{
    uint64_t now = now_ms();
    int status_changed = k->status != st;
    k->updated = 1;
    if (st == ST_CRITICAL) {
        if (k->critical_since == 0 || status_changed)
            k->critical_since = k->critical_since ? k->critical_since : now;
    } else {
        k->critical_since = 0;
    }
    k->status = st;
    set_output(k, output);
    if (k->ttl_ms > 0)
        k->ttl_deadline = now + (uint64_t)k->ttl_ms;
    /* Status changes reach the catalog at once; output-only changes would
     * be deferred by a real agent (2.5-7.5 min): here they are not indexed. */
    if (status_changed) {
        k->modify_index = bump();
        S.checks_index = k->modify_index;
    }
    changed();
}

void remove_service(struct node *n, struct service *s)
{
    for (int i = 0; i < S.maxn; i++)
        if (n->checks[i].used && strcmp(n->checks[i].service_id, s->id) == 0)
            check_free_slot(&n->checks[i]);
    char name[256];
    snprintf(name, sizeof name, "%s", s->name);
    cJSON_Delete(s->tags);
    cJSON_Delete(s->meta);
    cJSON_Delete(s->tagged);
    memset(s, 0, sizeof *s);
    S.extinction = bump();
    S.services_index = S.checks_index = S.extinction;
    svc_touch(name, S.extinction);
    changed();
}

void node_restart(struct node *n, int persist)
{
    uint64_t now = now_ms();
    if (!persist) {
        for (int i = 0; i < S.maxn; i++)
            if (n->services[i].used)
                remove_service(n, &n->services[i]);
        for (int i = 0; i < S.maxn; i++)
            if (n->checks[i].used)
                check_free_slot(&n->checks[i]);
        return;
    }
    for (int i = 0; i < S.maxn; i++) {
        struct check *k = &n->checks[i];
        if (!k->used)
            continue;
        if (k->ttl_ms > 0 && k->ttl_deadline > now)
            continue; /* unexpired TTL state is restored */
        if (k->status != ST_CRITICAL) {
            k->status = ST_CRITICAL;
            k->modify_index = bump();
            S.checks_index = k->modify_index;
        }
    }
    changed();
}

void session_invalidate(struct session *s)
{
    uint64_t now = now_ms();
    for (int i = 0; i < 1024; i++) {
        struct kv *k = &S.kvs[i];
        if (!k->used || strcmp(k->session, s->id) != 0)
            continue;
        if (strcmp(s->behavior, "delete") == 0) {
            /* The key goes, its lock delay stays (by key name, as Consul's),
             * and the deletion moves the index so watchers of the key wake. */
            int d = 0;
            for (int j = 1; j < 64; j++)
                if (S.deleted_delay[j].until < S.deleted_delay[d].until)
                    d = j;
            size_t kl = strnlen(k->key, sizeof k->key - 1);
            memcpy(S.deleted_delay[d].key, k->key, kl); /* both 512 bytes */
            S.deleted_delay[d].key[kl] = '\0';
            S.deleted_delay[d].until = now + (uint64_t)s->lock_delay_ms;
            free(k->value);
            memset(k, 0, sizeof *k);
            S.lock_delay_until[i] = 0;
            S.kv_index = bump();
            continue;
        }
        k->session[0] = '\0';
        k->modify_index = bump();
        S.kv_index = S.raft;
        S.lock_delay_until[i] = now + (uint64_t)s->lock_delay_ms;
    }
    memset(s, 0, sizeof *s);
    S.sessions_index = bump();
    changed();
}

void node_set_status(struct node *n, int status)
{
    if (n->status == status)
        return;
    n->status = status;
    enum cstatus serf = status == 4 ? ST_CRITICAL : ST_PASSING;
    if (serf != n->serf) {
        n->serf = serf;
        n->serf_index = bump();
        S.checks_index = n->serf_index;
    }
    if (status == 3 || status == 4) {
        /* Sessions tied to the node's health are invalidated. */
        for (int i = 0; i < MAX_SESSIONS; i++)
            if (S.sessions[i].used && strcmp(S.sessions[i].node, n->name) == 0)
                session_invalidate(&S.sessions[i]);
    }
    if (status == 3) {
        n->modify_index = bump();
        S.nodes_index = S.services_index = n->modify_index;
        S.extinction = n->modify_index;
        for (int i = 0; i < S.maxn; i++)
            if (n->services[i].used)
                svc_touch(n->services[i].name, n->modify_index);
    }
    if (status == 1 && n->modify_index < S.nodes_index) {
        n->modify_index = bump();
        S.nodes_index = n->modify_index;
    }
    changed();
}
