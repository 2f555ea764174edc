/*
 * One answer from Consul, as consul/client.c hands it to callbacks, and the
 * signature of a request starter. Types only: shared by the client, the
 * watch engine (which is written against the starter so tests can drive it
 * with a fake Consul and a fake clock) and sidecar/.
 */
#ifndef CONSUL_RESPONSE_T_H
#define CONSUL_RESPONSE_T_H

#include <stddef.h>
#include <stdint.h>

#include "lib/http.h"

struct consul_response {
    long status;         /* 0 on transport failure */
    enum http_error err; /* HTTP_OK when an HTTP answer arrived */
    const char *error;   /* transport error text, or NULL */
    const char *body;    /* NUL-terminated, may be "" */
    size_t body_len;
    int has_index; /* X-Consul-Index present and all digits */
    uint64_t index;
    int known_leader;                /* X-Consul-Knownleader: 1, 0, or -1 absent */
    long last_contact_ms;            /* X-Consul-Lastcontact, -1 absent */
    const char *content_hash;        /* X-Consul-Contenthash, or NULL */
    int limited;                     /* Consul is (or, for a first closed connection,
                                 may be) limiting our connections (see
                                 consul_is_connection_limit): back off, do not
                                 log; the client reports it once (on_limit) */
    const struct http_response *raw; /* NULL for fakes */
};

typedef void (*consul_done_fn)(const struct consul_response *r, void *arg);

struct consul_call;

/*
 * Starts GET path_and_query (blocking = a long-poll that must not be queued
 * behind other requests). Same contract as http_start: NULL + err when it
 * could not start, else fn fires exactly once unless cancelled.
 */
typedef struct consul_call *(*consul_get_fn)(void *ctx, const char *path_and_query, long timeout_ms,
                                             int blocking, consul_done_fn fn, void *arg, char *err,
                                             size_t errlen);
typedef void (*consul_cancel_fn)(void *ctx, struct consul_call *call);

#endif
