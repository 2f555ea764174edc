/*
 * The reconciler's pure core: no sockets, no clocks of its own, no logging.
 *
 *  - recon_diff: desired vs actual target sets -> the minimal operations
 *    (adds first, then weight changes, then removals).
 *  - recon_policy: fail static. Decides what an answer from Consul means for
 *    an upstream: apply a new desired set, keep the last known good one (any
 *    error, garbage, no leader), or hold an "empty" answer until it has been
 *    stable for hold_down before emptying anything.
 *  - recon_quiesce: the quiescence window. The first change after a quiet
 *    period is applied at once; changes that follow within `min` of it are
 *    coalesced, never delayed beyond `max`.
 */
#ifndef SIDECAR_RECON_H
#define SIDECAR_RECON_H

#include <stdint.h>

#include "consul/instance-t.h"
#include "proxy/proxy.h"

/* Builds the target set for the proxy from decoded instances: address and
 * port, weight from Consul's Weights (already chosen by health), instances
 * with weight 0 kept with weight 0 (drain), duplicates merged. Sorted. */
int recon_desired_from_instances(const struct consul_instances *in, struct proxy_target_set *out);

/* Same address? Compares IP literals by value (so "fd00::1" equals
 * "fd00:0000::0001") and host names case-insensitively. */
int recon_same_target(const struct proxy_target *a, const struct proxy_target *b);
int recon_sets_equal(const struct proxy_target_set *a, const struct proxy_target_set *b);

/* Caps every weight of set at max (0 = no cap), in place. */
void recon_cap_weights(struct proxy_target_set *set, int max);

/* Operations turning actual into desired; *ops is malloc'd (free with
 * recon_ops_free), their hosts point into desired/actual (no copies). */
int recon_diff(const struct proxy_target_set *desired, const struct proxy_target_set *actual,
               struct proxy_op **ops, size_t *n_ops);
void recon_ops_free(struct proxy_op *ops);

enum recon_verdict {
    RECON_KEEP,  /* leave the proxy as it is (error, or nothing changed) */
    RECON_APPLY, /* push policy->last_good */
    RECON_HOLD,  /* an empty answer not yet confirmed; ask again at recheck_at */
};

struct recon_policy {
    struct proxy_target_set last_good; /* what the proxy should have */
    int have_good;                     /* last_good is meaningful */
    uint64_t empty_since;              /* first positive empty answer, 0 none */
    int64_t hold_down_ms;
    int allow_empty; /* 0 for nginx: never render empty */
};

void recon_policy_init(struct recon_policy *p, int64_t hold_down_ms, int allow_empty);
void recon_policy_free(struct recon_policy *p);
/* Seeds last_good from the state file (a restart before Consul answers). */
int recon_policy_seed(struct recon_policy *p, const struct proxy_target_set *saved);

/*
 * Feeds one answer. answer == NULL means the query failed (error, garbage,
 * no leader): always RECON_KEEP. known_leader == 0 makes an empty answer
 * unconvincing (an agent still rejoining): held, never applied. On
 * RECON_HOLD *recheck_at is the time to call again with the same answer.
 */
enum recon_verdict recon_policy_feed(struct recon_policy *p, const struct consul_instances *answer,
                                     int known_leader, uint64_t now, uint64_t *recheck_at);
/* Consul could not be read (error, timeout, garbage): an empty answer held
 * so far is no longer confirmed, and the hold-down starts again with the
 * next good answer. Returns 1 if a hold was in progress. */
int recon_policy_doubt(struct recon_policy *p);

struct recon_quiesce {
    int64_t min_ms, max_ms; /* both 0: off, every change applied at once */
    uint64_t last_apply;    /* 0 never */
    uint64_t pending_since; /* 0 none */
    uint64_t last_change;
};

void recon_quiesce_init(struct recon_quiesce *q, int64_t min_ms, int64_t max_ms);
/* The same with max jittered by ±10 % (never below min): sidecars on every
 * node of a cluster see the same burst, and must not all apply at the same
 * instant when it ends (consul-template's synchronised max timer). */
void recon_quiesce_init_jittered(struct recon_quiesce *q, int64_t min_ms, int64_t max_ms);
/* A change arrived at now: returns when to apply it (now = at once). */
uint64_t recon_quiesce_change(struct recon_quiesce *q, uint64_t now);
void recon_quiesce_applied(struct recon_quiesce *q, uint64_t now);

#endif
