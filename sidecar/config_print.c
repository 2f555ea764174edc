/* The effective configuration, secrets redacted (-validate); see config.h. */
#include "sidecar/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/dur.h"
#include "lib/unconst.h"

static void add_str(cJSON *o, const char *k, const char *v)
{
    if (v)
        cJSON_AddStringToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static void add_dur(cJSON *o, const char *k, int64_t ms)
{
    char b[32];
    cJSON_AddStringToObject(o, k, dur_format_ms(ms, b, sizeof b));
}

/* "http://user:pass@host/x" -> "http://<redacted>@host/x"; others as they are. */
static const char *redact_userinfo(const char *url, char *out, size_t len)
{
    const char *scheme = url ? strstr(url, "://") : NULL;
    if (scheme == NULL)
        return url;
    const char *host = scheme + 3, *end = host + strcspn(host, "/?#"), *at = NULL;
    for (const char *p = host; p < end; p++)
        if (*p == '@')
            at = p;
    if (at == NULL)
        return url;
    snprintf(out, len, "%.*s<redacted>%s", (int)(host - url), url, at);
    return out;
}

/* A check definition as -validate prints it: header values (they carry
 * credentials: Authorization, API keys) and URL passwords hidden. */
static void redact_check(cJSON *ck)
{
    if (!cJSON_IsObject(ck))
        return;
    cJSON *hdr = cJSON_GetObjectItemCaseSensitive(ck, "Header"), *h;
    cJSON_ArrayForEach(h, hdr) {
        cJSON *v;
        cJSON_ArrayForEach(v, h) if (cJSON_IsString(v)) cJSON_SetValuestring(v, "<redacted>");
    }
    cJSON *u = cJSON_GetObjectItemCaseSensitive(ck, "HTTP");
    char safe[2048];
    if (cJSON_IsString(u)) {
        const char *r = redact_userinfo(u->valuestring, safe, sizeof safe);
        if (r != u->valuestring)
            cJSON_SetValuestring(u, r);
    }
}

static void add_secret(cJSON *o, const char *k, const char *v)
{
    if (v)
        cJSON_AddStringToObject(o, k, "<redacted>");
    else
        cJSON_AddNullToObject(o, k);
}

/* Service definitions as they will be registered, secrets redacted. */
static void print_services(cJSON *o, const struct config *cfg)
{
    cJSON *svcs = cJSON_AddArrayToObject(o, "services");
    for (size_t i = 0; i < cfg->n_services; i++) {
        cJSON *d = cJSON_Duplicate(cfg->services[i].definition, 1);
        if (cJSON_GetObjectItemCaseSensitive(d, "Token"))
            cJSON_ReplaceItemInObjectCaseSensitive(d, "Token", cJSON_CreateString("<redacted>"));
        redact_check(cJSON_GetObjectItemCaseSensitive(d, "Check"));
        const cJSON *ck;
        cJSON_ArrayForEach(ck, cJSON_GetObjectItemCaseSensitive(d, "Checks"))
            redact_check(unconst(ck));
        cJSON_AddItemToArray(svcs, d);
    }
    cJSON *probes = cJSON_AddArrayToObject(o, "probes");
    for (size_t i = 0; i < cfg->n_probes; i++) {
        const struct cfg_probe *p = &cfg->probes[i];
        cJSON *x = cJSON_CreateObject();
        char safe[2048];
        add_str(x, "check_id", p->check_id);
        add_str(x, p->spec.kind == PROBE_HTTP ? "http" : "tcp",
                redact_userinfo(p->spec.target, safe, sizeof safe));
        add_dur(x, "interval", p->spec.interval_ms);
        add_dur(x, "timeout", p->spec.timeout_ms);
        add_dur(x, "ttl", p->ttl_ms);
        cJSON_AddItemToArray(probes, x);
    }
}

static void print_upstreams(cJSON *o, const struct config *cfg)
{
    cJSON *ups = cJSON_AddArrayToObject(o, "upstreams");
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        const struct cfg_upstream *u = &cfg->upstreams[i];
        cJSON *x = cJSON_CreateObject();
        add_str(x, "name", u->name);
        add_str(x, "service", u->service);
        cJSON *t = cJSON_AddArrayToObject(x, "tags");
        for (size_t j = 0; j < u->n_tags; j++)
            cJSON_AddItemToArray(t, cJSON_CreateString(u->tags[j]));
        add_str(x, "proxy", u->proxy);
        add_str(x, "datacenter", u->datacenter);
        cJSON_AddBoolToObject(x, "passing_only", u->passing_only);
        cJSON_AddItemToArray(ups, x);
    }
}

