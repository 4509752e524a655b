/*
 * rc_lcr.h — the LCR protocol core, sans-IO (thesis 001_…, §2.4 Fig. 2.5, §2.5.2 fairness).
 *
 * One `rc_lcr` is one process p_self of a ring of `nodes` processes in one view. It owns no sockets,
 * reads no clock and draws no random numbers: the caller (the io_uring engine or the simulator) feeds
 * it events and pulls its actions. Payload bytes never enter the core; they are named by `rc_ref`
 * handles that the caller owns.
 *
 * Events in                               Actions out (pulled)
 *   rc_lcr_broadcast   utoBroadcast(m)      rc_lcr_next_frame       the next frame for the successor
 *   rc_lcr_on_frame    Rreceive from pred   rc_lcr_next_deliveries  utoDeliver, in ≺ order
 *
 * The caller's duties, in order, after every event:
 *   1. while the link to the successor can take a frame: rc_lcr_next_frame, send it;
 *   2. rc_lcr_next_deliveries until it returns 0, hand them to the application;
 *   3. release a received message's bytes once it was both forwarded (if it is forwarded at all,
 *      see `rc_lcr_on_frame`'s `forwarded` out-parameter) and delivered.
 * The order of 1 and 2 does not matter for correctness; doing 1 first keeps the ring busy.
 *
 * Terms from the paper:
 *   - ring positions: 0..nodes-1 in view order; successor(i) = i+1 mod n, predecessor(i) = i-1 mod n.
 *   - an *LCR message* carries one vector clock stamp C_m and, with batching, `count` ≥ 1 application
 *     messages of one origin. Ordering, stability, ACKs and fairness all count LCR messages.
 *   - `seq` of a message is C_m[origin]: the origin's broadcast count, 1, 2, 3, ... per view.
 *   - m_i ≺ m_j (§2.4.1): C_mi[i] ≤ C_mj[i] when i < j; C_mi[i] < C_mj[i] when i = j; and, when i > j,
 *     m_i ≺ m_j iff not m_j ≺ m_i.
 *   - an ACK `(origin, seq)` is cumulative: every LCR message of `origin` up to `seq` is stable. This
 *     is exact because one origin's messages travel the ring in FIFO order, so its ACKs are produced
 *     in seq order.
 *
 * Invariants the implementation keeps (and asserts):
 *   - pending is sorted by ≺ and holds each (origin, seq) at most once;
 *   - a message is delivered only when stable and first in pending (tryDeliver, lines 24–27);
 *   - messages are forwarded in the order they were received (line 12), own messages interleave only
 *     as fairness allows;
 *   - an ACK goes to the successor only after every data message received before that ACK has been
 *     forwarded (the ACK carries "I have forwarded everything ≺ m", §2.4.2 second point);
 *   - every queue has a maximum fixed at init; at the limit the call returns -EAGAIN and changes
 *     nothing (backpressure), never drops.
 *
 * Paper map: Fig. 2.5 line → code (the .c files of CSources/CRingCastCore/lcr/) and the test that pins
 * the line (Tests/LCRTests/LCRCoreTests.swift).
 *   1–4    initialize                     rc_lcr_init (one core per view; C and pending start empty)
 *   5      utoBroadcast(m)                rc_lcr_broadcast: queues m in the send queue (§2.5.2)
 *   6      C[i] ← C[i] + 1                own_take                                 (deviation 3)
 *   7      pending ∪ [m, p_i, C, ⊥]       own_take → lcr_pending_insert            (deviation 3)
 *   8      Rsend to successor             rc_lcr_next_frame returns own_take's message (pull model)
 *   9      upon Rreceive ⟨m, p_j, C_m⟩    rc_lcr_on_frame
 *   10     if C_m[j] > C[j]               rc_lcr_on_frame `take`; else `duplicate`  figure2_5_line10_…
 *   11     if p_i ≠ predecessor(p_j)      message_accept
 *   12     Rsend (forward)                message_accept queues it; forward_take  figure2_5_line12_…
 *   13     pending ∪ [m, p_j, C_m, ⊥]     message_accept → lcr_pending_insert
 *   14–15  else: pending ∪ [… stable]     message_accept: stable_seq[origin]        figure2_5_line15_…
 *   16     Rsend ACK                      message_accept → lcr_ack_log_push         figure2_5_line16_22_…
 *   17, 23 tryDeliver()                   the caller's duty 2 (rc_lcr_next_deliveries)
 *   18     C[j] ← C[j] + 1                message_accept: clock[origin] = seq      (deviation 2)
 *   19     upon Rreceive ⟨ACK, p_j, C_m⟩  ack_accept
 *   20–21  guard, mark stable             ack_accept                   figure2_5_line20_… (deviation 1)
 *   22     forward the ACK                ack_accept → lcr_ack_log_push   figure2_5_line16_22_… (deviation 5)
 *   24–27  tryDeliver                     rc_lcr_next_deliveries, deliverable       figure2_5_line24_27_…
 * Fig. 2.7 (the view change) is Swift: see the RingCastMembership catalogue (RingCastMembership.md).
 *
 * Deviations from Fig. 2.5, each on purpose (the one place that lists them all; the catalogues repeat them):
 *   1. Line 20 guards *both* "mark stable" and "forward the ACK" with p_i ≠ predecessor(predecessor(p_j)).
 *      Read literally, the last process to receive the ACK would never mark m stable and never deliver
 *      it. The prose (and Fig. 2.6, round F) says that process sets m stable; only the forwarding stops
 *      there. We mark stable always and forward only when p_i ≠ predecessor(predecessor(p_j)).
 *   2. Line 18 (C[j] ← C[j]+1) applies to every accepted message, forwarded or not, as §2.4.1's prose
 *      says, not only in the `else` branch where the figure's indentation puts it.
 *   3. Lines 6–8 run when a batch leaves the send queue (rc_lcr_next_frame), not at utoBroadcast: own
 *      messages enter `pending` only when sent, so the send queue of §2.5.2 can hold them back.
 *   4. The overtaking stamp: an own message that fairness lets go ahead of queued forwards is stamped
 *      with C as it was just before the forward-queue head was received (own_take,
 *      forward_clock_before), not with the current C. Stamped with C it would claim to follow messages
 *      the successor has not seen yet, and ≺ becomes cyclic (m0 ≺ m1 ≺ m2 ≺ m0 with three processes;
 *      SimTests OvertakingStampTests). The paper forwards in receive order and sends own messages between
 *      forwards (§2.5.2 with §2.4.1); this is that order made explicit.
 *   5. Held ACKs: an ACK (own at line 16, forwarded at line 22) waits in a log until every message
 *      received before it has been forwarded (lcr_acks.c), so the successor never learns "m is stable"
 *      before it has every message ≺ m (§2.4.2, the second point).
 *   6. ACKs are cumulative per origin, and `stable` is derived from stable_seq[] instead of stored per
 *      entry: exact, because one origin's messages travel the ring in FIFO order (see Terms).
 *   7. Fairness (§2.5.2) decides what leaves next; the paper leaves three points open, decided in
 *      lcr_fairness.c: `sent` counts for every origin, a burst starts only after the send queue ran dry,
 *      and the units are LCR messages (ring slots).
 *   8. A full `pending` admits no own message (own_ready): the "full ring" of ARCHITECTURE §2.
 *   9. Bounded queues: -EAGAIN when full (backpressure, never loss), -EPROTO for a frame no correct
 *      predecessor sends (a gap, a foreign origin, an own message back, an ACK for a message never
 *      received), each reason counted in rc_lcr_stats. The paper's queues are unbounded.
 *  10. Batching: one LCR message carries up to batch_count_max application messages of one origin under
 *      one stamp; ordering, stability, ACKs and fairness count LCR messages.
 */
