/* Elected writer over Consul sessions and KV; see elect.h. */
#include "sidecar/elect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/decode.h"
#include "lib/log.h"
#include "lib/rand.h"

#define ELECT_REQ_TIMEOUT_MS 10000
#define ELECT_WAIT_MS 60000

struct elect {
    struct elect_opts o;
    char *what, *key, *node;
    char *session; /* NULL: none */
    char *holder;  /* node name from the key's value */
    char *holder_session;
    int writer;
    uint64_t last_renew; /* monotonic ms of the last good renew (when sent) */
    uint64_t renew_sent; /* when the create / renew in flight was sent */
    uint64_t kv_index;
    int kv_fresh; /* the read in flight was asked for at once */
    uint64_t kv_sent;
    uint64_t kv_dead_restarts;
    struct consul_call *session_call; /* create / renew / acquire / release */
    struct consul_call *kv_call;      /* blocking read of the key */
    struct loop_timer *renew_timer;
    struct loop_timer *deadline; /* writer must stop by then */
    struct loop_timer *retry;    /* session create / acquire retries */
    struct loop_timer *kv_retry;
    int kv_erring; /* kv_retry is an error backoff, not pacing */
    struct backoff backoff, kv_backoff;
    int releasing;
    void (*release_done)(void *);
    void *release_arg;
    struct loop_timer *release_deadline;
    char last_error[256];
};

static void try_create(struct elect *e);
static void try_acquire(struct elect *e);
static void kv_read(struct elect *e);

static void set_writer(struct elect *e, int writer, const char *why)
{
    if (e->writer == writer)
        return;
    e->writer = writer;
    if (writer) {
        log_info("acquired writer lock for '%s' (session %s)", e->what, e->session);
        uint64_t until = e->last_renew + (uint64_t)e->o.session_ttl_ms * 9 / 10;
        uint64_t now = loop_clock_ms();
        loop_timer_start(e->deadline, until > now ? until - now : 0);
    } else if (e->releasing || (why && strcmp(why, "shutting down") == 0)) {
        log_info("stopping writes for '%s' (shutting down)", e->what);
        loop_timer_stop(e->deadline);
    } else {
        log_warn("lost writer lock for '%s'%s%s", e->what, why ? ": " : "", why ? why : "");
        loop_timer_stop(e->deadline);
    }
    e->o.on_change(writer, writer ? e->node : e->holder, e->o.arg);
}

static void set_holder(struct elect *e, const char *holder, const char *session)
{
    int same = (holder == NULL && e->holder == NULL) ||
               (holder && e->holder && strcmp(holder, e->holder) == 0);
    free(e->holder_session);
    e->holder_session = session ? strdup(session) : NULL;
    if (same)
        return;
    free(e->holder);
    e->holder = holder ? strdup(holder) : NULL;
    if (!e->writer && !e->releasing) {
        if (e->holder && (e->session == NULL || e->holder_session == NULL ||
                          strcmp(e->holder_session, e->session) != 0))
            log_info("standby; writer is '%s'", e->holder);
        else if (e->holder == NULL)
            log_info("no writer holds the lock for '%s'", e->what);
        e->o.on_change(0, e->holder, e->o.arg);
    }
}

struct elect *elect_new(const struct elect_opts *o, char *err, size_t errlen)
{
    struct elect *e = calloc(1, sizeof *e);
    if (e == NULL)
        goto oom;
    e->o = *o;
    if (e->o.session_ttl_ms <= 0)
        e->o.session_ttl_ms = 15000;
    if (e->o.lock_delay_ms < 0)
        e->o.lock_delay_ms = 15000;
    if (e->o.wait_ms <= 0 || e->o.wait_ms > ELECT_WAIT_MS)
        e->o.wait_ms = ELECT_WAIT_MS;
    e->what = strdup(o->what);
    e->key = strdup(o->key);
    e->node = strdup(o->node);
    if (!e->what || !e->key || !e->node)
        goto oom;
    backoff_init(&e->backoff, 1000,
                 e->o.session_ttl_ms / 2 > 1000 ? (uint64_t)e->o.session_ttl_ms / 2 : 1000);
    backoff_init(&e->kv_backoff, 500, 30000);
    return e;
oom:
    elect_free(e);
    snprintf(err, errlen, "out of memory");
    return NULL;
}

