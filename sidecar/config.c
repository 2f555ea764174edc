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

#include "consul/agent.h"
#include "lib/buf.h"
#include "lib/jread.h"
#include "lib/dur.h"
#include "lib/fileio.h"
#include "lib/unconst.h"
#include "proxy/kong.h"
#include "sidecar/config_files.h"
#include "sidecar/config_int.h"
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
/* Where a setting is kept in struct config (jread_store, jread_print). */
#define AT(f) offsetof(struct config, f)

static const char *const writers[] = {"elected", "per-node"};
static const char *const proxy_kinds[] = {"kong", "haproxy", "nginx"};

/* HAProxy and nginx keep their own servers: only Kong has one writer. */
static int per_node_writer(struct jread *c, const cJSON *v, const char *path, const char *what)
{
    int iv;
    if (jread_enum(c, v, path, writers, N(writers), &iv) < 0)
        return -1;
    if (strcmp(writers[iv], "per-node") != 0)
        return jread_fail(c, path,
                          "\"%s\" is for Kong only: %s, so every node's sidecar writes "
                          "them (per-node)",
                          writers[iv], what);
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
    cJSON_ArrayForEach(t, v)
        if (!cJSON_IsString(t))
            return jread_fail(c, path, "expected an array of strings");
    return 0;
}

/*
 * Every setting once: its name, its check, where it is kept, its default.
 * Validation (jread_section), loading (jread_store) and -validate's
 * printout (jread_print) walk these tables; a key stored JS_NONE is read by
 * code below (a token file, a lock key, ...).
 */
static const struct jkey consul_keys[] = {
    {.name = "address",
     .kind = JK_STR,
     .store = JS_STR,
     .off = AT(consul_addr),
     .defs = "127.0.0.1:8500"},
    {.name = "token", .kind = JK_STR, .store = JS_STR, .off = AT(token), .flags = JF_SECRET},
    {.name = "token_file", .kind = JK_STR},
    {.name = "datacenter", .kind = JK_STR, .store = JS_STR, .off = AT(datacenter)},
    {.name = "resync",
     .kind = JK_DUR,
     .min = 100,
     .max = INT64_MAX,
     .why = "must be at least 100ms",
     .store = JS_MS,
     .off = AT(resync_ms),
     .def = 30000},
    {.name = "reregister_splay",
     .kind = JK_NNDUR,
     .min = 0,
     .max = 600000,
     .why = "must be at most 10m",
     .store = JS_MS,
     .off = AT(reregister_splay_ms),
     .def = 5000},
    {.name = "ca_file", .kind = JK_STR, .store = JS_STR, .off = AT(tls.cacert)},
    {.name = "ca_path", .kind = JK_STR, .store = JS_STR, .off = AT(tls.capath)},
    {.name = "cert_file", .kind = JK_STR, .store = JS_STR, .off = AT(tls.client_cert)},
    {.name = "key_file", .kind = JK_STR, .store = JS_STR, .off = AT(tls.client_key)},
    {.name = "tls_server_name", .kind = JK_STR, .store = JS_STR, .off = AT(tls.server_name)},
    {.name = "ssl_verify",
     .kind = JK_BOOL,
     .store = JS_BOOL,
     .off = AT(tls.insecure),
     .def = 1,
     .flags = JF_NOT},
};

static const struct jkey quiescence_keys[] = {
    {.name = "min",
     .kind = JK_NNDUR,
     .store = JS_MS,
     .off = AT(watch.quiescence_min_ms),
     .def = 100},
    {.name = "max",
     .kind = JK_NNDUR,
     .store = JS_MS,
     .off = AT(watch.quiescence_max_ms),
     .def = 1000},
};

