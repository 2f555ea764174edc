/*
 * consul-double: flags, listeners, request dispatch (request log, faults,
 * down/hang agents) and the background ticker. See README.md.
 */
#include <errno.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/dur.h"
#include "lib/unconst.h"
#include "tests/doubles/consul/double.h"

struct dstate S;
static struct MHD_Daemon *control_mhd;
static int control_port;
static volatile sig_atomic_t stopping;
_Thread_local const char *index_override;

uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t bump(void)
{
    return ++S.raft;
}

void changed(void)
{
    S.wakes++;
    pthread_cond_broadcast(&S.changed);
    api_wake_waiters();
}

void svc_touch(const char *name, uint64_t index)
{
    int free_slot = -1;
    for (int i = 0; i < 1024; i++) {
        if (S.svc_changes[i].name[0] && strcmp(S.svc_changes[i].name, name) == 0) {
            S.svc_changes[i].index = index;
            return;
        }
        if (!S.svc_changes[i].name[0] && free_slot < 0)
            free_slot = i;
    }
    if (free_slot >= 0) {
        snprintf(S.svc_changes[free_slot].name, sizeof S.svc_changes[free_slot].name, "%s", name);
        S.svc_changes[free_slot].index = index;
    }
}

uint64_t svc_touched(const char *name)
{
    for (int i = 0; i < 1024; i++)
        if (S.svc_changes[i].name[0] && strcmp(S.svc_changes[i].name, name) == 0)
            return S.svc_changes[i].index;
    return 0;
}

const char *status_name(enum cstatus s)
{
    return s == ST_PASSING ? "passing" : s == ST_WARNING ? "warning" : "critical";
}

struct node *node_by_name(const char *name)
{
    for (int i = 0; i < 64; i++)
        if (S.nodes[i].used && strcmp(S.nodes[i].name, name) == 0)
            return &S.nodes[i];
    return NULL;
}

struct node *node_new(const char *name, const char *addr, int server)
{
    for (int i = 0; i < 64; i++) {
        if (!S.nodes[i].used) {
            struct node *n = &S.nodes[i];
            struct service *sv = n->services ? n->services : calloc((size_t)S.maxn, sizeof *sv);
            struct check *ck = n->checks ? n->checks : calloc((size_t)S.maxn, sizeof *ck);
            if (sv == NULL || ck == NULL) {
                free(sv);
                free(ck);
                return NULL;
            }
            memset(n, 0, sizeof *n);
            memset(sv, 0, (size_t)S.maxn * sizeof *sv);
            memset(ck, 0, (size_t)S.maxn * sizeof *ck);
            n->services = sv;
            n->checks = ck;
            n->used = 1;
            snprintf(n->name, sizeof n->name, "%s", name);
            snprintf(n->address, sizeof n->address, "%s", addr);
            n->server = server;
            n->status = 1;
            n->serf = ST_PASSING;
            n->create_index = n->modify_index = n->serf_index = bump();
            S.nodes_index = n->modify_index;
            S.checks_index = n->modify_index;
            return n;
        }
    }
    return NULL;
}

/* ---- responses ------------------------------------------------------------ */

enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                      const char *body, size_t len, const char *const *headers)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, unconst(body), MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    if (ctype)
        MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "X-Consul-Default-Acl-Policy", "allow");
    MHD_add_response_header(r, "Vary", "Accept-Encoding");
    for (const char *const *h = headers; h && h[0]; h += 2) {
        if (index_override && strcasecmp(h[0], "X-Consul-Index") == 0) {
            if (index_override[0])
                MHD_add_response_header(r, h[0], index_override);
            continue;
        }
        MHD_add_response_header(r, h[0], h[1]);
    }
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    return reply(c, status, "text/plain; charset=utf-8", text, strlen(text), NULL);
}

static void indent(struct buf *b, int depth)
{
    for (int i = 0; i < depth; i++)
        buf_puts(b, "    ");
}

/* One value the way Go's MarshalIndent lays it out: every member and
 * element on its own line, empty objects and arrays as {} and []. */
