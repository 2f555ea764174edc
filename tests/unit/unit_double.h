/* The Consul double (tests/doubles/consul), started by a unit suite for an
 * orchestrator to talk to over its real client: the fake whose fidelity is
 * tested against the Consul API reference. Its control API and agents are
 * reached with libcurl's easy API from the test thread. */
#ifndef TESTS_UNIT_UNIT_DOUBLE_H
#define TESTS_UNIT_UNIT_DOUBLE_H

#include <check.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct unit_double {
    pid_t pid;
    char dir[64];
    char agent[64];   /* "127.0.0.1:PORT" of node-1 */
    char control[96]; /* "http://127.0.0.1:PORT" */
};

/* The value of NAME's line in a port file, or 0. */
static inline int unit_port_of(const char *file, const char *name)
{
    FILE *f = fopen(file, "r");
    char n[64];
    int port, found = 0;
    while (f && fscanf(f, "%63s %d", n, &port) == 2)
        if (strcmp(n, name) == 0)
            found = port;
    if (f)
        fclose(f);
    return found;
}

/* Starts build/.../bin/consul-double (beside the tests' directory) with
 * its default cluster and agent node-1; waits for its port file. */
static inline void unit_double_start(struct unit_double *d)
{
    char exe[PATH_MAX], bin[PATH_MAX + 32], ports[128];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert_int_gt(n, 0);
    exe[n] = '\0';
    snprintf(bin, sizeof bin, "%s/consul-double", dirname(dirname(exe)));
    snprintf(d->dir, sizeof d->dir, "/tmp/cs-unit.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(d->dir));
    snprintf(ports, sizeof ports, "%s/ports", d->dir);
    d->pid = fork();
    ck_assert_int_ge(d->pid, 0);
    if (d->pid == 0) {
        if (freopen("/dev/null", "w", stdout) == NULL || freopen("/dev/null", "w", stderr) == NULL)
            _exit(127);
        execl(bin, bin, "--port-file", ports, "--agent", "node-1", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1000 && unit_port_of(ports, "control") == 0; i++) {
        struct timespec ts = {0, 10 * 1000000L}; /* the port file is written once all listens */
        nanosleep(&ts, NULL);
    }
    int control = unit_port_of(ports, "control"), agent = unit_port_of(ports, "node-1");
    ck_assert_msg(control > 0 && agent > 0, "consul-double did not start (%s)", bin);
    snprintf(d->agent, sizeof d->agent, "127.0.0.1:%d", agent);
    snprintf(d->control, sizeof d->control, "http://127.0.0.1:%d", control);
}

static inline void unit_double_stop(struct unit_double *d)
{
    char ports[128];
    kill(d->pid, SIGTERM);
    waitpid(d->pid, NULL, 0);
    snprintf(ports, sizeof ports, "%s/ports", d->dir);
    unlink(ports);
    rmdir(d->dir);
}

static inline size_t unit_collect(char *p, size_t size, size_t n, void *arg)
{
    FILE *f = arg;
    return fwrite(p, size, n, f);
}

/* One blocking request; the body answered (caller frees), *status set. */
static inline char *unit_http(const char *method, const char *url, const char *body, long *status)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, unit_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    CURLcode rc = curl_easy_perform(c);
    long st = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    curl_easy_cleanup(c);
    fclose(f);
    ck_assert_msg(rc == CURLE_OK, "%s %s: %s", method, url, curl_easy_strerror(rc));
    if (status)
        *status = st;
    return out;
}

/* One request that must answer 200; its body is dropped. */
static inline void unit_http_ok(const char *method, const char *url, const char *body)
{
    long status;
    free(unit_http(method, url, body, &status));
    ck_assert_msg(status == 200, "%s %s: %ld", method, url, status);
}

/* POST to the double's control API (path "/leader", "/members/NAME",
 * ...); it must answer 200. */
static inline void unit_double_control(const struct unit_double *d, const char *path,
                                       const char *body)
{
    char url[200];
    snprintf(url, sizeof url, "%s%s", d->control, path);
    unit_http_ok("POST", url, body);
}

/* PUT to agent node-1's HTTP API; it must answer 200. */
static inline void unit_double_agent_put(const struct unit_double *d, const char *path,
                                         const char *body)
{
    char url[200];
    snprintf(url, sizeof url, "http://%s%s", d->agent, path);
    unit_http_ok("PUT", url, body);
}

/* How many logged requests to the double match method and start with
 * url_prefix (its request log, /requests). */
static inline int unit_double_count(const struct unit_double *d, const char *method,
                                    const char *url_prefix)
{
    char url[160];
    snprintf(url, sizeof url, "%s/requests", d->control);
    char *log = unit_http("GET", url, NULL, NULL);
    cJSON *a = cJSON_Parse(log);
    const cJSON *e;
    int n = 0;
    cJSON_ArrayForEach(e, a) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "method");
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(e, "url");
        if (cJSON_IsString(m) && cJSON_IsString(u) && strcmp(m->valuestring, method) == 0 &&
            strncmp(u->valuestring, url_prefix, strlen(url_prefix)) == 0)
            n++;
    }
    cJSON_Delete(a);
    free(log);
    return n;
}

static inline void unit_double_clear_log(const struct unit_double *d)
{
    char url[160];
    snprintf(url, sizeof url, "%s/requests", d->control);
    free(unit_http("DELETE", url, NULL, NULL));
}

#endif