static const struct jkey watch_keys[] = {
    {.name = "wait",
     .kind = JK_DUR,
     .min = 1000,
     .max = 600000,
     .why = "must be between 1s and 10m (Consul's cap)",
     .store = JS_MS,
     .off = AT(watch.wait_ms),
     .def = 300000},
    {.name = "stale", .kind = JK_BOOL, .store = JS_BOOL, .off = AT(watch.stale)},
    {.name = "quiescence", .kind = JK_SECTION, .sub = quiescence_keys, .n = N(quiescence_keys)},
    {.name = "hold_down",
     .kind = JK_NNDUR,
     .store = JS_MS,
     .off = AT(watch.hold_down_ms),
     .def = 10000},
    {.name = "max_blocking",
     .kind = JK_INT,
     .min = 1,
     .max = 100,
     .store = JS_INT,
     .off = AT(watch.max_blocking),
     .def = 8},
    {.name = "mode",
     .kind = JK_ENUM,
     .values = watch_modes,
     .n = 3,
     .store = JS_ENUM,
     .off = AT(watch.mode),
     .def = SYNC_MODE_AUTO},
    {.name = "max_streams",
     .kind = JK_INT,
     .min = 1,
     .max = 100000,
     .store = JS_INT,
     .off = AT(watch.max_streams),
     .def = 1000},
    {.name = "cluster_poll",
     .kind = JK_DUR,
     .min = 1000,
     .max = 600000,
     .why = "must be between 1s and 10m",
     .store = JS_MS,
     .off = AT(watch.cluster_poll_ms),
     .def = 5000},
};

static const char *const http_urls[] = {"http://", "https://"};
static const struct jkey kong_keys[] = {
    {.name = "admin_url",
     .kind = JK_STR,
     .why = "expected an http:// or https:// URL",
     .values = http_urls,
     .n = 2,
     .store = JS_STR,
     .off = AT(kong.admin_url),
     .defs = "http://127.0.0.1:8001"},
    {.name = "token", .kind = JK_STR, .store = JS_STR, .off = AT(kong.token), .flags = JF_SECRET},
    {.name = "token_file", .kind = JK_STR},
    {.name = "writer",
     .kind = JK_ENUM,
     .values = writers,
     .n = N(writers),
     .store = JS_ENUM,
     .off = AT(kong.writer),
     .def = KONG_WRITER_ELECTED},
    {.name = "lock_prefix", .kind = JK_STR, .print = config_print_lock_key},
    {.name = "session_ttl",
     .kind = JK_NNDUR,
     .min = 1000,
     .max = 86400000,
     .why = "must be between 1s and 24h",
     .store = JS_MS,
     .off = AT(kong.session_ttl_ms),
     .def = 15000},
    {.name = "lock_delay",
     .kind = JK_NNDUR,
     .min = 0,
     .max = 60000,
     .why = "must be at most 60s (Consul's limit)",
     .store = JS_MS,
     .off = AT(kong.lock_delay_ms),
     .def = 15000},
    {.name = "max_in_flight",
     .kind = JK_INT,
     .min = 1,
     .max = 256,
     .store = JS_INT,
     .off = AT(kong.max_in_flight),
     .def = KONG_DEFAULT_MAX_IN_FLIGHT},
    {.name = "upstream_defaults", .kind = JK_OBJ, .print = config_print_upstream_defaults},
};

static const char *const runtimes[] = {"unix:///", "tcp://"};
static const struct jkey haproxy_keys[] = {
    {.name = "runtime",
     .kind = JK_STR,
     .why = "expected unix:///path or tcp://host:port",
     .values = runtimes,
     .n = 2,
     .store = JS_STR,
     .off = AT(haproxy.runtime),
     .defs = "unix:///run/haproxy/admin.sock"},
    {.name = "backend_prefix",
     .kind = JK_STR,
     .store = JS_STR,
     .off = AT(haproxy.backend_prefix),
     .defs = ""},
    {.name = "writer", .kind = JK_FN, .check = haproxy_writer},
    {.name = "drain_timeout",
     .kind = JK_NNDUR,
     .min = 0,
     .max = 3600000,
     .why = "must be at most 1h",
     .store = JS_MS,
     .off = AT(haproxy.drain_timeout_ms),
     .def = 5000},
};

static const struct jkey nginx_keys[] = {
    {.name = "upstream_dir",
     .kind = JK_STR,
     .store = JS_STR,
     .off = AT(nginx.upstream_dir),
     .defs = "/etc/nginx/conf.d"},
    {.name = "test_cmd",
     .kind = JK_STR,
     .store = JS_STR,
     .off = AT(nginx.test_cmd),
     .defs = "nginx -t -q"},
    {.name = "reload_cmd",
     .kind = JK_STR,
     .store = JS_STR,
     .off = AT(nginx.reload_cmd),
     .defs = "nginx -s reload"},
    {.name = "writer", .kind = JK_FN, .check = nginx_writer},
};

