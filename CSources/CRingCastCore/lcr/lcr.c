/*
 * lcr.c — the LCR core: set-up, utoBroadcast, Rreceive, the choice of the next frame, tryDeliver
 * (thesis 001_…, Fig. 2.5; fairness §2.5.2 in lcr_fairness.c; ACK ordering in lcr_acks.c).
 */
#include "lcr_internal.h"

#include <errno.h>
#include <string.h>

/* ---- memory layout --------------------------------------------------------------------------- */

typedef struct lcr_layout {
    size_t clock, stable_seq, send_queue, pending, forward, ack_log, ack_out, ack_out_seq;
    size_t clock_pool, clock_refs, clock_free, fairness, forward_clock_before, total;
} lcr_layout;

static size_t align16(size_t size) { return (size + 15u) & ~(size_t)15u; }

static bool settings_valid(const rc_lcr_settings *s) {
    return s->nodes >= 1 && s->nodes <= RC_LCR_NODES_MAX && s->self < s->nodes &&
           s->send_queue_max >= 1 && s->send_queue_max <= RC_LCR_QUEUE_MAX &&
           s->forward_queue_max >= 1 && s->forward_queue_max <= RC_LCR_QUEUE_MAX &&
           s->pending_max >= 1 && s->pending_max <= RC_LCR_QUEUE_MAX &&
           rc_batch_limits_valid(lcr_batch_limits(s)) &&
           s->test_fault <= RC_LCR_FAULT_DELIVER_UNSTABLE &&
           s->forward_queue_max > s->send_queue_max &&
           (uint64_t)s->pending_max >= (uint64_t)s->nodes * (s->send_queue_max + s->forward_queue_max);
}

/* A clock slot is held by a pending entry and, for a message still to forward, by the forward queue
 * too; a forwarded message is always still in pending (it cannot be stable before this process has
 * forwarded it, §2.4.2), so pending_max slots suffice. */
static lcr_layout layout_of(const rc_lcr_settings *s, uint32_t ack_log_max) {
    lcr_layout l;
    size_t n = s->nodes, at = align16(sizeof(rc_lcr));
    l.clock = at;        at += align16(n * sizeof(uint64_t));
    l.stable_seq = at;   at += align16(n * sizeof(uint64_t));
    l.send_queue = at;   at += align16((size_t)s->send_queue_max * sizeof(rc_lcr_app));
    l.pending = at;      at += align16((size_t)s->pending_max * sizeof(lcr_entry));
    l.forward = at;      at += align16((size_t)s->forward_queue_max * sizeof(lcr_entry));
    l.ack_log = at;      at += align16((size_t)ack_log_max * sizeof(lcr_ack_event));
    l.ack_out = at;      at += align16(n * sizeof(rc_lcr_ack));
    l.ack_out_seq = at;  at += align16(n * sizeof(uint64_t));
    l.clock_pool = at;   at += align16((size_t)s->pending_max * n * sizeof(uint64_t));
    l.clock_refs = at;   at += align16((size_t)s->pending_max);
    l.clock_free = at;   at += align16((size_t)s->pending_max * sizeof(uint32_t));
    l.fairness = at;     at += align16(n * sizeof(lcr_fairness_entry));
    l.forward_clock_before = at; at += align16((size_t)s->forward_queue_max * n * sizeof(uint64_t));
    l.total = at;
    return l;
}

static uint32_t ack_log_max_of(const rc_lcr_settings *s) {
    return (s->forward_queue_max + 1) * s->nodes;
}

size_t rc_lcr_memory_size(const rc_lcr_settings *settings) {
    if (settings == NULL || !settings_valid(settings)) return 0;
    return layout_of(settings, ack_log_max_of(settings)).total;
}

