/*
 * One-thread event loop over poll(), driving libcurl through its socket
 * API (curl_multi_socket_action): curl says which sockets to watch and when
 * it next needs time, and each event runs only the transfers of that socket.
 * (curl_multi_perform ran every transfer, with a poll() of its own for each,
 * on every wake-up: 1,000 HTTP/2 streams cost 1,000 system calls per event.)
 * Timers live in a binary min-heap keyed by due time; each timer knows its
 * heap slot so stop and re-arm are O(log n).
 */
#include "lib/loop.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <string.h>
#include <time.h>
#include <unistd.h>

struct loop_timer {
    struct loop *loop;
    loop_timer_fn fn;
    void *arg;
    uint64_t due;
    size_t heap_slot; /* valid while active */
    int active;
};

struct fd_watch {
    int fd;
    short events;
    loop_fd_fn fn;
    void *arg;
    int removed;
};

struct hook {
    loop_hook_fn fn;
    void *arg;
};

#define LOOP_MAX_SIGNALS 65

struct curl_sock {
    curl_socket_t fd;
    short events; /* POLLIN / POLLOUT, as curl asked */
};

struct loop {
    CURLM *multi;
    void (*curl_done)(void *easy, int result);
    struct curl_sock *cs; /* the sockets curl wants watched */
    size_t cs_len, cs_cap;
    uint64_t curl_due; /* when curl wants its timeout run (ms); UINT64_MAX none */
    uint64_t now;
    uint64_t wakeups;
    int stop;

    struct loop_timer **heap;
    size_t heap_len, heap_cap;

    struct fd_watch *fds;
    size_t fds_len, fds_cap;

    struct hook *hooks;
    size_t hooks_len;

    struct loop_timer *trim; /* gives freed heap back to the system */

    int sig_pipe[2];
    struct {
        loop_signal_fn fn;
        void *arg;
    } sig[LOOP_MAX_SIGNALS];
};

static int sig_write_fd = -1;

uint64_t loop_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t loop_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#define LOOP_MAX_STREAMS 1000L

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct loop *l = userp;
    (void)easy;
    (void)socketp;
    size_t i = 0;
    while (i < l->cs_len && l->cs[i].fd != fd)
        i++;
    if (what == CURL_POLL_REMOVE) {
        if (i < l->cs_len)
            l->cs[i] = l->cs[--l->cs_len];
        return 0;
    }
    if (i == l->cs_len) {
        if (l->cs_len == l->cs_cap) {
            size_t cap = l->cs_cap ? l->cs_cap * 2 : 16;
            struct curl_sock *g = realloc(l->cs, cap * sizeof *g);
            if (g == NULL)
                return -1; /* curl fails the transfer */
            l->cs = g;
            l->cs_cap = cap;
        }
        l->cs_len++;
    }
    l->cs[i].fd = fd;
    l->cs[i].events =
        (short)(((what & CURL_POLL_IN) ? POLLIN : 0) | ((what & CURL_POLL_OUT) ? POLLOUT : 0));
    return 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct loop *l = userp;
    (void)multi;
    l->curl_due = timeout_ms < 0 ? UINT64_MAX : loop_clock_ms() + (uint64_t)timeout_ms;
    return 0;
}

static int set_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

struct loop *loop_new(void)
{
    struct loop *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    l->sig_pipe[0] = l->sig_pipe[1] = -1;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        goto fail;
    l->multi = curl_multi_init();
    if (l->multi == NULL)
        goto fail;
    /* HTTP/2: as many streams on a connection as the server allows (Consul's
     * Go server: 250), not libcurl's own cap of 100; libcurl opens another
     * connection when one is full. */
    curl_multi_setopt(l->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, LOOP_MAX_STREAMS);
    l->curl_due = UINT64_MAX;
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l);
    curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, l);
    if (pipe(l->sig_pipe) < 0 || set_nonblock_cloexec(l->sig_pipe[0]) < 0 ||
        set_nonblock_cloexec(l->sig_pipe[1]) < 0)
        goto fail;
    l->now = loop_clock_ms();
    return l;
