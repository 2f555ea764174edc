/*
 * kong-double: a Kong Admin API test double (NOT Kong) for upstreams and
 * targets, reproducing the status codes, error bodies, normalization and
 * pagination of Kong 3.x as described in the Kong Admin API spec this project
 * follows; DB-less and RBAC modes; a control API for request logs and faults.
 * See README.md in this directory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/unconst.h"
#include "tests/doubles/kong/kong.h"
#include <signal.h>

struct kstate K;

static volatile sig_atomic_t stopping;

/* ---- dispatch, request log, faults, control -------------------------------------------- */

struct conn {
    struct buf body;
    int counted; /* in K.inflight */
};

/* The sidecar's requests received and not yet answered: counted from the
 * first byte until the answer is queued (or the connection ends). */
static void count_in(struct conn *cs, struct MHD_Connection *c)
{
    const char *ua = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "User-Agent");
    if (cs->counted || !ua || strncmp(ua, "consul-sidecar", 14) != 0)
        return;
    cs->counted = 1;
    int now = __atomic_add_fetch(&K.inflight, 1, __ATOMIC_SEQ_CST);
    int peak = __atomic_load_n(&K.peak, __ATOMIC_SEQ_CST);
    while (now > peak &&
           !__atomic_compare_exchange_n(&K.peak, &peak, now, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        ;
}

static void uncount(struct conn *cs)
{
    if (cs->counted)
        __atomic_sub_fetch(&K.inflight, 1, __ATOMIC_SEQ_CST);
    cs->counted = 0;
}

static enum MHD_Result collect(struct conn **state, const char *upload, size_t *upload_size)
{
    if (*state == NULL) {
        *state = calloc(1, sizeof **state);
        if (*state == NULL)
            return MHD_NO;
        buf_init(&(*state)->body, 1024 * 1024);
        return MHD_YES;
    }
    if (*upload_size) {
        buf_append(&(*state)->body, upload, *upload_size);
        *upload_size = 0;
    }
    return MHD_YES;
}

static struct qsbuf {
    struct buf *b;
    int first;
} qs_unused;

static enum MHD_Result qs_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *value)
{
    struct qsbuf *q = cls;
    (void)kind;
    buf_printf(q->b, "%c%s%s%s", q->first ? '?' : '&', key, value ? "=" : "", value ? value : "");
    q->first = 0;
    return MHD_YES;
}

static enum MHD_Result on_admin(void *cls, struct MHD_Connection *c, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_size, void **state)
{
    struct conn **cs = (struct conn **)state;
    (void)cls;
    (void)version;
    if (*cs == NULL || *upload_size) {
        enum MHD_Result r = collect(cs, upload, upload_size);
        if (*cs)
            count_in(*cs, c);
        return r;
    }
    pthread_mutex_lock(&K.mu);
    if (K.down) {
        pthread_mutex_unlock(&K.mu);
        return MHD_NO;
    }
    /* Faults. */
    struct fault f = {0};
    int faulted = 0;
    for (int i = 0; i < K.n_faults; i++) {
        struct fault *x = &K.faults[i];
        if (x->count <= 0 || (x->path[0] && strncmp(url, x->path, strlen(x->path))) ||
            (x->method[0] && strcmp(method, x->method)))
            continue;
        x->count--;
        f = *x;
        faulted = 1;
        break;
    }
    struct buf full;
    buf_init(&full, 8192);
    buf_puts(&full, url);
    struct qsbuf q = {&full, 1};
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, qs_iter, &q);
    cJSON *entry = cJSON_CreateObject();
    cJSON_AddStringToObject(entry, "method", method);
    cJSON_AddStringToObject(entry, "path", full.data ? full.data : url);
    const char *ua = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "User-Agent");
    cJSON_AddStringToObject(entry, "user_agent", ua ? ua : "");
    cJSON_AddBoolToObject(entry, "token",
                          MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Kong-Admin-Token") !=
                              NULL);
    cJSON_AddStringToObject(entry, "body", (*cs)->body.data ? (*cs)->body.data : "");
    cJSON_AddNumberToObject(entry, "time_ms", mono_ms()); /* arrival */
    buf_free(&full);
    int status = 0;
    enum MHD_Result ret;
    if (faulted && !strcmp(f.kind, "close")) {
        pthread_mutex_unlock(&K.mu);
        cJSON_Delete(entry);
        return MHD_NO;
    }
    if (faulted && !strcmp(f.kind, "delay")) {
        K.delayed++;
        pthread_mutex_unlock(&K.mu);
        struct timespec ts = {f.delay_ms / 1000, (f.delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&K.mu);
        K.delayed--;
        faulted = 0;
    }
    if (faulted && !strcmp(f.kind, "status"))
        ret =
            respond(c, (unsigned)(f.status ? f.status : 500),
                    f.body[0] ? f.body : "{\"message\":\"An unexpected error occurred\"}", &status);
    else if (faulted && !strcmp(f.kind, "garbage"))
        ret = respond(c, 200, "{\"data\": [ this is not json", &status);
    else
        ret = admin(c, url, method, (*cs)->body.data ? (*cs)->body.data : "", (*cs)->body.len,
                    &status);
    cJSON_AddNumberToObject(entry, "status", status);
    cJSON_AddItemToArray(K.requests, entry);
    uncount(*cs);
    pthread_mutex_unlock(&K.mu);
    return ret;
}

