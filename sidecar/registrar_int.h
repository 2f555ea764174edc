/*
 * What the registrar's two files share: registrar.c (writes, TTL checks,
 * maintenance, shutdown, status) and registrar_ae.c (what the agent holds:
 * the start-up cleanup of dangling registrations and anti-entropy rounds).
 * Not part of the registrar's interface: see registrar.h for that.
 */
#ifndef SIDECAR_REGISTRAR_INT_H
#define SIDECAR_REGISTRAR_INT_H

#include "sidecar/registrar.h"

#include <stdbool.h>

#include "health/ttl.h"
#include "lib/rand.h"

#define REG_TIMEOUT_MS 10000
#define REG_SHUTDOWN_GRACE_MS 5000

enum reg_state { REG_PENDING, REG_WRITING, REG_SYNCED, REG_REMOVING };

struct reg_check {
    char *check_id;
    char *service_id;
    int64_t ttl_ms;
    struct ttl_feeder feeder;
    char *status; /* latest probe result, NULL before any */
    char *output;
    struct consul_call *call;
    char *sent_status;        /* what call carries: a result that comes in */
    char *sent_output;        /* meanwhile is sent after it, not taken as sent */
    struct loop_timer *timer; /* refresh before the TTL lapses, retries */
    struct registrar *r;
};

struct reg_service {
    struct consul_service svc;
    enum reg_state state;
    int dirty;  /* definition changed while writing */
    int remove; /* deregister, then forget */
    struct consul_call *call;
    struct consul_call *read_call; /* anti-entropy: GET /v1/agent/service/:id */
    char last_error[256];
    int maint; /* maintenance as last set on the agent */
    bool lost; /* the agent lost it: registered again at r->rereg_at */
    struct registrar *r;
};

struct registrar {
    struct registrar_opts o;
    char *node;
    struct reg_service **svcs;
    size_t n_svcs;
    struct reg_check **checks;
    size_t n_checks;
    struct loop_timer *resync_timer;
    struct loop_timer *retry_timer;
    struct loop_timer *drain_timer;
    struct loop_timer *splay_timer; /* running: lost registrations wait for it */
    uint64_t rereg_at;              /* ms: when it runs out (for the log) */
    struct backoff backoff;
    struct consul_call *list_call;   /* start-up cleanup read */
    struct consul_call *checks_call; /* anti-entropy: GET /v1/agent/checks */
    cJSON *agent_checks;             /* anti-entropy: set while a round's service reads run */
    size_t ae_pending;               /* service reads of the round still out */
    int ae_failed;                   /* a read of the round failed: retry with backoff */
    int ae_again;                    /* asked for while a round ran: start over at once */
    int started;
    int cleaned;  /* dangling registrations removed */
    int agent_up; /* -1 unknown, 0 down, 1 up */
    int maintenance;
    char *maint_reason;
    int shutting_down;
    int deregister_on_shutdown;
    void (*shutdown_done)(void *);
    void *shutdown_arg;
    struct loop_timer *shutdown_deadline;
    struct metrics_counter *m_writes;
    char last_agent_error[256];
};

/* registrar.c */
/* Starts the writes that are due, one in flight per service. */
void reg_kick(struct registrar *r);
void reg_schedule_retry(struct registrar *r);
/* The agent lost s (its TTL update was refused, or anti-entropy found it
 * missing; how in `how`): logged, and registered again once the splay
 * drawn for this loss is over (reregister_splay_ms). */
void reg_mark_lost(struct reg_service *s, const char *how);
void service_free(struct reg_service *s);
struct reg_service *find_service(const struct registrar *r, const char *id);
/* Notes what an agent answer says of the agent's reachability. */
void agent_result(struct registrar *r, const struct consul_response *resp);

/* registrar_ae.c */
/* A round's last read is in: decide, then schedule the next round. */
void ae_finish(struct registrar *r);
void on_resync_timer(void *arg);

#endif
