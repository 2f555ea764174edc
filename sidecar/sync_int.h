/* Private to sidecar/sync.c and sidecar/follow.c: the state of the upstreams
 * being synced and of the change detectors that follow them. Not for other
 * modules: they use sync.h. */
#ifndef SIDECAR_SYNC_INT_H
#define SIDECAR_SYNC_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "consul/client.h"
#include "consul/decode.h"
#include "consul/scan.h"
#include "consul/watch.h"
#include "lib/rand.h"
#include "lib/strmap.h"
#include "lib/metrics.h"
#include "proxy/proxy.h"
#include "sidecar/recon.h"
#include "sidecar/state.h"
#include "sidecar/sync.h"

/*
 * An upstream's proxy side is two enums; the Consul side is a few facts.
 *
 * phase, what the driver is doing for it:
 *
 *             up_sync()               on_read(): a diff
 *   UP_IDLE ------------> UP_READING -------------------> UP_APPLYING
 *      ^                      |  no diff, an error,              |
 *      |                      |  the writer lock lost            |
 *      +----------------------+----------------------------------+
 *                                 on_applied() / up_failed()
 *
 *   up_sync() while not UP_IDLE only sets rerun: one more round follows the
 *   one in flight once it succeeds (a failure retries after a backoff).
 *
 * sync, how the proxy stands against what Consul wants:
 *
 *             up_feed()               up_succeeded()
 *   UP_NEW -------------> UP_BEHIND ----------------> UP_IN_SYNC
 *     |                      ^        up_feed()          |   ^
 *     |                      +---------------------------+   |
 *     +------------------------------------------------------+
 *       up_succeeded(): a round with nothing to change (a saved state)
 *
 *   change_at is when UP_BEHIND was entered (the sync latency histogram).
 *
 * The Consul side: have_answer (last_answer holds one's nodes), read_owed (a fresh
 * read must be answered before a held empty answer can apply: set by an
 * error that broke a hold or by a failed read, cleared by any answer),
 * fetch_again (a read was asked while one was in flight), seen_once (the
 * detector has seen the service in a health/state answer).
 */
enum up_phase { UP_IDLE, UP_READING, UP_APPLYING };
enum up_sync { UP_NEW, UP_BEHIND, UP_IN_SYNC };

struct sync_proxy {
    char *name;
    struct proxy *driver;
    int writer;
    /* The failure last logged for one of its upstreams: the same one on
     * the others (Kong DB-less, the proxy down) is not logged again until an
     * upstream of this proxy has synced. */
    char last_failure[300];
};

/* Checks of one service or node in one state, as the change detector tells
 * them apart: their number and their highest ModifyIndex. */
struct det_tally {
    uint64_t top, count;
};

struct upstream {
    struct sync *s;
    char *name, *service, *dc, **tags;
    const char *proxy_name; /* its sync_proxy's */
    size_t n_tags;
    int passing_only;
    struct sync_proxy *proxy;
    struct consul_watch *watch; /* its own long-poll, made when it needs one */
    char *fetch_path;           /* the same query, non-blocking */
    struct detector *det;       /* followed by this change detector; NULL: own long-poll */
    struct consul_call *fetch;
    bool fetch_again;
    struct det_tally seen[2]; /* detector: its critical, warning checks last seen */
    size_t det_slot;          /* detector: its service's tally */
    struct {                  /* the last change a detector saw (us, 0: none) */
        uint64_t arrived, decoded, asked, answered;
        long body_us;
        size_t bytes, checks;
    } tl;
    bool read_owed; /* a fresh read is owed: an error broke a hold, or a
                                       read failed */
    bool seen_once;
    struct recon_policy policy;
    struct recon_quiesce quiesce;
    struct consul_instances last_answer; /* while fed, whole; then its nodes and index */
    bool have_answer;
    int last_known_leader;
    struct loop_timer *timer;  /* quiescence due, hold recheck, retry */
    struct loop_timer *resync; /* periodic proxy read-back */
    enum up_phase phase;
    enum up_sync sync;
    bool rerun; /* up_sync() was called while busy */
    struct backoff backoff;
    struct backoff read_backoff; /* an owed read (read_owed) failing again */
    uint64_t index;              /* Consul index of last_good */
    uint64_t change_at;          /* when UP_BEHIND was entered (ms) */
    time_t last_sync;
    int last_ok; /* -1 none yet */
    /* The last failures, NULL while none (held by 1,000s of upstreams that
     * mostly have none: 900 bytes each when they were arrays). */
    char *last_error;
    char *last_cause; /* its cause alone: repeats are not logged */
    char *last_watch_error;
};