/* The proxies in use, each with its settings. */
static void print_proxies(cJSON *o, const struct config *cfg)
{
    cJSON *px = cJSON_AddObjectToObject(o, "proxy");
    if (cfg->kong.enabled) {
        cJSON *k = cJSON_AddObjectToObject(px, "kong");
        add_str(k, "admin_url", cfg->kong.admin_url);
        add_secret(k, "token", cfg->kong.token);
        add_str(k, "writer", cfg->kong.writer_elected ? "elected" : "per-node");
        add_str(k, "lock_key", cfg->kong.lock_key_needs_dc
                                   ? "consul-sidecar/<the agent's datacenter>/kong-writer"
                                   : cfg->kong.lock_key);
        add_dur(k, "session_ttl", cfg->kong.session_ttl_ms);
        add_dur(k, "lock_delay", cfg->kong.lock_delay_ms);
        cJSON_AddNumberToObject(k, "max_in_flight", cfg->kong.max_in_flight);
        if (cfg->kong.upstream_defaults)
            cJSON_AddItemToObject(k, "upstream_defaults", cJSON_Duplicate(cfg->kong.upstream_defaults, 1));
    }
    if (cfg->haproxy.enabled) {
        cJSON *h = cJSON_AddObjectToObject(px, "haproxy");
        add_str(h, "runtime", cfg->haproxy.runtime);
        add_str(h, "backend_prefix", cfg->haproxy.backend_prefix);
        add_dur(h, "drain_timeout", cfg->haproxy.drain_timeout_ms);
    }
    if (cfg->nginx.enabled) {
        cJSON *n = cJSON_AddObjectToObject(px, "nginx");
        add_str(n, "upstream_dir", cfg->nginx.upstream_dir);
        add_str(n, "test_cmd", cfg->nginx.test_cmd);
        add_str(n, "reload_cmd", cfg->nginx.reload_cmd);
    }
}

static void print_watch(cJSON *o, const struct config *cfg)
{
    cJSON *w = cJSON_AddObjectToObject(o, "watch");
    add_dur(w, "wait", cfg->watch.wait_ms);
    cJSON_AddBoolToObject(w, "stale", cfg->watch.stale);
    cJSON *q = cJSON_AddObjectToObject(w, "quiescence");
    add_dur(q, "min", cfg->watch.quiescence_min_ms);
    add_dur(q, "max", cfg->watch.quiescence_max_ms);
    add_dur(w, "hold_down", cfg->watch.hold_down_ms);
    cJSON_AddNumberToObject(w, "max_blocking", cfg->watch.max_blocking);
    cJSON_AddStringToObject(w, "mode", config_watch_mode_name(cfg->watch.mode));
    cJSON_AddNumberToObject(w, "max_streams", cfg->watch.max_streams);
    add_dur(w, "cluster_poll", cfg->watch.cluster_poll_ms);
}

char *config_effective_json(const struct config *cfg)
{
    static const char *const dereg[] = {"always", "on-success", "never"};
    cJSON *o = cJSON_CreateObject();
    cJSON *c = cJSON_AddObjectToObject(o, "consul");
    add_str(c, "address", cfg->consul_addr);
    add_secret(c, "token", cfg->token);
    add_str(c, "datacenter", cfg->datacenter);
    add_dur(c, "resync", cfg->resync_ms);
    add_str(c, "ca_file", cfg->tls.cacert);
    add_str(c, "ca_path", cfg->tls.capath);
    add_str(c, "cert_file", cfg->tls.client_cert);
    add_str(c, "key_file", cfg->tls.client_key);
    add_str(c, "tls_server_name", cfg->tls.server_name);
    cJSON_AddBoolToObject(c, "ssl_verify", !cfg->tls.insecure);
    add_str(o, "node", cfg->node);
    add_str(o, "deregister", dereg[cfg->deregister]);
    add_dur(o, "drain", cfg->drain_ms);
    add_str(o, "listen", cfg->listen);
    add_str(o, "state_dir", cfg->state_dir);
    add_str(o, "log_level", log_level_name(cfg->log_level));
    add_str(o, "log_format", cfg->log_format == LOG_FORMAT_JSON ? "json" : "text");
    print_services(o, cfg);
    print_upstreams(o, cfg);
    print_proxies(o, cfg);
    print_watch(o, cfg);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}
