/* What every unit suite shares: running it under Check, and an in-process
 * HTTP server to fake an API with. */
#ifndef TESTS_UNIT_UNIT_H
#define TESTS_UNIT_UNIT_H

#include <check.h>
#include <microhttpd.h>
#include <stdio.h>

/* Runs every test case of s; the exit status of a suite's main. */
static inline int unit_run(Suite *s)
{
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}

/* An in-process HTTP server on a free loopback port, a thread per
 * connection, answering with fn: a fake of the API a test drives. Its
 * address goes to addr as "127.0.0.1:PORT". */
static inline struct MHD_Daemon *unit_server(MHD_AccessHandlerCallback fn, char *addr, size_t len)
{
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL,
                         NULL, fn, NULL, MHD_OPTION_END);
    ck_assert_ptr_nonnull(d);
    snprintf(addr, len, "127.0.0.1:%d", MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port);
    return d;
}

/* Turns loop l until cond holds or ms pass; cond is looked at before each
 * turn, so a suite waits on what it checks, not on a sleep. Needs
 * lib/loop.h where it is used. */
#define UNIT_RUN_UNTIL(l, ms, cond)                    \
    do {                                               \
        uint64_t unit_end_ = loop_clock_ms() + (ms);   \
        while (!(cond) && loop_clock_ms() < unit_end_) \
            loop_run_once((l), 20);                    \
    } while (0)

#endif
