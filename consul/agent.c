/* Register bodies and drift detection; see agent.h. */
#include "consul/agent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/dur.h"

void consul_service_free(struct consul_service *s)
{
    free(s->id);
    free(s->name);
    cJSON_Delete(s->definition);
    for (size_t i = 0; i < s->n_checks; i++) {
        free(s->checks[i].check_id);
        free(s->checks[i].name);
    }
    free(s->checks);
    memset(s, 0, sizeof *s);
}

char *consul_register_body(const struct consul_service *s)
{
    return cJSON_PrintUnformatted(s->definition);
}

static const cJSON *get(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static const char *str_or(const cJSON *o, const char *k, const char *dflt)
{
    const cJSON *v = get(o, k);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

static double num_or(const cJSON *o, const char *k, double dflt)
{
    const cJSON *v = get(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* Key lookup ignoring case: a user's TaggedAddresses may spell "address"
 * and "port" in lower case, the agent answers "Address" and "Port". */
static const cJSON *iget(const cJSON *o, const char *k)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, o)
        if (v->string && strcasecmp(v->string, k) == 0)
            return v;
    return NULL;
}

/* Every wanted tagged address is on the agent with the same address and
 * port; those the agent adds itself (lan_ipv4, wan_ipv4) do not count. */
static int tagged_drift(const cJSON *want, const cJSON *view, char *why, size_t len)
{
    const cJSON *w;
    cJSON_ArrayForEach(w, want) {
        const cJSON *v = cJSON_IsObject(view) ? get(view, w->string) : NULL;
        const cJSON *wa = iget(w, "Address"), *va = iget(v, "Address");
        const cJSON *wp = iget(w, "Port"), *vp = iget(v, "Port");
        if (!cJSON_IsObject(v) ||
            strcmp(cJSON_IsString(wa) ? wa->valuestring : "",
                   cJSON_IsString(va) ? va->valuestring : "") ||
            (cJSON_IsNumber(wp) ? wp->valuedouble : 0) !=
                (cJSON_IsNumber(vp) ? vp->valuedouble : 0)) {
            snprintf(why, len, "tagged address \"%s\" differs", w->string);
            return 1;
        }
    }
    return 0;
}

int consul_service_drift(const struct consul_service *want, const cJSON *view, char *why,
                         size_t len)
{
    const cJSON *d = want->definition;
    if (!cJSON_IsObject(view)) {
        snprintf(why, len, "missing");
        return 1;
    }
    if (strcmp(str_or(view, "Service", ""), want->name) != 0) {
        snprintf(why, len, "name \"%s\" != \"%s\"", str_or(view, "Service", ""), want->name);
        return 1;
    }
    if (strcmp(str_or(d, "Address", ""), str_or(view, "Address", "")) != 0) {
        snprintf(why, len, "address \"%s\" != \"%s\"", str_or(view, "Address", ""),
                 str_or(d, "Address", ""));
        return 1;
    }
    if (num_or(d, "Port", 0) != num_or(view, "Port", 0)) {
        snprintf(why, len, "port %.0f != %.0f", num_or(view, "Port", 0), num_or(d, "Port", 0));
        return 1;
    }
    static const char *const plain[] = {"Kind", "SocketPath"};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        if (strcmp(str_or(d, plain[i], ""), str_or(view, plain[i], "")) != 0) {
            snprintf(why, len, "%s \"%s\" != \"%s\"", plain[i], str_or(view, plain[i], ""),
                     str_or(d, plain[i], ""));
            return 1;
        }
    }
    if (tagged_drift(get(d, "TaggedAddresses"), get(view, "TaggedAddresses"), why, len))
        return 1;
    /* Tags: Consul keeps the order given. With EnableTagOverride the agent
     * adopts tags edited in the catalog: they are not ours to restore. */
    const cJSON *wt = get(d, "Tags"), *vt = get(view, "Tags");
    int wn = cJSON_IsArray(wt) ? cJSON_GetArraySize(wt) : 0;
    int vn = cJSON_IsArray(vt) ? cJSON_GetArraySize(vt) : 0;
    if (cJSON_IsTrue(get(d, "EnableTagOverride")))
        wn = vn = 0;
    for (int i = 0; i < wn || i < vn; i++) {
        const cJSON *a = i < wn ? cJSON_GetArrayItem(wt, i) : NULL;
        const cJSON *b = i < vn ? cJSON_GetArrayItem(vt, i) : NULL;
        if (!a || !b || !cJSON_IsString(a) || !cJSON_IsString(b) ||
            strcmp(a->valuestring, b->valuestring) != 0) {
            snprintf(why, len, "tags differ at position %d", i);
            return 1;
        }
    }
    /* Meta: exactly the wanted pairs. */
    const cJSON *wm = get(d, "Meta"), *vm = get(view, "Meta");
    int wmn = cJSON_IsObject(wm) ? cJSON_GetArraySize(wm) : 0;
    int vmn = cJSON_IsObject(vm) ? cJSON_GetArraySize(vm) : 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, wm) {
        const cJSON *o = cJSON_IsObject(vm) ? get(vm, m->string) : NULL;
        if (!cJSON_IsString(o) || !cJSON_IsString(m) || strcmp(o->valuestring, m->valuestring)) {
            snprintf(why, len, "meta \"%s\" differs", m->string);
            return 1;
        }
    }
    if (wmn != vmn) {
        snprintf(why, len, "meta has %d keys, want %d", vmn, wmn);
        return 1;
    }
    const cJSON *ww = get(d, "Weights"), *vw = get(view, "Weights");
    double wp = num_or(ww, "Passing", 1), ww2 = num_or(ww, "Warning", 1);
    double vp = num_or(vw, "Passing", 1), vw2 = num_or(vw, "Warning", 1);
    if (wp != vp || ww2 != vw2) {
        snprintf(why, len, "weights {%.0f,%.0f} != {%.0f,%.0f}", vp, vw2, wp, ww2);
        return 1;
    }
    const cJSON *we = get(d, "EnableTagOverride"), *ve = get(view, "EnableTagOverride");
    if (cJSON_IsTrue(we) != cJSON_IsTrue(ve)) {
        snprintf(why, len, "EnableTagOverride differs");
        return 1;
    }
    return 0;
}

