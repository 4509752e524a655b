/* perf_internal.h — helpers shared by ringperf's C files (not seen by Swift). */
#ifndef RINGCAST_PERF_INTERNAL_H
#define RINGCAST_PERF_INTERNAL_H

#include "rc_perf.h"

/** One period of the pattern plus `extra` bytes, so any send of ≤ extra bytes is one contiguous slice. */
uint8_t *rc_perf_pattern_create(uint32_t extra);
/** The slice that holds stream offset `offset` (valid for RC_PERF_PATTERN_PERIOD + extra − offset%period bytes). */
static inline const uint8_t *rc_perf_pattern_at(const uint8_t *pattern, uint64_t offset) {
    return pattern + offset % RC_PERF_PATTERN_PERIOD;
}
/** Compares received bytes with the pattern at stream `offset`; counts a mismatching chunk in `result`. */
void rc_perf_pattern_check(const uint8_t *pattern, uint64_t offset, const uint8_t *data, size_t bytes,
                           rc_perf_result *result);

#endif /* RINGCAST_PERF_INTERNAL_H */
