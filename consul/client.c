/* The Consul HTTP client; see client.h. */
#include "consul/client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/queue.h"
#include "lib/rand.h"

#define CONSUL_DEFAULT_ADDR "127.0.0.1:8500"
#define CONSUL_DEFAULT_MAX_BODY (8u * 1024 * 1024)
/* /v1/health/state/<state> lists every check of the cluster in that state
 * (the change detector's long-polls; in an outage, all of them): ~300 bytes
 * a check, so 100,000 checks need more than the default cap. Still bounded. */
#define CONSUL_CLUSTER_WIDE_MAX_BODY (64u * 1024 * 1024)
#define CONSUL_DEFAULT_TIMEOUT_MS 10000
#define CONSUL_LIMIT_PATHS 16
#define CONSUL_LIMIT_CLOSE_MS 1000
#define CONSUL_LIMIT_SUSPECT_MS 10000
#define CONSUL_LIMIT_CONFIRM_MS 1000

struct consul_call {
    struct consul_client *c;
    struct http_call *http;
    char *method, *path, *body;
    size_t body_len;
    long timeout_ms;
    int blocking;
    int urgent; /* counted in urgent_inflight, its own queue */
    consul_done_fn fn;
    void *arg;
    struct consul_call *next; /* in-flight list */
    struct qlink link;        /* in its queue while waiting for a slot */
    int queued;
    uint64_t started_ms; /* when it went on the wire */
};

struct consul_client {
    struct loop *loop;
    char *address;
    char base[512];     /* http(s)://host:port */
    char sock[512];     /* unix socket path or "" */
    char *token_header; /* "X-Consul-Token: ..." or NULL */
    char *user_agent;
    struct http_tls tls;
    char *tls_strings[5];
    char connect_to[700];
    int https;        /* requests offer h2 and share connections */
    int http_version; /* of the last answer: 1, 2 (HTTP/2); 0 none yet */
    size_t max_body;
    int max_inflight;
    int inflight; /* ordinary requests in flight */
    int blocking_inflight;
    int urgent_inflight;
    struct queue ordinary, urgent; /* calls waiting for a slot of their kind */
    struct consul_call *active;    /* everything started, for free() */
    struct consul_client_stats stats;
    /* Unreachable: a connection failed and nothing has answered since. A
     * cheap probe then asks every second, and the first answer tells every
     * listener at once, so nothing waits out its own backoff. */
    int unreachable;
    struct loop_timer *probe_timer;
    struct consul_call *probe_call;
    struct {
        void (*fn)(void *);
        void *arg;
    } listeners[CONSUL_MAX_LISTENERS];
    int n_listeners;
    void (*on_limit)(int limited, const char *why, void *arg);
    void *limit_arg;
    int limited;                                 /* on_limit(1) reported, not yet recovered */
    uint64_t last_limited_ms;                    /* monotonic time of the last limited answer */
    uint64_t limit_suspect_ms;                   /* a new connection closed at once, unconfirmed */
    char limited_paths[CONSUL_LIMIT_PATHS][128]; /* refused since, not yet answered */
};

static void on_probe_timer(void *arg);

int consul_client_is_https(const struct consul_client *c)
{
    return c->https;
}

int consul_client_http_version(const struct consul_client *c)
{
    return c->http_version;
}

int consul_client_connections(const struct consul_client *c)
{
    (void)c;
    return http_connections(CONSUL_HTTP_POOL);
}

const struct consul_client_stats *consul_client_stats(const struct consul_client *c)
{
    return &c->stats;
}

