/*
 * chain_abort.c — P2 (spec §11.2–11.3): on a valid PANIC the replica stops and answers with a signed ABORT
 * holding its frozen history: the last stable checkpoint (number and digest) and the uncheckpointed suffix as
 * request digests (the state-transfer optimisation, [T§4.4]). The abort-history construction from 2f+1 ABORTs
 * (P3) is in chain_init.c: clients extract it, and replicas of the next instance recompute it to check an IH.
 */
#include "chain_internal.h"

#include <errno.h>

size_t rc_chain_abort_encoded_size(uint32_t entry_count) { return chain_abort_encoded_size(entry_count); }

long rc_chain_abort_encode(const rc_chain_abort *a, uint8_t *out, size_t capacity) {
    if (a == NULL || out == NULL || (a->entry_count > 0 && a->entries == NULL)) return -EINVAL;
    size_t size = rc_chain_abort_encoded_size(a->entry_count);
    if (capacity < size) return -ENOSPC;
    uint8_t *at = out;
    memcpy(at, chain_tag_abort, CHAIN_TAG_BYTES); at += CHAIN_TAG_BYTES;
    chain_put32(at, a->replica); at += 4;
    chain_put32(at, a->client); at += 4;
    chain_put64(at, a->timestamp); at += 8;
    chain_put64(at, a->instance); at += 8;
    chain_put64(at, a->next_instance); at += 8;
    chain_put64(at, a->checkpoint_number); at += 8;
    memcpy(at, a->checkpoint_digest.bytes, RC_CRYPTO_DIGEST_BYTES); at += RC_CRYPTO_DIGEST_BYTES;
    chain_put32(at, a->entry_count); at += 4;
    for (uint32_t k = 0; k < a->entry_count; k++) {
        const rc_chain_abort_entry *e = &a->entries[k];
        chain_put64(at, e->sn); at += 8;
        chain_put32(at, e->client); at += 4;
        chain_put64(at, e->timestamp); at += 8;
        memcpy(at, e->request_digest.bytes, RC_CRYPTO_DIGEST_BYTES); at += RC_CRYPTO_DIGEST_BYTES;
        memcpy(at, e->history_digest.bytes, RC_CRYPTO_DIGEST_BYTES); at += RC_CRYPTO_DIGEST_BYTES;
    }
    RC_ASSERT((size_t)(at - out) == size);
    return (long)size;
}

int rc_chain_abort_verify(const rc_crypto *crypto, const rc_chain_abort *a, uint8_t *scratch, size_t capacity) {
    long size = rc_chain_abort_encode(a, scratch, capacity);
    if (size < 0) return (int)size;
    int rc = crypto->sign_verify(crypto->context, a->replica, scratch, (size_t)size, &a->signature);
    return rc == 1 ? 1 : 0;
}

/* The ABORT over the frozen history: the last stable checkpoint and every entry after it, signed. */
static int abort_build(rc_chain *core, uint32_t client, uint64_t timestamp, rc_chain_abort *abort) {
    RC_ASSERT(core->mode == RC_CHAIN_STOPPED);
    uint64_t first = core->stable_number * core->settings.checkpoint_interval + 1;
    RC_ASSERT(core->history_first <= first);
    uint32_t count = 0;
    for (uint64_t sn = first; sn <= core->sn_last; sn++) {
        const chain_entry *e = chain_history_entry(core, sn);
        core->abort_entries[count++] = (rc_chain_abort_entry){
            .sn = sn, .client = e->client, .timestamp = e->timestamp, .request_digest = e->request_digest,
            .history_digest = e->history_digest,
        };
    }
    *abort = (rc_chain_abort){
        .replica = core->settings.self, .client = client, .timestamp = timestamp,
        .instance = core->settings.instance, .next_instance = core->settings.instance + 1,
        .checkpoint_number = core->stable_number, .checkpoint_digest = core->stable_digest,
        .entry_count = count, .entries = core->abort_entries,
    };
    long size = rc_chain_abort_encode(abort, core->abort_buffer, rc_chain_abort_encoded_size(core->settings.history_max));
    RC_ASSERT(size > 0);
    core->stats.signatures++;
    int rc = core->settings.crypto.sign(core->settings.crypto.context, core->abort_buffer, (size_t)size, &abort->signature);
    if (rc < 0) return -EIO;
    core->stats.aborts_signed++;
    return 0;
}

int rc_chain_on_panic(rc_chain *core, const rc_chain_panic *panic, rc_chain_abort *abort) {
    RC_ASSERT(core != NULL);
    if (panic == NULL || abort == NULL || panic->client >= core->settings.clients_max ||
        panic->replica != core->settings.self)
        return -EINVAL;
    if (panic->instance != core->settings.instance) return -EPROTO;
    if (core->init_state == RC_CHAIN_INIT_WAITING) return -ENOTCONN; /* P2+: the IH goes in before the ABORT */
    uint8_t buffer[64];
    rc_crypto_part parts[1];
    uint32_t part_count = chain_parts_panic(panic->instance, panic->client, panic->timestamp, buffer, parts);
    if (!chain_mac_verify(core, RC_CRYPTO_CLIENT(panic->client), parts, part_count, &panic->mac)) {
        core->stats.panics_bad_mac++;
        return -EBADMSG;
    }
    /* P2 step 2: no C2/C3 from now on; the history is frozen (chain_history_collect keeps it). */
    chain_stop(core, RC_CHAIN_STOP_PANIC);
    return abort_build(core, panic->client, panic->timestamp, abort);
}

int rc_chain_stopped_abort(rc_chain *core, uint32_t client, uint64_t timestamp, rc_chain_abort *abort) {
    RC_ASSERT(core != NULL);
    if (abort == NULL || client >= core->settings.clients_max) return -EINVAL;
    if (core->mode != RC_CHAIN_STOPPED) return -EBUSY;
    RC_ASSERT(core->init_state != RC_CHAIN_INIT_WAITING); /* only a PANIC or a batch stops, and both need IH */
    return abort_build(core, client, timestamp, abort);
}

void rc_chain_leave(rc_chain *core) {
    RC_ASSERT(core != NULL);
    /* A replica still WAITING never ordered here: stopping it would freeze no history (and its ABORT would claim an
     * empty one without an IH), so it just stays out of the instance. */
    if (core->init_state == RC_CHAIN_INIT_WAITING) return;
    chain_stop(core, RC_CHAIN_STOP_LEFT);
}
