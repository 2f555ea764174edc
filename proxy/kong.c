/* Kong Admin API driver; see kong.h. Requests run one at a time. */
#include "proxy/kong.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/http.h"

struct kong {
    struct proxy base;
    char *admin_url, *token_header, *user_agent, *tag;
    cJSON *defaults;
    long timeout_ms;
    int mode_checked;        /* GET / answered */
    char fatal[400];         /* DB-less / data plane / credentials: no writes possible */
    struct http_call *call;
    struct task *task;       /* running */
    struct task *queue_head, *queue_tail;
};

/* One read or apply in progress: a small state machine over requests. */
struct task {
    struct kong *k;
    int is_read;
    char upstream[256];
    char upstream_esc[800];
    /* read */
    proxy_read_fn read_fn;
    struct proxy_target_set found;
    /* apply */
    proxy_apply_fn apply_fn;
    struct proxy_op *ops;
    struct proxy_op_result *results;
    size_t n, i;
    int add_failed;            /* an ADD failed: removals are kept */
    int step;
    void *arg;
    int phase;               /* 0 mode, 1 upstream, 2 targets/ops */
    struct task *next;       /* waiting behind the running task */
};

static void task_step(struct task *t);

/* A target object carries our ownership tag. */
static int target_is_ours(const char *body, const char *tag)
{
    cJSON *o = cJSON_Parse(body);
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(o, "tags"), *x;
    int ours = 0;
    cJSON_ArrayForEach(x, tags) if (cJSON_IsString(x) && strcmp(x->valuestring, tag) == 0) ours = 1;
    cJSON_Delete(o);
    return ours;
}

#define KONG_STOPPED "writes stopped: this sidecar is no longer the elected writer"

/* Tasks run one at a time: starts the next queued one, if any. */
static void start_next(struct kong *k)
{
    if (k->task || k->queue_head == NULL)
        return;
    struct task *t = k->queue_head;
    k->queue_head = t->next;
    if (k->queue_head == NULL)
        k->queue_tail = NULL;
    t->next = NULL;
    k->task = t;
    task_step(t);
}

static void submit(struct kong *k, struct task *t)
{
    if (k->queue_tail)
        k->queue_tail->next = t;
    else
        k->queue_head = t;
    k->queue_tail = t;
    start_next(k);
}

/* ---- pure helpers ---------------------------------------------------------- */

const char *kong_normalize_target(const char *host, int port, char *out, size_t len)
{
    unsigned char b[16];
    if (inet_pton(AF_INET6, host, b) == 1) {
        snprintf(out, len,
                 "[%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x]:%d",
                 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                 b[13], b[14], b[15], port);
    } else if (inet_pton(AF_INET, host, b) == 1) {
        snprintf(out, len, "%u.%u.%u.%u:%d", b[0], b[1], b[2], b[3], port);
    } else {
        snprintf(out, len, "%s:%d", host, port);
    }
    return out;
}

const char *kong_describe_error(long status, const char *body, char *out, size_t len)
{
    cJSON *o = body ? cJSON_Parse(body) : NULL;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "message");
    if (cJSON_IsString(m))
        snprintf(out, len, "%ld %.300s", status, m->valuestring);
    else
        snprintf(out, len, "%ld %.120s", status, body ? body : "");
    cJSON_Delete(o);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    return out;
}

