/* Consul-style log lines; see log.h. */
#include "lib/log.h"

#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "lib/buf.h"

static enum log_level min_level = LOG_INFO;
static enum log_format out_format = LOG_FORMAT_TEXT;
static FILE *out_stream;

static const char *const text_tags[] = {"TRACE", "DEBUG", "INFO", "WARN", "ERR"};
static const char *const names[] = {"trace", "debug", "info", "warn", "error"};

int log_level_parse(const char *s, enum log_level *out)
{
    static const struct {
        const char *name;
        enum log_level l;
    } tab[] = {
        {"trace", LOG_TRACE},  {"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"warn", LOG_WARN},
        {"warning", LOG_WARN}, {"error", LOG_ERROR}, {"err", LOG_ERROR},
    };
    for (size_t i = 0; s && i < sizeof tab / sizeof tab[0]; i++) {
        if (strcasecmp(s, tab[i].name) == 0) {
            *out = tab[i].l;
            return 0;
        }
    }
    return -1;
}

const char *log_level_name(enum log_level l)
{
    return names[l];
}

int log_format_parse(const char *s, enum log_format *out)
{
    if (s && strcasecmp(s, "text") == 0)
        *out = LOG_FORMAT_TEXT;
    else if (s && strcasecmp(s, "json") == 0)
        *out = LOG_FORMAT_JSON;
    else
        return -1;
    return 0;
}

void log_setup(enum log_level level, enum log_format format)
{
    min_level = level;
    out_format = format;
}

void log_set_stream(FILE *f)
{
    out_stream = f;
}

int log_enabled(enum log_level l)
{
    return l >= min_level;
}

/* Appends s with control characters escaped; json also escapes quotes. */
static void append_escaped(struct buf *b, const char *s, int json)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\n')
            buf_puts(b, "\\n");
        else if (*p == '\r')
            buf_puts(b, "\\r");
        else if (*p == '\t')
            buf_puts(b, json ? "\\t" : "\t");
        else if (*p < 0x20 || *p == 0x7f)
            buf_printf(b, json ? "\\u%04x" : "\\x%02x", *p);
        else if (json && (*p == '"' || *p == '\\'))
            buf_printf(b, "\\%c", *p);
        else
            buf_append(b, p, 1);
    }
}

void log_msg(enum log_level l, const char *fmt, ...)
{
    if (l < min_level)
        return;
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    struct buf line;
    buf_init(&line, 0);
    if (out_format == LOG_FORMAT_JSON) {
        gmtime_r(&tv.tv_sec, &tm);
        char ts[64];
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
        buf_printf(&line, "{\"@level\":\"%s\",\"@message\":\"", names[l]);
        append_escaped(&line, msg, 1);
        buf_printf(&line, "\",\"@module\":\"sidecar\",\"@timestamp\":\"%s.%06ldZ\"}\n", ts,
                   (long)tv.tv_usec);
    } else {
        localtime_r(&tv.tv_sec, &tm);
        char ts[32];
        strftime(ts, sizeof ts, "%Y/%m/%d %H:%M:%S", &tm);
        buf_printf(&line, "%s [%s] sidecar: ", ts, text_tags[l]);
        append_escaped(&line, msg, 0);
        buf_puts(&line, "\n");
    }
    FILE *f = out_stream ? out_stream : stderr;
    if (line.data) {
        fputs(line.data, f);
        fflush(f);
    }
    buf_free(&line);
}
