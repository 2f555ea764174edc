/*
 * Service definitions as Consul's agent takes them (service files, the
 * "service"/"services" keys) and the agent's rules: keys matched
 * case-insensitively with snake_case aliases, rewritten into Consul's
 * canonical register body (PascalCase), the ownership mark added to Meta.
 * The sidecar's own "probe" extension of a TTL check is taken out and
 * turned into a local probe. Private to sidecar/config.c.
 */
#ifndef SIDECAR_SERVICEDEF_H
#define SIDECAR_SERVICEDEF_H

#include <cjson/cJSON.h>

#include "lib/jread.h"
#include "sidecar/config.h"

struct svc_build {
    struct jread *c;
    const char *node;
    struct consul_service *svc;
    struct cfg_probe *probes;   /* appended */
    size_t n_probes;
};

/* Builds b->svc from one definition object found at path; appends its
 * probes to b->probes. -1: the reason is in b->c. */
int servicedef_build(struct svc_build *b, const cJSON *in, const char *path);
void probe_spec_free(struct probe_spec *s);

#endif
