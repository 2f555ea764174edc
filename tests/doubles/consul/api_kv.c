/* Sessions and KV of the Consul double. */
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

/* ---- sessions and KV ------------------------------------------------------------ */

static struct session *session_find(const char *id)
{
    for (int i = 0; i < MAX_SESSIONS; i++)
        if (S.sessions[i].used && strcmp(S.sessions[i].id, id) == 0)
            return &S.sessions[i];
    return NULL;
}

static cJSON *session_json(const struct session *s)
{
    char b[32];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "ID", s->id);
    cJSON_AddStringToObject(o, "Name", s->name);
    cJSON_AddStringToObject(o, "Node", s->node);
    cJSON_AddNumberToObject(o, "LockDelay", (double)s->lock_delay_ms * 1e6);
    cJSON_AddStringToObject(o, "Behavior", s->behavior);
    cJSON_AddStringToObject(o, "TTL", s->ttl_ms ? dur_format_ms(s->ttl_ms, b, sizeof b) : "");
    cJSON *nc = cJSON_AddArrayToObject(o, "NodeChecks");
    cJSON_AddItemToArray(nc, cJSON_CreateString("serfHealth"));
    cJSON_AddNullToObject(o, "ServiceChecks");
    cJSON_AddNumberToObject(o, "CreateIndex", (double)s->create_index);
    cJSON_AddNumberToObject(o, "ModifyIndex", (double)s->modify_index);
    return o;
}

/* /v1/session/info/:id (by id), /node/:node (by node), /list (all): a
 * blocking view on the sessions' index, which every create, destroy and
 * invalidation moves (a renew does not, as in Consul). */
struct session_query {
    int by_id, by_node;
    const char *name;
};

static cJSON *view_sessions(struct MHD_Connection *c, const void *ctx, uint64_t *index, int *status)
{
    const struct session_query *sq = ctx;
    (void)c;
    (void)status;
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < MAX_SESSIONS; i++) {
        const struct session *s = &S.sessions[i];
        if (!s->used || (sq->by_id && strcmp(s->id, sq->name)) ||
            (sq->by_node && strcmp(s->node, sq->name)))
            continue;
        cJSON_AddItemToArray(arr, session_json(s));
    }
    *index = S.sessions_index ? S.sessions_index : 1;
    return arr;
}

/* A session's TTL, LockDelay and Behavior as Session.Apply checks them:
 * NULL when valid, else the 400's text (in err). */
static const char *session_options(const cJSON *in, int64_t *ttl, int64_t *delay,
                                   const char **behavior, char *err, size_t len)
{
    const cJSON *v;
    if ((v = iget(in, "TTL")) && cJSON_IsString(v) && v->valuestring[0]) {
        /* Consul's texts: the TTL in nanoseconds, the bounds as Go
         * durations; "0s" means no TTL. The status is the SPEC's 400. */
        char lo[32], hi[32];
        if (dur_parse_ms(v->valuestring, ttl) < 0) {
            snprintf(err, len, "Session TTL '%s' invalid: time: invalid duration \"%s\"",
                     v->valuestring, v->valuestring);
            return err;
        }
        if (*ttl != 0 && (*ttl < S.session_ttl_min_ms || *ttl > 86400000)) {
            snprintf(err, len, "Invalid Session TTL '%lld', must be between [%s=%s]",
                     (long long)*ttl * 1000000LL,
                     dur_format_ms(S.session_ttl_min_ms, lo, sizeof lo),
                     dur_format_ms(86400000, hi, sizeof hi));
            return err;
        }
    }
    if ((v = iget(in, "LockDelay"))) {
        if (json_dur(v, delay, err, len) < 0)
            return "Request decode failed: invalid LockDelay";
        if (*delay > 60000)
            *delay = 60000;
    }
    if ((v = iget(in, "Behavior")) && cJSON_IsString(v) && v->valuestring[0]) {
        if (strcmp(v->valuestring, "release") && strcmp(v->valuestring, "delete")) {
            snprintf(err, len, "Invalid Behavior setting '%s'", v->valuestring);
            return err;
        }
        *behavior = v->valuestring;
    }
    return NULL;
}

