/*
 * What config.c and config_print.c share: the table of settings (config.c)
 * and the printers of the keys code keeps itself (config_print.c), which
 * the table calls in their place. Not for other modules: see config.h.
 */
#ifndef SIDECAR_CONFIG_INT_H
#define SIDECAR_CONFIG_INT_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "lib/jread.h"

extern const struct jkey config_keys[];
extern const size_t config_n_keys;

/* jkey print hooks: base is the struct config. */
void config_print_services(cJSON *out, const void *base); /* and "probes" */
void config_print_upstreams(cJSON *out, const void *base);
void config_print_lock_key(cJSON *out, const void *base);
void config_print_upstream_defaults(cJSON *out, const void *base);

#endif
