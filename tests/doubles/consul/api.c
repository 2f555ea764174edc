/*
 * The Consul HTTP API on an agent's port: the route table and what every
 * route shares. The answers live by API family: api_agent.c (the agent's
 * services, checks, maintenance, self and members), api_health.c (catalog,
 * health and status reads), api_kv.c (sessions and KV); api_blocking.c parks
 * blocking queries. Together they reproduce the behaviours listed in the
 * Consul API spec this project follows (routing, error texts, index and
 * blocking semantics, registration rules, TTL checks, maintenance, views,
 * sessions and KV).
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/dur.h"
#include "tests/doubles/consul/api_int.h"

/* ---- small helpers --------------------------------------------------------- */

const char *arg(struct MHD_Connection *c, const char *k)
{
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, k);
}

/* Presence of a query flag, with or without a value. */
int has_arg(struct MHD_Connection *c, const char *k)
{
    const char *v = NULL;
    size_t vl = 0;
    return MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, k, strlen(k), &v, &vl) ==
           MHD_YES;
}

enum MHD_Result json_reply(struct MHD_Connection *c, unsigned status, cJSON *o,
                           const char *const *headers)
{
    char *s = has_arg(c, "pretty") ? json_pretty(o) : json_out(o);
    cJSON_Delete(o);
    if (s == NULL)
        return reply_text(c, 500, "out of memory");
    enum MHD_Result r = reply(c, status, "application/json", s, strlen(s), headers);
    free(s);
    return r;
}

/* ?filter over an answer (checked for syntax before the query ran). */
void apply_filter(struct MHD_Connection *c, cJSON *body)
{
    const char *expr = arg(c, "filter");
    char err[300];
    if (expr == NULL || *expr == '\0')
        return;
    struct dfilter *f = dfilter_new(expr, err, sizeof err);
    dfilter_apply(f, body);
    dfilter_free(f);
}

enum MHD_Result empty_ok(struct MHD_Connection *c)
{
    return reply(c, 200, NULL, "", 0, NULL);
}

int parse_bool(const char *s, int *out)
{
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (int i = 0; s && i < 6; i++) {
        if (!strcmp(s, t[i])) {
            *out = 1;
            return 0;
        }
        if (!strcmp(s, f[i])) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

int json_dur(const cJSON *v, int64_t *ms, char *err, size_t len)
{
    if (cJSON_IsNumber(v)) {
        *ms = (int64_t)(v->valuedouble / 1e6);
        return 0;
    }
    if (!cJSON_IsString(v)) {
        snprintf(err, len, "json: cannot unmarshal %s into Go value of type time.Duration",
                 cJSON_IsBool(v)    ? "bool"
                 : cJSON_IsArray(v) ? "array"
                                    : "object");
        return -1;
    }
    const char *s = v->valuestring;
    if (dur_parse_ms(s, ms) == 0)
        return 0;
    int digits_only = *s != '\0';
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p) && *p != '.')
            digits_only = 0;
    if (digits_only)
        snprintf(err, len, "time: missing unit in duration \"%s\"", s);
    else
        snprintf(err, len, "time: invalid duration \"%s\"", s);
    return -1;
}

const char *canon(const char *key, const char *const *names)
{
    for (const char *const *n = names; *n; n++)
        if (strcasecmp(key, *n) == 0)
            return *n;
    return NULL;
}

/* Case-insensitive lookup among an object's keys (last wins, as in Go). */
const cJSON *iget(const cJSON *o, const char *name)
{
    const cJSON *found = NULL, *k;
    cJSON_ArrayForEach(k, o)
        if (strcasecmp(k->string, name) == 0)
            found = k;
    return found;
}

const cJSON *iget2(const cJSON *o, const char *a, const char *b)
{
    const cJSON *x = iget(o, a);
    return x ? x : iget(o, b);
}

uint64_t max64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* ---- routing ----------------------------------------------------------------------- */

/* The longest matching pattern wins, as in Go's ServeMux; a prefix pattern
 * ends in '/' and hands the rest of the URL to its handler. filterable:
 * the endpoint takes ?filter, whose syntax is checked before it runs. */
struct route {
    const char *pattern;
    int prefix;
    const char *methods; /* "GET", "PUT", "GET,PUT,DELETE" */
    int filterable;
    handler_fn fn;
};

