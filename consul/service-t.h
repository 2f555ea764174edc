/*
 * Types shared by consul/ (which registers and compares them) and sidecar/
 * (whose config parser builds them). Types only, no functions.
 *
 * A service is kept as the exact JSON body Consul's
 * PUT /v1/agent/service/register takes, with keys in Consul's canonical
 * PascalCase spelling, plus the few fields the sidecar needs at hand.
 */
#ifndef CONSUL_SERVICE_T_H
#define CONSUL_SERVICE_T_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* Ownership mark put in every registered service's Meta, so a restarted
 * sidecar can tell its own registrations from anyone else's. */
#define CONSUL_META_MANAGED_BY "managed-by"
#define CONSUL_META_MANAGED_BY_VAL "consul-sidecar"
#define CONSUL_META_SIDECAR_NODE "sidecar-node"

struct consul_check_ref {
    char *check_id; /* as Consul assigns it: CheckID, or service:<id>[:n] */
    char *name;
    int64_t ttl_ms; /* > 0 for TTL checks (the sidecar may drive them) */
};

struct consul_service {
    char *id; /* ID, defaulting to Name */
    char *name;
    cJSON *definition; /* owned; canonical register body incl. Checks */
    struct consul_check_ref *checks;
    size_t n_checks;
};

#endif