fail:
    loop_free(l);
    return NULL;
}

void loop_free(struct loop *l)
{
    if (l == NULL)
        return;
    loop_timer_free(l->trim);
    l->trim = NULL;
    for (size_t i = 0; i < l->heap_len; i++)
        l->heap[i]->active = 0;
    free(l->heap);
    free(l->fds);
    free(l->hooks);
    if (l->multi)
        curl_multi_cleanup(l->multi); /* may still tell on_curl_socket */
    free(l->cs);
    if (l->sig_pipe[0] >= 0) {
        if (sig_write_fd == l->sig_pipe[1])
            sig_write_fd = -1;
        close(l->sig_pipe[0]);
        close(l->sig_pipe[1]);
    }
    free(l);
}

uint64_t loop_now(const struct loop *l)
{
    return l->now;
}

uint64_t loop_wakeups(const struct loop *l)
{
    return l->wakeups;
}

/* ---- timer heap ---------------------------------------------------------- */

static void heap_swap(struct loop *l, size_t a, size_t b)
{
    struct loop_timer *t = l->heap[a];
    l->heap[a] = l->heap[b];
    l->heap[b] = t;
    l->heap[a]->heap_slot = a;
    l->heap[b]->heap_slot = b;
}

static void heap_up(struct loop *l, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (l->heap[p]->due <= l->heap[i]->due)
            break;
        heap_swap(l, p, i);
        i = p;
    }
}

static void heap_down(struct loop *l, size_t i)
{
    for (;;) {
        size_t a = 2 * i + 1, b = a + 1, m = i;
        if (a < l->heap_len && l->heap[a]->due < l->heap[m]->due)
            m = a;
        if (b < l->heap_len && l->heap[b]->due < l->heap[m]->due)
            m = b;
        if (m == i)
            break;
        heap_swap(l, i, m);
        i = m;
    }
}

static void heap_remove(struct loop *l, size_t i)
{
    l->heap_len--;
    if (i != l->heap_len) {
        l->heap[i] = l->heap[l->heap_len];
        l->heap[i]->heap_slot = i;
        heap_down(l, i);
        heap_up(l, i);
    }
}

struct loop_timer *loop_timer_new(struct loop *l, loop_timer_fn fn, void *arg)
{
    struct loop_timer *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->loop = l;
    t->fn = fn;
    t->arg = arg;
    return t;
}

void loop_timer_stop(struct loop_timer *t)
{
    if (t == NULL || !t->active)
        return;
    heap_remove(t->loop, t->heap_slot);
    t->active = 0;
}

void loop_timer_start(struct loop_timer *t, uint64_t delay_ms)
{
    struct loop *l = t->loop;
    loop_timer_stop(t);
    if (l->heap_len == l->heap_cap) {
        size_t cap = l->heap_cap ? l->heap_cap * 2 : 16;
        struct loop_timer **h = realloc(l->heap, cap * sizeof *h);
        if (h == NULL)
            return; /* out of memory: the timer stays inactive */
        l->heap = h;
        l->heap_cap = cap;
    }
    /* Measure from the real clock: a callback that ran long must not make
     * its re-armed timer fire early. */
    t->due = loop_clock_ms() + delay_ms;
    t->active = 1;
    t->heap_slot = l->heap_len;
    l->heap[l->heap_len++] = t;
    heap_up(l, t->heap_slot);
}

int loop_timer_active(const struct loop_timer *t)
{
    return t && t->active;
}

uint64_t loop_timer_remaining(const struct loop_timer *t)
{
    if (t == NULL || !t->active)
        return 0;
    uint64_t now = loop_clock_ms();
    return t->due > now ? t->due - now : 0;
}

void loop_timer_free(struct loop_timer *t)
{
    if (t == NULL)
        return;
    loop_timer_stop(t);
    free(t);
}

/* ---- fds ----------------------------------------------------------------- */