static void write_ports(void)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", K.port_file);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return;
    fprintf(f, "admin %d\ncontrol %d\n", K.admin_port, K.control_port);
    fclose(f);
    rename(tmp, K.port_file);
}

static void on_done(void *cls, struct MHD_Connection *c, void **state,
                    enum MHD_RequestTerminationCode t)
{
    struct conn *cs = *state;
    (void)cls;
    (void)c;
    (void)t;
    if (cs) {
        uncount(cs);
        buf_free(&cs->body);
        free(cs);
        *state = NULL;
    }
}

static struct MHD_Daemon *start_admin(int port)
{
    return MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                                MHD_USE_POLL,
                            (uint16_t)port, NULL, NULL, on_admin, NULL, MHD_OPTION_NOTIFY_COMPLETED,
                            on_done, NULL, MHD_OPTION_END);
}

/* ---- the control API: one handler a (method, path), with K.mu held ---- */

static enum MHD_Result ok_empty(struct MHD_Connection *c)
{
    return send_json(c, 200, cJSON_CreateObject(), NULL);
}

static enum MHD_Result ctl_requests(struct MHD_Connection *c, const cJSON *in)
{
    return send_json(c, 200, cJSON_Duplicate(K.requests, 1), NULL);
}

/* One line a request: METHOD PATH STATUS USER-AGENT (for grep); ?time puts
 * the arrival time (monotonic ms) first. */
static enum MHD_Result ctl_requests_txt(struct MHD_Connection *c, const cJSON *in)
{
    struct buf b;
    buf_init(&b, 0);
    const cJSON *e;
    const char *tv = NULL;
    size_t tl = 0; /* "?time" has no value: look the key up, not the value */
    int with_time =
        MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "time", 4, &tv, &tl) == MHD_YES;
    cJSON_ArrayForEach(e, K.requests) {
        const cJSON *m = cJSON_GetObjectItem(e, "method"), *p = cJSON_GetObjectItem(e, "path");
        const cJSON *st = cJSON_GetObjectItem(e, "status"),
                    *ua = cJSON_GetObjectItem(e, "user_agent");
        if (with_time)
            buf_printf(&b, "%.0f ", cJSON_GetObjectItem(e, "time_ms")->valuedouble);
        buf_printf(&b, "%s %s %d %s\n", m->valuestring, p->valuestring, st ? st->valueint : 0,
                   ua->valuestring);
    }
    enum MHD_Result ret = respond(c, 200, b.data ? b.data : "", NULL);
    buf_free(&b);
    return ret;
}

/* Writes only, with their bodies: METHOD PATH STATUS[ BODY]. */
static enum MHD_Result ctl_writes_txt(struct MHD_Connection *c, const cJSON *in)
{
    struct buf b;
    buf_init(&b, 0);
    const cJSON *e;
    cJSON_ArrayForEach(e, K.requests) {
        const cJSON *m = cJSON_GetObjectItem(e, "method"), *p = cJSON_GetObjectItem(e, "path");
        const cJSON *st = cJSON_GetObjectItem(e, "status"), *bd = cJSON_GetObjectItem(e, "body");
        if (!strcmp(m->valuestring, "GET") || !strcmp(m->valuestring, "HEAD") ||
            !strcmp(m->valuestring, "OPTIONS"))
            continue;
        buf_printf(&b, "%s %s %d%s%s\n", m->valuestring, p->valuestring, st ? st->valueint : 0,
                   bd->valuestring[0] ? " " : "", bd->valuestring);
    }
    enum MHD_Result ret = respond(c, 200, b.data ? b.data : "", NULL);
    buf_free(&b);
    return ret;
}

static enum MHD_Result ctl_requests_forget(struct MHD_Connection *c, const cJSON *in)
{
    cJSON_Delete(K.requests);
    K.requests = cJSON_CreateArray();
    return ok_empty(c);
}

