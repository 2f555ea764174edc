/*
 * The cluster view: follows the Raft leader (/v1/status/leader, /peers) and
 * membership (a blocking query on /v1/catalog/nodes for joins and leaves,
 * plus /v1/agent/members for serf state), and logs each event once in
 * Consul's classic style:
 *
 *   [INFO] sidecar: New leader elected: 10.0.0.2:8300
 *   [WARN] sidecar: No cluster leader
 *   [INFO] sidecar: member 'kong-2' joined, marking health alive
 *   [WARN] sidecar: member 'kong-3' failed
 *   [INFO] sidecar: member 'kong-3' left
 *
 * Nothing is logged while nothing changes. Leader and members are polled
 * every few seconds (jittered) and re-read at once whenever the nodes watch
 * fires; the Raft peers are read at start and again only after a leader or
 * member change (or a reconnect), as they change only with the servers.
 */
#ifndef SIDECAR_CLUSTERVIEW_H
#define SIDECAR_CLUSTERVIEW_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "consul/client.h"
#include "lib/loop.h"
#include "lib/metrics.h"

struct clusterview;

/* wait_ms: the nodes watch's blocking wait (watch.wait); 0 = 5 min.
 * poll_ms: how often the leader, the peers and the members are asked
 * (watch.cluster_poll; jittered by a tenth); 0 = 5 s. */
struct clusterview *clusterview_new(struct loop *l, struct consul_client *c, struct metrics *m,
                                    int64_t wait_ms, int64_t poll_ms, char *err, size_t errlen);
void clusterview_start(struct clusterview *cv);
/* The agent answers again: the nodes watch and the leader poll ask now. */
void clusterview_consul_recovered(struct clusterview *cv);
void clusterview_free(struct clusterview *cv);
/* The nodes watch's long-polls cancelled and reissued because they did not
 * return in time (each also logged as a warning). */
uint64_t clusterview_watch_restarts(const struct clusterview *cv);
/* Adds "leader", "peers" and "members" to o. */
void clusterview_status_json(const struct clusterview *cv, cJSON *o);

/* Pure diff of two member lists: calls fn once per change (tests). */
struct consul_member;
typedef void (*clusterview_event_fn)(const char *name, int old_status, int new_status, void *arg);
void clusterview_diff_members(const struct consul_member *old, size_t n_old,
                              const struct consul_member *cur, size_t n_cur,
                              clusterview_event_fn fn, void *arg);

#endif