int loop_fd_watch(struct loop *l, int fd, short events, loop_fd_fn fn, void *arg)
{
    for (size_t i = 0; i < l->fds_len; i++) {
        if (l->fds[i].fd == fd && !l->fds[i].removed) {
            l->fds[i].events = events;
            l->fds[i].fn = fn;
            l->fds[i].arg = arg;
            return 0;
        }
    }
    if (l->fds_len == l->fds_cap) {
        size_t cap = l->fds_cap ? l->fds_cap * 2 : 8;
        struct fd_watch *n = realloc(l->fds, cap * sizeof *n);
        if (n == NULL)
            return -1;
        l->fds = n;
        l->fds_cap = cap;
    }
    l->fds[l->fds_len++] = (struct fd_watch){fd, events, fn, arg, 0};
    return 0;
}

void loop_fd_unwatch(struct loop *l, int fd)
{
    /* Marked, compacted after dispatch: unwatching from inside a callback
     * must not shift the array under the dispatcher. */
    for (size_t i = 0; i < l->fds_len; i++)
        if (l->fds[i].fd == fd)
            l->fds[i].removed = 1;
}

static void fds_compact(struct loop *l)
{
    size_t j = 0;
    for (size_t i = 0; i < l->fds_len; i++)
        if (!l->fds[i].removed)
            l->fds[j++] = l->fds[i];
    l->fds_len = j;
}

/* ---- signals ------------------------------------------------------------- */

static void on_signal(int signo)
{
    int saved = errno;
    unsigned char b = (unsigned char)signo;
    if (sig_write_fd >= 0) {
        ssize_t n = write(sig_write_fd, &b, 1);
        (void)n; /* pipe full: a wake-up is pending anyway */
    }
    errno = saved;
}