void elect_free(struct elect *e)
{
    if (e == NULL)
        return;
    consul_cancel(e->session_call);
    consul_cancel(e->kv_call);
    loop_timer_free(e->renew_timer);
    loop_timer_free(e->deadline);
    loop_timer_free(e->retry);
    loop_timer_free(e->kv_retry);
    loop_timer_free(e->release_deadline);
    free(e->what);
    free(e->key);
    free(e->node);
    free(e->session);
    free(e->holder);
    free(e->holder_session);
    free(e);
}

int elect_is_writer(const struct elect *e)
{
    return e->writer;
}

const char *elect_holder(const struct elect *e)
{
    return e->writer ? e->node : e->holder;
}

uint64_t elect_watch_restarts(const struct elect *e)
{
    return e->kv_dead_restarts;
}

static void note_error(struct elect *e, const struct consul_response *r, const char *what)
{
    char line[256], desc[300];
    if (r->limited)
        return; /* the connection limit is logged once, by the daemon */
    consul_describe_error(r, "PUT", what, desc, sizeof desc);
    snprintf(line, sizeof line, "%s", desc);
    if (strcmp(line, e->last_error) != 0)
        log_warn("writer election for '%s': %s", e->what, line);
    snprintf(e->last_error, sizeof e->last_error, "%s", line);
}

static void kv_backoff_start(struct elect *e)
{
    e->kv_erring = 1;
    loop_timer_start(e->kv_retry, backoff_next(&e->kv_backoff));
}

/* Consul answered again: a key watch waiting out its error backoff (which
 * may have grown to many seconds during an outage) reads now, so a healed
 * node learns the holder at once instead of at the end of that backoff. */
static void kv_kick(struct elect *e)
{
    if (e->kv_call || e->releasing || !e->kv_erring || !loop_timer_active(e->kv_retry))
        return; /* a paced re-read (index did not move) stays paced */
    loop_timer_stop(e->kv_retry);
    backoff_reset(&e->kv_backoff);
    kv_read(e);
}

static void drop_session(struct elect *e, const char *why)
{
    set_writer(e, 0, why);
    free(e->session);
    e->session = NULL;
    loop_timer_stop(e->renew_timer);
}

/* ---- session -------------------------------------------------------------- */

#define ELECT_RENEW_RETRY_MS 50

static void on_renew_timer(void *arg);

static void on_renewed(const struct consul_response *r, void *arg)
{
    struct elect *e = arg;
    e->session_call = NULL;
    if (r->err == HTTP_OK && r->status == 200) {
        /* The servers restarted the TTL when they took the renew, at the
         * latest when it was sent: the deadline counts from then, so a slow
         * answer cannot carry our writes past the servers' own expiry. */
        uint64_t now = loop_clock_ms(), until;
        e->last_renew = e->renew_sent;
        e->last_error[0] = '\0';
        kv_kick(e);
        until = e->last_renew + (uint64_t)e->o.session_ttl_ms * 9 / 10;
        if (e->writer)
            loop_timer_start(e->deadline, until > now ? until - now : 0);
        loop_timer_start(e->renew_timer,
                         rand_jitter_around((uint64_t)e->o.session_ttl_ms / 2, 0.05));
        if (!e->writer && e->holder_session == NULL)
            try_acquire(e);
        return;
    }
    if (r->err == HTTP_OK && r->status == 404) {
        drop_session(e, "session invalidated by Consul");
        try_create(e);
        return;
    }
    /* Consul unreachable: keep renewing; the deadline stops writes in time. */
    note_error(e, r, "/v1/session/renew");
    loop_timer_start(e->renew_timer, 1000 + rand_below(1000));
}