static const struct route routes[] = {
    {"/v1/agent/self", 0, "GET", 0, h_agent_self},
    {"/v1/agent/services", 0, "GET", 1, h_agent_services},
    {"/v1/agent/checks", 0, "GET", 1, h_agent_checks},
    {"/v1/agent/members", 0, "GET", 0, h_agent_members},
    {"/v1/agent/service/", 1, "GET", 0, h_agent_service},
    {"/v1/agent/service/register", 0, "PUT", 0, h_service_register},
    {"/v1/agent/service/deregister/", 1, "PUT", 0, h_service_deregister},
    {"/v1/agent/service/maintenance/", 1, "PUT", 0, h_service_maintenance},
    {"/v1/agent/check/register", 0, "PUT", 0, h_check_register},
    {"/v1/agent/check/deregister/", 1, "PUT", 0, h_check_deregister},
    {"/v1/agent/check/pass/", 1, "PUT", 0, h_check_pass},
    {"/v1/agent/check/warn/", 1, "PUT", 0, h_check_warn},
    {"/v1/agent/check/fail/", 1, "PUT", 0, h_check_fail},
    {"/v1/agent/check/update/", 1, "PUT", 0, h_check_update},
    {"/v1/agent/maintenance", 0, "PUT", 0, h_node_maintenance},
    {"/v1/catalog/services", 0, "GET", 0, h_catalog_services},
    {"/v1/catalog/nodes", 0, "GET", 1, h_catalog_nodes},
    {"/v1/catalog/service/", 1, "GET", 1, h_catalog_service},
    {"/v1/catalog/node/", 1, "GET", 1, h_catalog_node},
    {"/v1/health/service/", 1, "GET", 1, h_health_service},
    {"/v1/health/checks/", 1, "GET", 1, h_health_checks},
    {"/v1/health/state/", 1, "GET", 1, h_health_state},
    {"/v1/health/node/", 1, "GET", 1, h_health_node},
    {"/v1/status/leader", 0, "GET", 0, h_status_leader},
    {"/v1/status/peers", 0, "GET", 0, h_status_peers},
    {"/v1/session/create", 0, "PUT", 0, h_session_create},
    {"/v1/session/renew/", 1, "PUT", 0, h_session_renew},
    {"/v1/session/destroy/", 1, "PUT", 0, h_session_destroy},
    {"/v1/session/info/", 1, "GET", 0, h_session_info},
    {"/v1/session/node/", 1, "GET", 0, h_session_node},
    {"/v1/session/list", 0, "GET", 0, h_session_list},
    {"/v1/kv/", 1, "GET,PUT,DELETE", 0, h_kv},
};

static const struct route *route_for(const char *url)
{
    const struct route *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        size_t l = strlen(routes[i].pattern);
        int match = routes[i].prefix ? strncmp(url, routes[i].pattern, l) == 0
                                     : strcmp(url, routes[i].pattern) == 0;
        if (match && l > best_len) {
            best = &routes[i];
            best_len = l;
        }
    }
    return best;
}

static int method_allowed(const struct route *r, const char *method)
{
    char list[64];
    snprintf(list, sizeof list, "%s", r->methods);
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (strcmp(t, method) == 0)
            return 1;
    return 0;
}

/* OPTIONS, or a method the route does not take: Go's ServeMux answers. */
static enum MHD_Result method_reply(struct MHD_Connection *c, const struct route *r,
                                    const char *method)
{
    char allow[80], err[120];
    snprintf(allow, sizeof allow, "OPTIONS,%s", r->methods);
    const char *h[] = {"Allow", allow, NULL};
    if (strcmp(method, "OPTIONS") == 0)
        return reply(c, 200, NULL, "", 0, h);
    snprintf(err, sizeof err, "method %s not allowed", method);
    return reply(c, 405, "text/plain; charset=utf-8", err, strlen(err), h);
}

/* A ?filter that does not parse: 500 with go-bexpr's text, before the
 * endpoint runs. 0 when there is none or it parses. */
static int bad_filter(struct MHD_Connection *c, enum MHD_Result *ret)
{
    const char *expr = arg(c, "filter");
    char ferr[300], err[400];
    if (expr == NULL || *expr == '\0')
        return 0;
    struct dfilter *f = dfilter_new(expr, ferr, sizeof ferr);
    if (f) {
        dfilter_free(f);
        return 0;
    }
    snprintf(err, sizeof err, "Failed to create boolean expression evaluator: %s", ferr);
    *ret = reply_text(c, 500, err);
    return 1;
}

enum MHD_Result api_handle(struct agent *a, struct MHD_Connection *c, const char *url,
                           const char *method, const char *body, size_t body_len)
{
    enum MHD_Result ret;
    if (strncmp(url, "/v1/", 4) != 0)
        return reply_text(c, 404, "404 page not found\n");
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p < 0x20)
            return reply(c, 400, NULL, "", 0, NULL);
    const struct route *rt = route_for(url);
    if (rt == NULL)
        return reply_text(c, 404, "Invalid URL path: not a recognized HTTP API endpoint\n");
    if (strcmp(method, "OPTIONS") == 0 || !method_allowed(rt, method))
        return method_reply(c, rt, method);
    if (rt->filterable && bad_filter(c, &ret))
        return ret;
    const struct req r = {a, c, method, url + strlen(rt->pattern), body, body_len};
    return rt->fn(&r);
}
