/* Register bodies and drift detection; see agent.h. */
#include "consul/agent.h"

#include <stdio.h>
#include <string.h>

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
    /* Tags: Consul keeps the order given. */
    const cJSON *wt = get(d, "Tags"), *vt = get(view, "Tags");
    int wn = cJSON_IsArray(wt) ? cJSON_GetArraySize(wt) : 0;
    int vn = cJSON_IsArray(vt) ? cJSON_GetArraySize(vt) : 0;
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

int consul_checks_drift(const struct consul_service *want, const cJSON *checks, char *why,
                        size_t len)
{
    for (size_t i = 0; i < want->n_checks; i++) {
        const cJSON *c = cJSON_IsObject(checks) ? get(checks, want->checks[i].check_id) : NULL;
        if (!cJSON_IsObject(c)) {
            snprintf(why, len, "check \"%s\" missing", want->checks[i].check_id);
            return 1;
        }
        if (strcmp(str_or(c, "ServiceID", ""), want->id) != 0) {
            snprintf(why, len, "check \"%s\" belongs to \"%s\"", want->checks[i].check_id,
                     str_or(c, "ServiceID", ""));
            return 1;
        }
    }
    return 0;
}
