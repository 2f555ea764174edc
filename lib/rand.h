/*
 * Jitter and backoff. Every periodic timer in the daemon is jittered so that
 * a fleet of sidecars started together never acts in lock-step.
 */
#ifndef LIB_RAND_H
#define LIB_RAND_H

#include <stdint.h>

/* Seeds from the kernel (getrandom), falling back to time and pid. */
void rand_seed(void);
void rand_seed_with(uint64_t seed); /* tests: reproducible sequences */
uint64_t rand_u64(void);
/* Uniform in [0, n); 0 when n == 0. */
uint64_t rand_below(uint64_t n);
/* base + uniform [0, base * frac): Consul's own wait jitter is frac 1/16. */
uint64_t rand_jitter_up(uint64_t base_ms, double frac);
/* base ± base*frac, never below 1 ms for a positive base. */
uint64_t rand_jitter_around(uint64_t base_ms, double frac);

/* Capped exponential backoff with full jitter:
 *   delay(n) = random in [min/2, min(cap, min * 2^n)]  */
struct backoff {
    uint64_t min_ms;
    uint64_t max_ms;
    unsigned failures;
};
void backoff_init(struct backoff *b, uint64_t min_ms, uint64_t max_ms);
/* Counts one more failure and returns the delay before the next try. */
uint64_t backoff_next(struct backoff *b);
void backoff_reset(struct backoff *b);

#endif
