/*
 * chain_init.c — entering a later Abstract instance (spec §12, [T§4.2.3] Z1+–P2+ applied to Chain): the abort
 * history of P3 (§11.4, D11) that clients extract and replicas recompute, the validation and installation of an
 * init history IH with its proof (the 2f+1 signed ABORTs of the previous instance), and FETCH of the request bodies
 * behind IH's digests ([T§4.4]: the state-transfer optimisation ships digests, not requests).
 *
 * Why the replica recomputes P3 instead of trusting IH: a Byzantine client (or head) could present any history with
 * a genuine proof. IH is a valid init history only if it is what P3 yields for that proof (§2.2 "VIH"), and Init
 * Order (§2.2.4) rests on every correct replica installing exactly that.
 */
#include "chain_internal.h"

#include <errno.h>

/* ---- P3 --------------------------------------------------------------------------------------------------- */

bool rc_chain_abort_well_formed(uint32_t f, uint32_t checkpoint_interval, const rc_chain_abort *a) {
    if (a == NULL || f == 0 || f > RC_CHAIN_F_MAX || checkpoint_interval == 0) return false;
    if (a->replica >= rc_chain_nodes(f) || a->entry_count > RC_CHAIN_HISTORY_MAX) return false;
    if (a->entry_count > 0 && a->entries == NULL) return false;
    if (a->checkpoint_number > UINT64_MAX / checkpoint_interval - RC_CHAIN_HISTORY_MAX - 1) return false;
    if (a->checkpoint_number == 0) {
        static const rc_crypto_digest zero;
        if (memcmp(&a->checkpoint_digest, &zero, sizeof zero) != 0) return false;
    }
    uint64_t first = a->checkpoint_number * checkpoint_interval + 1;
    for (uint32_t k = 0; k < a->entry_count; k++) {
        if (a->entries[k].sn != first + k) return false;
    }
    return true;
}

/* The entry `a` holds at absolute position `sn`, or NULL (a well-formed ABORT's entries are consecutive). */
static const rc_chain_abort_entry *entry_at(uint32_t chk, const rc_chain_abort *a, uint64_t sn) {
    uint64_t first = a->checkpoint_number * chk + 1;
    if (sn < first || sn - first >= a->entry_count) return NULL;
    return &a->entries[sn - first];
}

/* What `a` claims as the digest of checkpoint `number`: its stable checkpoint's, or its H at that boundary. */
static const rc_crypto_digest *claim_of(uint32_t chk, const rc_chain_abort *a, uint64_t number) {
    if (number == a->checkpoint_number) return &a->checkpoint_digest;
    if (number < a->checkpoint_number) return NULL;
    const rc_chain_abort_entry *e = entry_at(chk, a, number * chk);
    return e != NULL ? &e->history_digest : NULL;
}

static uint32_t votes_for(uint32_t chk, const rc_chain_abort *aborts, uint32_t count, uint64_t number,
                          const rc_crypto_digest *digest) {
    uint32_t votes = 0;
    for (uint32_t b = 0; b < count; b++) {
        const rc_crypto_digest *claim = claim_of(chk, &aborts[b], number);
        if (claim != NULL && memcmp(claim, digest, sizeof *digest) == 0) votes++;
    }
    return votes;
}

static bool same_value(const rc_chain_abort_entry *x, const rc_chain_abort_entry *y) {
    return x->client == y->client && x->timestamp == y->timestamp &&
           memcmp(&x->request_digest, &y->request_digest, sizeof x->request_digest) == 0;
}

size_t rc_chain_abort_history_scratch_size(uint32_t capacity) {
    return (size_t)chain_abort_history_table_size(capacity) * sizeof(uint32_t);
}

static uint32_t request_hash(uint32_t client, uint64_t timestamp) {
    uint64_t h = ((uint64_t)client << 32 ^ timestamp) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32);
}

