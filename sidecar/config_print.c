/* The effective configuration, secrets redacted (-validate); see config.h. */
#include "sidecar/config.h"
#include "sidecar/config_int.h"

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
        cJSON_ArrayForEach(v, h)
            if (cJSON_IsString(v))
                cJSON_SetValuestring(v, "<redacted>");
    }
    cJSON *u = cJSON_GetObjectItemCaseSensitive(ck, "HTTP");
    char safe[2048];
    if (cJSON_IsString(u)) {
        const char *r = redact_userinfo(u->valuestring, safe, sizeof safe);
        if (r != u->valuestring)
            cJSON_SetValuestring(u, r);
    }
}

/* Service definitions as they will be registered, secrets redacted, and
 * the probes that feed their TTL checks. */
void config_print_services(cJSON *o, const void *base)
{
    const struct config *cfg = base;
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

void config_print_upstreams(cJSON *o, const void *base)
{
    const struct config *cfg = base;
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

void config_print_lock_key(cJSON *o, const void *base)
{
    const struct config *cfg = base;
    add_str(o, "lock_key",
            cfg->kong.lock_key_needs_dc ? "consul-sidecar/<the agent's datacenter>/kong-writer"
                                        : cfg->kong.lock_key);
}

void config_print_upstream_defaults(cJSON *o, const void *base)
{
    const struct config *cfg = base;
    if (cfg->kong.upstream_defaults)
        cJSON_AddItemToObject(o, "upstream_defaults",
                              cJSON_Duplicate(cfg->kong.upstream_defaults, 1));
}

/* Every setting by the table config.c loads them with (config_int.h). */
char *config_effective_json(const struct config *cfg)
{
    cJSON *o = cJSON_CreateObject();
    jread_print(o, config_keys, config_n_keys, cfg);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}
