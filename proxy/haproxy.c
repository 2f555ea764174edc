/*
 * HAProxy Runtime API driver; see haproxy.h. One command per connection,
 * commands run one at a time from a queue; every socket operation is
 * non-blocking on the shared loop, with a timeout per command.
 */
#include "proxy/haproxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/buf.h"

#define HAP_MAX_REPLY (8u * 1024 * 1024)

typedef void (*cmd_fn)(int ok, const char *reply, const char *err, void *arg);

struct cmd {
    char *text;
    cmd_fn fn;
    void *arg;
    struct cmd *next;
};

struct hap {
    struct proxy base;
    char *backend_prefix, *server_opts;
    long timeout_ms;
    int is_unix;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char where[300];
    struct cmd *head, *tail;   /* queue; head is under way when running */
    int fd;
    int running;               /* the head command is under way */
    char start_error[400];     /* why it could not even start */
    size_t written;
    struct buf reply;
    struct loop_timer *timer;
    struct batch *batches;     /* applies in progress (one per upstream) */
};

/* ---- pure helpers --------------------------------------------------------- */

const char *haproxy_server_name(const struct proxy_target *t, char *out, size_t len)
{
    snprintf(out, len, "%s%s:%d", HAPROXY_SERVER_PREFIX, t->host, t->port);
    return out;
}

static int is_ip(const char *h)
{
    unsigned char b[16];
    return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

int haproxy_parse_servers_state(const char *text, const char *prefix,
                                struct proxy_target_set *out, char *err, size_t errlen)
{
    struct proxy_target_set set = {0};
    const char *p = text;
    int col_name = -1, col_addr = -1, col_port = -1, col_admin = -1, col_weight = -1;
    size_t cap = 0;
    if (strncmp(text, "1\n", 2) != 0) {
        const char *nl = strchr(text, '\n');
        snprintf(err, errlen, "%.*s", (int)(nl ? nl - text : (long)strlen(text)), text);
        if (err[0] == '\0')
            snprintf(err, errlen, "empty answer to show servers state");
        return -1;
    }
    p += 2;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char line[2048];
        if (len >= sizeof line)
            len = sizeof line - 1;
        memcpy(line, p, len);
        line[len] = '\0';
        p = nl ? nl + 1 : p + len;
        if (line[0] == '\0')
            continue;
        char *save = NULL;
        int col = 0;
        if (line[0] == '#') {
            for (char *tok = strtok_r(line + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save), col++) {
                if (!strcmp(tok, "srv_name")) col_name = col;
                else if (!strcmp(tok, "srv_addr")) col_addr = col;
                else if (!strcmp(tok, "srv_port")) col_port = col;
                else if (!strcmp(tok, "srv_admin_state")) col_admin = col;
                else if (!strcmp(tok, "srv_uweight")) col_weight = col;
            }
            continue;
        }
        if (col_name < 0 || col_addr < 0 || col_port < 0 || col_admin < 0 || col_weight < 0) {
            snprintf(err, errlen, "show servers state: unexpected format (no header)");
            goto fail;
        }
        char *name = NULL, *addr = NULL;
        long port = -1, admin = -1, weight = -1;
        for (char *tok = strtok_r(line, " ", &save); tok; tok = strtok_r(NULL, " ", &save), col++) {
            if (col == col_name) name = tok;
            else if (col == col_addr) addr = tok;
            else if (col == col_port) port = strtol(tok, NULL, 10);
            else if (col == col_admin) admin = strtol(tok, NULL, 10);
            else if (col == col_weight) weight = strtol(tok, NULL, 10);
        }
        if (!name || !addr || port < 0 || admin < 0 || weight < 0) {
            snprintf(err, errlen, "show servers state: short line");
            goto fail;
        }
        if (strncmp(name, prefix, strlen(prefix)) != 0)
            continue;          /* not ours */
        if (admin & 0x01)
            continue;          /* forced maintenance: takes no traffic */
        if (strcmp(addr, "-") == 0 || port == 0)
            continue;
        if (set.n == cap) {
            cap = cap ? cap * 2 : 16;
            struct proxy_target *n = realloc(set.items, cap * sizeof *n);
            if (n == NULL) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            set.items = n;
        }
        set.items[set.n].host = strdup(addr);
        set.items[set.n].port = (int)port;
        set.items[set.n].weight = (int)weight;
        if (set.items[set.n].host == NULL)
            goto fail;
        set.n++;
    }
    *out = set;
    return 0;
fail:
    proxy_target_set_free(&set);
    return -1;
}

/* ---- the command queue ---------------------------------------------------- */

