/*
 * What the HAProxy driver's two files share: haproxy.c (reads, applies,
 * drains, the driver's life) and haproxy_conn.c (the Runtime API
 * connection and its command queue). Not part of the driver's interface:
 * see haproxy.h for that.
 */
#ifndef PROXY_HAPROXY_INT_H
#define PROXY_HAPROXY_INT_H

#include <sys/socket.h>

#include "lib/buf.h"
#include "lib/queue.h"
#include "proxy/haproxy.h"

#define HAP_MAX_REPLY (8u * 1024 * 1024)
#define HAP_WINDOW 64 /* commands in flight on the connection */

typedef void (*cmd_fn)(int ok, const char *reply, const char *err, void *arg);

struct cmd {
    char *text;
    cmd_fn fn;
    void *arg;
    struct qlink link; /* in hap.queued or hap.sent */
};

struct hap {
    struct proxy base;
    char *backend_prefix, *server_opts;
    long timeout_ms;
    long drain_timeout_ms;          /* how long a removal waits for sessions */
    struct drain *drains;           /* removals finishing after their apply */
    struct loop_timer *drain_timer; /* the next look at their sessions */
    uint64_t drain_gap_ms;          /* its delay: 50 ms, doubling up to 500 ms */
    int is_unix;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char where[300];
    struct queue queued; /* commands not yet sent */
    struct queue sent;   /* sent, answers due in this order */
    int fd;
    int running; /* a connection is open or being opened */
    int connected;
    int prompt_pending;    /* the answer to "prompt" is still due */
    char start_error[400]; /* why it could not even connect */
    char *out;             /* bytes to send */
    size_t out_len, out_off, out_cap;
    struct buf reply;         /* answers received, not yet handed out */
    struct loop_timer *timer; /* connect/answer timeout; connect failure */
    struct loop_timer *kick;  /* opens the connection from the loop */
    struct batch *batches;    /* applies in progress (one per upstream) */
};

/* haproxy_conn.c */
/* Queues one command (a newline is added); fn gets its answer, or its
 * failure, from the loop. -1 when out of memory. */
int enqueue(struct hap *h, const char *text, cmd_fn fn, void *arg);
/* The timers' callbacks: open the connection; an answer or connect is late. */
void on_kick(void *arg);
void on_timeout(void *arg);
/* Where the Runtime API is: unix:///path or tcp://host:port. 0, or -1 with
 * err naming runtime and what is wrong. */
int hap_set_address(struct hap *h, const char *runtime, char *err, size_t errlen);

#endif
