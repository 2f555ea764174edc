/*
 * Asynchronous HTTP over the loop's curl multi handle: every outgoing request
 * of the daemon (Consul, Kong, HTTP probes) goes through here. Bodies are
 * capped; headers are kept for case-insensitive lookup. Nothing here logs:
 * errors come back in the response.
 *
 * Contract (libuv's): if http_start() returns NULL the callback never fires;
 * otherwise it fires exactly once, unless http_cancel() is called first.
 */
#ifndef LIB_HTTP_H
#define LIB_HTTP_H

#include <stddef.h>

#include "lib/buf.h"
#include "lib/loop.h"

#define HTTP_DEFAULT_MAX_BODY (16u * 1024 * 1024)

struct http_tls {
    const char *cacert; /* CA bundle file */
    const char *capath; /* CA directory */
    const char *client_cert;
    const char *client_key;
    const char *server_name; /* verify the peer against this name (SNI) */
    int insecure;            /* skip peer and host verification */
};

struct http_request {
    const char *method;      /* NULL = GET */
    const char *url;         /* http://host:port/path?query */
    const char *unix_socket; /* connect here instead of the URL's host */
    const char *body;        /* copied; NULL = none */
    size_t body_len;
    const char *const *headers; /* NULL-terminated "Name: value" list */
    const char *user_agent;
    long timeout_ms;         /* whole transfer; 0 = none */
    long connect_timeout_ms; /* 0 = 5000 */
    size_t max_body;         /* 0 = HTTP_DEFAULT_MAX_BODY */
    int truncate_body;       /* past max_body: stop reading but keep the answer
                                 (status and the first max_body bytes) instead
                                 of failing with HTTP_ERR_TOO_LARGE */
    const struct http_tls *tls;
    int connect_only;       /* TCP (or TLS) connect, no request: TCP probes */
    const char *connect_to; /* curl CONNECT_TO "host:port:realhost:realport",
                                 e.g. to verify TLS against another name */
    int multiplex;          /* https: offer h2 (ALPN) and, while a connection
                                 to the same place is being set up, wait for it
                                 and share it as a stream instead of opening
                                 another (CURLOPT_PIPEWAIT; with a pool that
                                 answered over h2, also once libcurl knows the
                                 server multiplexes: the request is put back
                                 until that connection is up) */
    int pool;               /* 1..HTTP_POOLS: count this request's connections
                                 under that number (http_connections); 0 = none */
};

/* Connection pools whose open TCP (or unix) connections are counted. */
#define HTTP_POOLS 4

enum http_error {
    HTTP_OK = 0,
    HTTP_ERR_CONNECT, /* refused, unreachable, DNS */
    HTTP_ERR_TIMEOUT,
    HTTP_ERR_TOO_LARGE, /* body over max_body */
    HTTP_ERR_TLS,
    HTTP_ERR_OTHER, /* closed mid-answer, protocol error, ... */
};

struct http_response {
    long status; /* 0 when err != HTTP_OK */
    enum http_error err;
    char error[256];    /* human text for err */
    struct buf body;    /* NUL-terminated */
    struct buf headers; /* raw header lines of the final response */
    int truncated;      /* body cut at max_body (truncate_body) */
    int closed_by_peer; /* no answer: the connection was closed or reset */
    int new_connection; /* this request opened its connection (none reused) */
    int http_version;   /* 1 (HTTP/1.x), 2 (HTTP/2), 3; 0 = no answer */
    long elapsed_ms;
    long body_us; /* from the answer's first byte to its last */
};

typedef void (*http_done_fn)(struct http_response *resp, void *arg);
struct http_call;

/* Starts a request. The response passed to fn is valid only during the
 * callback. Returns NULL (and fills err) if it could not be started. */
struct http_call *http_start(struct loop *l, const struct http_request *req, http_done_fn fn,
                             void *arg, char *err, size_t errlen);
/* Aborts a call in flight; its callback will not fire. NULL ok. */
void http_cancel(struct http_call *c);

/* Value of a response header (case-insensitive name) copied into out;
 * returns out, or NULL if absent. */
const char *http_header(const struct http_response *r, const char *name, char *out, size_t outlen);

/* Percent-encodes s for a URL path segment or query value. Returns a malloc'd
 * string (caller frees) or NULL. */
char *http_escape(const char *s);

/* Calls in flight (tests, metrics). */
int http_inflight(void);

/* Connections open now that requests of pool (1..HTTP_POOLS) opened,
 * whether in use or kept for reuse; 0 for another pool. A connection
 * counts until libcurl closes it, even past the caller's lifetime. */
int http_connections(int pool);

#endif