static void start_next(struct hap *h);

static void finish_cmd(struct hap *h, int ok, const char *err)
{
    struct cmd *c = h->head;
    if (h->fd >= 0) {
        loop_fd_unwatch(h->base.loop, h->fd);
        close(h->fd);
        h->fd = -1;
    }
    loop_timer_stop(h->timer);
    h->running = 0;
    h->head = c->next;
    if (h->head == NULL)
        h->tail = NULL;
    c->fn(ok, h->reply.data ? h->reply.data : "", err, c->arg);
    free(c->text);
    free(c);
    buf_reset(&h->reply);
    start_next(h);
}

static void on_io(int fd, short revents, void *arg)
{
    struct hap *h = arg;
    char tmp[16384];
    (void)fd;
    if (h->written < strlen(h->head->text)) {
        if (revents & (POLLERR | POLLHUP) && !(revents & POLLOUT)) {
            int e = 0;
            socklen_t l = sizeof e;
            getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &e, &l);
            char msg[400];
            snprintf(msg, sizeof msg, "cannot connect to the HAProxy runtime API at %s: %s",
                     h->where, strerror(e ? e : ECONNREFUSED));
            finish_cmd(h, 0, msg);
            return;
        }
        const char *t = h->head->text + h->written;
        ssize_t n = send(h->fd, t, strlen(t), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            char msg[400];
            snprintf(msg, sizeof msg, "HAProxy runtime API at %s: %s", h->where, strerror(errno));
            finish_cmd(h, 0, msg);
            return;
        }
        h->written += (size_t)n;
        if (h->written == strlen(h->head->text)) {
            shutdown(h->fd, SHUT_WR);
            loop_fd_watch(h->base.loop, h->fd, POLLIN, on_io, h);
        }
        return;
    }
    for (;;) {
        ssize_t n = recv(h->fd, tmp, sizeof tmp, 0);
        if (n > 0) {
            if (buf_append(&h->reply, tmp, (size_t)n) < 0) {
                finish_cmd(h, 0, "HAProxy answer too large");
                return;
            }
            continue;
        }
        if (n == 0) {
            finish_cmd(h, 1, NULL);
            return;
        }
        if (errno == EAGAIN || errno == EINTR)
            return;
        char msg[400];
        snprintf(msg, sizeof msg, "HAProxy runtime API at %s: %s", h->where, strerror(errno));
        finish_cmd(h, 0, msg);
        return;
    }
}

static void on_timeout(void *arg)
{
    struct hap *h = arg;
    char msg[400];
    if (h->start_error[0])
        snprintf(msg, sizeof msg, "%s", h->start_error);
    else
        snprintf(msg, sizeof msg, "HAProxy runtime API at %s did not answer within %ld ms",
                 h->where, h->timeout_ms);
    finish_cmd(h, 0, msg);
}

/* Starts the head command. A failure to even connect is reported from the
 * timer, never from here: callers (enqueue, finish_cmd) may be inside a
 * caller's own call, and a long queue failing in one go must not recurse. */
static void start_next(struct hap *h)
{
    if (h->head == NULL || h->running)
        return;
    h->running = 1;
    h->start_error[0] = '\0';
    h->written = 0;
    buf_reset(&h->reply);
    int fd = socket(h->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(h->start_error, sizeof h->start_error, "socket: %s", strerror(errno));
        loop_timer_start(h->timer, 0);
        return;
    }
    if (connect(fd, (struct sockaddr *)&h->addr, h->addrlen) < 0 && errno != EINPROGRESS &&
        errno != EAGAIN) {
        snprintf(h->start_error, sizeof h->start_error,
                 "cannot connect to the HAProxy runtime API at %s: %s", h->where,
                 strerror(errno));
        close(fd);
        loop_timer_start(h->timer, 0);
        return;
    }
    h->fd = fd;
    loop_fd_watch(h->base.loop, fd, POLLOUT, on_io, h);
    loop_timer_start(h->timer, (uint64_t)h->timeout_ms);
}

static int enqueue(struct hap *h, const char *text, cmd_fn fn, void *arg)
{
    struct cmd *c = calloc(1, sizeof *c);
    size_t n = strlen(text);
    if (c == NULL || (c->text = malloc(n + 2)) == NULL) {
        free(c);
        return -1;
    }
    memcpy(c->text, text, n);
    c->text[n] = '\n';
    c->text[n + 1] = '\0';
    c->fn = fn;
    c->arg = arg;
    if (h->tail)
        h->tail->next = c;
    else
        h->head = c;
    h->tail = c;
    start_next(h);
    return 0;
}

