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
 * - A burst starts with the first own message sent after the process was idle — its send queue empty
 *   while its window had room, so not merely held back by backpressure — and only if more than one
 *   message is queued then. A process that never runs dry is in one long burst: it
 *   does not announce again every burst_size messages. Announcing again would reset every receiver's
 *   counters over and over, and each reset lets the receiver send own messages ahead of the ones it
 *   forwards (received = sent = 0 admits it). In the round model that cost up to 7 % of throughput
 *   and gave shares of 17–24 % instead of 20 % at n = k = 5; with one burst per busy period the shares
 *   are equal within 1 % (ringcast-sim, Theorem 2.5.1 tests).
 * - Units are LCR messages (ring slots): with batching the announced burst_size is
 *   ceil(queued / batch_count_max).
 */
#include "lcr_internal.h"

/* §2.5.2: "When the process wants to send a message, it retrieves the first message in the forward list.
 * Assume that this message has been sent by process p_j. The process only sends its own message if the
 * `received` integer stored for p_j is higher or equal than the `sent` integer stored for p_j." */
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
}

/* Called whenever the link could take a frame. The burst is over when the application has nothing
 * queued although the window has room: the process is idle, not held back by backpressure. */
void lcr_fairness_note_link_ready(rc_lcr *core) {
    bool nothing_queued = core->app_next == core->app_tail;
    bool window_has_room = core->app_tail - core->app_head < core->settings.send_queue_max;
    if (nothing_queued && window_has_room) core->own_idle = true;
}

/* The burst_size to piggy-back on the own message about to be sent, 0 when it does not start one. */
uint32_t lcr_fairness_own_burst_size(rc_lcr *core) {
    uint64_t queued = core->app_tail - core->app_next;
    RC_ASSERT(queued > 0);
    if (!core->own_idle) return 0;
    core->own_idle = false;
    uint64_t batch = core->settings.batch_count_max;
    uint64_t messages = (queued + batch - 1) / batch;
    if (messages <= 1) return 0;
    return messages > UINT32_MAX ? UINT32_MAX : (uint32_t)messages;
}