long rc_chain_abort_history_extract(uint32_t f, uint32_t chk, const rc_chain_abort *aborts, uint32_t count,
                                    uint64_t *base_out, rc_crypto_digest *base_digest_out, rc_chain_abort_entry *out,
                                    uint32_t capacity, void *scratch, size_t scratch_bytes) {
    if (aborts == NULL || base_out == NULL || base_digest_out == NULL || (capacity > 0 && out == NULL)) return -EINVAL;
    if (f == 0 || f > RC_CHAIN_F_MAX || chk == 0 || count == 0 || capacity > RC_CHAIN_HISTORY_MAX) return -EINVAL;
    uint32_t table_size = chain_abort_history_table_size(capacity);
    if (scratch == NULL || scratch_bytes < (size_t)table_size * sizeof(uint32_t)) return -EINVAL;
    for (uint32_t a = 0; a < count; a++) {
        if (!rc_chain_abort_well_formed(f, chk, &aborts[a])) return -EINVAL;
    }
    /* D11: base is the highest checkpoint whose digest f+1 ABORTs vouch for (one digest at most per number: two
     * would need 2f+2 of 2f+1 votes); 0 with H_0 = 0^32 when none is. */
    uint64_t base = 0;
    rc_crypto_digest base_digest;
    memset(&base_digest, 0, sizeof base_digest);
    for (uint32_t a = 0; a < count; a++) {
        const rc_chain_abort *x = &aborts[a];
        if (x->checkpoint_number > base &&
            votes_for(chk, aborts, count, x->checkpoint_number, &x->checkpoint_digest) >= f + 1) {
            base = x->checkpoint_number;
            base_digest = x->checkpoint_digest;
        }
        for (uint32_t k = 0; k < x->entry_count; k++) {
            const rc_chain_abort_entry *e = &x->entries[k];
            if (e->sn % chk != 0 || e->sn / chk <= base) continue;
            if (votes_for(chk, aborts, count, e->sn / chk, &e->history_digest) >= f + 1) {
                base = e->sn / chk;
                base_digest = e->history_digest;
            }
        }
    }
    /* Per position, the value f+1 ABORTs hold (unique among 2f+1), until none; stop before a request seen twice
     * ([T] P3 truncates; [I] skips and goes on, which the spec rejects). */
    uint32_t *table = scratch;
    memset(table, 0, (size_t)table_size * sizeof(uint32_t));
    uint32_t written = 0;
    for (uint64_t sn = base * chk + 1;; sn++) {
        const rc_chain_abort_entry *chosen = NULL;
        for (uint32_t a = 0; a < count && chosen == NULL; a++) {
            const rc_chain_abort_entry *e = entry_at(chk, &aborts[a], sn);
            if (e == NULL) continue;
            uint32_t votes = 0;
            for (uint32_t b = 0; b < count; b++) {
                const rc_chain_abort_entry *other = entry_at(chk, &aborts[b], sn);
                if (other != NULL && same_value(e, other)) votes++;
            }
            if (votes >= f + 1) chosen = e;
        }
        if (chosen == NULL) break;
        uint32_t slot = request_hash(chosen->client, chosen->timestamp) & (table_size - 1);
        bool duplicate = false;
        while (table[slot] != 0) {
            const rc_chain_abort_entry *seen = &out[table[slot] - 1];
            if (seen->client == chosen->client && seen->timestamp == chosen->timestamp) {
                duplicate = true;
                break;
            }
            slot = (slot + 1) & (table_size - 1);
        }
        if (duplicate) break;
        if (written == capacity) return -ENOSPC;
        out[written] = *chosen;
        table[slot] = ++written;
    }
    *base_out = base;
    *base_digest_out = base_digest;
    return (long)written;
}

/* ---- validation and installation ---------------------------------------------------------------------------- */

static int refuse(rc_chain *core, rc_chain_init_error *why, rc_chain_init_error reason) {
    *why = reason;
    core->stats.inits_refused++;
    return -EPROTO;
}

static bool same_history(const rc_chain_abort *x, const rc_chain_abort *y);

/*
 * The checks every init-history proof gets, Chain's (2f+1 ABORTs) and Backup's (f+1 identical abort histories):
 * `count` records of distinct replicas, each well formed, all of one earlier instance that names this one as next(i);
 * with `identical`, each the same history as the first (checked per record, in this order). Signatures are checked
 * last (verify_proof_signatures): the cheap checks reject most forgeries without public-key operations.
 */
