/* Blocking queries of the Consul double: parameters, parking, wake-ups. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/dur.h"
#include "tests/doubles/consul/api_int.h"

/* ---- common query handling -------------------------------------------------- */

int common_params(struct MHD_Connection *c, struct query *q, int need_leader, enum MHD_Result *ret)
{
    const char *v;
    memset(q, 0, sizeof *q);
    if ((v = arg(c, "dc")) && *v && strcmp(v, S.dc) != 0) {
        *ret = reply_text(c, 500, "No path to datacenter");
        return -1;
    }
    if ((v = arg(c, "index")) && *v) {
        char *e;
        errno = 0;
        unsigned long long x = strtoull(v, &e, 10);
        if (*e || errno || v[0] == '-') {
            *ret = reply_text(c, 400, "Invalid index");
            return -1;
        }
        q->index = x;
    }
    q->wait_ms = 0;
    if ((v = arg(c, "wait")) && *v) {
        if (dur_parse_ms(v, &q->wait_ms) < 0) {
            *ret = reply_text(c, 400, "Invalid wait time");
            return -1;
        }
    }
    q->stale = has_arg(c, "stale");
    q->consistent = has_arg(c, "consistent");
    if (q->stale && q->consistent) {
        *ret = reply_text(c, 400, "Cannot specify ?stale with ?consistent, conflicting semantics.");
        return -1;
    }
    if (need_leader && !q->stale && S.leader[0] == '\0') {
        *ret = reply_text(c, 500, "No cluster leader");
        return -1;
    }
    return 0;
}

/*
 * Every change wakes every parked blocking query. A real Consul wakes only
 * those whose data moved (memdb watch sets); here a parked health query
 * first looks its service's index up in a table made once per wake-up (by
 * the same rule as view_health_service) and rebuilds its view only when
 * that index passed its own, so 1,000 parked queries cost one pass over the
 * catalog a change, not 1,000 views.
 */
#define HIDX_SLOTS 65536u

static struct {
    uint64_t wakes; /* S.wakes it was made at; 0 = never */
    struct {
        const char *name;
        uint64_t idx;
    } by_name[HIDX_SLOTS];
    struct {
        const struct node *n;
        const char *id, *name;
    } by_id[HIDX_SLOTS];
} HI;