static void on_renew_timer(void *arg)
{
    struct elect *e = arg;
    char path[300], err[256];
    if (e->session == NULL || e->releasing)
        return;
    if (e->session_call) {
        /* An acquire in flight: the renew goes right after it, not never
         * (the timer is one-shot; a renew skipped here left the session's
         * deadline to run out while the lock flapped). */
        loop_timer_start(e->renew_timer, ELECT_RENEW_RETRY_MS);
        return;
    }
    snprintf(path, sizeof path, "/v1/session/renew/%s", e->session);
    e->renew_sent = loop_clock_ms();
    e->session_call = consul_request(e->o.consul, "PUT", path, NULL, 0, ELECT_REQ_TIMEOUT_MS,
                                     CONSUL_REQ_URGENT, on_renewed, e, err, sizeof err);
    if (e->session_call == NULL)
        loop_timer_start(e->renew_timer, 1000);
}

static void on_created(const struct consul_response *r, void *arg)
{
    struct elect *e = arg;
    char id[128], err[256];
    e->session_call = NULL;
    if (r->err != HTTP_OK || r->status != 200 ||
        consul_decode_session_id(r->body, r->body_len, id, sizeof id, err, sizeof err) < 0) {
        note_error(e, r, "/v1/session/create");
        loop_timer_start(e->retry, backoff_next(&e->backoff));
        return;
    }
    backoff_reset(&e->backoff);
    free(e->session);
    e->session = strdup(id);
    e->last_renew = e->renew_sent;
    e->last_error[0] = '\0';
    loop_timer_start(e->renew_timer, rand_jitter_around((uint64_t)e->o.session_ttl_ms / 2, 0.05));
    kv_kick(e);
    try_acquire(e);
}

static void try_create(struct elect *e)
{
    char err[256], ttl[32], delay[32], body[600];
    if (e->session_call || e->releasing)
        return;
    /* Go duration syntax, exact: "2500ms" (whole seconds would shorten it). */
    snprintf(ttl, sizeof ttl, "%lldms", (long long)e->o.session_ttl_ms);
    snprintf(delay, sizeof delay, "%lldms", (long long)e->o.lock_delay_ms);
    cJSON *o = cJSON_CreateObject();
    char name[300];
    snprintf(name, sizeof name, "consul-sidecar %s writer (%s)", e->what, e->node);
    cJSON_AddStringToObject(o, "Name", name);
    cJSON_AddStringToObject(o, "TTL", ttl);
    cJSON_AddStringToObject(o, "LockDelay", delay);
    cJSON_AddStringToObject(o, "Behavior", "release");
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (text == NULL)
        return;
    snprintf(body, sizeof body, "%s", text);
    free(text);
    e->renew_sent = loop_clock_ms();
    e->session_call =
        consul_request(e->o.consul, "PUT", "/v1/session/create", body, strlen(body),
                       ELECT_REQ_TIMEOUT_MS, CONSUL_REQ_URGENT, on_created, e, err, sizeof err);
    if (e->session_call == NULL)
        loop_timer_start(e->retry, backoff_next(&e->backoff));
}

/* ---- lock ----------------------------------------------------------------- */

static void on_acquired(const struct consul_response *r, void *arg)
{
    struct elect *e = arg;
    e->session_call = NULL;
    if (r->err == HTTP_OK && r->status == 200) {
        int got = r->body_len >= 4 && strncmp(r->body, "true", 4) == 0;
        if (got) {
            set_holder(e, e->node, e->session);
            set_writer(e, 1, NULL);
            /* A key read in flight may predate the acquire: read afresh so a
             * stale answer cannot demote the new writer. */
            consul_cancel(e->kv_call);
            e->kv_call = NULL;
            e->kv_index = 0;
            e->kv_fresh = 1;
            kv_read(e);
        }
        /* false: someone holds it, or lock-delay; the KV watch tells when
         * it frees, and a slow retry covers the lock-delay window. */
        if (!got)
            loop_timer_start(e->retry,
                             (uint64_t)(e->o.lock_delay_ms > 0 ? 1000 : 500) + rand_below(500));
        return;
    }
    if (r->err == HTTP_OK && r->status == 500) {
        /* Unknown or invalidated session. */
        drop_session(e, "session no longer valid");
        try_create(e);
        return;
    }
    note_error(e, r, "/v1/kv acquire");
    loop_timer_start(e->retry, backoff_next(&e->backoff));
}

