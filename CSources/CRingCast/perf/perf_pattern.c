/*
 * perf_pattern.c — the byte pattern ringperf sends, so receivers prove byte-exact in-order delivery.
 *
 * Byte k of a stream is byte (k mod 8) of splitmix64((k mod P) / 8), P = RC_PERF_PATTERN_PERIOD. The
 * sender never writes into its buffers (a send is a slice of one precomputed buffer), so checking costs
 * the receiver one memcmp per received range and the sender nothing. A lost, duplicated or reordered
 * range shows up unless its length is a multiple of P (≈1 MiB + 4093 B), which the guide's failure mode
 * (a partial send resumed after a later one, §0.1) does not produce; the byte count is checked too.
 */
#include "perf_internal.h"

#include <stdlib.h>
#include <string.h>

static uint64_t rc_perf_mix(uint64_t x) {
    /* splitmix64 finaliser (Steele, Lea, Flood 2014): consecutive inputs give unrelated words. */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint8_t rc_perf_pattern_byte(uint64_t offset) {
    uint64_t index = offset % RC_PERF_PATTERN_PERIOD;
    return (uint8_t)(rc_perf_mix(index / 8) >> (8 * (index % 8)));
}

void rc_perf_pattern_fill(uint8_t *buffer, uint64_t offset, size_t bytes) {
    RC_ASSERT(buffer != NULL || bytes == 0);
    for (size_t i = 0; i < bytes; i++) buffer[i] = rc_perf_pattern_byte(offset + i);
}

uint8_t *rc_perf_pattern_create(uint32_t extra) {
    RC_ASSERT(extra <= RC_PERF_SIZE_BYTES_MAX);
    size_t bytes = (size_t)RC_PERF_PATTERN_PERIOD + extra;
    uint8_t *pattern = malloc(bytes);
    if (pattern == NULL) return NULL;
    rc_perf_pattern_fill(pattern, 0, bytes);
    RC_ASSERT(extra == 0 || pattern[RC_PERF_PATTERN_PERIOD] == pattern[0]);
    return pattern;
}

void rc_perf_pattern_check(const uint8_t *pattern, uint64_t offset, const uint8_t *data, size_t bytes,
                           rc_perf_result *result) {
    RC_ASSERT(pattern != NULL && result != NULL);
    while (bytes > 0) {
        size_t in_period = RC_PERF_PATTERN_PERIOD - (size_t)(offset % RC_PERF_PATTERN_PERIOD);
        size_t chunk = bytes < in_period ? bytes : in_period;
        if (memcmp(rc_perf_pattern_at(pattern, offset), data, chunk) != 0) {
            if (result->verify_errors == 0) {
                size_t first = 0;
                while (first < chunk && rc_perf_pattern_at(pattern, offset)[first] == data[first]) first++;
                result->verify_first_offset = offset + first;
            }
            result->verify_errors++;
        }
        offset += chunk;
        data += chunk;
        bytes -= chunk;
    }
}