static uint32_t hidx_hash(const char *s, uintptr_t salt)
{
    uint32_t h = 2166136261u ^ (uint32_t)salt;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void hidx_raise(const char *name, uint64_t idx)
{
    for (uint32_t i = hidx_hash(name, 0) % HIDX_SLOTS;; i = (i + 1) % HIDX_SLOTS) {
        if (HI.by_name[i].name == NULL)
            HI.by_name[i].name = name;
        if (strcmp(HI.by_name[i].name, name) == 0) {
            HI.by_name[i].idx = max64(HI.by_name[i].idx, idx);
            return;
        }
    }
}

static const char *hidx_service_of(const struct node *n, const char *id)
{
    for (uint32_t i = hidx_hash(id, (uintptr_t)n) % HIDX_SLOTS; HI.by_id[i].id;
         i = (i + 1) % HIDX_SLOTS)
        if (HI.by_id[i].n == n && strcmp(HI.by_id[i].id, id) == 0)
            return HI.by_id[i].name;
    return NULL;
}

static void hidx_build(void)
{
    memset(HI.by_name, 0, sizeof HI.by_name);
    memset(HI.by_id, 0, sizeof HI.by_id);
    for (int i = 0; i < 64; i++) {
        const struct node *n = &S.nodes[i];
        if (!node_visible(n))
            continue;
        uint64_t node_idx = n->serf_index;
        for (int k = 0; k < S.maxn; k++)
            if (n->checks[k].used && !n->checks[k].service_id[0])
                node_idx = max64(node_idx, n->checks[k].modify_index);
        for (int j = 0; j < S.maxn; j++) {
            const struct service *s = &n->services[j];
            if (!s->used)
                continue;
            hidx_raise(s->name, max64(node_idx, s->modify_index));
            uint32_t h = hidx_hash(s->id, (uintptr_t)n) % HIDX_SLOTS;
            while (HI.by_id[h].id)
                h = (h + 1) % HIDX_SLOTS;
            HI.by_id[h].n = n;
            HI.by_id[h].id = s->id;
            HI.by_id[h].name = s->name;
        }
        for (int k = 0; k < S.maxn; k++) {
            const char *name;
            if (n->checks[k].used && n->checks[k].service_id[0] &&
                (name = hidx_service_of(n, n->checks[k].service_id)) != NULL)
                hidx_raise(name, n->checks[k].modify_index);
        }
    }
    HI.wakes = S.wakes ? S.wakes : 1;
}

/* The index view_health_service would give name; 0 when it has no instance. */
static uint64_t health_service_index(const char *name)
{
    if (HI.wakes != (S.wakes ? S.wakes : 1))
        hidx_build();
    for (uint32_t i = hidx_hash(name, 0) % HIDX_SLOTS; HI.by_name[i].name; i = (i + 1) % HIDX_SLOTS)
        if (strcmp(HI.by_name[i].name, name) == 0)
            return HI.by_name[i].idx;
    return 0;
}

/* The headers of a blocking view's answer at index idx (in vh). */
struct view_headers {
    char index[32], contact[8];
    const char *h[11];
};

static const char *const *view_headers(struct view_headers *vh, const struct query *q, uint64_t idx)
{
    snprintf(vh->index, sizeof vh->index, "%" PRIu64, idx);
    snprintf(vh->contact, sizeof vh->contact, "%d", q->stale ? 10 : 0);
    const char *h[] = {"X-Consul-Index",
                       vh->index,
                       "X-Consul-Knownleader",
                       S.leader[0] ? "true" : "false",
                       "X-Consul-Lastcontact",
                       vh->contact,
                       "X-Consul-Effective-Consistency",
                       q->stale        ? "stale"
                       : q->consistent ? "consistent"
                                       : "leader",
                       "X-Consul-Query-Backend",
                       "blocking-query",
                       NULL};
    memcpy(vh->h, h, sizeof h);
    return vh->h;
}

/* When a blocking query gives up: its ?wait (default 5 min, at most 10),
 * plus up to 1/16 of it, as Consul adds jitter. */
static struct timespec wait_deadline(const struct query *q)
{
    int64_t wait = q->wait_ms > 0 ? q->wait_ms : DEFAULT_WAIT_MS;
    if (wait > MAX_WAIT_MS)
        wait = MAX_WAIT_MS;
    wait += (int64_t)(rand() % (int)(wait / 16 + 1));
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += wait / 1000;
    dl.tv_nsec += (wait % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    return dl;
}

/* A parked /v1/health/service query, woken only when its service's index
 * passes its own (or its agent goes down): a real Consul wakes the watchers
 * of what changed, not every parked query, and 1,000 threads woken on every
 * change took one lock in turn. */
struct svc_waiter {
    const char *name;
    uint64_t index;
    const struct agent *a;
    pthread_cond_t cond;
    struct svc_waiter *prev, *next;
};
static struct svc_waiter *waiters;

static void waiter_add(struct svc_waiter *w, const char *name, uint64_t index,
                       const struct agent *a)
{
    *w = (struct svc_waiter){name, index, a, PTHREAD_COND_INITIALIZER, NULL, waiters};
    if (waiters)
        waiters->prev = w;
    waiters = w;
}

static void waiter_remove(struct svc_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    pthread_cond_destroy(&w->cond);
}

void api_wake_waiters(void)
{
    for (struct svc_waiter *w = waiters; w; w = w->next) {
        uint64_t peek = health_service_index(w->name);
        if (w->a->down || peek == 0 || max64(peek, svc_touched(w->name)) > w->index)
            pthread_cond_signal(&w->cond);
    }
}

enum MHD_Result blocking_view(struct agent *a, struct MHD_Connection *c, const struct query *q,
                              view_fn fn, const void *ctx)
{
    uint64_t idx = 0;
    int status = 200;
    cJSON *body = fn(c, ctx, &idx, &status);
    if (q->index > 0 && idx <= q->index) {
        struct timespec dl = wait_deadline(q);
        struct svc_waiter w;
        int targeted = fn == view_health_service && status == 200;
        if (targeted)
            waiter_add(&w, ctx, q->index, a);
        while (idx <= q->index && !a->down) {
            if (pthread_cond_timedwait(targeted ? &w.cond : &S.changed, &S.mu, &dl) == ETIMEDOUT)
                break;
            if (targeted && !a->down) {
                uint64_t peek = health_service_index(ctx);
                if (peek > 0 && max64(peek, svc_touched(ctx)) <= q->index)
                    continue; /* its service did not move: stay parked */
            }
            if (fn == view_catalog_services && !a->down && S.services_index <= q->index)
                continue; /* its index is known without building the view */
            cJSON_Delete(body);
            body = fn(c, ctx, &idx, &status);
        }
        if (targeted)
            waiter_remove(&w);
        if (a->down) {
            cJSON_Delete(body);
            return MHD_NO;
        }
        if (idx <= q->index) {
            cJSON_Delete(body);
            body = fn(c, ctx, &idx, &status);
        }
        int faulted;
        enum MHD_Result fr = fault_after_wait(a, c, &faulted);
        if (faulted) {
            cJSON_Delete(body);
            return fr;
        }
    }
    if (idx == 0)
        idx = 1;
    struct view_headers vh = {0};
    const char *const *h = view_headers(&vh, q, idx);
    pthread_mutex_unlock(&S.mu);
    if (fn != view_kv && fn != view_catalog_services)
        apply_filter(c, body);
    enum MHD_Result r;
    if (body == NULL && status == 400)
        r = reply(c, 400, "text/plain; charset=utf-8", "Invalid value for ?passing", 26, h);
    else if (body == NULL)
        r = reply(c, (unsigned)status, "text/plain; charset=utf-8", "", 0, h);
    else
        r = json_reply(c, (unsigned)status, body, h);
    pthread_mutex_lock(&S.mu);
    return r;
}

/* /v1/health/state/<state> without ?filter or ?pretty: parked on the
 * checks index alone (nothing is built while it waits) and written
 * straight from memory (render.c). Called and returns with S.mu held. */
enum MHD_Result blocking_state(struct agent *a, struct MHD_Connection *c, const struct query *q,
                               const char *state)
{
    if (q->index > 0 && S.checks_index <= q->index) {
        struct timespec dl = wait_deadline(q);
        while (S.checks_index <= q->index && !a->down)
            if (pthread_cond_timedwait(&S.changed, &S.mu, &dl) == ETIMEDOUT)
                break;
        if (a->down)
            return MHD_NO;
        int faulted;
        enum MHD_Result fr = fault_after_wait(a, c, &faulted);
        if (faulted)
            return fr;
    }
    struct buf b;
    buf_init(&b, 0);
    int rc = render_health_state(&b, state);
    uint64_t idx = S.checks_index ? S.checks_index : 1;
    struct view_headers vh = {0};
    const char *const *h = view_headers(&vh, q, idx);
    pthread_mutex_unlock(&S.mu);
    enum MHD_Result r = rc < 0 ? reply_text(c, 500, "out of memory")
                               : reply(c, 200, "application/json", b.data, b.len, h);
    buf_free(&b);
    pthread_mutex_lock(&S.mu);
    return r;
}

enum MHD_Result serve_view(const struct req *r, view_fn fn, const void *ctx)
{
    struct query q;
    enum MHD_Result ret;
    if (common_params(r->c, &q, 1, &ret) < 0)
        return ret;
    pthread_mutex_lock(&S.mu);
    ret = blocking_view(r->a, r->c, &q, fn, ctx);
    pthread_mutex_unlock(&S.mu);
    return ret;
}
