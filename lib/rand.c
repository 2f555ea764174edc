/* xorshift64* PRNG, jitter and backoff; see rand.h. Not for secrets. */
#include "lib/rand.h"

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static uint64_t state = 0x9E3779B97F4A7C15ull;

void rand_seed_with(uint64_t seed)
{
    state = seed ? seed : 0x9E3779B97F4A7C15ull;
}

void rand_seed(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
    }
    rand_seed_with(s);
}

uint64_t rand_u64(void)
{
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545F4914F6CDD1Dull;
}

uint64_t rand_below(uint64_t n)
{
    return n ? rand_u64() % n : 0;
}

uint64_t rand_jitter_up(uint64_t base_ms, double frac)
{
    return base_ms + rand_below((uint64_t)((double)base_ms * frac));
}

uint64_t rand_jitter_around(uint64_t base_ms, double frac)
{
    uint64_t span = (uint64_t)((double)base_ms * frac);
    uint64_t v = base_ms - span + rand_below(2 * span + 1);
    return (v == 0 && base_ms > 0) ? 1 : v;
}

void backoff_init(struct backoff *b, uint64_t min_ms, uint64_t max_ms)
{
    b->min_ms = min_ms;
    b->max_ms = max_ms;
    b->failures = 0;
}

uint64_t backoff_next(struct backoff *b)
{
    uint64_t ceil = b->min_ms;
    for (unsigned i = 0; i < b->failures && ceil < b->max_ms; i++)
        ceil *= 2;
    if (ceil > b->max_ms)
        ceil = b->max_ms;
    if (b->failures < 64)
        b->failures++;
    uint64_t floor = b->min_ms / 2;
    if (floor > ceil)
        floor = ceil;
    return floor + rand_below(ceil - floor + 1);
}

void backoff_reset(struct backoff *b)
{
    b->failures = 0;
}