static rc_chain_init_error check_proof_records(rc_chain *core, const rc_chain_init_history *ih, uint32_t count,
                                               bool identical) {
    uint32_t f = core->settings.f, chk = core->settings.checkpoint_interval;
    if (ih->instance != core->settings.instance) return RC_CHAIN_INIT_ERROR_INSTANCE;
    if (ih->proof == NULL || ih->proof_count != count) return RC_CHAIN_INIT_ERROR_PROOF_SIZE;
    uint64_t signers = 0;
    for (uint32_t k = 0; k < ih->proof_count; k++) {
        const rc_chain_abort *a = &ih->proof[k];
        if (!rc_chain_abort_well_formed(f, chk, a) || a->entry_count > core->settings.history_max)
            return RC_CHAIN_INIT_ERROR_ABORT_SHAPE;
        if (signers >> a->replica & 1) return RC_CHAIN_INIT_ERROR_SIGNER;
        signers |= (uint64_t)1 << a->replica;
        if (a->instance != ih->proof[0].instance || a->instance >= core->settings.instance)
            return RC_CHAIN_INIT_ERROR_INSTANCE;
        if (a->next_instance != core->settings.instance) return RC_CHAIN_INIT_ERROR_NEXT;
        if (identical && !same_history(a, &ih->proof[0])) return RC_CHAIN_INIT_ERROR_MISMATCH;
    }
    return RC_CHAIN_INIT_ERROR_NONE;
}

static rc_chain_init_error verify_proof_signatures(rc_chain *core, const rc_chain_init_history *ih) {
    size_t capacity = rc_chain_abort_encoded_size(core->settings.history_max);
    for (uint32_t k = 0; k < ih->proof_count; k++) {
        core->stats.signature_verifications++;
        if (rc_chain_abort_verify(&core->settings.crypto, &ih->proof[k], core->abort_buffer, capacity) != 1)
            return RC_CHAIN_INIT_ERROR_SIGNATURE;
    }
    return RC_CHAIN_INIT_ERROR_NONE;
}

static rc_chain_init_error check_proof(rc_chain *core, const rc_chain_init_history *ih) {
    rc_chain_init_error error = check_proof_records(core, ih, 2 * core->settings.f + 1, false);
    return error != RC_CHAIN_INIT_ERROR_NONE ? error : verify_proof_signatures(core, ih);
}

static rc_chain_init_error check_history(rc_chain *core, const rc_chain_init_history *ih) {
    if (ih->entry_count > 0 && ih->entries == NULL) return RC_CHAIN_INIT_ERROR_MISMATCH;
    uint64_t base;
    rc_crypto_digest base_digest;
    /* The core is not stopped while WAITING, so abort_entries (history_max) is free to hold P3's result. */
    long count = rc_chain_abort_history_extract(
        core->settings.f, core->settings.checkpoint_interval, ih->proof, ih->proof_count, &base, &base_digest,
        core->abort_entries, core->settings.history_max, core->init_table, core->init_table_size * sizeof(uint32_t));
    if (count == -ENOSPC) return RC_CHAIN_INIT_ERROR_TOO_LONG;
    RC_ASSERT(count >= 0); /* the proof passed check_proof */
    if (base != ih->base || memcmp(&base_digest, &ih->base_digest, sizeof base_digest) != 0 ||
        (uint64_t)count != ih->entry_count)
        return RC_CHAIN_INIT_ERROR_MISMATCH;
    for (uint32_t k = 0; k < ih->entry_count; k++) {
        const rc_chain_abort_entry *mine = &core->abort_entries[k], *theirs = &ih->entries[k];
        if (mine->sn != theirs->sn || !same_value(mine, theirs)) return RC_CHAIN_INIT_ERROR_MISMATCH;
        /* f+1 vouched for it, so a correct replica logged it, and that replica checked the client id; a proof in
         * which f+1 replicas agree on an unknown client cannot come from this cluster. */
        if (theirs->client >= core->settings.clients_max) return RC_CHAIN_INIT_ERROR_ABORT_SHAPE;
    }
    return RC_CHAIN_INIT_ERROR_NONE;
}

