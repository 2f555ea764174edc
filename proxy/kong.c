/* Kong Admin API driver; see kong.h. Up to max_in_flight requests at once. */
#include "proxy/kong.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/http.h"
#include "lib/queue.h"
#include "lib/strmap.h"
#include "lib/unconst.h"

#define KONG_STOPPED "writes stopped: this sidecar is no longer the elected writer"
#define KONG_TASK_REQ SIZE_MAX /* a request of the task itself, not of an op */

/* Where a task is: the mode check (GET /, once per driver), its upstream
 * (read, created when missing), then its targets (pages read, or ops sent). */
enum task_phase { PHASE_MODE, PHASE_UPSTREAM, PHASE_TARGETS };

/* The upstream's exchange, in PHASE_UPSTREAM. */
enum upstream_step { UP_READ, UP_CREATE };

/*
 * An op's exchange with Kong:
 *   add:        OP_SEND POST the target; 409 -> OP_LOOKUP GET it: ours
 *               (tagged) -> OP_FALLBACK PATCH its weight; not ours: left.
 *   set weight: OP_SEND PATCH; 404 (it vanished) -> OP_FALLBACK POST it.
 *   remove:     OP_SEND DELETE.
 */
enum op_step { OP_SEND, OP_FALLBACK, OP_LOOKUP };

/* One request on the wire. */
struct req {
    struct kong *k;
    struct task *t;
    size_t op;         /* index into t->ops, or KONG_TASK_REQ */
    enum op_step step; /* where in the op's exchange */
    int write;
    struct http_call *call;
    struct req *prev, *next; /* k->reqs */
};

struct kong {
    struct proxy base;
    char *admin_url, *token_header, *user_agent, *tag;
    cJSON *defaults;
    long timeout_ms;
    int max_in_flight;
    int mode_checked;  /* GET / answered */
    int mode_checking; /* GET / on the wire */
    char fatal[400];   /* DB-less / data plane: no writes possible */
    struct req *reqs;  /* on the wire */
    int n_reqs, n_writes;
    struct queue running;     /* tasks started, at most one an upstream */
    struct queue queued;      /* tasks waiting to start */
    struct loop_timer *later; /* pumps from the loop, after an abort */
    int pumping, again;
    /* Upstream name (owned) -> 1 when the last read found it missing: the
     * apply that follows creates it at once, without asking again (a 409
     * still means someone else did). 1,000 GETs fewer at an initial sync. */
    struct strmap missing;
};

/*
 * One read or apply of one upstream: the mode check (once per driver), the
 * upstream (read; created when missing), then the targets: pages read one
 * after the other, or the ops sent side by side in three passes (adds, then
 * weights, then removals), each pass ended before the next begins, so a
 * replaced target's add is answered before its old one is deleted.
 */
struct task {
    struct kong *k;
    int is_read;
    char upstream[256];
    char upstream_esc[800];
    void *arg;
    enum task_phase phase;
    enum upstream_step step; /* in PHASE_UPSTREAM */
    int busy;                /* a request of the task itself on the wire */
    int finished;
    char error[500]; /* the whole task failed: sends no more */
    /* read */
    proxy_read_fn read_fn;
    struct proxy_target_set found;
    char next_page[1200]; /* "" = the first */
    /* apply */
    proxy_apply_fn apply_fn;
    struct proxy_op *ops;
    struct proxy_op_result *results;
    size_t n;
    int pass;          /* 0 adds, 1 weights, 2 removals, 3 done */
    size_t cursor;     /* next op to look at in this pass */
    int pending;       /* ops on the wire */
    int add_failed;    /* an ADD failed: removals are kept */
    struct qlink link; /* in k->running or k->queued */
};

static void pump(struct kong *k);

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
        cJSON_ArrayForEach(g, tags)
            if (cJSON_IsString(g) && strcmp(g->valuestring, tag) == 0)
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

