/*
 * sim_random.c — randomized runs over real cores (ARCHITECTURE §4 level 2). One seed draws the ring
 * size, the core settings (small queue maxima so that -EAGAIN backpressure happens, batching on or off,
 * fairness on or off), a broadcast pattern, per-link delays and the schedule. Links are bounded FIFOs
 * whose frames get random delivery times that never overtake each other, like a TCP connection
 * (§2.2.1). The run ends when every planned broadcast was delivered everywhere; running out of steps,
 * or making no progress for a long stretch, is a liveness violation.
 */
#include "sim_world.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    RANDOM_LINK_CAPACITY_MAX = 4,
    RANDOM_LINK_DELAY_MAX = 16,      /**< ticks */
    RANDOM_MESSAGES_PER_NODE_MAX = 24,
    RANDOM_RELEASE_GAP_MAX = 40,     /**< ticks between two broadcasts of one process, at most */
    RANDOM_MESSAGE_BYTES_MAX = 1000,
    /** Steps without a broadcast, an accepted frame or a delivery before we call it stuck. It is far
     *  above the largest release time (24 × 40 ticks) and the time a random schedule needs to pick
     *  every process once with overwhelming probability. */
    RANDOM_STALL_STEPS = 20000,
};

typedef struct random_link {
    sim_frame frame[RANDOM_LINK_CAPACITY_MAX];
    uint32_t head;
    uint32_t length;
    uint32_t capacity;
    uint32_t delay_max;
    uint64_t last_due;
} random_link;

/** The broadcasts one process will make: release times (non-decreasing) and sizes. */
typedef struct random_plan {
    uint64_t release[RANDOM_MESSAGES_PER_NODE_MAX];
    uint32_t bytes[RANDOM_MESSAGES_PER_NODE_MAX];
    uint32_t count;
    uint32_t next;
} random_plan;

typedef struct random_run {
    rc_sim_prng prng;
    sim_world world;
    random_link link[RC_SIM_NODES_MAX]; /**< link[p]: from p to its successor */
    random_plan plan[RC_SIM_NODES_MAX];
    uint64_t planned;
    uint64_t last_progress;
    rc_sim_random_result *result;
} random_run;

/**
 * Core settings for this seed. Queue maxima are small on purpose, to exercise backpressure, and are
 * drawn within rc_lcr.h's sizing rules (forward_queue_max > send_queue_max, pending_max ≥
 * nodes × (send_queue_max + forward_queue_max)), at their minimum half of the time.
 */
static rc_lcr_settings random_draw_settings(rc_sim_prng *prng, uint32_t nodes, uint32_t test_fault) {
    rc_lcr_settings settings = {
        .nodes = nodes,
        .send_queue_max = (uint32_t)rc_sim_prng_range(prng, 1, 8),
        .batch_count_max = rc_sim_prng_chance(prng, 50) ? 1 : (uint32_t)rc_sim_prng_range(prng, 2, 6),
        .fairness = rc_sim_prng_chance(prng, 50),
        .test_fault = test_fault,
    };
    settings.forward_queue_max = settings.send_queue_max + (uint32_t)rc_sim_prng_range(prng, 1, 4);
    settings.pending_max = nodes * (settings.send_queue_max + settings.forward_queue_max);
    if (rc_sim_prng_chance(prng, 50)) settings.pending_max += (uint32_t)rc_sim_prng_range(prng, 1, 2ull * nodes);
    settings.batch_bytes_max = (uint32_t)rc_sim_prng_range(prng, RANDOM_MESSAGE_BYTES_MAX, 4 * RANDOM_MESSAGE_BYTES_MAX);
    return settings;
}

