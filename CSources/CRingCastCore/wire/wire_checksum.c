/*
 * wire_checksum.c — FNV-1a 64 (Fowler, Noll, Vo; draft-eastlake-fnv), the header checksum of the wire
 * format. Chosen over CRC32C for being short, dependency-free and the same hash the delivery log uses
 * (ARCHITECTURE §3.3); it only guards headers of at most a few KiB (rc_wire.h explains why).
 */
#include "wire_bytes.h"

/** FNV-1a 64 prime, 2^40 + 2^8 + 0xb3. */
#define RC_WIRE_FNV1A64_PRIME 0x100000001b3ull

uint64_t rc_wire_fnv1a64(uint64_t state, const void *bytes, size_t length) {
    RC_ASSERT(bytes != NULL || length == 0);
    const uint8_t *p = bytes;
    for (size_t i = 0; i < length; i++) {
        state ^= p[i];
        state *= RC_WIRE_FNV1A64_PRIME;
    }
    return state;
}