static int parse_target(const char *t, char *host, size_t hostlen, int *port)
{
    const char *colon;
    if (t[0] == '[') {
        const char *end = strchr(t, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        snprintf(host, hostlen, "%.*s", (int)(end - t - 1), t + 1);
        colon = end + 1;
    } else {
        colon = strrchr(t, ':');
        if (colon == NULL)
            return -1;
        snprintf(host, hostlen, "%.*s", (int)(colon - t), t);
    }
    char *e;
    long p = strtol(colon + 1, &e, 10);
    if (*e || p < 1 || p > 65535 || host[0] == '\0')
        return -1;
    *port = (int)p;
    return 0;
}

int kong_parse_targets_page(const char *body, size_t len, const char *tag,
                            struct proxy_target_set *out, char *next, size_t nextlen, char *err,
                            size_t errlen)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    const cJSON *nx = cJSON_GetObjectItemCaseSensitive(root, "next");
    if (!cJSON_IsArray(data) || (nx && !cJSON_IsNull(nx) && !cJSON_IsString(nx))) {
        snprintf(err, errlen, "targets list: expected {\"data\": [...], \"next\": ...}");
        cJSON_Delete(root);
        return -1;
    }
    size_t start = out->n;
    const cJSON *t;
    cJSON_ArrayForEach(t, data) {
        const cJSON *target = cJSON_GetObjectItemCaseSensitive(t, "target");
        const cJSON *weight = cJSON_GetObjectItemCaseSensitive(t, "weight");
        const cJSON *tags = cJSON_GetObjectItemCaseSensitive(t, "tags");
        char host[300];
        int port;
        if (!cJSON_IsString(target) || !cJSON_IsNumber(weight) || weight->valuedouble < 0 ||
            weight->valuedouble > 65535 || (tags && !cJSON_IsNull(tags) && !cJSON_IsArray(tags)) ||
            parse_target(target->valuestring, host, sizeof host, &port) < 0) {
            snprintf(err, errlen, "targets list: an entry without a valid target and weight");
            goto fail;
        }
        int ours = 0;
        const cJSON *g;
        cJSON_ArrayForEach(g, tags) if (cJSON_IsString(g) && strcmp(g->valuestring, tag) == 0)
            ours = 1;
        if (!ours)
            continue;
        struct proxy_target *n = realloc(out->items, (out->n + 1) * sizeof *n);
        if (n == NULL)
            goto fail;
        out->items = n;
        out->items[out->n].host = strdup(host);
        out->items[out->n].port = port;
        out->items[out->n].weight = weight->valueint;
        if (out->items[out->n].host == NULL)
            goto fail;
        out->n++;
    }
    snprintf(next, nextlen, "%s", cJSON_IsString(nx) ? nx->valuestring : "");
    cJSON_Delete(root);
    return 0;
fail:
    for (size_t i = start; i < out->n; i++)
        free(out->items[i].host);
    out->n = start;
    cJSON_Delete(root);
    return -1;
}

/* ---- requests --------------------------------------------------------------- */

static void on_response(struct http_response *r, void *arg);

static int request(struct kong *k, const char *method, const char *path, const char *body,
                   char *err, size_t errlen)
{
    char url[2048];
    const char *hdrs[4];
    int nh = 0;
    if (body)
        hdrs[nh++] = "Content-Type: application/json";
    if (k->token_header)
        hdrs[nh++] = k->token_header;
    hdrs[nh] = NULL;
    snprintf(url, sizeof url, "%s%s", k->admin_url, path);
    struct http_request rq = {
        .method = method,
        .url = url,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .headers = hdrs,
        .user_agent = k->user_agent,
        .timeout_ms = k->timeout_ms,
        .max_body = 16 * 1024 * 1024,
    };
    k->call = http_start(k->base.loop, &rq, on_response, k->task, err, errlen);
    k->base.writing = k->call && strcmp(method, "GET") != 0;
    return k->call ? 0 : -1;
}

static void task_free(struct task *t)
{
    proxy_target_set_free(&t->found);
    for (size_t i = 0; t->ops && i < t->n; i++)
        free(t->ops[i].target.host);
    free(t->ops);
    free(t->results);
    free(t);
}

static void read_done(struct task *t, const char *err)
{
    struct kong *k = t->k;
    k->task = NULL;
    if (err)
        t->read_fn(NULL, err, t->arg);
    else
        t->read_fn(&t->found, NULL, t->arg);
    task_free(t);
    start_next(k);
}

static void apply_done(struct task *t, const char *fatal)
{
    struct kong *k = t->k;
    int all = fatal == NULL;
    char first[400] = "";
    for (size_t i = 0; i < t->n; i++) {
        if (fatal && !t->results[i].error[0]) {
            t->results[i].ok = 0;
            snprintf(t->results[i].error, sizeof t->results[i].error, "%s", fatal);
        }
        if (!t->results[i].ok && all) {
            all = 0;
            char key[300];
            proxy_target_key(&t->ops[i].target, key, sizeof key);
            snprintf(first, sizeof first, "%.80s: %.250s", key, t->results[i].error);
        }
    }
    k->task = NULL;
    t->apply_fn(all, t->results, t->n, all ? NULL : (fatal ? fatal : first), t->arg);
    task_free(t);
    start_next(k);
}

static void fail_task(struct task *t, const char *msg)
{
    if (t->is_read)
        read_done(t, msg);
    else
        apply_done(t, msg);
}

static void op_result(struct task *t, int ok, const char *err)
{
    t->results[t->i].ok = ok;
    if (!ok)
        snprintf(t->results[t->i].error, sizeof t->results[t->i].error, "%s", err);
    if (!ok && t->ops[t->i].kind == PROXY_OP_ADD)
        t->add_failed = 1;
    t->i++;
    t->step = 0;
    task_step(t);
}