/** Which process broadcasts how many messages when: idle, one burst, or spread out. */
static void random_draw_plans(random_run *run, uint32_t nodes) {
    rc_sim_prng *prng = &run->prng;
    for (uint32_t p = 0; p < nodes; p++) {
        random_plan *plan = &run->plan[p];
        plan->count = rc_sim_prng_chance(prng, 20) ? 0 : (uint32_t)rc_sim_prng_range(prng, 1, RANDOM_MESSAGES_PER_NODE_MAX);
        const uint64_t gap_max = rc_sim_prng_chance(prng, 30) ? 0 : rc_sim_prng_range(prng, 1, RANDOM_RELEASE_GAP_MAX);
        uint64_t release = rc_sim_prng_range(prng, 0, RANDOM_RELEASE_GAP_MAX);
        for (uint32_t k = 0; k < plan->count; k++) {
            plan->release[k] = release;
            plan->bytes[k] = (uint32_t)rc_sim_prng_range(prng, 1, RANDOM_MESSAGE_BYTES_MAX);
            release += rc_sim_prng_range(prng, 0, gap_max);
        }
        run->planned += plan->count;
    }
    if (run->planned == 0) { /* a run with nothing to broadcast tests nothing */
        run->plan[0].count = 1;
        run->plan[0].bytes[0] = 1;
        run->planned = 1;
    }
}

static int random_setup(random_run *run, const rc_sim_random_settings *settings) {
    rc_sim_prng_seed(&run->prng, settings->seed);
    const uint32_t nodes = (uint32_t)rc_sim_prng_range(&run->prng, 2, 9);
    const rc_lcr_settings lcr = random_draw_settings(&run->prng, nodes, settings->test_fault);
    const uint32_t capacity = (uint32_t)rc_sim_prng_range(&run->prng, 1, RANDOM_LINK_CAPACITY_MAX);
    const uint32_t delay_max = (uint32_t)rc_sim_prng_range(&run->prng, 0, RANDOM_LINK_DELAY_MAX);
    for (uint32_t p = 0; p < nodes; p++) {
        run->link[p].capacity = capacity;
        run->link[p].delay_max = (uint32_t)rc_sim_prng_range(&run->prng, 0, delay_max);
    }
    random_draw_plans(run, nodes);
    rc_sim_random_result *result = run->result;
    result->nodes = nodes;
    result->lcr = lcr;
    result->link_capacity_frames = capacity;
    result->link_delay_max_ticks = delay_max;
    result->messages_planned = run->planned;
    const int status = sim_world_init(&run->world, nodes, &lcr);
    run->world.trace = settings->trace;
    if (settings->trace != NULL) {
        fprintf(settings->trace,
                "seed %llu: %u nodes, fairness %s, send %u, forward %u, pending %u, batch %u / %u B, "
                "links %u frame(s), delay <= %u ticks, %llu broadcasts planned\n",
                (unsigned long long)settings->seed, nodes, lcr.fairness ? "on" : "off", lcr.send_queue_max,
                lcr.forward_queue_max, lcr.pending_max, lcr.batch_count_max, lcr.batch_bytes_max, capacity,
                delay_max, (unsigned long long)run->planned);
    }
    return status;
}

/** Duty 1: while the link to the successor has room, send the next frame, due after a random delay. */
static int random_send(random_run *run, uint32_t p) {
    random_link *link = &run->link[p];
    while (link->length < link->capacity) {
        sim_frame *slot = &link->frame[(link->head + link->length) % RANDOM_LINK_CAPACITY_MAX];
        const int result = sim_world_take_frame(&run->world, p, slot);
        if (result <= 0) return result;
        const uint64_t due = run->world.now + rc_sim_prng_range(&run->prng, 0, link->delay_max);
        /* FIFO: a frame is never due before the one sent ahead of it. */
        slot->due = due > link->last_due ? due : link->last_due;
        link->last_due = slot->due;
        link->length++;
    }
    return 0;
}

/** Rreceive: the head of the link from the predecessor, if it has arrived. Returns 1 on progress. */
static int random_receive(random_run *run, uint32_t p) {
    const uint32_t nodes = run->world.nodes;
    random_link *link = &run->link[(p + nodes - 1) % nodes];
    if (link->length == 0 || link->frame[link->head].due > run->world.now) return 0;
    const int result = sim_world_give_frame(&run->world, p, &link->frame[link->head]);
    if (result == -EAGAIN) {
        run->result->frames_refused++;
        return 0; /* held at the head of the link: the process stops reading until it can take it */
    }
    if (result != 0) return result;
    link->head = (link->head + 1) % RANDOM_LINK_CAPACITY_MAX;
    link->length--;
    return 1;
}

