/* Pure reconciliation logic; see recon.h. */
#include "sidecar/recon.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/rand.h"

static int host_cmp(const char *a, const char *b)
{
    unsigned char x[16], y[16];
    if (inet_pton(AF_INET6, a, x) == 1 && inet_pton(AF_INET6, b, y) == 1)
        return memcmp(x, y, 16);
    if (inet_pton(AF_INET, a, x) == 1 && inet_pton(AF_INET, b, y) == 1)
        return memcmp(x, y, 4);
    return strcasecmp(a, b);
}

static int target_cmp(const void *pa, const void *pb)
{
    const struct proxy_target *a = pa, *b = pb;
    int c = host_cmp(a->host, b->host);
    if (c)
        return c;
    return (a->port > b->port) - (a->port < b->port);
}

int recon_same_target(const struct proxy_target *a, const struct proxy_target *b)
{
    return a->port == b->port && host_cmp(a->host, b->host) == 0;
}

int recon_sets_equal(const struct proxy_target_set *a, const struct proxy_target_set *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        size_t j;
        for (j = 0; j < b->n; j++)
            if (recon_same_target(&a->items[i], &b->items[j]))
                break;
        if (j == b->n || a->items[i].weight != b->items[j].weight)
            return 0;
    }
    return 1;
}

int recon_desired_from_instances(const struct consul_instances *in, struct proxy_target_set *out)
{
    *out = (struct proxy_target_set){0};
    if (in->n == 0)
        return 0;
    /* Built over the answer's own strings, then copied into one block. */
    struct proxy_target_set view = {calloc(in->n, sizeof *view.items), 0, NULL};
    if (view.items == NULL)
        return -1;
    for (size_t i = 0; i < in->n; i++) {
        const struct consul_instance *ci = &in->items[i];
        if (ci->health == CONSUL_CRITICAL)
            continue;
        struct proxy_target t = {.host = ci->address, .port = ci->port, .weight = ci->weight};
        if (t.weight < 0)
            t.weight = 0;
        if (t.weight > 65535)
            t.weight = 65535;
        size_t j;
        for (j = 0; j < view.n; j++)
            if (recon_same_target(&view.items[j], &t))
                break;
        if (j < view.n) {
            /* Two registrations of one address: the larger weight wins. */
            if (t.weight > view.items[j].weight)
                view.items[j].weight = t.weight;
            continue;
        }
        view.items[view.n++] = t;
    }
    qsort(view.items, view.n, sizeof *view.items, target_cmp);
    int rc = proxy_target_set_copy(out, &view);
    free(view.items);
    return rc;
}

void recon_cap_weights(struct proxy_target_set *set, int max)
{
    for (size_t i = 0; max > 0 && i < set->n; i++)
        if (set->items[i].weight > max)
            set->items[i].weight = max;
}

int recon_diff(const struct proxy_target_set *desired, const struct proxy_target_set *actual,
               struct proxy_op **ops, size_t *n_ops)
{
    size_t cap = desired->n + actual->n, n = 0;
    *ops = NULL;
    *n_ops = 0;
    if (cap == 0)
        return 0;
    struct proxy_op *o = calloc(cap, sizeof *o);
    if (o == NULL)
        return -1;
    /* Adds first and removals last: the upstream never shrinks below what
     * both sets share, even if the apply stops half-way. */
    for (size_t i = 0; i < desired->n; i++) {
        size_t j;
        for (j = 0; j < actual->n; j++)
            if (recon_same_target(&desired->items[i], &actual->items[j]))
                break;
        if (j == actual->n)
            o[n++] = (struct proxy_op){PROXY_OP_ADD, desired->items[i]};
    }
    for (size_t i = 0; i < desired->n; i++) {
        for (size_t j = 0; j < actual->n; j++) {
            if (recon_same_target(&desired->items[i], &actual->items[j]) &&
                desired->items[i].weight != actual->items[j].weight) {
                o[n++] = (struct proxy_op){PROXY_OP_SET_WEIGHT, desired->items[i]};
                break;
            }
        }
    }
    for (size_t j = 0; j < actual->n; j++) {
        size_t i;
        for (i = 0; i < desired->n; i++)
            if (recon_same_target(&desired->items[i], &actual->items[j]))
                break;
        if (i == desired->n)
            o[n++] = (struct proxy_op){PROXY_OP_REMOVE, actual->items[j]};
    }
    if (n == 0) {
        free(o);
        return 0;
    }
    *ops = o;
    *n_ops = n;
    return 0;
}

