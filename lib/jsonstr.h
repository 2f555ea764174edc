/* JSON strings on hot paths, without a cJSON tree: finding where a run of
 * plain string bytes ends (the change detector's scanner) and writing a
 * string escaped exactly as cJSON prints it (the state file, the Consul
 * double's direct answers). */
#ifndef LIB_JSONSTR_H
#define LIB_JSONSTR_H

struct buf;

/* The first byte in [p, end) that a JSON string cannot hold as it is (a
 * quote, a backslash, a control character), or end; eight bytes at a time. */
const char *json_plain_run(const char *p, const char *end);

/* Appends s as a JSON string: quotes and backslashes escaped, \b \f \n \r \t
 * as such, other control characters as \u00XX (as cJSON prints them).
 * -1 when b refused it (out of memory or over its max). */
int buf_json_string(struct buf *b, const char *s);

#endif