int rc_lcr_init(rc_lcr **out, void *memory, size_t size, const rc_lcr_settings *settings) {
    if (out == NULL || memory == NULL || settings == NULL || !settings_valid(settings)) return -EINVAL;
    if (((uintptr_t)memory & 15u) != 0) return -EINVAL;
    uint32_t ack_log_max = ack_log_max_of(settings);
    lcr_layout l = layout_of(settings, ack_log_max);
    if (size < l.total) return -EINVAL;
    memset(memory, 0, l.total);
    uint8_t *base = memory;
    rc_lcr *core = memory;
    core->settings = *settings;
    core->ack_log_max = ack_log_max;
    core->clock_pool_max = settings->pending_max;
    core->clock = (uint64_t *)(base + l.clock);
    core->stable_seq = (uint64_t *)(base + l.stable_seq);
    core->send_queue = (rc_lcr_app *)(base + l.send_queue);
    core->pending = (lcr_entry *)(base + l.pending);
    core->forward = (lcr_entry *)(base + l.forward);
    core->ack_log = (lcr_ack_event *)(base + l.ack_log);
    core->ack_out = (rc_lcr_ack *)(base + l.ack_out);
    core->ack_out_seq = (uint64_t *)(base + l.ack_out_seq);
    core->clock_pool = (uint64_t *)(base + l.clock_pool);
    core->clock_refs = base + l.clock_refs;
    core->clock_free = (uint32_t *)(base + l.clock_free);
    core->fairness = (lcr_fairness_entry *)(base + l.fairness);
    core->forward_clock_before = (uint64_t *)(base + l.forward_clock_before);
    for (uint32_t slot = 0; slot < core->clock_pool_max; slot++) {
        core->clock_free[slot] = core->clock_pool_max - 1 - slot;
    }
    core->clock_free_count = core->clock_pool_max;
    core->own_idle = true;
    *out = core;
    return 0;
}

/* ---- utoBroadcast ---------------------------------------------------------------------------- */

int rc_lcr_broadcast(rc_lcr *core, rc_ref ref, uint32_t bytes) {
    RC_ASSERT(core != NULL);
    if (bytes > core->settings.batch_bytes_max) return -EMSGSIZE;
    if (core->app_tail - core->app_head >= core->settings.send_queue_max) return -EAGAIN;
    rc_lcr_app *app = &core->send_queue[core->app_tail % core->settings.send_queue_max];
    app->ref = ref;
    app->bytes = bytes;
    core->app_tail++;
    core->stats.broadcasts++;
    RC_ASSERT(core->app_head <= core->app_next && core->app_next <= core->app_tail);
    return 0;
}

rc_lcr_app rc_lcr_app_at(const rc_lcr *core, uint64_t index) {
    RC_ASSERT(index >= core->app_head && index < core->app_tail);
    return core->send_queue[index % core->settings.send_queue_max];
}

/* ---- Rreceive ---------------------------------------------------------------------------------- */

/* Why frame_check refuses a frame (one count per reason in rc_lcr_stats, as TigerBeetle's ignore_*
 * predicates say why they ignore a message). Each reason names what no correct predecessor in this
 * view would send. */
typedef enum lcr_frame_refusal {
    LCR_FRAME_ACCEPTABLE = 0,
    LCR_FRAME_MALFORMED,       /* too many ACKs, a zero count or seq, a stamp whose own entry is not seq */
    LCR_FRAME_FOREIGN_ORIGIN,  /* an origin outside this view */
    LCR_FRAME_OWN_RETURNED,    /* an own message coming back: it stops one hop earlier (line 11) */
    LCR_FRAME_GAP,             /* a seq beyond C[origin] + 1: FIFO links never skip */
    LCR_FRAME_ACK_UNRECEIVED,  /* an ACK for a message never received */
} lcr_frame_refusal;

static lcr_frame_refusal frame_message_refusal(const rc_lcr *core, const rc_lcr_message *m) {
    if (m->origin >= core->settings.nodes) return LCR_FRAME_FOREIGN_ORIGIN;
    if (m->origin == core->settings.self) return LCR_FRAME_OWN_RETURNED;
    if (m->clock == NULL || m->count == 0 || m->seq == 0 || m->clock[m->origin] != m->seq) return LCR_FRAME_MALFORMED;
    if (m->seq > core->clock[m->origin] + 1) return LCR_FRAME_GAP;
    return LCR_FRAME_ACCEPTABLE;
}

/* Checks a frame against this view without changing anything: the reason no correct predecessor
 * could have sent it, or LCR_FRAME_ACCEPTABLE. ACKs are checked as they will be applied, after the
 * frame's message. */
