/*
 * The HAProxy Runtime API connection: one interactive-mode connection, a
 * queue of commands and their answers in order. See haproxy.c for what is
 * sent over it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "proxy/haproxy_int.h"

/* ---- the command queue ----------------------------------------------------
 *
 * Commands go over one connection in interactive mode ("prompt"), several
 * in flight at once: HAProxy answers them in order, each answer ending with
 * the prompt "\n> ". The connection is opened when a command is queued and
 * closed as soon as nothing is queued or in flight, so it never holds one
 * of the socket's few slots (stats maxconn) while idle. A connection that
 * breaks fails the commands in flight (their outcome is unknown; the
 * reconciler reads back and repairs); queued ones go on a new connection.
 */

static void start_conn(struct hap *h);
static void pump(struct hap *h);

static void close_conn(struct hap *h)
{
    if (h->fd >= 0) {
        loop_fd_unwatch(h->base.loop, h->fd);
        close(h->fd);
        h->fd = -1;
    }
    loop_timer_stop(h->timer);
    h->running = 0;
    h->prompt_pending = 0;
    h->out_len = 0;
    h->out_off = 0;
    buf_reset(&h->reply);
}

static struct cmd *pop(struct queue *q)
{
    struct qlink *l = queue_pop(q);
    return l ? QUEUE_ITEM(l, struct cmd, link) : NULL;
}

/* Calls each command's callback once, after the queue is consistent again
 * (a callback may queue more): list is a chain taken off a queue. */
static void fail_list(struct qlink *list, const char *err)
{
    while (list) {
        struct cmd *c = QUEUE_ITEM(list, struct cmd, link);
        list = list->next;
        c->fn(0, "", err, c->arg);
        free(c->text);
        free(c);
    }
}

/* The connection is unusable: everything sent fails with err. */
static void conn_failed(struct hap *h, const char *err)
{
    struct qlink *sent = queue_take_all(&h->sent);
    close_conn(h);
    if (sent == NULL && h->queued.head) {
        /* Nothing was sent (could not connect): the first queued command
         * carries the error, so a dead socket fails the queue one by one
         * with a fresh attempt each, never all of it on one refusal. */
        sent = queue_pop(&h->queued);
    }
    fail_list(sent, err);
    if (h->queued.head)
        loop_timer_start(h->kick, 0);
}

void on_kick(void *arg)
{
    struct hap *h = arg;
    if (h->fd < 0 && !h->running)
        start_conn(h);
}

/* One complete answer (text up to and including the '\n' before "> "). */
static void answered(struct hap *h, const char *text)
{
    if (h->prompt_pending) {
        h->prompt_pending = 0; /* the answer to "prompt" itself */
        return;
    }
    struct cmd *c = pop(&h->sent);
    if (c == NULL)
        return;
    c->fn(1, text, NULL, c->arg);
    free(c->text);
    free(c);
}

static void on_io(int fd, short revents, void *arg)
{
    struct hap *h = arg;
    char tmp[16384], msg[400];
    (void)fd;
    if (!h->connected) {
        int e = 0;
        socklen_t l = sizeof e;
        getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &e, &l);
        if (e || (revents & (POLLERR | POLLHUP) && !(revents & POLLOUT))) {
            snprintf(msg, sizeof msg, "cannot connect to the HAProxy runtime API at %s: %s",
                     h->where, strerror(e ? e : ECONNREFUSED));
            conn_failed(h, msg);
            return;
        }
        h->connected = 1;
    }
    if ((revents & POLLOUT) && h->out_off < h->out_len) {
        ssize_t n = send(h->fd, h->out + h->out_off, h->out_len - h->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(msg, sizeof msg, "HAProxy runtime API at %s: %s", h->where, strerror(errno));
            conn_failed(h, msg);
            return;
        }
        if (n > 0)
            h->out_off += (size_t)n;
    }
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
        for (;;) {
            ssize_t n = recv(h->fd, tmp, sizeof tmp, 0);
            if (n > 0) {
                loop_timer_start(h->timer, (uint64_t)h->timeout_ms);
                if (buf_append(&h->reply, tmp, (size_t)n) < 0) {
                    conn_failed(h, "HAProxy answer too large");
                    return;
                }
                /* Hand out every complete answer. */
                size_t off = 0;
                for (;;) {
                    const char *end = strstr(h->reply.data + off, "\n> ");
                    if (end == NULL)
                        break;
                    size_t alen = (size_t)(end - (h->reply.data + off)) + 1;
                    char save = h->reply.data[off + alen];
                    h->reply.data[off + alen] = '\0';
                    answered(h, h->reply.data + off);
                    if (h->fd < 0)
                        return; /* a callback freed the connection's state */
                    h->reply.data[off + alen] = save;
                    off += alen + 2;
                }
                if (off) {
                    memmove(h->reply.data, h->reply.data + off, h->reply.len - off + 1);
                    h->reply.len -= off;
                }
                continue;
            }
            if (n == 0) {
                if (h->sent.head || h->prompt_pending) {
                    snprintf(msg, sizeof msg,
                             "HAProxy runtime API at %s closed the connection "
                             "before answering",
                             h->where);
                    conn_failed(h, msg);
                } else {
                    close_conn(h);
                    if (h->queued.head)
                        loop_timer_start(h->kick, 0);
                }
                return;
            }
            if (errno == EAGAIN || errno == EINTR)
                break;
            snprintf(msg, sizeof msg, "HAProxy runtime API at %s: %s", h->where, strerror(errno));
            conn_failed(h, msg);
            return;
        }
    }
    pump(h);
}

