/*
 * kong-double: the Admin API for upstreams and targets, routed through one
 * table of (resource, method, handler). A resource is a path shape; before
 * its handlers run it may parse the body and find its upstream and target
 * (each with Kong's own error when that fails); a method no route of the
 * resource takes is answered 405, as Kong's Lapis router does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/doubles/kong/kong.h"

static cJSON *check_target_body(const cJSON *in, int need_target, char *norm, size_t normlen)
{
    static const char *const fields_ok[] = {"id",       "target",     "weight",     "tags",
                                            "upstream", "created_at", "updated_at", NULL};
    cJSON *fields = cJSON_CreateObject();
    const cJSON *k;
    cJSON_ArrayForEach(k, in) {
        int known = 0;
        for (const char *const *f = fields_ok; *f; f++)
            known |= strcmp(k->string, *f) == 0;
        if (!known)
            cJSON_AddStringToObject(fields, k->string, "unknown field");
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(in, "target");
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(in, "weight");
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(in, "tags");
    if (t == NULL || cJSON_IsNull(t)) {
        if (need_target)
            cJSON_AddStringToObject(fields, "target", "required field missing");
    } else if (!cJSON_IsString(t)) {
        cJSON_AddStringToObject(fields, "target", "expected a string");
    } else if (normalize_target(t->valuestring, norm, normlen) < 0) {
        cJSON_AddStringToObject(fields, "target",
                                "Invalid target; not a valid hostname or ip address");
    }
    if (w && !cJSON_IsNull(w)) {
        if (!cJSON_IsNumber(w) || w->valuedouble != (double)(long)w->valuedouble)
            cJSON_AddStringToObject(fields, "weight", "expected an integer");
        else if (w->valuedouble < 0 || w->valuedouble > 65535)
            cJSON_AddStringToObject(fields, "weight", "value should be between 0 and 65535");
    }
    if (tags && !cJSON_IsNull(tags)) {
        const cJSON *g;
        if (!cJSON_IsArray(tags))
            cJSON_AddStringToObject(fields, "tags", "expected a set");
        else
            cJSON_ArrayForEach(g, tags)
                if (!cJSON_IsString(g) || strchr(g->valuestring, ',') ||
                    strchr(g->valuestring, '/')) {
                    cJSON_AddStringToObject(fields, "tags", "invalid tag");
                    break;
                }
    }
    if (cJSON_GetArraySize(fields) == 0) {
        cJSON_Delete(fields);
        return NULL;
    }
    return fields;
}

/* ---- requests and resources ---------------------------------------------------------- */

enum resource {
    RES_ROOT,
    RES_CONFIG,
    RES_UPSTREAMS,
    RES_UPSTREAM,
    RES_HEALTH,
    RES_TARGETS,
    RES_TARGETS_ALL,
    RES_TARGET,
    RES_TARGET_ACTION,
    RES_UPSTREAM_OTHER,
    RES_NONE
};

struct areq {
    struct MHD_Connection *c;
    const char *method;
    int *ls;
    cJSON *in;      /* the parsed body of a write; NULL otherwise */
    char ukey[300]; /* the upstream as written: name or id */
    struct upstream *u;
    char tkey[400], action[32];
};

/* /upstreams/{u}[/health | /targets[/all | /{t}[/{action}]]]: the shape,
 * with the keys copied into r. */
static enum resource upstream_path(const char *p, struct areq *r)
{
    const char *slash = strchr(p, '/');
    snprintf(r->ukey, sizeof r->ukey, "%.*s", (int)(slash ? slash - p : (long)strlen(p)), p);
    if (slash == NULL)
        return RES_UPSTREAM;
    if (!strcmp(slash, "/health"))
        return RES_HEALTH;
    if (!strcmp(slash, "/targets"))
        return RES_TARGETS;
    if (!strcmp(slash, "/targets/all"))
        return RES_TARGETS_ALL;
    if (strncmp(slash, "/targets/", 9) != 0)
        return RES_UPSTREAM_OTHER; /* 404 once the upstream is checked */
    const char *tp = slash + 9, *s2 = strchr(tp, '/');
    snprintf(r->tkey, sizeof r->tkey, "%.*s", (int)(s2 ? s2 - tp : (long)strlen(tp)), tp);
    if (s2 == NULL)
        return RES_TARGET;
    snprintf(r->action, sizeof r->action, "%s", s2 + 1);
    return RES_TARGET_ACTION;
}

