/*
 * A tiny HTTP backend for integration tests and the demo: answers every
 * request with its own name ("orders-1\n"), so a test can tell which
 * instance served a request through a proxy. Its behaviour can be changed at
 * run time, for health-probe scenarios:
 *
 *   PUT /_backend/status/<code>   answer that status from now on (429, 500)
 *   PUT /_backend/delay/<ms>      delay every answer
 *   GET /_backend/slow/<ms>       this answer only comes after <ms> (a long
 *                                 request in flight, for drain scenarios)
 *
 * backend --name NAME --port-file FILE [--port N] [--listen ADDR]
 * writes the chosen port to FILE (atomically) once listening.
 */
#include <errno.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char name[128] = "backend";
static volatile int status_code = 200;
static volatile long delay_ms;
static volatile sig_atomic_t stop;

static long parse_num(const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    return v;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **state)
{
    (void)cls;
    (void)version;
    (void)upload;
    if (*state == NULL) {
        static int marker;
        *state = &marker;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    char body[256];
    int code = status_code;
    if (strcmp(method, "PUT") == 0 && strncmp(url, "/_backend/status/", 17) == 0) {
        long v = parse_num(url + 17, 100, 599);
        code = v < 0 ? 400 : 200;
        if (v > 0)
            status_code = (int)v;
        snprintf(body, sizeof body, "status %ld\n", v);
    } else if (strcmp(method, "PUT") == 0 && strncmp(url, "/_backend/delay/", 16) == 0) {
        long v = parse_num(url + 16, 0, 600000);
        code = v < 0 ? 400 : 200;
        if (v >= 0)
            delay_ms = v;
        snprintf(body, sizeof body, "delay %ld\n", v);
    } else if (strncmp(url, "/_backend/slow/", 15) == 0) {
        long v = parse_num(url + 15, 0, 600000);
        if (v > 0) {
            struct timespec ts = {v / 1000, (v % 1000) * 1000000L};
            nanosleep(&ts, NULL); /* this connection's own thread */
        }
        code = v < 0 ? 400 : code;
        snprintf(body, sizeof body, "%s\n", name);
    } else {
        if (delay_ms > 0) {
            struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        snprintf(body, sizeof body, "%s\n", name);
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "text/plain");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)code, r);
    MHD_destroy_response(r);
    return ret;
}

static void on_signal(int s)
{
    (void)s;
    stop = 1;
}

int main(int argc, char **argv)
{
    const char *port_file = NULL;
    long port = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
            snprintf(name, sizeof name, "%s", argv[++i]);
        else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc)
            port_file = argv[++i];
        else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc &&
                 (port = parse_num(argv[++i], 0, 65535)) >= 0)
            ;
        else {
            fprintf(stderr, "usage: backend --name NAME --port-file FILE [--port N]\n");
            return 2;
        }
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG,
        (uint16_t)port, NULL, NULL, answer, NULL, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "backend: cannot listen on port %ld\n", port);
        return 1;
    }
    int bound = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    if (port_file) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        if (f == NULL || fprintf(f, "%d\n", bound) < 0 || fclose(f) != 0 ||
            rename(tmp, port_file) != 0) {
            fprintf(stderr, "backend: cannot write %s\n", port_file);
            return 1;
        }
    }
    fprintf(stderr, "backend %s listening on 127.0.0.1:%d\n", name, bound);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    while (!stop)
        pause();
    MHD_stop_daemon(d);
    return 0;
}
