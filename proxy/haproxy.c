/*
 * HAProxy Runtime API driver; see haproxy.h. Commands are pipelined over
 * one interactive-mode connection (opened when something is queued, closed
 * when nothing is), independent ops of an apply run side by side; every
 * socket operation is non-blocking on the shared loop, with a timeout on
 * each wait for an answer. The connection and its queue are in
 * haproxy_conn.c.
 */
#include "proxy/haproxy_int.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- pure helpers --------------------------------------------------------- */

const char *haproxy_server_name(const struct proxy_target *t, char *out, size_t len)
{
    /* HAProxy shows srv_addr in canonical form; a name built from another
     * spelling of the same IPv6 address ("FD00:0::1") would never match the
     * server read back, so removals would miss it. */
    unsigned char b[16];
    char canon[INET6_ADDRSTRLEN];
    const char *host = t->host;
    if (inet_pton(AF_INET6, t->host, b) == 1 && inet_ntop(AF_INET6, b, canon, sizeof canon))
        host = canon;
    snprintf(out, len, "%s%s:%d", HAPROXY_SERVER_PREFIX, host, t->port);
    return out;
}

static int is_ip(const char *h)
{
    unsigned char b[16];
    return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

/* Where the columns the driver reads are in "show servers state" lines. */
struct state_cols {
    int name, addr, port, admin, weight;
};

static void state_header(char *line, struct state_cols *cols)
{
    char *save = NULL;
    int col = 0;
    for (char *tok = strtok_r(line + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save), col++) {
        if (!strcmp(tok, "srv_name"))
            cols->name = col;
        else if (!strcmp(tok, "srv_addr"))
            cols->addr = col;
        else if (!strcmp(tok, "srv_port"))
            cols->port = col;
        else if (!strcmp(tok, "srv_admin_state"))
            cols->admin = col;
        else if (!strcmp(tok, "srv_uweight"))
            cols->weight = col;
    }
}

/* One server line: 1 and *t filled (host still in line) when it is one of
 * ours that takes traffic, 0 when it is skipped, -1 with err. */
static int state_server(char *line, const struct state_cols *cols, const char *prefix,
                        struct proxy_target *t, char *err, size_t errlen)
{
    char *save = NULL, *name = NULL, *addr = NULL;
    long port = -1, admin = -1, weight = -1;
    int col = 0;
    if (cols->name < 0 || cols->addr < 0 || cols->port < 0 || cols->admin < 0 || cols->weight < 0)
        return snprintf(err, errlen, "show servers state: unexpected format (no header)"), -1;
    for (char *tok = strtok_r(line, " ", &save); tok; tok = strtok_r(NULL, " ", &save), col++) {
        if (col == cols->name)
            name = tok;
        else if (col == cols->addr)
            addr = tok;
        else if (col == cols->port)
            port = strtol(tok, NULL, 10);
        else if (col == cols->admin)
            admin = strtol(tok, NULL, 10);
        else if (col == cols->weight)
            weight = strtol(tok, NULL, 10);
    }
    if (!name || !addr || port < 0 || admin < 0 || weight < 0)
        return snprintf(err, errlen, "show servers state: short line"), -1;
    if (strncmp(name, prefix, strlen(prefix)) != 0)
        return 0; /* not ours */
    if (admin & (0x01 | 0x08))
        return 0; /* forced maintenance or drain: takes no new traffic;
                            * reading it as absent makes the add path ("Already
                            * exists": weight, ready) bring back one a half-done
                            * removal left */
    if (strcmp(addr, "-") == 0 || port == 0)
        return 0;
    t->host = addr;
    t->port = (int)port;
    t->weight = (int)weight;
    return 1;
}

int haproxy_parse_servers_state(const char *text, const char *prefix, struct proxy_target_set *out,
                                char *err, size_t errlen)
{
    struct proxy_target_set set = {0};
    struct state_cols cols = {-1, -1, -1, -1, -1};
    const char *p = text;
    size_t cap = 0;
    if (strncmp(text, "1\n", 2) != 0) {
        const char *nl = strchr(text, '\n');
        snprintf(err, errlen, "%.*s", (int)(nl ? nl - text : (long)strlen(text)), text);
        if (err[0] == '\0')
            snprintf(err, errlen, "empty answer to show servers state");
        return -1;
    }
    for (p += 2; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char line[2048];
        struct proxy_target t;
        if (len >= sizeof line)
            len = sizeof line - 1;
        memcpy(line, p, len);
        line[len] = '\0';
        p = nl ? nl + 1 : p + len;
        if (line[0] == '#')
            state_header(line, &cols);
        if (line[0] == '\0' || line[0] == '#')
            continue;
        int rc = state_server(line, &cols, prefix, &t, err, errlen);
        if (rc < 0)
            goto fail;
        if (rc == 0)
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
        set.items[set.n] = t;
        if ((set.items[set.n].host = strdup(t.host)) == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        set.n++;
    }
    *out = set;
    return 0;
fail:
    proxy_target_set_free(&set);
    return -1;
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
            snprintf(msg, sizeof msg,
                     "backend '%s' does not exist in HAProxy: declare it in "
                     "haproxy.cfg with a dynamic balance algorithm (e.g. roundrobin)",
                     r->backend);
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

static int hap_read(struct proxy *p, const char *upstream, proxy_read_fn fn, void *arg, char *err,
                    size_t errlen)
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

/* ---- apply ----------------------------------------------------------------
 *
 * Each op is a short script of commands run one after the other (an add is
 * "add server" then "set server ... state ready"); independent ops run side
 * by side, so their commands share the pipelined connection. Ops run in
 * phases of one kind (adds, then weights, then removals, as the reconciler
 * orders them): no removal starts before every add has answered, so a
 * backend being replaced never goes empty in between.
 */

struct batch;

struct op_run {
    struct batch *b;
    size_t i; /* index in ops */
    int step; /* within the op's script */
    int attempts;
};

/* A removal's script: drain (no new sessions), wait until the server's
 * sessions have ended (at most drain_timeout), maint (out of the farm),
 * delete; a delete refused for connections left over shuts them down and
 * deletes again (a few times). */
enum { RM_DRAIN, RM_WAIT, RM_MAINT, RM_DEL, RM_SHUTDOWN };

struct batch {
    struct hap *h;
    char backend[300];
    struct proxy_op *ops;
    struct proxy_op_result *results;
    struct op_run *runs;
    size_t n, next, running, done;
    proxy_apply_fn fn;
    void *arg;
    struct batch *next_batch; /* in h->batches */
};

static void op_send(struct op_run *r);
static void batch_pump(struct batch *b);

static void batch_free(struct batch *b)
{
    for (size_t k = 0; b->ops && k < b->n; k++)
        free(b->ops[k].target.host);
    free(b->ops);
    proxy_results_free(b->results, b->n);
    free(b->runs);
    free(b);
}

static void batch_unlink(struct batch *b)
{
    for (struct batch **pp = &b->h->batches; *pp; pp = &(*pp)->next_batch) {
        if (*pp == b) {
            *pp = b->next_batch;
            return;
        }
    }
}

static int hap_weight(int w)
{
    return w > 256 ? 256 : w < 0 ? 0 : w;
}

static void batch_finish(struct batch *b)
{
    int all = 1;
    char first[300] = "";
    for (size_t k = 0; k < b->n; k++) {
        if (!b->results[k].ok && all) {
            char key[300];
            proxy_target_key(&b->ops[k].target, key, sizeof key);
            snprintf(first, sizeof first, "%.80s: %.200s", key,
                     b->results[k].error ? b->results[k].error : "failed");
            all = 0;
        }
    }
    batch_unlink(b);
    b->fn(all, b->results, b->n, all ? NULL : first, b->arg);
    batch_free(b);
}

static void op_done(struct op_run *r, int ok, const char *err)
{
    struct batch *b = r->b;
    b->results[r->i].ok = ok;
    if (!ok)
        proxy_result_error(&b->results[r->i], "%s", err ? err : "failed");
    b->running--;
    b->done++;
    batch_pump(b);
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

static void next_step(struct op_run *r, int step)
{
    r->step = step;
    op_send(r);
}

/* ---- removals finishing in the background ---------------------------------
 *
 * A server in drain takes no new sessions, but the ones in flight (a long
 * download, a slow API call) go on; putting it in maint and deleting it then
 * would be refused ("still has connections") and the fallback would cut
 * them. So once "state drain" is answered the removal counts as applied (the
 * server takes no new traffic; the upstream's next change can go ahead), and
 * the rest goes on here, without blocking anything: it waits until the
 * server's current and queued sessions (scur + qcur in `show stat <backend>
 * 4 -1`, one question per backend for all its waiting removals, asked at
 * once and then after 50 ms, doubling up to 500 ms) are 0, or drain_timeout
 * has passed, then "state maint" and "del server". Nothing is queued on the
 * socket while it waits, so the connection closes meanwhile. An op on the
 * same server (it was added back) cancels its pending removal.
 */

int haproxy_parse_stat_sessions(const char *text, const char *server)
{
    int col_sv = -1, col_scur = -1, col_qcur = -1;
    size_t sl = strlen(server);
    if (strncmp(text, "# ", 2) != 0)
        return -2;
    const char *line = text + 2;
    int header = 1;
    while (*line) {
        const char *nl = strchr(line, '\n');
        const char *end = nl ? nl : line + strlen(line);
        long scur = -1, qcur = -1;
        int match = 0;
        int col = 0;
        for (const char *f = line;; col++) {
            const char *comma = memchr(f, ',', (size_t)(end - f));
            const char *fe = comma ? comma : end;
            size_t n = (size_t)(fe - f);
            if (header) {
                if (n == 6 && memcmp(f, "svname", 6) == 0)
                    col_sv = col;
                else if (n == 4 && memcmp(f, "scur", 4) == 0)
                    col_scur = col;
                else if (n == 4 && memcmp(f, "qcur", 4) == 0)
                    col_qcur = col;
            } else if (col == col_sv) {
                match = n == sl && memcmp(f, server, n) == 0;
            } else if (col == col_scur || col == col_qcur) {
                char num[24];
                char *e;
                snprintf(num, sizeof num, "%.*s", (int)(n < 23 ? n : 23), f);
                long v = n ? strtol(num, &e, 10) : 0;
                if (n && (*e || v < 0))
                    v = -1;
                else if (v > 1000000)
                    v = 1000000; /* a count, not a number to add up unbounded */
                if (col == col_scur)
                    scur = v;
                else
                    qcur = v;
            }
            if (comma == NULL)
                break;
            f = comma + 1;
        }
        if (header) {
            if (col_sv < 0 || col_scur < 0 || col_qcur < 0)
                return -2;
            header = 0;
        } else if (match) {
            if (scur < 0 || qcur < 0)
                return -2;
            return (int)(scur + qcur);
        }
        line = nl ? nl + 1 : end;
    }
    return -1;
}

struct drain {
    struct hap *h;
    char backend[300], server[300];
    uint64_t deadline; /* loop_clock_ms() after which it waits no more */
    int step;          /* RM_WAIT, then RM_MAINT, RM_DEL (RM_SHUTDOWN) */
    int attempts;      /* deletes refused for connections */
    int failures;      /* commands that got no answer */
    int busy;          /* one of its commands awaits its answer */
    int asked;         /* a show stat of its backend is on its way */
    int cancelled;     /* an op on the same server came: stop */
    struct drain *next;
};

/* A show stat question; it names its backend (a drain may be gone when the
 * answer arrives). */
struct drain_question {
    struct hap *h;
    char backend[300];
};

static void drain_free(struct drain *d)
{
    for (struct drain **pp = &d->h->drains; *pp; pp = &(*pp)->next) {
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    }
    free(d);
}

static void drain_poll(struct hap *h);
static void on_drain_cmd(int ok, const char *reply, const char *err, void *arg);

/* After an answer: looks again later while some removal still waits. */
static void drain_schedule(struct hap *h)
{
    for (struct drain *d = h->drains; d; d = d->next) {
        if (d->step == RM_WAIT && !d->asked && !d->busy) {
            if (!loop_timer_active(h->drain_timer))
                loop_timer_start(h->drain_timer, h->drain_gap_ms);
            return;
        }
    }
}

static void drain_send(struct drain *d)
{
    char cmd[700];
    if (d->step == RM_MAINT)
        snprintf(cmd, sizeof cmd, "set server %s/%s state maint", d->backend, d->server);
    else if (d->step == RM_DEL)
        snprintf(cmd, sizeof cmd, "del server %s/%s", d->backend, d->server);
    else
        snprintf(cmd, sizeof cmd, "shutdown sessions server %s/%s", d->backend, d->server);
    d->busy = 1;
    if (enqueue(d->h, cmd, on_drain_cmd, d) < 0)
        drain_free(d); /* out of memory: left in drain (it reads as absent) */
}

static void on_drain_cmd(int ok, const char *reply, const char *err, void *arg)
{
    struct drain *d = arg;
    (void)err;
    d->busy = 0;
    if (d->cancelled) {
        drain_free(d);
        return;
    }
    if (!ok) {
        /* No answer (the connection broke): again from maint, a few times;
         * a restarted HAProxy answers "No such server". */
        if (++d->failures > 5) {
            drain_free(d);
            return;
        }
        d->step = RM_WAIT;
        d->deadline = 0;
        drain_schedule(d->h);
        return;
    }
    switch (d->step) {
    case RM_MAINT:
        if (!reply_empty(reply)) {
            drain_free(d); /* gone ("No such server") or refused: nothing to do */
            return;
        }
        d->step = RM_DEL;
        drain_send(d);
        return;
    case RM_DEL:
        if (strstr(reply, "still has connections") && d->attempts++ < 3) {
            d->step = RM_SHUTDOWN; /* then delete again */
            drain_send(d);
            return;
        }
        drain_free(d); /* deleted, already gone, or left in maint */
        return;
    default:
        /* After shutdown sessions: HAProxy closes them asynchronously, so a
         * delete sent at once can still find them; wait (briefly) until the
         * count is 0, then maint and delete again. */
        d->step = RM_WAIT;
        d->deadline = loop_clock_ms() + 2000;
        drain_schedule(d->h);
        return;
    }
}

static void on_drain_stat(int ok, const char *reply, const char *err, void *arg)
{
    struct drain_question *q = arg;
    struct hap *h = q->h;
    uint64_t now = loop_clock_ms();
    (void)err;
    for (struct drain *d = h->drains, *next; d; d = next) {
        next = d->next;
        if (!d->asked || strcmp(d->backend, q->backend) != 0)
            continue;
        d->asked = 0;
        /* No answer (the connection broke): unknown, so wait on. An
         * unreadable one (the backend is gone): carry on; del server still
         * refuses a server with sessions, and the fallback applies. */
        int left = ok ? haproxy_parse_stat_sessions(reply, d->server) : 1;
        if (left > 0 && now < d->deadline)
            continue; /* sessions in flight: wait */
        d->step = RM_MAINT;
        drain_send(d); /* may free d (next is kept) */
    }
    free(q);
    drain_schedule(h);
}

/* Asks, for every backend with a removal waiting and no question on its
 * way yet, how many sessions its servers have. A question already on its
 * way answers for a removal drained since: it was sent after that drain
 * (answers come in order), so a burst of removals asks once, not once each. */
static void drain_poll(struct hap *h)
{
    for (struct drain *d = h->drains; d; d = d->next) {
        if (d->step != RM_WAIT || d->asked || d->busy)
            continue;
        for (struct drain *o = h->drains; o && !d->asked; o = o->next)
            if (o->asked && strcmp(o->backend, d->backend) == 0)
                d->asked = 1;
        if (d->asked)
            continue;
        struct drain_question *q = calloc(1, sizeof *q);
        char cmd[400];
        if (q == NULL)
            return; /* out of memory: the timer asks again */
        q->h = h;
        snprintf(q->backend, sizeof q->backend, "%s", d->backend);
        snprintf(cmd, sizeof cmd, "show stat %s 4 -1", q->backend);
        if (enqueue(h, cmd, on_drain_stat, q) < 0) {
            free(q);
            return;
        }
        for (struct drain *o = d; o; o = o->next)
            if (o->step == RM_WAIT && !o->busy && strcmp(o->backend, q->backend) == 0)
                o->asked = 1;
    }
}

static void on_drain_timer(void *arg)
{
    struct hap *h = arg;
    h->drain_gap_ms = h->drain_gap_ms * 2 > 500 ? 500 : h->drain_gap_ms * 2;
    drain_poll(h);
    drain_schedule(h); /* nothing could be asked (out of memory): later */
}

/* Takes over a removal whose drain was answered; -1 if it cannot. */
static int drain_start(struct hap *h, const char *backend, const char *server)
{
    struct drain *d = calloc(1, sizeof *d);
    if (d == NULL)
        return -1;
    d->h = h;
    snprintf(d->backend, sizeof d->backend, "%s", backend);
    snprintf(d->server, sizeof d->server, "%s", server);
    d->step = RM_WAIT;
    d->deadline = loop_clock_ms() + (uint64_t)h->drain_timeout_ms;
    if (h->drains == NULL) {
        h->drain_gap_ms = 50; /* a new spell of waiting: look often first */
        loop_timer_stop(h->drain_timer);
    }
    d->next = h->drains;
    h->drains = d;
    drain_poll(h);
    return 0;
}

/* An op on a server stops its removal still under way (it was added back,
 * or is being removed again). */
static void drain_cancel(struct hap *h, const char *backend, const char *server)
{
    for (struct drain *d = h->drains, *next; d; d = next) {
        next = d->next;
        if (strcmp(d->backend, backend) != 0 || strcmp(d->server, server) != 0)
            continue;
        if (d->busy)
            d->cancelled = 1; /* freed when its answer comes */
        else
            drain_free(d); /* a show stat on its way names only the backend */
    }
}

/* An add: "add server" (New server registered, or Already exists: then its
 * weight), then "set server ... state ready". */
static void on_add_answer(struct op_run *r, const char *reply, const char *line)
{
    char msg[400];
    if (r->step == 0) {
        if (strstr(reply, "New server registered") || strstr(reply, "Already exists")) {
            next_step(r, strstr(reply, "Already exists") ? 1 : 2);
            return;
        }
        snprintf(msg, sizeof msg, "add server: %s", line);
        op_done(r, 0, msg);
        return;
    }
    if (!reply_empty(reply)) {
        snprintf(msg, sizeof msg, "%s: %s", r->step == 1 ? "set weight" : "set state ready", line);
        op_done(r, 0, msg);
        return;
    }
    if (r->step == 1)
        next_step(r, 2);
    else
        op_done(r, 1, NULL);
}

/* A removal: drain (then the rest in the background), or maint, delete,
 * and a shutdown of sessions when the delete finds some. */
static void on_remove_answer(struct op_run *r, const char *reply, const char *line)
{
    const struct proxy_op *op = &r->b->ops[r->i];
    char msg[400];
    if (r->step == RM_DRAIN || r->step == RM_MAINT) {
        if (strstr(reply, "No such server")) {
            op_done(r, 1, NULL); /* already gone */
        } else if (!reply_empty(reply)) {
            snprintf(msg, sizeof msg, "set state %s: %s", r->step == RM_MAINT ? "maint" : "drain",
                     line);
            op_done(r, 0, msg);
        } else if (r->step == RM_MAINT) {
            next_step(r, RM_DEL);
        } else {
            /* Drained: no new sessions. The wait for the ones in flight
             * (none with drain_timeout 0), maint and delete go on in the
             * background (out of memory: here, at once). */
            char name[300];
            haproxy_server_name(&op->target, name, sizeof name);
            if (drain_start(r->b->h, r->b->backend, name) == 0)
                op_done(r, 1, NULL);
            else
                next_step(r, RM_MAINT);
        }
        return;
    }
    if (r->step != RM_DEL) {
        next_step(r, RM_DEL); /* after shutdown sessions */
        return;
    }
    if (strstr(reply, "Server deleted") || strstr(reply, "No such server")) {
        op_done(r, 1, NULL);
    } else if (strstr(reply, "still has connections") && r->attempts++ < 3) {
        next_step(r, RM_SHUTDOWN); /* then delete again */
    } else {
        snprintf(msg, sizeof msg, "del server: %s", line);
        op_done(r, 0, msg);
    }
}

static void on_cmd(int ok, const char *reply, const char *err, void *arg)
{
    struct op_run *r = arg;
    const struct proxy_op *op = &r->b->ops[r->i];
    char line[300], msg[400];
    if (!ok) {
        op_done(r, 0, err);
        return;
    }
    first_line(reply, line, sizeof line);
    switch (op->kind) {
    case PROXY_OP_ADD:
        on_add_answer(r, reply, line);
        return;
    case PROXY_OP_SET_WEIGHT:
        if (reply_empty(reply)) {
            op_done(r, 1, NULL);
        } else {
            snprintf(msg, sizeof msg, "set weight: %s", line);
            op_done(r, 0, msg);
        }
        return;
    case PROXY_OP_REMOVE:
        on_remove_answer(r, reply, line);
        return;
    }
}

/* Queues the command for the op's current step. */
static void op_send(struct op_run *r)
{
    struct batch *b = r->b;
    const struct proxy_op *op = &b->ops[r->i];
    char cmd[1200], name[300], addr[300];
    haproxy_server_name(&op->target, name, sizeof name);
    if (r->step == 0)
        drain_cancel(b->h, b->backend, name);
    if (strchr(op->target.host, ':'))
        snprintf(addr, sizeof addr, "[%s]:%d", op->target.host, op->target.port);
    else
        snprintf(addr, sizeof addr, "%s:%d", op->target.host, op->target.port);
    switch (op->kind) {
    case PROXY_OP_ADD:
        if (r->step == 0)
            snprintf(cmd, sizeof cmd, "add server %s/%s %s weight %d%s%s", b->backend, name, addr,
                     hap_weight(op->target.weight), b->h->server_opts ? " " : "",
                     b->h->server_opts ? b->h->server_opts : "");
        else if (r->step == 1)
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
        if (r->step == RM_DRAIN)
            snprintf(cmd, sizeof cmd, "set server %s/%s state drain", b->backend, name);
        else if (r->step == RM_MAINT)
            snprintf(cmd, sizeof cmd, "set server %s/%s state maint", b->backend, name);
        else if (r->step == RM_DEL)
            snprintf(cmd, sizeof cmd, "del server %s/%s", b->backend, name);
        else
            snprintf(cmd, sizeof cmd, "shutdown sessions server %s/%s", b->backend, name);
        break;
    }
    if (enqueue(b->h, cmd, on_cmd, r) < 0)
        op_done(r, 0, "out of memory");
}

static int batch_add_failed(const struct batch *b)
{
    for (size_t k = 0; k < b->n; k++)
        if (b->ops[k].kind == PROXY_OP_ADD && !b->results[k].ok)
            return 1;
    return 0;
}

/* Starts ops up to the window, one kind at a time; finishes the batch when
 * all are done. */
static void batch_pump(struct batch *b)
{
    while (b->next < b->n && b->running < HAP_WINDOW) {
        struct op_run *r = &b->runs[b->next];
        const struct proxy_op *op = &b->ops[b->next];
        if (b->running > 0 && op->kind != b->ops[b->next - 1].kind)
            break; /* the previous phase first */
        b->next++;
        if (op->kind == PROXY_OP_REMOVE && batch_add_failed(b)) {
            /* Removing while a replacement failed to go in could empty the
             * backend: the old servers stay until the adds succeed. */
            b->results[r->i].ok = 0;
            proxy_result_error(&b->results[r->i], "kept: an add in the same change failed");
            b->done++;
            continue;
        }
        if (!is_ip(op->target.host)) {
            b->results[r->i].ok = 0;
            proxy_result_error(
                &b->results[r->i],
                "host names are not supported by HAProxy dynamic servers; register IP "
                "addresses in Consul");
            b->done++;
            continue;
        }
        b->running++;
        op_send(r);
    }
    if (b->done == b->n)
        batch_finish(b);
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
    snprintf(b->backend, sizeof b->backend, "%s%s", h->backend_prefix, upstream);
    b->ops = calloc(n_ops ? n_ops : 1, sizeof *b->ops);
    b->results = calloc(n_ops ? n_ops : 1, sizeof *b->results);
    b->runs = calloc(n_ops ? n_ops : 1, sizeof *b->runs);
    if (b->ops == NULL || b->results == NULL || b->runs == NULL)
        goto oom;
    for (size_t i = 0; i < n_ops; i++) {
        b->ops[i] = ops[i];
        b->ops[i].target.host = strdup(ops[i].target.host);
        b->n = i + 1;
        if (b->ops[i].target.host == NULL)
            goto oom;
        b->runs[i] = (struct op_run){.b = b, .i = i};
    }
    b->next_batch = h->batches;
    h->batches = b;
    batch_pump(b);
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
    /* Queued and sent reads own their request; batch commands point at a
     * batch freed from h->batches below. */
    struct queue *lists[2] = {&h->queued, &h->sent};
    for (int k = 0; k < 2; k++) {
        struct qlink *l;
        while ((l = queue_pop(lists[k])) != NULL) {
            struct cmd *c = QUEUE_ITEM(l, struct cmd, link);
            if (c->fn == on_state || c->fn == on_drain_stat)
                free(c->arg); /* drains are freed below */
            free(c->text);
            free(c);
        }
    }
    while (h->batches) {
        struct batch *b = h->batches;
        h->batches = b->next_batch;
        batch_free(b);
    }
    while (h->drains) {
        struct drain *d = h->drains;
        h->drains = d->next;
        free(d);
    }
    loop_timer_free(h->drain_timer);
    loop_timer_free(h->timer);
    loop_timer_free(h->kick);
    free(h->out);
    buf_free(&h->reply);
    free(h->backend_prefix);
    free(h->server_opts);
    free(h);
}

static const struct proxy_ops hap_ops = {"haproxy", hap_read, hap_apply, hap_free, 256, NULL};

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
    h->drain_timeout_ms = o->drain_timeout_ms > 0 ? o->drain_timeout_ms : 0;
    buf_init(&h->reply, HAP_MAX_REPLY);
    h->backend_prefix = strdup(o->backend_prefix ? o->backend_prefix : "");
    h->server_opts = o->server_opts && *o->server_opts ? strdup(o->server_opts) : NULL;
    h->timer = loop_timer_new(l, on_timeout, h);
    h->kick = loop_timer_new(l, on_kick, h);
    h->drain_timer = loop_timer_new(l, on_drain_timer, h);
    h->out_cap = 4096;
    h->out = malloc(h->out_cap);
    if (hap_set_address(h, o->runtime, err, errlen) < 0)
        goto fail;
    if (h->backend_prefix == NULL || h->timer == NULL || h->kick == NULL ||
        h->drain_timer == NULL || h->out == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return &h->base;
fail:
    hap_free(&h->base);
    return NULL;
}
