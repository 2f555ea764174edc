/*
 * A strict checker for the Prometheus text exposition format (0.0.4), used by
 * the integration tests on the sidecar's /metrics. Reads stdin; exits 1 with
 * "line N: reason" on the first violation; otherwise prints every sample as
 * "name{labels} value" (labels as written) so tests can grep values.
 *
 * Checked: metric and label names, label value escapes, numeric values
 * (incl. +Inf, -Inf, NaN), optional timestamps, HELP/TYPE comments (TYPE
 * once per family, before its samples, known type), samples belong to a
 * declared family (counter/gauge by name; histogram _bucket/_sum/_count,
 * buckets with le, cumulative, ending with +Inf equal to _count), no
 * duplicate series, a final newline.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FAMILIES 512
#define MAX_SERIES 8192

struct family {
    char name[128];
    char type[16];
    int seen_sample;
};

static struct family fam[MAX_FAMILIES];
static int nfam;
static char *series[MAX_SERIES];
static int nseries;
static int lineno;

static void die(const char *why, const char *detail)
{
    fprintf(stderr, "line %d: %s%s%s\n", lineno, why, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static int name_start(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
static int name_char(int c) { return name_start(c) || (c >= '0' && c <= '9'); }

static const char *parse_name(const char *p, char *out, size_t len, int allow_colon)
{
    size_t n = 0;
    if (!name_start((unsigned char)*p) || (!allow_colon && *p == ':'))
        die("bad name", p);
    while (name_char((unsigned char)*p) && (allow_colon || *p != ':')) {
        if (n + 1 >= len)
            die("name too long", NULL);
        out[n++] = *p++;
    }
    out[n] = '\0';
    return p;
}

static struct family *find_family(const char *name)
{
    for (int i = 0; i < nfam; i++)
        if (strcmp(fam[i].name, name) == 0)
            return &fam[i];
    return NULL;
}

static double parse_value(const char *s, const char **end)
{
    if (strncmp(s, "+Inf", 4) == 0) { *end = s + 4; return INFINITY; }
    if (strncmp(s, "-Inf", 4) == 0) { *end = s + 4; return -INFINITY; }
    if (strncmp(s, "NaN", 3) == 0) { *end = s + 3; return NAN; }
    char *e;
    double v = strtod(s, &e);
    if (e == s)
        die("bad value", s);
    *end = e;
    return v;
}

/* Histogram bookkeeping per label set (without le). */
struct hist { char key[512]; double last_le, last_count, inf_count; int has_inf; double count; int has_count; };
static struct hist hists[1024];
static int nhist;

static struct hist *hist_for(const char *key)
{
    for (int i = 0; i < nhist; i++)
        if (strcmp(hists[i].key, key) == 0)
            return &hists[i];
    if (nhist == 1024)
        die("too many histogram series", NULL);
    struct hist *h = &hists[nhist++];
    memset(h, 0, sizeof *h);
    snprintf(h->key, sizeof h->key, "%s", key);
    h->last_le = -INFINITY;
    return h;
}

