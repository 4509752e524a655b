/*
 * chain_execute.c — handing logged requests to the application in sn order, and Σlast's replies: D(reply),
 * the reply MAC ρ over this replica's own reply and history digest (spec C3, D1, D3).
 */
#include "chain_internal.h"

#include <errno.h>

uint32_t rc_chain_next_executions(rc_chain *core, rc_chain_execution *out, uint32_t max) {
    RC_ASSERT(core != NULL && (out != NULL || max == 0));
    uint32_t written = 0;
    bool sigma_last = chain_in_sigma_last(core);
    while (written < max && core->exec_next <= core->sn_last) {
        const chain_entry *e = chain_history_entry(core, core->exec_next);
        if (e->missing) break; /* an init-history body not fetched yet: nothing after it runs before it (§12) */
        /* Init-history entries were ordered in an earlier instance: no batch of this one carries their ρ. */
        out[written++] = (rc_chain_execution){
            .sn = e->sn, .client = e->client, .timestamp = e->timestamp, .ref = e->ref,
            .reply_needed = sigma_last && e->sn > core->init_last,
        };
        core->exec_next++;
    }
    if (written > 0) chain_history_collect(core);
    return written;
}

/* The oldest waiting batch holding `sn`: replies come in sn order and batches leave in sn order. */
static chain_slot *slot_holding(const rc_chain *core, uint64_t sn) {
    for (uint32_t i = 0; i < core->slot_count; i++) {
        chain_slot *slot = chain_slot_at(core, (core->slot_head + i) % core->settings.out_batches_max);
        if (sn >= slot->sn_first && sn < slot->sn_first + slot->count) return slot;
    }
    return NULL;
}

int rc_chain_on_reply(rc_chain *core, uint64_t sn, const uint8_t *reply, uint32_t reply_bytes) {
    RC_ASSERT(core != NULL);
    if (!chain_in_sigma_last(core) || sn != core->reply_next || sn >= core->exec_next) return -EINVAL;
    if (reply == NULL && reply_bytes > 0) return -EINVAL;
    chain_slot *slot = slot_holding(core, sn);
    RC_ASSERT(slot != NULL && slot->replies_missing > 0);
    const chain_entry *e = chain_history_entry(core, sn);
    rc_crypto_digest reply_digest;
    rc_crypto_part part = {reply, reply_bytes};
    int rc = chain_digest(core, &part, 1, &reply_digest);
    if (rc < 0) return rc;
    uint8_t buffer[64];
    rc_crypto_part parts[4];
    uint32_t part_count = chain_parts_reply(core->settings.instance, sn, &e->request_digest, &reply_digest,
                                            &e->history_digest, buffer, parts);
    uint32_t stride = rc_chain_reply_macs_count(core->settings.f, core->settings.self);
    uint32_t index = chain_slot_index(core, slot);
    rc_crypto_mac *rho = chain_slot_reply_macs(core, index) + (size_t)(sn - slot->sn_first) * stride + (stride - 1);
    rc = chain_mac(core, RC_CRYPTO_CLIENT(e->client), parts, part_count, rho);
    if (rc < 0) return rc;
    core->reply_next++;
    slot->replies_missing--;
    slot->ready = slot->replies_missing == 0;
    chain_history_collect(core);
    return 0;
}
