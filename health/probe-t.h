/*
 * A local probe definition: the sidecar runs it and feeds the result into a
 * TTL check, so Consul never has to reach into the container. Types only;
 * shared by health/ (runs probes) and sidecar/ (config parser).
 */
#ifndef HEALTH_PROBE_T_H
#define HEALTH_PROBE_T_H

#include <stdint.h>

enum probe_kind { PROBE_HTTP, PROBE_TCP };

struct probe_spec {
    enum probe_kind kind;
    char *target;                 /* http(s)://... URL, or host:port */
    char *method;                 /* HTTP; NULL = GET */
    int64_t interval_ms;          /* default 10s */
    int64_t timeout_ms;           /* default 10s like Consul, capped below interval */
    int success_before_passing;   /* consecutive successes; 0 = immediate */
    int failures_before_warning;  /* 0 = same as failures_before_critical */
    int failures_before_critical; /* 0 = immediate */
    int tls_skip_verify;
};

#endif