/* The check type the agent reports for a definition (Consul's CheckType). */
static const char *check_type(const cJSON *c)
{
    static const char *const keys[][2] = {{"GRPC", "grpc"},
                                          {"HTTP", "http"},
                                          {"TCP", "tcp"},
                                          {"UDP", "udp"},
                                          {"TTL", "ttl"},
                                          {"DockerContainerID", "docker"},
                                          {"ScriptArgs", "script"},
                                          {"H2PING", "h2ping"},
                                          {"AliasService", "alias"},
                                          {"AliasNode", "alias"},
                                          {"OSService", "os_service"}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (get(c, keys[i][0]))
            return keys[i][1];
    return "";
}

/* A duration as the agent renders it ("" = unset = 0). -1 if unparsable. */
static int64_t dur_or_zero(const char *s)
{
    int64_t ms = 0;
    if (s[0] == '\0')
        return 0;
    return dur_parse_ms(s, &ms) == 0 ? ms : -1;
}

/* Consul raises intervals below 1 s to 1 s for probing checks; an agent
 * that reports the raised value is not drifted. */
static int same_interval(int64_t want, int64_t got, const char *type)
{
    if (want == got)
        return 1;
    return want > 0 && want < 1000 && got == 1000 && strcmp(type, "ttl") != 0;
}

int consul_checks_drift(const struct consul_service *want, const cJSON *checks, char *why,
                        size_t len)
{
    const cJSON *defs = get(want->definition, "Checks");
    for (size_t i = 0; i < want->n_checks; i++) {
        const char *id = want->checks[i].check_id;
        const cJSON *c = cJSON_IsObject(checks) ? get(checks, id) : NULL;
        if (!cJSON_IsObject(c)) {
            snprintf(why, len, "check \"%s\" missing", id);
            return 1;
        }
        if (strcmp(str_or(c, "ServiceID", ""), want->id) != 0) {
            snprintf(why, len, "check \"%s\" belongs to \"%s\"", id, str_or(c, "ServiceID", ""));
            return 1;
        }
        /* What the agent shows of a check's definition: Name, Notes, Type,
         * Interval, Timeout (Definition is {} for agent checks, so URLs,
         * addresses and TTL lengths cannot be compared). */
        const cJSON *d = cJSON_GetArrayItem(defs, (int)i);
        if (!cJSON_IsObject(d))
            continue;
        const char *name = want->checks[i].name ? want->checks[i].name : "";
        if (cJSON_IsString(get(c, "Name")) && strcmp(str_or(c, "Name", ""), name) != 0) {
            snprintf(why, len, "check \"%s\": name \"%s\" != \"%s\"", id, str_or(c, "Name", ""),
                     name);
            return 1;
        }
        if (cJSON_IsString(get(c, "Notes")) &&
            strcmp(str_or(c, "Notes", ""), str_or(d, "Notes", "")) != 0) {
            snprintf(why, len, "check \"%s\": notes differ", id);
            return 1;
        }
        const char *type = check_type(d);
        if (str_or(c, "Type", "")[0] && type[0] && strcmp(str_or(c, "Type", ""), type) != 0) {
            snprintf(why, len, "check \"%s\": type %s != %s", id, str_or(c, "Type", ""), type);
            return 1;
        }
        static const char *const durs[] = {"Interval", "Timeout"};
        for (size_t k = 0; k < 2; k++) {
            const cJSON *g = get(c, durs[k]);
            if (!cJSON_IsString(g))
                continue;
            int64_t w = dur_or_zero(str_or(d, durs[k], "")), a = dur_or_zero(g->valuestring);
            /* No timeout asked for: whatever default the agent shows is fine. */
            if (k == 1 && w == 0)
                continue;
            if (k == 0 ? !same_interval(w, a, type) : w != a) {
                snprintf(why, len, "check \"%s\": %s \"%s\" != \"%s\"", id,
                         k == 0 ? "interval" : "timeout", g->valuestring, str_or(d, durs[k], ""));
                return 1;
            }
        }
    }
    /* A check of ours the definition does not have (added by hand): the
     * re-registration with replace-existing-checks removes it. Maintenance
     * checks are the sidecar's own doing. */
    const cJSON *c;
    cJSON_ArrayForEach(c, checks) {
        if (!cJSON_IsObject(c) || strcmp(str_or(c, "ServiceID", ""), want->id) != 0 ||
            strncmp(c->string, "_service_maintenance:", 21) == 0)
            continue;
        size_t j = 0;
        while (j < want->n_checks && strcmp(want->checks[j].check_id, c->string) != 0)
            j++;
        if (j == want->n_checks) {
            snprintf(why, len, "check \"%s\" is not in the definition", c->string);
            return 1;
        }
    }
    return 0;
}
