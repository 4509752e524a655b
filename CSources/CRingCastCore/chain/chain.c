/*
 * chain.c — the Chain core's set-up, the chain's shape (spec §5.1), the counted calls to the crypto provider
 * and the MAC inputs (spec §5.2, D1).
 */
#include "chain_internal.h"

#include <errno.h>

const uint8_t chain_tag_request[CHAIN_TAG_BYTES] = {'R', 'C', 'C', 'H', '-', 'R', 'E', 'Q'};
const uint8_t chain_tag_client[CHAIN_TAG_BYTES] = {'R', 'C', 'C', 'H', '-', 'C', 'L', 'I'};
const uint8_t chain_tag_order[CHAIN_TAG_BYTES] = {'R', 'C', 'C', 'H', '-', 'O', 'R', 'D'};
const uint8_t chain_tag_reply[CHAIN_TAG_BYTES] = {'R', 'C', 'C', 'H', '-', 'R', 'E', 'P'};
const uint8_t chain_tag_checkpoint[CHAIN_TAG_BYTES] = {'R', 'C', 'C', 'H', '-', 'C', 'K', 'P'};
const uint8_t chain_tag_panic[CHAIN_TAG_BYTES] = {'R', 'C', 'C', 'H', '-', 'P', 'A', 'N'};
const uint8_t chain_tag_abort[CHAIN_TAG_BYTES] = {'R', 'C', 'C', 'H', '-', 'A', 'B', 'T'};

/* ---- shape (spec §5.1, 0-indexed: head 0, tail 3f, Σlast 2f … 3f) ------------------------------- */

uint32_t rc_chain_successors(uint32_t f, uint32_t position, uint32_t *out, bool *client) {
    uint32_t n = rc_chain_nodes(f), count = 0;
    RC_ASSERT(position < n);
    uint32_t last = position + f + 1 < n - 1 ? position + f + 1 : n - 1;
    for (uint32_t q = position + 1; q <= last; q++) out[count++] = q;
    if (client != NULL) *client = position >= 2 * f;
    RC_ASSERT(count <= f + 1);
    return count;
}

uint32_t rc_chain_predecessors(uint32_t f, uint32_t position, uint32_t *out, bool *client) {
    uint32_t n = rc_chain_nodes(f), count = 0;
    RC_ASSERT(position < n);
    uint32_t first = position > f + 1 ? position - f - 1 : 0;
    for (uint32_t p = first; p < position; p++) out[count++] = p;
    if (client != NULL) *client = position <= f;
    RC_ASSERT(count <= f + 1);
    return count;
}

uint32_t rc_chain_window_count(uint32_t f, uint32_t position) {
    uint32_t n = rc_chain_nodes(f), count = 0;
    RC_ASSERT(position + 1 < n);
    uint32_t first = position > f ? position - f : 0;
    for (uint32_t s = first; s <= position; s++) {
        uint32_t last = s + f + 1 < n - 1 ? s + f + 1 : n - 1;
        count += last - position; /* s's MACs still addressed beyond `position` */
    }
    RC_ASSERT(count <= (f + 1) * (f + 2) / 2);
    return count;
}

uint32_t rc_chain_client_macs_count(uint32_t f, uint32_t position) {
    if (position == UINT32_MAX) return f + 1;
    return position < f ? f - position : 0;
}

uint32_t rc_chain_reply_macs_count(uint32_t f, uint32_t position) {
    return position >= 2 * f ? position - 2 * f + 1 : 0;
}

/* ---- memory layout -------------------------------------------------------------------------- */

typedef struct chain_layout {
    size_t last_timestamp, history, slots, slot_requests, slot_window, slot_client_macs, slot_reply_macs;
    size_t slot_history, votes, vote_digests, sends, scratch_digests, scratch_timestamps, abort_entries, abort_buffer, total;
} chain_layout;

static size_t align16(size_t size) { return (size + 15u) & ~(size_t)15u; }