#ifndef RINGCAST_RC_LCR_H
#define RINGCAST_RC_LCR_H

#include "rc_batch.h"
#include "rc_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Largest ring this build supports. Full vector clocks: nodes × 8 bytes per LCR message. */
#define RC_LCR_NODES_MAX 64u
/** Upper bounds for the queue settings, so that memory sizes cannot overflow. */
#define RC_LCR_QUEUE_MAX (1u << 20)
#define RC_LCR_BATCH_COUNT_MAX RC_BATCH_COUNT_MAX /* the batching stage's limits (rc_batch.h) */
#define RC_LCR_BATCH_BYTES_MAX RC_BATCH_BYTES_MAX

typedef struct rc_lcr rc_lcr;

/*
 * Sizing rules, checked by rc_lcr_init, that keep a ring of bounded queues free of deadlock.
 * A frame is refused (-EAGAIN) when the receiver's forward queue or pending is full, and a refused
 * frame blocks its link (links are FIFO byte streams), so a cycle of full queues would stop the ring.
 *   1. forward_queue_max > send_queue_max. The send queue is each origin's window: its application
 *      messages stay there until the origin delivers them, so an origin has at most send_queue_max LCR
 *      messages still travelling (a message the origin delivered is stable, so it has reached the end of
 *      its path). n origins thus have fewer messages in transit than n forward queues have slots: the
 *      forward queues can never all be full at once, and some link always moves.
 *   2. pending_max ≥ nodes × (send_queue_max + forward_queue_max). A process holds a message in pending
 *      from its arrival until it delivers it; that is at most each origin's window plus what overtook
 *      a held-back ACK (bounded by a forward queue). The round-model and randomized simulators exercise
 *      this bound at its minimum.
 * A message whose receiver answers -EAGAIN is never lost: the caller keeps it and offers it again.
 */

