/*
 * When to send a TTL check update: on a change of status or output, or
 * before the TTL would lapse (refresh at about TTL/2), never more. Pure
 * policy over caller-supplied monotonic times; no allocation.
 */
#ifndef HEALTH_TTL_H
#define HEALTH_TTL_H

#include <stdint.h>

struct ttl_feeder {
    int64_t ttl_ms;
    int sent; /* something was sent since reset */
    char status[16];
    uint64_t output_hash;
    uint64_t last_sent;  /* ms */
    uint64_t refresh_at; /* ms: next refresh, before the TTL lapses */
    uint64_t retry_at;   /* ms: after a failed send; 0 none */
    unsigned failures;
};

void ttl_feeder_init(struct ttl_feeder *f, int64_t ttl_ms);
/* Forget what was sent (the check was re-registered: its state is new). */
void ttl_feeder_reset(struct ttl_feeder *f);
int ttl_should_send(const struct ttl_feeder *f, uint64_t now, const char *status,
                    const char *output);
/* When to ask again (refresh or retry), in ms. */
uint64_t ttl_next_deadline(const struct ttl_feeder *f);
void ttl_mark_sent(struct ttl_feeder *f, uint64_t now, const char *status, const char *output);
void ttl_mark_failed(struct ttl_feeder *f, uint64_t now);

#endif