/** utoBroadcast of p's next planned message once its release time has come. Returns 1 on progress. */
static int random_broadcast(random_run *run, uint32_t p) {
    random_plan *plan = &run->plan[p];
    if (plan->next == plan->count || plan->release[plan->next] > run->world.now) return 0;
    const int result = sim_world_broadcast(&run->world, p, plan->bytes[plan->next]);
    if (result == -EAGAIN) {
        run->result->broadcasts_refused++;
        return 0; /* the application retries later, as after a full send queue */
    }
    if (result != 0) return result;
    plan->next++;
    run->result->broadcasts++;
    return 1;
}

/**
 * One step: a random process handles one event (a due broadcast or a frame that arrived, in random
 * preference), then does its duties from rc_lcr.h in random order (their order does not matter for
 * correctness, so both orders must work). Returns 1 on progress, 0 without, or a negative errno.
 */
static int random_step(random_run *run) {
    rc_sim_prng *prng = &run->prng;
    const uint32_t p = (uint32_t)rc_sim_prng_below(prng, run->world.nodes);
    int progress = 0;
    switch (rc_sim_prng_below(prng, 3)) {
    case 0:
        progress = random_broadcast(run, p);
        if (progress == 0) progress = random_receive(run, p);
        break;
    case 1:
        progress = random_receive(run, p);
        if (progress == 0) progress = random_broadcast(run, p);
        break;
    default: /* only the duties, e.g. after the link to the successor made room */
        break;
    }
    if (progress < 0) return progress;
    const bool send_first = rc_sim_prng_chance(prng, 50);
    int status = send_first ? random_send(run, p) : 0;
    const int64_t delivered = status == 0 ? sim_world_deliver(&run->world, p) : 0;
    if (delivered < 0) return (int)delivered;
    if (status == 0 && !send_first) status = random_send(run, p);
    if (status < 0) return status;
    run->result->deliveries += (uint64_t)delivered;
    return progress > 0 || delivered > 0;
}

static bool random_done(const random_run *run) {
    for (uint32_t p = 0; p < run->world.nodes; p++) {
        if (run->plan[p].next < run->plan[p].count) return false;
        if (run->world.node[p].log.length < run->planned) return false;
    }
    return true;
}

/** Steps until done, stuck or out of steps. Returns 1 when done, 0 on a liveness violation, or -errno. */
static int random_loop(random_run *run, uint64_t step_max) {
    while (!random_done(run)) {
        if (run->world.violated_mask & (1u << RC_SIM_PROPERTY_PROTOCOL)) return 0;
        if (run->result->steps >= step_max || run->result->steps - run->last_progress > RANDOM_STALL_STEPS) {
            sim_world_violation(&run->world, RC_SIM_PROPERTY_LIVENESS, 0, 0);
            if (run->world.trace != NULL) {
                fprintf(run->world.trace, "%llu liveness: no progress since step %llu\n",
                        (unsigned long long)run->world.now, (unsigned long long)run->last_progress);
            }
            return 0;
        }
        run->result->steps++;
        run->world.now = run->result->steps;
        const int progress = random_step(run);
        if (progress < 0 && progress != -EPROTO) return progress;
        if (progress > 0) run->last_progress = run->result->steps;
    }
    return 1;
}

int rc_sim_random_run(const rc_sim_random_settings *settings, rc_sim_random_result *result) {
    memset(result, 0, sizeof *result);
    random_run *run = calloc(1, sizeof *run);
    if (run == NULL) return -ENOMEM;
    run->result = result;
    int status = random_setup(run, settings);
    if (status == 0) status = random_loop(run, settings->step_max != 0 ? settings->step_max : RC_SIM_RANDOM_STEP_MAX_DEFAULT);
    if (status >= 0) {
        const int checked = sim_world_check(&run->world, status == 1, &result->first_violation);
        if (checked < 0) status = checked;
        else result->violations = (uint32_t)checked;
        result->trace_digest = run->world.digest;
    }
    if (settings->trace != NULL) fflush(settings->trace);
    sim_world_free(&run->world);
    free(run);
    return status < 0 ? status : 0;
}

FILE *rc_sim_stdout(void) { return stdout; }
