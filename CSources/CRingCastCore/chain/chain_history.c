/*
 * chain_history.c — the local history LH with its order-sensitive digest (spec §4, D2) and garbage
 * collection (§14), and the ring of batches waiting for the successor (§9).
 */
#include "chain_internal.h"

#include <errno.h>

/* H_sn = D(H_{sn-1} ‖ sn ‖ D(req_sn)): a chained hash, so equal digests mean equal sequences, not equal
 * multisets (spec §4: [I]'s AdHASH sum ignores order, and Commit Order rests on this). */
int chain_history_append(rc_chain *core, const rc_chain_request *request, const rc_crypto_digest *digest) {
    RC_ASSERT(chain_history_count(core) < core->settings.history_max);
    uint64_t sn = core->sn_last + 1;
    uint8_t position[8];
    chain_put64(position, sn);
    rc_crypto_part parts[3] = {
        {core->history_digest.bytes, RC_CRYPTO_DIGEST_BYTES}, {position, 8}, {digest->bytes, RC_CRYPTO_DIGEST_BYTES},
    };
    rc_crypto_digest next;
    int rc = chain_digest(core, parts, 3, &next);
    if (rc < 0) return rc;
    core->sn_last = sn;
    chain_entry *e = chain_history_entry(core, sn);
    *e = (chain_entry){
        .sn = sn, .timestamp = request->timestamp, .ref = request->ref, .client = request->client,
        .op_bytes = request->op_bytes, .request_digest = *digest, .history_digest = next,
    };
    core->history_digest = next;
    core->last_timestamp[request->client] = request->timestamp;
    core->stats.requests_logged++;
    return 0;
}

/* An entry may go once it is inside the stable checkpoint (every replica vouched for the prefix), was handed
 * out for execution and, at Σlast, replied to (its ρ is in a batch). A stopped replica keeps its history
 * frozen for its ABORTs (spec P2). */
void chain_history_collect(rc_chain *core) {
    if (core->mode == RC_CHAIN_STOPPED) return;
    uint64_t limit = core->stable_number * core->settings.checkpoint_interval;
    if (core->exec_next - 1 < limit) limit = core->exec_next - 1;
    if (chain_in_sigma_last(core) && core->reply_next - 1 < limit) limit = core->reply_next - 1;
    while (core->history_first <= limit && core->history_first <= core->sn_last) {
        core->history_first++;
        core->stats.history_truncated++;
    }
    RC_ASSERT(core->history_first <= core->sn_last + 1);
}

/* ---- the batch ring --------------------------------------------------------------------------------- */

chain_slot *chain_slot_at(const rc_chain *core, uint32_t index) {
    RC_ASSERT(index < core->settings.out_batches_max);
    return &core->slots[index];
}

uint32_t chain_slot_index(const rc_chain *core, const chain_slot *slot) {
    return (uint32_t)(slot - core->slots);
}

rc_chain_request *chain_slot_requests(const rc_chain *core, uint32_t index) {
    return core->slot_requests + (size_t)index * core->settings.batch_count_max;
}

rc_crypto_mac *chain_slot_window(const rc_chain *core, uint32_t index) {
    return core->slot_window + (size_t)index * core->window_max;
}

rc_crypto_mac *chain_slot_client_macs(const rc_chain *core, uint32_t index) {
    return core->slot_client_macs + (size_t)index * core->settings.batch_count_max * core->settings.f;
}

rc_crypto_mac *chain_slot_reply_macs(const rc_chain *core, uint32_t index) {
    return core->slot_reply_macs + (size_t)index * core->settings.batch_count_max * (core->settings.f + 1);
}

rc_crypto_digest *chain_slot_history(const rc_chain *core, uint32_t index) {
    return core->slot_history + (size_t)index * core->settings.batch_count_max;
}

chain_slot *chain_slot_push(rc_chain *core) {
    if (core->slot_count == core->settings.out_batches_max) return NULL;
    uint32_t index = (core->slot_head + core->slot_count) % core->settings.out_batches_max;
    core->slot_count++;
    chain_slot *slot = &core->slots[index];
    *slot = (chain_slot){0};
    return slot;
}

int chain_batch_digest(rc_chain *core, const rc_crypto_digest *requests, uint32_t count, rc_crypto_digest *out) {
    RC_ASSERT(count >= 1 && count <= core->settings.batch_count_max);
    rc_crypto_part part = {requests, (size_t)count * sizeof(rc_crypto_digest)};
    return chain_digest(core, &part, 1, out);
}

/* One ordering MAC per batch per replica successor (D4), appended after what is left of the predecessors'
 * blocks, so the window keeps the sender order of rc_chain.h. */
int chain_slot_append_own_block(rc_chain *core, uint32_t index, const rc_crypto_digest *batch_digest) {
    chain_slot *slot = chain_slot_at(core, index);
    uint32_t successors[RC_CHAIN_F_MAX + 1];
    uint32_t count = rc_chain_successors(core->settings.f, core->settings.self, successors, NULL);
    RC_ASSERT(slot->window_count + count <= core->window_max);
    uint8_t buffer[64];
    rc_crypto_part parts[2];
    uint32_t part_count = chain_parts_order(core->settings.instance, slot->sn_first, slot->count, batch_digest,
                                            buffer, parts);
    rc_crypto_mac *window = chain_slot_window(core, index);
    for (uint32_t k = 0; k < count; k++) {
        int rc = chain_mac(core, successors[k], parts, part_count, &window[slot->window_count + k]);
        if (rc < 0) return rc;
    }
    slot->window_count += count;
    return 0;
}
