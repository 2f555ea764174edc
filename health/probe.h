/*
 * Local health probes: HTTP or TCP, run by the sidecar itself on the shared
 * loop (never blocking), their results turned into check statuses the way
 * Consul's own checks would: HTTP 2xx passing, 429 warning, anything else
 * critical; TCP connect passing, else critical; with Consul's
 * success_before_passing / failures_before_warning / failures_before_critical
 * thresholds. The callback fires when the reported status or output changes
 * (and for the first result).
 */
#ifndef HEALTH_PROBE_H
#define HEALTH_PROBE_H

#include <stddef.h>

#include "health/probe-t.h"
#include "lib/loop.h"

#define PROBE_OUTPUT_MAX 4096

/* status: "passing", "warning" or "critical"; output: Consul-style text. */
typedef void (*probe_fn)(const char *status, const char *output, void *arg);

struct probe;

/* Copies spec. NULL + err on a bad spec. */
struct probe *probe_new(struct loop *l, const struct probe_spec *spec, probe_fn fn, void *arg,
                        char *err, size_t errlen);
/* First run after a random part of the interval (probes do not align). */
void probe_start(struct probe *p);
void probe_free(struct probe *p);                /* cancels; no callback afterwards; NULL ok */
const char *probe_status(const struct probe *p); /* NULL before the first result */
const char *probe_output(const struct probe *p);

#endif
