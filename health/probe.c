/* Local HTTP/TCP probes; see probe.h. */
#include "health/probe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/http.h"
#include "lib/rand.h"

struct probe {
    struct loop *loop;
    struct probe_spec spec;
    char url[1100];
    probe_fn fn;
    void *arg;
    struct http_call *call;
    struct loop_timer *timer;
    int successes, failures;
    const char *reported; /* NULL before the first result */
    char output[PROBE_OUTPUT_MAX + 64];
    int first;
};

static const char *reason_phrase(long code)
{
    switch (code) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "";
    }
}

struct probe *probe_new(struct loop *l, const struct probe_spec *spec, probe_fn fn, void *arg,
                        char *err, size_t errlen)
{
    struct probe *p = calloc(1, sizeof *p);
    if (p == NULL || spec->target == NULL) {
        free(p);
        snprintf(err, errlen, spec->target ? "out of memory" : "probe without a target");
        return NULL;
    }
    p->loop = l;
    p->spec = *spec;
    p->spec.target = strdup(spec->target);
    p->spec.method = spec->method ? strdup(spec->method) : NULL;
    p->fn = fn;
    p->arg = arg;
    p->first = 1;
    if (p->spec.interval_ms <= 0)
        p->spec.interval_ms = 10000;
    if (p->spec.timeout_ms <= 0 || p->spec.timeout_ms > p->spec.interval_ms)
        p->spec.timeout_ms = p->spec.interval_ms < 10000 ? p->spec.interval_ms : 10000;
    if (spec->kind == PROBE_TCP)
        snprintf(p->url, sizeof p->url, "http://%s/", spec->target);
    else
        snprintf(p->url, sizeof p->url, "%s", spec->target);
    p->timer = NULL;
    if (!p->spec.target || (spec->method && !p->spec.method)) {
        probe_free(p);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    return p;
}

void probe_free(struct probe *p)
{
    if (p == NULL)
        return;
    http_cancel(p->call);
    loop_timer_free(p->timer);
    free(p->spec.target);
    free(p->spec.method);
    free(p);
}

const char *probe_status(const struct probe *p)
{
    return p->reported;
}

const char *probe_output(const struct probe *p)
{
    return p->output;
}

static void report(struct probe *p, const char *status, const char *output)
{
    if (p->reported && strcmp(p->reported, status) == 0 && strcmp(p->output, output) == 0)
        return;
    p->reported = status;
    snprintf(p->output, sizeof p->output, "%s", output);
    p->fn(status, p->output, p->arg);
}

/* Applies the thresholds to one raw result. */
static void result(struct probe *p, const char *raw, const char *output)
{
    const struct probe_spec *s = &p->spec;
    /* As Consul's status handler: a warning (HTTP 429) counts as a success
     * toward success_before_passing, and resets the failure count. */
    if (strcmp(raw, "passing") == 0 || strcmp(raw, "warning") == 0) {
        p->failures = 0;
        p->successes++;
        if (p->reported == NULL || strcmp(p->reported, "critical") != 0 ||
            p->successes >= s->success_before_passing)
            report(p, raw, output);
        return;
    }
    p->successes = 0;
    p->failures++;
    int to_crit = s->failures_before_critical;
    int to_warn = s->failures_before_warning ? s->failures_before_warning : to_crit;
    if (p->reported == NULL || p->failures >= to_crit)
        report(p, "critical", output);
    else if (p->failures >= to_warn && strcmp(p->reported, "critical") != 0)
        report(p, "warning", output);
    /* Otherwise below the threshold: the reported status and its output stay. */
}

static void on_timer(void *arg);

static void schedule(struct probe *p)
{
    loop_timer_start(p->timer, (uint64_t)p->spec.interval_ms);
}

static void on_done(struct http_response *r, void *arg)
{
    struct probe *p = arg;
    char out[PROBE_OUTPUT_MAX + 512];
    p->call = NULL;
    const char *m = p->spec.method ? p->spec.method : "GET";
    if (p->spec.kind == PROBE_TCP) {
        if (r->err == HTTP_OK) { /* the port accepted; anything else is a failure */
            snprintf(out, sizeof out, "TCP connect %s: Success", p->spec.target);
            result(p, "passing", out);
        } else {
            snprintf(out, sizeof out, "dial tcp %s: %s", p->spec.target, r->error);
            result(p, "critical", out);
        }
    } else if (r->err != HTTP_OK) {
        snprintf(out, sizeof out, "%s %s: %s", m, p->spec.target,
                 r->err == HTTP_ERR_TIMEOUT ? "timed out" : r->error);
        result(p, "critical", out);
    } else {
        const char *body = r->body.data ? r->body.data : "";
        size_t bl = strlen(body);
        while (bl && (body[bl - 1] == '\n' || body[bl - 1] == '\r'))
            bl--;
        snprintf(out, sizeof out, "HTTP %s %s: %ld %s Output: %.*s", m, p->spec.target, r->status,
                 reason_phrase(r->status), (int)(bl > PROBE_OUTPUT_MAX ? PROBE_OUTPUT_MAX : bl),
                 body);
        const char *raw = r->status >= 200 && r->status < 300 ? "passing"
                          : r->status == 429                  ? "warning"
                                                              : "critical";
        result(p, raw, out);
    }
    schedule(p);
}

static void run(struct probe *p)
{
    char err[256];
    struct http_tls tls = {.insecure = p->spec.tls_skip_verify};
    const char *hdrs[] = {"Accept: text/plain, */*", NULL};
    struct http_request rq = {
        .method = p->spec.kind == PROBE_HTTP ? (p->spec.method ? p->spec.method : "GET") : NULL,
        .url = p->url,
        .headers = hdrs,
        .user_agent = "consul-sidecar-probe",
        .timeout_ms = (long)p->spec.timeout_ms,
        .connect_timeout_ms = (long)p->spec.timeout_ms,
        .max_body = 64 * 1024,
        .truncate_body = 1, /* as Consul: the status decides, the output is cut */
        .tls = &tls,
        .connect_only = p->spec.kind == PROBE_TCP,
    };
    p->call = http_start(p->loop, &rq, on_done, p, err, sizeof err);
    if (p->call == NULL) {
        char out[400];
        snprintf(out, sizeof out, "probe could not start: %s", err);
        result(p, "critical", out);
        schedule(p);
    }
}

static void on_timer(void *arg)
{
    run(arg);
}

void probe_start(struct probe *p)
{
    if (p->timer == NULL)
        p->timer = loop_timer_new(p->loop, on_timer, p);
    if (p->timer == NULL)
        return;
    /* The first probe runs soon, at a random point of a short window, so a
     * node's probes do not all fire together. */
    uint64_t window = (uint64_t)p->spec.interval_ms < 1000 ? (uint64_t)p->spec.interval_ms : 1000;
    loop_timer_start(p->timer, rand_below(window / 4 + 1));
}
