/*
 * rc_sim.h — simulators and property checkers over the real LCR core (rc_lcr.h).
 *
 * Three parts, all deterministic (no clock, no libc rand):
 *   - the round model of §2.2.2 (thesis 001_…): every round each process sends at most one frame to its
 *     successor and receives at most the one frame its predecessor sent (`rc_sim_ring`), used for the
 *     throughput bound of Theorem 2.5.1, the fairness shares of §2.5.2 and the latency of §2.5.3;
 *   - a randomized simulator (`rc_sim_random_run`): one seed picks the ring size, the queue settings, the
 *     broadcast pattern, per-link delays (bounded FIFO links that never reorder) and the schedule;
 *   - property checkers over per-process delivery logs (`rc_sim_check`): validity, integrity, uniform
 *     agreement and total order as stated at the start of §2.4, written for runs with crashes too (a
 *     crashed process's log must be consistent with the survivors'; only correct processes owe
 *     validity and agreement).
 *
 * Application messages are named by `rc_sim_id`: (origin + 1) << 48 | app_seq, app_seq counting the
 * origin's application broadcasts from 1. The same value is the `rc_ref` the simulator hands to
 * rc_lcr_broadcast, so every delivery can be traced back to its broadcast.
 *
 * The simulator is not the hot path: it allocates with malloc at set-up and grows its logs as they
 * fill. The cores it drives get caller memory sized by rc_lcr_memory_size, like in the engine.
 */
#ifndef RINGCAST_RC_SIM_H
#define RINGCAST_RC_SIM_H

#include <stdio.h>

#include "rc_common.h"
#include "rc_lcr.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Largest ring the simulator builds (frames on simulated links hold full clocks inline). */
#define RC_SIM_NODES_MAX 16u

/* ------------------------------------------------------------------------------------------------ */
/* Application message identities                                                                    */

/** One application message: (origin + 1) << 48 | app_seq. 0 is never a valid id. */
typedef uint64_t rc_sim_id;

static inline rc_sim_id rc_sim_id_make(uint32_t origin, uint64_t app_seq) {
    return ((uint64_t)(origin + 1u) << 48) | (app_seq & 0xFFFFFFFFFFFFull);
}
/** Origin of `id`; UINT32_MAX for the invalid id 0. */
static inline uint32_t rc_sim_id_origin(rc_sim_id id) { return (uint32_t)(id >> 48) - 1u; }
static inline uint64_t rc_sim_id_seq(rc_sim_id id) { return id & 0xFFFFFFFFFFFFull; }

/* ------------------------------------------------------------------------------------------------ */
/* Seeded pseudo-random numbers (splitmix64 seeding xoshiro256**), one generator per run.            */

typedef struct rc_sim_prng {
    uint64_t state[4];
} rc_sim_prng;

void rc_sim_prng_seed(rc_sim_prng *prng, uint64_t seed);
uint64_t rc_sim_prng_next(rc_sim_prng *prng);
/** Uniform in [0, bound), bound ≥ 1 (rejection sampling, no modulo bias). */
uint64_t rc_sim_prng_below(rc_sim_prng *prng, uint64_t bound);
/** Uniform in [low, high], low ≤ high. */
uint64_t rc_sim_prng_range(rc_sim_prng *prng, uint64_t low, uint64_t high);
/** True with probability percent / 100. */
bool rc_sim_prng_chance(rc_sim_prng *prng, uint32_t percent);

/* ------------------------------------------------------------------------------------------------ */
/* Property checkers                                                                                 */

typedef enum rc_sim_property {
    RC_SIM_PROPERTY_NONE = 0,
    RC_SIM_PROPERTY_VALIDITY,       /**< a correct process did not deliver its own broadcast. */
    RC_SIM_PROPERTY_INTEGRITY,      /**< a duplicate delivery, or a message nobody broadcast. */
    RC_SIM_PROPERTY_AGREEMENT,      /**< some process delivered m, a correct process did not. */
    RC_SIM_PROPERTY_TOTAL_ORDER,    /**< two logs disagree on what comes before a common message. */
    RC_SIM_PROPERTY_UNIFORMITY,     /**< m delivered before every process had received it (§2.4.2). */
    RC_SIM_PROPERTY_LIVENESS,       /**< the step bound was hit, or no progress was possible. */
    RC_SIM_PROPERTY_PROTOCOL,       /**< the core refused a frame from a correct predecessor (-EPROTO). */
    RC_SIM_PROPERTY_COUNT,
} rc_sim_property;

/** Short stable name ("total_order", ...) for reports and JSON. */
const char *rc_sim_property_name(rc_sim_property property);

/** The first violation found, enough to explain it in one line. */
typedef struct rc_sim_violation {
    rc_sim_property property;
    uint32_t process;       /**< the process whose log shows it. */
    uint32_t other_process; /**< the process it disagrees with (agreement, total order), else = process. */
    rc_sim_id message;      /**< the message concerned, 0 if none. */
    rc_sim_id other_message;/**< total order: the message ordered differently; 0 if none. */
} rc_sim_violation;