static int pretty_value(struct buf *b, const cJSON *v, int depth)
{
    if ((cJSON_IsObject(v) || cJSON_IsArray(v)) && v->child) {
        int obj = cJSON_IsObject(v);
        buf_puts(b, obj ? "{\n" : "[\n");
        for (const cJSON *e = v->child; e; e = e->next) {
            indent(b, depth + 1);
            if (obj) {
                cJSON *key = cJSON_CreateString(e->string ? e->string : "");
                char *k = key ? cJSON_PrintUnformatted(key) : NULL;
                cJSON_Delete(key);
                if (k == NULL)
                    return -1;
                buf_puts(b, k);
                buf_puts(b, ": ");
                free(k);
            }
            if (pretty_value(b, e, depth + 1) < 0)
                return -1;
            buf_puts(b, e->next ? ",\n" : "\n");
        }
        indent(b, depth);
        buf_puts(b, obj ? "}" : "]");
        return 0;
    }
    if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
        buf_puts(b, cJSON_IsObject(v) ? "{}" : "[]");
        return 0;
    }
    /* A scalar prints the same either way; print a detached copy so a
     * member's siblings are not printed with it. */
    cJSON *copy = cJSON_Duplicate(v, 0);
    char *s = copy ? cJSON_PrintUnformatted(copy) : NULL;
    cJSON_Delete(copy);
    if (s == NULL)
        return -1;
    buf_puts(b, s);
    free(s);
    return 0;
}

char *json_pretty(const cJSON *o)
{
    struct buf b;
    buf_init(&b, 0);
    if (pretty_value(&b, o, 0) < 0) {
        buf_free(&b);
        return NULL;
    }
    buf_puts(&b, "\n");
    return buf_steal(&b);
}

char *json_out(const cJSON *o)
{
    if (!S.pretty && !S.dev)
        return cJSON_PrintUnformatted(o);
    return json_pretty(o);
}

/* ---- dispatch ------------------------------------------------------------- */

struct conn {
    struct buf body;
    int too_big;
};

static ssize_t big_body(void *cls, uint64_t pos, char *out, size_t max)
{
    size_t total = (size_t)(uintptr_t)cls;
    if (pos >= total)
        return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = total - pos < max ? total - pos : max;
    for (size_t i = 0; i < n; i++)
        out[i] = (pos + i) == 0 ? '[' : ' ';
    return (ssize_t)n;
}

/* The first fault for a's url with a count left, taken (count-1); with
 * replacing_only, only one of the kinds that replace the answer. */
static struct fault *take_fault(const struct agent *a, const char *url, int replacing_only)
{
    static const char *const replacing[] = {"status", "garbage", "truncated", "big", "close", NULL};
    for (int i = 0; i < S.n_faults; i++) {
        struct fault *f = &S.faults[i];
        if (f->count <= 0)
            continue;
        int k = 0;
        while (replacing_only && replacing[k] && strcmp(replacing[k], f->kind) != 0)
            k++;
        if (replacing_only && !replacing[k])
            continue;
        if (f->agent[0] && strcmp(f->agent, a->name) != 0)
            continue;
        if (f->path[0] && strncmp(url, f->path, strlen(f->path)) != 0)
            continue;
        f->count--;
        return f;
    }
    return NULL;
}

struct qs {
    struct buf *b;
    int first;
};

static enum MHD_Result qs_append(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    struct qs *q = cls;
    (void)kind;
    buf_printf(q->b, "%c%s%s%s", q->first ? '?' : '&', key, value ? "=" : "", value ? value : "");
    q->first = 0;
    return MHD_YES;
}