static lcr_frame_refusal frame_ignore_reason(const rc_lcr *core, const rc_lcr_frame *frame) {
    uint32_t n = core->settings.nodes;
    if (frame->ack_count > n || (frame->ack_count > 0 && frame->acks == NULL)) return LCR_FRAME_MALFORMED;
    if (frame->has_message) {
        lcr_frame_refusal refusal = frame_message_refusal(core, &frame->message);
        if (refusal != LCR_FRAME_ACCEPTABLE) return refusal;
    }
    for (uint32_t i = 0; i < frame->ack_count; i++) {
        const rc_lcr_ack *ack = &frame->acks[i];
        if (ack->origin >= n) return LCR_FRAME_FOREIGN_ORIGIN;
        if (ack->seq == 0) return LCR_FRAME_MALFORMED;
        uint64_t known = core->clock[ack->origin];
        if (frame->has_message && frame->message.origin == ack->origin && frame->message.seq > known) {
            known = frame->message.seq;
        }
        if (ack->seq > known) return LCR_FRAME_ACK_UNRECEIVED;
    }
    return LCR_FRAME_ACCEPTABLE;
}

static void frame_count_refusal(rc_lcr *core, lcr_frame_refusal refusal) {
    RC_ASSERT(refusal != LCR_FRAME_ACCEPTABLE);
    core->stats.frames_rejected++;
    switch (refusal) {
    case LCR_FRAME_MALFORMED: core->stats.rejected_malformed++; break;
    case LCR_FRAME_FOREIGN_ORIGIN: core->stats.rejected_foreign_origin++; break;
    case LCR_FRAME_OWN_RETURNED: core->stats.rejected_own_returned++; break;
    case LCR_FRAME_GAP: core->stats.rejected_gap++; break;
    case LCR_FRAME_ACK_UNRECEIVED: core->stats.rejected_ack_unreceived++; break;
    case LCR_FRAME_ACCEPTABLE: break;
    }
}

static bool frame_fits(const rc_lcr *core, const rc_lcr_frame *frame, bool take_message) {
    if (!lcr_ack_log_has_room(core, frame->ack_count + 1)) return false;
    if (!take_message) return true;
    if (core->pending_count >= core->settings.pending_max) return false;
    bool forwards = lcr_predecessor(core, frame->message.origin) != core->settings.self;
    return !forwards || core->forward_count < core->settings.forward_queue_max;
}

/* Fig. 2.5 lines 10–18 for a message that passed line 10's test. */
static void message_accept(rc_lcr *core, const rc_lcr_message *m, bool *forwarded) {
    if (lcr_predecessor(core, m->origin) != core->settings.self) {
        /* Remember C as it was before this message arrived: an own message that overtakes it in the
         * forward queue is stamped with this (see own_take). */
        uint32_t index = (core->forward_head + core->forward_count) % core->settings.forward_queue_max;
        memcpy(core->forward_clock_before + (size_t)index * core->settings.nodes, core->clock,
               core->settings.nodes * sizeof(uint64_t));
    }
    uint32_t slot = lcr_clock_acquire(core);
    memcpy(lcr_clock_at(core, slot), m->clock, core->settings.nodes * sizeof(uint64_t));
    lcr_entry entry = {
        .seq = m->seq, .bytes = m->bytes, .ref = m->ref, .origin = m->origin,
        .burst_size = m->burst_size, .count = m->count, .clock_slot = slot, .own = false,
    };
    lcr_pending_insert(core, &entry); /* line 13 (or 15: `stable` is derived, lcr_internal.h) */
    core->clock[m->origin] = m->seq; /* line 18 */
    lcr_fairness_on_receive(core, m->origin, m->burst_size);
    if (lcr_predecessor(core, m->origin) == core->settings.self) { /* line 11's else (line 14) */
        core->stable_seq[m->origin] = m->seq; /* line 15: a full round is done */
        lcr_ack_log_push(core, m->origin, m->seq); /* line 16 */
        *forwarded = false;
        return;
    }
    RC_ASSERT(core->forward_count < core->settings.forward_queue_max);
    lcr_clock_hold(core, slot);
    core->forward[(core->forward_head + core->forward_count) % core->settings.forward_queue_max] = entry;
    core->forward_count++;
    core->forward_in++; /* line 12, when the link lets it go */
    *forwarded = true;
}

/* Fig. 2.5 lines 19–23, with the guard of line 20 on forwarding only (deviation 1 in rc_lcr.h). §2.4.2:
 * "Upon receiving this ACK message, each process knows (1) that m_i is stable, and (2) that it already
 * received all messages that are ordered before m_i." The ACK is cumulative (deviation 6) and waits in
 * the ACK log behind the forwards received before it (deviation 5). */
