/* The sidecar's probe extension of a TTL check; see probedef.h. */
#include "sidecar/probedef.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int probedef_parse(struct jread *c, const cJSON *p, const char *path, struct probe_spec *spec)
{
    static const char *const keys[] = {"http",    "tcp",    "interval",
                                       "timeout", "method", "tls_skip_verify"};
    char kp[512];
    if (jread_obj(c, p, path) < 0 || jread_keys(c, p, path, keys, 6) < 0)
        return -1;
    memset(spec, 0, sizeof *spec);
    const cJSON *http = cJSON_GetObjectItemCaseSensitive(p, "http");
    const cJSON *tcp = cJSON_GetObjectItemCaseSensitive(p, "tcp");
    if ((http != NULL) == (tcp != NULL))
        return jread_fail(c, path, "needs exactly one of \"http\" or \"tcp\"");
    const char *target = "", *method = NULL;
    jread_join(kp, sizeof kp, path, http ? "http" : "tcp");
    if (jread_str(c, http ? http : tcp, kp, &target) < 0)
        return -1;
    if (http && strncmp(target, "http://", 7) != 0 && strncmp(target, "https://", 8) != 0)
        return jread_fail(c, kp, "expected an http:// or https:// URL, got \"%.64s\"", target);
    if (tcp && (strchr(target, ':') == NULL || strstr(target, "://")))
        return jread_fail(c, kp, "expected host:port, got \"%.64s\"", target);
    spec->kind = http ? PROBE_HTTP : PROBE_TCP;
    spec->interval_ms = 10000;
    spec->timeout_ms = 0;
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(p, "interval"))) {
        jread_join(kp, sizeof kp, path, "interval");
        if (jread_dur(c, v, kp, &spec->interval_ms) < 0)
            return -1;
        if (spec->interval_ms < 100)
            return jread_fail(c, kp, "must be at least 100ms");
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(p, "timeout"))) {
        jread_join(kp, sizeof kp, path, "timeout");
        if (jread_dur(c, v, kp, &spec->timeout_ms) < 0)
            return -1;
        if (spec->timeout_ms <= 0)
            return jread_fail(c, kp, "must be positive");
    }
    if (spec->timeout_ms == 0)
        spec->timeout_ms = spec->interval_ms < 10000 ? spec->interval_ms : 10000;
    if ((v = cJSON_GetObjectItemCaseSensitive(p, "method"))) {
        jread_join(kp, sizeof kp, path, "method");
        if (jread_str(c, v, kp, &method) < 0)
            return -1;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(p, "tls_skip_verify"))) {
        jread_join(kp, sizeof kp, path, "tls_skip_verify");
        if (jread_bool(c, v, kp, &spec->tls_skip_verify) < 0)
            return -1;
    }
    /* Allocate only once everything validated: a failure leaks nothing. */
    spec->target = strdup(target);
    spec->method = method ? strdup(method) : NULL;
    if (spec->target == NULL || (method && spec->method == NULL)) {
        free(spec->target);
        free(spec->method);
        spec->target = spec->method = NULL;
        return jread_fail(c, path, "out of memory");
    }
    return 0;
}

void probe_spec_free(struct probe_spec *s)
{
    free(s->target);
    free(s->method);
}

/* The hook's check: the probe must parse; it is kept at attach. */
static int probe_check(void *arg, struct jread *c, const cJSON *v, const char *path)
{
    struct probe_spec spec;
    if (probedef_parse(c, v, path, &spec) < 0)
        return -1;
    probe_spec_free(&spec);
    return 0;
}

/* The hook's attach: the probe, with the check it feeds and the check's
 * thresholds (SuccessBeforePassing, FailuresBefore...). */
static int probe_attach(void *arg, struct jread *c, const cJSON *v, const char *path,
                        const char *service_id, const char *check_id, int64_t ttl_ms,
                        const cJSON *check)
{
    struct probedef_list *l = arg;
    struct probe_spec spec;
    if (probedef_parse(c, v, path, &spec) < 0)
        return -1;
    struct cfg_probe *n = realloc(*l->items, (*l->n + 1) * sizeof *n);
    if (n == NULL) {
        probe_spec_free(&spec);
        return jread_fail(c, path, "out of memory");
    }
    *l->items = n;
    struct cfg_probe *p = &n[(*l->n)++];
    p->service_id = strdup(service_id);
    p->check_id = strdup(check_id);
    p->ttl_ms = ttl_ms;
    p->spec = spec;
    const cJSON *t;
    if ((t = cJSON_GetObjectItemCaseSensitive(check, "SuccessBeforePassing")))
        p->spec.success_before_passing = t->valueint;
    if ((t = cJSON_GetObjectItemCaseSensitive(check, "FailuresBeforeWarning")))
        p->spec.failures_before_warning = t->valueint;
    if ((t = cJSON_GetObjectItemCaseSensitive(check, "FailuresBeforeCritical")))
        p->spec.failures_before_critical = t->valueint;
    if (p->service_id == NULL || p->check_id == NULL)
        return jread_fail(c, path, "out of memory");
    return 0;
}

void probedef_list_init(struct probedef_list *l, struct cfg_probe **items, size_t *n)
{
    *l = (struct probedef_list){items, n, {"probe", probe_check, probe_attach, l}};
}