/**
 * What the checkers read: one delivery log per process (ids in delivery order) and what was
 * broadcast. Kept general for runs with crashes: `correct_mask` bit p is set when p did not crash.
 */
typedef struct rc_sim_logs {
    uint32_t nodes;                 /**< 1..RC_SIM_NODES_MAX */
    const rc_sim_id *const *log;    /**< log[p]: ids delivered by p, in order. */
    const uint64_t *log_length;     /**< log_length[p] */
    const uint64_t *broadcast_count;/**< broadcast_count[o]: o's broadcasts accepted, app_seq 1..count. */
    uint32_t correct_mask;          /**< bit p set: p is correct (never crashed). */
    /**
     * True when the run ended with nothing in flight, so the liveness properties (validity, uniform
     * agreement) must hold now. False mid-run: only integrity and total order are checked.
     */
    bool quiescent;
} rc_sim_logs;

/**
 * Checks validity, integrity, uniform agreement and total order on `logs`.
 * Total order is the thesis's (§2.4): if p_i delivers m without having delivered m', no p_j delivers
 * m' before m. Checked pairwise on every two processes, crashed ones included: for each message m in
 * both logs, the messages before m must be the same set in both. Hence a crashed process's log is a
 * prefix of the order the survivors agree on.
 * Returns the number of violated properties (0 when all hold) and fills `*first` (may be NULL) with
 * the first violation; -EINVAL for malformed input, -ENOMEM when scratch memory is not available.
 */
int rc_sim_check(const rc_sim_logs *logs, rc_sim_violation *first);

/* ------------------------------------------------------------------------------------------------ */
/* Round model (§2.2.2): a ring of real cores advanced one synchronous round at a time               */

typedef struct rc_sim_ring rc_sim_ring;

typedef struct rc_sim_ring_settings {
    uint32_t nodes;             /**< 2..RC_SIM_NODES_MAX */
    bool fairness;
    uint32_t send_queue_max;    /**< per core; 0 picks the default (rc_sim_ring_settings_default). */
    uint32_t forward_queue_max;
    uint32_t pending_max;
    uint32_t batch_count_max;   /**< 1 in the round model: one application message = one LCR message. */
    uint32_t test_fault;        /**< RC_LCR_FAULT_*, for checker self-tests. */
} rc_sim_ring_settings;

/** Defaults for `nodes`: a window (send_queue_max) of 8n and the smallest forward queue and pending that rc_lcr.h's sizing rules allow. */
rc_sim_ring_settings rc_sim_ring_settings_default(uint32_t nodes, bool fairness);

/** Creates a ring of `nodes` cores. Returns 0, -EINVAL (bad settings) or -ENOMEM. */
int rc_sim_ring_create(rc_sim_ring **ring, const rc_sim_ring_settings *settings);
void rc_sim_ring_destroy(rc_sim_ring *ring);

/** The settings after defaults were applied. */
rc_sim_ring_settings rc_sim_ring_settings_get(const rc_sim_ring *ring);

/**
 * utoBroadcast of one new application message at `process`, at the start of the next round.
 * Returns 0, or the core's -EAGAIN (send queue full).
 */
int rc_sim_ring_broadcast(rc_sim_ring *ring, uint32_t process);

/**
 * One round (§2.2.2): every process whose outgoing link is free computes one frame
 * (rc_lcr_next_frame) and sends it; then every process receives the frame on its incoming link
 * (rc_lcr_on_frame) and pulls its deliveries. A frame refused with -EAGAIN stays on the link, and its
 * sender sends nothing new until it is accepted. Returns 0, or a negative errno when a core
 * answers something a correct ring never should (-EPROTO), which is also counted as a violation.
 */
int rc_sim_ring_step(rc_sim_ring *ring);

/** Rounds completed so far. */
uint64_t rc_sim_ring_round(const rc_sim_ring *ring);

/** The core of `process`, read-only, for tests that inspect pending counts or stats. */
const rc_lcr *rc_sim_ring_core(const rc_sim_ring *ring, uint32_t process);

/** Deliveries at `process` so far, and the id of delivery `index` (0-based). */
uint64_t rc_sim_ring_delivered_count(const rc_sim_ring *ring, uint32_t process);
rc_sim_id rc_sim_ring_delivered_at(const rc_sim_ring *ring, uint32_t process, uint64_t index);
/** Round at whose end delivery `index` of `process` happened (rounds count from 1). */
uint64_t rc_sim_ring_delivered_round(const rc_sim_ring *ring, uint32_t process, uint64_t index);

/** Application messages accepted from `origin` so far. */
uint64_t rc_sim_ring_broadcast_count(const rc_sim_ring *ring, uint32_t origin);

/** Broadcasts of `origin` delivered by every process (complete broadcasts, §2.2.3). */
uint64_t rc_sim_ring_completed(const rc_sim_ring *ring, uint32_t origin);

