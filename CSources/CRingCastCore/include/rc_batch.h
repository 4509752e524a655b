/*
 * rc_batch.h — the batching stage of the pipeline, shared by the protocols it hosts: LCR packs an origin's
 * application messages into one LCR message (thesis §2.4, batching in ARCHITECTURE §2), and Chain's head packs
 * client requests into one batch with consecutive sequence numbers (chain-bft-spec §9). One set of limits, one
 * packing rule, one validation, so that both protocols batch the same way and a limit means the same thing in both.
 *
 * Batching is *natural*: a batch is closed when the next hop can take it (the engine pulls the next LCR message,
 * or the next Chain batch, when its link has room), so batches grow while the link is busy and stay single
 * messages while it idles. There is deliberately no delay limit (no timer that holds a batch open to let it
 * grow): under load the busy link already gives the batch its time, and at low load a delay would only add
 * latency. This is the thesis' own suggestion: "batch small messages together into bigger messages when the load
 * on the system is high" (§2.6.2, after Figure 2.12), and what makes Chain's head batch "under contention" (§3.5.1.2,
 * 1 + (f+1)/b MAC operations per request at head and tail). The limits bound a batch's size, never its age.
 */
#ifndef RINGCAST_RC_BATCH_H
#define RINGCAST_RC_BATCH_H

#include "rc_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RC_BATCH_COUNT_MAX 4096u        /**< messages per batch, at most (the wire's length table bound) */
#define RC_BATCH_BYTES_MAX (64u << 20)  /**< payload bytes per batch, at most */

/** How large one batch may grow. */
typedef struct rc_batch_limits {
    uint32_t count_max; /**< messages per batch, 1 ... RC_BATCH_COUNT_MAX; 1 turns batching off */
    uint32_t bytes_max; /**< payload bytes per batch, 1 ... RC_BATCH_BYTES_MAX; a single larger message goes alone
                             where the protocol admits one (Chain), or is refused at submit (LCR) */
} rc_batch_limits;

/** A batch being filled: what it holds so far. */
typedef struct rc_batch_fill {
    uint32_t count;
    uint64_t bytes;
} rc_batch_fill;

/** True when the limits are in range. */
static inline bool rc_batch_limits_valid(rc_batch_limits limits) {
    return limits.count_max >= 1 && limits.count_max <= RC_BATCH_COUNT_MAX && limits.bytes_max >= 1 &&
           limits.bytes_max <= RC_BATCH_BYTES_MAX;
}

/**
 * The packing rule: may a message of `bytes` join a batch that holds `fill`? The first message always may (a
 * batch is never empty, and never refuses its first message for size: the protocols bound single messages at
 * submit); later ones while the count and the byte limit allow.
 */
static inline bool rc_batch_admits(rc_batch_limits limits, rc_batch_fill fill, uint64_t bytes) {
    if (fill.count >= limits.count_max) return false;
    return fill.count == 0 || fill.bytes + bytes <= limits.bytes_max;
}

/** Adds a message the rule admitted. */
static inline void rc_batch_add(rc_batch_fill *fill, uint64_t bytes) {
    fill->count++;
    fill->bytes += bytes;
}

#ifdef __cplusplus
}
#endif

#endif /* RINGCAST_RC_BATCH_H */