/* The change detector of one datacenter (see follow.c). */
enum { DET_CRITICAL, DET_WARNING, DET_STATES };

/* One of its health/state long-polls (critical, warning): the checks in
 * that state, kept from one answer to the next (their memory is reused). */
/* Events that keep coming, and how long to wait after the last (follow.c). */
struct storm {
    uint64_t at;  /* the last event (ms) */
    int64_t wait; /* after it; 0: none */
};

struct det_state {
    struct detector *d;
    const char *name; /* "critical", "warning" */
    struct consul_watch *watch;
    int seen; /* its first answer (a baseline) is in */
    struct consul_state_scan scan;
    struct det_tally *tally; /* per followed service: its checks in this state */
    size_t n_tally;
    struct det_node { /* per node with node-level checks in this state */
        char *name;
        struct det_tally t;
    } * nodes; /* sorted by name */
    size_t n_nodes;
    struct strmap node_map; /* scratch: node -> index in the new list */
    struct storm idle;      /* changes that re-read nothing, and the rest after them */
};

struct detector {
    struct sync *s;
    char *dc; /* ?dc= of its queries; NULL: the default */
    size_t n_ups;
    struct det_state st[DET_STATES];
    struct consul_watch *services;
    int services_seen, checks_started;
    struct storm catalog; /* catalog/services changes, and the gap after them */
    char error[300];
    char label[DET_STATES + 1][160]; /* metrics: each state's, then catalog/services */
    struct strmap by_service;        /* followed service -> its tally slot */
    size_t mapped;                   /* upstreams in by_service (0: to be built) */
};

struct sync {
    struct sync_opts o;
    char *datacenter; /* owned copy of o.datacenter */
    char *state_dir;
    struct sync_proxy **proxies;
    size_t n_proxies;
    struct upstream **ups;
    size_t n_ups;
    struct state state;
    /* The state file is rewritten at most once a second: 1,000 upstreams
     * syncing at start must not each rewrite (and fsync) the whole file. */
    struct loop_timer *save_timer;
    uint64_t last_save_ms;
    int state_dirty;
    char save_error[300];
    struct detector **dets; /* one per datacenter followed by a detector */
    size_t n_dets;
    /* The way upstreams are followed is chosen once (follow_start): over
     * https, after an answer has told which protocol ALPN gave. */
    int following;
    struct consul_call *proto_probe;
    struct loop_timer *proto_timer;
    int h2_streams;    /* streams over HTTP/2: the connections are told */
    size_t n_answered; /* upstreams with a first answer */
    struct metrics_histogram *m_latency;
    struct metrics_counter *m_calls;
    struct metrics_counter *m_consul;
    struct metrics_gauge *m_targets;
    struct metrics_counter *m_saves;
};

/* sync.c: makes u's own long-poll if it has none. 0, or -1 with err. */
int sync_up_open_watch(struct upstream *u, char *err, size_t errlen);
/* sync.c: reads an upstream once, now (a detector saw it move). */
void sync_up_fetch(struct upstream *u);

/* follow.c: chooses how the upstreams are followed (a long-poll each or a
 * change detector per datacenter) and starts following. */
void follow_start(struct sync *s);
void follow_free(struct sync *s);
/* The agent answers again: the protocol probe and the detectors' long-polls
 * are retried at once. */
void follow_recovered(struct sync *s);

#endif