typedef struct rc_lcr_settings {
    uint32_t nodes;             /**< n: processes in the ring, 1..RC_LCR_NODES_MAX. */
    uint32_t self;              /**< this process's ring position, 0..nodes-1. */
    uint32_t send_queue_max;    /**< the window: application messages broadcast and not yet delivered locally. */
    uint32_t forward_queue_max; /**< received LCR messages waiting to be forwarded; > send_queue_max. */
    uint32_t pending_max;       /**< LCR messages in pending; ≥ nodes × (send_queue_max + forward_queue_max). */
    uint32_t batch_count_max;   /**< application messages per LCR message; 1 turns batching off. */
    uint32_t batch_bytes_max;   /**< payload bytes per LCR message (an oversized single message is refused). */
    bool fairness;              /**< §2.5.2 throttling; off reproduces Fig. 2.9. */
    /**
     * 0 in production. The simulator's self-test sets a planted bug to prove its property checkers
     * can fail (e.g. RC_LCR_FAULT_DELIVER_UNSTABLE: tryDeliver ignores `stable`).
     */
    uint32_t test_fault;
} rc_lcr_settings;

/** Planted bugs for checker self-tests (rc_lcr_settings.test_fault). */
enum {
    RC_LCR_FAULT_NONE = 0,
    RC_LCR_FAULT_DELIVER_UNSTABLE = 1, /**< deliver the first of pending without waiting for stable. */
};

/** One application message waiting in, or sent from, the send queue. */
typedef struct rc_lcr_app {
    rc_ref ref;
    uint32_t bytes;
} rc_lcr_app;

/** One LCR message (a batch of `count` application messages of one origin, one clock stamp). */
typedef struct rc_lcr_message {
    uint32_t origin;       /**< ring position of the broadcaster. */
    uint64_t seq;          /**< C_m[origin], from 1. */
    uint32_t burst_size;   /**< §2.5.2: set on the first message of a burst, else 0. */
    uint32_t count;        /**< application messages in the batch, ≥ 1. */
    uint64_t bytes;        /**< payload bytes of those application messages. */
    const uint64_t *clock; /**< C_m, `nodes` entries. Output: core memory, valid until the next call. */
    bool own;              /**< output only: broadcast by this process. */
    /**
     * Received messages: the caller's handle for the message's bytes (given to rc_lcr_on_frame).
     * Own messages: index of the first application message of the batch. Indices count
     * rc_lcr_broadcast calls from 0, so the caller can keep its own record of each message; the core's
     * copy (rc_lcr_app_at) is readable only until the message is delivered.
     */
    rc_ref ref;
} rc_lcr_message;

/** Cumulative ACK: all LCR messages of `origin` with seq ≤ `seq` are stable. */
typedef struct rc_lcr_ack {
    uint32_t origin;
    uint64_t seq;
} rc_lcr_ack;

/** What travels from a process to its successor in one frame: at most one message, and ACKs. */
typedef struct rc_lcr_frame {
    bool has_message;
    rc_lcr_message message;
    uint32_t ack_count;       /**< ≤ nodes: at most one cumulative ACK per origin. */
    const rc_lcr_ack *acks;   /**< Output: core memory, valid until the next call on this core. */
} rc_lcr_frame;

typedef struct rc_lcr_stats {
    uint64_t broadcasts;          /**< application messages accepted by rc_lcr_broadcast. */
    uint64_t lcr_messages_sent;   /**< own LCR messages (batches) sent. */
    uint64_t forwarded;           /**< LCR messages forwarded. */
    uint64_t frames_out;          /**< frames returned by rc_lcr_next_frame. */
    uint64_t ack_only_frames;     /**< frames that carried ACKs and no message. */
    uint64_t acks_piggybacked;    /**< ACK entries that rode on a data frame. */
    uint64_t delivered_messages;  /**< LCR messages delivered. */
    uint64_t delivered_apps;      /**< application messages delivered. */
    uint64_t duplicates_ignored;  /**< received messages with seq ≤ C[origin] (Fig. 2.5 line 10). */
    uint64_t frames_refused;      /**< rc_lcr_on_frame calls answered -EAGAIN. */
    uint64_t frames_rejected;     /**< rc_lcr_on_frame calls answered -EPROTO: the sum of the five below. */
    uint64_t rejected_malformed;      /**< -EPROTO: too many ACKs, a zero count or seq, C_m[origin] ≠ seq. */
    uint64_t rejected_foreign_origin; /**< -EPROTO: a message or ACK origin outside this view. */
    uint64_t rejected_own_returned;   /**< -EPROTO: an own message came back (it stops one hop earlier). */
    uint64_t rejected_gap;            /**< -EPROTO: seq > C[origin] + 1, which FIFO links never produce. */
    uint64_t rejected_ack_unreceived; /**< -EPROTO: an ACK for a message never received. */
    uint64_t own_held;            /**< next_frame calls where an own message was ready and fairness forwarded instead. */
} rc_lcr_stats;