static enum MHD_Result ctl_inflight(struct MHD_Connection *c, const cJSON *in)
{
    char n[64];
    snprintf(n, sizeof n, "{\"now\": %d, \"peak\": %d}",
             __atomic_load_n(&K.inflight, __ATOMIC_SEQ_CST),
             __atomic_load_n(&K.peak, __ATOMIC_SEQ_CST));
    return respond(c, 200, n, NULL);
}

static enum MHD_Result ctl_inflight_reset(struct MHD_Connection *c, const cJSON *in)
{
    __atomic_store_n(&K.peak, __atomic_load_n(&K.inflight, __ATOMIC_SEQ_CST), __ATOMIC_SEQ_CST);
    return respond(c, 200, "{}", NULL);
}

static enum MHD_Result ctl_delayed(struct MHD_Connection *c, const cJSON *in)
{
    char n[32];
    snprintf(n, sizeof n, "%d", K.delayed);
    return respond(c, 200, n, NULL);
}

/* What /state would list, counted: cheap enough to poll while a sync of
 * 10,000 targets runs, without slowing it. */
static enum MHD_Result ctl_count(struct MHD_Connection *c, const cJSON *in)
{
    int nu = 0, nt = 0;
    for (int i = 0; i < MAX_UP; i++)
        nu += K.ups[i].used;
    for (int i = 0; i < K.t_hi; i++)
        nt += K.ts[i].used;
    char n[64];
    snprintf(n, sizeof n, "{\"upstreams\": %d, \"targets\": %d}", nu, nt);
    return respond(c, 200, n, NULL);
}

static enum MHD_Result ctl_state(struct MHD_Connection *c, const cJSON *in)
{
    cJSON *o = cJSON_CreateArray();
    for (int i = 0; i < MAX_UP; i++) {
        if (!K.ups[i].used)
            continue;
        cJSON *u = cJSON_CreateObject();
        cJSON_AddStringToObject(u, "name", K.ups[i].name);
        cJSON *ts = cJSON_AddArrayToObject(u, "targets");
        for (const struct target *t = first_target(&K.ups[i]); t; t = next_target(t))
            cJSON_AddItemToArray(ts, target_json(t));
        cJSON_AddItemToArray(o, u);
    }
    return send_json(c, 200, o, NULL);
}

static enum MHD_Result ctl_faults_clear(struct MHD_Connection *c, const cJSON *in)
{
    K.n_faults = 0;
    return ok_empty(c);
}

static void copy_str(const cJSON *in, const char *k, char *out, size_t size)
{
    const cJSON *v = cJSON_GetObjectItem(in, k);
    if (cJSON_IsString(v))
        snprintf(out, size, "%s", v->valuestring);
}

static enum MHD_Result ctl_fault_add(struct MHD_Connection *c, const cJSON *in)
{
    if (!cJSON_IsObject(in) || K.n_faults >= 64)
        return respond(
            c, 404, "{\"message\":\"unknown control endpoint; see tests/doubles/kong/README.md\"}",
            NULL);
    struct fault *f = &K.faults[K.n_faults++];
    memset(f, 0, sizeof *f);
    const cJSON *cnt = cJSON_GetObjectItem(in, "count"), *st = cJSON_GetObjectItem(in, "status");
    const cJSON *d = cJSON_GetObjectItem(in, "delay_ms");
    f->count = cJSON_IsNumber(cnt) ? cnt->valueint : 1;
    f->status = cJSON_IsNumber(st) ? st->valueint : 0;
    f->delay_ms = cJSON_IsNumber(d) ? (long)d->valuedouble : 0;
    copy_str(in, "path", f->path, sizeof f->path);
    copy_str(in, "method", f->method, sizeof f->method);
    copy_str(in, "kind", f->kind, sizeof f->kind);
    copy_str(in, "body", f->body, sizeof f->body);
    return ok_empty(c);
}

static enum MHD_Result ctl_down(struct MHD_Connection *c, const cJSON *in)
{
    K.down = 1;
    struct MHD_Daemon *d = K.admin;
    K.admin = NULL;
    pthread_mutex_unlock(&K.mu);
    if (d)
        MHD_stop_daemon(d);
    pthread_mutex_lock(&K.mu);
    return ok_empty(c);
}

static enum MHD_Result ctl_up(struct MHD_Connection *c, const cJSON *in)
{
    K.down = 0;
    if (K.admin == NULL)
        K.admin = start_admin(K.admin_port);
    return K.admin ? ok_empty(c) : respond(c, 500, "{\"message\":\"cannot listen again\"}", NULL);
}