static enum resource resource_of(const char *path, struct areq *r)
{
    if (!strcmp(path, "/"))
        return RES_ROOT;
    if (!strcmp(path, "/config"))
        return RES_CONFIG;
    if (!strcmp(path, "/upstreams"))
        return RES_UPSTREAMS;
    if (!strncmp(path, "/upstreams/", 11))
        return upstream_path(path + 11, r);
    return RES_NONE;
}

static int is_method(const struct areq *r, const char *m)
{
    return !strcmp(r->method, m) || (!strcmp(m, "GET") && !strcmp(r->method, "HEAD"));
}

static enum MHD_Result dbless_refusal(const struct areq *r, const char *msg)
{
    return dao_error(r->c, 405, 12, "operation unsupported", msg, NULL, r->ls);
}

static enum MHD_Result not_found(const struct areq *r)
{
    return message(r->c, 404, "Not found", r->ls);
}

/* ---- the node and /config ---------------------------------------------------------- */

static enum MHD_Result get_root(struct areq *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", K.version);
    cJSON_AddStringToObject(o, "node_id", K.node_id);
    cJSON_AddStringToObject(o, "tagline", "Welcome to kong");
    cJSON_AddStringToObject(o, "hostname", "kong-double");
    cJSON *conf = cJSON_AddObjectToObject(o, "configuration");
    cJSON_AddStringToObject(conf, "database", K.dbless ? "off" : "postgres");
    cJSON_AddStringToObject(conf, "role", K.control_plane ? "control_plane" : "traditional");
    return send_json(r->c, 200, o, r->ls);
}

static enum MHD_Result get_config(struct areq *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "config", "_format_version: \"3.0\"\n");
    return send_json(r->c, 200, o, r->ls);
}

static enum MHD_Result post_config(struct areq *r)
{
    return send_json(r->c, 201, cJSON_CreateObject(), r->ls);
}

/* ---- upstreams ---------------------------------------------------------------------- */

static struct upstream *free_upstream(void)
{
    for (int i = 0; i < MAX_UP; i++)
        if (!K.ups[i].used)
            return &K.ups[i];
    return NULL;
}

/* The upstream's entity: Kong's defaults, then the body (but its id). */
static enum MHD_Result upstream_write(struct areq *r, struct upstream *u, const char *name,
                                      unsigned status)
{
    snprintf(u->name, sizeof u->name, "%s", name);
    u->entity = upstream_defaults(u->id, u->name);
    cJSON_DeleteItemFromObjectCaseSensitive(r->in, "id");
    merge(u->entity, r->in);
    return send_json(r->c, status, cJSON_Duplicate(u->entity, 1), r->ls);
}

static enum MHD_Result get_upstreams(struct areq *r)
{
    return list_upstreams(r->c, r->ls);
}

static enum MHD_Result post_upstream(struct areq *r)
{
    char msg[600];
    cJSON *fields = check_upstream_body(r->in, 1);
    if (fields)
        return schema_violation(r->c, fields, r->ls);
    if (K.dbless)
        return dbless_refusal(r, "cannot create 'upstreams' entities when not using a database");
    const char *name = cJSON_GetObjectItemCaseSensitive(r->in, "name")->valuestring;
    if (up_find(name)) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "name", name);
        snprintf(msg, sizeof msg, "UNIQUE violation detected on '{name=\"%s\"}'", name);
        return dao_error(r->c, 409, 5, "unique constraint violation", msg, f, r->ls);
    }
    struct upstream *u = free_upstream();
    if (u == NULL)
        return message(r->c, 500, "An unexpected error occurred", r->ls);
    u->used = 1;
    uuid(u->id);
    return upstream_write(r, u, name, 201);
}

static enum MHD_Result get_upstream(struct areq *r)
{
    if (r->u == NULL)
        return not_found(r);
    return send_json(r->c, 200, cJSON_Duplicate(r->u->entity, 1), r->ls);
}