int loop_signal_watch(struct loop *l, int signo, loop_signal_fn fn, void *arg)
{
    if (signo <= 0 || signo >= LOOP_MAX_SIGNALS)
        return -1;
    l->sig[signo].fn = fn;
    l->sig[signo].arg = arg;
    sig_write_fd = l->sig_pipe[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    return sigaction(signo, &sa, NULL);
}

static void drain_signals(struct loop *l)
{
    unsigned char b[64];
    ssize_t n;
    while ((n = read(l->sig_pipe[0], b, sizeof b)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (b[i] < LOOP_MAX_SIGNALS && l->sig[b[i]].fn)
                l->sig[b[i]].fn(b[i], l->sig[b[i]].arg);
        }
    }
}

int loop_before_sleep(struct loop *l, loop_hook_fn fn, void *arg)
{
    struct hook *h = realloc(l->hooks, (l->hooks_len + 1) * sizeof *h);
    if (h == NULL)
        return -1;
    l->hooks = h;
    l->hooks[l->hooks_len++] = (struct hook){fn, arg};
    return 0;
}

/* ---- the loop ------------------------------------------------------------ */

void *loop_curl_multi(struct loop *l)
{
    return l->multi;
}

void loop_set_curl_done(struct loop *l, void (*fn)(void *easy, int result))
{
    l->curl_done = fn;
}

void loop_stop(struct loop *l)
{
    l->stop = 1;
}

static void run_timers(struct loop *l)
{
    uint64_t now = loop_clock_ms();
    /* Only timers already due when we started: a callback re-arming with 0
     * delay waits for the next iteration instead of starving the poll. */
    while (l->heap_len > 0 && l->heap[0]->due <= now && !l->stop) {
        struct loop_timer *t = l->heap[0];
        heap_remove(l, 0);
        t->active = 0;
        t->fn(t->arg);
    }
}

/* Hands curl one socket's events (fd) or its timeout (CURL_SOCKET_TIMEOUT),
 * then the transfers that ended to their owner. */
static void run_curl(struct loop *l, curl_socket_t fd, int ev)
{
    int running, left;
    curl_multi_socket_action(l->multi, fd, ev, &running);
    CURLMsg *m;
    while ((m = curl_multi_info_read(l->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *easy = m->easy_handle;
        int result = (int)m->data.result;
        curl_multi_remove_handle(l->multi, easy);
        if (l->curl_done)
            l->curl_done(easy, result);
    }
}

/* How long poll() may sleep: until the next timer or curl's timeout. */
static long sleep_for(const struct loop *l, int max_wait_ms)
{
    long timeout = max_wait_ms < 0 ? 3600000 : max_wait_ms;
    uint64_t now = loop_clock_ms();
    uint64_t due = l->heap_len > 0 ? l->heap[0]->due : UINT64_MAX;
    if (l->curl_due < due)
        due = l->curl_due;
    if (due != UINT64_MAX) {
        long until = due > now ? (long)(due - now) : 0;
        if (until < timeout)
            timeout = until;
    }
    return timeout;
}

/* The watched descriptors' events: the signal pipe, the owners' fds, then
 * curl's sockets (callbacks may unwatch others: found again by identity). */
static void dispatch(struct loop *l, const struct pollfd *p, size_t n_user, size_t n)
{
    if (p[0].revents)
        drain_signals(l);
    for (size_t i = 1; i <= n_user && !l->stop; i++) {
        if (p[i].revents == 0)
            continue;
        for (size_t j = 0; j < l->fds_len; j++) {
            struct fd_watch *f = &l->fds[j];
            if (f->fd == p[i].fd && !f->removed) {
                f->fn(f->fd, p[i].revents, f->arg);
                break;
            }
        }
    }
    for (size_t i = n_user + 1; i < n; i++) {
        short r = p[i].revents;
        if (r == 0)
            continue;
        run_curl(l, p[i].fd,
                 ((r & POLLIN) ? CURL_CSELECT_IN : 0) | ((r & POLLOUT) ? CURL_CSELECT_OUT : 0) |
                     ((r & (POLLERR | POLLHUP | POLLNVAL)) ? CURL_CSELECT_ERR : 0));
    }
}

int loop_run_once(struct loop *l, int max_wait_ms)
{
    for (size_t i = 0; i < l->hooks_len; i++)
        l->hooks[i].fn(l->hooks[i].arg);
    if (l->stop)
        return 0;

    long timeout = sleep_for(l, max_wait_ms);
    fds_compact(l);
    size_t n_user = l->fds_len, n = 1 + n_user + l->cs_len;
    struct pollfd *p = calloc(n, sizeof *p);
    if (p == NULL)
        return -1;
    p[0] = (struct pollfd){.fd = l->sig_pipe[0], .events = POLLIN};
    for (size_t i = 0; i < n_user; i++)
        p[1 + i] = (struct pollfd){.fd = l->fds[i].fd, .events = l->fds[i].events};
    for (size_t i = 0; i < l->cs_len; i++)
        p[1 + n_user + i] = (struct pollfd){.fd = l->cs[i].fd, .events = l->cs[i].events};
    int rc = poll(p, (nfds_t)n, (int)timeout);
    l->wakeups++;
    l->now = loop_clock_ms();
    if (rc < 0 && errno != EINTR) {
        free(p);
        return -1;
    }
    if (rc > 0)
        dispatch(l, p, n_user, n);
    free(p);
    if (l->curl_due != UINT64_MAX && loop_clock_ms() >= l->curl_due) {
        l->curl_due = UINT64_MAX;
        run_curl(l, CURL_SOCKET_TIMEOUT, 0);
    }
    run_timers(l);
    return 0;
}

int loop_run(struct loop *l)
{
    l->stop = 0;
    while (!l->stop) {
        if (loop_run_once(l, -1) < 0)
            return -1;
    }
    return 0;
}

/* ---- memory --------------------------------------------------------------- */

static void on_trim(void *arg)
{
    (void)arg;
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

void loop_release_memory_soon(struct loop *l)
{
    if (l->trim == NULL && (l->trim = loop_timer_new(l, on_trim, l)) == NULL)
        return;
    if (!loop_timer_active(l->trim))
        loop_timer_start(l->trim, LOOP_TRIM_AFTER_MS);
}
