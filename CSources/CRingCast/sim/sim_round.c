/*
 * sim_round.c — the round-model experiments of §2.5 (thesis 001_…): throughput against the bound of
 * Theorem 2.5.1 with k continuous senders, the per-sender shares that §2.5.2's fairness is meant to
 * equalise, and the latency of a lone broadcast (§2.5.3).
 */
#include "sim_world.h"

#include <errno.h>
#include <math.h>
#include <string.h>

/** Continuous broadcasting (§2.2.3): every sender fills its send queue until the core says -EAGAIN. */
static int round_top_up(rc_sim_ring *ring, uint32_t sender_mask, uint32_t nodes) {
    for (uint32_t p = 0; p < nodes; p++) {
        if ((sender_mask & (1u << p)) == 0) continue;
        int result;
        do {
            result = rc_sim_ring_broadcast(ring, p);
        } while (result == 0);
        if (result != -EAGAIN) return result;
    }
    return 0;
}

static void round_summarize(const rc_sim_throughput_settings *settings, const uint64_t *at_warmup,
                            const rc_sim_ring *ring, rc_sim_throughput_result *result) {
    const uint32_t nodes = settings->ring.nodes;
    const uint32_t senders = (uint32_t)__builtin_popcount(settings->sender_mask);
    for (uint32_t o = 0; o < nodes; o++) {
        result->completed_by_origin[o] = rc_sim_ring_completed(ring, o) - at_warmup[o];
        result->completed += result->completed_by_origin[o];
    }
    result->throughput_per_round = (double)result->completed / (double)result->measured_rounds;
    /* Theorem 2.5.1: n/(n-1) completed broadcasts per round when all n send, 1 otherwise. */
    result->bound_per_round = senders == nodes ? (double)nodes / (double)(nodes - 1) : 1.0;
    result->efficiency = result->throughput_per_round / result->bound_per_round;
    for (uint32_t o = 0; o < nodes; o++) {
        if (result->completed > 0) result->share[o] = (double)result->completed_by_origin[o] / (double)result->completed;
        if ((settings->sender_mask & (1u << o)) == 0) continue;
        const double deviation = fabs(result->share[o] - 1.0 / (double)senders);
        if (deviation > result->share_deviation_max) result->share_deviation_max = deviation;
    }
    result->ack_only_frames = rc_sim_ring_ack_only_frames(ring);
    result->frames_refused = rc_sim_ring_frames_refused(ring);
    result->settings_used = rc_sim_ring_settings_get(ring);
}

static int round_validate(const rc_sim_throughput_settings *settings) {
    const uint32_t nodes = settings->ring.nodes;
    if (nodes < 2 || nodes > RC_SIM_NODES_MAX) return -EINVAL;
    if (settings->sender_mask == 0 || (settings->sender_mask >> nodes) != 0) return -EINVAL;
    if (settings->rounds == 0) return -EINVAL;
    return 0;
}

int rc_sim_throughput_run(const rc_sim_throughput_settings *settings, rc_sim_throughput_result *result) {
    memset(result, 0, sizeof *result);
    int status = round_validate(settings);
    if (status != 0) return status;
    const uint32_t nodes = settings->ring.nodes;
    uint64_t warmup = settings->warmup_rounds;
    if (warmup == UINT64_MAX) warmup = settings->rounds / 10 > 4ull * nodes ? settings->rounds / 10 : 4ull * nodes;
    if (warmup >= settings->rounds) return -EINVAL;
    result->warmup_rounds = warmup;
    result->measured_rounds = settings->rounds - warmup;
    rc_sim_ring_settings ring_settings = settings->ring;
    ring_settings.batch_count_max = 1; /* the model's unit: one application message = one LCR message */
    rc_sim_ring *ring = NULL;
    status = rc_sim_ring_create(&ring, &ring_settings);
    if (status != 0) return status;
    uint64_t at_warmup[RC_SIM_NODES_MAX] = {0};
    for (uint64_t round = 1; round <= settings->rounds && status == 0; round++) {
        status = round_top_up(ring, settings->sender_mask, nodes);
        if (status == 0) status = rc_sim_ring_step(ring);
        if (round == warmup) {
            for (uint32_t o = 0; o < nodes; o++) at_warmup[o] = rc_sim_ring_completed(ring, o);
        }
    }
    round_summarize(settings, at_warmup, ring, result);
    const int checked = rc_sim_ring_check(ring, false, &result->first_violation);
    rc_sim_ring_destroy(ring);
    if (checked < 0) return checked;
    result->violations = (uint32_t)checked;
    /* -EPROTO from a core is a verdict (a protocol violation, counted above), not a harness failure. */
    return status == -EPROTO ? 0 : status;
}

int rc_sim_lone_latency(uint32_t nodes, uint32_t origin, bool fairness, uint64_t *rounds) {
    *rounds = 0;
    if (nodes < 2 || nodes > RC_SIM_NODES_MAX || origin >= nodes) return -EINVAL;
    const rc_sim_ring_settings settings = rc_sim_ring_settings_default(nodes, fairness);
    rc_sim_ring *ring = NULL;
    int status = rc_sim_ring_create(&ring, &settings);
    if (status != 0) return status;
    status = rc_sim_ring_broadcast(ring, origin);
    uint32_t delivered_at = 0; /* processes that delivered the message */
    while (status == 0 && delivered_at < nodes) {
        if (rc_sim_ring_round(ring) >= 8ull * nodes) {
            status = -ETIMEDOUT;
            break;
        }
        status = rc_sim_ring_step(ring);
        delivered_at = 0;
        for (uint32_t p = 0; p < nodes; p++) delivered_at += rc_sim_ring_delivered_count(ring, p) > 0;
    }
    if (status == 0) *rounds = rc_sim_ring_round(ring);
    rc_sim_ring_destroy(ring);
    return status;
}
