/*
 * Elected writer: exactly one sidecar of a Kong cluster writes to the shared
 * Kong datastore, chosen with Consul's lock recipe.
 *
 *   session (TTL, tied to this node's serfHealth, Behavior release,
 *   LockDelay) -> renew at TTL/2 -> PUT /v1/kv/<key>?acquire=<session>
 *   -> blocking GET /v1/kv/<key> to notice loss / a free lock.
 *
 * The writer stops writing at once when a renew answers 404, when the key
 * shows another or no session, or when no renew has succeeded for 0.9 x TTL
 * (it cannot know the servers still hold its session): that is always before
 * the earliest moment another session could acquire (TTL + LockDelay).
 */
#ifndef SIDECAR_ELECT_H
#define SIDECAR_ELECT_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "consul/client.h"
#include "lib/loop.h"

/* is_writer: this sidecar may write now. holder: the writer's node name as
 * last seen, or NULL when unknown / nobody. */
typedef void (*elect_fn)(int is_writer, const char *holder, void *arg);

struct elect_opts {
    struct loop *loop;
    struct consul_client *consul;
    const char *what;       /* "kong", for log lines */
    const char *key;        /* the lock key (elect_default_key() by default) */
    const char *node;       /* our identity, stored as the key's value */
    int64_t session_ttl_ms; /* 10s..86400s in Consul; default 15s */
    int64_t lock_delay_ms;  /* default 15s */
    int64_t wait_ms;        /* the lock key's blocking wait; 0 or above 60s: 60s */
    elect_fn on_change;
    void *arg;
};

struct elect;

/* The default lock key for a datacenter: "consul-sidecar/<dc>/kong-writer".
 * 0, or -1 when dc is empty or the key does not fit. */
int elect_default_key(const char *datacenter, char *out, size_t len);

struct elect *elect_new(const struct elect_opts *o, char *err, size_t errlen);
void elect_start(struct elect *e);
/* Stops writing, releases the lock and destroys the session; done fires
 * once (after a bounded time at most). */
void elect_release(struct elect *e, void (*done)(void *), void *arg);
void elect_free(struct elect *e);
int elect_is_writer(const struct elect *e);
const char *elect_holder(const struct elect *e);
/* Blocking reads of the lock key cancelled and reissued because they did not
 * return within wait + wait/16 + 5 s (each also logged as a warning). */
uint64_t elect_watch_restarts(const struct elect *e);
cJSON *elect_status_json(const struct elect *e);

#endif
