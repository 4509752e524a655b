/*
 * chain_order.c — steps C2 (the head orders) and C3 (r_2 … r_n check, log, forward) of spec §8, on batches
 * with per-request sequence numbers and one ordering MAC per batch per successor (spec §9, D4), and the
 * pull of the next batch for the successor.
 */
#include "chain_internal.h"

#include <errno.h>

/* ---- C2: the head ------------------------------------------------------------------------------- */

/* The head's open batch: the back slot while it is not closed, if the request still fits (count, bytes). */
static chain_slot *open_slot_for(const rc_chain *core, uint32_t op_bytes) {
    if (core->slot_count == 0) return NULL;
    uint32_t back = (core->slot_head + core->slot_count - 1) % core->settings.out_batches_max;
    chain_slot *slot = chain_slot_at(core, back);
    if (slot->ready) return NULL;
    /* The batching stage's packing rule (rc_batch.h), the same as LCR's. */
    rc_batch_fill fill = {.count = slot->count, .bytes = slot->op_bytes};
    return rc_batch_admits(chain_batch_limits(&core->settings), fill, op_bytes) ? slot : NULL;
}

int rc_chain_on_request(rc_chain *core, const rc_chain_request *request, const rc_crypto_mac *client_macs) {
    RC_ASSERT(core != NULL);
    if (!chain_is_head(core) || request == NULL || client_macs == NULL) return -EINVAL;
    if (request->client >= core->settings.clients_max || (request->op == NULL && request->op_bytes > 0)) return -EINVAL;
    if (core->mode == RC_CHAIN_STOPPED) return -ESHUTDOWN;
    /* C2 step 2: not new. */
    if (request->timestamp <= core->last_timestamp[request->client]) {
        core->stats.requests_not_new++;
        return 1;
    }
    chain_slot *slot = open_slot_for(core, request->op_bytes);
    bool room = chain_history_count(core) < core->settings.history_max && chain_checkpoint_room(core, 1) &&
                (slot != NULL || core->slot_count < core->settings.out_batches_max);
    if (!room) {
        core->stats.refused_full++;
        return -EAGAIN;
    }
    /* C2 step 3: the head reads the one client MAC addressed to it; a bad one is discarded, the head goes on. */
    rc_crypto_digest digest;
    int rc = chain_core_request_digest(core, request, &digest);
    if (rc < 0) return rc;
    uint8_t buffer[64];
    rc_crypto_part parts[2];
    uint32_t part_count = chain_parts_client(core->settings.instance, &digest, buffer, parts);
    if (!chain_mac_verify(core, RC_CRYPTO_CLIENT(request->client), parts, part_count, &client_macs[0])) {
        core->stats.requests_bad_mac++;
        return -EBADMSG;
    }
    /* C2 step 4: t_1[c], sn_1 + 1, LH. */
    rc = chain_history_append(core, request, &digest);
    if (rc < 0) return rc;
    if (slot == NULL) {
        slot = chain_slot_push(core);
        RC_ASSERT(slot != NULL);
        slot->sn_first = core->sn_last;
    }
    uint32_t index = chain_slot_index(core, slot);
    RC_ASSERT(slot->sn_first + slot->count == core->sn_last);
    rc_chain_request *out = &chain_slot_requests(core, index)[slot->count];
    *out = *request;
    out->op = NULL;
    /* The client's MACs for r_2 … r_{f+1} travel with their request (spec §9.3). */
    uint32_t residue = rc_chain_client_macs_count(core->settings.f, 0);
    memcpy(chain_slot_client_macs(core, index) + (size_t)slot->count * residue, &client_macs[1],
           residue * sizeof(rc_crypto_mac));
    slot->count++;
    slot->op_bytes += request->op_bytes;
    return 0;
}

/* ---- C3: r_2 … r_n ------------------------------------------------------------------------------ */