/* ---- read ----------------------------------------------------------------- */

struct read_req {
    struct hap *h;
    proxy_read_fn fn;
    void *arg;
    char backend[300];
};

static void on_state(int ok, const char *reply, const char *err, void *arg)
{
    struct read_req *r = arg;
    struct proxy_target_set set;
    char e[512];
    if (!ok) {
        r->fn(NULL, err, r->arg);
    } else if (haproxy_parse_servers_state(reply, HAPROXY_SERVER_PREFIX, &set, e, sizeof e) < 0) {
        char msg[700];
        if (strstr(e, "Can't find backend") || strstr(e, "No such backend"))
            snprintf(msg, sizeof msg, "backend '%s' does not exist in HAProxy: declare it in "
                     "haproxy.cfg with a dynamic balance algorithm (e.g. roundrobin)", r->backend);
        else if (strstr(e, "Permission denied"))
            snprintf(msg, sizeof msg, "the HAProxy runtime socket %s is not at level admin",
                     r->h->where);
        else
            snprintf(msg, sizeof msg, "show servers state %s: %s", r->backend, e);
        r->fn(NULL, msg, r->arg);
    } else {
        r->fn(&set, NULL, r->arg);
        proxy_target_set_free(&set);
    }
    free(r);
}

static int hap_read(struct proxy *p, const char *upstream, proxy_read_fn fn, void *arg,
                    char *err, size_t errlen)
{
    struct hap *h = (struct hap *)p;
    struct read_req *r = calloc(1, sizeof *r);
    char cmd[400];
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->h = h;
    r->fn = fn;
    r->arg = arg;
    snprintf(r->backend, sizeof r->backend, "%s%s", h->backend_prefix, upstream);
    snprintf(cmd, sizeof cmd, "show servers state %s", r->backend);
    /* The queue owns r from here: on_state frees it, or hap_free does. The
     * command may already have finished when enqueue returns. */
    if (enqueue(h, cmd, on_state, r) < 0) {
        free(r);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* ---- apply ---------------------------------------------------------------- */

/* One op becomes a short script of commands run one after the other. */
struct batch {
    struct hap *h;
    char backend[300];
    struct proxy_op *ops;
    struct proxy_op_result *results;
    size_t n, i;
    int step;          /* within the current op */
    int attempts;
    proxy_apply_fn fn;
    void *arg;
    struct batch *next;  /* in h->batches */
};

static void batch_step(struct batch *b);

static void batch_free(struct batch *b)
{
    for (size_t k = 0; b->ops && k < b->n; k++)
        free(b->ops[k].target.host);
    free(b->ops);
    free(b->results);
    free(b);
}

static void batch_unlink(struct batch *b)
{
    for (struct batch **pp = &b->h->batches; *pp; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            return;
        }
    }
}

static int hap_weight(int w)
{
    return w > 256 ? 256 : w < 0 ? 0 : w;
}

static void op_done(struct batch *b, int ok, const char *err)
{
    b->results[b->i].ok = ok;
    if (!ok)
        snprintf(b->results[b->i].error, sizeof b->results[b->i].error, "%s", err);
    b->i++;
    b->step = 0;
    b->attempts = 0;
    batch_step(b);
}

/* HAProxy answers with text only: a set command's success is an empty line. */
static int reply_empty(const char *r)
{
    return strspn(r, "\n") == strlen(r);
}

static void first_line(const char *reply, char *out, size_t len)
{
    while (*reply == '\n' || *reply == '[')
        reply++;
    const char *nl = strchr(reply, '\n');
    snprintf(out, len, "%.*s", (int)(nl ? nl - reply : (long)strlen(reply)), reply);
}

static void on_cmd(int ok, const char *reply, const char *err, void *arg)
{
    struct batch *b = arg;
    const struct proxy_op *op = &b->ops[b->i];
    char line[300], msg[400];
    if (!ok) {
        op_done(b, 0, err);
        return;
    }
    first_line(reply, line, sizeof line);
    switch (op->kind) {
    case PROXY_OP_ADD:
        if (b->step == 0) {
            if (strstr(reply, "New server registered") || strstr(reply, "Already exists")) {
                b->step = strstr(reply, "Already exists") ? 1 : 2;
                batch_step(b);
                return;
            }
            snprintf(msg, sizeof msg, "add server: %s", line);
            op_done(b, 0, msg);
            return;
        }
        if (!reply_empty(reply)) {
            snprintf(msg, sizeof msg, "%s: %s", b->step == 1 ? "set weight" : "set state ready", line);
            op_done(b, 0, msg);
            return;
        }
        if (b->step == 1) {
            b->step = 2;
            batch_step(b);
            return;
        }
        op_done(b, 1, NULL);
        return;
    case PROXY_OP_SET_WEIGHT:
        if (reply_empty(reply))
            op_done(b, 1, NULL);
        else {
            snprintf(msg, sizeof msg, "set weight: %s", line);
            op_done(b, 0, msg);
        }
        return;
    case PROXY_OP_REMOVE:
        if (b->step == 0 || b->step == 3) { /* state drain, then state maint */
            if (strstr(reply, "No such server")) {
                op_done(b, 1, NULL);      /* already gone */
                return;
            }
            if (!reply_empty(reply)) {
                snprintf(msg, sizeof msg, "set state %s: %s", b->step ? "maint" : "drain", line);
                op_done(b, 0, msg);
                return;
            }
            b->step = b->step == 0 ? 3 : 1;
            batch_step(b);
            return;
        }
        if (b->step == 1) {               /* del server */
            if (strstr(reply, "Server deleted") || strstr(reply, "No such server")) {
                op_done(b, 1, NULL);
                return;
            }
            if (strstr(reply, "still has connections") && b->attempts++ < 3) {
                b->step = 2;              /* shutdown sessions, then del again */
                batch_step(b);
                return;
            }
            snprintf(msg, sizeof msg, "del server: %s", line);
            op_done(b, 0, msg);
            return;
        }
        b->step = 1;                      /* after shutdown sessions */
        batch_step(b);
        return;
    }
}

static void batch_finish(struct batch *b)
{
    int all = 1;
    char first[300] = "";
    for (size_t k = 0; k < b->n; k++) {
        if (!b->results[k].ok && all) {
            char key[300];
            proxy_target_key(&b->ops[k].target, key, sizeof key);
            snprintf(first, sizeof first, "%.80s: %.200s", key, b->results[k].error);
            all = 0;
        }
    }
    batch_unlink(b);
    b->fn(all, b->results, b->n, all ? NULL : first, b->arg);
    batch_free(b);
}

static void batch_step(struct batch *b)
{
    char cmd[1200], name[300], addr[300];
    for (;;) {
        if (b->i == b->n) {
            batch_finish(b);
            return;
        }
        const struct proxy_op *op = &b->ops[b->i];
        if (!is_ip(op->target.host)) {
            b->results[b->i].ok = 0;
            snprintf(b->results[b->i].error, sizeof b->results[b->i].error,
                     "host names are not supported by HAProxy dynamic servers; register IP "
                     "addresses in Consul");
            b->i++;
            continue;
        }
        break;
    }
    const struct proxy_op *op = &b->ops[b->i];
    haproxy_server_name(&op->target, name, sizeof name);
    if (strchr(op->target.host, ':'))
        snprintf(addr, sizeof addr, "[%s]:%d", op->target.host, op->target.port);
    else
        snprintf(addr, sizeof addr, "%s:%d", op->target.host, op->target.port);
    switch (op->kind) {
    case PROXY_OP_ADD:
        if (b->step == 0)
            snprintf(cmd, sizeof cmd, "add server %s/%s %s weight %d%s%s", b->backend, name, addr,
                     hap_weight(op->target.weight), b->h->server_opts ? " " : "",
                     b->h->server_opts ? b->h->server_opts : "");
        else if (b->step == 1)
            snprintf(cmd, sizeof cmd, "set server %s/%s weight %d", b->backend, name,
                     hap_weight(op->target.weight));
        else
            snprintf(cmd, sizeof cmd, "set server %s/%s state ready", b->backend, name);
        break;
    case PROXY_OP_SET_WEIGHT:
        snprintf(cmd, sizeof cmd, "set server %s/%s weight %d", b->backend, name,
                 hap_weight(op->target.weight));
        break;
    case PROXY_OP_REMOVE:
        /* drain (no new sessions), maint (out of the farm), then delete. */
        if (b->step == 0)
            snprintf(cmd, sizeof cmd, "set server %s/%s state drain", b->backend, name);
        else if (b->step == 3)
            snprintf(cmd, sizeof cmd, "set server %s/%s state maint", b->backend, name);
        else if (b->step == 1)
            snprintf(cmd, sizeof cmd, "del server %s/%s", b->backend, name);
        else
            snprintf(cmd, sizeof cmd, "shutdown sessions server %s/%s", b->backend, name);
        break;
    }
    if (enqueue(b->h, cmd, on_cmd, b) < 0)
        op_done(b, 0, "out of memory");
}

static int hap_apply(struct proxy *p, const char *upstream, const struct proxy_op *ops,
                     size_t n_ops, const struct proxy_target_set *desired, proxy_apply_fn fn,
                     void *arg, char *err, size_t errlen)
{
    struct hap *h = (struct hap *)p;
    (void)desired;
    struct batch *b = calloc(1, sizeof *b);
    if (b == NULL)
        goto oom;
    b->h = h;
    b->fn = fn;
    b->arg = arg;
    b->n = n_ops;
    snprintf(b->backend, sizeof b->backend, "%s%s", h->backend_prefix, upstream);
    b->ops = calloc(n_ops ? n_ops : 1, sizeof *b->ops);
    b->results = calloc(n_ops ? n_ops : 1, sizeof *b->results);
    if (b->ops == NULL || b->results == NULL)
        goto oom;
    for (size_t i = 0; i < n_ops; i++) {
        b->ops[i] = ops[i];
        if ((b->ops[i].target.host = strdup(ops[i].target.host)) == NULL)
            goto oom;
    }
    b->next = h->batches;
    h->batches = b;
    batch_step(b);
    return 0;
oom:
    if (b)
        batch_free(b);
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* ---- lifecycle ------------------------------------------------------------ */

static void hap_free(struct proxy *p)
{
    struct hap *h = (struct hap *)p;
    if (h == NULL)
        return;
    if (h->fd >= 0) {
        loop_fd_unwatch(h->base.loop, h->fd);
        close(h->fd);
    }
    /* Queued reads own their request; queued batch commands point at a
     * batch freed from h->batches below. */
    while (h->head) {
        struct cmd *c = h->head;
        h->head = c->next;
        if (c->fn == on_state)
            free(c->arg);
        free(c->text);
        free(c);
    }
    while (h->batches) {
        struct batch *b = h->batches;
        h->batches = b->next;
        batch_free(b);
    }
    loop_timer_free(h->timer);
    buf_free(&h->reply);
    free(h->backend_prefix);
    free(h->server_opts);
    free(h);
}

static const struct proxy_ops hap_ops = {"haproxy", hap_read, hap_apply, hap_free, 256};

struct proxy *haproxy_new(struct loop *l, const struct haproxy_opts *o, char *err, size_t errlen)
{
    struct hap *h = calloc(1, sizeof *h);
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->base.ops = &hap_ops;
    h->base.loop = l;
    h->fd = -1;
    h->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 2000;
    buf_init(&h->reply, HAP_MAX_REPLY);
    h->backend_prefix = strdup(o->backend_prefix ? o->backend_prefix : "");
    h->server_opts = o->server_opts && *o->server_opts ? strdup(o->server_opts) : NULL;
    h->timer = loop_timer_new(l, on_timeout, h);
    const char *rt = o->runtime ? o->runtime : "";
    snprintf(h->where, sizeof h->where, "%s", rt);
    if (strncmp(rt, "unix://", 7) == 0) {
        struct sockaddr_un *a = (struct sockaddr_un *)&h->addr;
        if (strlen(rt + 7) >= sizeof a->sun_path || rt[7] != '/') {
            snprintf(err, errlen, "haproxy runtime \"%s\": bad unix socket path", rt);
            goto fail;
        }
        a->sun_family = AF_UNIX;
        snprintf(a->sun_path, sizeof a->sun_path, "%s", rt + 7);
        h->addrlen = sizeof *a;
        h->is_unix = 1;
    } else if (strncmp(rt, "tcp://", 6) == 0) {
        char host[256];
        const char *hp = rt + 6, *colon = strrchr(hp, ':');
        if (colon == NULL) {
            snprintf(err, errlen, "haproxy runtime \"%s\": expected tcp://host:port", rt);
            goto fail;
        }
        snprintf(host, sizeof host, "%.*s", (int)(colon - hp), hp);
        if (host[0] == '[') {
            memmove(host, host + 1, strlen(host));
            host[strcspn(host, "]")] = '\0';
        }
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
        if (getaddrinfo(host, colon + 1, &hints, &res) != 0) {
            snprintf(err, errlen, "haproxy runtime \"%s\": cannot resolve", rt);
            goto fail;
        }
        memcpy(&h->addr, res->ai_addr, res->ai_addrlen);
        h->addrlen = res->ai_addrlen;
        freeaddrinfo(res);
    } else {
        snprintf(err, errlen, "haproxy runtime \"%s\": expected unix:///path or tcp://host:port", rt);
        goto fail;
    }
    if (h->backend_prefix == NULL || h->timer == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return &h->base;
fail:
    hap_free(&h->base);
    return NULL;
}
