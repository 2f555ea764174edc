/*
 * The one small interface every proxy driver implements (Kong Admin API,
 * HAProxy Runtime API, nginx render + reload). sidecar/ decides *what*
 * should change; a driver only knows *how* to read a proxy's upstream and
 * apply a list of operations to it. Drivers never call consul/.
 *
 * All I/O is asynchronous on the shared loop. Contract: if a call returns -1
 * its callback never fires (err is filled); otherwise the callback fires
 * exactly once. Drivers do not log: they report text in errors.
 */
#ifndef PROXY_PROXY_H
#define PROXY_PROXY_H

#include <stddef.h>

#include "lib/loop.h"

/* One backend address of an upstream. host is an IP literal (v4, or v6
 * without brackets) or a host name; weight is Kong-style 0..65535 (drivers
 * scale it: HAProxy 0..256, nginx weight>=1 or "down" for 0). */
struct proxy_target {
    char *host;
    int port;
    int weight;
};

struct proxy_set_block; /* proxy.c */

struct proxy_target_set {
    struct proxy_target *items;
    size_t n;
    /* When set, the set is a copy: items and hosts live in this one
     * counted block, shared by the sets that share it (read-only then);
     * else items and each host are their own allocations. */
    struct proxy_set_block *block;
};

enum proxy_op_kind { PROXY_OP_ADD, PROXY_OP_REMOVE, PROXY_OP_SET_WEIGHT };

struct proxy_op {
    enum proxy_op_kind kind;
    struct proxy_target target; /* weight used by ADD and SET_WEIGHT */
};

/* Result of one operation, in the order given. */
struct proxy_op_result {
    int ok;      /* 1 applied (or already so), 0 failed */
    char *error; /* why, NULL while none (10,000 ops mostly have none) */
};

struct proxy;

/* actual == NULL on failure (err says why). The set is valid only during
 * the callback. */
typedef void (*proxy_read_fn)(const struct proxy_target_set *actual, const char *err, void *arg);
/* ok is 1 when every op applied; results has one entry per op. err is a
 * summary of the first failure. */
typedef void (*proxy_apply_fn)(int ok, const struct proxy_op_result *results, size_t n,
                               const char *err, void *arg);

struct proxy_ops {
    const char *name; /* "kong", "haproxy", "nginx" */
    /* Reads the targets the sidecar owns in this upstream (hand-made entries
     * are never reported, so never touched). An upstream that does not exist
     * yet reads as empty. */
    int (*read)(struct proxy *p, const char *upstream, proxy_read_fn fn, void *arg, char *err,
                size_t errlen);
    /* Applies ops (adds first, then weights, then removals). desired is the
     * complete wanted set, for drivers that render whole files (nginx). */
    int (*apply)(struct proxy *p, const char *upstream, const struct proxy_op *ops, size_t n_ops,
                 const struct proxy_target_set *desired, proxy_apply_fn fn, void *arg, char *err,
                 size_t errlen);
    /* Cancels everything in flight (callbacks will not fire) and frees. */
    void (*free)(struct proxy *p);
    /* The largest weight the proxy stores (HAProxy 256): the reconciler
     * compares with desired weights capped to it, so a capped weight read
     * back is not a change. 0 = no cap. */
    int max_weight;
    /* Optional. The caller lost the right to write (an elected writer's
     * lock): writes on the wire are dropped now and fail; their callbacks
     * fire from the loop, later. */
    void (*abort_writes)(struct proxy *p);
};

/* Every driver's handle starts with this. */
struct proxy {
    const struct proxy_ops *ops;
    struct loop *loop;
    /* Set by the caller (an elected writer that lost its lock): the driver
     * sends no further write, and an apply under way ends with its remaining
     * ops failed. Reads go on. */
    int writes_stopped;
    /* Kept by the driver: a write request is on the wire, its outcome not
     * yet known (the caller waits for 0 before handing over the lock). */
    int writing;
};

/* Helpers shared by drivers and the reconciler. */
void proxy_target_set_free(struct proxy_target_set *s);
/* Deep copy, items and hosts in one block: dst is its own to change.
 * Returns 0 or -1. */
int proxy_target_set_copy(struct proxy_target_set *dst, const struct proxy_target_set *src);
/* The same targets for a holder that only reads them: a copy's block is
 * shared (counted), anything else copied. Neither set may change after.
 * Returns 0 or -1. */
int proxy_target_set_share(struct proxy_target_set *dst, const struct proxy_target_set *src);
/* Sets r's error to the formatted text (its own copy; r->ok untouched). */
void proxy_result_error(struct proxy_op_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Frees n results' errors and the array. */
void proxy_results_free(struct proxy_op_result *r, size_t n);
/* "10.0.0.1:80" or "[fd00::1]:80" into out. */
const char *proxy_target_key(const struct proxy_target *t, char *out, size_t len);

#endif