void recon_ops_free(struct proxy_op *ops)
{
    free(ops);
}

void recon_policy_init(struct recon_policy *p, int64_t hold_down_ms, int allow_empty)
{
    memset(p, 0, sizeof *p);
    p->hold_down_ms = hold_down_ms;
    p->allow_empty = allow_empty;
}

void recon_policy_free(struct recon_policy *p)
{
    proxy_target_set_free(&p->last_good);
    p->have_good = 0;
}

int recon_policy_seed(struct recon_policy *p, const struct proxy_target_set *saved)
{
    struct proxy_target_set copy;
    if (proxy_target_set_copy(&copy, saved) < 0)
        return -1;
    proxy_target_set_free(&p->last_good);
    p->last_good = copy;
    p->have_good = 1;
    return 0;
}

enum recon_verdict recon_policy_feed(struct recon_policy *p, const struct consul_instances *answer,
                                     int known_leader, uint64_t now, uint64_t *recheck_at)
{
    struct proxy_target_set want;
    if (answer == NULL)
        return RECON_KEEP;
    if (recon_desired_from_instances(answer, &want) < 0)
        return RECON_KEEP;
    if (want.n == 0) {
        proxy_target_set_free(&want);
        if (p->have_good && p->last_good.n == 0) {
            p->empty_since = 0;
            return RECON_KEEP; /* already empty: nothing to do */
        }
        if (!p->allow_empty || known_leader == 0) {
            p->empty_since = 0;
            return RECON_KEEP;
        }
        if (p->empty_since == 0)
            p->empty_since = now;
        uint64_t due = p->empty_since + (uint64_t)(p->hold_down_ms > 0 ? p->hold_down_ms : 0);
        if (now < due) {
            *recheck_at = due;
            return RECON_HOLD;
        }
        proxy_target_set_free(&p->last_good);
        p->have_good = 1;
        p->empty_since = 0;
        return RECON_APPLY;
    }
    p->empty_since = 0;
    if (p->have_good && recon_sets_equal(&want, &p->last_good)) {
        proxy_target_set_free(&want);
        return RECON_KEEP;
    }
    proxy_target_set_free(&p->last_good);
    p->last_good = want;
    p->have_good = 1;
    return RECON_APPLY;
}

int recon_policy_doubt(struct recon_policy *p)
{
    int was_holding = p->empty_since != 0;
    p->empty_since = 0;
    return was_holding;
}

void recon_quiesce_init(struct recon_quiesce *q, int64_t min_ms, int64_t max_ms)
{
    memset(q, 0, sizeof *q);
    q->min_ms = min_ms > 0 ? min_ms : 0;
    q->max_ms = max_ms > q->min_ms ? max_ms : q->min_ms;
}

void recon_quiesce_init_jittered(struct recon_quiesce *q, int64_t min_ms, int64_t max_ms)
{
    int64_t j = max_ms > 0 ? (int64_t)rand_jitter_around((uint64_t)max_ms, 0.1) : 0;
    recon_quiesce_init(q, min_ms, j);
}

uint64_t recon_quiesce_change(struct recon_quiesce *q, uint64_t now)
{
    uint64_t min = (uint64_t)q->min_ms, max = (uint64_t)q->max_ms;
    if (min == 0)
        return now;
    if (q->pending_since == 0) {
        /* Quiet since the last apply: go at once. */
        if (q->last_apply == 0 || now >= q->last_apply + min)
            return now;
        q->pending_since = now;
    }
    q->last_change = now;
    uint64_t due = q->last_change + min;
    if (due > q->pending_since + max)
        due = q->pending_since + max;
    return due;
}

void recon_quiesce_applied(struct recon_quiesce *q, uint64_t now)
{
    q->last_apply = now;
    q->pending_since = 0;
    q->last_change = 0;
}
