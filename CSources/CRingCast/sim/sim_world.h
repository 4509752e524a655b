/*
 * sim_world.h — private to the simulators (sim_*.c): a ring of real LCR cores plus what the
 * simulator keeps around them — delivery logs, the payload store, who received which message, the
 * event digest. Both the round model (sim_ring.c) and the randomized runner (sim_random.c) drive
 * cores only through these functions, which follow the caller's duties of rc_lcr.h.
 */
#ifndef RINGCAST_SIM_WORLD_H
#define RINGCAST_SIM_WORLD_H

#include "rc_sim.h"

/** A growable array of 64-bit values (logs, payload store). The simulator is not the hot path. */
typedef struct sim_vec {
    uint64_t *items;
    uint64_t length;
    uint64_t capacity;
} sim_vec;

int sim_vec_push(sim_vec *vec, uint64_t value);
void sim_vec_free(sim_vec *vec);

/**
 * A frame as it travels on a simulated link: rc_lcr_frame with its clock and ACKs copied out of
 * core memory (which is only valid until the next call on that core).
 */
typedef struct sim_frame {
    bool has_message;
    uint32_t origin;
    uint64_t seq;
    uint32_t burst_size;
    uint32_t count;
    uint64_t bytes;
    rc_ref payload;                       /**< offset of the batch's ids in the payload store. */
    uint64_t clock[RC_SIM_NODES_MAX];
    uint32_t ack_count;
    rc_lcr_ack acks[RC_SIM_NODES_MAX];
    uint64_t due;                         /**< time at which the receiver may take it. */
} sim_frame;

typedef struct sim_node {
    rc_lcr *core;
    void *memory;
    sim_vec log;          /**< rc_sim_id of every delivery, in order. */
    sim_vec log_time;     /**< time (round or step) of every delivery. */
    uint64_t broadcasts;  /**< application messages accepted (the last app_seq used). */
    /**
     * own_batches[seq - 1]: payload-store offset of own LCR message seq. Needed at delivery: the core
     * frees a batch's send-queue slots when it delivers it, so rc_lcr_app_at can no longer read them.
     */
    sim_vec own_batches;
    uint64_t delivered_from[RC_SIM_NODES_MAX]; /**< deliveries per origin. */
} sim_node;

typedef struct sim_world {
    uint32_t nodes;
    rc_lcr_settings settings;             /**< of every core, `self` aside. */
    sim_node node[RC_SIM_NODES_MAX];
    sim_vec payload;                      /**< ids of the application messages of every sent batch. */
    sim_vec holders[RC_SIM_NODES_MAX];    /**< holders[o][seq-1]: bit p set once p has (o, seq). */
    uint64_t now;                         /**< round or step, for logs and traces. */
    uint64_t ack_only_frames;
    uint64_t frames_refused;
    uint64_t digest;                      /**< FNV-1a over every event. */
    FILE *trace;
    uint32_t violated_mask;               /**< properties violated while running (uniformity, protocol). */
    rc_sim_violation first;
} sim_world;

/** Allocates `nodes` cores with `settings` (self set per core). Returns 0, -EINVAL or -ENOMEM. */
int sim_world_init(sim_world *world, uint32_t nodes, const rc_lcr_settings *settings);
void sim_world_free(sim_world *world);

/** utoBroadcast of the next application message of `process`: 0, or the core's negative errno. */
int sim_world_broadcast(sim_world *world, uint32_t process, uint32_t bytes);

/** Duty 1: the next frame of `process`, copied into `*frame`. Returns 1, 0 (nothing to send) or -ENOMEM. */
int sim_world_take_frame(sim_world *world, uint32_t process, sim_frame *frame);

/** Rreceive at `process` of a frame from its predecessor: the core's answer (0, -EAGAIN, -EPROTO). */
int sim_world_give_frame(sim_world *world, uint32_t process, const sim_frame *frame);

/** Duty 2: pulls every delivery of `process` into its log. Returns how many, or -ENOMEM. */
int64_t sim_world_deliver(sim_world *world, uint32_t process);

/** Records a property violated while running (the first one is kept). */
void sim_world_violation(sim_world *world, rc_sim_property property, uint32_t process, rc_sim_id message);

/** Runs rc_sim_check on the logs (every process correct) and adds the violations seen while running. */
int sim_world_check(const sim_world *world, bool quiescent, rc_sim_violation *first);

/** Folds one event into the digest and, when tracing, prints `line`. */
void sim_world_event(sim_world *world, const uint64_t *fields, uint32_t field_count, const char *line);

#endif /* RINGCAST_SIM_WORLD_H */