static void try_acquire(struct elect *e)
{
    char path[700], err[256];
    if (e->session == NULL || e->session_call || e->writer || e->releasing)
        return;
    if (e->holder_session && strcmp(e->holder_session, e->session) != 0)
        return; /* held by another: wait for the KV watch */
    snprintf(path, sizeof path, "/v1/kv/%s?acquire=%s", e->key, e->session);
    e->session_call =
        consul_request(e->o.consul, "PUT", path, e->node, strlen(e->node), ELECT_REQ_TIMEOUT_MS,
                       CONSUL_REQ_URGENT, on_acquired, e, err, sizeof err);
    if (e->session_call == NULL)
        loop_timer_start(e->retry, backoff_next(&e->backoff));
}

static void on_retry(void *arg)
{
    struct elect *e = arg;
    if (e->session == NULL)
        try_create(e);
    else
        try_acquire(e);
}

static void on_deadline(void *arg)
{
    struct elect *e = arg;
    /* No renew for 0.9 x TTL: the servers may already have dropped us. A
     * renew still in flight is for the session given up here: cancelled,
     * or it would keep try_create() from starting a new one. */
    consul_cancel(e->session_call);
    e->session_call = NULL;
    drop_session(e, "no successful session renew within the TTL");
    try_create(e);
}

/* ---- watching the key ----------------------------------------------------- */

static void on_kv(const struct consul_response *r, void *arg)
{
    struct elect *e = arg;
    e->kv_call = NULL;
    if (r->err == HTTP_ERR_TIMEOUT && e->kv_index > 0) {
        /* The long-poll went silent (the server lost it): say so, ask again. */
        e->kv_dead_restarts++;
        log_warn("writer election for '%s': blocking read of the lock key did not return in "
                 "time, restarting",
                 e->what);
        kv_read(e);
        return;
    }
    if (r->err != HTTP_OK || (r->status != 200 && r->status != 404)) {
        kv_backoff_start(e);
        return;
    }
    backoff_reset(&e->kv_backoff);
    e->kv_erring = 0;
    /* The SPEC's index rules, as every watch here: backwards starts over,
     * 0 is floored to 1 (never block on 0), and an answer without an index
     * or with one that did not move waits before the next read, so a
     * misbehaving server cannot make this a busy loop. */
    uint64_t idx = r->has_index ? r->index : 0;
    int moved = idx != e->kv_index;
    if (idx < e->kv_index)
        idx = 0;
    else if (r->has_index && idx == 0)
        idx = 1;
    e->kv_index = idx;
    int pace = (!r->has_index || !moved) && loop_clock_ms() - e->kv_sent < 1000;
    char holder[256] = "", session[128] = "", err[256];
    if (r->status == 200) {
        struct consul_kv kv;
        if (consul_decode_kv(r->body, r->body_len, &kv, err, sizeof err) < 0) {
            kv_backoff_start(e);
            return;
        }
        if (kv.session)
            snprintf(session, sizeof session, "%s", kv.session);
        if (kv.value && kv.session)
            snprintf(holder, sizeof holder, "%.*s", (int)kv.value_len, kv.value);
        consul_kv_free(&kv);
    }
    set_holder(e, holder[0] ? holder : NULL, session[0] ? session : NULL);
    if (e->writer && (session[0] == '\0' || e->session == NULL || strcmp(session, e->session) != 0))
        set_writer(e, 0, "the lock key no longer shows our session");
    if (!e->writer && session[0] == '\0')
        try_acquire(e);
    if (pace && !e->kv_fresh)
        loop_timer_start(e->kv_retry, 1000 + rand_below(500));
    else
        kv_read(e);
    e->kv_fresh = 0;
}

static void on_kv_retry(void *arg)
{
    kv_read(arg);
}

static void kv_read(struct elect *e)
{
    char path[700], err[256];
    if (e->kv_call || e->releasing)
        return;
    if (e->kv_index > 0)
        snprintf(path, sizeof path, "/v1/kv/%s?index=%llu&wait=%lldms", e->key,
                 (unsigned long long)e->kv_index, (long long)e->o.wait_ms);
    else
        snprintf(path, sizeof path, "/v1/kv/%s", e->key);
    long timeout =
        e->kv_index > 0 ? (long)(e->o.wait_ms + e->o.wait_ms / 16 + 5000) : ELECT_REQ_TIMEOUT_MS;
    e->kv_sent = loop_clock_ms();
    /* Urgent: a first read of the key decides whether we may write. */
    e->kv_call = consul_request(e->o.consul, "GET", path, NULL, 0, timeout,
                                e->kv_index > 0 ? CONSUL_REQ_BLOCKING : CONSUL_REQ_URGENT, on_kv, e,
                                err, sizeof err);
    if (e->kv_call == NULL)
        kv_backoff_start(e);
}

