/*
 * Go duration strings ("500ms", "10s", "1m30s", "-1.5h"), the syntax Consul
 * uses for every interval, timeout and TTL. Parse into milliseconds (what the
 * event loop works in) and format back in Go's canonical form so an effective
 * config prints as the user would write it.
 */
#ifndef LIB_DUR_H
#define LIB_DUR_H

#include <stddef.h>
#include <stdint.h>

/*
 * Parses a Go duration into *out_ms (rounded down to whole milliseconds,
 * sub-millisecond positive values round up to 1 so "500us" never means 0).
 * Accepts units ns us µs ms s m h, fractions and a leading sign; "0" alone is
 * valid. Returns 0, or -1 with *out_ms untouched (e.g. "10" has no unit).
 */
int dur_parse_ms(const char *s, int64_t *out_ms);

/* Formats ms the way Go's time.Duration.String() does ("1m30s", "500ms",
 * "0s"). Always NUL-terminates; returns buf. */
char *dur_format_ms(int64_t ms, char *buf, size_t len);

#endif
