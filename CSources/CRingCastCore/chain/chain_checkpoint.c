/*
 * chain_checkpoint.c — the lightweight checkpoint subprotocol (spec §14, [T§4.2.4]): every CHK logged requests
 * a replica sends ⟨CHECKPOINT, cc, digest⟩ to every replica with point-to-point MACs; the checkpoint is stable
 * when all 3f+1 agree (D12), and LH is then truncated (garbage collection, bounded memory).
 */
#include "chain_internal.h"

#include <errno.h>

static chain_vote *vote_for(const rc_chain *core, uint64_t number) {
    return &core->votes[number % core->vote_slots];
}

static rc_crypto_digest *vote_digest(const rc_chain *core, uint64_t number, uint32_t replica) {
    return &core->vote_digests[(size_t)(number % core->vote_slots) * core->nodes + replica];
}

/* Takes a vote slot for `number`; a slot still holding an unstable other number would mean the window is too
 * small, which the range checks exclude. */
static chain_vote *vote_claim(rc_chain *core, uint64_t number) {
    chain_vote *vote = vote_for(core, number);
    if (vote->number != number) {
        RC_ASSERT(vote->number <= core->stable_number);
        *vote = (chain_vote){.number = number};
    }
    return vote;
}

static void queue_send_digest(rc_chain *core, uint64_t number, uint32_t to, const rc_crypto_digest *digest,
                              uint32_t kind) {
    RC_ASSERT(core->send_count < core->sends_max);
    core->sends[(core->send_head + core->send_count) % core->sends_max] =
        (chain_send){.number = number, .to = to, .digest = *digest, .kind = kind};
    core->send_count++;
}

static void queue_send(rc_chain *core, uint64_t number, uint32_t to, uint32_t kind) {
    queue_send_digest(core, number, to, vote_digest(core, number, core->settings.self), kind);
}

static void try_stable(rc_chain *core, uint64_t number) {
    chain_vote *vote = vote_for(core, number);
    uint64_t all = core->nodes == 64 ? UINT64_MAX : ((uint64_t)1 << core->nodes) - 1;
    if (vote->number != number || !vote->own || vote->have != all || number <= core->stable_number) return;
    const rc_crypto_digest *own = vote_digest(core, number, core->settings.self);
    for (uint32_t k = 0; k < core->nodes; k++) {
        if (memcmp(vote_digest(core, number, k), own, sizeof *own) != 0) return;
    }
    core->stable_number = number;
    core->stable_digest = *own;
    core->stats.checkpoints_stable++;
    for (uint32_t v = 0; v < core->vote_slots; v++) {
        if (core->votes[v].number <= number) core->votes[v] = (chain_vote){0};
    }
    chain_history_collect(core);
}

/* Answers and retransmissions only use the queue beyond what votes may need: a burst of them (every replica
 * retransmitting at once) must never make rc_chain_on_batch refuse for want of room for its own votes, or a replica
 * could be kept from logging the very boundary the others wait for. */
static bool optional_room(const rc_chain *core) {
    uint32_t reserve = (core->settings.batch_count_max / core->settings.checkpoint_interval + 1) * (core->nodes - 1);
    return core->send_count + reserve < core->sends_max / 2;
}

bool chain_checkpoint_room(const rc_chain *core, uint32_t count) {
    uint64_t closes = count / core->settings.checkpoint_interval + 1;
    return core->sends_max - core->send_count >= closes * (core->nodes - 1);
}

/* Called after H was extended to sn: records our checkpoint when sn closes one. */
static void on_logged(rc_chain *core, uint64_t sn) {
    if (sn % core->settings.checkpoint_interval != 0) return;
    uint64_t number = sn / core->settings.checkpoint_interval;
    RC_ASSERT(number > core->stable_number && number - core->stable_number <= core->vote_slots);
    chain_vote *vote = vote_claim(core, number);
    *vote_digest(core, number, core->settings.self) = core->history_digest;
    vote->have |= (uint64_t)1 << core->settings.self;
    vote->own = true;
    vote->sent_tick = core->ticks;
    for (uint32_t k = 0; k < core->nodes; k++) {
        if (k != core->settings.self) queue_send(core, number, k, RC_CHAIN_CHECKPOINT_VOTE);
    }
    try_stable(core, number);
}

