/*
 * Configuration: JSON files (Consul's own service-definition format for
 * services, plus the sidecar's settings), the consul CLI's environment
 * variables and command-line flags, merged with precedence
 * flags > environment > files > defaults, and validated as a whole. Every
 * error is one line naming the file, the key path and the reason:
 *
 *   config.json: services[1].check.interval: invalid duration "10"
 *
 * Secrets (ACL and Kong tokens, service tokens) are read from files once,
 * never printed: config_effective_json() redacts them.
 */
#ifndef SIDECAR_CONFIG_H
#define SIDECAR_CONFIG_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "consul/service-t.h"
#include "health/probe-t.h"
#include "lib/http.h"
#include "lib/log.h"
#include "sidecar/sync.h"

enum deregister_mode { DEREGISTER_ALWAYS, DEREGISTER_ON_SUCCESS, DEREGISTER_NEVER };

struct cfg_upstream {
    char *name; /* proxy upstream; defaults to the service */
    char *service;
    char **tags;
    size_t n_tags;
    char *proxy;      /* "kong", "haproxy", "nginx" */
    char *datacenter; /* NULL: the agent's */
    int passing_only;
};

struct cfg_probe {
    char *service_id;
    char *check_id;
    int64_t ttl_ms;
    struct probe_spec spec;
};

enum { KONG_WRITER_ELECTED, KONG_WRITER_PER_NODE };

struct cfg_kong {
    int enabled;
    char *admin_url;
    char *token;              /* secret */
    cJSON *upstream_defaults; /* may be NULL */
    int writer;               /* KONG_WRITER_* (proxy.kong.writer) */
    char *lock_key;
    int lock_key_needs_dc; /* no lock_prefix nor datacenter: the daemon puts the
                                     agent's datacenter in the key (lock_key: its "dc1" form) */
    int64_t session_ttl_ms, lock_delay_ms;
    int max_in_flight; /* Admin API requests at once (1..256, default 16) */
};

struct cfg_haproxy {
    int enabled;
    char *runtime; /* unix:///path or tcp://host:port */
    char *backend_prefix;
    int64_t drain_timeout_ms; /* a removed server's sessions may end within it */
};

struct cfg_nginx {
    int enabled;
    char *upstream_dir, *test_cmd, *reload_cmd;
};

struct config {
    char *consul_addr;
    char *token; /* secret */
    char *datacenter;
    char *node;
    int64_t resync_ms;
    int64_t reregister_splay_ms; /* consul.reregister_splay */
    struct http_tls tls;         /* strings owned */
    int http_ssl;                /* CONSUL_HTTP_SSL=true */
    char *listen;
    char *state_dir;
    enum log_level log_level;
    enum log_format log_format;
    enum deregister_mode deregister;
    int64_t drain_ms;
    int64_t once_timeout_ms; /* -once gives up after this (-once-timeout) */
    struct consul_service *services;
    size_t n_services;
    struct cfg_probe *probes;
    size_t n_probes;
    struct cfg_upstream *upstreams;
    size_t n_upstreams;
    struct cfg_kong kong;
    struct cfg_haproxy haproxy;
    struct cfg_nginx nginx;
    struct watch_settings watch; /* handed to the sync whole */
    char **warnings;             /* for the caller to log */
    size_t n_warnings;
};

/* Overrides coming from flags and the environment (NULL = not given). */
struct config_overrides {
    const char *consul_addr, *token, *token_file, *datacenter, *node, *listen;
    const char *state_dir, *log_level, *log_format;
    const char *cacert, *capath, *client_cert, *client_key, *tls_server_name;
    const char *ssl_verify, *http_ssl;
    const char *const *flag_names; /* for messages: which flag set what */
};

/* Loads files (each a JSON file or a directory of *.json, read in order),
 * applies env then flag overrides, validates. 0, or -1 with a one-line err;
 * *cfg is then empty. */
int config_load(struct config *cfg, const char *const *paths, size_t n_paths,
                const struct config_overrides *env, const struct config_overrides *flags, char *err,
                size_t errlen);
/* The effective configuration as pretty JSON, secrets "<redacted>". */
char *config_effective_json(const struct config *cfg);
void config_free(struct config *cfg); /* leaves *cfg empty; safe twice */

/* Go's strconv.ParseBool. 0/1 in *out, or -1. */
int config_parse_bool(const char *s, int *out);
/* "auto", "streams" or "detector": watch.mode as written. */
const char *config_watch_mode_name(int mode);

#endif