int consul_parse_index(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (s == NULL || *s == '\0')
        return -1;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int valid_hostport(const char *hp)
{
    if (*hp == '\0')
        return 0;
    const char *colon = hp[0] == '[' ? strstr(hp, "]:") : strrchr(hp, ':');
    if (colon == NULL)
        return 1; /* host only */
    const char *port = colon + (hp[0] == '[' ? 2 : 1);
    char *end;
    errno = 0;
    long v = strtol(port, &end, 10);
    return *port && !*end && !errno && v > 0 && v <= 65535;
}

int consul_parse_address(const char *addr, char *base, size_t baselen, char *sock, size_t socklen,
                         int *tls_required, char *err, size_t errlen)
{
    const char *a = addr && *addr ? addr : CONSUL_DEFAULT_ADDR;
    *tls_required = 0;
    sock[0] = '\0';
    if (strncmp(a, "unix://", 7) == 0) {
        if (a[7] != '/') {
            snprintf(err, errlen, "consul address \"%s\": unix:// needs an absolute path", a);
            return -1;
        }
        snprintf(sock, socklen, "%s", a + 7);
        snprintf(base, baselen, "http://localhost");
        return 0;
    }
    const char *scheme = "http";
    const char *hp = a;
    if (strncmp(a, "http://", 7) == 0) {
        hp = a + 7;
    } else if (strncmp(a, "https://", 8) == 0) {
        hp = a + 8;
        scheme = "https";
        *tls_required = 1;
    } else if (strstr(a, "://")) {
        snprintf(err, errlen, "consul address \"%s\": unsupported scheme (use http, https or unix)",
                 a);
        return -1;
    }
    char host[512];
    snprintf(host, sizeof host, "%s", hp);
    size_t hl = strlen(host);
    while (hl > 0 && host[hl - 1] == '/')
        host[--hl] = '\0';
    if (strchr(host, '/') || strchr(host, '?') || strchr(host, '@') || !valid_hostport(host)) {
        snprintf(err, errlen, "consul address \"%s\": expected host:port", a);
        return -1;
    }
    snprintf(base, baselen, "%s://%s", scheme, host);
    return 0;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

struct consul_client *consul_client_new(struct loop *l, const struct consul_client_opts *o,
                                        char *err, size_t errlen)
{
    struct consul_client *c = calloc(1, sizeof *c);
    int tls = 0;
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->loop = l;
    c->probe_timer = loop_timer_new(l, on_probe_timer, c);
    if (c->probe_timer == NULL)
        goto oom;
    c->address = strdup(o->address && *o->address ? o->address : CONSUL_DEFAULT_ADDR);
    if (c->address == NULL || consul_parse_address(c->address, c->base, sizeof c->base, c->sock,
                                                   sizeof c->sock, &tls, err, errlen) < 0)
        goto fail;
    c->https = tls;
    c->max_body = o->max_body ? o->max_body : CONSUL_DEFAULT_MAX_BODY;
    c->max_inflight = o->max_inflight > 0 ? o->max_inflight : 4;
    c->user_agent = dup_or_null(o->user_agent);
    c->on_limit = o->on_limit;
    c->limit_arg = o->limit_arg;
    if (o->token && *o->token) {
        size_t n = strlen(o->token) + 32;
        c->token_header = malloc(n);
        if (c->token_header == NULL)
            goto oom;
        snprintf(c->token_header, n, "X-Consul-Token: %s", o->token);
    }
    const char *in[5] = {o->tls.cacert, o->tls.capath, o->tls.client_cert, o->tls.client_key,
                         o->tls.server_name};
    for (int i = 0; i < 5; i++) {
        c->tls_strings[i] = dup_or_null(in[i]);
        if (in[i] && !c->tls_strings[i])
            goto oom;
    }
    c->tls.cacert = c->tls_strings[0];
    c->tls.capath = c->tls_strings[1];
    c->tls.client_cert = c->tls_strings[2];
    c->tls.client_key = c->tls_strings[3];
    c->tls.server_name = c->tls_strings[4];
    c->tls.insecure = o->tls.insecure;
    /* Verify the agent's certificate against another name: put that name
     * in the URL and tell curl to connect to the real address. */
    if (tls && c->tls.server_name && *c->tls.server_name) {
        /* Copies first: base is rewritten from its own parts. */
        char host[512], port[16] = "443";
        snprintf(host, sizeof host, "%s", c->base + 8);
        char *colon = strrchr(host, ':');
        if (colon && !strchr(colon, ']')) {
            snprintf(port, sizeof port, "%s", colon + 1);
            *colon = '\0';
        }
        snprintf(c->connect_to, sizeof c->connect_to, "%s:%s:%s:%s", c->tls.server_name, port, host,
                 port);
        snprintf(c->base, sizeof c->base, "https://%s:%s", c->tls.server_name, port);
    }
    return c;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    consul_client_free(c);
    return NULL;
}

static void call_free(struct consul_call *call)
{
    free(call->method);
    free(call->path);
    free(call->body);
    free(call);
}

/* The first call of q, unlinked; NULL when empty. */
static struct consul_call *pop_call(struct queue *q)
{
    struct qlink *l = queue_pop(q);
    return l ? QUEUE_ITEM(l, struct consul_call, link) : NULL;
}

static void unlink_active(struct consul_client *c, struct consul_call *call)
{
    for (struct consul_call **pp = &c->active; *pp; pp = &(*pp)->next) {
        if (*pp == call) {
            *pp = call->next;
            return;
        }
    }
}

void consul_client_free(struct consul_client *c)
{
    if (c == NULL)
        return;
    while (c->active) {
        struct consul_call *call = c->active;
        c->active = call->next;
        http_cancel(call->http);
        call_free(call);
    }
    struct consul_call *call;
    while ((call = pop_call(&c->ordinary)) != NULL || (call = pop_call(&c->urgent)) != NULL)
        call_free(call);
    loop_timer_free(c->probe_timer);
    free(c->address);
    free(c->token_header);
    free(c->user_agent);
    for (int i = 0; i < 5; i++)
        free(c->tls_strings[i]);
    free(c);
}

const char *consul_client_address(const struct consul_client *c)
{
    return c->address;
}

int consul_client_inflight(const struct consul_client *c)
{
    return c->inflight + c->urgent_inflight + c->blocking_inflight;
}

int consul_client_queued(const struct consul_client *c)
{
    return (int)(c->ordinary.n + c->urgent.n);
}

static int start_call(struct consul_call *call, char *err, size_t errlen);

/* The budget a call is counted against (blocking calls: none that limits). */
static int *budget(struct consul_client *c, const struct consul_call *call)
{
    return call->blocking ? &c->blocking_inflight
           : call->urgent ? &c->urgent_inflight
                          : &c->inflight;
}

/* The next queued call that may start now: urgent ones first, each kind
 * within its own budget. Unlinked from its queue; NULL if none. */
static struct consul_call *next_startable(struct consul_client *c)
{
    if (c->urgent.head && c->urgent_inflight < CONSUL_URGENT_SLOTS)
        return pop_call(&c->urgent);
    if (c->ordinary.head && c->inflight < c->max_inflight)
        return pop_call(&c->ordinary);
    return NULL;
}

int consul_is_connection_limit(long status, enum http_error err, int closed_by_peer,
                               int new_connection, long elapsed_ms)
{
    if (err == HTTP_OK)
        return status == 429;
    return closed_by_peer && new_connection && elapsed_ms < CONSUL_LIMIT_CLOSE_MS;
}

/* One report per change of the whole client's limited state. While Consul
 * limits us, requests on connections it already holds get through and new
 * ones are refused, so a good answer alone does not end it: every path
 * refused meanwhile must have been answered since, and no request refused
 * for CONSUL_LIMIT_QUIET_MS (a path nobody asks again, a renewed session's,
 * stops counting after CONSUL_LIMIT_FORGET_MS). No flapping lines. */
#define CONSUL_LIMIT_QUIET_MS 15000
#define CONSUL_LIMIT_FORGET_MS 60000

static void limited_path(struct consul_client *c, const char *path_and_query, int refused)
{
    char p[128];
    snprintf(p, sizeof p, "%.*s", (int)strcspn(path_and_query, "?"), path_and_query);
    int free_slot = -1;
    for (int i = 0; i < CONSUL_LIMIT_PATHS; i++) {
        if (c->limited_paths[i][0] == '\0') {
            if (free_slot < 0)
                free_slot = i;
        } else if (strcmp(c->limited_paths[i], p) == 0) {
            if (!refused)
                c->limited_paths[i][0] = '\0';
            return;
        }
    }
    if (refused && free_slot >= 0) /* full: the quiet period alone decides */
        snprintf(c->limited_paths[free_slot], sizeof c->limited_paths[free_slot], "%s", p);
}

static int limited_paths_left(const struct consul_client *c)
{
    for (int i = 0; i < CONSUL_LIMIT_PATHS; i++)
        if (c->limited_paths[i][0])
            return 1;
    return 0;
}

/* Whether one answer is limited. A 429 says so. A new connection closed at
 * once is a suspicion only, as an agent going down or restarting cuts the
 * requests in flight (and those in its listen queue) alike: another such
 * close, of a request sent one to ten seconds after the first one,
 * confirms it (a down agent refuses new connections instead, which clears
 * it; a restarted one answers). An unconfirmed one is still marked limited, so nobody logs it, and
 * is backed off like any error. *confirmed: the client knows it now. */
static int limit_verdict(struct consul_client *c, const struct consul_call *call,
                         const struct http_response *resp, int *confirmed)
{
    uint64_t now = loop_clock_ms();
    *confirmed = 0;
    if (resp->err == HTTP_ERR_CONNECT) {
        c->limit_suspect_ms = 0;
        return 0;
    }
    if (!consul_is_connection_limit(resp->status, resp->err, resp->closed_by_peer,
                                    resp->new_connection, resp->elapsed_ms))
        return 0;
    if (c->limit_suspect_ms && now - c->limit_suspect_ms > CONSUL_LIMIT_SUSPECT_MS)
        c->limit_suspect_ms = 0;
    if (resp->err == HTTP_OK || c->limited ||
        (c->limit_suspect_ms &&
         call->started_ms >= c->limit_suspect_ms + CONSUL_LIMIT_CONFIRM_MS)) {
        *confirmed = 1;
        return 1;
    }
    if (c->limit_suspect_ms == 0)
        c->limit_suspect_ms = now;
    return 1;
}

static void note_limit(struct consul_client *c, const struct consul_response *r,
                       const char *path_and_query, int confirmed)
{
    char why[300];
    uint64_t now = loop_clock_ms();
    if (r->limited)
        c->last_limited_ms = now;
    if (c->limited || confirmed)
        limited_path(c, path_and_query, r->limited);
    if (r->limited && confirmed && !c->limited) {
        c->limited = 1;
        if (r->err == HTTP_OK)
            snprintf(why, sizeof why, "HTTP 429 from %s", c->address);
        else
            snprintf(why, sizeof why, "%s closed a new connection at once: %s", c->address,
                     r->error ? r->error : "no answer");
        if (c->on_limit)
            c->on_limit(1, why, c->limit_arg);
    } else if (!r->limited && r->err == HTTP_OK && c->limited &&
               now - c->last_limited_ms >= CONSUL_LIMIT_QUIET_MS &&
               (!limited_paths_left(c) || now - c->last_limited_ms >= CONSUL_LIMIT_FORGET_MS)) {
        memset(c->limited_paths, 0, sizeof c->limited_paths);
        c->limited = 0;
        if (c->on_limit)
            c->on_limit(0, c->address, c->limit_arg);
    }
}

static void pump_queue(struct consul_client *c)
{
    struct consul_call *call;
    while ((call = next_startable(c)) != NULL) {
        char err[256];
        call->next = NULL;
        call->queued = 0;
        if (start_call(call, err, sizeof err) < 0) {
            /* Could not even start: report it as a transport failure, so the
             * async contract (the callback fires once) holds. */
            struct consul_response r = {0};
            r.err = HTTP_ERR_OTHER;
            r.error = err;
            r.body = "";
            r.known_leader = -1;
            r.last_contact_ms = -1;
            consul_done_fn fn = call->fn;
            void *arg = call->arg;
            call_free(call);
            fn(&r, arg);
        }
    }
}

static void on_http_done(struct http_response *resp, void *arg)
{
    struct consul_call *call = arg;
    struct consul_client *c = call->c;
    char idx[64], leader[16], contact[32], hash[128];
    struct consul_response r = {0};

    unlink_active(c, call);
    (*budget(c, call))--;

    if (resp->err != HTTP_OK)
        c->stats.transport_error++;
    else if (resp->status >= 400)
        c->stats.http_error++;
    else
        c->stats.ok++;
    r.status = resp->status;
    r.err = resp->err;
    r.error = resp->err != HTTP_OK ? resp->error : NULL;
    r.body = resp->body.data ? resp->body.data : "";
    r.body_len = resp->body.len;
    r.raw = resp;
    if (resp->err == HTTP_OK)
        c->http_version = resp->http_version;
    r.known_leader = -1;
    r.last_contact_ms = -1;
    if (http_header(resp, "X-Consul-Index", idx, sizeof idx) &&
        consul_parse_index(idx, &r.index) == 0)
        r.has_index = 1;
    if (http_header(resp, "X-Consul-Knownleader", leader, sizeof leader))
        r.known_leader = strcasecmp(leader, "true") == 0;
    if (http_header(resp, "X-Consul-Lastcontact", contact, sizeof contact))
        r.last_contact_ms = strtol(contact, NULL, 10);
    if (http_header(resp, "X-Consul-Contenthash", hash, sizeof hash))
        r.content_hash = hash;
    int confirmed;
    r.limited = limit_verdict(c, call, resp, &confirmed);
    note_limit(c, &r, call->path, confirmed);

    if (call == c->probe_call)
        c->probe_call = NULL;
    int recovered = 0;
    if (resp->err == HTTP_ERR_CONNECT) {
        c->unreachable = 1;
        if (!c->probe_call && !loop_timer_active(c->probe_timer))
            loop_timer_start(c->probe_timer, rand_jitter_around(CONSUL_PROBE_MS, 0.2));
    } else if (resp->err == HTTP_OK && c->unreachable) {
        c->unreachable = 0;
        recovered = 1;
        loop_timer_stop(c->probe_timer);
        consul_cancel(c->probe_call);
        c->probe_call = NULL;
    }

    consul_done_fn fn = call->fn;
    void *fn_arg = call->arg;
    call_free(call);
    fn(&r, fn_arg);
    for (int i = 0; recovered && i < c->n_listeners; i++)
        c->listeners[i].fn(c->listeners[i].arg);
    /* The callback may have freed the client only by contract violation;
     * it is still alive here. */
    pump_queue(c);
}

static int start_call(struct consul_call *call, char *err, size_t errlen)
{
    struct consul_client *c = call->c;
    char url[4096];
    const char *headers[4];
    int nh = 0;
    if (call->body)
        headers[nh++] = "Content-Type: application/json";
    if (c->token_header)
        headers[nh++] = c->token_header;
    headers[nh] = NULL;
    snprintf(url, sizeof url, "%s%s", c->base, call->path);
    struct http_request rq = {
        .method = call->method,
        .url = url,
        .unix_socket = c->sock[0] ? c->sock : NULL,
        .body = call->body,
        .body_len = call->body_len,
        .headers = headers,
        .user_agent = c->user_agent,
        .timeout_ms = call->timeout_ms,
        .max_body = strncmp(call->path, "/v1/health/state/", 17) == 0 &&
                            c->max_body < CONSUL_CLUSTER_WIDE_MAX_BODY
                        ? CONSUL_CLUSTER_WIDE_MAX_BODY
                        : c->max_body,
        .tls = &c->tls,
        .connect_to = c->connect_to[0] ? c->connect_to : NULL,
        .multiplex = c->https,
        .pool = CONSUL_HTTP_POOL,
    };
    call->started_ms = loop_clock_ms();
    call->http = http_start(c->loop, &rq, on_http_done, call, err, errlen);
    if (call->http == NULL)
        return -1;
    (*budget(c, call))++;
    call->next = c->active;
    c->active = call;
    return 0;
}

struct consul_call *consul_request(struct consul_client *c, const char *method,
                                   const char *path_and_query, const char *body, size_t body_len,
                                   long timeout_ms, int flags, consul_done_fn fn, void *arg,
                                   char *err, size_t errlen)
{
    int blocking = (flags & CONSUL_REQ_BLOCKING) != 0;
    struct consul_call *call = calloc(1, sizeof *call);
    if (call == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    call->c = c;
    call->method = strdup(method ? method : "GET");
    call->path = strdup(path_and_query);
    call->body = body ? malloc(body_len + 1) : NULL;
    if (!call->method || !call->path || (body && !call->body)) {
        call_free(call);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (body) {
        memcpy(call->body, body, body_len);
        call->body[body_len] = '\0';
    }
    call->body_len = body_len;
    call->timeout_ms = timeout_ms > 0 ? timeout_ms : CONSUL_DEFAULT_TIMEOUT_MS;
    call->blocking = blocking;
    call->urgent = !blocking && (flags & CONSUL_REQ_URGENT);
    call->fn = fn;
    call->arg = arg;
    int full =
        call->urgent ? c->urgent_inflight >= CONSUL_URGENT_SLOTS : c->inflight >= c->max_inflight;
    if (!blocking && full) {
        call->queued = 1;
        queue_push(call->urgent ? &c->urgent : &c->ordinary, &call->link);
        return call;
    }
    if (start_call(call, err, errlen) < 0) {
        call_free(call);
        return NULL;
    }
    return call;
}

void consul_cancel(struct consul_call *call)
{
    if (call == NULL)
        return;
    struct consul_client *c = call->c;
    if (call->queued) {
        queue_remove(call->urgent ? &c->urgent : &c->ordinary, &call->link);
        call_free(call);
        return;
    }
    unlink_active(c, call);
    http_cancel(call->http);
    (*budget(c, call))--;
    call_free(call);
    pump_queue(c);
}

static void on_probe_done(const struct consul_response *r, void *arg)
{
    struct consul_client *c = arg;
    /* An answer was handled in on_http_done (recovered), and so was a
     * refused connection (the next probe is due); anything else (a
     * timeout) asks again too. */
    if (c->unreachable && !loop_timer_active(c->probe_timer))
        loop_timer_start(c->probe_timer, rand_jitter_around(CONSUL_PROBE_MS, 0.2));
}

static void on_probe_timer(void *arg)
{
    struct consul_client *c = arg;
    char err[128];
    if (!c->unreachable || c->probe_call)
        return;
    c->probe_call = consul_request(c, "GET", "/v1/status/leader", NULL, 0, 2000, 0, on_probe_done,
                                   c, err, sizeof err);
    if (c->probe_call == NULL)
        loop_timer_start(c->probe_timer, rand_jitter_around(CONSUL_PROBE_MS, 0.2));
}

int consul_client_on_recover(struct consul_client *c, void (*fn)(void *), void *arg)
{
    if (c->n_listeners >= CONSUL_MAX_LISTENERS)
        return -1;
    c->listeners[c->n_listeners].fn = fn;
    c->listeners[c->n_listeners].arg = arg;
    c->n_listeners++;
    return 0;
}

struct consul_call *consul_get_adapter(void *ctx, const char *path_and_query, long timeout_ms,
                                       int blocking, consul_done_fn fn, void *arg, char *err,
                                       size_t errlen)
{
    return consul_request(ctx, "GET", path_and_query, NULL, 0, timeout_ms, blocking, fn, arg, err,
                          errlen);
}

void consul_cancel_adapter(void *ctx, struct consul_call *call)
{
    (void)ctx;
    consul_cancel(call);
}

const char *consul_describe_error(const struct consul_response *r, const char *method,
                                  const char *path, char *out, size_t len)
{
    /* Only the path: a query string could carry anything. */
    char p[256];
    snprintf(p, sizeof p, "%s", path);
    char *q = strchr(p, '?');
    if (q)
        *q = '\0';
    if (r->err != HTTP_OK) {
        snprintf(out, len, "%s %s: %s", method, p, r->error ? r->error : "transport error");
        return out;
    }
    char body[220];
    size_t n = 0;
    for (size_t i = 0; i < r->body_len && n + 5 < sizeof body - 4; i++) {
        unsigned char ch = (unsigned char)r->body[i];
        if (ch == '\n' && i + 1 == r->body_len)
            break;
        if (ch < 0x20 || ch == 0x7f)
            n += (size_t)snprintf(body + n, sizeof body - n, "\\x%02x", ch);
        else
            body[n++] = (char)ch;
        if (n >= 200) {
            n += (size_t)snprintf(body + n, sizeof body - n, "...");
            break;
        }
    }
    body[n] = '\0';
    snprintf(out, len, "%s %s: %ld%s%s", method, p, r->status, n ? " " : "", body);
    return out;
}