/* Two Backup abort histories with the same content (everything but the signer and the signature). */
static bool same_history(const rc_chain_abort *x, const rc_chain_abort *y) {
    if (x->client != y->client || x->timestamp != y->timestamp || x->instance != y->instance ||
        x->next_instance != y->next_instance || x->checkpoint_number != y->checkpoint_number ||
        memcmp(&x->checkpoint_digest, &y->checkpoint_digest, sizeof x->checkpoint_digest) != 0 ||
        x->entry_count != y->entry_count)
        return false;
    for (uint32_t k = 0; k < x->entry_count; k++) {
        if (x->entries[k].sn != y->entries[k].sn || !same_value(&x->entries[k], &y->entries[k])) return false;
    }
    return true;
}

/*
 * The Backup proof (spec §13.1): f+1 identical signed abort histories of distinct replicas, so at least one comes
 * from a correct replica of the Backup, whose history is PBFT's total order: IH must be exactly that history. The
 * same checks as check_proof + check_history otherwise (shape, signers, instance numbers, next(i), signatures last).
 */
static rc_chain_init_error check_backup_proof(rc_chain *core, const rc_chain_init_history *ih) {
    rc_chain_init_error error = check_proof_records(core, ih, core->settings.f + 1, true);
    if (error != RC_CHAIN_INIT_ERROR_NONE) return error;
    const rc_chain_abort *h = &ih->proof[0];
    if (ih->entry_count != h->entry_count || ih->base != h->checkpoint_number ||
        memcmp(&ih->base_digest, &h->checkpoint_digest, sizeof ih->base_digest) != 0 ||
        (ih->entry_count > 0 && ih->entries == NULL))
        return RC_CHAIN_INIT_ERROR_MISMATCH;
    for (uint32_t k = 0; k < ih->entry_count; k++) {
        if (ih->entries[k].sn != h->entries[k].sn || !same_value(&ih->entries[k], &h->entries[k]))
            return RC_CHAIN_INIT_ERROR_MISMATCH;
        if (ih->entries[k].client >= core->settings.clients_max) return RC_CHAIN_INIT_ERROR_ABORT_SHAPE;
    }
    return verify_proof_signatures(core, ih);
}

int rc_chain_expect_backup_proof(rc_chain *core) {
    RC_ASSERT(core != NULL);
    if (core->init_state != RC_CHAIN_INIT_WAITING) return -EBUSY;
    core->init_from_backup = true;
    return 0;
}

/* LH := IH from the checkpoint base on (D9: positions continue), t_j[c] from IH, H recomputed over IH. */
static void install(rc_chain *core, const rc_chain_init_history *ih) {
    uint64_t first = ih->base * core->settings.checkpoint_interval + 1;
    RC_ASSERT(core->sn_last == 0 && chain_history_count(core) == 0);
    core->stable_number = ih->base;
    core->stable_digest = ih->base_digest;
    core->history_digest = ih->base_digest;
    core->sn_last = first - 1;
    core->history_first = first;
    core->exec_next = first;
    /* Votes taken while WAITING for checkpoints IH already covers are void. */
    for (uint32_t v = 0; v < core->vote_slots; v++) {
        if (core->votes[v].number <= ih->base) core->votes[v] = (chain_vote){0};
    }
    for (uint32_t k = 0; k < ih->entry_count; k++) {
        const rc_chain_abort_entry *e = &ih->entries[k];
        rc_chain_request request = {.client = e->client, .timestamp = e->timestamp, .ref = 0};
        uint64_t before = core->last_timestamp[e->client];
        int rc = chain_log(core, &request, &e->request_digest);
        RC_ASSERT(rc == 0); /* IH fits history_max and the send queue (check_history, sizing) */
        if (before > e->timestamp) core->last_timestamp[e->client] = before; /* t_j[c] := max in IH (§12) */
        chain_history_entry(core, core->sn_last)->missing = true;
    }
    /* Σlast replies to IH requests too (rc_chain_init_reply, in sn order), and keeps them until it has. */
    core->reply_next = first;
    core->init_first = first;
    core->init_last = core->sn_last;
    core->init_missing = ih->entry_count;
    core->fetch_cursor = first;
    core->fetch_round = 0;
    core->fetch_round_tick = core->ticks;
    core->init_state = ih->entry_count == 0 ? RC_CHAIN_INIT_DONE : RC_CHAIN_INIT_FETCHING;
}

