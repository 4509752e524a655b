/*
 * lcr_fairness.c — the fairness mechanism of §2.5.2 (Fig. 2.8).
 *
 * Per origin p_j this process keeps burst_size (the last burst p_j announced), received (messages of
 * p_j received since that announcement) and sent (own messages sent since then). When both queues have
 * something, an own message may go only if received ≥ sent for the origin of the first message of the
 * forward queue: "since p_j started its last burst, the process initiated less broadcasts than p_j".
 *
 * Two points the paper leaves open, decided here:
 * - `sent` counts own messages for every origin, whether or not that origin has a burst under way.
 *   Counting only during announced bursts would let an origin that never bursts (single messages)
 *   be overtaken forever, since received = sent = 0 would always admit the own message.
 * - Units are LCR messages (ring slots). With batching, the send queue's application messages become
 *   ceil(queued / batch_count_max) LCR messages, and that is the announced burst_size. The sender then
 *   counts exactly burst_size own LCR messages before it announces the next burst, so the receivers'
 *   `received` reaches burst_size exactly at the burst's end.
 */
#include "lcr_internal.h"

bool lcr_fairness_admits_own(const rc_lcr *core) {
    if (core->forward_count == 0) return true;
    if (!core->settings.fairness) return false; /* forward first: the §2.5.2 starvation */
    uint32_t origin = core->forward[core->forward_head].origin;
    RC_ASSERT(origin < core->settings.nodes && origin != core->settings.self);
    const lcr_fairness_entry *entry = &core->fairness[origin];
    return entry->received >= entry->sent;
}

void lcr_fairness_on_receive(rc_lcr *core, uint32_t origin, uint32_t burst_size) {
    RC_ASSERT(origin < core->settings.nodes);
    lcr_fairness_entry *entry = &core->fairness[origin];
    if (burst_size > 0) {
        entry->burst_size = burst_size;
        entry->received = 0;
        entry->sent = 0;
    }
    entry->received++;
    if (entry->burst_size > 0 && entry->received >= entry->burst_size) {
        /* The burst is over: reset the three integers (§2.5.2). */
        entry->burst_size = 0;
        entry->received = 0;
        entry->sent = 0;
    }
}

void lcr_fairness_on_own_sent(rc_lcr *core) {
    for (uint32_t origin = 0; origin < core->settings.nodes; origin++) {
        if (origin != core->settings.self) core->fairness[origin].sent++;
    }
    if (core->own_burst_remaining > 0) core->own_burst_remaining--;
}

/* The burst_size to piggy-back on the own message about to be sent, 0 when it does not start one.
 * A burst starts when the previous one is over and the send queue holds more than one message. */
uint32_t lcr_fairness_own_burst_size(rc_lcr *core) {
    if (core->own_burst_remaining > 0) return 0;
    uint64_t queued = core->app_tail - core->app_next;
    RC_ASSERT(queued > 0);
    uint64_t batch = core->settings.batch_count_max;
    uint64_t messages = (queued + batch - 1) / batch;
    if (messages <= 1) return 0;
    if (messages > UINT32_MAX) messages = UINT32_MAX;
    core->own_burst_remaining = messages;
    return (uint32_t)messages;
}
