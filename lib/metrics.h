/*
 * A small Prometheus registry: counters, gauges and histograms, each with at
 * most one label, rendered in the text exposition format 0.0.4. One handle
 * per process (no hidden globals, so tests can make their own).
 */
#ifndef LIB_METRICS_H
#define LIB_METRICS_H

#include <stddef.h>

#include "lib/buf.h"

struct metrics;
struct metrics_counter;
struct metrics_gauge;
struct metrics_histogram;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* label_name may be NULL (no label). Returns NULL on a bad name or out of
 * memory. Registering the same name twice returns the first handle. */
struct metrics_counter *metrics_counter(struct metrics *m, const char *name, const char *help,
                                        const char *label_name);
struct metrics_gauge *metrics_gauge(struct metrics *m, const char *name, const char *help,
                                    const char *label_name);
struct metrics_histogram *metrics_histogram(struct metrics *m, const char *name, const char *help,
                                            const char *label_name, const double *buckets,
                                            size_t n_buckets);

/* label_value is ignored (may be NULL) for unlabelled metrics. NULL metric
 * handles are accepted and ignored. */
void metrics_counter_inc(struct metrics_counter *c, const char *label_value, double by);
void metrics_gauge_set(struct metrics_gauge *g, const char *label_value, double v);
void metrics_histogram_observe(struct metrics_histogram *h, const char *label_value, double v);

/* Counters normally only grow; this sets one from a total kept elsewhere
 * (called from a collect hook). */
void metrics_counter_set(struct metrics_counter *c, const char *label_value, double v);

/* Hooks run at the start of every render, to copy numbers kept by other
 * modules into the registry. Returns 0 or -1. */
typedef void (*metrics_collect_fn)(struct metrics *m, void *arg);
int metrics_on_collect(struct metrics *m, metrics_collect_fn fn, void *arg);

/* consul_sidecar_build_info{version="..."} 1 */
void metrics_build_info(struct metrics *m, const char *version);

/* Renders everything; returns 0 or -1 (out of memory). */
int metrics_render(struct metrics *m, struct buf *out);

/* 1 if name is a valid Prometheus metric name. */
int metrics_valid_name(const char *name);

#endif
