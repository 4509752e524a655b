/*
 * lcr_internal.h — the LCR core's state, shared by lcr*.c only (not visible to Swift).
 *
 * Everything lives in one caller-provided block laid out by lcr_layout(): no allocation after init.
 */
#ifndef RINGCAST_LCR_INTERNAL_H
#define RINGCAST_LCR_INTERNAL_H

#include "rc_lcr.h"

/* One LCR message held by the core: an entry of `pending`, kept sorted by ≺ (§2.4.1), or of the forward
 * queue (Fig. 2.8), which holds copies of received entries until they are forwarded. `stable` is derived,
 * not stored: an entry is stable when seq ≤ stable_seq[origin], because one origin's messages become
 * stable in seq order. */
typedef struct lcr_entry {
    uint64_t seq;
    uint64_t bytes;
    rc_ref ref;
    uint32_t origin;
    uint32_t burst_size;
    uint32_t count;
    uint32_t clock_slot; /* index into the clock pool */
    bool own;
} lcr_entry;


/* An ACK waiting to go to the successor. `forward_in` is the number of messages that had entered the
 * forward queue when the ACK was received (or produced): the ACK may leave only once that many have
 * been forwarded, so the successor never learns "m is stable" before it has every message ≺ m. */
typedef struct lcr_ack_event {
    uint64_t seq;
    uint64_t forward_in;
    uint32_t origin;
} lcr_ack_event;

/* §2.5.2: per origin, the burst it announced and what this process received / sent since then. */
typedef struct lcr_fairness_entry {
    uint64_t burst_size;
    uint64_t received;
    uint64_t sent;
} lcr_fairness_entry;

struct rc_lcr {
    rc_lcr_settings settings;
    uint32_t ack_log_max;
    uint32_t clock_pool_max;

    uint64_t *clock;            /* C: this process's vector clock, `nodes` entries */
    uint64_t *stable_seq;       /* per origin: every message with seq ≤ this is stable */

    rc_lcr_app *send_queue;     /* ring of send_queue_max application messages */
    uint64_t app_head;          /* oldest application message not yet delivered locally */
    uint64_t app_next;          /* next application message to put in an own LCR message */
    uint64_t app_tail;          /* one past the newest broadcast application message */

    lcr_entry *pending; /* ring of pending_max entries sorted by ≺ from pending_head */
    uint32_t pending_head;
    uint32_t pending_count;

    lcr_entry *forward; /* ring of forward_queue_max entries */
    uint64_t *forward_clock_before; /* per forward slot: C just before that message was received */
    uint32_t forward_head;
    uint32_t forward_count;
    uint64_t forward_in;        /* messages ever enqueued for forwarding */
    uint64_t forward_out;       /* messages ever forwarded */

    lcr_ack_event *ack_log;     /* ring of ack_log_max ACKs not yet sent, in arrival order */
    uint32_t ack_head;
    uint32_t ack_count;
    rc_lcr_ack *ack_out;        /* the ACKs of the frame last returned, ≤ nodes */
    uint64_t *ack_out_seq;      /* per origin scratch for merging, 0 = none */

    uint64_t *clock_pool;       /* clock_pool_max clocks of `nodes` entries */
    uint8_t *clock_refs;        /* per slot: holders (pending entry, forward entry) */
    uint32_t *clock_free;       /* stack of free slots */
    uint32_t clock_free_count;

    lcr_fairness_entry *fairness; /* per origin */
    bool own_idle;              /* the send queue ran dry since the last burst started (§2.5.2) */

    rc_lcr_stats stats;
};

/* The batching stage's limits of this core (rc_batch.h). */
static inline rc_batch_limits lcr_batch_limits(const rc_lcr_settings *s) {
    return (rc_batch_limits){.count_max = s->batch_count_max, .bytes_max = s->batch_bytes_max};
}

static inline uint32_t lcr_successor(const rc_lcr *core, uint32_t position) {
    return (position + 1) % core->settings.nodes;
}

static inline uint32_t lcr_predecessor(const rc_lcr *core, uint32_t position) {
    return (position + core->settings.nodes - 1) % core->settings.nodes;
}

/* lcr_pending.c: the sorted pending list and the clock pool behind it. */
uint32_t lcr_clock_acquire(rc_lcr *core);
void lcr_clock_hold(rc_lcr *core, uint32_t slot);
void lcr_clock_release(rc_lcr *core, uint32_t slot);
uint64_t *lcr_clock_at(const rc_lcr *core, uint32_t slot);
void lcr_pending_insert(rc_lcr *core, const lcr_entry *entry);
lcr_entry *lcr_pending_first(rc_lcr *core);
void lcr_pending_remove_first(rc_lcr *core);

/* lcr_acks.c: ACKs waiting for their turn, merged per origin into each frame. */
bool lcr_ack_log_has_room(const rc_lcr *core, uint32_t events);
void lcr_ack_log_push(rc_lcr *core, uint32_t origin, uint64_t seq);
uint32_t lcr_ack_log_take_sendable(rc_lcr *core);

/* lcr_fairness.c: §2.5.2. */
bool lcr_fairness_admits_own(const rc_lcr *core);
void lcr_fairness_on_receive(rc_lcr *core, uint32_t origin, uint32_t burst_size);
void lcr_fairness_on_own_sent(rc_lcr *core);
void lcr_fairness_note_link_ready(rc_lcr *core);
uint32_t lcr_fairness_own_burst_size(rc_lcr *core);

#endif /* RINGCAST_LCR_INTERNAL_H */