static void ack_accept(rc_lcr *core, const rc_lcr_ack *ack) {
    if (ack->seq <= core->stable_seq[ack->origin]) return; /* already known: nothing to pass on */
    core->stable_seq[ack->origin] = ack->seq;
    uint32_t last = lcr_predecessor(core, lcr_predecessor(core, ack->origin));
    if (last != core->settings.self) lcr_ack_log_push(core, ack->origin, ack->seq);
}

int rc_lcr_on_frame(rc_lcr *core, const rc_lcr_frame *frame, bool *forwarded, bool *duplicate) {
    RC_ASSERT(core != NULL && frame != NULL);
    bool forwarded_local = false;
    lcr_frame_refusal refusal = frame_ignore_reason(core, frame);
    if (refusal != LCR_FRAME_ACCEPTABLE) {
        frame_count_refusal(core, refusal);
        return -EPROTO;
    }
    bool take = frame->has_message && frame->message.seq > core->clock[frame->message.origin]; /* line 10 */
    if (!frame_fits(core, frame, take)) {
        core->stats.frames_refused++;
        return -EAGAIN;
    }
    bool ignored = frame->has_message && !take;
    if (ignored) core->stats.duplicates_ignored++; /* line 10: seen before, nothing to do */
    if (take) message_accept(core, &frame->message, &forwarded_local);
    for (uint32_t i = 0; i < frame->ack_count; i++) ack_accept(core, &frame->acks[i]);
    if (forwarded != NULL) *forwarded = forwarded_local;
    if (duplicate != NULL) *duplicate = ignored;
    return 0;
}

/* ---- the next frame for the successor ---------------------------------------------------------- */

static bool own_ready(const rc_lcr *core) {
    /* A full pending is the "full ring": fairness admits no own message then (ARCHITECTURE §2). */
    return core->app_next < core->app_tail && core->pending_count < core->settings.pending_max;
}

/* utoBroadcast lines 6–8 for one batch of application messages from the send queue. */
static void own_take(rc_lcr *core, rc_lcr_message *m) {
    uint32_t self = core->settings.self;
    uint32_t burst = lcr_fairness_own_burst_size(core); /* counts the queue before this batch leaves */
    uint64_t first = core->app_next;
    /* The batching stage's packing rule (rc_batch.h), over the origin's send queue in order. */
    rc_batch_limits limits = lcr_batch_limits(&core->settings);
    rc_batch_fill fill = {0};
    while (core->app_next < core->app_tail) {
        uint32_t next = core->send_queue[core->app_next % core->settings.send_queue_max].bytes;
        if (!rc_batch_admits(limits, fill, next)) break;
        rc_batch_add(&fill, next);
        core->app_next++;
    }
    RC_ASSERT(fill.count >= 1);
    uint32_t count = fill.count;
    uint64_t bytes = fill.bytes;
    core->clock[self]++; /* line 6 */
    uint32_t slot = lcr_clock_acquire(core);
    /* An own message that fairness lets go ahead of queued forwards is, for everyone downstream, sent
     * before those messages: it must be stamped as if sent just before the head of the forward queue was
     * received (and so without anything received after that). Stamped with C instead, it would claim to
     * follow messages the successor has not seen yet, and ≺ becomes cyclic (m0 ≺ m1 ≺ m2 ≺ m0 with three
     * processes; found by ringcast-sim, test OvertakingStampTests). The paper forwards in receive order
     * and sends own messages between forwards, so this is its order made explicit. */
    uint64_t *stamp = lcr_clock_at(core, slot);
    const uint64_t *source = core->forward_count == 0
        ? core->clock
        : core->forward_clock_before + (size_t)core->forward_head * core->settings.nodes;
    memcpy(stamp, source, core->settings.nodes * sizeof(uint64_t));
    stamp[self] = core->clock[self];
    lcr_entry entry = {
        .seq = core->clock[self], .bytes = bytes, .ref = first, .origin = self,
        .burst_size = burst, .count = count, .clock_slot = slot, .own = true,
    };
    lcr_pending_insert(core, &entry); /* line 7 */
    if (core->settings.nodes == 1) core->stable_seq[self] = entry.seq; /* alone: stable at once */
    lcr_fairness_on_own_sent(core);
    *m = (rc_lcr_message){
        .origin = self, .seq = entry.seq, .burst_size = burst, .count = count, .bytes = bytes,
        .clock = lcr_clock_at(core, slot), .own = true, .ref = first,
    };
    core->stats.lcr_messages_sent++;
}