int elect_default_key(const char *datacenter, char *out, size_t len)
{
    if (datacenter == NULL || *datacenter == '\0')
        return -1;
    int n = snprintf(out, len, "consul-sidecar/%s/kong-writer", datacenter);
    return n > 0 && (size_t)n < len ? 0 : -1;
}

void elect_start(struct elect *e)
{
    e->renew_timer = loop_timer_new(e->o.loop, on_renew_timer, e);
    e->deadline = loop_timer_new(e->o.loop, on_deadline, e);
    e->retry = loop_timer_new(e->o.loop, on_retry, e);
    e->kv_retry = loop_timer_new(e->o.loop, on_kv_retry, e);
    try_create(e);
    kv_read(e);
}

/* ---- shutdown ------------------------------------------------------------- */

static void release_finish(struct elect *e)
{
    void (*done)(void *) = e->release_done;
    e->release_done = NULL;
    loop_timer_stop(e->release_deadline);
    if (done)
        done(e->release_arg);
}

static void on_destroyed(const struct consul_response *r, void *arg)
{
    struct elect *e = arg;
    (void)r;
    e->session_call = NULL;
    release_finish(e);
}

static void on_released(const struct consul_response *r, void *arg)
{
    struct elect *e = arg;
    char path[300], err[256];
    (void)r;
    e->session_call = NULL;
    log_info("released writer lock for '%s'", e->what);
    snprintf(path, sizeof path, "/v1/session/destroy/%s", e->session);
    e->session_call = consul_request(e->o.consul, "PUT", path, NULL, 0, ELECT_REQ_TIMEOUT_MS,
                                     CONSUL_REQ_URGENT, on_destroyed, e, err, sizeof err);
    if (e->session_call == NULL)
        release_finish(e);
}

static void on_release_deadline(void *arg)
{
    release_finish(arg);
}

void elect_release(struct elect *e, void (*done)(void *), void *arg)
{
    char path[700], err[256];
    int was_writer = e->writer;
    set_writer(e, 0, "shutting down");
    e->releasing = 1;
    e->release_done = done;
    e->release_arg = arg;
    consul_cancel(e->session_call);
    e->session_call = NULL;
    consul_cancel(e->kv_call);
    e->kv_call = NULL;
    loop_timer_stop(e->renew_timer);
    loop_timer_stop(e->retry);
    loop_timer_stop(e->kv_retry);
    if (e->session == NULL) {
        release_finish(e);
        return;
    }
    e->release_deadline = loop_timer_new(e->o.loop, on_release_deadline, e);
    if (e->release_deadline)
        loop_timer_start(e->release_deadline, 3000);
    if (was_writer)
        snprintf(path, sizeof path, "/v1/kv/%s?release=%s", e->key, e->session);
    else
        snprintf(path, sizeof path, "/v1/session/destroy/%s", e->session);
    e->session_call =
        consul_request(e->o.consul, "PUT", path, NULL, 0, ELECT_REQ_TIMEOUT_MS, CONSUL_REQ_URGENT,
                       was_writer ? on_released : on_destroyed, e, err, sizeof err);
    if (e->session_call == NULL)
        release_finish(e);
}

cJSON *elect_status_json(const struct elect *e)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "proxy", e->what);
    cJSON_AddStringToObject(o, "role", e->writer ? "writer" : "standby");
    cJSON_AddStringToObject(o, "key", e->key);
    if (elect_holder(e))
        cJSON_AddStringToObject(o, "holder", elect_holder(e));
    cJSON_AddBoolToObject(o, "has_session", e->session != NULL);
    if (e->last_error[0])
        cJSON_AddStringToObject(o, "last_error", e->last_error);
    return o;
}
