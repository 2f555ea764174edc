/*
 * Upstream sync: makes each configured proxy upstream follow the Consul
 * catalog. For every upstream:
 *
 *   watch answer -> decode -> fail-static policy (recon_policy)
 *     -> quiescence window (recon_quiesce) -> read the proxy's actual set
 *     -> diff (recon_diff) -> apply -> persist last known good (state file)
 *
 * Errors anywhere leave the proxy as it is; a failed apply is retried with
 * backoff (re-reading first). A periodic, jittered proxy resync re-reads the
 * proxy so a restarted HAProxy or a wiped Kong gets its targets back. With a
 * state file, upstreams are restored before Consul has answered.
 *
 * A proxy can be gated (elected-writer mode): while not the writer, the sync
 * keeps its desired state warm but never reads for writing nor applies.
 */
#ifndef SIDECAR_SYNC_H
#define SIDECAR_SYNC_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "consul/client.h"
#include "lib/loop.h"
#include "lib/metrics.h"
#include "proxy/proxy.h"

struct sync_upstream_spec {
    const char *name;        /* the proxy upstream's name */
    const char *service;     /* Consul service */
    const char *const *tags; /* all must match */
    size_t n_tags;
    const char *datacenter; /* NULL = agent's */
    int passing_only;
    const char *proxy; /* "kong", "haproxy", "nginx" */
};

/* How upstreams are followed (watch.mode). AUTO: one blocking query each
 * while that is cheap (over HTTP/2 up to max_streams, as streams of a few
 * shared connections; over HTTP/1.1 up to max_blocking, a connection each),
 * the change detector beyond; STREAMS and DETECTOR force one way. */
enum { SYNC_MODE_AUTO, SYNC_MODE_STREAMS, SYNC_MODE_DETECTOR };

/* The configuration's watch section, as it is read (config.c) and used. */
struct watch_settings {
    int64_t wait_ms;
    int stale;
    int64_t quiescence_min_ms, quiescence_max_ms;
    int64_t hold_down_ms;
    int max_blocking;        /* plain HTTP, more upstreams than this: the detector */
    int mode;                /* SYNC_MODE_* */
    int max_streams;         /* HTTP/2, more upstreams than this: the detector */
    int64_t cluster_poll_ms; /* the cluster view's leader/peers/members poll */
};

struct sync_opts {
    struct loop *loop;
    struct consul_client *consul;
    struct watch_settings watch;
    int64_t proxy_resync_ms;
    const char *datacenter; /* default ?dc= of every query; NULL = the agent's */
    const char *state_dir;  /* NULL: no persistence */
    struct metrics *metrics;
};

struct sync;

struct sync *sync_new(const struct sync_opts *o, char *err, size_t errlen);
void sync_free(struct sync *s); /* frees the registered drivers too */
/* Hands a driver to the sync (it owns it afterwards). */
int sync_add_proxy(struct sync *s, const char *name, struct proxy *driver);
int sync_add_upstream(struct sync *s, const struct sync_upstream_spec *spec, char *err,
                      size_t errlen);
/* Loads the state file, restores saved sets, starts the watches. */
void sync_start(struct sync *s);
/* Gates writes for one proxy (elected writer). Becoming writer triggers a
 * read-then-apply of every upstream of that proxy. Default: writer. */
void sync_set_writer(struct sync *s, const char *proxy, int is_writer);
/* 1 while a write to that proxy is on the wire (its outcome unknown). */
int sync_proxy_writing(const struct sync *s, const char *proxy);
/* The right to write was lost (not handed back): the proxy's writes on the
 * wire are dropped at once and fail (drivers that send several at a time). */
void sync_abort_writes(struct sync *s, const char *proxy);
/* The Consul agent answers again: watches backing off ask at once. */
void sync_consul_recovered(struct sync *s);
/* Re-read every proxy now (e.g. after SIGHUP). */
void sync_resync_now(struct sync *s);

/* 1 if the last sync of every upstream succeeded (or none ran yet). */
int sync_healthy(const struct sync *s, char *why, size_t len);
/* Upstreams with targets, last sync time/result/error, for /status. */
cJSON *sync_status_json(const struct sync *s);
/* Watch statistics into m (collect hook): restarts of dead blocking
 * queries, index resets. */
void sync_collect(const struct sync *s, struct metrics *m);

/* 1 once every upstream has been applied at least once (for -once). */
int sync_settled(const struct sync *s);

#endif