int main(void)
{
    char line[8192];
    int last_had_newline = 1;
    while (fgets(line, sizeof line, stdin)) {
        lineno++;
        size_t len = strlen(line);
        last_had_newline = len && line[len - 1] == '\n';
        if (!last_had_newline && !feof(stdin))
            die("line too long", NULL);
        if (last_had_newline)
            line[--len] = '\0';
        if (len == 0)
            continue;
        if (line[0] == '#') {
            char kw[8], name[128];
            if (sscanf(line, "# %7s", kw) != 1 || (strcmp(kw, "HELP") && strcmp(kw, "TYPE")))
                continue; /* plain comment */
            const char *p = parse_name(line + 2 + strlen(kw) + 1, name, sizeof name, 1);
            struct family *f = find_family(name);
            if (strcmp(kw, "TYPE") == 0) {
                if (*p++ != ' ')
                    die("TYPE without a type", NULL);
                if (strcmp(p, "counter") && strcmp(p, "gauge") && strcmp(p, "histogram") &&
                    strcmp(p, "summary") && strcmp(p, "untyped"))
                    die("unknown type", p);
                if (f && f->type[0])
                    die("second TYPE for", name);
                if (f && f->seen_sample)
                    die("TYPE after samples of", name);
                if (!f) {
                    if (nfam == MAX_FAMILIES)
                        die("too many families", NULL);
                    f = &fam[nfam++];
                    snprintf(f->name, sizeof f->name, "%s", name);
                }
                snprintf(f->type, sizeof f->type, "%s", p);
            } else if (!f) {
                if (nfam == MAX_FAMILIES)
                    die("too many families", NULL);
                f = &fam[nfam++];
                snprintf(f->name, sizeof f->name, "%s", name);
            }
            continue;
        }
        char name[128], labels[4096] = "", le[64] = "";
        const char *p = parse_name(line, name, sizeof name, 1);
        size_t lp = 0;
        if (*p == '{') {
            p++;
            int first = 1;
            while (*p != '}') {
                char lname[128];
                if (!first) {
                    if (*p++ != ',')
                        die("expected ','", p);
                    if (*p == '}')
                        break;
                }
                first = 0;
                p = parse_name(p, lname, sizeof lname, 0);
                if (*p++ != '=' || *p++ != '"')
                    die("expected =\"", lname);
                char val[1024];
                size_t vn = 0;
                while (*p != '"') {
                    if (*p == '\0')
                        die("unterminated label value", NULL);
                    if (*p == '\\') {
                        p++;
                        if (*p != '\\' && *p != '"' && *p != 'n')
                            die("bad escape in label value", NULL);
                    }
                    if (vn + 1 < sizeof val)
                        val[vn++] = *p;
                    p++;
                }
                val[vn] = '\0';
                p++;
                if (strcmp(lname, "le") == 0)
                    snprintf(le, sizeof le, "%.63s", val);
                else
                    lp += (size_t)snprintf(labels + lp, sizeof labels - lp, "%s%s=\"%s\"",
                                           lp ? "," : "", lname, val);
            }
            p++;
        }
        if (*p++ != ' ')
            die("expected a space before the value", NULL);
        const char *e;
        double v = parse_value(p, &e);
        if (*e == ' ') {
            char *te;
            strtoll(e + 1, &te, 10);
            if (*te)
                die("bad timestamp", e + 1);
        } else if (*e) {
            die("garbage after value", e);
        }
        /* Which family? */
        char base[128];
        snprintf(base, sizeof base, "%s", name);
        struct family *f = find_family(name);
        const char *suffix = "";
        if (!f) {
            static const char *const sfx[] = {"_bucket", "_sum", "_count"};
            for (int i = 0; i < 3 && !f; i++) {
                size_t nl = strlen(name), sl = strlen(sfx[i]);
                if (nl > sl && strcmp(name + nl - sl, sfx[i]) == 0) {
                    snprintf(base, sizeof base, "%.*s", (int)(nl - sl), name);
                    f = find_family(base);
                    if (f && (strcmp(f->type, "histogram") == 0 || strcmp(f->type, "summary") == 0))
                        suffix = sfx[i];
                    else
                        f = NULL;
                }
            }
        }
        if (!f || !f->type[0])
            die("sample without a TYPE", name);
        f->seen_sample = 1;
        if (strcmp(f->type, "histogram") == 0) {
            if (!*suffix)
                die("histogram sample without _bucket/_sum/_count", name);
            struct hist *h = hist_for(labels[0] ? labels : "-");
            if (strcmp(suffix, "_bucket") == 0) {
                if (!le[0])
                    die("bucket without le", NULL);
                const char *le_end;
                double lev = parse_value(le, &le_end);
                if (lev <= h->last_le)
                    die("buckets not in increasing le order", le);
                if (v < h->last_count)
                    die("buckets not cumulative", le);
                h->last_le = lev;
                h->last_count = v;
                if (isinf(lev)) {
                    h->has_inf = 1;
                    h->inf_count = v;
                }
            } else if (strcmp(suffix, "_count") == 0) {
                h->has_count = 1;
                h->count = v;
                if (!h->has_inf)
                    die("histogram _count before its +Inf bucket", name);
                if (h->inf_count != v)
                    die("+Inf bucket differs from _count", name);
            }
        } else if (strcmp(f->type, "counter") == 0 && (v < 0 || isnan(v))) {
            die("negative or NaN counter", name);
        }
        char key[4400];
        snprintf(key, sizeof key, "%s{%s%s%s}", name, labels, le[0] ? ",le=" : "", le);
        for (int i = 0; i < nseries; i++)
            if (strcmp(series[i], key) == 0)
                die("duplicate series", key);
        if (nseries < MAX_SERIES)
            series[nseries++] = strdup(key);
        printf("%s{%s} %s\n", name, labels, p);
    }
    if (!last_had_newline)
        die("no final newline", NULL);
    for (int i = 0; i < nhist; i++)
        if (!hists[i].has_inf)
            die("histogram without a +Inf bucket", hists[i].key);
    return 0;
}