/** Frames that carried ACKs and no message, summed over the ring. */
uint64_t rc_sim_ring_ack_only_frames(const rc_sim_ring *ring);
/** Frames answered -EAGAIN (backpressure), summed over the ring. */
uint64_t rc_sim_ring_frames_refused(const rc_sim_ring *ring);

/**
 * Runs the checkers on the ring's logs (all processes correct). `quiescent` as in rc_sim_logs.
 * A uniformity violation seen during the rounds is reported too.
 */
int rc_sim_ring_check(const rc_sim_ring *ring, bool quiescent, rc_sim_violation *first);

/* ------------------------------------------------------------------------------------------------ */
/* Round-model experiments                                                                           */

typedef struct rc_sim_throughput_settings {
    rc_sim_ring_settings ring;  /**< queue maxima 0 = defaults; batch_count_max is forced to 1. */
    uint32_t sender_mask;       /**< bit p: p broadcasts continuously. */
    uint64_t rounds;            /**< total rounds, warm-up included. */
    uint64_t warmup_rounds;     /**< rounds not measured; UINT64_MAX picks max(rounds / 10, 4 n). */
} rc_sim_throughput_settings;

typedef struct rc_sim_throughput_result {
    uint64_t warmup_rounds;
    uint64_t measured_rounds;
    uint64_t completed;                                  /**< complete broadcasts in the window. */
    uint64_t completed_by_origin[RC_SIM_NODES_MAX];      /**< ... per origin. */
    double throughput_per_round;                         /**< completed / measured_rounds. */
    double bound_per_round;                              /**< Theorem 2.5.1: 1, or n/(n-1) when all send. */
    double efficiency;                                   /**< throughput / bound. */
    double share[RC_SIM_NODES_MAX];                      /**< completed_by_origin / completed. */
    double share_deviation_max;                          /**< max over senders |share - 1/K|. */
    uint64_t ack_only_frames;
    uint64_t frames_refused;
    uint32_t violations;                                 /**< safety checkers on the final logs. */
    rc_sim_violation first_violation;
    rc_sim_ring_settings settings_used;
} rc_sim_throughput_result;

/**
 * Theorem 2.5.1 experiment: the senders keep their send queues topped up (continuous broadcasting),
 * and complete broadcasts are counted after the warm-up. Returns 0, -EINVAL or -ENOMEM.
 */
int rc_sim_throughput_run(const rc_sim_throughput_settings *settings, rc_sim_throughput_result *result);

/**
 * §2.5.3: one message broadcast by `origin` on an idle ring; `*rounds` is the round at whose end the
 * last process delivered it (the broadcast happens at the start of round 1). Returns 0, -EINVAL,
 * -ENOMEM, or -ETIMEDOUT if it was not delivered everywhere within 8 n rounds.
 */
int rc_sim_lone_latency(uint32_t nodes, uint32_t origin, bool fairness, uint64_t *rounds);

/* ------------------------------------------------------------------------------------------------ */
/* Randomized simulation                                                                             */

typedef struct rc_sim_random_settings {
    uint64_t seed;
    uint32_t test_fault;  /**< RC_LCR_FAULT_* planted into every core. */
    uint64_t step_max;    /**< 0 picks the default bound (RC_SIM_RANDOM_STEP_MAX_DEFAULT). */
    FILE *trace;          /**< when not NULL, one line per event. */
} rc_sim_random_settings;

#define RC_SIM_RANDOM_STEP_MAX_DEFAULT 400000u

/** What the seed drew, and what happened. */
typedef struct rc_sim_random_result {
    uint32_t nodes;
    rc_lcr_settings lcr;               /**< settings of every core (self = 0). */
    uint32_t link_capacity_frames;
    uint32_t link_delay_max_ticks;
    uint64_t messages_planned;         /**< application broadcasts in the pattern. */
    uint64_t broadcasts;               /**< ... accepted by the cores. */
    uint64_t deliveries;               /**< summed over processes. */
    uint64_t steps;
    uint64_t broadcasts_refused;       /**< rc_lcr_broadcast answered -EAGAIN (retried later). */
    uint64_t frames_refused;           /**< rc_lcr_on_frame answered -EAGAIN (held on the link). */
    uint64_t trace_digest;             /**< FNV-1a over every event: equal digests = equal runs. */
    uint32_t violations;               /**< properties violated (0 = pass). */
    rc_sim_violation first_violation;
} rc_sim_random_result;

/**
 * The process's standard output, for `trace`. Swift in strict concurrency mode cannot name the C
 * global `stdout` (shared mutable state), so it asks for it here.
 */
FILE *rc_sim_stdout(void);

/** One seeded run and its checks; flushes `trace`. Returns 0 (whatever the verdict), -EINVAL or -ENOMEM. */
int rc_sim_random_run(const rc_sim_random_settings *settings, rc_sim_random_result *result);

#ifdef __cplusplus
}
#endif

#endif /* RINGCAST_RC_SIM_H */
