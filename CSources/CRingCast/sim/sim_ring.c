/*
 * sim_ring.c — the round model of §2.2.2 (thesis 001_…) over real cores. In round k every process
 * p_i (1) computes its frame m(i, k), (2) sends it to its successor, (3) receives at most the one
 * frame its predecessor sent. The ring's only links are predecessor → successor, so each link holds
 * at most one frame: a frame refused with -EAGAIN (backpressure) stays there and blocks its sender
 * until the receiver accepts it in a later round.
 */
#include "sim_world.h"

#include <errno.h>
#include <stdlib.h>

struct rc_sim_ring {
    rc_sim_ring_settings settings;
    sim_world world;
    sim_frame link[RC_SIM_NODES_MAX]; /**< link[p]: the frame from p to its successor. */
    bool link_busy[RC_SIM_NODES_MAX];
    uint64_t round;
};

/** Payload size of every simulated application message; the round model does not look at bytes. */
enum { RING_MESSAGE_BYTES = 1000 };

rc_sim_ring_settings rc_sim_ring_settings_default(uint32_t nodes, bool fairness) {
    /*
     * The send queue is each origin's window: an own message leaves it only once delivered locally
     * (rc_lcr.h), at least 2n - 2 rounds after it was sent on an idle ring (§2.5.3) and more under
     * load. A window below (own rate × delivery latency) idles the sender with ACK-only frames; 4n
     * was measured too small for n = 4, K = 4 (efficiency 0.95), 8n is enough for every n in 2..9.
     * The other two follow rc_lcr.h's sizing rules against deadlock: forward_queue_max >
     * send_queue_max and pending_max ≥ nodes × (send_queue_max + forward_queue_max).
     */
    const uint32_t window = 8 * nodes;
    return (rc_sim_ring_settings){
        .nodes = nodes, .fairness = fairness, .send_queue_max = window, .forward_queue_max = window + 1,
        .pending_max = nodes * (2 * window + 1), .batch_count_max = 1, .test_fault = RC_LCR_FAULT_NONE,
    };
}

/** Fills the maxima left at 0: the window from the defaults, the others by rc_lcr.h's sizing rules. */
static rc_sim_ring_settings ring_settings_resolve(const rc_sim_ring_settings *given) {
    const rc_sim_ring_settings fallback = rc_sim_ring_settings_default(given->nodes, given->fairness);
    rc_sim_ring_settings settings = *given;
    if (settings.send_queue_max == 0) settings.send_queue_max = fallback.send_queue_max;
    if (settings.forward_queue_max == 0) settings.forward_queue_max = settings.send_queue_max + 1;
    if (settings.pending_max == 0) {
        settings.pending_max = settings.nodes * (settings.send_queue_max + settings.forward_queue_max);
    }
    if (settings.batch_count_max == 0) settings.batch_count_max = fallback.batch_count_max;
    return settings;
}

int rc_sim_ring_create(rc_sim_ring **ring_out, const rc_sim_ring_settings *given) {
    *ring_out = NULL;
    if (given->nodes < 2 || given->nodes > RC_SIM_NODES_MAX) return -EINVAL;
    rc_sim_ring *ring = calloc(1, sizeof *ring);
    if (ring == NULL) return -ENOMEM;
    ring->settings = ring_settings_resolve(given);
    const rc_lcr_settings lcr = {
        .nodes = given->nodes, .self = 0, .send_queue_max = ring->settings.send_queue_max,
        .forward_queue_max = ring->settings.forward_queue_max, .pending_max = ring->settings.pending_max,
        .batch_count_max = ring->settings.batch_count_max,
        .batch_bytes_max = ring->settings.batch_count_max * RING_MESSAGE_BYTES,
        .fairness = ring->settings.fairness, .test_fault = ring->settings.test_fault,
    };
    const int result = sim_world_init(&ring->world, given->nodes, &lcr);
    if (result != 0) {
        rc_sim_ring_destroy(ring);
        return result;
    }
    *ring_out = ring;
    return 0;
}

void rc_sim_ring_destroy(rc_sim_ring *ring) {
    if (ring == NULL) return;
    sim_world_free(&ring->world);
    free(ring);
}