static void log_request(struct agent *a, struct MHD_Connection *c, const char *url,
                        const char *method)
{
    struct buf full;
    buf_init(&full, 8192);
    buf_puts(&full, url);
    struct qs q = {&full, 1};
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, qs_append, &q);
    const char *tok = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Consul-Token");
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "agent", a ? a->name : "control");
    cJSON_AddStringToObject(e, "method", method);
    cJSON_AddStringToObject(e, "url", full.data ? full.data : url);
    if (tok)
        cJSON_AddStringToObject(e, "token_header", tok);
    else
        cJSON_AddNullToObject(e, "token_header");
    cJSON_AddNumberToObject(e, "time_ms", (double)now_ms());
    buf_free(&full);
    if (S.n_requests < 200000) { /* a counter: GetArraySize walks the list */
        cJSON_AddItemToArray(S.requests, e);
        S.n_requests++;
    } else
        cJSON_Delete(e);
}

/* The connection limit (see struct agent). Every client is 127.0.0.1 here,
 * so "per client" is per agent. */
static int conn_counted, conn_over_limit, conn_reset; /* socket context markers */

static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t len)
{
    struct agent *a = cls;
    (void)addr;
    (void)len;
    pthread_mutex_lock(&S.mu);
    int refuse = a->max_conns > 0 && a->limit_mode == LIMIT_CLOSE && a->open_conns >= a->max_conns;
    a->refused_conns += refuse;
    pthread_mutex_unlock(&S.mu);
    return refuse ? MHD_NO : MHD_YES; /* MHD_NO: closed at once, nothing read */
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct agent *a = cls;
    (void)c;
    pthread_mutex_lock(&S.mu);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        if (a->max_conns > 0 && a->limit_mode != LIMIT_CLOSE && a->open_conns >= a->max_conns) {
            *socket_context = a->limit_mode == LIMIT_429 ? &conn_over_limit : &conn_reset;
            a->refused_conns++;
        } else {
            *socket_context = &conn_counted;
            a->open_conns++;
        }
    } else if (*socket_context == &conn_counted) {
        a->open_conns--;
    }
    pthread_mutex_unlock(&S.mu);
}

/* A connection the limiter marked at accept: reset it, or answer 429 as
 * Consul's limiter does. MHD_YES when it was not marked. */
static enum MHD_Result limited(struct agent *a, struct MHD_Connection *c, const char *url,
                               const char *method, int *handled)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    *handled = ci && (ci->socket_context == &conn_reset || ci->socket_context == &conn_over_limit);
    if (!*handled)
        return MHD_YES;
    pthread_mutex_lock(&S.mu);
    log_request(a, c, url, method);
    pthread_mutex_unlock(&S.mu);
    if (ci->socket_context == &conn_reset) {
        /* Reset, not closed: on Linux, connecting a TCP socket to AF_UNSPEC
         * aborts it with a RST before MHD's own FIN. */
        const union MHD_ConnectionInfo *fi =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct sockaddr unspec = {.sa_family = AF_UNSPEC};
        if (fi)
            (void)connect(fi->connect_fd, &unspec, sizeof unspec);
        return MHD_NO;
    }
    /* What Consul's connection limiter writes, then it hangs up. */
    static const char *const h[] = {"Connection", "close", NULL};
    static const char msg[] = "Your IP is issuing too many concurrent connections, "
                              "please rate limit your calls\n";
    return reply(c, 429, "text/plain; charset=utf-8", msg, sizeof msg - 1, h);
}

/* Restarted, not yet rejoined: it knows no servers, no leader and nothing
 * of the catalog, and answers reads at once from its empty view. */
static int rejoining(const struct agent *a, const char *url, const char *method)
{
    return a->rejoin_until && now_ms() < a->rejoin_until && strcmp(method, "GET") == 0 &&
           (strncmp(url, "/v1/health/", 11) == 0 || strncmp(url, "/v1/catalog/", 12) == 0 ||
            strncmp(url, "/v1/status/", 11) == 0);
}

static enum MHD_Result empty_view(struct MHD_Connection *c, const char *url)
{
    const char *empty = strcmp(url, "/v1/status/leader") == 0      ? "\"\""
                        : strcmp(url, "/v1/catalog/services") == 0 ? "{}"
                                                                   : "[]";
    const char *h[] = {
        "X-Consul-Index", "1", "X-Consul-Knownleader", "false", "X-Consul-Lastcontact", "0", NULL};
    return reply(c, 200, "application/json", empty, strlen(empty), h);
}

