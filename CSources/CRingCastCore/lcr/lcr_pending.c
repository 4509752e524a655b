/*
 * lcr_pending.c — `pending` (Fig. 2.5 lines 2, 7, 13, 15, 27), kept in ≺ order (§2.4.1), and the pool of
 * vector clocks its entries and the forward queue point to.
 *
 * pending is a ring with the first (oldest in ≺) entry at pending_head. Inserting walks back from the
 * last entry: a new message is ≺-after almost everything already there (it was sent after them or
 * concurrently), so the walk is short in practice; removal is always of the first entry (tryDeliver).
 */
#include "lcr_internal.h"

#include <errno.h>
#include <string.h>

bool rc_lcr_precedes(uint32_t nodes, uint32_t origin_a, const uint64_t *clock_a, uint32_t origin_b,
                     const uint64_t *clock_b) {
    RC_ASSERT(origin_a < nodes && origin_b < nodes);
    if (origin_a < origin_b) return clock_a[origin_a] <= clock_b[origin_a];
    if (origin_a == origin_b) return clock_a[origin_a] < clock_b[origin_a];
    /* origin_a > origin_b: m_a ≺ m_b exactly when not m_b ≺ m_a, and m_b ≺ m_a iff
     * C_b[b] ≤ C_a[b] (the first case with the roles swapped). */
    return clock_a[origin_b] < clock_b[origin_b];
}

uint64_t *lcr_clock_at(const rc_lcr *core, uint32_t slot) {
    RC_ASSERT(slot < core->clock_pool_max);
    return core->clock_pool + (size_t)slot * core->settings.nodes;
}

uint32_t lcr_clock_acquire(rc_lcr *core) {
    /* Callers check room first (pending has a free entry ⇒ a free clock slot, see lcr_layout). */
    RC_ASSERT(core->clock_free_count > 0);
    uint32_t slot = core->clock_free[--core->clock_free_count];
    RC_ASSERT(core->clock_refs[slot] == 0);
    core->clock_refs[slot] = 1;
    return slot;
}

void lcr_clock_hold(rc_lcr *core, uint32_t slot) {
    RC_ASSERT(core->clock_refs[slot] == 1); /* held by pending; the forward queue is the only other */
    core->clock_refs[slot] = 2;
}

void lcr_clock_release(rc_lcr *core, uint32_t slot) {
    RC_ASSERT(slot < core->clock_pool_max && core->clock_refs[slot] > 0);
    if (--core->clock_refs[slot] == 0) {
        RC_ASSERT(core->clock_free_count < core->clock_pool_max);
        core->clock_free[core->clock_free_count++] = slot;
    }
}

static lcr_entry *pending_at(rc_lcr *core, uint32_t position) {
    RC_ASSERT(position < core->settings.pending_max);
    return &core->pending[(core->pending_head + position) % core->settings.pending_max];
}

static bool entry_precedes(const rc_lcr *core, const lcr_entry *a, const lcr_entry *b) {
    return rc_lcr_precedes(core->settings.nodes, a->origin, lcr_clock_at(core, a->clock_slot), b->origin,
                           lcr_clock_at(core, b->clock_slot));
}

void lcr_pending_insert(rc_lcr *core, const lcr_entry *entry) {
    RC_ASSERT(core->pending_count < core->settings.pending_max);
    uint32_t position = core->pending_count;
    while (position > 0) {
        lcr_entry *before = pending_at(core, position - 1);
        /* The same message twice would mean line 10's duplicate check failed. */
        RC_ASSERT(!(before->origin == entry->origin && before->seq == entry->seq));
        if (!entry_precedes(core, entry, before)) break;
        *pending_at(core, position) = *before;
        position--;
    }
    *pending_at(core, position) = *entry;
    core->pending_count++;
}

lcr_entry *lcr_pending_first(rc_lcr *core) {
    return core->pending_count == 0 ? NULL : pending_at(core, 0);
}

void lcr_pending_remove_first(rc_lcr *core) {
    RC_ASSERT(core->pending_count > 0);
    core->pending_head = (core->pending_head + 1) % core->settings.pending_max;
    core->pending_count--;
}

int rc_lcr_pending_at(const rc_lcr *core, uint32_t position, rc_lcr_pending_view *out) {
    if (position >= core->pending_count) return -ERANGE;
    const lcr_entry *entry =
        &core->pending[(core->pending_head + position) % core->settings.pending_max];
    out->origin = entry->origin;
    out->seq = entry->seq;
    out->count = entry->count;
    out->stable = entry->seq <= core->stable_seq[entry->origin];
    out->own = entry->own;
    out->clock = lcr_clock_at(core, entry->clock_slot);
    out->ref = entry->ref;
    return 0;
}