/* A proxy's section, stored only when given (its enabled flag). */
static const struct jkey proxy_keys[] = {
    {.name = "kong",
     .kind = JK_SECTION,
     .sub = kong_keys,
     .n = N(kong_keys),
     .store = JS_GIVEN,
     .off = AT(kong.enabled)},
    {.name = "haproxy",
     .kind = JK_SECTION,
     .sub = haproxy_keys,
     .n = N(haproxy_keys),
     .store = JS_GIVEN,
     .off = AT(haproxy.enabled)},
    {.name = "nginx",
     .kind = JK_SECTION,
     .sub = nginx_keys,
     .n = N(nginx_keys),
     .store = JS_GIVEN,
     .off = AT(nginx.enabled)},
};

static const struct jkey upstream_keys[] = {
    {.name = "service", .kind = JK_NESTR},
    {.name = "tags", .kind = JK_FN, .check = string_list},
    {.name = "name", .kind = JK_NESTR},
    {.name = "proxy", .kind = JK_ENUM, .values = proxy_kinds, .n = N(proxy_kinds)},
    {.name = "datacenter", .kind = JK_NESTR},
    {.name = "passing_only", .kind = JK_BOOL},
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
const struct jkey config_keys[] = {
    {.name = "consul", .kind = JK_SECTION, .sub = consul_keys, .n = N(consul_keys)},
    {.name = "node", .kind = JK_STR, .store = JS_STR, .off = AT(node)},
    {.name = "deregister",
     .kind = JK_ENUM,
     .values = dereg_modes,
     .n = N(dereg_modes),
     .store = JS_ENUM,
     .off = AT(deregister),
     .def = DEREGISTER_ALWAYS},
    {.name = "drain", .kind = JK_NNDUR, .store = JS_MS, .off = AT(drain_ms), .def = 5000},
    {.name = "listen",
     .kind = JK_STR,
     .store = JS_STR,
     .off = AT(listen),
     .defs = "127.0.0.1:9108"},
    {.name = "state_dir",
     .kind = JK_STR,
     .store = JS_STR,
     .off = AT(state_dir),
     .defs = "/var/lib/consul-sidecar"},
    {.name = "log_level",
     .kind = JK_ENUM,
     .values = levels,
     .n = N(levels),
     .store = JS_ENUM,
     .off = AT(log_level),
     .def = LOG_INFO},
    {.name = "log_format",
     .kind = JK_ENUM,
     .values = formats,
     .n = N(formats),
     .store = JS_ENUM,
     .off = AT(log_format),
     .def = LOG_FORMAT_TEXT},
    {.name = "service", .kind = JK_OBJ},
    {.name = "services", .kind = JK_FN, .check = service_list, .print = config_print_services},
    {.name = "upstreams", .kind = JK_FN, .check = upstream_list, .print = config_print_upstreams},
    {.name = "proxy", .kind = JK_SECTION, .sub = proxy_keys, .n = N(proxy_keys)},
    {.name = "watch", .kind = JK_SECTION, .sub = watch_keys, .n = N(watch_keys)},
};
const size_t config_n_keys = N(config_keys);

/* Checks one file's settings (not services, built later) for key names and
 * types, so that errors name the right file. */
static int check_settings(struct jread *c, const cJSON *root)
{
    return jread_section(c, root, "", config_keys, config_n_keys);
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
        if (cJSON_IsObject(existing) && cJSON_IsObject(k) &&
            strcmp(k->string, "upstream_defaults")) {
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
    for (const char *tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save))
        cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
    return cur;
}

static const char *mstr(const cJSON *o, const char *path)
{
    const cJSON *v = mget(o, path);
    return cJSON_IsString(v) ? v->valuestring : NULL;
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
        snprintf(err, errlen, "%s %s: larger than %d bytes: not a token", what, path,
                 TOKEN_FILE_MAX);
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
    memset(text, 0, len); /* a secret: not left in freed memory */
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
    for (size_t i = 0; i < cfg->n_services; i++)
        consul_service_free(&cfg->services[i]);
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

static int build_upstream(struct jread *c, const cJSON *u, const char *path,
                          struct cfg_upstream *out)
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
            return jread_fail(c, kp, "\"%.64s\": use letters, digits, '-', '_' and '.' only",
                              out->name);
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
        {o->consul_addr, &cfg->consul_addr},
        {o->datacenter, &cfg->datacenter},
        {o->node, &cfg->node},
        {o->listen, &cfg->listen},
        {o->state_dir, &cfg->state_dir},
    };
    /* The TLS files sit in the client's options, whose fields are const. */
    struct {
        const char *v;
        const char **dst;
    } tls[] = {
        {o->cacert, &cfg->tls.cacert},
        {o->capath, &cfg->tls.capath},
        {o->client_cert, &cfg->tls.client_cert},
        {o->client_key, &cfg->tls.client_key},
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
    if (o->token_file &&
        read_token_file(cfg, "token file", o->token_file, &cfg->token, err, errlen) < 0)
        return -1;
    if (o->token) {
        free(cfg->token);
        if ((cfg->token = strdup(o->token)) == NULL)
            goto oom;
    }
    if (o->log_level && log_level_parse(o->log_level, &cfg->log_level) < 0) {
        snprintf(err, errlen,
                 "%s log level: must be one of trace, debug, info, warn, error, got \"%.32s\"",
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
            snprintf(err, errlen, "CONSUL_HTTP_SSL_VERIFY: not a boolean: \"%.32s\"",
                     o->ssl_verify);
            return -1;
        }
        cfg->tls.insecure = !b;
    }
    if (o->http_ssl) {
        if (config_parse_bool(o->http_ssl, &b) < 0) {
            snprintf(err, errlen, "CONSUL_HTTP_SSL: not a boolean: \"%.32s\"", o->http_ssl);
            return -1;
        }
        cfg->http_ssl = b; /* applied once every source is in (config_load) */
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

/* Defaults, then the merged files: the settings read once checked (the
 * tables above), and those code keeps: token files and Kong's lock key. */
static int settings_from(struct config *cfg, const cJSON *merged, char *err, size_t errlen)
{
    const char *s;
    if (jread_store(merged, config_keys, config_n_keys, cfg) < 0)
        return oom(err, errlen);
    if ((s = mstr(merged, "consul.token_file")) &&
        read_token_file(cfg, "consul.token_file", s, &cfg->token, err, errlen) < 0)
        return -1;
    if (cfg->watch.quiescence_min_ms > cfg->watch.quiescence_max_ms) {
        snprintf(err, errlen, "watch.quiescence: min (%lld ms) is larger than max (%lld ms)",
                 (long long)cfg->watch.quiescence_min_ms, (long long)cfg->watch.quiescence_max_ms);
        return -1;
    }
    return 0;
}

/* What Kong's table leaves to code: its token file, its upstream defaults
 * and the lock key. */
static int kong_from(struct config *cfg, const cJSON *kong, char *err, size_t errlen)
{
    const char *s;
    if ((s = mstr(kong, "token_file")) &&
        read_token_file(cfg, "proxy.kong.token_file", s, &cfg->kong.token, err, errlen) < 0)
        return -1;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(kong, "upstream_defaults");
    cfg->kong.upstream_defaults = d ? cJSON_Duplicate(d, 1) : NULL;
    /* No lock_prefix and no consul.datacenter: the key waits for the
     * agent's datacenter (lock_key_needs_dc; the daemon asks
     * /v1/agent/self and starts the election with it). */
    char key[512];
    if ((s = mstr(kong, "lock_prefix")))
        snprintf(key, sizeof key, "%s", s);
    else {
        elect_default_key(cfg->datacenter ? cfg->datacenter : "dc1", key, sizeof key);
        cfg->kong.lock_key_needs_dc = cfg->datacenter == NULL;
    }
    cfg->kong.lock_key = strdup(key);
    if (!cfg->kong.lock_key || (d && !cfg->kong.upstream_defaults))
        return oom(err, errlen);
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
                jread_fail(c, kp,
                           "no proxy is configured: add proxy.kong, proxy.haproxy or proxy.nginx");
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
                jread_fail(c, path, "a second upstream named \"%.64s\" for %s", up->name,
                           up->proxy);
                return -1;
            }
        }
    }
    return 0;
}

int config_load(struct config *cfg, const char *const *paths, size_t n_paths,
                const struct config_overrides *env, const struct config_overrides *flags, char *err,
                size_t errlen)
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

    if (cfg->kong.enabled && kong_from(cfg, mget(merged, "proxy.kong"), err, errlen) < 0)
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