/* An injected fault (see README): answered here, or *handled = 0 when the
 * request goes on (after a delay, or with an index to report). */
static enum MHD_Result fault_reply(struct MHD_Connection *c, const struct fault *f, int *handled)
{
    static const char *const h[] = {"X-Consul-Index", "999999", "X-Consul-Knownleader", "true",
                                    NULL};
    *handled = 1;
    if (strcmp(f->kind, "status") == 0)
        return reply_text(c, (unsigned)(f->status ? f->status : 500), f->body);
    if (strcmp(f->kind, "garbage") == 0) {
        const char *g = "<html>this is not JSON</html>";
        return reply(c, 200, "application/json", g, strlen(g), h);
    }
    if (strcmp(f->kind, "truncated") == 0) {
        const char *g = "[{\"Node\":{\"ID\":\"7c1f3a52\",\"Node\":\"node-a\",\"Addr";
        return reply(c, 200, "application/json", g, strlen(g), h);
    }
    if (strcmp(f->kind, "big") == 0) {
        struct MHD_Response *r = MHD_create_response_from_callback(
            f->size_bytes, 64 * 1024, big_body, (void *)(uintptr_t)f->size_bytes, NULL);
        MHD_add_response_header(r, "Content-Type", "application/json");
        MHD_add_response_header(r, "X-Consul-Index", "999999");
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (strcmp(f->kind, "close") == 0)
        return MHD_NO;
    *handled = 0;
    if (strcmp(f->kind, "delay") == 0) {
        struct timespec ts = {f->delay_ms / 1000, (f->delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    } else if (strcmp(f->kind, "index") == 0) {
        static _Thread_local char idx[64];
        if (f->index_raw[0] || f->index == 0)
            snprintf(idx, sizeof idx, "%s", f->index_raw);
        else
            snprintf(idx, sizeof idx, "%llu", (unsigned long long)f->index);
        index_override = idx;
    }
    return MHD_YES;
}

/* The URL of the request this thread serves while it has taken no fault:
 * a blocking query parked before a fault was set answers with it. */
static _Thread_local const char *unfaulted_url;

enum MHD_Result fault_after_wait(struct agent *a, struct MHD_Connection *c, int *handled)
{
    *handled = 0;
    struct fault *f = unfaulted_url ? take_fault(a, unfaulted_url, 1) : NULL;
    if (f == NULL)
        return MHD_YES;
    struct fault copy = *f;
    pthread_mutex_unlock(&S.mu);
    enum MHD_Result r = fault_reply(c, &copy, handled);
    pthread_mutex_lock(&S.mu);
    return r;
}

static enum MHD_Result on_agent(void *cls, struct MHD_Connection *c, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_size, void **state)
{
    struct agent *a = cls;
    struct conn *cs = *state;
    int handled;
    (void)version;
    if (cs == NULL) {
        enum MHD_Result r = limited(a, c, url, method, &handled);
        if (handled)
            return r;
        if ((cs = calloc(1, sizeof *cs)) == NULL)
            return MHD_NO;
        buf_init(&cs->body, 1024 * 1024);
        *state = cs;
        return MHD_YES;
    }
    if (*upload_size) {
        if (buf_append(&cs->body, upload, *upload_size) < 0)
            cs->too_big = 1;
        *upload_size = 0;
        return MHD_YES;
    }
    if (cs->too_big)
        return reply_text(c, 413, "Request body too large");
    pthread_mutex_lock(&S.mu);
    log_request(a, c, url, method);
    while (a->hang && !a->down && !stopping)
        pthread_cond_wait(&S.changed, &S.mu);
    if (a->down || stopping) {
        pthread_mutex_unlock(&S.mu);
        return MHD_NO;
    }
    struct fault f, *fp = take_fault(a, url, 0);
    if (fp)
        f = *fp;
    pthread_mutex_unlock(&S.mu);
    if (rejoining(a, url, method))
        return empty_view(c, url);
    index_override = NULL;
    unfaulted_url = fp ? NULL : url;
    if (fp) {
        enum MHD_Result r = fault_reply(c, &f, &handled);
        if (handled)
            return r;
    }
    return api_handle(a, c, url, method, cs->body.data ? cs->body.data : "", cs->body.len);
}

static enum MHD_Result on_control(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state)
{
    struct conn *cs = *state;
    (void)cls;
    (void)version;
    if (cs == NULL) {
        cs = calloc(1, sizeof *cs);
        if (cs == NULL)
            return MHD_NO;
        buf_init(&cs->body, 1024 * 1024);
        *state = cs;
        return MHD_YES;
    }
    if (*upload_size) {
        buf_append(&cs->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    return control_handle(c, url, method, cs->body.data ? cs->body.data : "", cs->body.len);
}

static void on_done(void *cls, struct MHD_Connection *c, void **state,
                    enum MHD_RequestTerminationCode code)
{
    struct conn *cs = *state;
    (void)cls;
    (void)c;
    (void)code;
    if (cs) {
        buf_free(&cs->body);
        free(cs);
        *state = NULL;
    }
}

int agent_start(struct agent *a)
{
    /* poll(), not select(): an HTTP/1.1 front (an h2 terminator) holds a
     * connection per blocking query, past select()'s 1,024 descriptors. */
    a->mhd = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL,
        (uint16_t)a->port, on_accept, a, on_agent, a, MHD_OPTION_CONNECTION_LIMIT, 20000U,
        MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_NOTIFY_CONNECTION, on_connection, a,
        MHD_OPTION_CONNECTION_TIMEOUT, 0U, MHD_OPTION_END);
    if (a->mhd == NULL)
        return -1;
    a->port = MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_BIND_PORT)->port;
    return 0;
}

void agent_stop(struct agent *a)
{
    if (a->mhd) {
        MHD_stop_daemon(a->mhd);
        a->mhd = NULL;
    }
}

struct agent *agent_add(const char *name)
{
    if (S.n_agents == 64 || node_by_name(name))
        return NULL;
    struct agent *a = &S.agents[S.n_agents];
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1");
    a->node = node_new(name, addr, 0);
    if (a->node == NULL)
        return NULL;
    a->node->agent = a;
    S.n_agents++;
    return a;
}

void write_port_file(void)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", S.port_file);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return;
    for (int i = 0; i < S.n_agents; i++)
        fprintf(f, "%s %d\n", S.agents[i].name, S.agents[i].port);
    fprintf(f, "control %d\n", control_port);
    fclose(f);
    rename(tmp, S.port_file);
}

static void on_term(int sig)
{
    (void)sig;
    stopping = 1;
}

static int dur_flag(const char *v, int64_t *out)
{
    return dur_parse_ms(v, out) == 0 && *out >= 0 ? 0 : -1;
}

/* The command line into S; 0, or the exit status of a usage error. */
static int parse_args(int argc, char **argv, int *servers, const char **agents, int *n_agents)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--port-file") && v) {
            snprintf(S.port_file, sizeof S.port_file, "%s", v);
            i++;
        } else if (!strcmp(a, "--servers") && v) {
            *servers = (int)strtol(v, NULL, 10);
            i++;
        } else if (!strcmp(a, "--agent") && v && *n_agents < 64) {
            agents[(*n_agents)++] = v;
            i++;
        } else if (!strcmp(a, "--datacenter") && v) {
            snprintf(S.dc, sizeof S.dc, "%s", v);
            i++;
        } else if (!strcmp(a, "--reap-interval") && v && dur_flag(v, &S.reap_interval_ms) == 0) {
            i++;
        } else if (!strcmp(a, "--reap-min") && v && dur_flag(v, &S.reap_min_ms) == 0) {
            i++;
        } else if (!strcmp(a, "--session-ttl-min") && v &&
                   dur_flag(v, &S.session_ttl_min_ms) == 0) {
            i++;
        } else if (!strcmp(a, "--max-per-agent") && v && strtol(v, NULL, 10) >= 16 &&
                   strtol(v, NULL, 10) <= 100000) {
            S.maxn = (int)strtol(v, NULL, 10);
            i++;
        } else if (!strcmp(a, "--dev")) {
            S.dev = 1;
        } else if (!strcmp(a, "--pretty")) {
            S.pretty = 1;
        } else {
            fprintf(stderr, "usage: consul-double --port-file FILE [--servers N] [--agent NAME]... "
                            "[--datacenter DC] [--dev] [--pretty] [--reap-interval D] "
                            "[--reap-min D] [--session-ttl-min D] [--max-per-agent N]\n");
            return 2;
        }
    }
    if (!S.port_file[0] || *servers < 1 || *servers > 7) {
        fprintf(stderr, "consul-double: --port-file is required; --servers 1..7\n");
        return 2;
    }
    return 0;
}

