/*
 * Kong driver: the Admin API's upstreams and targets (Kong 3.x; 2.2+ works
 * too: a duplicate POST answered 200 + Deprecation counts as applied).
 *
 * Only targets carrying the ownership tag (default
 * "managed-by-consul-sidecar") are read or touched, so hand-made targets in
 * the same upstream survive. The upstream is created when missing (with
 * upstream_defaults). Targets are addressed in Kong's normalized form
 * (IPv6 expanded and bracketed), so a diff never flaps on spelling.
 * DB-less and data-plane Kong nodes cannot take target writes: that is one
 * clear error, not a retry storm.
 */
#ifndef PROXY_KONG_H
#define PROXY_KONG_H

#include <cjson/cJSON.h>

#include "proxy/proxy.h"

#define KONG_DEFAULT_TAG "managed-by-consul-sidecar"
#define KONG_DEFAULT_MAX_IN_FLIGHT 16

struct kong_opts {
    const char *admin_url;          /* http://127.0.0.1:8001 */
    const char *token;              /* Kong-Admin-Token header (Enterprise RBAC); NULL none */
    const char *user_agent;         /* consul-sidecar/<version> (<node>) */
    const cJSON *upstream_defaults; /* fields for a created upstream; NULL none */
    const char *tag;                /* ownership tag; NULL = KONG_DEFAULT_TAG */
    long timeout_ms;                /* per request; default 5000 */
    int max_in_flight;              /* requests at once; 0 = KONG_DEFAULT_MAX_IN_FLIGHT */
};

struct proxy *kong_new(struct loop *l, const struct kong_opts *o, char *err, size_t errlen);

/* Pure: Kong's normalized "host:port" for a target (IPv4 without leading
 * zeros, IPv6 expanded, lower-case, bracketed). */
const char *kong_normalize_target(const char *host, int port, char *out, size_t len);
/* Pure: parses one page of GET .../targets; appends targets carrying tag to
 * out and copies the "next" link (or "" at the end). 0 or -1 (err). */
int kong_parse_targets_page(const char *body, size_t len, const char *tag,
                            struct proxy_target_set *out, char *next, size_t nextlen, char *err,
                            size_t errlen);
/* Pure: the "message" of a Kong error body (either shape), for logs. */
const char *kong_describe_error(long status, const char *body, char *out, size_t len);

#endif