static bool settings_valid(const rc_chain_settings *s) {
    const rc_crypto *c = &s->crypto;
    return s->f >= 1 && s->f <= RC_CHAIN_F_MAX && s->self < rc_chain_nodes(s->f) && s->instance >= 1 &&
           s->clients_max >= 1 && s->clients_max <= RC_CHAIN_CLIENTS_MAX &&
           rc_batch_limits_valid(chain_batch_limits(s)) &&
           s->checkpoint_interval >= 1 && s->history_max <= RC_CHAIN_HISTORY_MAX &&
           (uint64_t)s->history_max >= (uint64_t)s->checkpoint_interval + s->batch_count_max &&
           s->out_batches_max >= 2 && s->out_batches_max <= RC_CHAIN_OUT_BATCHES_MAX &&
           c->mac != NULL && c->mac_verify != NULL && c->digest != NULL && c->sign != NULL && c->sign_verify != NULL;
}

/* A correct replica's checkpoint number is at most (our sn + history_max)/CHK and ours at least
 * (our sn - history_max)/CHK (rc_chain.h's sizing), so votes span 2·history_max/CHK + 2 numbers. */
static uint32_t vote_slots_of(const rc_chain_settings *s) {
    return 2 * (s->history_max / s->checkpoint_interval) + 2;
}

static chain_layout layout_of(const rc_chain_settings *s) {
    chain_layout l;
    size_t n = rc_chain_nodes(s->f), slots = s->out_batches_max, b = s->batch_count_max;
    size_t window = (size_t)(s->f + 1) * (s->f + 2) / 2, votes = vote_slots_of(s);
    size_t at = align16(sizeof(rc_chain));
    l.last_timestamp = at;    at += align16((size_t)s->clients_max * sizeof(uint64_t));
    l.history = at;           at += align16((size_t)s->history_max * sizeof(chain_entry));
    l.slots = at;             at += align16(slots * sizeof(chain_slot));
    l.slot_requests = at;     at += align16(slots * b * sizeof(rc_chain_request));
    l.slot_window = at;       at += align16(slots * window * sizeof(rc_crypto_mac));
    l.slot_client_macs = at;  at += align16(slots * b * s->f * sizeof(rc_crypto_mac));
    l.slot_reply_macs = at;   at += align16(slots * b * (s->f + 1) * sizeof(rc_crypto_mac));
    l.slot_history = at;      at += align16(slots * b * sizeof(rc_crypto_digest));
    l.votes = at;             at += align16(votes * sizeof(chain_vote));
    l.vote_digests = at;      at += align16(votes * n * sizeof(rc_crypto_digest));
    l.sends = at;             at += align16(2 * votes * n * sizeof(chain_send));
    l.scratch_digests = at;   at += align16(b * sizeof(rc_crypto_digest));
    l.scratch_timestamps = at; at += align16(b * sizeof(uint64_t));
    l.abort_entries = at;     at += align16((size_t)s->history_max * sizeof(rc_chain_abort_entry));
    l.abort_buffer = at;      at += align16(rc_chain_abort_encoded_size(s->history_max));
    l.total = at;
    return l;
}

size_t rc_chain_memory_size(const rc_chain_settings *settings) {
    if (settings == NULL || !settings_valid(settings)) return 0;
    return layout_of(settings).total;
}