/* The servers (server-1 the leader) and the agents, each listening. */
static int start_cluster(int servers, const char **agents, int n_agents)
{
    pthread_mutex_lock(&S.mu);
    for (int i = 0; i < servers; i++) {
        char name[32], addr[32];
        snprintf(name, sizeof name, "server-%d", i + 1);
        snprintf(addr, sizeof addr, "10.0.0.%d", i + 1);
        node_new(name, addr, 1);
    }
    snprintf(S.leader, sizeof S.leader, "server-1");
    for (int i = 0; i < n_agents; i++) {
        struct agent *a = agent_add(agents[i]);
        if (a == NULL || agent_start(a) < 0) {
            fprintf(stderr, "consul-double: cannot start agent %s\n", agents[i]);
            return -1;
        }
    }
    pthread_mutex_unlock(&S.mu);
    return 0;
}

/* Every parked query answered or dropped, every listener closed. */
static void stop_cluster(void)
{
    pthread_mutex_lock(&S.mu);
    changed();
    pthread_mutex_unlock(&S.mu);
    for (int i = 0; i < S.n_agents; i++) {
        pthread_mutex_lock(&S.mu);
        S.agents[i].down = 1;
        changed();
        pthread_mutex_unlock(&S.mu);
        agent_stop(&S.agents[i]);
    }
    MHD_stop_daemon(control_mhd);
}