static enum MHD_Result delete_upstream(struct areq *r)
{
    if (K.dbless && r->u)
        return dbless_refusal(
            r, "cannot remove 'upstreams' entities by 'name' when not using a database");
    if (r->u) {
        delete_targets_of(r->u);
        cJSON_Delete(r->u->entity);
        memset(r->u, 0, sizeof *r->u);
    }
    return respond(r->c, 204, NULL, r->ls);
}

static enum MHD_Result patch_upstream(struct areq *r)
{
    char msg[600];
    if (r->u == NULL) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, is_uuid(r->ukey) ? "id" : "name", r->ukey);
        snprintf(msg, sizeof msg,
                 is_uuid(r->ukey) ? "could not find the entity with primary key '{id=\"%s\"}'"
                                  : "could not find the entity with '{name=\"%s\"}'",
                 r->ukey);
        return dao_error(r->c, 404, 6, "not found", msg, f, r->ls);
    }
    cJSON *fields = check_upstream_body(r->in, 0);
    if (fields)
        return schema_violation(r->c, fields, r->ls);
    if (K.dbless)
        return dbless_refusal(
            r, "cannot update 'upstreams' entities by 'name' when not using a database");
    cJSON_DeleteItemFromObjectCaseSensitive(r->in, "id");
    merge(r->u->entity, r->in);
    cJSON_ReplaceItemInObjectCaseSensitive(r->u->entity, "updated_at",
                                           cJSON_CreateNumber((double)(long)now_s()));
    return send_json(r->c, 200, cJSON_Duplicate(r->u->entity, 1), r->ls);
}

/* PUT creates or replaces, by name or by id. */
static enum MHD_Result put_upstream(struct areq *r)
{
    if (K.dbless)
        return dbless_refusal(
            r, "cannot create or update 'upstreams' entities by 'name' when not using a database");
    if (!is_uuid(r->ukey)) {
        cJSON_DeleteItemFromObjectCaseSensitive(r->in, "name");
        cJSON_AddStringToObject(r->in, "name", r->ukey);
    }
    cJSON *fields = check_upstream_body(r->in, 1);
    if (fields)
        return schema_violation(r->c, fields, r->ls);
    struct upstream *u = r->u;
    if (u == NULL) {
        if ((u = free_upstream()) == NULL)
            return message(r->c, 500, "An unexpected error occurred", r->ls);
        u->used = 1;
        if (is_uuid(r->ukey))
            snprintf(u->id, sizeof u->id, "%s", r->ukey);
        else
            uuid(u->id);
    } else {
        cJSON_Delete(u->entity);
    }
    return upstream_write(r, u, cJSON_GetObjectItemCaseSensitive(r->in, "name")->valuestring, 200);
}

static enum MHD_Result get_health(struct areq *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    for (const struct target *k = first_target(r->u); k; k = next_target(k)) {
        cJSON *t = target_json(k);
        cJSON_AddStringToObject(t, "health", "HEALTHCHECKS_OFF");
        cJSON_AddItemToArray(data, t);
    }
    cJSON_AddNullToObject(o, "next");
    cJSON_AddStringToObject(o, "node_id", K.node_id);
    return send_json(r->c, 200, o, r->ls);
}

/* ---- targets ------------------------------------------------------------------------ */

static enum MHD_Result get_targets(struct areq *r)
{
    return list_targets(r->c, r->u, r->ukey, 0, r->ls);
}

static enum MHD_Result get_targets_all(struct areq *r)
{
    return list_targets(r->c, r->u, r->ukey, 1, r->ls);
}

/* A free target slot, looked for from the last one taken: O(1) mostly. */
static struct target *free_target(void)
{
    for (int i = 0; i < MAX_T; i++) {
        struct target *t = &K.ts[(K.t_free + i) % MAX_T];
        if (!t->used) {
            K.t_free = (int)(t - K.ts + 1) % MAX_T;
            return t;
        }
    }
    return NULL;
}