static void forward_take(rc_lcr *core, rc_lcr_message *m) {
    RC_ASSERT(core->forward_count > 0);
    lcr_entry *f = &core->forward[core->forward_head];
    *m = (rc_lcr_message){
        .origin = f->origin, .seq = f->seq, .burst_size = f->burst_size, .count = f->count,
        .bytes = f->bytes, .clock = lcr_clock_at(core, f->clock_slot), .own = false, .ref = f->ref,
    };
    /* The pending entry still holds the slot, so the clock pointer stays valid for the caller. */
    lcr_clock_release(core, f->clock_slot);
    core->forward_head = (core->forward_head + 1) % core->settings.forward_queue_max;
    core->forward_count--;
    core->forward_out++;
    core->stats.forwarded++;
}

int rc_lcr_next_frame(rc_lcr *core, rc_lcr_frame *frame) {
    RC_ASSERT(core != NULL && frame != NULL);
    memset(frame, 0, sizeof(*frame));
    if (core->settings.nodes == 1) {
        /* No successor. Own messages still enter pending so that tryDeliver hands them out. */
        while (own_ready(core)) own_take(core, &frame->message);
        memset(frame, 0, sizeof(*frame));
        return 0;
    }
    lcr_fairness_note_link_ready(core);
    bool own = own_ready(core);
    if (own && lcr_fairness_admits_own(core)) {
        own_take(core, &frame->message); /* line 8: the frame returned is the Rsend */
        frame->has_message = true;
    } else if (core->forward_count > 0) {
        if (own) core->stats.own_held++;
        forward_take(core, &frame->message);
        frame->has_message = true;
    }
    frame->ack_count = lcr_ack_log_take_sendable(core);
    frame->acks = core->ack_out;
    if (!frame->has_message && frame->ack_count == 0) return 0;
    core->stats.frames_out++;
    if (frame->has_message) core->stats.acks_piggybacked += frame->ack_count;
    else core->stats.ack_only_frames++;
    return 1;
}

/* ---- tryDeliver (lines 24–27) ---------------------------------------------------------------- */

static bool deliverable(const rc_lcr *core, const lcr_entry *first) {
    if (core->settings.test_fault == RC_LCR_FAULT_DELIVER_UNSTABLE) return true; /* planted bug */
    return first->seq <= core->stable_seq[first->origin];
}

uint32_t rc_lcr_next_deliveries(rc_lcr *core, rc_lcr_message *out, uint32_t max) {
    RC_ASSERT(core != NULL && (out != NULL || max == 0));
    uint32_t written = 0;
    lcr_entry *first;
    while (written < max && (first = lcr_pending_first(core)) != NULL && deliverable(core, first)) {
        out[written] = (rc_lcr_message){
            .origin = first->origin, .seq = first->seq, .burst_size = first->burst_size,
            .count = first->count, .bytes = first->bytes, .clock = lcr_clock_at(core, first->clock_slot),
            .own = first->own, .ref = first->ref,
        };
        if (first->own) {
            /* Own messages leave pending in seq order, so their batches free the send queue in order. */
            RC_ASSERT(first->ref == core->app_head);
            core->app_head += first->count;
        }
        core->stats.delivered_messages++;
        core->stats.delivered_apps += first->count;
        /* Freed now, yet the clock stays readable until the next call: nothing reuses the slot before. */
        lcr_clock_release(core, first->clock_slot);
        lcr_pending_remove_first(core);
        written++;
    }
    return written;
}

/* ---- read-only views ------------------------------------------------------------------------- */

rc_lcr_stats rc_lcr_stats_get(const rc_lcr *core) { return core->stats; }
uint32_t rc_lcr_pending_count(const rc_lcr *core) { return core->pending_count; }
uint32_t rc_lcr_forward_queue_count(const rc_lcr *core) { return core->forward_count; }
uint32_t rc_lcr_send_queue_count(const rc_lcr *core) { return (uint32_t)(core->app_tail - core->app_head); }
const uint64_t *rc_lcr_clock(const rc_lcr *core) { return core->clock; }

uint64_t rc_lcr_stable_seq(const rc_lcr *core, uint32_t origin) {
    RC_ASSERT(origin < core->settings.nodes);
    return core->stable_seq[origin];
}