/* A target object carries our ownership tag. */
static int target_is_ours(const char *body, const char *tag)
{
    cJSON *o = cJSON_Parse(body);
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(o, "tags"), *x;
    int ours = 0;
    cJSON_ArrayForEach(x, tags)
        if (cJSON_IsString(x) && strcmp(x->valuestring, tag) == 0)
            ours = 1;
    cJSON_Delete(o);
    return ours;
}

/* ---- requests --------------------------------------------------------------- */

static void on_response(struct http_response *r, void *arg);

static void unlink_req(struct kong *k, struct req *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        k->reqs = q->next;
    if (q->next)
        q->next->prev = q->prev;
    k->n_reqs--;
    if (q->write)
        k->n_writes--;
    k->base.writing = k->n_writes > 0;
}

static int send_req(struct task *t, size_t op, enum op_step step, const char *method,
                    const char *path, const char *body, char *err, size_t errlen)
{
    struct kong *k = t->k;
    char url[2048];
    const char *hdrs[4];
    int nh = 0;
    struct req *q = calloc(1, sizeof *q);
    if (q == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
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
    *q = (struct req){.k = k, .t = t, .op = op, .step = step, .write = strcmp(method, "GET") != 0};
    if ((q->call = http_start(k->base.loop, &rq, on_response, q, err, errlen)) == NULL) {
        free(q);
        return -1;
    }
    q->next = k->reqs;
    if (k->reqs)
        k->reqs->prev = q;
    k->reqs = q;
    k->n_reqs++;
    if (q->write)
        k->n_writes++;
    k->base.writing = k->n_writes > 0;
    return 0;
}

/* The whole task fails: nothing more is sent for it; ops on the wire end. */
static void task_fail(struct task *t, const char *msg)
{
    if (!t->error[0])
        snprintf(t->error, sizeof t->error, "%s", msg);
}

static void op_done(struct task *t, size_t i, int ok, const char *err)
{
    t->results[i].ok = ok;
    if (!ok)
        proxy_result_error(&t->results[i], "%s", err ? err : "failed");
    if (!ok && t->ops[i].kind == PROXY_OP_ADD)
        t->add_failed = 1;
    t->pending--;
}

/* Sends step `step` of op i (see enum op_step for how the steps follow). */
static int send_op(struct task *t, size_t i, enum op_step step, char *err, size_t errlen)
{
    struct kong *k = t->k;
    const struct proxy_op *op = &t->ops[i];
    char path[1200], body[512], target[300];
    if (k->base.writes_stopped && !(op->kind == PROXY_OP_ADD && step == OP_LOOKUP)) {
        snprintf(err, errlen, "%s", KONG_STOPPED);
        return -1;
    }
    kong_normalize_target(op->target.host, op->target.port, target, sizeof target);
    char *esc = http_escape(target);
    if (esc == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc, post = (op->kind == PROXY_OP_ADD && step == OP_SEND) ||
                   (op->kind == PROXY_OP_SET_WEIGHT && step == OP_FALLBACK);
    if (post) {
        snprintf(path, sizeof path, "/upstreams/%s/targets", t->upstream_esc);
        snprintf(body, sizeof body, "{\"target\":\"%s\",\"weight\":%d,\"tags\":[\"%s\"]}", target,
                 op->target.weight, k->tag);
        rc = send_req(t, i, step, "POST", path, body, err, errlen);
    } else {
        snprintf(path, sizeof path, "/upstreams/%s/targets/%s", t->upstream_esc, esc);
        if (op->kind == PROXY_OP_ADD && step == OP_LOOKUP) {
            rc = send_req(t, i, step, "GET", path, NULL, err, errlen);
        } else if (op->kind == PROXY_OP_REMOVE) {
            rc = send_req(t, i, step, "DELETE", path, NULL, err, errlen);
        } else {
            snprintf(body, sizeof body, "{\"weight\":%d}", op->target.weight);
            rc = send_req(t, i, step, "PATCH", path, body, err, errlen);
        }
    }
    free(esc);
    return rc;
}

/* Sends the next op the current pass allows. Returns 1 if one was sent. */
static int send_next_op(struct task *t)
{
    static const enum proxy_op_kind order[3] = {PROXY_OP_ADD, PROXY_OP_SET_WEIGHT, PROXY_OP_REMOVE};
    char err[300];
    while (t->pass < 3) {
        while (t->cursor < t->n) {
            size_t i = t->cursor++;
            if (t->ops[i].kind != order[t->pass])
                continue;
            /* A replacement failed to go in: removing now could empty the
             * upstream; the old targets stay until the adds work. */
            if (t->pass == 2 && t->add_failed) {
                proxy_result_error(&t->results[i], "kept: an add in the same change failed");
                continue;
            }
            if (send_op(t, i, OP_SEND, err, sizeof err) == 0) {
                t->pending++;
                return 1;
            }
            proxy_result_error(&t->results[i], "%s", err);
        }
        if (t->pending)
            return 0; /* this pass ends before the next begins */
        t->pass++;
        t->cursor = 0;
    }
    t->finished = 1;
    return 0;
}

/* Marks (1) or clears (0) upstream as found missing. The mark is only a
 * shortcut: when memory runs out it is simply not kept. */
static void mark_missing(struct kong *k, const char *upstream, int missing)
{
    size_t len = strlen(upstream);
    uint64_t *v = strmap_get(&k->missing, upstream, len);
    int added;
    if (v == NULL && missing) {
        char *key = strdup(upstream);
        if (key && (v = strmap_put(&k->missing, key, len, 0, &added)) == NULL)
            free(key);
    }
    if (v)
        *v = (uint64_t)missing;
}

static int send_upstream(struct task *t)
{
    struct kong *k = t->k;
    char path[1200], err[256];
    int rc;
    if (t->step == UP_READ && !t->is_read) {
        uint64_t *v = strmap_get(&k->missing, t->upstream, strlen(t->upstream));
        if (v && *v) {
            *v = 0;
            t->step = UP_CREATE;
        }
    }
    if (t->step == UP_READ) {
        snprintf(path, sizeof path, "/upstreams/%s", t->upstream_esc);
        rc = send_req(t, KONG_TASK_REQ, OP_SEND, "GET", path, NULL, err, sizeof err);
    } else if (k->base.writes_stopped) {
        task_fail(t, KONG_STOPPED);
        return 0;
    } else {
        cJSON *o = k->defaults ? cJSON_Duplicate(k->defaults, 1) : cJSON_CreateObject();
        cJSON_DeleteItemFromObjectCaseSensitive(o, "name");
        cJSON_AddStringToObject(o, "name", t->upstream);
        if (!cJSON_GetObjectItemCaseSensitive(o, "tags")) {
            cJSON *tags = cJSON_AddArrayToObject(o, "tags");
            cJSON_AddItemToArray(tags, cJSON_CreateString(k->tag));
        }
        char *body = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        snprintf(err, sizeof err, "out of memory");
        rc = body ? send_req(t, KONG_TASK_REQ, 1, "POST", "/upstreams", body, err, sizeof err) : -1;
        free(body);
    }
    if (rc < 0) {
        task_fail(t, err);
        return 0;
    }
    t->busy = 1;
    return 1;
}

/* Sends the task's next request, if it may send one now. Returns 1 if so. */
static int task_next(struct task *t)
{
    struct kong *k = t->k;
    char path[1400], err[256];
    if (t->finished || t->busy)
        return 0;
    if (k->fatal[0])
        task_fail(t, k->fatal); /* reads too: nothing they find can be applied */
    if (t->error[0]) {
        t->finished = t->pending == 0;
        return 0;
    }
    if (!k->mode_checked) {
        if (k->mode_checking)
            return 0; /* another task asked; all wait for its answer */
        if (send_req(t, KONG_TASK_REQ, OP_SEND, "GET", "/", NULL, err, sizeof err) < 0) {
            task_fail(t, err);
            return 0;
        }
        k->mode_checking = 1;
        t->busy = 1;
        return 1;
    }
    if (t->phase == PHASE_MODE)
        t->phase = PHASE_UPSTREAM;
    if (t->phase == PHASE_UPSTREAM)
        return send_upstream(t);
    if (!t->is_read)
        return send_next_op(t);
    if (t->next_page[0])
        snprintf(path, sizeof path, "%s%csize=1000", t->next_page,
                 strchr(t->next_page, '?') ? '&' : '?');
    else
        snprintf(path, sizeof path, "/upstreams/%s/targets?size=1000", t->upstream_esc);
    if (send_req(t, KONG_TASK_REQ, 0, "GET", path, NULL, err, sizeof err) < 0) {
        task_fail(t, err);
        return 0;
    }
    t->busy = 1;
    return 1;
}

/* ---- answers ---------------------------------------------------------------- */

/* A write answered with DB-less mode's refusal: no write can work, so every
 * task fails with one message, as when GET / tells the mode. */
static int refused_dbless(struct kong *k, const struct http_response *r, const char *body)
{
    if (r->status != 405 || strstr(body, "when not using a database") == NULL)
        return 0;
    if (!k->fatal[0])
        snprintf(k->fatal, sizeof k->fatal,
                 "Kong at %s refuses writes: it runs DB-less "
                 "(database=off); point the sidecar at a Kong node with a database or at the "
                 "control plane",
                 k->admin_url);
    return 1;
}

/* GET /: DB-less and data planes cannot take target writes. */
static void on_mode(struct task *t, const struct http_response *r, const char *body)
{
    struct kong *k = t->k;
    char msg[500], desc[400];
    cJSON *o = cJSON_ParseWithLength(body, r->body.len);
    const cJSON *conf = cJSON_GetObjectItemCaseSensitive(o, "configuration");
    const cJSON *db = cJSON_GetObjectItemCaseSensitive(conf, "database");
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(conf, "role");
    if (r->status != 200 || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        kong_describe_error(r->status, body, desc, sizeof desc);
        snprintf(msg, sizeof msg, "GET %s/: %s (is this Kong's Admin API?)", k->admin_url, desc);
        task_fail(t, msg);
        return;
    }
    if (cJSON_IsString(db) && strcmp(db->valuestring, "off") == 0)
        snprintf(k->fatal, sizeof k->fatal,
                 "Kong at %s runs DB-less (database=off): target "
                 "writes are impossible; point the sidecar at a Kong node with a database or "
                 "at the control plane",
                 k->admin_url);
    else if (cJSON_IsString(role) && strcmp(role->valuestring, "data_plane") == 0)
        snprintf(k->fatal, sizeof k->fatal,
                 "Kong at %s is a data plane: its Admin API is "
                 "read-only; point the sidecar at the control plane",
                 k->admin_url);
    cJSON_Delete(o);
    k->mode_checked = 1;
    t->phase = PHASE_UPSTREAM;
}

/* The upstream: read it (both), create it if missing (apply). */
static void on_upstream(struct task *t, const struct http_response *r, const char *body)
{
    char msg[500], desc[400];
    if (t->step == UP_READ && r->status == 200) {
        t->phase = PHASE_TARGETS;
        mark_missing(t->k, t->upstream, 0);
        return;
    }
    if (t->step == UP_READ && r->status == 404) {
        if (t->is_read) {
            t->finished = 1; /* no upstream: nothing of ours */
            mark_missing(t->k, t->upstream, 1);
        } else
            t->step = UP_CREATE;
        return;
    }
    if (t->step == UP_CREATE && (r->status == 201 || r->status == 200 || r->status == 409)) {
        t->phase = PHASE_TARGETS; /* 409: someone else created it */
        return;
    }
    if (refused_dbless(t->k, r, body))
        return;
    kong_describe_error(r->status, body, desc, sizeof desc);
    snprintf(msg, sizeof msg, "upstream '%s': %s", t->upstream, desc);
    task_fail(t, msg);
}

static void on_page(struct task *t, const struct http_response *r, const char *body)
{
    char msg[500], desc[400], e[300];
    if (r->status != 200) {
        kong_describe_error(r->status, body, desc, sizeof desc);
        snprintf(msg, sizeof msg, "GET targets of '%s': %s", t->upstream, desc);
        task_fail(t, msg);
        return;
    }
    if (kong_parse_targets_page(body, r->body.len, t->k->tag, &t->found, t->next_page,
                                sizeof t->next_page, e, sizeof e) < 0) {
        snprintf(msg, sizeof msg, "GET targets of '%s': %s", t->upstream, e);
        task_fail(t, msg);
        return;
    }
    if (t->next_page[0] && t->next_page[0] != '/')
        task_fail(t, "targets list: unexpected next link");
    else if (t->next_page[0] == '\0')
        t->finished = 1;
}

/* The next step of op i after an answer to step `step`, or -1: it is done. */
static int op_next_step(struct task *t, size_t i, enum op_step step, const struct http_response *r,
                        const char *body, const char **why)
{
    *why = NULL;
    switch (t->ops[i].kind) {
    case PROXY_OP_ADD:
        if (step == OP_SEND && r->status == 409)
            return OP_LOOKUP; /* exists: ours (tagged)? then its weight */
        if (step == OP_LOOKUP && r->status == 200 && target_is_ours(body, t->k->tag))
            return OP_FALLBACK;
        if (step == OP_LOOKUP && r->status == 404)
            /* The conflicting target is gone already: retried after a fresh
             * read of the proxy, as any failed change is. */
            *why = "Kong answered 409 (target exists), then had no such target";
        else if (step == OP_LOOKUP && r->status == 200)
            /* Made by hand (no ownership tag): never touched, stays theirs. */
            *why = "a target with this address exists in Kong but was not made by "
                   "consul-sidecar (no ownership tag): left alone";
        return -1;
    case PROXY_OP_SET_WEIGHT:
        return step == OP_SEND && r->status == 404 ? OP_FALLBACK : -1; /* vanished: create it */
    case PROXY_OP_REMOVE:
        return -1;
    }
    return -1;
}

static int op_ok(const struct proxy_op *op, enum op_step step, long status)
{
    switch (op->kind) {
    case PROXY_OP_ADD: /* 200 at step 0: Kong 2.2-2.8 upsert */
        return step == OP_LOOKUP ? 0
               : step == OP_SEND ? status == 201 || status == 200
                                 : status == 200;
    case PROXY_OP_SET_WEIGHT:
        return status == 200 || status == 201;
    case PROXY_OP_REMOVE:
        return status == 204 || status == 200 || status == 404;
    }
    return 0;
}

static void on_op(struct task *t, size_t i, enum op_step step, const struct http_response *r,
                  const char *body)
{
    char desc[400], err[300];
    const char *why;
    if (refused_dbless(t->k, r, body)) {
        op_done(t, i, 0, t->k->fatal);
        return;
    }
    int next = op_next_step(t, i, step, r, body, &why);
    if (next >= 0) {
        if (send_op(t, i, (enum op_step)next, err, sizeof err) < 0)
            op_done(t, i, 0, err);
        return;
    }
    int ok = why == NULL && op_ok(&t->ops[i], step, r->status);
    if (!ok && !why)
        why = kong_describe_error(r->status, body, desc, sizeof desc);
    op_done(t, i, ok, why);
}

static void on_response(struct http_response *r, void *arg)
{
    struct req *q = arg;
    struct kong *k = q->k;
    struct task *t = q->t;
    size_t op = q->op;
    enum op_step step = q->step;
    /* A task's own request before its upstream phase is the mode check. */
    int mode = op == KONG_TASK_REQ && t->phase == PHASE_MODE;
    char msg[600], desc[400];
    unlink_req(k, q);
    free(q);
    if (mode)
        k->mode_checking = 0;
    if (op == KONG_TASK_REQ)
        t->busy = 0;
    const char *body = r->body.data ? r->body.data : "";
    int failed = 1;
    if (r->err != HTTP_OK) {
        snprintf(msg, sizeof msg, "Kong Admin API at %s: %s", k->admin_url, r->error);
        task_fail(t, msg);
    } else if (r->status == 401 || r->status == 403) {
        kong_describe_error(r->status, body, desc, sizeof desc);
        snprintf(msg, sizeof msg,
                 "Kong Admin API rejected the sidecar's credentials (%s): set "
                 "proxy.kong.token_file to a token allowed to manage upstreams",
                 desc);
        task_fail(t, msg);
    } else {
        failed = 0;
        if (mode)
            on_mode(t, r, body);
        else if (op != KONG_TASK_REQ)
            on_op(t, op, step, r, body);
        else if (t->phase == PHASE_UPSTREAM)
            on_upstream(t, r, body);
        else
            on_page(t, r, body);
    }
    if (failed && op != KONG_TASK_REQ)
        op_done(t, op, 0, t->error);
    pump(k);
}

/* ---- scheduling ------------------------------------------------------------- */

static void task_free(struct task *t)
{
    proxy_target_set_free(&t->found);
    for (size_t i = 0; t->ops && i < t->n; i++)
        free(t->ops[i].target.host);
    free(t->ops);
    proxy_results_free(t->results, t->n);
    free(t);
}

static void task_report(struct task *t)
{
    if (t->is_read) {
        if (t->error[0])
            t->read_fn(NULL, t->error, t->arg);
        else
            t->read_fn(&t->found, NULL, t->arg);
        return;
    }
    const char *fatal = t->error[0] ? t->error : NULL;
    int all = 1;
    char first[400] = "";
    for (size_t i = 0; i < t->n; i++) {
        if (fatal && !t->results[i].ok && !t->results[i].error)
            proxy_result_error(&t->results[i], "%s", fatal);
        if (!t->results[i].ok && all) {
            all = 0;
            char key[300];
            proxy_target_key(&t->ops[i].target, key, sizeof key);
            snprintf(first, sizeof first, "%.80s: %.250s", key,
                     t->results[i].error ? t->results[i].error : "failed");
        }
    }
    if (fatal)
        all = 0;
    t->apply_fn(all, t->results, t->n, all ? NULL : (fatal ? fatal : first), t->arg);
}

static int upstream_running(const struct kong *k, const char *upstream)
{
    QUEUE_EACH(l, &k->running)
        if (strcmp(QUEUE_CITEM(l, struct task, link)->upstream, upstream) == 0)
            return 1;
    return 0;
}

static int admissible(const struct qlink *l, void *arg)
{
    const struct kong *k = arg;
    return !upstream_running(k, QUEUE_CITEM(l, struct task, link)->upstream);
}

/* Queued tasks start unless their upstream has one running: the tasks of an
 * upstream run one after the other, in the order given. At most 4 tasks a
 * request slot run at once: enough to keep every slot busy, and few enough
 * that each answer's round (admit, fill, finish) does not walk 1,000
 * tasks, as it did when an initial sync started them all (a quarter of
 * the sidecar's CPU for 10,000 targets). */
static void admit(struct kong *k)
{
    size_t cap = 4 * (size_t)k->max_in_flight;
    if (k->running.n < cap)
        queue_move_if(&k->queued, &k->running, admissible, k, cap - k->running.n);
}

/* Fills the free slots, one request a task a round. */
static void fill(struct kong *k)
{
    int sent = 1;
    while (sent && k->n_reqs < k->max_in_flight) {
        sent = 0;
        for (struct qlink *l = k->running.head; l && k->n_reqs < k->max_in_flight; l = l->next)
            sent |= task_next(QUEUE_ITEM(l, struct task, link));
    }
}

/* Reports the finished tasks; their callbacks may submit more. */
static int finish(struct kong *k)
{
    QUEUE_EACH(l, &k->running) {
        struct task *t = QUEUE_ITEM(l, struct task, link);
        if (!t->finished && !(t->error[0] && !t->busy && t->pending == 0))
            continue;
        queue_remove(&k->running, l); /* and the walk ends here */
        task_report(t);
        task_free(t);
        return 1;
    }
    return 0;
}

static void pump(struct kong *k)
{
    if (k->pumping) {
        k->again = 1;
        return;
    }
    k->pumping = 1;
    do {
        k->again = 0;
        admit(k);
        fill(k);
        while (finish(k))
            k->again = 1;
    } while (k->again);
    k->pumping = 0;
}

static void on_later(void *arg)
{
    pump(arg);
}

static void submit(struct kong *k, struct task *t)
{
    queue_push(&k->queued, &t->link);
    pump(k);
}

/* ---- the driver ------------------------------------------------------------- */

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

static int kong_read(struct proxy *p, const char *upstream, proxy_read_fn fn, void *arg, char *err,
                     size_t errlen)
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

/* The lock is lost: every write on the wire is dropped at once and fails;
 * the callbacks come from the loop, not from inside the caller. */
static void kong_abort_writes(struct proxy *p)
{
    struct kong *k = (struct kong *)p;
    struct req *q = k->reqs;
    while (q) {
        struct req *next = q->next;
        if (q->write) {
            http_cancel(q->call);
            unlink_req(k, q);
            if (q->op == KONG_TASK_REQ) {
                q->t->busy = 0;
                task_fail(q->t, KONG_STOPPED);
            } else {
                op_done(q->t, q->op, 0, KONG_STOPPED);
            }
            free(q);
        }
        q = next;
    }
    loop_timer_start(k->later, 0);
}

static void kong_free(struct proxy *p)
{
    struct kong *k = (struct kong *)p;
    if (k == NULL)
        return;
    while (k->reqs) {
        struct req *q = k->reqs;
        http_cancel(q->call);
        unlink_req(k, q);
        free(q);
    }
    struct qlink *l;
    while ((l = queue_pop(&k->running)) != NULL || (l = queue_pop(&k->queued)) != NULL)
        task_free(QUEUE_ITEM(l, struct task, link));
    loop_timer_free(k->later);
    for (size_t i = 0; i < k->missing.cap; i++)
        free(unconst(k->missing.slots[i].key));
    strmap_free(&k->missing);
    free(k->admin_url);
    free(k->token_header);
    free(k->user_agent);
    free(k->tag);
    cJSON_Delete(k->defaults);
    free(k);
}

static const struct proxy_ops kong_ops = {"kong",    kong_read, kong_apply,
                                          kong_free, 65535,     kong_abort_writes};

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
    k->max_in_flight = o->max_in_flight > 0 ? o->max_in_flight : KONG_DEFAULT_MAX_IN_FLIGHT;
    k->later = loop_timer_new(l, on_later, k);
    if (o->token && *o->token) {
        size_t n = strlen(o->token) + 32;
        if ((k->token_header = malloc(n)) != NULL)
            snprintf(k->token_header, n, "Kong-Admin-Token: %s", o->token);
    }
    if (!k->admin_url || !k->later || !k->user_agent || !k->tag ||
        (o->upstream_defaults && !k->defaults) || (o->token && *o->token && !k->token_header)) {
        kong_free(&k->base);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    return &k->base;
}