static void on_response(struct http_response *r, void *arg)
{
    struct task *t = arg;
    struct kong *k = t->k;
    char msg[500], desc[400];
    k->call = NULL;
    k->base.writing = 0;
    if (r->err != HTTP_OK) {
        snprintf(msg, sizeof msg, "Kong Admin API at %s: %s", k->admin_url, r->error);
        fail_task(t, msg);
        return;
    }
    const char *body = r->body.data ? r->body.data : "";
    if (r->status == 401 || r->status == 403) {
        kong_describe_error(r->status, body, desc, sizeof desc);
        snprintf(msg, sizeof msg, "Kong Admin API rejected the sidecar's credentials (%s): set "
                 "proxy.kong.token_file to a token allowed to manage upstreams", desc);
        fail_task(t, msg);
        return;
    }
    if (t->phase == 0) {
        /* GET /: DB-less and data planes cannot take target writes. */
        cJSON *o = cJSON_ParseWithLength(body, r->body.len);
        const cJSON *conf = cJSON_GetObjectItemCaseSensitive(o, "configuration");
        const cJSON *db = cJSON_GetObjectItemCaseSensitive(conf, "database");
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(conf, "role");
        if (r->status != 200 || !cJSON_IsObject(o)) {
            cJSON_Delete(o);
            kong_describe_error(r->status, body, desc, sizeof desc);
            snprintf(msg, sizeof msg, "GET %s/: %s (is this Kong's Admin API?)", k->admin_url, desc);
            fail_task(t, msg);
            return;
        }
        if (cJSON_IsString(db) && strcmp(db->valuestring, "off") == 0)
            snprintf(k->fatal, sizeof k->fatal, "Kong at %s runs DB-less (database=off): target "
                     "writes are impossible; point the sidecar at a Kong node with a database or "
                     "at the control plane", k->admin_url);
        else if (cJSON_IsString(role) && strcmp(role->valuestring, "data_plane") == 0)
            snprintf(k->fatal, sizeof k->fatal, "Kong at %s is a data plane: its Admin API is "
                     "read-only; point the sidecar at the control plane", k->admin_url);
        cJSON_Delete(o);
        k->mode_checked = 1;
        if (k->fatal[0]) {
            fail_task(t, k->fatal);
            return;
        }
        t->phase = 1;
        task_step(t);
        return;
    }
    if (t->phase == 1) {
        /* The upstream: read it (both), create it if missing (apply). */
        if (t->step == 0) {
            if (r->status == 200) {
                t->phase = 2;
                t->step = 0;
                task_step(t);
                return;
            }
            if (r->status == 404) {
                if (t->is_read) {
                    read_done(t, NULL);  /* no upstream: nothing of ours */
                    return;
                }
                t->step = 1;            /* create */
                task_step(t);
                return;
            }
        } else if (r->status == 201 || r->status == 200 || r->status == 409) {
            t->phase = 2;               /* 409: someone else created it */
            t->step = 0;
            task_step(t);
            return;
        }
        kong_describe_error(r->status, body, desc, sizeof desc);
        snprintf(msg, sizeof msg, "upstream '%s': %s", t->upstream, desc);
        fail_task(t, msg);
        return;
    }
    if (t->is_read) {
        char next[1024], e[300];
        if (r->status != 200) {
            kong_describe_error(r->status, body, desc, sizeof desc);
            snprintf(msg, sizeof msg, "GET targets of '%s': %s", t->upstream, desc);
            read_done(t, msg);
            return;
        }
        if (kong_parse_targets_page(body, r->body.len, k->tag, &t->found, next, sizeof next, e,
                                    sizeof e) < 0) {
            snprintf(msg, sizeof msg, "GET targets of '%s': %s", t->upstream, e);
            read_done(t, msg);
            return;
        }
        if (next[0] == '\0') {
            read_done(t, NULL);
            return;
        }
        char path[1200], err[256];
        snprintf(path, sizeof path, "%s%csize=1000", next, strchr(next, '?') ? '&' : '?');
        if (next[0] != '/' || request(k, "GET", path, NULL, err, sizeof err) < 0)
            read_done(t, next[0] != '/' ? "targets list: unexpected next link" : err);
        return;
    }
    /* Applying one op. */
    const struct proxy_op *op = &t->ops[t->i];
    kong_describe_error(r->status, body, desc, sizeof desc);
    switch (op->kind) {
    case PROXY_OP_ADD:
        if (t->step == 0) {
            if (r->status == 201 || r->status == 200) { /* 200: Kong 2.2-2.8 upsert */
                op_result(t, 1, NULL);
            } else if (r->status == 409) {
                t->step = 3;           /* exists: ours (tagged)? then its weight */
                task_step(t);
            } else {
                op_result(t, 0, desc);
            }
        } else if (t->step == 3) {
            if (r->status == 200 && target_is_ours(body, k->tag)) {
                t->step = 1;
                task_step(t);
            } else if (r->status == 404) {
                /* The conflicting target is gone already: retried after a
                 * fresh read of the proxy, as any failed change is. */
                op_result(t, 0, "Kong answered 409 (target exists), then had no such target");
            } else if (r->status == 200) {
                /* A target someone made by hand (no ownership tag): never
                 * touched, so it stays theirs. */
                op_result(t, 0, "a target with this address exists in Kong but was not made by "
                                "consul-sidecar (no ownership tag): left alone");
            } else {
                op_result(t, 0, desc);
            }
        } else {
            op_result(t, r->status == 200, desc);
        }
        return;
    case PROXY_OP_SET_WEIGHT:
        if (t->step == 0 && r->status == 404) {
            t->step = 1;               /* vanished meanwhile: create it */
            task_step(t);
            return;
        }
        op_result(t, r->status == 200 || r->status == 201, desc);
        return;
    case PROXY_OP_REMOVE:
        op_result(t, r->status == 204 || r->status == 200 || r->status == 404, desc);
        return;
    }
}