int main(int argc, char **argv)
{
    int servers = 3, n_agents = 0, rc;
    const char *agents[64];
    pthread_mutex_init(&S.mu, NULL);
    pthread_cond_init(&S.changed, NULL);
    snprintf(S.dc, sizeof S.dc, "dc1");
    S.reap_interval_ms = 30000;
    S.reap_min_ms = 60000;
    S.session_ttl_min_ms = 10000;
    S.requests = cJSON_CreateArray();
    S.maxn = MAXN_DEFAULT;
    if ((rc = parse_args(argc, argv, &servers, agents, &n_agents)) != 0)
        return rc;
    if (n_agents == 0)
        agents[n_agents++] = "node-1";
    if (start_cluster(servers, agents, n_agents) < 0)
        return 1;
    /* poll(2), not select(2), as the agents: with hundreds of sidecars
     * connected, the control port's connections get descriptors past
     * FD_SETSIZE, which select cannot watch (the fleet bench saw them
     * closed unanswered). */
    control_mhd = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL,
        NULL, on_control, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_END);
    if (control_mhd == NULL) {
        fprintf(stderr, "consul-double: cannot start the control listener\n");
        return 1;
    }
    control_port = MHD_get_daemon_info(control_mhd, MHD_DAEMON_INFO_BIND_PORT)->port;
    pthread_mutex_lock(&S.mu);
    write_port_file();
    pthread_mutex_unlock(&S.mu);
    fprintf(stderr, "consul-double: %d server(s), %d agent(s), control on 127.0.0.1:%d\n", servers,
            n_agents, control_port);
    pthread_t tick;
    pthread_create(&tick, NULL, ticker, NULL);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    while (!stopping)
        pause();
    stop_cluster();
    return 0;
}