static enum MHD_Result session_create(struct agent *a, struct MHD_Connection *c, const char *body,
                                      size_t len)
{
    char err[300];
    int64_t ttl = 0, delay = 15000;
    const char *behavior = "release", *why;
    cJSON *in = len ? cJSON_ParseWithLength(body, len) : cJSON_CreateObject();
    if (!cJSON_IsObject(in))
        why = "Request decode failed: unexpected EOF";
    else
        why = session_options(in, &ttl, &delay, &behavior, err, sizeof err);
    if (why) {
        enum MHD_Result r = reply_text(c, 400, why);
        cJSON_Delete(in);
        return r;
    }
    pthread_mutex_lock(&S.mu);
    struct session *s = NULL;
    for (int i = 0; i < MAX_SESSIONS && s == NULL; i++)
        if (!S.sessions[i].used)
            s = &S.sessions[i];
    if (S.leader[0] == '\0' || s == NULL) {
        pthread_mutex_unlock(&S.mu);
        cJSON_Delete(in);
        return reply_text(c, 500,
                          S.leader[0] ? "too many sessions (double limit)" : "No cluster leader");
    }
    memset(s, 0, sizeof *s);
    s->used = 1;
    snprintf(s->id, sizeof s->id, "%08x-%04x-4%03x-8%03x-%012llx", (unsigned)rand(),
             (unsigned)rand() & 0xffff, (unsigned)rand() & 0xfff, (unsigned)rand() & 0xfff,
             (unsigned long long)rand() * 4096ULL + (unsigned long long)(rand() & 0xfff));
    const cJSON *nm = iget(in, "Name"), *nd = iget(in, "Node");
    snprintf(s->name, sizeof s->name, "%s", cJSON_IsString(nm) ? nm->valuestring : "");
    snprintf(s->node, sizeof s->node, "%s",
             cJSON_IsString(nd) && nd->valuestring[0] ? nd->valuestring : a->node->name);
    snprintf(s->behavior, sizeof s->behavior, "%s", behavior);
    s->ttl_ms = ttl;
    s->lock_delay_ms = delay;
    s->expires = ttl ? now_ms() + (uint64_t)ttl : 0;
    s->create_index = s->modify_index = bump();
    S.sessions_index = s->modify_index;
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "ID", s->id);
    changed();
    pthread_mutex_unlock(&S.mu);
    cJSON_Delete(in);
    return json_reply(c, 200, out, NULL);
}

static struct kv *kv_find(const char *key, int *slot)
{
    for (int i = 0; i < 1024; i++) {
        if (S.kvs[i].used && strcmp(S.kvs[i].key, key) == 0) {
            if (slot)
                *slot = i;
            return &S.kvs[i];
        }
    }
    return NULL;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64enc(const char *in, size_t n)
{
    char *out = malloc(n / 3 * 4 + 8), *o = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)in[i + 2];
        *o++ = b64[(v >> 18) & 63];
        *o++ = b64[(v >> 12) & 63];
        *o++ = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? b64[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

static cJSON *kv_json(const struct kv *k)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "LockIndex", (double)k->lock_index);
    cJSON_AddStringToObject(o, "Key", k->key);
    cJSON_AddNumberToObject(o, "Flags", (double)k->flags);
    if (k->has_value) {
        char *e = b64enc(k->value ? k->value : "", k->value_len);
        cJSON_AddStringToObject(o, "Value", e ? e : "");
        free(e);
    } else {
        cJSON_AddNullToObject(o, "Value");
    }
    if (k->session[0])
        cJSON_AddStringToObject(o, "Session", k->session);
    cJSON_AddNumberToObject(o, "CreateIndex", (double)k->create_index);
    cJSON_AddNumberToObject(o, "ModifyIndex", (double)k->modify_index);
    return o;
}