/* The shape a correct predecessor sends on the hop into this replica (rc_chain.h). */
static bool batch_well_formed(const rc_chain *core, const rc_chain_batch *b) {
    uint32_t f = core->settings.f, from = core->settings.self - 1;
    if (b->instance != core->settings.instance || b->count == 0 || b->count > core->settings.batch_count_max) return false;
    if (b->sn_first == 0 || b->requests == NULL) return false;
    if (b->window_count != rc_chain_window_count(f, from) || b->window == NULL) return false;
    if (b->client_macs_per_request != rc_chain_client_macs_count(f, from)) return false;
    if (b->client_macs_per_request > 0 && b->client_macs == NULL) return false;
    if (b->reply_macs_per_request != rc_chain_reply_macs_count(f, from)) return false;
    if (b->reply_macs_per_request > 0 && b->reply_macs == NULL) return false;
    for (uint32_t k = 0; k < b->count; k++) {
        const rc_chain_request *r = &b->requests[k];
        if (r->client >= core->settings.clients_max || (r->op == NULL && r->op_bytes > 0)) return false;
    }
    return true;
}

/* C3 (i), ordering part: the first MAC of each predecessor's block is addressed to this replica. */
static bool ordering_macs_valid(rc_chain *core, const rc_chain_batch *b, const rc_crypto_digest *batch_digest) {
    uint32_t f = core->settings.f, n = core->nodes, from = core->settings.self - 1;
    uint8_t buffer[64];
    rc_crypto_part parts[2];
    uint32_t part_count = chain_parts_order(core->settings.instance, b->sn_first, b->count, batch_digest, buffer, parts);
    uint32_t offset = 0;
    for (uint32_t s = from > f ? from - f : 0; s <= from; s++) {
        uint32_t last = s + f + 1 < n - 1 ? s + f + 1 : n - 1;
        if (!chain_mac_verify(core, s, parts, part_count, &b->window[offset])) return false;
        offset += last - from;
    }
    RC_ASSERT(offset == b->window_count);
    return true;
}

/* C3 (i), client part, at r_2 … r_{f+1}: one client MAC per request (spec §9.3). */
static bool client_macs_valid(rc_chain *core, const rc_chain_batch *b, const rc_crypto_digest *digests) {
    if (core->settings.self > core->settings.f) return true;
    uint8_t buffer[64];
    rc_crypto_part parts[2];
    for (uint32_t k = 0; k < b->count; k++) {
        uint32_t part_count = chain_parts_client(core->settings.instance, &digests[k], buffer, parts);
        const rc_crypto_mac *mac = &b->client_macs[(size_t)k * b->client_macs_per_request];
        if (!chain_mac_verify(core, RC_CRYPTO_CLIENT(b->requests[k].client), parts, part_count, mac)) return false;
    }
    return true;
}

/* C3 (iii) per request in batch order; all or nothing (undone on failure). */
static bool timestamps_new(rc_chain *core, const rc_chain_batch *b) {
    for (uint32_t k = 0; k < b->count; k++) {
        const rc_chain_request *r = &b->requests[k];
        core->scratch_timestamps[k] = core->last_timestamp[r->client];
        if (r->timestamp <= core->last_timestamp[r->client]) {
            for (uint32_t u = k; u-- > 0;) core->last_timestamp[b->requests[u].client] = core->scratch_timestamps[u];
            return false;
        }
        core->last_timestamp[r->client] = r->timestamp;
    }
    return true;
}

/* The batch for the successor: the window slides (each predecessor's first MAC consumed, ours appended),
 * the client MACs shift by one, the reply MACs pass on (Σlast adds ρ in rc_chain_on_reply). */
