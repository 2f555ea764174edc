/*
 * The sidecar's own extension of a Consul TTL check: a "probe" the sidecar
 * runs itself and whose results feed the check. Read here; the rest of a
 * service definition is Consul's format (consul/servicedef.h), which hands
 * the probe over through its extension hook.
 */
#ifndef SIDECAR_PROBEDEF_H
#define SIDECAR_PROBEDEF_H

#include "consul/servicedef.h"
#include "sidecar/config.h"

/* Where the probes of every definition built with ext go, appended in
 * order: a configuration's probes array and its count. */
struct probedef_list {
    struct cfg_probe **items;
    size_t *n;
    struct servicedef_ext ext; /* the hook to give servicedef_build */
};

void probedef_list_init(struct probedef_list *l, struct cfg_probe **items, size_t *n);
/* {"http"|"tcp": ..., "interval", "timeout", "method", "tls_skip_verify"}
 * into spec. 0, or -1 with the reason in c (nothing allocated then). */
int probedef_parse(struct jread *c, const cJSON *p, const char *path, struct probe_spec *spec);
void probe_spec_free(struct probe_spec *s);

#endif