cJSON *view_kv(struct MHD_Connection *c, const void *ctx, uint64_t *index, int *status)
{
    const char *key = ctx;
    int recurse = has_arg(c, "recurse"), keys = has_arg(c, "keys");
    cJSON *arr = cJSON_CreateArray();
    uint64_t idx = 0;
    for (int i = 0; i < 1024; i++) {
        const struct kv *k = &S.kvs[i];
        if (!k->used)
            continue;
        int match =
            (recurse || keys) ? strncmp(k->key, key, strlen(key)) == 0 : strcmp(k->key, key) == 0;
        if (!match)
            continue;
        idx = max64(idx, k->modify_index);
        cJSON_AddItemToArray(arr, keys ? cJSON_CreateString(k->key) : kv_json(k));
    }
    if (cJSON_GetArraySize(arr) == 0) {
        *status = 404;
        *index = S.kv_index ? S.kv_index : 1;
        cJSON_Delete(arr);
        return NULL;
    }
    *index = idx;
    return arr;
}

/* Whether ?acquire=session would fail: held by another session, or still
 * in its lock delay (a key deleted with its session keeps one too). */
static int acquire_refused(const struct kv *k, int slot, const char *acq, const char *key)
{
    if (k && k->session[0] && strcmp(k->session, acq) != 0)
        return 1;
    if (slot >= 0 && S.lock_delay_until[slot] > now_ms() && !(k && !strcmp(k->session, acq)))
        return 1;
    for (int j = 0; k == NULL && j < 64; j++)
        if (S.deleted_delay[j].until > now_ms() && !strcmp(S.deleted_delay[j].key, key))
            return 1;
    return 0;
}

/* A free slot for a new key, or NULL. */
static struct kv *kv_new(const char *key)
{
    for (int i = 0; i < 1024; i++) {
        struct kv *k = &S.kvs[i];
        if (k->used)
            continue;
        memset(k, 0, sizeof *k);
        k->used = 1;
        snprintf(k->key, sizeof k->key, "%s", key);
        k->create_index = S.raft + 1;
        S.lock_delay_until[i] = 0;
        return k;
    }
    return NULL;
}

/* The value, ?flags and ?acquire of a PUT that goes through. */
static void kv_put(struct MHD_Connection *c, struct kv *k, const char *body, size_t len,
                   const char *acq)
{
    free(k->value);
    k->value = malloc(len + 1);
    if (k->value) {
        memcpy(k->value, body, len);
        k->value[len] = '\0';
    }
    k->value_len = len;
    k->has_value = 1;
    const char *fl = arg(c, "flags");
    if (fl)
        k->flags = strtoull(fl, NULL, 10);
    if (acq && strcmp(k->session, acq) != 0) {
        snprintf(k->session, sizeof k->session, "%s", acq);
        k->lock_index++;
    }
    k->modify_index = bump();
    S.kv_index = k->modify_index;
}

/* PUT (with ?cas, ?acquire, ?release, ?flags) and DELETE of a key; the
 * answer is true or false, as Consul's. With S.mu held; "" when the answer
 * is an error already sent (*ret). */
static const char *kv_change(struct MHD_Connection *c, const char *method, const char *key,
                             const char *body, size_t len, enum MHD_Result *ret)
{
    int slot = -1;
    struct kv *k = kv_find(key, &slot);
    const char *acq = arg(c, "acquire"), *rel = arg(c, "release"), *cas = arg(c, "cas");
    if (strcmp(method, "DELETE") == 0) {
        if (k) {
            free(k->value);
            memset(k, 0, sizeof *k);
            S.kv_index = bump();
        }
        return "true";
    }
    if (cas && (k ? k->modify_index : 0) != strtoull(cas, NULL, 10))
        return "false";
    if (acq && session_find(acq) == NULL) {
        char err[300];
        snprintf(err, sizeof err, "invalid session \"%s\"", acq);
        *ret = reply_text(c, 500, err);
        return "";
    }
    if (rel) {
        if (k == NULL || strcmp(k->session, rel) != 0)
            return "false";
        k->session[0] = '\0';
        k->modify_index = bump();
        S.kv_index = k->modify_index;
        return "true";
    }
    if (acq && acquire_refused(k, slot, acq, key))
        return "false";
    if (k == NULL && (k = kv_new(key)) == NULL) {
        *ret = reply_text(c, 500, "too many keys (double limit)");
        return "";
    }
    kv_put(c, k, body, len, acq);
    return "true";
}