static int build_forward(rc_chain *core, const rc_chain_batch *b, const rc_crypto_digest *batch_digest) {
    uint32_t f = core->settings.f, n = core->nodes, from = core->settings.self - 1, self = core->settings.self;
    chain_slot *slot = chain_slot_push(core);
    RC_ASSERT(slot != NULL);
    uint32_t index = chain_slot_index(core, slot);
    slot->sn_first = b->sn_first;
    slot->count = b->count;
    rc_chain_request *requests = chain_slot_requests(core, index);
    for (uint32_t k = 0; k < b->count; k++) {
        requests[k] = b->requests[k];
        requests[k].op = NULL;
        if (chain_is_tail(core)) chain_slot_history(core, index)[k] = chain_history_entry(core, b->sn_first + k)->history_digest;
    }
    rc_crypto_mac *window = chain_slot_window(core, index);
    uint32_t in = 0;
    for (uint32_t s = from > f ? from - f : 0; s <= from; s++) {
        uint32_t last = s + f + 1 < n - 1 ? s + f + 1 : n - 1, size = last - from;
        memcpy(window + slot->window_count, b->window + in + 1, (size - 1) * sizeof(rc_crypto_mac));
        slot->window_count += size - 1;
        in += size;
    }
    uint32_t residue = rc_chain_client_macs_count(f, self), replies_in = b->reply_macs_per_request;
    uint32_t replies_out = rc_chain_reply_macs_count(f, self);
    for (uint32_t k = 0; k < b->count; k++) {
        memcpy(chain_slot_client_macs(core, index) + (size_t)k * residue,
               b->client_macs + (size_t)k * b->client_macs_per_request + 1, residue * sizeof(rc_crypto_mac));
        memcpy(chain_slot_reply_macs(core, index) + (size_t)k * replies_out,
               b->reply_macs + (size_t)k * replies_in, replies_in * sizeof(rc_crypto_mac));
    }
    int rc = chain_slot_append_own_block(core, index, batch_digest);
    if (rc < 0) return rc;
    slot->replies_missing = chain_in_sigma_last(core) ? b->count : 0;
    slot->ready = slot->replies_missing == 0;
    return 0;
}

static int stop_with(rc_chain *core, rc_chain_stop_reason reason) {
    chain_stop(core, reason);
    return -EPROTO;
}

int rc_chain_on_batch(rc_chain *core, const rc_chain_batch *b) {
    RC_ASSERT(core != NULL);
    if (chain_is_head(core) || b == NULL) return -EINVAL;
    if (core->mode == RC_CHAIN_STOPPED) return -ESHUTDOWN;
    if (!batch_well_formed(core, b)) return stop_with(core, RC_CHAIN_STOP_MALFORMED);
    /* D6: a batch wholly seen is a retransmission; anything else off sn_j + 1 cannot come over a FIFO link
     * from a correct predecessor. */
    if (b->sn_first + b->count - 1 <= core->sn_last) {
        core->stats.duplicates_ignored++;
        return 1;
    }
    if (b->sn_first != core->sn_last + 1) return stop_with(core, RC_CHAIN_STOP_SEQUENCE);
    if (chain_history_count(core) + b->count > core->settings.history_max || !chain_checkpoint_room(core, b->count) ||
        core->slot_count == core->settings.out_batches_max) {
        core->stats.refused_full++;
        return -EAGAIN;
    }
    for (uint32_t k = 0; k < b->count; k++) {
        int rc = chain_core_request_digest(core, &b->requests[k], &core->scratch_digests[k]);
        if (rc < 0) return rc;
    }
    rc_crypto_digest batch_digest;
    int rc = chain_batch_digest(core, core->scratch_digests, b->count, &batch_digest);
    if (rc < 0) return rc;
    if (!ordering_macs_valid(core, b, &batch_digest)) return stop_with(core, RC_CHAIN_STOP_ORDERING_MAC);
    if (!client_macs_valid(core, b, core->scratch_digests)) return stop_with(core, RC_CHAIN_STOP_CLIENT_MAC);
    if (!timestamps_new(core, b)) return stop_with(core, RC_CHAIN_STOP_TIMESTAMP);
    /* All checks passed: log (and, via the caller, execute) every request; a provider failure from here on
     * would leave the history half-written, so it is an invariant, not an input error. */
    for (uint32_t k = 0; k < b->count; k++) {
        rc = chain_history_append(core, &b->requests[k], &core->scratch_digests[k]);
        RC_ASSERT(rc == 0);
    }
    rc = build_forward(core, b, &batch_digest);
    RC_ASSERT(rc == 0);
    core->stats.batches_in++;
    return 0;
}