int rc_chain_on_init(rc_chain *core, const rc_chain_init_history *ih, rc_chain_init_error *why) {
    RC_ASSERT(core != NULL);
    if (ih == NULL || why == NULL) return -EINVAL;
    *why = RC_CHAIN_INIT_ERROR_NONE;
    if (core->init_state != RC_CHAIN_INIT_WAITING) return 1;
    rc_chain_init_error error;
    if (core->init_from_backup) {
        error = check_backup_proof(core, ih); /* entry_count ≤ history_max: the proof's shape check bounds it */
    } else {
        error = check_proof(core, ih);
        if (error == RC_CHAIN_INIT_ERROR_NONE && ih->entry_count > core->settings.history_max)
            error = RC_CHAIN_INIT_ERROR_TOO_LONG;
        if (error == RC_CHAIN_INIT_ERROR_NONE) error = check_history(core, ih);
    }
    if (error != RC_CHAIN_INIT_ERROR_NONE) return refuse(core, why, error);
    /* Room for the checkpoint votes of every boundary inside IH (sends_max covers history_max / CHK + 1 of them). */
    RC_ASSERT(chain_checkpoint_room(core, ih->entry_count));
    install(core, ih);
    return 0;
}

int rc_chain_init_base_timestamps(rc_chain *core, const uint64_t *timestamps, uint32_t count) {
    RC_ASSERT(core != NULL);
    if ((timestamps == NULL && count > 0) || count > core->settings.clients_max) return -EINVAL;
    if (core->init_state == RC_CHAIN_INIT_WAITING || core->settings.instance == 1 || core->sn_last != core->init_last)
        return -EINVAL;
    for (uint32_t c = 0; c < count; c++) {
        if (timestamps[c] > core->last_timestamp[c]) core->last_timestamp[c] = timestamps[c];
    }
    return 0;
}

/* ---- FETCH ---------------------------------------------------------------------------------------------------- */

int rc_chain_on_fetched(rc_chain *core, uint64_t sn, const rc_chain_request *request) {
    RC_ASSERT(core != NULL);
    if (request == NULL || (request->op == NULL && request->op_bytes > 0)) return -EINVAL;
    if (core->init_state == RC_CHAIN_INIT_WAITING) return -EINVAL;
    if (sn < core->init_first || sn > core->init_last || sn < core->history_first) return -ERANGE;
    chain_entry *e = chain_history_entry(core, sn);
    if (!e->missing) return 1;
    rc_crypto_digest digest;
    int rc = chain_core_request_digest(core, request, &digest);
    if (rc < 0) return rc;
    /* D(req) covers c and t_c, so a match also proves the client and timestamp. */
    if (memcmp(&digest, &e->request_digest, sizeof digest) != 0 || request->client != e->client ||
        request->timestamp != e->timestamp) {
        core->stats.fetched_rejected++;
        return -EBADMSG;
    }
    e->missing = false;
    e->ref = request->ref;
    e->op_bytes = request->op_bytes;
    core->stats.fetched_accepted++;
    RC_ASSERT(core->init_missing > 0);
    if (--core->init_missing == 0) core->init_state = RC_CHAIN_INIT_DONE;
    return 0;
}

int rc_chain_next_fetch(rc_chain *core, rc_chain_fetch *out) {
    RC_ASSERT(core != NULL && out != NULL);
    if (core->init_state != RC_CHAIN_INIT_FETCHING) return 0;
    /* Entries before the cursor may have been executed, replied and collected since the round started. */
    if (core->fetch_cursor < core->history_first) core->fetch_cursor = core->history_first;
    while (core->fetch_cursor <= core->init_last) {
        uint64_t sn = core->fetch_cursor++;
        const chain_entry *e = chain_history_entry(core, sn);
        if (!e->missing) continue;
        /* Round r asks the r-th other replica (mod n-1), starting after self. */
        uint32_t n = core->nodes, self = core->settings.self;
        uint32_t to = (self + 1 + core->fetch_round % (n - 1)) % n;
        *out = (rc_chain_fetch){
            .instance = core->settings.instance, .from = self, .to = to, .sn = sn, .client = e->client,
            .timestamp = e->timestamp, .request_digest = e->request_digest,
        };
        core->stats.fetches_sent++;
        return 1;
    }
    return 0;
}