static enum MHD_Result ctl_reset(struct MHD_Connection *c, const cJSON *in)
{
    for (int i = 0; i < MAX_UP; i++)
        if (K.ups[i].used) {
            cJSON_Delete(K.ups[i].entity);
            memset(&K.ups[i], 0, sizeof K.ups[i]);
        }
    for (int i = 0; i < K.t_hi; i++)
        if (K.ts[i].used) {
            cJSON_Delete(K.ts[i].tags);
            memset(&K.ts[i], 0, sizeof K.ts[i]);
        }
    return ok_empty(c);
}

/* method NULL: any. */
static const struct {
    const char *method, *path;
    enum MHD_Result (*fn)(struct MHD_Connection *c, const cJSON *in);
} controls[] = {
    {"GET", "/requests", ctl_requests},
    {"GET", "/requests.txt", ctl_requests_txt},
    {"GET", "/writes.txt", ctl_writes_txt},
    {"DELETE", "/requests", ctl_requests_forget},
    {"GET", "/inflight", ctl_inflight},
    {"DELETE", "/inflight", ctl_inflight_reset},
    {"GET", "/delayed", ctl_delayed},
    {"GET", "/count", ctl_count},
    {NULL, "/state", ctl_state},
    {"DELETE", "/faults", ctl_faults_clear},
    {"POST", "/faults", ctl_fault_add},
    {"POST", "/down", ctl_down},
    {"POST", "/up", ctl_up},
    {"POST", "/reset", ctl_reset},
};

static enum MHD_Result on_control(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state)
{
    struct conn **cs = (struct conn **)state;
    (void)cls;
    (void)version;
    if (*cs == NULL || *upload_size)
        return collect(cs, upload, upload_size);
    cJSON *in = (*cs)->body.len ? cJSON_ParseWithLength((*cs)->body.data, (*cs)->body.len) : NULL;
    enum MHD_Result ret;
    size_t i = 0, n = sizeof controls / sizeof controls[0];
    while (i < n && (strcmp(url, controls[i].path) != 0 ||
                     (controls[i].method && strcmp(method, controls[i].method) != 0)))
        i++;
    pthread_mutex_lock(&K.mu);
    ret = i < n
              ? controls[i].fn(c, in)
              : respond(
                    c, 404,
                    "{\"message\":\"unknown control endpoint; see tests/doubles/kong/README.md\"}",
                    NULL);
    pthread_mutex_unlock(&K.mu);
    cJSON_Delete(in);
    return ret;
}

static void on_term(int s)
{
    (void)s;
    stopping = 1;
}

int main(int argc, char **argv)
{
    pthread_mutex_init(&K.mu, NULL);
    snprintf(K.version, sizeof K.version, "3.9.1");
    K.requests = cJSON_CreateArray();
    K.ts = calloc(MAX_T, sizeof *K.ts);
    uuid(K.node_id);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    (void)qs_unused;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--port-file") && v) {
            snprintf(K.port_file, sizeof K.port_file, "%s", v);
            i++;
        } else if (!strcmp(a, "--version") && v) {
            snprintf(K.version, sizeof K.version, "%s", v);
            i++;
        } else if (!strcmp(a, "--rbac-token") && v) {
            snprintf(K.rbac, sizeof K.rbac, "%s", v);
            i++;
        } else if (!strcmp(a, "--role") && v) {
            K.control_plane = !strcmp(v, "control_plane");
            i++;
        } else if (!strcmp(a, "--dbless")) {
            K.dbless = 1;
        } else {
            fprintf(stderr, "usage: kong-double --port-file FILE [--version V] [--dbless] "
                            "[--role traditional|control_plane] [--rbac-token T]\n");
            return 2;
        }
    }
    if (!K.port_file[0] || K.ts == NULL) {
        fprintf(stderr, "kong-double: --port-file is required\n");
        return 2;
    }
    K.admin = start_admin(0);
    K.control = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL,
        NULL, on_control, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_END);
    if (K.admin == NULL || K.control == NULL) {
        fprintf(stderr, "kong-double: cannot listen\n");
        return 1;
    }
    K.admin_port = MHD_get_daemon_info(K.admin, MHD_DAEMON_INFO_BIND_PORT)->port;
    K.control_port = MHD_get_daemon_info(K.control, MHD_DAEMON_INFO_BIND_PORT)->port;
    write_ports();
    fprintf(stderr, "kong-double %s: admin on 127.0.0.1:%d, control on 127.0.0.1:%d%s\n", K.version,
            K.admin_port, K.control_port, K.dbless ? " (DB-less)" : "");
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    while (!stopping)
        pause();
    if (K.admin)
        MHD_stop_daemon(K.admin);
    MHD_stop_daemon(K.control);
    return 0;
}