static void task_step(struct task *t)
{
    struct kong *k = t->k;
    char path[1200], err[256];
    if (k->fatal[0]) {
        fail_task(t, k->fatal);
        return;
    }
    if (!k->mode_checked) {
        t->phase = 0;
        if (request(k, "GET", "/", NULL, err, sizeof err) < 0)
            fail_task(t, err);
        return;
    }
    if (t->phase == 0)
        t->phase = 1;
    if (t->phase == 1) {
        if (t->step == 0) {
            snprintf(path, sizeof path, "/upstreams/%s", t->upstream_esc);
            if (request(k, "GET", path, NULL, err, sizeof err) < 0)
                fail_task(t, err);
            return;
        }
        if (k->base.writes_stopped) {
            fail_task(t, KONG_STOPPED);
            return;
        }
        cJSON *o = k->defaults ? cJSON_Duplicate(k->defaults, 1) : cJSON_CreateObject();
        cJSON_DeleteItemFromObjectCaseSensitive(o, "name");
        cJSON_AddStringToObject(o, "name", t->upstream);
        if (!cJSON_GetObjectItemCaseSensitive(o, "tags")) {
            cJSON *tags = cJSON_AddArrayToObject(o, "tags");
            cJSON_AddItemToArray(tags, cJSON_CreateString(k->tag));
        }
        char *body = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        int rc = body ? request(k, "POST", "/upstreams", body, err, sizeof err) : -1;
        free(body);
        if (rc < 0)
            fail_task(t, body ? err : "out of memory");
        return;
    }
    if (t->is_read) {
        snprintf(path, sizeof path, "/upstreams/%s/targets?size=1000", t->upstream_esc);
        if (request(k, "GET", path, NULL, err, sizeof err) < 0)
            read_done(t, err);
        return;
    }
    /* A replacement failed to go in: removing now could empty the upstream;
     * the old targets stay until the adds work. */
    while (t->i < t->n && t->ops[t->i].kind == PROXY_OP_REMOVE && t->add_failed) {
        snprintf(t->results[t->i].error, sizeof t->results[t->i].error,
                 "kept: an add in the same change failed");
        t->i++;
    }
    if (t->i == t->n) {
        apply_done(t, NULL);
        return;
    }
    if (k->base.writes_stopped) {
        apply_done(t, KONG_STOPPED);   /* the ops not yet sent stay failed */
        return;
    }
    const struct proxy_op *op = &t->ops[t->i];
    char target[300], body[512];
    kong_normalize_target(op->target.host, op->target.port, target, sizeof target);
    char *esc = http_escape(target);
    if (esc == NULL) {
        op_result(t, 0, "out of memory");
        return;
    }
    int post = (op->kind == PROXY_OP_ADD && t->step == 0) ||
               (op->kind == PROXY_OP_SET_WEIGHT && t->step == 1);
    int rc;
    if (op->kind == PROXY_OP_ADD && t->step == 3) {
        snprintf(path, sizeof path, "/upstreams/%s/targets/%s", t->upstream_esc, esc);
        rc = request(k, "GET", path, NULL, err, sizeof err);
    } else if (op->kind == PROXY_OP_REMOVE) {
        snprintf(path, sizeof path, "/upstreams/%s/targets/%s", t->upstream_esc, esc);
        rc = request(k, "DELETE", path, NULL, err, sizeof err);
    } else if (post) {
        snprintf(path, sizeof path, "/upstreams/%s/targets", t->upstream_esc);
        snprintf(body, sizeof body, "{\"target\":\"%s\",\"weight\":%d,\"tags\":[\"%s\"]}", target,
                 op->target.weight, k->tag);
        rc = request(k, "POST", path, body, err, sizeof err);
    } else {
        snprintf(path, sizeof path, "/upstreams/%s/targets/%s", t->upstream_esc, esc);
        snprintf(body, sizeof body, "{\"weight\":%d}", op->target.weight);
        rc = request(k, "PATCH", path, body, err, sizeof err);
    }
    free(esc);
    if (rc < 0)
        op_result(t, 0, err);
}