static enum MHD_Result kv_write(struct MHD_Connection *c, const char *method, const char *key,
                                const char *body, size_t len)
{
    enum MHD_Result ret = MHD_NO;
    if (len > 512 * 1024)
        return reply_text(c, 413, "Value exceeds 524288 byte limit");
    pthread_mutex_lock(&S.mu);
    if (S.leader[0] == '\0') {
        pthread_mutex_unlock(&S.mu);
        return reply_text(c, 500, "No cluster leader");
    }
    const char *result = kv_change(c, method, key, body, len, &ret);
    if (result[0])
        changed();
    pthread_mutex_unlock(&S.mu);
    return result[0] ? reply(c, 200, "application/json", result, strlen(result), NULL) : ret;
}

/* ---- handlers -------------------------------------------------------------------- */

enum MHD_Result h_session_create(const struct req *r)
{
    return session_create(r->a, r->c, r->body, r->body_len);
}

enum MHD_Result h_session_renew(const struct req *r)
{
    char err[600];
    pthread_mutex_lock(&S.mu);
    struct session *s = session_find(r->rest);
    if (s == NULL) {
        pthread_mutex_unlock(&S.mu);
        snprintf(err, sizeof err, "Session id '%s' not found", r->rest);
        return reply_text(r->c, 404, err);
    }
    if (s->ttl_ms)
        s->expires = now_ms() + (uint64_t)s->ttl_ms;
    cJSON *arr = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, session_json(s));
    pthread_mutex_unlock(&S.mu);
    return json_reply(r->c, 200, arr, NULL);
}

/* Destroying a session that does not exist is no error. */
enum MHD_Result h_session_destroy(const struct req *r)
{
    pthread_mutex_lock(&S.mu);
    struct session *s = session_find(r->rest);
    if (s)
        session_invalidate(s);
    pthread_mutex_unlock(&S.mu);
    return reply(r->c, 200, "application/json", "true", 4, NULL);
}

/* info, node and list are blocking queries on the sessions' index. */
enum MHD_Result h_session_info(const struct req *r)
{
    if (r->rest[0] == '\0')
        return reply_text(r->c, 400, "Missing session");
    struct session_query sq = {1, 0, r->rest};
    return serve_view(r, view_sessions, &sq);
}

enum MHD_Result h_session_node(const struct req *r)
{
    if (r->rest[0] == '\0')
        return reply_text(r->c, 400, "Missing node name");
    struct session_query sq = {0, 1, r->rest};
    return serve_view(r, view_sessions, &sq);
}

enum MHD_Result h_session_list(const struct req *r)
{
    struct session_query sq = {0, 0, r->rest};
    return serve_view(r, view_sessions, &sq);
}

/* GET reads (?raw: the bare value; otherwise a blocking view); PUT and
 * DELETE write. */
enum MHD_Result h_kv(const struct req *r)
{
    if (strcmp(r->method, "GET") != 0)
        return kv_write(r->c, r->method, r->rest, r->body, r->body_len);
    if (!has_arg(r->c, "raw"))
        return serve_view(r, view_kv, r->rest);
    pthread_mutex_lock(&S.mu);
    struct kv *k = kv_find(r->rest, NULL);
    if (k == NULL) {
        pthread_mutex_unlock(&S.mu);
        return reply(r->c, 404, NULL, "", 0, NULL);
    }
    enum MHD_Result ret =
        reply(r->c, 200, "text/plain; charset=utf-8", k->value ? k->value : "", k->value_len, NULL);
    pthread_mutex_unlock(&S.mu);
    return ret;
}