static enum MHD_Result unique_target(const struct areq *r, const char *norm, int with_fields)
{
    char msg[800];
    cJSON *f = NULL;
    if (with_fields) {
        f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "target", norm);
        cJSON *uo = cJSON_AddObjectToObject(f, "upstream");
        cJSON_AddStringToObject(uo, "id", r->u->id);
    }
    snprintf(msg, sizeof msg, "UNIQUE violation detected on '{target=\"%s\",upstream={id=\"%s\"}}'",
             norm, r->u->id);
    return dao_error(r->c, 409, 5, "unique constraint violation", msg, f, r->ls);
}

static enum MHD_Result post_target(struct areq *r)
{
    char norm[300];
    cJSON *fields = check_target_body(r->in, 1, norm, sizeof norm);
    if (fields)
        return schema_violation(r->c, fields, r->ls);
    if (K.dbless)
        return dbless_refusal(r, "cannot create 'targets' entities when not using a database");
    if (target_find(r->u, norm))
        return unique_target(r, norm, 1);
    struct target *t = free_target();
    if (t == NULL)
        return message(r->c, 500, "An unexpected error occurred", r->ls);
    memset(t, 0, sizeof *t);
    t->used = 1;
    uuid(t->id);
    target_link(t, r->u);
    if (t - K.ts >= K.t_hi)
        K.t_hi = (int)(t - K.ts) + 1;
    snprintf(t->target, sizeof t->target, "%s", norm);
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(r->in, "weight");
    t->weight = cJSON_IsNumber(w) ? w->valueint : 100;
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(r->in, "tags");
    t->tags = cJSON_IsArray(tags) ? cJSON_Duplicate(tags, 1) : NULL;
    t->created = t->updated = now_s();
    t->seq = ++K.seq;
    return send_json(r->c, 201, target_json(t), r->ls);
}

static enum MHD_Result get_target(struct areq *r)
{
    struct target *t = target_find(r->u, r->tkey);
    return t ? send_json(r->c, 200, target_json(t), r->ls) : not_found(r);
}

static enum MHD_Result delete_target(struct areq *r)
{
    struct target *t = target_find(r->u, r->tkey);
    if (t == NULL)
        return not_found(r);
    if (K.dbless)
        return dbless_refusal(r, "cannot remove 'targets' entities when not using a database");
    target_drop(t);
    return respond(r->c, 204, NULL, r->ls);
}

/* PATCH and PUT update a target in place. */
static enum MHD_Result update_target(struct areq *r)
{
    char norm[300];
    struct target *t = target_find(r->u, r->tkey);
    cJSON *fields = check_target_body(r->in, 0, norm, sizeof norm);
    if (fields)
        return schema_violation(r->c, fields, r->ls);
    if (t == NULL)
        return not_found(r);
    if (K.dbless)
        return dbless_refusal(r, "cannot update 'targets' entities when not using a database");
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(r->in, "weight");
    const cJSON *tt = cJSON_GetObjectItemCaseSensitive(r->in, "target");
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(r->in, "tags");
    if (cJSON_IsNumber(w))
        t->weight = w->valueint;
    if (cJSON_IsString(tt)) {
        struct target *other = target_find(r->u, norm);
        if (other && other != t)
            return unique_target(r, norm, 0);
        snprintf(t->target, sizeof t->target, "%s", tt->valuestring);
    }
    if (tags) {
        cJSON_Delete(t->tags);
        t->tags = cJSON_IsArray(tags) ? cJSON_Duplicate(tags, 1) : NULL;
    }
    double now = now_s();
    t->updated = now > t->updated ? now : t->updated + 0.001;
    return send_json(r->c, 200, target_json(t), r->ls);
}

/* PUT .../targets/{t}/healthy|unhealthy: without a health checker, Kong
 * says so. */
static enum MHD_Result put_target_action(struct areq *r)
{
    char msg[600];
    if (target_find(r->u, r->tkey) == NULL)
        return not_found(r);
    snprintf(msg, sizeof msg, "no healthchecker found for %s", r->u->name);
    return message(r->c, 400, msg, r->ls);
}

/* ---- routing ------------------------------------------------------------------------ */

