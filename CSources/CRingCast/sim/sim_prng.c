/*
 * sim_prng.c — the simulator's seeded generator: splitmix64 expands the seed into the state of
 * xoshiro256** (Blackman & Vigna, "Scrambled linear pseudorandom number generators", 2018).
 * Written here rather than taken from libc so that a seed replays identically on every platform.
 */
#include "rc_sim.h"

static uint64_t splitmix64_next(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotate_left(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void rc_sim_prng_seed(rc_sim_prng *prng, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) prng->state[i] = splitmix64_next(&x);
    /* xoshiro's state must not be all zero; splitmix64 cannot produce four zeros in a row. */
    RC_ASSERT((prng->state[0] | prng->state[1] | prng->state[2] | prng->state[3]) != 0);
}

uint64_t rc_sim_prng_next(rc_sim_prng *prng) {
    uint64_t *s = prng->state;
    const uint64_t result = rotate_left(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotate_left(s[3], 45);
    return result;
}

uint64_t rc_sim_prng_below(rc_sim_prng *prng, uint64_t bound) {
    RC_ASSERT(bound >= 1);
    /* Reject the top partial block so that every value in [0, bound) is equally likely. */
    const uint64_t limit = UINT64_MAX - (UINT64_MAX % bound);
    uint64_t value;
    do {
        value = rc_sim_prng_next(prng);
    } while (value >= limit);
    return value % bound;
}

uint64_t rc_sim_prng_range(rc_sim_prng *prng, uint64_t low, uint64_t high) {
    RC_ASSERT(low <= high);
    if (high - low == UINT64_MAX) return rc_sim_prng_next(prng);
    return low + rc_sim_prng_below(prng, high - low + 1);
}

bool rc_sim_prng_chance(rc_sim_prng *prng, uint32_t percent) {
    return rc_sim_prng_below(prng, 100) < percent;
}
