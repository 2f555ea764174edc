/*
 * The event loop: one thread, one poll(). It waits on the sockets libcurl
 * asks for (its socket API: an event runs only that socket's transfers) plus
 * the extra descriptors registered here (libmicrohttpd's epoll
 * fd, probe sockets, child-process pipes, the proxy runtime sockets) and a
 * self-pipe written by signal handlers. The monotonic timer heap and
 * libcurl's own timeout give the poll its timeout: no fixed tick, no idle
 * wake-ups. before_sleep hooks run once
 * per iteration, after all events of that iteration (used to batch proxy
 * writes).
 *
 * Callbacks may add, re-arm, stop or free timers and fds (including the one
 * being dispatched), and may call loop_stop().
 */
#ifndef LIB_LOOP_H
#define LIB_LOOP_H

#include <stdint.h>

struct loop;
struct loop_timer;

typedef void (*loop_timer_fn)(void *arg);
typedef void (*loop_fd_fn)(int fd, short revents, void *arg);
typedef void (*loop_signal_fn)(int signo, void *arg);
typedef void (*loop_hook_fn)(void *arg);

/* Returns NULL on failure (no memory, no pipe, curl_multi_init failed). */
struct loop *loop_new(void);
/* Frees the loop; every timer and fd must have been freed/unwatched by its
 * owner first (leftovers are freed, their callbacks never run). NULL ok. */
void loop_free(struct loop *l);

/* Monotonic milliseconds: loop_now() is read at the start of each iteration
 * (cheap, consistent within one dispatch); loop_clock_ms() reads the clock. */
uint64_t loop_now(const struct loop *l);
uint64_t loop_clock_ms(void);
/* The same clock in microseconds, for timing a stage of work. */
uint64_t loop_clock_us(void);

/* Timers are owned by the caller: create once, start/stop any number of
 * times, free when done (free also stops). One-shot: after firing a timer is
 * inactive until started again. */
struct loop_timer *loop_timer_new(struct loop *l, loop_timer_fn fn, void *arg);
void loop_timer_start(struct loop_timer *t, uint64_t delay_ms);
void loop_timer_stop(struct loop_timer *t);
int loop_timer_active(const struct loop_timer *t);
/* Milliseconds until it fires (0 if due or inactive). */
uint64_t loop_timer_remaining(const struct loop_timer *t);
void loop_timer_free(struct loop_timer *t);

/* Watches fd for events (POLLIN/POLLOUT). One watch per fd; watching an fd
 * again replaces its events and callback. Returns 0 or -1. */
int loop_fd_watch(struct loop *l, int fd, short events, loop_fd_fn fn, void *arg);
void loop_fd_unwatch(struct loop *l, int fd);

/* Installs a handler for signo that only writes to the self-pipe; fn runs
 * later from the loop. Returns 0 or -1. */
int loop_signal_watch(struct loop *l, int signo, loop_signal_fn fn, void *arg);

/* Adds a hook run once per iteration before the loop sleeps. */
int loop_before_sleep(struct loop *l, loop_hook_fn fn, void *arg);

/* After a burst of work on large answers (thousands of targets parsed and
 * freed), glibc keeps the freed heap: this asks for it to be given back to
 * the system once, LOOP_TRIM_AFTER_MS later (calls within that time share
 * the one release; an idle loop has no timer for it). */
#define LOOP_TRIM_AFTER_MS 1000
void loop_release_memory_soon(struct loop *l);

/* Runs until loop_stop(). Returns 0, or -1 if polling itself failed. */
int loop_run(struct loop *l);
void loop_stop(struct loop *l);
/* Runs one iteration, waiting at most max_wait_ms. For tests and -once. */
int loop_run_once(struct loop *l, int max_wait_ms);

/* Number of poll wake-ups so far (footprint metrics and benchmarks). */
uint64_t loop_wakeups(const struct loop *l);

/* For lib/http.c only: the curl multi handle and the hook that receives
 * finished transfers. */
void *loop_curl_multi(struct loop *l);
void loop_set_curl_done(struct loop *l, void (*fn)(void *easy, int result));

#endif