rc_sim_ring_settings rc_sim_ring_settings_get(const rc_sim_ring *ring) { return ring->settings; }

int rc_sim_ring_broadcast(rc_sim_ring *ring, uint32_t process) {
    if (process >= ring->settings.nodes) return -EINVAL;
    /* Broadcasts are made between rounds; they count as the start of the next round. */
    ring->world.now = ring->round + 1;
    return sim_world_broadcast(&ring->world, process, RING_MESSAGE_BYTES);
}

/** Steps 1 and 2 of a round: every process with a free outgoing link sends one frame. */
static int ring_send_all(rc_sim_ring *ring) {
    for (uint32_t p = 0; p < ring->settings.nodes; p++) {
        if (ring->link_busy[p]) continue;
        const int result = sim_world_take_frame(&ring->world, p, &ring->link[p]);
        if (result < 0) return result;
        ring->link_busy[p] = result == 1;
    }
    return 0;
}

/** Step 3: every process receives the frame its predecessor sent, then pulls its deliveries. */
static int ring_receive_all(rc_sim_ring *ring) {
    const uint32_t nodes = ring->settings.nodes;
    for (uint32_t p = 0; p < nodes; p++) {
        const uint32_t predecessor = (p + nodes - 1) % nodes;
        if (!ring->link_busy[predecessor]) continue;
        const int result = sim_world_give_frame(&ring->world, p, &ring->link[predecessor]);
        if (result == 0) ring->link_busy[predecessor] = false;
        else if (result != -EAGAIN) return result;
    }
    for (uint32_t p = 0; p < nodes; p++) {
        const int64_t delivered = sim_world_deliver(&ring->world, p);
        if (delivered < 0) return (int)delivered;
    }
    return 0;
}

int rc_sim_ring_step(rc_sim_ring *ring) {
    ring->round++;
    ring->world.now = ring->round;
    const int result = ring_send_all(ring);
    return result != 0 ? result : ring_receive_all(ring);
}

uint64_t rc_sim_ring_round(const rc_sim_ring *ring) { return ring->round; }

const rc_lcr *rc_sim_ring_core(const rc_sim_ring *ring, uint32_t process) {
    RC_ASSERT(process < ring->settings.nodes);
    return ring->world.node[process].core;
}

uint64_t rc_sim_ring_delivered_count(const rc_sim_ring *ring, uint32_t process) {
    RC_ASSERT(process < ring->settings.nodes);
    return ring->world.node[process].log.length;
}

rc_sim_id rc_sim_ring_delivered_at(const rc_sim_ring *ring, uint32_t process, uint64_t index) {
    RC_ASSERT(process < ring->settings.nodes && index < ring->world.node[process].log.length);
    return ring->world.node[process].log.items[index];
}

uint64_t rc_sim_ring_delivered_round(const rc_sim_ring *ring, uint32_t process, uint64_t index) {
    RC_ASSERT(process < ring->settings.nodes && index < ring->world.node[process].log_time.length);
    return ring->world.node[process].log_time.items[index];
}

uint64_t rc_sim_ring_broadcast_count(const rc_sim_ring *ring, uint32_t origin) {
    RC_ASSERT(origin < ring->settings.nodes);
    return ring->world.node[origin].broadcasts;
}

uint64_t rc_sim_ring_completed(const rc_sim_ring *ring, uint32_t origin) {
    RC_ASSERT(origin < ring->settings.nodes);
    /* Each process delivers one origin's messages in seq order, so the slowest count is complete. */
    uint64_t completed = UINT64_MAX;
    for (uint32_t p = 0; p < ring->settings.nodes; p++) {
        const uint64_t delivered = ring->world.node[p].delivered_from[origin];
        if (delivered < completed) completed = delivered;
    }
    return completed;
}

uint64_t rc_sim_ring_ack_only_frames(const rc_sim_ring *ring) { return ring->world.ack_only_frames; }
uint64_t rc_sim_ring_frames_refused(const rc_sim_ring *ring) { return ring->world.frames_refused; }

int rc_sim_ring_check(const rc_sim_ring *ring, bool quiescent, rc_sim_violation *first) {
    return sim_world_check(&ring->world, quiescent, first);
}