/* "GET" takes HEAD too. */
static const struct {
    enum resource res;
    const char *method;
    enum MHD_Result (*fn)(struct areq *r);
} routes[] = {
    {RES_ROOT, "GET", get_root},
    {RES_CONFIG, "GET", get_config},
    {RES_CONFIG, "POST", post_config},
    {RES_UPSTREAMS, "GET", get_upstreams},
    {RES_UPSTREAMS, "POST", post_upstream},
    {RES_UPSTREAM, "GET", get_upstream},
    {RES_UPSTREAM, "DELETE", delete_upstream},
    {RES_UPSTREAM, "PATCH", patch_upstream},
    {RES_UPSTREAM, "PUT", put_upstream},
    {RES_HEALTH, "GET", get_health},
    {RES_TARGETS, "GET", get_targets},
    {RES_TARGETS, "POST", post_target},
    {RES_TARGETS_ALL, "GET", get_targets_all},
    {RES_TARGET, "GET", get_target},
    {RES_TARGET, "DELETE", delete_target},
    {RES_TARGET, "PATCH", update_target},
    {RES_TARGET, "PUT", update_target},
    {RES_TARGET_ACTION, "PUT", put_target_action},
};

/* What a resource needs before its method is looked at: 0 to go on, else
 * the answer was queued (*ret). */
static int prepare(enum resource res, struct areq *r, const char *body, size_t len,
                   enum MHD_Result *ret)
{
    char msg[600];
    int is_write = is_method(r, "POST") || is_method(r, "PUT") || is_method(r, "PATCH");
    if (res == RES_ROOT)
        return 0;
    if (res == RES_CONFIG) {
        if (K.dbless)
            return 0;
        *ret = message(
            r->c, 400,
            "this endpoint is only available when Kong is configured to not use a database", r->ls);
        return -1;
    }
    if (is_write && parse_body(r->c, body, len, &r->in, ret, r->ls) < 0)
        return -1;
    if (res == RES_NONE || res == RES_UPSTREAMS)
        return res == RES_NONE ? (*ret = not_found(r), -1) : 0;
    if (!is_uuid(r->ukey) && name_problem(r->ukey, msg, sizeof msg)) {
        *ret = dao_error(r->c, 400, 10, "invalid unique name", msg, NULL, r->ls);
        return -1;
    }
    r->u = up_find(r->ukey);
    if (res == RES_UPSTREAM)
        return 0;
    if (r->u == NULL || res == RES_UPSTREAM_OTHER ||
        (res == RES_TARGET_ACTION &&
         (K.control_plane || (strcmp(r->action, "healthy") && strcmp(r->action, "unhealthy"))))) {
        *ret = not_found(r);
        return -1;
    }
    return 0;
}

enum MHD_Result admin(struct MHD_Connection *c, const char *url, const char *method,
                      const char *body, size_t len, int *ls)
{
    char path[1024];
    struct areq r = {.c = c, .method = method, .ls = ls};
    enum MHD_Result ret = MHD_NO;
    snprintf(path, sizeof path, "%s", url);
    size_t pl = strlen(path);
    while (pl > 1 && path[pl - 1] == '/')
        path[--pl] = '\0'; /* a trailing slash is tolerated */
    if (K.rbac[0]) {
        const char *tok = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Kong-Admin-Token");
        if (tok == NULL || strcmp(tok, K.rbac) != 0)
            return message(c, 401, "Invalid credentials. Token or User credentials required", ls);
    }
    /* Targets are reached through their upstream only. */
    if (!strncmp(path, "/targets", 8) && (path[8] == '\0' || path[8] == '/'))
        return message(c, 404, "Not found", ls);
    enum resource res = resource_of(path, &r);
    if (prepare(res, &r, body, len, &ret) < 0) {
        cJSON_Delete(r.in);
        return ret;
    }
    size_t i = 0, n = sizeof routes / sizeof routes[0];
    while (i < n && (routes[i].res != res || !is_method(&r, routes[i].method)))
        i++;
    ret = i < n ? routes[i].fn(&r) : message(c, 405, "Method not allowed", ls);
    cJSON_Delete(r.in);
    return ret;
}