void on_timeout(void *arg)
{
    struct hap *h = arg;
    char msg[400];
    if (h->start_error[0])
        snprintf(msg, sizeof msg, "%s", h->start_error);
    else
        snprintf(msg, sizeof msg, "HAProxy runtime API at %s did not answer within %ld ms",
                 h->where, h->timeout_ms);
    h->start_error[0] = '\0';
    conn_failed(h, msg);
}

/* Moves queued commands into the output (up to the window) and closes the
 * connection once all is answered. */
static void pump(struct hap *h)
{
    if (h->fd < 0)
        return;
    if (h->out_off == h->out_len)
        h->out_off = h->out_len = 0;
    while (h->queued.head && h->sent.n < HAP_WINDOW) {
        const struct cmd *next = QUEUE_CITEM(h->queued.head, struct cmd, link);
        size_t n = strlen(next->text);
        if (h->out_len + n > h->out_cap) {
            size_t cap = h->out_cap ? h->out_cap : 4096;
            while (cap < h->out_len + n)
                cap *= 2;
            char *o = realloc(h->out, cap);
            if (o == NULL)
                break;
            h->out = o;
            h->out_cap = cap;
        }
        memcpy(h->out + h->out_len, next->text, n);
        h->out_len += n;
        queue_push(&h->sent, queue_pop(&h->queued));
    }
    if (h->sent.head == NULL && !h->prompt_pending && h->queued.head == NULL) {
        close_conn(h); /* all answered: give the slot back */
        return;
    }
    short ev = POLLIN;
    if (!h->connected || h->out_off < h->out_len)
        ev |= POLLOUT;
    loop_fd_watch(h->base.loop, h->fd, ev, on_io, h);
    if (!loop_timer_active(h->timer))
        loop_timer_start(h->timer, (uint64_t)h->timeout_ms);
}

/* Opens the connection. A failure to even connect is reported from the
 * timer, never from here: callers may be inside a caller's own call. */
static void start_conn(struct hap *h)
{
    if (h->queued.head == NULL || h->running)
        return;
    h->running = 1;
    h->connected = 0;
    h->start_error[0] = '\0';
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
                 "cannot connect to the HAProxy runtime API at %s: %s", h->where, strerror(errno));
        close(fd);
        loop_timer_start(h->timer, 0);
        return;
    }
    h->fd = fd;
    static const char prompt[] = "prompt\n";
    memcpy(h->out, prompt, sizeof prompt - 1);
    h->out_len = sizeof prompt - 1;
    h->out_off = 0;
    h->prompt_pending = 1;
    loop_timer_start(h->timer, (uint64_t)h->timeout_ms);
    pump(h);
}

int enqueue(struct hap *h, const char *text, cmd_fn fn, void *arg)
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
    queue_push(&h->queued, &c->link);
    if (h->fd >= 0)
        pump(h);
    else if (!h->running)
        loop_timer_start(h->kick, 0);
    return 0;
}

int hap_set_address(struct hap *h, const char *runtime, char *err, size_t errlen)
{
    const char *rt = runtime ? runtime : "";
    snprintf(h->where, sizeof h->where, "%s", rt);
    if (strncmp(rt, "unix://", 7) == 0) {
        struct sockaddr_un *a = (struct sockaddr_un *)&h->addr;
        if (strlen(rt + 7) >= sizeof a->sun_path || rt[7] != '/') {
            snprintf(err, errlen, "haproxy runtime \"%s\": bad unix socket path", rt);
            return -1;
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
            return -1;
        }
        snprintf(host, sizeof host, "%.*s", (int)(colon - hp), hp);
        if (host[0] == '[') {
            memmove(host, host + 1, strlen(host));
            host[strcspn(host, "]")] = '\0';
        }
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
        if (getaddrinfo(host, colon + 1, &hints, &res) != 0) {
            snprintf(err, errlen, "haproxy runtime \"%s\": cannot resolve", rt);
            return -1;
        }
        memcpy(&h->addr, res->ai_addr, res->ai_addrlen);
        h->addrlen = res->ai_addrlen;
        freeaddrinfo(res);
    } else {
        snprintf(err, errlen, "haproxy runtime \"%s\": expected unix:///path or tcp://host:port",
                 rt);
        return -1;
    }
    return 0;
}
