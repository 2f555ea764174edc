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
    int counted;   /* in K.inflight */
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

static enum MHD_Result qs_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
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
    cJSON_AddBoolToObject(entry, "token", MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Kong-Admin-Token") != NULL);
    cJSON_AddStringToObject(entry, "body", (*cs)->body.data ? (*cs)->body.data : "");
    cJSON_AddNumberToObject(entry, "time_ms", mono_ms());   /* arrival */
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
        ret = respond(c, (unsigned)(f.status ? f.status : 500), f.body[0] ? f.body : "{\"message\":\"An unexpected error occurred\"}", &status);
    else if (faulted && !strcmp(f.kind, "garbage"))
        ret = respond(c, 200, "{\"data\": [ this is not json", &status);
    else
        ret = admin(c, url, method, (*cs)->body.data ? (*cs)->body.data : "", (*cs)->body.len, &status);
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

static void on_done(void *cls, struct MHD_Connection *c, void **state, enum MHD_RequestTerminationCode t)
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
    return MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL,
                            (uint16_t)port, NULL, NULL, on_admin, NULL,
                            MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_END);
}

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
    pthread_mutex_lock(&K.mu);
    if (!strcmp(url, "/requests") && !strcmp(method, "GET")) {
        ret = send_json(c, 200, cJSON_Duplicate(K.requests, 1), NULL);
    } else if (!strcmp(url, "/requests.txt") && !strcmp(method, "GET")) {
        /* One line a request: METHOD PATH STATUS USER-AGENT (for grep);
         * ?time puts the arrival time (monotonic ms) first. */
        struct buf b;
        buf_init(&b, 0);
        const cJSON *e;
        const char *tv = NULL;
        size_t tl = 0;   /* "?time" has no value: look the key up, not the value */
        int with_time = MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "time", 4, &tv,
                                                      &tl) == MHD_YES;
        cJSON_ArrayForEach(e, K.requests) {
            const cJSON *m = cJSON_GetObjectItem(e, "method"), *p = cJSON_GetObjectItem(e, "path");
            const cJSON *st = cJSON_GetObjectItem(e, "status"), *ua = cJSON_GetObjectItem(e, "user_agent");
            if (with_time)
                buf_printf(&b, "%.0f ", cJSON_GetObjectItem(e, "time_ms")->valuedouble);
            buf_printf(&b, "%s %s %d %s\n", m->valuestring, p->valuestring, st ? st->valueint : 0,
                       ua->valuestring);
        }
        ret = respond(c, 200, b.data ? b.data : "", NULL);
        buf_free(&b);
    } else if (!strcmp(url, "/inflight") && !strcmp(method, "GET")) {
        char n[64];
        snprintf(n, sizeof n, "{\"now\": %d, \"peak\": %d}", __atomic_load_n(&K.inflight, __ATOMIC_SEQ_CST),
                 __atomic_load_n(&K.peak, __ATOMIC_SEQ_CST));
        ret = respond(c, 200, n, NULL);
    } else if (!strcmp(url, "/inflight") && !strcmp(method, "DELETE")) {
        __atomic_store_n(&K.peak, __atomic_load_n(&K.inflight, __ATOMIC_SEQ_CST), __ATOMIC_SEQ_CST);
        ret = respond(c, 200, "{}", NULL);
    } else if (!strcmp(url, "/delayed") && !strcmp(method, "GET")) {
        char n[32];
        snprintf(n, sizeof n, "%d", K.delayed);
        ret = respond(c, 200, n, NULL);
    } else if (!strcmp(url, "/writes.txt") && !strcmp(method, "GET")) {
        /* Writes only, with their bodies: METHOD PATH STATUS[ BODY]. */
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
        ret = respond(c, 200, b.data ? b.data : "", NULL);
        buf_free(&b);
    } else if (!strcmp(url, "/requests") && !strcmp(method, "DELETE")) {
        cJSON_Delete(K.requests);
        K.requests = cJSON_CreateArray();
        ret = send_json(c, 200, cJSON_CreateObject(), NULL);
    } else if (!strcmp(url, "/count") && !strcmp(method, "GET")) {
        /* What /state would list, counted: cheap enough to poll while a
         * sync of 10,000 targets runs, without slowing it. */
        int nu = 0, nt = 0;
        for (int i = 0; i < MAX_UP; i++)
            nu += K.ups[i].used;
        for (int i = 0; i < K.t_hi; i++)
            nt += K.ts[i].used;
        char n[64];
        snprintf(n, sizeof n, "{\"upstreams\": %d, \"targets\": %d}", nu, nt);
        ret = respond(c, 200, n, NULL);
    } else if (!strcmp(url, "/state")) {
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
        ret = send_json(c, 200, o, NULL);
    } else if (!strcmp(url, "/faults") && !strcmp(method, "DELETE")) {
        K.n_faults = 0;
        ret = send_json(c, 200, cJSON_CreateObject(), NULL);
    } else if (!strcmp(url, "/faults") && !strcmp(method, "POST") && cJSON_IsObject(in) && K.n_faults < 64) {
        struct fault *f = &K.faults[K.n_faults++];
        memset(f, 0, sizeof *f);
        const cJSON *v;
        f->count = (v = cJSON_GetObjectItem(in, "count")) && cJSON_IsNumber(v) ? v->valueint : 1;
        if ((v = cJSON_GetObjectItem(in, "path")) && cJSON_IsString(v))
            snprintf(f->path, sizeof f->path, "%s", v->valuestring);
        if ((v = cJSON_GetObjectItem(in, "method")) && cJSON_IsString(v))
            snprintf(f->method, sizeof f->method, "%s", v->valuestring);
        if ((v = cJSON_GetObjectItem(in, "kind")) && cJSON_IsString(v))
            snprintf(f->kind, sizeof f->kind, "%s", v->valuestring);
        if ((v = cJSON_GetObjectItem(in, "body")) && cJSON_IsString(v))
            snprintf(f->body, sizeof f->body, "%s", v->valuestring);
        if ((v = cJSON_GetObjectItem(in, "status")) && cJSON_IsNumber(v))
            f->status = v->valueint;
        if ((v = cJSON_GetObjectItem(in, "delay_ms")) && cJSON_IsNumber(v))
            f->delay_ms = (long)v->valuedouble;
        ret = send_json(c, 200, cJSON_CreateObject(), NULL);
    } else if (!strcmp(url, "/down") && !strcmp(method, "POST")) {
        K.down = 1;
        struct MHD_Daemon *d = K.admin;
        K.admin = NULL;
        pthread_mutex_unlock(&K.mu);
        if (d)
            MHD_stop_daemon(d);
        pthread_mutex_lock(&K.mu);
        ret = send_json(c, 200, cJSON_CreateObject(), NULL);
    } else if (!strcmp(url, "/up") && !strcmp(method, "POST")) {
        K.down = 0;
        if (K.admin == NULL)
            K.admin = start_admin(K.admin_port);
        ret = K.admin ? send_json(c, 200, cJSON_CreateObject(), NULL)
                      : respond(c, 500, "{\"message\":\"cannot listen again\"}", NULL);
    } else if (!strcmp(url, "/reset") && !strcmp(method, "POST")) {
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
        ret = send_json(c, 200, cJSON_CreateObject(), NULL);
    } else {
        ret = respond(c, 404, "{\"message\":\"unknown control endpoint; see tests/doubles/kong/README.md\"}", NULL);
    }
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
    K.control = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD,
                                 0, NULL, NULL, on_control, NULL, MHD_OPTION_NOTIFY_COMPLETED,
                                 on_done, NULL, MHD_OPTION_END);
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