static struct task *task_new(struct kong *k, const char *upstream, void *arg)
{
    struct task *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->k = k;
    t->arg = arg;
    snprintf(t->upstream, sizeof t->upstream, "%s", upstream);
    char *esc = http_escape(upstream);
    if (esc == NULL) {
        free(t);
        return NULL;
    }
    snprintf(t->upstream_esc, sizeof t->upstream_esc, "%s", esc);
    free(esc);
    return t;
}

static int kong_read(struct proxy *p, const char *upstream, proxy_read_fn fn, void *arg,
                     char *err, size_t errlen)
{
    struct kong *k = (struct kong *)p;
    struct task *t = task_new(k, upstream, arg);
    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    t->is_read = 1;
    t->read_fn = fn;
    submit(k, t);
    return 0;
}

static int kong_apply(struct proxy *p, const char *upstream, const struct proxy_op *ops,
                      size_t n_ops, const struct proxy_target_set *desired, proxy_apply_fn fn,
                      void *arg, char *err, size_t errlen)
{
    struct kong *k = (struct kong *)p;
    (void)desired;
    struct task *t = task_new(k, upstream, arg);
    if (t == NULL)
        goto oom;
    t->apply_fn = fn;
    t->n = n_ops;
    t->ops = calloc(n_ops ? n_ops : 1, sizeof *t->ops);
    t->results = calloc(n_ops ? n_ops : 1, sizeof *t->results);
    if (!t->ops || !t->results)
        goto oom;
    for (size_t i = 0; i < n_ops; i++) {
        t->ops[i] = ops[i];
        if ((t->ops[i].target.host = strdup(ops[i].target.host)) == NULL)
            goto oom;
    }
    submit(k, t);
    return 0;
oom:
    if (t)
        task_free(t);
    snprintf(err, errlen, "out of memory");
    return -1;
}

static void kong_free(struct proxy *p)
{
    struct kong *k = (struct kong *)p;
    if (k == NULL)
        return;
    http_cancel(k->call);
    if (k->task)
        task_free(k->task);
    while (k->queue_head) {
        struct task *t = k->queue_head;
        k->queue_head = t->next;
        task_free(t);
    }
    free(k->admin_url);
    free(k->token_header);
    free(k->user_agent);
    free(k->tag);
    cJSON_Delete(k->defaults);
    free(k);
}

static const struct proxy_ops kong_ops = {"kong", kong_read, kong_apply, kong_free, 65535};

struct proxy *kong_new(struct loop *l, const struct kong_opts *o, char *err, size_t errlen)
{
    struct kong *k = calloc(1, sizeof *k);
    if (k == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    k->base.ops = &kong_ops;
    k->base.loop = l;
    const char *url = o->admin_url ? o->admin_url : "http://127.0.0.1:8001";
    size_t ul = strlen(url);
    while (ul > 0 && url[ul - 1] == '/')
        ul--;
    k->admin_url = strndup(url, ul);
    k->user_agent = strdup(o->user_agent ? o->user_agent : "consul-sidecar");
    k->tag = strdup(o->tag ? o->tag : KONG_DEFAULT_TAG);
    k->defaults = o->upstream_defaults ? cJSON_Duplicate(o->upstream_defaults, 1) : NULL;
    k->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
    if (o->token && *o->token) {
        size_t n = strlen(o->token) + 32;
        if ((k->token_header = malloc(n)) != NULL)
            snprintf(k->token_header, n, "Kong-Admin-Token: %s", o->token);
    }
    if (!k->admin_url || !k->user_agent || !k->tag || (o->upstream_defaults && !k->defaults) ||
        (o->token && *o->token && !k->token_header)) {
        kong_free(&k->base);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    return &k->base;
}