/* Called by rc_chain_on_tick: a new FETCH round once the period passed. */
void chain_init_on_tick(rc_chain *core) {
    if (core->init_state != RC_CHAIN_INIT_FETCHING) return;
    uint32_t period = core->settings.checkpoint_retransmit_ticks > 0 ? core->settings.checkpoint_retransmit_ticks : 1;
    if (core->ticks - core->fetch_round_tick < period) return;
    core->fetch_round++;
    core->fetch_round_tick = core->ticks;
    core->fetch_cursor = core->init_first > core->history_first ? core->init_first : core->history_first;
}

int rc_chain_init_reply(rc_chain *core, uint64_t sn, const uint8_t *reply, uint32_t reply_bytes, rc_crypto_mac *rho,
                        rc_crypto_digest *history) {
    RC_ASSERT(core != NULL);
    if (rho == NULL || history == NULL || (reply == NULL && reply_bytes > 0)) return -EINVAL;
    if (!chain_in_sigma_last(core) || core->init_state == RC_CHAIN_INIT_WAITING) return -EINVAL;
    if (sn < core->init_first || sn > core->init_last || sn != core->reply_next || sn >= core->exec_next) return -EINVAL;
    RC_ASSERT(sn >= core->history_first); /* kept until replied (chain_history_collect) */
    const chain_entry *e = chain_history_entry(core, sn);
    rc_crypto_digest reply_digest;
    rc_crypto_part part = {reply, reply_bytes};
    int rc = chain_digest(core, &part, 1, &reply_digest);
    if (rc < 0) return rc;
    uint8_t buffer[64];
    rc_crypto_part parts[4];
    uint32_t part_count = chain_parts_reply(core->settings.instance, sn, &e->request_digest, &reply_digest,
                                            &e->history_digest, buffer, parts);
    rc = chain_mac(core, RC_CRYPTO_CLIENT(e->client), parts, part_count, rho);
    if (rc < 0) return rc;
    *history = e->history_digest;
    core->reply_next++;
    chain_history_collect(core);
    return 0;
}

int rc_chain_cached_reply(rc_chain *core, uint32_t client, uint64_t sn, const rc_crypto_digest *request_digest,
                          const uint8_t *reply, uint32_t reply_bytes, const rc_crypto_digest *history, rc_crypto_mac *rho) {
    RC_ASSERT(core != NULL);
    if (request_digest == NULL || history == NULL || rho == NULL || (reply == NULL && reply_bytes > 0)) return -EINVAL;
    if (!chain_in_sigma_last(core) || client >= core->settings.clients_max || sn == 0) return -EINVAL;
    rc_crypto_digest reply_digest;
    rc_crypto_part part = {reply, reply_bytes};
    int rc = chain_digest(core, &part, 1, &reply_digest);
    if (rc < 0) return rc;
    uint8_t buffer[64];
    rc_crypto_part parts[4];
    uint32_t part_count = chain_parts_reply(core->settings.instance, sn, request_digest, &reply_digest, history, buffer, parts);
    return chain_mac(core, RC_CRYPTO_CLIENT(client), parts, part_count, rho);
}

int rc_chain_init_range(const rc_chain *core, uint64_t *first, uint64_t *last) {
    if (core->init_state == RC_CHAIN_INIT_WAITING || core->settings.instance == 1) {
        *first = 1;
        *last = 0;
        return core->settings.instance == 1 ? 1 : 0;
    }
    *first = core->init_first;
    *last = core->init_last;
    return 1;
}

rc_chain_init_state rc_chain_init_state_get(const rc_chain *core) { return core->init_state; }

uint32_t rc_chain_init_missing(const rc_chain *core) {
    return core->init_state == RC_CHAIN_INIT_FETCHING ? core->init_missing : 0;
}
