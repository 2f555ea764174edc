/*
 * Pure helpers for agent registrations: the exact body sent to
 * PUT /v1/agent/service/register, and the comparison of a wanted service
 * with what the agent reports (anti-entropy). No I/O here: sidecar/registrar.c
 * sends the requests through consul/client.h.
 */
#ifndef CONSUL_AGENT_H
#define CONSUL_AGENT_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "consul/service-t.h"

/* Frees what s holds and leaves it empty. */
void consul_service_free(struct consul_service *s);

/* The register body (compact JSON); caller frees. NULL on out of memory. */
char *consul_register_body(const struct consul_service *s);

/* Compares a wanted service with GET /v1/agent/service/:id (or one value of
 * GET /v1/agent/services): name, address, port, kind, socket path, tags
 * (in order; not with EnableTagOverride, where the agent adopts catalog
 * edits), meta, weights, EnableTagOverride and the wanted tagged addresses.
 * Fields the agent adds on its own (lan_ipv4/wan_ipv4, Datacenter,
 * ContentHash, default weights) never count. Returns 0 in sync, 1 drifted
 * with why = the first difference. */
int consul_service_drift(const struct consul_service *want, const cJSON *agent_view, char *why,
                         size_t len);

/* Compares the wanted checks with GET /v1/agent/checks (keyed by check ID):
 * each exists, belongs to this service and has the wanted name, notes, type,
 * interval and timeout (durations compared by value, "1m30s" = "90s"; an
 * interval under 1 s reported as 1 s is Consul's own rounding; a timeout is
 * compared only when the definition sets one). A check of
 * this service that is not wanted (maintenance excepted) is drift too. The
 * agent does not show a check's URL, address or TTL (its Definition is {}),
 * so a change to those alone is not seen. 0 in sync, 1 drifted (why names
 * the check). */
int consul_checks_drift(const struct consul_service *want, const cJSON *agent_checks, char *why,
                        size_t len);

#endif