int chain_log(rc_chain *core, const rc_chain_request *request, const rc_crypto_digest *digest) {
    int rc = chain_history_append(core, request, digest);
    if (rc < 0) return rc;
    on_logged(core, core->sn_last);
    return 0;
}

int rc_chain_next_checkpoint(rc_chain *core, rc_chain_checkpoint *out) {
    RC_ASSERT(core != NULL && out != NULL);
    while (core->send_count > 0) {
        chain_send send = core->sends[core->send_head];
        core->send_head = (core->send_head + 1) % core->sends_max;
        core->send_count--;
        *out = (rc_chain_checkpoint){
            .instance = core->settings.instance, .from = core->settings.self, .to = send.to, .number = send.number,
            .digest = send.digest, .kind = send.kind,
        };
        uint8_t buffer[64];
        rc_crypto_part parts[2];
        uint32_t part_count = chain_parts_checkpoint(out->instance, out->number, &out->digest, buffer, parts);
        if (chain_mac(core, send.to, parts, part_count, &out->mac) < 0) continue;
        core->stats.checkpoints_sent++;
        return 1;
    }
    return 0;
}

/* A RETRANSMISSION means the sender lacks our vote: send it (when the queue has room; the next one asks again). */
static void answer(rc_chain *core, const rc_chain_checkpoint *c, uint64_t number, const rc_crypto_digest *digest) {
    if (c->kind != RC_CHAIN_CHECKPOINT_RETRANSMISSION || number == 0 || !optional_room(core)) return;
    queue_send_digest(core, number, c->from, digest, RC_CHAIN_CHECKPOINT_ANSWER);
}

int rc_chain_on_checkpoint(rc_chain *core, const rc_chain_checkpoint *c) {
    RC_ASSERT(core != NULL);
    if (c == NULL || c->to != core->settings.self || c->from >= core->nodes || c->from == core->settings.self) return -EINVAL;
    if (c->instance != core->settings.instance) return -EPROTO;
    uint8_t buffer[64];
    rc_crypto_part parts[2];
    uint32_t part_count = chain_parts_checkpoint(c->instance, c->number, &c->digest, buffer, parts);
    if (!chain_mac_verify(core, c->from, parts, part_count, &c->mac)) {
        core->stats.checkpoints_bad_mac++;
        return -EBADMSG;
    }
    if (c->number <= core->stable_number) {
        answer(core, c, core->stable_number, &core->stable_digest);
        return 1;
    }
    if (c->number - core->stable_number > core->vote_slots) {
        core->stats.checkpoints_out_of_window++;
        return -ERANGE;
    }
    chain_vote *vote = vote_claim(core, c->number);
    uint64_t bit = (uint64_t)1 << c->from;
    if (vote->own) answer(core, c, c->number, vote_digest(core, c->number, core->settings.self));
    if (vote->have & bit) {
        /* A second, different claim for the same cc from one replica: keep the first. */
        if (memcmp(vote_digest(core, c->number, c->from), &c->digest, sizeof c->digest) != 0) {
            core->stats.checkpoints_conflicting++;
        }
        return 0;
    }
    *vote_digest(core, c->number, c->from) = c->digest;
    vote->have |= bit;
    if (vote->own && memcmp(vote_digest(core, c->number, core->settings.self), &c->digest, sizeof c->digest) != 0) {
        core->stats.checkpoints_conflicting++;
    }
    try_stable(core, c->number);
    return 0;
}

void chain_checkpoint_on_tick(rc_chain *core) {
    uint32_t period = core->settings.checkpoint_retransmit_ticks;
    if (period == 0) return;
    for (uint32_t v = 0; v < core->vote_slots; v++) {
        chain_vote *vote = &core->votes[v];
        if (!vote->own || vote->number <= core->stable_number || core->ticks - vote->sent_tick < period) continue;
        const rc_crypto_digest *own = vote_digest(core, vote->number, core->settings.self);
        for (uint32_t k = 0; k < core->nodes; k++) {
            bool agreed = (vote->have >> k & 1) && memcmp(vote_digest(core, vote->number, k), own, sizeof *own) == 0;
            if (k == core->settings.self || agreed || !optional_room(core)) continue;
            queue_send(core, vote->number, k, RC_CHAIN_CHECKPOINT_RETRANSMISSION);
        }
        vote->sent_tick = core->ticks;
    }
}
