/*
 * The Consul HTTP client: an opaque handle over lib/http.h that knows the
 * agent's address forms (CONSUL_HTTP_ADDR: host:port, http://, https://,
 * unix://), sends the ACL token only as the X-Consul-Token header, parses the
 * X-Consul-* headers, and keeps a connection budget: at most max_inflight
 * ordinary requests at once (the rest queue FIFO); blocking long-polls are
 * never queued behind them and never counted; urgent requests (what keeps an
 * elected writer's lock) have their own CONSUL_URGENT_SLOTS and queue, served
 * first, so a client busy with watches and registrations cannot delay a
 * session renew past the session's TTL.
 */
#ifndef CONSUL_CLIENT_H
#define CONSUL_CLIENT_H

#include <stddef.h>

#include "consul/response-t.h"
#include "lib/http.h"
#include "lib/loop.h"

struct consul_client_opts {
    const char *address;    /* default "127.0.0.1:8500" */
    const char *token;      /* may be NULL; never logged, never in a URL */
    const char *datacenter; /* unused by the client itself; for callers */
    const char *user_agent;
    struct http_tls tls;
    size_t max_body;  /* default 8 MiB */
    int max_inflight; /* default 4 */
    /* Consul started (limited 1, why: one line) or stopped (limited 0: every
     * path refused meanwhile has been answered since, or a minute passed,
     * and nothing was refused for 15 s) limiting this client's connections:
     * one call per change for the whole client, however many requests hit
     * the limit, so the caller can log it once. May be NULL. */
    void (*on_limit)(int limited, const char *why, void *arg);
    void *limit_arg;
};

struct consul_client;

/* Copies everything. NULL + err ("consul address "x": reason") on a bad
 * address. */
struct consul_client *consul_client_new(struct loop *l, const struct consul_client_opts *o,
                                        char *err, size_t errlen);
/* Cancels everything in flight or queued; callbacks do not fire. NULL ok. */
void consul_client_free(struct consul_client *c);

/* consul_request flags. BLOCKING: a long-poll (not queued, not counted).
 * URGENT: counted against CONSUL_URGENT_SLOTS only, never against (nor
 * queued behind) ordinary requests; beyond those slots it waits in its own
 * queue, which is served before the ordinary one. For the few requests whose
 * delay costs a lock (session create/renew/destroy, acquire/release, the lock
 * key's non-blocking reads). */
#define CONSUL_REQ_BLOCKING 1
#define CONSUL_REQ_URGENT 2
#define CONSUL_URGENT_SLOTS 2

/* method + path_and_query ("/v1/..."). body may be NULL. timeout_ms 0 =
 * 10 s. flags: CONSUL_REQ_* (0: an ordinary request; 1 is BLOCKING). Same
 * contract as http_start. */
struct consul_call *consul_request(struct consul_client *c, const char *method,
                                   const char *path_and_query, const char *body, size_t body_len,
                                   long timeout_ms, int flags, consul_done_fn fn, void *arg,
                                   char *err, size_t errlen);
void consul_cancel(struct consul_call *call); /* NULL ok */

/* consul_get_fn / consul_cancel_fn adapters (ctx = the client). */
struct consul_call *consul_get_adapter(void *ctx, const char *path_and_query, long timeout_ms,
                                       int blocking, consul_done_fn fn, void *arg, char *err,
                                       size_t errlen);
void consul_cancel_adapter(void *ctx, struct consul_call *call);

/* After a refused connection the client probes the agent (GET
 * /v1/status/leader) about every CONSUL_PROBE_MS; the first answer from the
 * agent, to the probe or to anything else, calls every listener once, after
 * that answer's own callback, so callers waiting out a backoff can ask again
 * at once. Returns -1 when CONSUL_MAX_LISTENERS are taken. */
#define CONSUL_PROBE_MS 1000
#define CONSUL_MAX_LISTENERS 8
int consul_client_on_recover(struct consul_client *c, void (*fn)(void *), void *arg);

/* Requests in flight (ordinary + urgent + blocking) and queued (both
 * queues). */
int consul_client_inflight(const struct consul_client *c);
int consul_client_queued(const struct consul_client *c);
/* Answers so far, by kind, for metrics. */
struct consul_client_stats {
    unsigned long long ok, http_error, transport_error;
};
const struct consul_client_stats *consul_client_stats(const struct consul_client *c);

/* The protocol of the last answer from the agent: 2 when an https address
 * negotiated HTTP/2 (ALPN h2), when requests, blocking ones included, are
 * streams that share a few connections; 1 for HTTP/1.x (a connection per
 * request in flight); 0 before any answer. */
int consul_client_http_version(const struct consul_client *c);
/* The address is https:// (h2 may be negotiated). */
int consul_client_is_https(const struct consul_client *c);
/* TCP (or unix) connections to the agent open now, in use or idle. The
 * count is of every Consul client of the process (there is one). */
#define CONSUL_HTTP_POOL 1
int consul_client_connections(const struct consul_client *c);

/* The address as given, for messages ("127.0.0.1:8500"). */
const char *consul_client_address(const struct consul_client *c);

/* Whether an answer means Consul is refusing connections past its
 * per-client limit (limits.http_max_conns_per_client): a 429, or (as older
 * agents do) a connection it accepted and then closed or reset within a
 * second, before any answer, on the request that opened it. An agent that
 * is down refuses the connection instead (not the limit); a long-poll or a
 * reused connection cut is not the limit either. Whether the limit is taken
 * by our own connections or by other processes of the same address makes
 * no difference. (The client confirms such a close with another, a second
 * later, before it reports the limit: an agent going down or restarting
 * cuts the requests in flight alike.) */
int consul_is_connection_limit(long status, enum http_error err, int closed_by_peer,
                               int new_connection, long elapsed_ms);

/* Parses an X-Consul-Index value: all digits, no overflow. 0 or -1. */
int consul_parse_index(const char *s, uint64_t *out);

/* Splits an address into the base URL and an optional unix socket path.
 * Returns 0, or -1 with err saying why. https: *tls_required = 1. */
int consul_parse_address(const char *addr, char *base, size_t baselen, char *sock, size_t socklen,
                         int *tls_required, char *err, size_t errlen);

/* One line for logs: "PUT /v1/agent/service/register: 400 Missing service
 * name" or "GET /v1/...: connection refused". Bodies are cut to 200 bytes
 * with control characters escaped; never contains the token. Returns out. */
const char *consul_describe_error(const struct consul_response *r, const char *method,
                                  const char *path, char *out, size_t len);

#endif
