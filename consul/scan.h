/* A decoder of /v1/health/state/<state> answers for the change detector.
 *
 * The detector asks for the checks not passing: few while all is well, but
 * in an outage every check of a datacenter (10,000 checks: ~3 MB), back
 * whole on every further change, so their decoding is on the path of every
 * change. It is the one Consul answer not decoded with cJSON: a cJSON tree
 * of it costs ~25 allocations a check, and the detector needs three fields.
 * This scanner validates the whole answer as strictly as cJSON would (and
 * more: nothing after the array, no control characters in strings, a
 * ModifyIndex that is a non-negative integer) and keeps only Node,
 * ServiceName and ModifyIndex, copied into an arena that is kept, with the
 * entry array, from one answer to the next. Whatever it accepts,
 * consul_decode_health_state accepts with the same entries (a fuzz target
 * checks it). */
#ifndef CONSUL_SCAN_H
#define CONSUL_SCAN_H

#include <stddef.h>
#include <stdint.h>

struct consul_state_check {
    const char *node;    /* NUL-terminated, in the scan's arena */
    const char *service; /* "" for node-level checks (serfHealth, maintenance) */
    size_t node_len, service_len;
    uint64_t modify_index;
    size_t node_off, service_off; /* where node and service start in the arena */
};

struct consul_state_scan {
    struct consul_state_check *e; /* e[0..n): the last answer's checks */
    size_t n, cap;
    char *arena;
    size_t used, arena_cap;
};

/* Decodes one answer into s, replacing the last one (its memory is reused).
 * -1 and a reason in err (the byte offset of a syntax error) when the
 * answer is not a JSON array of checks; s then holds no checks. */
int consul_scan_health_state(struct consul_state_scan *s, const char *body, size_t len, char *err,
                             size_t errlen);
void consul_state_scan_free(struct consul_state_scan *s);

#endif
