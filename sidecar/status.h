/*
 * The status endpoint, served by libmicrohttpd in external mode on the
 * daemon's own loop (its epoll descriptor is one of the loop's fds), so it
 * can never claim health while the loop is stuck. Read-only:
 *
 *   GET /health   200 {"status":"ok"} or 503 {"status":"unhealthy","reason":...}
 *   GET /status   JSON snapshot from the status provider
 *   GET /metrics  Prometheus text format
 *
 * Anything else is 404, any other method 405. Default address loopback.
 */
#ifndef SIDECAR_STATUS_H
#define SIDECAR_STATUS_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "lib/loop.h"
#include "lib/metrics.h"

struct status_providers {
    /* 1 healthy, 0 not (why filled). */
    int (*health)(char *why, size_t len, void *arg);
    /* A fresh object; the server frees it. */
    cJSON *(*status)(void *arg);
    struct metrics *metrics;
    void *arg;
};

struct status_server;

/* listen: "127.0.0.1:9108", "[::1]:9108", ":9108" (every interface: an
 * explicit choice), port 0 = any free port. NULL + err on a bad address or a
 * bind failure. */
struct status_server *status_server_new(struct loop *l, const char *listen,
                                        const struct status_providers *p, char *err, size_t errlen);
/* "127.0.0.1:9108" with the real port. */
const char *status_server_address(const struct status_server *s);
int status_server_port(const struct status_server *s);
void status_server_free(struct status_server *s);

/* Parses a listen address (exposed for tests). 0 or -1. */
int status_parse_listen(const char *listen, char *host, size_t hostlen, int *port);

#endif