/* ---- the pull ------------------------------------------------------------------------------------ */

/* The head closes its open batch when the successor can take it (spec §9.6): one ordering MAC per successor. */
static int close_open_batch(rc_chain *core, chain_slot *slot) {
    RC_ASSERT(chain_is_head(core) && !slot->ready && slot->count > 0);
    for (uint32_t k = 0; k < slot->count; k++) {
        core->scratch_digests[k] = chain_history_entry(core, slot->sn_first + k)->request_digest;
    }
    rc_crypto_digest batch_digest;
    int rc = chain_batch_digest(core, core->scratch_digests, slot->count, &batch_digest);
    if (rc < 0) return rc;
    rc = chain_slot_append_own_block(core, chain_slot_index(core, slot), &batch_digest);
    if (rc < 0) return rc;
    slot->ready = true;
    return 0;
}

int rc_chain_next_batch(rc_chain *core, rc_chain_batch *out) {
    RC_ASSERT(core != NULL && out != NULL);
    if (core->slot_count == 0) return 0;
    uint32_t index = core->slot_head;
    chain_slot *slot = chain_slot_at(core, index);
    if (!slot->ready) {
        if (!chain_is_head(core) || slot->count == 0) return 0;
        if (close_open_batch(core, slot) < 0) return 0;
    }
    uint32_t f = core->settings.f, self = core->settings.self;
    *out = (rc_chain_batch){
        .instance = core->settings.instance,
        .sn_first = slot->sn_first,
        .count = slot->count,
        .requests = chain_slot_requests(core, index),
        .window_count = slot->window_count,
        .window = chain_slot_window(core, index),
        .client_macs_per_request = rc_chain_client_macs_count(f, self),
        .client_macs = chain_slot_client_macs(core, index),
        .reply_macs_per_request = rc_chain_reply_macs_count(f, self),
        .reply_macs = chain_slot_reply_macs(core, index),
        .history_digests = chain_is_tail(core) ? chain_slot_history(core, index) : NULL,
    };
    RC_ASSERT(chain_is_tail(core) ? out->window_count == 0 : out->window_count == rc_chain_window_count(f, self));
    core->slot_head = (core->slot_head + 1) % core->settings.out_batches_max;
    core->slot_count--;
    core->stats.batches_out++;
    return 1;
}

/* ---- for tests and the simulator's Byzantine replicas --------------------------------------------- */

int rc_chain_ordering_block(const rc_crypto *crypto, uint32_t f, uint32_t position, const rc_chain_batch *batch,
                            rc_crypto_mac *out) {
    if (crypto == NULL || batch == NULL || out == NULL || f == 0 || f > RC_CHAIN_F_MAX) return -EINVAL;
    if (batch->count == 0 || batch->requests == NULL || position >= rc_chain_nodes(f)) return -EINVAL;
    if (batch->count > 256) return -E2BIG;
    rc_crypto_digest digests[256];
    for (uint32_t k = 0; k < batch->count; k++) {
        const rc_chain_request *r = &batch->requests[k];
        int rc = chain_request_digest(crypto, r->client, r->timestamp, r->op, r->op_bytes, &digests[k]);
        if (rc < 0) return rc;
    }
    rc_crypto_digest batch_digest;
    rc_crypto_part part = {digests, (size_t)batch->count * sizeof(rc_crypto_digest)};
    int rc = crypto->digest(crypto->context, &part, 1, &batch_digest);
    if (rc < 0) return rc;
    uint8_t buffer[64];
    rc_crypto_part parts[2];
    uint32_t part_count = chain_parts_order(batch->instance, batch->sn_first, batch->count, &batch_digest, buffer, parts);
    uint32_t successors[RC_CHAIN_F_MAX + 1];
    uint32_t count = rc_chain_successors(f, position, successors, NULL);
    for (uint32_t k = 0; k < count; k++) {
        rc = crypto->mac(crypto->context, successors[k], parts, part_count, &out[k]);
        if (rc < 0) return rc;
    }
    return (int)count;
}
