/*
 * lcr_acks.c — ACKs on their way to the successor (Fig. 2.5 lines 16 and 22), piggy-backed.
 *
 * Why ACKs wait in a log instead of leaving at once: an ACK for m tells the successor "m is stable, and
 * you already have every message ≺ m" (§2.4.2, the second point). That holds only if every message this
 * process received before the ACK has already been forwarded. With fairness an own message may leave
 * ahead of queued forwards, so an ACK received (or produced) after forward-queue message number k may
 * leave only on a frame sent once k messages have been forwarded. Each event records that k
 * (`forward_in`); a frame carries the events whose k ≤ forward_out, merged per origin (ACKs are
 * cumulative), so a frame has at most `nodes` ACK entries.
 *
 * Bound: events with the same k are merged per origin when pushed, and k takes at most
 * forward_queue_max + 1 distinct values among unsent events, so (forward_queue_max + 1) × nodes events
 * always suffice (ack_log_max).
 */
#include "lcr_internal.h"

static lcr_ack_event *ack_at(rc_lcr *core, uint32_t position) {
    RC_ASSERT(position < core->ack_log_max);
    return &core->ack_log[(core->ack_head + position) % core->ack_log_max];
}

bool lcr_ack_log_has_room(const rc_lcr *core, uint32_t events) {
    return core->ack_count + events <= core->ack_log_max;
}

void lcr_ack_log_push(rc_lcr *core, uint32_t origin, uint64_t seq) {
    RC_ASSERT(origin < core->settings.nodes && seq > 0);
    /* Merge with an event of the same origin that becomes sendable at the same moment. */
    for (uint32_t i = core->ack_count; i > 0; i--) {
        lcr_ack_event *event = ack_at(core, i - 1);
        if (event->forward_in != core->forward_in) break;
        if (event->origin == origin) {
            if (seq > event->seq) event->seq = seq;
            return;
        }
    }
    RC_ASSERT(core->ack_count < core->ack_log_max);
    lcr_ack_event *event = ack_at(core, core->ack_count);
    event->origin = origin;
    event->seq = seq;
    event->forward_in = core->forward_in;
    core->ack_count++;
}

/* Moves every sendable event into ack_out, one cumulative entry per origin. Returns the entry count. */
uint32_t lcr_ack_log_take_sendable(rc_lcr *core) {
    uint32_t out_count = 0;
    while (core->ack_count > 0) {
        lcr_ack_event *event = ack_at(core, 0);
        if (event->forward_in > core->forward_out) break;
        uint64_t *merged = &core->ack_out_seq[event->origin];
        if (*merged == 0) {
            core->ack_out[out_count].origin = event->origin;
            out_count++;
        }
        if (event->seq > *merged) *merged = event->seq;
        core->ack_head = (core->ack_head + 1) % core->ack_log_max;
        core->ack_count--;
    }
    RC_ASSERT(out_count <= core->settings.nodes);
    for (uint32_t i = 0; i < out_count; i++) {
        uint32_t origin = core->ack_out[i].origin;
        core->ack_out[i].seq = core->ack_out_seq[origin];
        core->ack_out_seq[origin] = 0;
    }
    return out_count;
}
