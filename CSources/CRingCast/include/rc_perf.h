/*
 * rc_perf.h — ringperf's data phase in C: one call runs one side of a stream/maerts/rr test over an
 * rc_io connection, so no Swift runs per message (ARCHITECTURE §3.1).
 *
 * The bytes on the wire follow a fixed pseudo-random pattern indexed by stream offset (period
 * RC_PERF_PATTERN_PERIOD, deliberately not a power of two nor a multiple of common sizes), so the
 * receiver can prove byte-exact, in-order delivery with a memcmp against the same pattern.
 */
#ifndef RINGCAST_RC_PERF_H
#define RINGCAST_RC_PERF_H

#include "rc_common.h"
#include "rc_io.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Largest --size (bytes per send / per request). */
#define RC_PERF_SIZE_BYTES_MAX (16u << 20)
/** Pattern period in bytes: 1 MiB + 4093 (a prime offset), so shifted blocks never line up by chance. */
#define RC_PERF_PATTERN_PERIOD ((1u << 20) + 4093u)

typedef enum rc_perf_role {
    RC_PERF_ROLE_STREAM_SENDER = 0,   /**< sends `size_bytes` writes for `duration_ns`, then half-closes */
    RC_PERF_ROLE_STREAM_RECEIVER = 1, /**< receives until EOF */
    RC_PERF_ROLE_RR_CLIENT = 2,       /**< one request of size_bytes outstanding, waits for the response */
    RC_PERF_ROLE_RR_SERVER = 3,       /**< answers every size_bytes request with size_bytes, until EOF */
} rc_perf_role;

typedef struct rc_perf_params {
    uint32_t role;               /**< rc_perf_role */
    int32_t fd;                  /**< ≥ 0: adopt this connected socket (always closed by the call); < 0: connect to `peer` */
    rc_io_addr peer;
    uint32_t size_bytes;         /**< 1..RC_PERF_SIZE_BYTES_MAX */
    int32_t zerocopy;            /**< rc_io_zerocopy */
    uint32_t verify;             /**< 1: check every received byte against the pattern */
    uint64_t duration_ns;        /**< load time (stream sender, rr client) */
    uint64_t timeout_ns;         /**< bound of the whole call, connect and drain included */
    uint32_t *latency_ns;        /**< rr client: caller's array for per-transaction latencies (may be NULL) */
    uint64_t latency_capacity;   /**< entries in latency_ns; later samples only update the max */
    char congestion[16];         /**< TCP_CONGESTION ("" = system default) */
} rc_perf_params;

typedef struct rc_perf_result {
    int32_t error;               /**< 0, or -errno: connect failed, reset, -ETIMEDOUT (deadline) */
    int32_t zerocopy_state;      /**< rc_io_zc_state at the end */
    uint64_t bytes_sent, bytes_received;
    uint64_t transactions;       /**< rr */
    uint64_t wall_ns;            /**< connected → done */
    uint64_t measured_ns;        /**< receiver: first → last byte; sender: start → last byte released; rr: load time */
    uint64_t cpu_process_ns;     /**< process CPU (user+sys, all threads) over wall_ns */
    uint64_t cpu_thread_ns;      /**< this thread's CPU over wall_ns */
    uint64_t verify_errors;      /**< received chunks that differed from the pattern */
    uint64_t verify_first_offset;/**< stream offset of the first difference (if any) */
    uint64_t latency_count;      /**< samples written to latency_ns */
    uint64_t latency_max_ns;
    rc_io_stats io;
} rc_perf_result;

/** Runs one side of a test on the calling thread (it owns the ring). Returns result->error. */
int rc_perf_run(const rc_perf_params *params, rc_perf_result *result);

/** Fills `buffer` with the pattern bytes for stream offsets [offset, offset + bytes). For tests. */
void rc_perf_pattern_fill(uint8_t *buffer, uint64_t offset, size_t bytes);

#ifdef __cplusplus
}
#endif

#endif /* RINGCAST_RC_PERF_H */