int rc_chain_init(rc_chain **out, void *memory, size_t size, const rc_chain_settings *settings) {
    if (out == NULL || memory == NULL || settings == NULL || !settings_valid(settings)) return -EINVAL;
    if (((uintptr_t)memory & 15u) != 0) return -EINVAL;
    chain_layout l = layout_of(settings);
    if (size < l.total) return -EINVAL;
    memset(memory, 0, l.total);
    uint8_t *base = memory;
    rc_chain *core = memory;
    core->settings = *settings;
    core->nodes = rc_chain_nodes(settings->f);
    core->vote_slots = vote_slots_of(settings);
    core->sends_max = 2 * core->vote_slots * core->nodes; /* votes, and as much again for answers and retransmissions */
    core->window_max = (settings->f + 1) * (settings->f + 2) / 2;
    core->last_timestamp = (uint64_t *)(base + l.last_timestamp);
    core->history = (chain_entry *)(base + l.history);
    core->slots = (chain_slot *)(base + l.slots);
    core->slot_requests = (rc_chain_request *)(base + l.slot_requests);
    core->slot_window = (rc_crypto_mac *)(base + l.slot_window);
    core->slot_client_macs = (rc_crypto_mac *)(base + l.slot_client_macs);
    core->slot_reply_macs = (rc_crypto_mac *)(base + l.slot_reply_macs);
    core->slot_history = (rc_crypto_digest *)(base + l.slot_history);
    core->votes = (chain_vote *)(base + l.votes);
    core->vote_digests = (rc_crypto_digest *)(base + l.vote_digests);
    core->sends = (chain_send *)(base + l.sends);
    core->scratch_digests = (rc_crypto_digest *)(base + l.scratch_digests);
    core->scratch_timestamps = (uint64_t *)(base + l.scratch_timestamps);
    core->abort_entries = (rc_chain_abort_entry *)(base + l.abort_entries);
    core->abort_buffer = base + l.abort_buffer;
    core->history_first = 1;
    core->exec_next = 1;
    core->reply_next = 1;
    core->mode = RC_CHAIN_NORMAL;
    RC_ASSERT(chain_history_count(core) == 0);
    *out = core;
    return 0;
}

/* ---- the provider, counted --------------------------------------------------------------------- */

int chain_mac(rc_chain *core, uint32_t peer, const rc_crypto_part *parts, uint32_t count, rc_crypto_mac *tag) {
    core->stats.mac_generations++;
    return core->settings.crypto.mac(core->settings.crypto.context, peer, parts, count, tag);
}

int chain_mac_verify(rc_chain *core, uint32_t peer, const rc_crypto_part *parts, uint32_t count,
                     const rc_crypto_mac *tag) {
    core->stats.mac_verifications++;
    int rc = core->settings.crypto.mac_verify(core->settings.crypto.context, peer, parts, count, tag);
    return rc == 1 ? 1 : 0;
}

int chain_digest(rc_chain *core, const rc_crypto_part *parts, uint32_t count, rc_crypto_digest *out) {
    core->stats.digests++;
    return core->settings.crypto.digest(core->settings.crypto.context, parts, count, out);
}

int chain_core_request_digest(rc_chain *core, const rc_chain_request *request, rc_crypto_digest *out) {
    core->stats.digests++;
    return chain_request_digest(&core->settings.crypto, request->client, request->timestamp, request->op,
                                request->op_bytes, out);
}

/* ---- MAC inputs (rc_chain.h) ------------------------------------------------------------------- */

int chain_request_digest(const rc_crypto *crypto, uint32_t client, uint64_t timestamp, const uint8_t *op,
                         uint32_t op_bytes, rc_crypto_digest *out) {
    uint8_t header[CHAIN_TAG_BYTES + 12];
    memcpy(header, chain_tag_request, CHAIN_TAG_BYTES);
    chain_put32(header + 8, client);
    chain_put64(header + 12, timestamp);
    rc_crypto_part parts[2] = {{header, sizeof header}, {op, op_bytes}};
    return crypto->digest(crypto->context, parts, 2, out);
}

int rc_chain_request_digest(const rc_crypto *crypto, uint32_t client, uint64_t timestamp, const uint8_t *op,
                            uint32_t op_bytes, rc_crypto_digest *out) {
    return chain_request_digest(crypto, client, timestamp, op, op_bytes, out);
}

uint32_t chain_parts_client(uint64_t instance, const rc_crypto_digest *request, uint8_t *buffer,
                            rc_crypto_part *parts) {
    memcpy(buffer, chain_tag_client, CHAIN_TAG_BYTES);
    chain_put64(buffer + 8, instance);
    parts[0] = (rc_crypto_part){buffer, 16};
    parts[1] = (rc_crypto_part){request->bytes, RC_CRYPTO_DIGEST_BYTES};
    return 2;
}

