/* Go duration parsing and formatting; see dur.h. */
#include "lib/dur.h"

#include <stdio.h>
#include <string.h>

struct unit {
    const char *name;
    double ns;
};

static const struct unit units[] = {
    {"ns", 1.0}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3},
    {"ms", 1e6}, {"s", 1e9},  {"m", 60e9},        {"h", 3600e9},
};

int dur_parse_ms(const char *s, int64_t *out_ms)
{
    const char *p = s;
    int neg = 0;
    double total_ns = 0;

    if (s == NULL || *s == '\0')
        return -1;
    if (*p == '+' || *p == '-')
        neg = (*p++ == '-');
    if (strcmp(p, "0") == 0) {
        *out_ms = 0;
        return 0;
    }
    if (*p == '\0')
        return -1;
    while (*p) {
        double val = 0, frac = 0, scale = 1;
        int digits = 0;
        while (*p >= '0' && *p <= '9') {
            val = val * 10 + (*p++ - '0');
            digits++;
        }
        if (*p == '.') {
            p++;
            while (*p >= '0' && *p <= '9') {
                frac = frac * 10 + (*p++ - '0');
                scale *= 10;
                digits++;
            }
        }
        if (digits == 0)
            return -1;
        const struct unit *u = NULL;
        size_t best = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            size_t n = strlen(units[i].name);
            if (strncmp(p, units[i].name, n) == 0 && n > best) {
                u = &units[i];
                best = n;
            }
        }
        if (u == NULL)
            return -1;
        p += best;
        total_ns += (val + frac / scale) * u->ns;
        if (total_ns > 9.2e18)
            return -1;
    }
    int64_t ms = (int64_t)(total_ns / 1e6);
    if (ms == 0 && total_ns > 0)
        ms = 1;
    *out_ms = neg ? -ms : ms;
    return 0;
}

char *dur_format_ms(int64_t ms, char *buf, size_t len)
{
    char tmp[64];
    size_t n = 0;
    int64_t v = ms < 0 ? -ms : ms;

    if (len == 0)
        return buf;
    if (v == 0) {
        snprintf(buf, len, "0s");
        return buf;
    }
    if (ms < 0)
        tmp[n++] = '-';
    if (v < 1000) {
        snprintf(tmp + n, sizeof tmp - n, "%lldms", (long long)v);
        snprintf(buf, len, "%s", tmp);
        return buf;
    }
    int64_t h = v / 3600000, m = (v / 60000) % 60, sec = (v / 1000) % 60;
    int64_t frac = v % 1000;
    if (h)
        n += (size_t)snprintf(tmp + n, sizeof tmp - n, "%lldh", (long long)h);
    if (h || m)
        n += (size_t)snprintf(tmp + n, sizeof tmp - n, "%lldm", (long long)m);
    if (frac) {
        char f[8];
        snprintf(f, sizeof f, "%03lld", (long long)frac);
        for (int i = 2; i > 0 && f[i] == '0'; i--)
            f[i] = '\0';
        snprintf(tmp + n, sizeof tmp - n, "%lld.%ss", (long long)sec, f);
    } else {
        snprintf(tmp + n, sizeof tmp - n, "%llds", (long long)sec);
    }
    snprintf(buf, len, "%s", tmp);
    return buf;
}
