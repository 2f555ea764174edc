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

/* The register body (compact JSON); caller frees. NULL on out of memory. */
char *consul_register_body(const struct consul_service *s);

/* Compares a wanted service with its entry in GET /v1/agent/services (or
 * /v1/agent/service/:id). Fields the agent adds on its own (tagged
 * addresses, Datacenter, ContentHash, default weights) never count.
 * Returns 0 in sync, 1 drifted with why = the first difference. */
int consul_service_drift(const struct consul_service *want, const cJSON *agent_view,
                         char *why, size_t len);

/* Every wanted check exists in GET /v1/agent/checks (keyed by check ID) and
 * belongs to this service. 0 in sync, 1 drifted (why names the check). */
int consul_checks_drift(const struct consul_service *want, const cJSON *agent_checks,
                        char *why, size_t len);

#endif
