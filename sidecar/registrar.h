/*
 * The registration lifecycle: keeps this node's services and checks
 * registered with the local Consul agent.
 *
 *  - start: deregisters services this sidecar once registered (ownership
 *    mark in Meta, same node) that are no longer configured, then registers
 *    every configured service; an unreachable agent is retried with capped,
 *    jittered backoff, forever.
 *  - anti-entropy: every resync (jittered) and after every reconnect, what
 *    the agent holds (GET /v1/agent/checks once, then
 *    GET /v1/agent/service/:id per registered service) is compared with the
 *    wanted definitions (service fields and each check's name, notes, type,
 *    interval, timeout); only what is missing or drifted is re-registered,
 *    with one log line each, so a quiet resync makes zero writes. A
 *    reconnect during a round asks for another round right after it.
 *  - TTL checks fed by local probes: an update is sent only on change or
 *    before the TTL would lapse; a 404 "Unknown check ID" (an agent that lost
 *    its state) re-registers the service.
 *  - what the agent lost (missing, or its TTL update refused) goes back
 *    after one random delay below reregister_splay_ms drawn per loss, so a
 *    fleet whose agents restart together does not register at one instant.
 *  - shutdown: maintenance, drain period, deregistration.
 */
#ifndef SIDECAR_REGISTRAR_H
#define SIDECAR_REGISTRAR_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "consul/client.h"
#include "consul/service-t.h"
#include "lib/loop.h"
#include "lib/metrics.h"

struct registrar_opts {
    struct loop *loop;
    struct consul_client *consul;
    const char *node;  /* ownership mark; NULL = any node's marks */
    int64_t resync_ms; /* anti-entropy period */
    int64_t drain_ms;  /* maintenance period before deregistering */
    /* A registration the agent lost (restarted without persistence) goes
     * back after a random delay below this (0: at once), so that the
     * sidecars of a fleet whose agents come back together do not all
     * register in the same instant. */
    int64_t reregister_splay_ms;
    struct metrics *metrics; /* may be NULL */
};

struct registrar;

struct registrar *registrar_new(const struct registrar_opts *o);
void registrar_free(struct registrar *r);

/* Replaces the wanted services (deep copies). Before start this only sets
 * them; afterwards new or changed services are (re-)registered and removed
 * ones deregistered. Returns 0 or -1 (out of memory, nothing changed). */
int registrar_set_services(struct registrar *r, const struct consul_service *svcs, size_t n);
void registrar_start(struct registrar *r);

/* A probe result for a TTL check: forwarded to the agent when it changed or
 * before the TTL would lapse. status is "passing", "warning" or "critical". */
void registrar_check_result(struct registrar *r, const char *check_id, const char *status,
                            const char *output);

/* Maintenance mode for every service (SIGUSR1, drain). */
void registrar_set_maintenance(struct registrar *r, int on, const char *reason);
int registrar_in_maintenance(const struct registrar *r);

/* Maintenance, drain period, then (if deregister) deregistration; done is
 * called once when finished or after a bounded deadline. */
void registrar_shutdown(struct registrar *r, int deregister, void (*done)(void *), void *arg);

/* The Consul agent answers again after refused connections: pending
 * retries run now, and anti-entropy compares at once. */
void registrar_consul_recovered(struct registrar *r);

/* 1 when every wanted service is registered and in sync. */
int registrar_healthy(const struct registrar *r, char *why, size_t len);
/* Services, their checks and states, for /status. Caller owns the result. */
cJSON *registrar_status_json(const struct registrar *r);
/* Copies registration and check states into m (a metrics collect hook):
 * consul_sidecar_registration_state{service} 1 registered / 0 not,
 * consul_sidecar_check_status{check} 0 passing, 1 warning, 2 critical. */
void registrar_collect(const struct registrar *r, struct metrics *m);

/* 1 once the agent answered at least once since the last failure. */
int registrar_agent_reachable(const struct registrar *r);

#endif
