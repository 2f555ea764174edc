/*
 * Log lines in Consul's classic format on stderr:
 *   2026/11/24 07:38:49 [INFO] sidecar: Synced service 'web-1'
 * or, with LOG_FORMAT_JSON, one hclog-style JSON object a line:
 *   {"@level":"info","@message":"...","@module":"sidecar","@timestamp":"..."}
 * Only sidecar/ (the top layer) logs; lower layers fill error buffers.
 * Control characters in messages are escaped, so text that came from the
 * network can never forge a line.
 */
#ifndef LIB_LOG_H
#define LIB_LOG_H

#include <stdio.h>

enum log_level { LOG_TRACE, LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

/* Parses "trace|debug|info|warn|error" (case-insensitive; "err" and
 * "warning" too). Returns 0 or -1. */
int log_level_parse(const char *s, enum log_level *out);
const char *log_level_name(enum log_level l); /* "info" */
int log_format_parse(const char *s, enum log_format *out);

/* Process-wide settings; defaults info/text/stderr. */
void log_setup(enum log_level level, enum log_format format);
void log_set_stream(FILE *f); /* tests */
int log_enabled(enum log_level l);

void log_msg(enum log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_trace(...) log_msg(LOG_TRACE, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