uint32_t chain_parts_reply(uint64_t instance, uint64_t sn, const rc_crypto_digest *request,
                           const rc_crypto_digest *reply, const rc_crypto_digest *history, uint8_t *buffer,
                           rc_crypto_part *parts) {
    memcpy(buffer, chain_tag_reply, CHAIN_TAG_BYTES);
    chain_put64(buffer + 8, instance);
    chain_put64(buffer + 16, sn);
    parts[0] = (rc_crypto_part){buffer, 24};
    parts[1] = (rc_crypto_part){request->bytes, RC_CRYPTO_DIGEST_BYTES};
    parts[2] = (rc_crypto_part){reply->bytes, RC_CRYPTO_DIGEST_BYTES};
    parts[3] = (rc_crypto_part){history->bytes, RC_CRYPTO_DIGEST_BYTES};
    return 4;
}

uint32_t chain_parts_order(uint64_t instance, uint64_t sn_first, uint32_t count, const rc_crypto_digest *batch,
                           uint8_t *buffer, rc_crypto_part *parts) {
    memcpy(buffer, chain_tag_order, CHAIN_TAG_BYTES);
    chain_put64(buffer + 8, instance);
    chain_put64(buffer + 16, sn_first);
    chain_put32(buffer + 24, count);
    parts[0] = (rc_crypto_part){buffer, 28};
    parts[1] = (rc_crypto_part){batch->bytes, RC_CRYPTO_DIGEST_BYTES};
    return 2;
}

uint32_t chain_parts_checkpoint(uint64_t instance, uint64_t number, const rc_crypto_digest *digest,
                                uint8_t *buffer, rc_crypto_part *parts) {
    memcpy(buffer, chain_tag_checkpoint, CHAIN_TAG_BYTES);
    chain_put64(buffer + 8, instance);
    chain_put64(buffer + 16, number);
    parts[0] = (rc_crypto_part){buffer, 24};
    parts[1] = (rc_crypto_part){digest->bytes, RC_CRYPTO_DIGEST_BYTES};
    return 2;
}

uint32_t chain_parts_panic(uint64_t instance, uint32_t client, uint64_t timestamp, uint8_t *buffer,
                           rc_crypto_part *parts) {
    memcpy(buffer, chain_tag_panic, CHAIN_TAG_BYTES);
    chain_put64(buffer + 8, instance);
    chain_put32(buffer + 16, client);
    chain_put64(buffer + 20, timestamp);
    parts[0] = (rc_crypto_part){buffer, 28};
    return 1;
}

/* ---- mode and accessors ------------------------------------------------------------------------- */

void chain_stop(rc_chain *core, rc_chain_stop_reason reason) {
    RC_ASSERT(reason != RC_CHAIN_STOP_NONE);
    if (core->mode == RC_CHAIN_STOPPED) return;
    core->mode = RC_CHAIN_STOPPED;
    core->stop_reason = reason;
}

rc_chain_mode rc_chain_mode_get(const rc_chain *core) { return core->mode; }
rc_chain_stop_reason rc_chain_stop_reason_get(const rc_chain *core) { return core->stop_reason; }
rc_chain_stats rc_chain_stats_get(const rc_chain *core) { return core->stats; }
bool rc_chain_in_sigma_last(const rc_chain *core) { return chain_in_sigma_last(core); }
uint64_t rc_chain_last_sn(const rc_chain *core) { return core->sn_last; }
uint64_t rc_chain_stable_checkpoint(const rc_chain *core) { return core->stable_number; }
uint32_t rc_chain_history_count(const rc_chain *core) { return chain_history_count(core); }

int rc_chain_history_at(const rc_chain *core, uint64_t sn, rc_chain_history_view *out) {
    if (sn < core->history_first || sn > core->sn_last) return -ERANGE;
    const chain_entry *e = chain_history_entry(core, sn);
    *out = (rc_chain_history_view){
        .sn = e->sn, .client = e->client, .timestamp = e->timestamp, .ref = e->ref,
        .request_digest = e->request_digest, .history_digest = e->history_digest,
    };
    return 0;
}
