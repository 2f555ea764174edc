/* Prometheus registry; see metrics.h. */
#include "lib/metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_COUNTER, K_GAUGE, K_HISTOGRAM };

struct series {
    char *label_value; /* NULL for unlabelled */
    double value;      /* counter / gauge */
    double *counts;    /* histogram: per bucket (non-cumulative) */
    double sum, count;
};

struct family {
    enum kind kind;
    char *name, *help, *label;
    double *buckets;
    size_t n_buckets;
    struct series *series;
    size_t n_series;
    struct family *next;
    struct metrics *m;
};

struct collect {
    metrics_collect_fn fn;
    void *arg;
};

struct metrics {
    struct family *head, *tail;
    struct collect *hooks;
    size_t n_hooks;
};

struct metrics *metrics_new(void)
{
    return calloc(1, sizeof(struct metrics));
}

void metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    struct family *f = m->head;
    while (f) {
        struct family *next = f->next;
        for (size_t i = 0; i < f->n_series; i++) {
            free(f->series[i].label_value);
            free(f->series[i].counts);
        }
        free(f->series);
        free(f->buckets);
        free(f->name);
        free(f->help);
        free(f->label);
        free(f);
        f = next;
    }
    free(m->hooks);
    free(m);
}

int metrics_valid_name(const char *name)
{
    if (name == NULL || !*name)
        return 0;
    for (const char *p = name; *p; p++) {
        int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == ':' ||
                 (p != name && *p >= '0' && *p <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

static struct family *add_family(struct metrics *m, enum kind k, const char *name, const char *help,
                                 const char *label)
{
    for (struct family *f = m->head; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f->kind == k ? f : NULL;
    if (!metrics_valid_name(name) || (label && (!metrics_valid_name(label) || strchr(label, ':'))))
        return NULL;
    struct family *f = calloc(1, sizeof *f);
    if (f == NULL)
        return NULL;
    f->kind = k;
    f->m = m;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->label = label ? strdup(label) : NULL;
    if (!f->name || !f->help || (label && !f->label)) {
        free(f->name);
        free(f->help);
        free(f->label);
        free(f);
        return NULL;
    }
    if (m->tail)
        m->tail->next = f;
    else
        m->head = f;
    m->tail = f;
    return f;
}

struct metrics_counter *metrics_counter(struct metrics *m, const char *name, const char *help,
                                        const char *label_name)
{
    return (struct metrics_counter *)add_family(m, K_COUNTER, name, help, label_name);
}

struct metrics_gauge *metrics_gauge(struct metrics *m, const char *name, const char *help,
                                    const char *label_name)
{
    return (struct metrics_gauge *)add_family(m, K_GAUGE, name, help, label_name);
}

struct metrics_histogram *metrics_histogram(struct metrics *m, const char *name, const char *help,
                                            const char *label_name, const double *buckets,
                                            size_t n_buckets)
{
    struct family *f = add_family(m, K_HISTOGRAM, name, help, label_name);
    if (f && f->buckets == NULL && n_buckets) {
        f->buckets = malloc(n_buckets * sizeof *f->buckets);
        if (f->buckets == NULL)
            return NULL;
        memcpy(f->buckets, buckets, n_buckets * sizeof *buckets);
        f->n_buckets = n_buckets;
    }
    return (struct metrics_histogram *)f;
}

static struct series *series_for(struct family *f, const char *label_value)
{
    const char *lv = f->label ? (label_value ? label_value : "") : NULL;
    for (size_t i = 0; i < f->n_series; i++) {
        const char *s = f->series[i].label_value;
        if ((lv == NULL && s == NULL) || (lv && s && strcmp(lv, s) == 0))
            return &f->series[i];
    }
    struct series *n = realloc(f->series, (f->n_series + 1) * sizeof *n);
    if (n == NULL)
        return NULL;
    f->series = n;
    struct series *s = &f->series[f->n_series];
    memset(s, 0, sizeof *s);
    if (lv && (s->label_value = strdup(lv)) == NULL)
        return NULL;
    if (f->kind == K_HISTOGRAM && (s->counts = calloc(f->n_buckets + 1, sizeof(double))) == NULL) {
        free(s->label_value);
        return NULL;
    }
    f->n_series++;
    return s;
}

void metrics_counter_inc(struct metrics_counter *c, const char *label_value, double by)
{
    struct series *s = c && by >= 0 ? series_for((struct family *)c, label_value) : NULL;
    if (s)
        s->value += by;
}

void metrics_counter_set(struct metrics_counter *c, const char *label_value, double v)
{
    struct series *s = c ? series_for((struct family *)c, label_value) : NULL;
    if (s && v >= s->value)
        s->value = v;
}

int metrics_on_collect(struct metrics *m, metrics_collect_fn fn, void *arg)
{
    struct collect *n = realloc(m->hooks, (m->n_hooks + 1) * sizeof *n);
    if (n == NULL)
        return -1;
    m->hooks = n;
    m->hooks[m->n_hooks++] = (struct collect){fn, arg};
    return 0;
}

void metrics_gauge_set(struct metrics_gauge *g, const char *label_value, double v)
{
    struct series *s = g ? series_for((struct family *)g, label_value) : NULL;
    if (s)
        s->value = v;
}

void metrics_histogram_observe(struct metrics_histogram *h, const char *label_value, double v)
{
    struct family *f = (struct family *)h;
    struct series *s = f ? series_for(f, label_value) : NULL;
    if (s == NULL)
        return;
    size_t i = 0;
    while (i < f->n_buckets && v > f->buckets[i])
        i++;
    s->counts[i] += 1;
    s->sum += v;
    s->count += 1;
}

void metrics_build_info(struct metrics *m, const char *version)
{
    struct metrics_gauge *g =
        metrics_gauge(m, "consul_sidecar_build_info", "Build information (always 1)", "version");
    metrics_gauge_set(g, version, 1);
}

static void put_escaped(struct buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            buf_puts(b, "\\\\");
        else if (*s == '"')
            buf_puts(b, "\\\"");
        else if (*s == '\n')
            buf_puts(b, "\\n");
        else
            buf_append(b, s, 1);
    }
}

static void put_help(struct buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            buf_puts(b, "\\\\");
        else if (*s == '\n')
            buf_puts(b, "\\n");
        else
            buf_append(b, s, 1);
    }
}

static void put_value(struct buf *b, double v)
{
    if (isinf(v))
        buf_puts(b, v > 0 ? "+Inf" : "-Inf");
    else if (isnan(v))
        buf_puts(b, "NaN");
    else if (v == (double)(long long)v && fabs(v) < 1e15)
        buf_printf(b, "%lld", (long long)v);
    else
        buf_printf(b, "%.9g", v);
}

/* name{label="v"[,extra]} */
static void put_series(struct buf *b, const struct family *f, const char *suffix,
                       const struct series *s, const char *extra)
{
    buf_printf(b, "%s%s", f->name, suffix);
    int open = 0;
    if (f->label) {
        buf_printf(b, "{%s=\"", f->label);
        put_escaped(b, s->label_value ? s->label_value : "");
        buf_puts(b, "\"");
        open = 1;
    }
    if (extra) {
        buf_printf(b, "%s%s", open ? "," : "{", extra);
        open = 1;
    }
    if (open)
        buf_puts(b, "}");
    buf_puts(b, " ");
}

int metrics_render(struct metrics *m, struct buf *out)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    for (size_t i = 0; i < m->n_hooks; i++)
        m->hooks[i].fn(m, m->hooks[i].arg);
    for (const struct family *f = m->head; f; f = f->next) {
        buf_printf(out, "# HELP %s ", f->name);
        put_help(out, f->help);
        buf_printf(out, "\n# TYPE %s %s\n", f->name, types[f->kind]);
        for (size_t i = 0; i < f->n_series; i++) {
            const struct series *s = &f->series[i];
            if (f->kind != K_HISTOGRAM) {
                put_series(out, f, "", s, NULL);
                put_value(out, s->value);
                buf_puts(out, "\n");
                continue;
            }
            double cum = 0;
            char le[64];
            for (size_t k = 0; k <= f->n_buckets; k++) {
                cum += s->counts[k];
                if (k < f->n_buckets)
                    snprintf(le, sizeof le, "le=\"%g\"", f->buckets[k]);
                else
                    snprintf(le, sizeof le, "le=\"+Inf\"");
                put_series(out, f, "_bucket", s, le);
                put_value(out, cum);
                buf_puts(out, "\n");
            }
            put_series(out, f, "_sum", s, NULL);
            put_value(out, s->sum);
            buf_puts(out, "\n");
            put_series(out, f, "_count", s, NULL);
            put_value(out, s->count);
            buf_puts(out, "\n");
        }
    }
    return out->overflow ? -1 : 0;
}
