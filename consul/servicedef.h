/*
 * Service definitions as Consul's agent takes them (service files, the
 * "service"/"services" keys) and the agent's rules: keys matched
 * case-insensitively with snake_case aliases, rewritten into Consul's
 * canonical register body (PascalCase), the ownership mark added to Meta.
 * A pure function from a parsed document to a registration: the caller's
 * own extension of a TTL check (the sidecar's "probe") is handed to it
 * through a hook, and kept out of the body Consul gets.
 */
#ifndef CONSUL_SERVICEDEF_H
#define CONSUL_SERVICEDEF_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "consul/service-t.h"
#include "lib/jread.h"

/* A key a check may hold beside Consul's own. check validates a value
 * (while the check is read); attach takes it, once the check's ID is
 * known, with the check's canonical body. Both: 0, or -1 with the reason
 * in c. A check with the extension needs a TTL. */
struct servicedef_ext {
    const char *key;
    int (*check)(void *arg, struct jread *c, const cJSON *v, const char *path);
    int (*attach)(void *arg, struct jread *c, const cJSON *v, const char *path,
                  const char *service_id, const char *check_id, int64_t ttl_ms, const cJSON *check);
    void *arg;
};

struct svc_build {
    struct jread *c;
    const char *node;                 /* for the ownership mark */
    struct consul_service *svc;       /* filled */
    const struct servicedef_ext *ext; /* NULL: no extension */
};

/* Builds b->svc from one definition object found at path. -1: the reason
 * is in b->c, and b->svc holds nothing. */
int servicedef_build(struct svc_build *b, const cJSON *in, const char *path);

#endif