/** Bytes of caller memory an rc_lcr with these settings needs, or 0 if the settings are invalid. */
size_t rc_lcr_memory_size(const rc_lcr_settings *settings);

/**
 * Initializes a core in `memory` (`size` ≥ rc_lcr_memory_size, 16-byte aligned). No allocation
 * happens here or later. Returns 0, or -EINVAL for invalid settings or too little memory.
 */
int rc_lcr_init(rc_lcr **core, void *memory, size_t size, const rc_lcr_settings *settings);

/**
 * utoBroadcast (Fig. 2.5 lines 5–8, with the send queue of §2.5.2): queues one application message.
 * It leaves with the next own LCR message that fairness admits, possibly batched with others.
 * Returns 0; -EAGAIN when the send queue is full (retry after deliveries); -EMSGSIZE when `bytes`
 * exceeds batch_bytes_max.
 */
int rc_lcr_broadcast(rc_lcr *core, rc_ref ref, uint32_t bytes);

/**
 * Rreceive from the predecessor (Fig. 2.5 lines 9–23): the message, if any, is handled first, then
 * the ACKs. `forwarded` (may be NULL) is set to true when the message will be forwarded, so the caller
 * knows whether to wait for that before releasing its bytes. `duplicate` (may be NULL) is set to true
 * when the frame's message was seen before and ignored (line 10): the core holds no reference to it,
 * so the caller may release its bytes at once.
 * Returns 0 (also for an ignored duplicate); -EAGAIN when the forward queue or pending is full
 * (nothing changed: hold the frame, stop reading, retry after sending/delivering); -EPROTO for a frame
 * that cannot come from a correct predecessor in this view (origin out of range, a seq gap, an own
 * message coming back, an ACK for a message never received) — the core is unchanged, and the reason
 * is counted in rc_lcr_stats (rejected_…).
 */
int rc_lcr_on_frame(rc_lcr *core, const rc_lcr_frame *frame, bool *forwarded, bool *duplicate);

/**
 * The next frame for the successor, chosen by fairness among the forward queue and the send queue,
 * with every ACK that may already go piggy-backed. A frame with ACKs only is produced only when no
 * message can go. Returns 1 with `*frame` filled, or 0 when there is nothing to send.
 */
int rc_lcr_next_frame(rc_lcr *core, rc_lcr_frame *frame);

/** Up to `max` deliveries, in total order. Returns how many were written to `out`. */
uint32_t rc_lcr_next_deliveries(rc_lcr *core, rc_lcr_message *out, uint32_t max);

/** Application message `index` of the send queue, while it is not yet delivered (see rc_lcr_message.ref). */
rc_lcr_app rc_lcr_app_at(const rc_lcr *core, uint64_t index);

/** True when m_a ≺ m_b by §2.4.1 (exposed for tests and the simulator's checkers). */
bool rc_lcr_precedes(uint32_t nodes, uint32_t origin_a, const uint64_t *clock_a,
                     uint32_t origin_b, const uint64_t *clock_b);

/** A read-only look at one entry of `pending`, for transcript tests and diagnostics. */
typedef struct rc_lcr_pending_view {
    uint32_t origin;
    uint64_t seq;
    uint32_t count;
    bool stable;
    bool own;
    const uint64_t *clock; /**< core memory, valid until the next call on this core. */
    rc_ref ref;            /**< as rc_lcr_message.ref: the caller's handle, or an own batch's first index. */
} rc_lcr_pending_view;

/** Entry `position` of pending (0 = first in ≺ order). Returns 0, or -ERANGE past the end. */
int rc_lcr_pending_at(const rc_lcr *core, uint32_t position, rc_lcr_pending_view *out);

/** The highest seq of `origin` known stable here (every LCR message of it up to this one), 0 if none. */
uint64_t rc_lcr_stable_seq(const rc_lcr *core, uint32_t origin);

/** This process's vector clock C (`nodes` entries), valid until the next call on this core. */
const uint64_t *rc_lcr_clock(const rc_lcr *core);

/** Counters since init. */
rc_lcr_stats rc_lcr_stats_get(const rc_lcr *core);

/** Occupancy, for tests and backpressure decisions. */
uint32_t rc_lcr_pending_count(const rc_lcr *core);
uint32_t rc_lcr_forward_queue_count(const rc_lcr *core);
uint32_t rc_lcr_send_queue_count(const rc_lcr *core);

#ifdef __cplusplus
}
#endif

#endif /* RINGCAST_RC_LCR_H */
