/*
 * Configuration loading and validation; see config.h.
 *
 * Each file is parsed and checked on its own first, so an error always names
 * the file it is in. Files are then merged in order (services and upstreams
 * accumulate, settings are later-wins, objects merge key by key), the
 * environment and flags are applied, and the result is built into plain
 * structs. Service definitions are Consul's format and rules
 * (servicedef.c); the typed reads and their one-line errors are
 * lib/jread.c; the effective configuration's printout is config_print.c.
 */
#include "sidecar/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/jread.h"
#include "lib/dur.h"
#include "lib/fileio.h"
#include "lib/unconst.h"
#include "proxy/kong.h"
#include "sidecar/config_files.h"
#include "sidecar/elect.h"
#include "sidecar/probedef.h"
#include "sidecar/sync.h"


int config_parse_bool(const char *s, int *out)
{
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; s && i < 6; i++) {
        if (strcmp(s, t[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcmp(s, f[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* ---- the sidecar's own settings ------------------------------------------------ */

/* watch.mode, in the order of SYNC_MODE_*. */
static const char *const watch_modes[] = {"auto", "streams", "detector"};

const char *config_watch_mode_name(int mode)
{
    return mode >= 0 && mode < 3 ? watch_modes[mode] : "?";
}

/* ---- the settings a file may hold, as tables (lib/jread.h) ---- */

#define N(a) (sizeof a / sizeof a[0])

static const char *const writers[] = {"elected", "per-node"};
static const char *const proxy_kinds[] = {"kong", "haproxy", "nginx"};

/* HAProxy and nginx keep their own servers: only Kong has one writer. */
static int per_node_writer(struct jread *c, const cJSON *v, const char *path, const char *what)
{
    int iv;
    if (jread_enum(c, v, path, writers, N(writers), &iv) < 0)
        return -1;
    if (strcmp(writers[iv], "per-node") != 0)
        return jread_fail(c, path, "\"%s\" is for Kong only: %s, so every node's sidecar writes "
                          "them (per-node)", writers[iv], what);
    return 0;
}

static int haproxy_writer(struct jread *c, const cJSON *v, const char *path)
{
    return per_node_writer(c, v, path, "each HAProxy keeps its own servers");
}

static int nginx_writer(struct jread *c, const cJSON *v, const char *path)
{
    return per_node_writer(c, v, path, "each nginx renders its own files");
}

static int string_list(struct jread *c, const cJSON *v, const char *path)
{
    const cJSON *t;
    if (!cJSON_IsArray(v))
        return jread_fail(c, path, "expected an array of strings, got %s", jread_type_name(v));
    cJSON_ArrayForEach(t, v) if (!cJSON_IsString(t))
        return jread_fail(c, path, "expected an array of strings");
    return 0;
}

static const struct jkey consul_keys[] = {
    {.name = "address", .kind = JK_STR},
    {.name = "token", .kind = JK_STR},
    {.name = "token_file", .kind = JK_STR},
    {.name = "datacenter", .kind = JK_STR},
    {.name = "resync", .kind = JK_DUR,
      .min = 100, .max = INT64_MAX, .why = "must be at least 100ms"},
    {.name = "ca_file", .kind = JK_STR},
    {.name = "ca_path", .kind = JK_STR},
    {.name = "cert_file", .kind = JK_STR},
    {.name = "key_file", .kind = JK_STR},
    {.name = "tls_server_name", .kind = JK_STR}, {.name = "ssl_verify", .kind = JK_BOOL},
};

    static const struct jkey quiescence_keys[] = {{.name = "min", .kind = JK_NNDUR},
    {.name = "max", .kind = JK_NNDUR}};

static const struct jkey watch_keys[] = {
    {.name = "wait", .kind = JK_DUR,
      .min = 1000, .max = 600000, .why = "must be between 1s and 10m (Consul's cap)"},
    {.name = "stale", .kind = JK_BOOL},
    {.name = "quiescence", .kind = JK_SECTION, .sub = quiescence_keys, .n = N(quiescence_keys)},
    {.name = "hold_down", .kind = JK_NNDUR},
    {.name = "max_blocking", .kind = JK_INT, .min = 1, .max = 100},
    {.name = "mode", .kind = JK_ENUM, .values = watch_modes, .n = 3},
    {.name = "max_streams", .kind = JK_INT, .min = 1, .max = 100000},
    {.name = "cluster_poll", .kind = JK_DUR, .min = 1000, .max = 600000,
     .why = "must be between 1s and 10m"},
};

static const char *const http_urls[] = {"http://", "https://"};
static const struct jkey kong_keys[] = {
    {.name = "admin_url", .kind = JK_STR,
      .why = "expected an http:// or https:// URL", .values = http_urls, .n = 2},
    {.name = "token", .kind = JK_STR}, {.name = "token_file", .kind = JK_STR},
    {.name = "upstream_defaults", .kind = JK_OBJ},
    {.name = "writer", .kind = JK_ENUM, .values = writers, .n = N(writers)},
    {.name = "lock_prefix", .kind = JK_STR},
    {.name = "session_ttl", .kind = JK_NNDUR,
      .min = 1000, .max = 86400000, .why = "must be between 1s and 24h"},
    {.name = "lock_delay", .kind = JK_NNDUR,
      .min = 0, .max = 60000, .why = "must be at most 60s (Consul's limit)"},
    {.name = "max_in_flight", .kind = JK_INT, .min = 1, .max = 256},
};

static const char *const runtimes[] = {"unix:///", "tcp://"};
static const struct jkey haproxy_keys[] = {
    {.name = "runtime", .kind = JK_STR,
      .why = "expected unix:///path or tcp://host:port", .values = runtimes, .n = 2},
    {.name = "backend_prefix", .kind = JK_STR},
    {.name = "writer", .kind = JK_FN, .check = haproxy_writer},
    {.name = "drain_timeout", .kind = JK_NNDUR,
      .min = 0, .max = 3600000, .why = "must be at most 1h"},
};

static const struct jkey nginx_keys[] = {
    {.name = "upstream_dir", .kind = JK_STR},
    {.name = "test_cmd", .kind = JK_STR},
    {.name = "reload_cmd", .kind = JK_STR},
    {.name = "writer", .kind = JK_FN, .check = nginx_writer},
};

static const struct jkey proxy_keys[] = {
    {.name = "kong", .kind = JK_SECTION, .sub = kong_keys, .n = N(kong_keys)},
    {.name = "haproxy", .kind = JK_SECTION, .sub = haproxy_keys, .n = N(haproxy_keys)},
    {.name = "nginx", .kind = JK_SECTION, .sub = nginx_keys, .n = N(nginx_keys)},
};

static const struct jkey upstream_keys[] = {
    {.name = "service", .kind = JK_NESTR},
    {.name = "tags", .kind = JK_FN, .check = string_list},
    {.name = "name", .kind = JK_NESTR},
    {.name = "proxy", .kind = JK_ENUM, .values = proxy_kinds, .n = N(proxy_kinds)},
    {.name = "datacenter", .kind = JK_NESTR}, {.name = "passing_only", .kind = JK_BOOL},
};

static int upstream_list(struct jread *c, const cJSON *v, const char *path)
{
    const cJSON *u;
    int i = 0;
    if (!cJSON_IsArray(v))
        return jread_fail(c, path, "expected an array, got %s", jread_type_name(v));
    cJSON_ArrayForEach(u, v) {
        char up[64], kp[512];
        snprintf(up, sizeof up, "%s[%d]", path, i++);
        if (jread_section(c, u, up, upstream_keys, N(upstream_keys)) < 0)
            return -1;
        if (!cJSON_GetObjectItemCaseSensitive(u, "service")) {
            jread_join(kp, sizeof kp, up, "service");
            return jread_fail(c, kp, "required");
        }
    }
    return 0;
}

/* Service definitions are built later (servicedef.c): here only their shape. */
static int service_list(struct jread *c, const cJSON *v, const char *path)
{
    if (!cJSON_IsArray(v))
        return jread_fail(c, path, "expected an array, got %s", jread_type_name(v));
    return 0;
}

static const char *const dereg_modes[] = {"always", "on-success", "never"};
static const char *const levels[] = {"trace", "debug", "info", "warn", "error"};
static const char *const formats[] = {"text", "json"};
static const struct jkey top_keys[] = {
    {.name = "service", .kind = JK_OBJ},
    {.name = "services", .kind = JK_FN, .check = service_list},
    {.name = "consul", .kind = JK_SECTION, .sub = consul_keys, .n = N(consul_keys)},
    {.name = "node", .kind = JK_STR},
    {.name = "deregister", .kind = JK_ENUM, .values = dereg_modes, .n = N(dereg_modes)},
    {.name = "drain", .kind = JK_NNDUR},
    {.name = "listen", .kind = JK_STR},
    {.name = "state_dir", .kind = JK_STR},
    {.name = "log_level", .kind = JK_ENUM, .values = levels, .n = N(levels)},
    {.name = "log_format", .kind = JK_ENUM, .values = formats, .n = N(formats)},
    {.name = "upstreams", .kind = JK_FN, .check = upstream_list},
    {.name = "proxy", .kind = JK_SECTION, .sub = proxy_keys, .n = N(proxy_keys)},
    {.name = "watch", .kind = JK_SECTION, .sub = watch_keys, .n = N(watch_keys)},
};

/* Checks one file's settings (not services, built later) for key names and
 * types, so that errors name the right file. */
static int check_settings(struct jread *c, const cJSON *root)
{
    return jread_section(c, root, "", top_keys, N(top_keys));
}

/* Merges src's settings into dst (objects key-wise, the rest later-wins). */
static void merge_into(cJSON *dst, const cJSON *src)
{
    const cJSON *k;
    cJSON_ArrayForEach(k, src) {
        if (!strcmp(k->string, "service") || !strcmp(k->string, "services") ||
            !strcmp(k->string, "upstreams"))
            continue;
        cJSON *existing = cJSON_GetObjectItemCaseSensitive(dst, k->string);
        if (cJSON_IsObject(existing) && cJSON_IsObject(k) && strcmp(k->string, "upstream_defaults")) {
            merge_into(existing, k);
            continue;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(dst, k->string);
        cJSON_AddItemToObject(dst, k->string, cJSON_Duplicate(k, 1));
    }
}

/* The member at a dotted path "a.b.c", or NULL. */
static const cJSON *mget(const cJSON *o, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *cur = o;
    char *save = NULL;
    for (const char *tok = strtok_r(buf, ".", &save); tok && cur;
         tok = strtok_r(NULL, ".", &save))
        cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
    return cur;
}

static const char *mstr(const cJSON *o, const char *path)
{
    const cJSON *v = mget(o, path);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int64_t mdur(const cJSON *o, const char *path, int64_t dflt)
{
    const cJSON *v = mget(o, path);
    int64_t ms;
    if (cJSON_IsString(v) && dur_parse_ms(v->valuestring, &ms) == 0)
        return ms;
    if (cJSON_IsNumber(v))
        return (int64_t)(v->valuedouble / 1e6);
    return dflt;
}

static int add_warning(struct config *cfg, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    char **n = realloc(cfg->warnings, (cfg->n_warnings + 1) * sizeof *n);
    if (n == NULL)
        return -1;
    cfg->warnings = n;
    cfg->warnings[cfg->n_warnings] = strdup(line);
    return cfg->warnings[cfg->n_warnings++] ? 0 : -1;
}

/* Reads a secret from a file once: whitespace trimmed; a file others can
 * read is a warning; one larger than a token can be is refused. */
#define TOKEN_FILE_MAX 4096
static int read_token_file(struct config *cfg, const char *what, const char *path, char **out,
                           char *err, size_t errlen)
{
    struct stat st;
    char *text = NULL;
    size_t len = 0;
    enum file_read_rc rc = file_read_capped(path, TOKEN_FILE_MAX, &text, &len);
    if (rc == FILE_READ_TOO_BIG) {
        snprintf(err, errlen, "%s %s: larger than %d bytes: not a token", what, path, TOKEN_FILE_MAX);
        return -1;
    }
    if (rc != FILE_READ_OK) {
        snprintf(err, errlen, "%s %s: cannot read: %s", what, path,
                 strerror(rc == FILE_READ_MISSING ? ENOENT : errno));
        return -1;
    }
    if (stat(path, &st) == 0 && (st.st_mode & 077))
        add_warning(cfg, "%s %s is readable by group or others (mode %03o); chmod 600 it", what,
                    path, (unsigned)(st.st_mode & 0777));
    char *s = text;
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t l = strlen(s);
    while (l && isspace((unsigned char)s[l - 1]))
        s[--l] = '\0';
    if (l == 0) {
        snprintf(err, errlen, "%s %s: the file is empty", what, path);
        free(text);
        return -1;
    }
    free(*out);
    *out = strdup(s);
    memset(text, 0, len);   /* a secret: not left in freed memory */
    free(text);
    return *out ? 0 : -1;
}

static char *dup_opt(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

void config_free(struct config *cfg)
{
    free(cfg->consul_addr);
    if (cfg->token)
        memset(cfg->token, 0, strlen(cfg->token));
    free(cfg->token);
    free(cfg->datacenter);
    free(cfg->node);
    free(unconst(cfg->tls.cacert));
    free(unconst(cfg->tls.capath));
    free(unconst(cfg->tls.client_cert));
    free(unconst(cfg->tls.client_key));
    free(unconst(cfg->tls.server_name));
    free(cfg->listen);
    free(cfg->state_dir);
    for (size_t i = 0; i < cfg->n_services; i++) {
        struct consul_service *s = &cfg->services[i];
        free(s->id);
        free(s->name);
        cJSON_Delete(s->definition);
        for (size_t j = 0; j < s->n_checks; j++) {
            free(s->checks[j].check_id);
            free(s->checks[j].name);
        }
        free(s->checks);
    }
    free(cfg->services);
    for (size_t i = 0; i < cfg->n_probes; i++) {
        free(cfg->probes[i].service_id);
        free(cfg->probes[i].check_id);
        probe_spec_free(&cfg->probes[i].spec);
    }
    free(cfg->probes);
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        struct cfg_upstream *u = &cfg->upstreams[i];
        free(u->name);
        free(u->service);
        free_strv(u->tags, u->n_tags);
        free(u->proxy);
        free(u->datacenter);
    }
    free(cfg->upstreams);
    free(cfg->kong.admin_url);
    if (cfg->kong.token)
        memset(cfg->kong.token, 0, strlen(cfg->kong.token));
    free(cfg->kong.token);
    cJSON_Delete(cfg->kong.upstream_defaults);
    free(cfg->kong.lock_key);
    free(cfg->haproxy.runtime);
    free(cfg->haproxy.backend_prefix);
    free(cfg->nginx.upstream_dir);
    free(cfg->nginx.test_cmd);
    free(cfg->nginx.reload_cmd);
    free_strv(cfg->warnings, cfg->n_warnings);
    memset(cfg, 0, sizeof *cfg);
}

/* ---- building the configuration -------------------------------------------------- */

static int build_upstream(struct jread *c, const cJSON *u, const char *path, struct cfg_upstream *out)
{
    const char *svc = mstr(u, "service"), *name = mstr(u, "name"), *proxy = mstr(u, "proxy");
    const char *dc = mstr(u, "datacenter");
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(u, "tags");
    const cJSON *po = cJSON_GetObjectItemCaseSensitive(u, "passing_only");
    memset(out, 0, sizeof *out);
    out->service = strdup(svc);
    out->name = strdup(name ? name : svc);
    out->proxy = dup_opt(proxy);
    out->datacenter = dup_opt(dc);
    out->passing_only = po ? cJSON_IsTrue(po) : 1;
    int nt = cJSON_IsArray(tags) ? cJSON_GetArraySize(tags) : 0;
    out->tags = nt ? calloc((size_t)nt, sizeof *out->tags) : NULL;
    if (!out->service || !out->name || (proxy && !out->proxy) || (dc && !out->datacenter) ||
        (nt && !out->tags))
        return jread_fail(c, path, "out of memory");
    const cJSON *t;
    cJSON_ArrayForEach(t, tags) {
        if ((out->tags[out->n_tags] = strdup(t->valuestring)) == NULL)
            return jread_fail(c, path, "out of memory");
        out->n_tags++;
    }
    /* Kong, HAProxy and nginx all take the name into their own syntax. */
    for (const char *p = out->name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.') {
            char kp[512];
            jread_join(kp, sizeof kp, path, "name");
            return jread_fail(c, kp, "\"%.64s\": use letters, digits, '-', '_' and '.' only", out->name);
        }
    return 0;
}

static int apply_overrides(struct config *cfg, const struct config_overrides *o, const char *origin,
                           char *err, size_t errlen)
{
    if (o == NULL)
        return 0;
    struct {
        const char *v;
        char **dst;
    } strs[] = {
        {o->consul_addr, &cfg->consul_addr}, {o->datacenter, &cfg->datacenter},
        {o->node, &cfg->node},               {o->listen, &cfg->listen},
        {o->state_dir, &cfg->state_dir},
    };
    /* The TLS files sit in the client's options, whose fields are const. */
    struct {
        const char *v;
        const char **dst;
    } tls[] = {
        {o->cacert, &cfg->tls.cacert}, {o->capath, &cfg->tls.capath},
        {o->client_cert, &cfg->tls.client_cert}, {o->client_key, &cfg->tls.client_key},
        {o->tls_server_name, &cfg->tls.server_name},
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        if (strs[i].v == NULL)
            continue;
        free(*strs[i].dst);
        if ((*strs[i].dst = strdup(strs[i].v)) == NULL)
            goto oom;
    }
    for (size_t i = 0; i < sizeof tls / sizeof tls[0]; i++) {
        if (tls[i].v == NULL)
            continue;
        free(unconst(*tls[i].dst));
        if ((*tls[i].dst = strdup(tls[i].v)) == NULL)
            goto oom;
    }
    if (o->token_file && read_token_file(cfg, "token file", o->token_file, &cfg->token, err, errlen) < 0)
        return -1;
    if (o->token) {
        free(cfg->token);
        if ((cfg->token = strdup(o->token)) == NULL)
            goto oom;
    }
    if (o->log_level && log_level_parse(o->log_level, &cfg->log_level) < 0) {
        snprintf(err, errlen, "%s log level: must be one of trace, debug, info, warn, error, got \"%.32s\"",
                 origin, o->log_level);
        return -1;
    }
    if (o->log_format && log_format_parse(o->log_format, &cfg->log_format) < 0) {
        snprintf(err, errlen, "%s log format: must be text or json, got \"%.32s\"", origin,
                 o->log_format);
        return -1;
    }
    int b;
    if (o->ssl_verify) {
        if (config_parse_bool(o->ssl_verify, &b) < 0) {
            snprintf(err, errlen, "CONSUL_HTTP_SSL_VERIFY: not a boolean: \"%.32s\"", o->ssl_verify);
            return -1;
        }
        cfg->tls.insecure = !b;
    }
    if (o->http_ssl) {
        if (config_parse_bool(o->http_ssl, &b) < 0) {
            snprintf(err, errlen, "CONSUL_HTTP_SSL: not a boolean: \"%.32s\"", o->http_ssl);
            return -1;
        }
        cfg->http_ssl = b;   /* applied once every source is in (config_load) */
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

static int oom(char *err, size_t errlen)
{
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* Defaults, then the merged files: the settings read once checked. */
static int settings_from(struct config *cfg, const cJSON *merged, char *err, size_t errlen)
{
    cfg->log_level = LOG_INFO;
    cfg->log_format = LOG_FORMAT_TEXT;
    const char *s;
    cfg->consul_addr = strdup((s = mstr(merged, "consul.address")) ? s : "127.0.0.1:8500");
    cfg->datacenter = dup_opt(mstr(merged, "consul.datacenter"));
    cfg->resync_ms = mdur(merged, "consul.resync", 30000);
    cfg->tls.cacert = dup_opt(mstr(merged, "consul.ca_file"));
    cfg->tls.capath = dup_opt(mstr(merged, "consul.ca_path"));
    cfg->tls.client_cert = dup_opt(mstr(merged, "consul.cert_file"));
    cfg->tls.client_key = dup_opt(mstr(merged, "consul.key_file"));
    cfg->tls.server_name = dup_opt(mstr(merged, "consul.tls_server_name"));
    const cJSON *v = mget(merged, "consul.ssl_verify");
    cfg->tls.insecure = cJSON_IsFalse(v);
    cfg->listen = strdup((s = mstr(merged, "listen")) ? s : "127.0.0.1:9108");
    cfg->state_dir = strdup((s = mstr(merged, "state_dir")) ? s : "/var/lib/consul-sidecar");
    if ((s = mstr(merged, "log_level")))
        log_level_parse(s, &cfg->log_level);
    if ((s = mstr(merged, "log_format")))
        log_format_parse(s, &cfg->log_format);
    s = mstr(merged, "deregister");
    cfg->deregister = !s || !strcmp(s, "always") ? DEREGISTER_ALWAYS
                      : !strcmp(s, "on-success") ? DEREGISTER_ON_SUCCESS : DEREGISTER_NEVER;
    cfg->drain_ms = mdur(merged, "drain", 5000);
    cfg->node = dup_opt(mstr(merged, "node"));
    if ((s = mstr(merged, "consul.token")))
        cfg->token = strdup(s);
    if ((s = mstr(merged, "consul.token_file")) &&
        read_token_file(cfg, "consul.token_file", s, &cfg->token, err, errlen) < 0)
        return -1;
    /* Watch. */
    cfg->watch.wait_ms = mdur(merged, "watch.wait", 300000);
    cfg->watch.stale = cJSON_IsTrue(mget(merged, "watch.stale"));
    cfg->watch.quiescence_min_ms = mdur(merged, "watch.quiescence.min", 100);
    cfg->watch.quiescence_max_ms = mdur(merged, "watch.quiescence.max", 1000);
    cfg->watch.hold_down_ms = mdur(merged, "watch.hold_down", 10000);
    v = mget(merged, "watch.max_blocking");
    cfg->watch.max_blocking = cJSON_IsNumber(v) ? v->valueint : 8;
    v = mget(merged, "watch.max_streams");
    cfg->watch.max_streams = cJSON_IsNumber(v) ? v->valueint : 1000;
    cfg->watch.cluster_poll_ms = mdur(merged, "watch.cluster_poll", 5000);
    cfg->watch.mode = SYNC_MODE_AUTO;
    if ((s = mstr(merged, "watch.mode")))
        for (int m = 0; m < 3; m++)
            if (strcmp(s, watch_modes[m]) == 0)
                cfg->watch.mode = m;
    if (cfg->watch.quiescence_min_ms > cfg->watch.quiescence_max_ms) {
        snprintf(err, errlen, "watch.quiescence: min (%lld ms) is larger than max (%lld ms)",
                 (long long)cfg->watch.quiescence_min_ms, (long long)cfg->watch.quiescence_max_ms);
        return -1;
    }

    return 0;
}

/* The proxies configured, with their defaults. */
static int proxies_from(struct config *cfg, const cJSON *merged, char *err, size_t errlen)
{
    const char *s;
    const cJSON *kong = mget(merged, "proxy.kong"), *hap = mget(merged, "proxy.haproxy");
    const cJSON *ngx = mget(merged, "proxy.nginx");
    if (kong) {
        cfg->kong.enabled = 1;
        cfg->kong.admin_url = strdup((s = mstr(kong, "admin_url")) ? s : "http://127.0.0.1:8001");
        if ((s = mstr(kong, "token")))
            cfg->kong.token = strdup(s);
        if ((s = mstr(kong, "token_file")) &&
            read_token_file(cfg, "proxy.kong.token_file", s, &cfg->kong.token, err, errlen) < 0)
            return -1;
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(kong, "upstream_defaults");
        cfg->kong.upstream_defaults = d ? cJSON_Duplicate(d, 1) : NULL;
        s = mstr(kong, "writer");
        cfg->kong.writer_elected = !s || strcmp(s, "elected") == 0;
        /* No lock_prefix and no consul.datacenter: the key waits for the
         * agent's datacenter (lock_key_needs_dc; the daemon asks
         * /v1/agent/self and starts the election with it). */
        char key[512];
        key[0] = '\0';
        if ((s = mstr(kong, "lock_prefix")))
            snprintf(key, sizeof key, "%s", s);
        else {
            elect_default_key(cfg->datacenter ? cfg->datacenter : "dc1", key, sizeof key);
            cfg->kong.lock_key_needs_dc = cfg->datacenter == NULL;
        }
        cfg->kong.lock_key = strdup(key);
        cfg->kong.session_ttl_ms = mdur(kong, "session_ttl", 15000);
        cfg->kong.lock_delay_ms = mdur(kong, "lock_delay", 15000);
        const cJSON *mif = cJSON_GetObjectItemCaseSensitive(kong, "max_in_flight");
        cfg->kong.max_in_flight = cJSON_IsNumber(mif) ? mif->valueint : KONG_DEFAULT_MAX_IN_FLIGHT;
        if (!cfg->kong.admin_url || (key[0] && !cfg->kong.lock_key))
            return oom(err, errlen);
    }
    if (hap) {
        cfg->haproxy.enabled = 1;
        cfg->haproxy.runtime = strdup((s = mstr(hap, "runtime")) ? s : "unix:///run/haproxy/admin.sock");
        cfg->haproxy.backend_prefix = strdup((s = mstr(hap, "backend_prefix")) ? s : "");
        cfg->haproxy.drain_timeout_ms = mdur(hap, "drain_timeout", 5000);
        if (!cfg->haproxy.runtime || !cfg->haproxy.backend_prefix)
            return oom(err, errlen);
    }
    if (ngx) {
        cfg->nginx.enabled = 1;
        cfg->nginx.upstream_dir = strdup((s = mstr(ngx, "upstream_dir")) ? s : "/etc/nginx/conf.d");
        cfg->nginx.test_cmd = strdup((s = mstr(ngx, "test_cmd")) ? s : "nginx -t -q");
        cfg->nginx.reload_cmd = strdup((s = mstr(ngx, "reload_cmd")) ? s : "nginx -s reload");
        if (!cfg->nginx.upstream_dir || !cfg->nginx.test_cmd || !cfg->nginx.reload_cmd)
            return oom(err, errlen);
    }
    return 0;
}

/* The services of one file, appended (errors name the file). */
static int services_from(struct config *cfg, struct jread *c, const cJSON *root)
{
    char *err = c->err;
    size_t errlen = c->errlen;
    const cJSON *one = cJSON_GetObjectItemCaseSensitive(root, "service");
    const cJSON *many = cJSON_GetObjectItemCaseSensitive(root, "services");
    size_t add = (one ? 1 : 0) + (many ? (size_t)cJSON_GetArraySize(many) : 0);
    struct probedef_list probes;
    probedef_list_init(&probes, &cfg->probes, &cfg->n_probes);
    if (add) {
        struct consul_service *n = realloc(cfg->services, (cfg->n_services + add) * sizeof *n);
        if (n == NULL)
            return oom(err, errlen);
        cfg->services = n;
    }
    for (size_t k = 0; k < add; k++) {
        const cJSON *def = one && k == 0 ? one : cJSON_GetArrayItem(many, (int)(k - (one ? 1 : 0)));
        char path[64];
        if (one && k == 0)
            snprintf(path, sizeof path, "service");
        else
            snprintf(path, sizeof path, "services[%zu]", k - (one ? 1 : 0));
        struct svc_build b = {c, cfg->node, &cfg->services[cfg->n_services], &probes.ext};
        if (servicedef_build(&b, def, path) < 0)
            return -1;
        cfg->n_services++;
        for (size_t j = 0; j + 1 < cfg->n_services; j++) {
            if (strcmp(cfg->services[j].id, cfg->services[cfg->n_services - 1].id) == 0) {
                jread_fail(c, path, "a second service with the ID \"%.64s\"", cfg->services[j].id);
                return -1;
            }
        }
    }
    return 0;
}

/* The upstreams of one file, appended, each with its proxy. */
static int upstreams_from(struct config *cfg, struct jread *c, const cJSON *root)
{
    char *err = c->err;
    size_t errlen = c->errlen;
    int n_proxies = cfg->kong.enabled + cfg->haproxy.enabled + cfg->nginx.enabled;
    const char *only = cfg->kong.enabled ? "kong" : cfg->haproxy.enabled ? "haproxy" : "nginx";
    const cJSON *ups = cJSON_GetObjectItemCaseSensitive(root, "upstreams");
    const cJSON *u;
    int ui = 0;
    cJSON_ArrayForEach(u, ups) {
        char path[64];
        snprintf(path, sizeof path, "upstreams[%d]", ui++);
        struct cfg_upstream *n = realloc(cfg->upstreams, (cfg->n_upstreams + 1) * sizeof *n);
        if (n == NULL)
            return oom(err, errlen);
        cfg->upstreams = n;
        struct cfg_upstream *up = &cfg->upstreams[cfg->n_upstreams++];
        if (build_upstream(c, u, path, up) < 0)
            return -1;
        char kp[512];
        jread_join(kp, sizeof kp, path, "proxy");
        if (up->proxy == NULL) {
            if (n_proxies == 0) {
                jread_fail(c, kp, "no proxy is configured: add proxy.kong, proxy.haproxy or proxy.nginx");
                return -1;
            }
            if (n_proxies > 1) {
                jread_fail(c, kp, "required when several proxies are configured");
                return -1;
            }
            if ((up->proxy = strdup(only)) == NULL)
                return oom(err, errlen);
        } else if ((!strcmp(up->proxy, "kong") && !cfg->kong.enabled) ||
                   (!strcmp(up->proxy, "haproxy") && !cfg->haproxy.enabled) ||
                   (!strcmp(up->proxy, "nginx") && !cfg->nginx.enabled)) {
            jread_fail(c, kp, "proxy \"%s\" is not configured under \"proxy\"", up->proxy);
            return -1;
        }
        for (size_t j = 0; j + 1 < cfg->n_upstreams; j++) {
            if (strcmp(cfg->upstreams[j].name, up->name) == 0 &&
                strcmp(cfg->upstreams[j].proxy, up->proxy) == 0) {
                jread_fail(c, path, "a second upstream named \"%.64s\" for %s", up->name, up->proxy);
                return -1;
            }
        }
    }
    return 0;
}

int config_load(struct config *cfg, const char *const *paths, size_t n_paths,
                const struct config_overrides *env, const struct config_overrides *flags,
                char *err, size_t errlen)
{
    struct cfg_source *srcs = NULL;
    size_t n_srcs = 0;
    cJSON *merged = cJSON_CreateObject();
    struct jread c = {.err = err, .errlen = errlen};
    memset(cfg, 0, sizeof *cfg);
    err[0] = '\0';
    if (merged == NULL)
        goto oom;

    for (size_t i = 0; i < n_paths; i++)
        if (config_load_path(&srcs, &n_srcs, paths[i], err, errlen) < 0)
            goto fail;
    for (size_t i = 0; i < n_srcs; i++) {
        c.file = srcs[i].file;
        if (check_settings(&c, srcs[i].root) < 0)
            goto fail;
        merge_into(merged, srcs[i].root);
    }

    if (settings_from(cfg, merged, err, errlen) < 0)
        goto fail;
    /* Environment, then flags. */
    if (apply_overrides(cfg, env, "environment", err, errlen) < 0 ||
        apply_overrides(cfg, flags, "flag", err, errlen) < 0)
        goto fail;
    /* CONSUL_HTTP_SSL=true: https for an address given without a scheme,
     * wherever it came from (file, CONSUL_HTTP_ADDR or -consul-addr), and
     * for the default one, as the consul CLI does. */
    if (cfg->http_ssl && (cfg->consul_addr == NULL || !strstr(cfg->consul_addr, "://"))) {
        const char *a = cfg->consul_addr ? cfg->consul_addr : "127.0.0.1:8500";
        char *https = malloc(strlen(a) + 9);
        if (https == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        snprintf(https, strlen(a) + 9, "https://%s", a);
        free(cfg->consul_addr);
        cfg->consul_addr = https;
    }
    if (cfg->node == NULL) {
        char host[256] = "";
        if (gethostname(host, sizeof host - 1) < 0 || host[0] == '\0')
            snprintf(host, sizeof host, "localhost");
        cfg->node = strdup(host);
    }
    if (!cfg->consul_addr || !cfg->listen || !cfg->state_dir || !cfg->node)
        goto oom;

    if (proxies_from(cfg, merged, err, errlen) < 0)
        goto fail;
    /* Services and upstreams, file by file (errors name their file). */
    for (size_t i = 0; i < n_srcs; i++) {
        c.file = srcs[i].file;
        if (services_from(cfg, &c, srcs[i].root) < 0 || upstreams_from(cfg, &c, srcs[i].root) < 0)
            goto fail;
    }
    for (size_t i = 0; i < n_srcs; i++) {
        free(srcs[i].file);
        cJSON_Delete(srcs[i].root);
    }
    free(srcs);
    cJSON_Delete(merged);
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    for (size_t i = 0; i < n_srcs; i++) {
        free(srcs[i].file);
        cJSON_Delete(srcs[i].root);
    }
    free(srcs);
    cJSON_Delete(merged);
    config_free(cfg);
    return -1;
}
