/*
 * HAProxy driver: the Runtime API (stats socket, level admin) of HAProxy
 * 2.6+, with dynamic servers (`add server` / `del server`). The sidecar owns
 * only the servers it names: "cs-<ip>:<port>"; hand-made servers in the same
 * backend are never read or touched. The backend must exist in haproxy.cfg
 * (named <backend_prefix><upstream>) with a dynamic balance algorithm
 * (roundrobin, leastconn, random, first, or consistent hashing).
 *
 * Removal: drain (the op is reported applied there), then in the
 * background: wait until the server's sessions have ended (at most
 * drain_timeout_ms), maint, del server; an op on the same server meanwhile
 * cancels that.
 *
 * Weights: Kong-style 0..65535 in, HAProxy 0..256 out (values above 256 are
 * capped). Host names are refused: HAProxy 2.6 does not resolve names for
 * dynamic servers.
 */
#ifndef PROXY_HAPROXY_H
#define PROXY_HAPROXY_H

#include "proxy/proxy.h"

#define HAPROXY_SERVER_PREFIX "cs-"

struct haproxy_opts {
    const char *runtime;        /* "unix:///run/haproxy/admin.sock" or "tcp://127.0.0.1:9999" */
    const char *backend_prefix; /* backend = prefix + upstream; NULL = "" */
    long timeout_ms;            /* per command; default 2000 */
    const char *server_opts;    /* extra "add server" keywords, e.g. "check inter 2s" */
    long drain_timeout_ms;      /* how long a removed server's sessions may take to end
                                 * before it is deleted anyway; 0 = do not wait */
};

struct proxy *haproxy_new(struct loop *l, const struct haproxy_opts *o, char *err, size_t errlen);

/* Pure: parses `show servers state <backend>` output into the servers named
 * with prefix (servers in forced maintenance are left out: they take no
 * traffic). 0, or -1 with err (e.g. HAProxy's own error line). */
int haproxy_parse_servers_state(const char *text, const char *prefix, struct proxy_target_set *out,
                                char *err, size_t errlen);
/* Pure: the current plus queued sessions (scur + qcur) of server in the
 * CSV of `show stat <backend> 4 -1`; -1 when the server is not listed, -2
 * when the text is not such a dump (an error line). */
int haproxy_parse_stat_sessions(const char *text, const char *server);
/* Pure: the server name for a target ("cs-10.0.0.1:8080"). */
const char *haproxy_server_name(const struct proxy_target *t, char *out, size_t len);

#endif
