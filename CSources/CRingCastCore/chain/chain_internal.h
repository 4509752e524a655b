/*
 * chain_internal.h — the Chain core's state, shared by chain*.c only (not visible to Swift).
 *
 * Everything lives in one caller-provided block laid out by chain_layout (chain.c): no allocation after init.
 */
#ifndef RINGCAST_CHAIN_INTERNAL_H
#define RINGCAST_CHAIN_INTERNAL_H

#include "rc_chain.h"

#include <string.h>

/* Domain-separation tags: each MAC and digest says what it is, so no value can be replayed as another
 * kind (spec §5.2 gives the contents; the tags are ours). */
#define CHAIN_TAG_BYTES 8u
extern const uint8_t chain_tag_request[CHAIN_TAG_BYTES];
extern const uint8_t chain_tag_client[CHAIN_TAG_BYTES];
extern const uint8_t chain_tag_order[CHAIN_TAG_BYTES];
extern const uint8_t chain_tag_reply[CHAIN_TAG_BYTES];
extern const uint8_t chain_tag_checkpoint[CHAIN_TAG_BYTES];
extern const uint8_t chain_tag_panic[CHAIN_TAG_BYTES];
extern const uint8_t chain_tag_abort[CHAIN_TAG_BYTES];

/* One logged request of LH (spec §6): its digest, the history digest after it, and the caller's handle. */
typedef struct chain_entry {
    uint64_t sn;
    uint64_t timestamp;
    rc_ref ref;
    uint32_t client;
    uint32_t op_bytes;
    bool missing;                    /* an init-history entry whose body the caller has not supplied yet (§12) */
    rc_crypto_digest request_digest; /* D(req) */
    rc_crypto_digest history_digest; /* H_sn */
} chain_entry;

/* A batch being built or waiting for rc_chain_next_batch. Its arrays live in the slot's share of the pools. */
typedef struct chain_slot {
    uint64_t sn_first;
    uint32_t count;
    uint32_t op_bytes;          /* head: bytes in the open batch */
    uint32_t replies_missing;   /* Σlast: ρ still to compute before the batch may leave */
    uint32_t window_count;
    bool ready;
} chain_slot;

/* Votes for one checkpoint number (spec §14): our digest and every other replica's. */
typedef struct chain_vote {
    uint64_t number;            /* cc held by this slot; 0 = free */
    uint64_t sent_tick;         /* when our CHECKPOINTs were (re)queued */
    uint64_t have;              /* bit k: replica k's digest is in digests[k] (ours included) */
    bool own;
} chain_vote;

/* A queued CHECKPOINT carries its digest: it must still leave after the checkpoint became stable here (the
 * others need our vote), when its vote slot is already released. */
typedef struct chain_send {
    uint64_t number;
    uint32_t to;
    rc_crypto_digest digest;
    uint32_t kind;
} chain_send;

struct rc_chain {
    rc_chain_settings settings;
    uint32_t nodes;
    uint32_t vote_slots;
    uint32_t sends_max;
    rc_chain_mode mode;
    rc_chain_stop_reason stop_reason;
    uint64_t ticks;

    uint64_t *last_timestamp;          /* t_j[c] per client */

    chain_entry *history;              /* ring of history_max: sn history_first … sn_last */
    uint64_t history_first;            /* sn of the oldest kept entry (sn_last + 1 when empty) */
    uint64_t sn_last;                  /* sn_j */
    rc_crypto_digest history_digest;   /* H_{sn_last} */
    uint64_t exec_next;                /* next sn for rc_chain_next_executions */
    uint64_t reply_next;               /* Σlast: next sn whose reply is expected */

    chain_slot *slots;                 /* ring of out_batches_max */
    uint32_t slot_head;
    uint32_t slot_count;               /* including the head's open batch */
    uint32_t window_max;               /* MAC capacity per slot window */
    rc_chain_request *slot_requests;   /* out_batches_max × batch_count_max */
    rc_crypto_mac *slot_window;        /* out_batches_max × window_max */
    rc_crypto_mac *slot_client_macs;   /* out_batches_max × batch_count_max × f */
    rc_crypto_mac *slot_reply_macs;    /* out_batches_max × batch_count_max × (f+1) */
    rc_crypto_digest *slot_history;    /* out_batches_max × batch_count_max (the tail's LHDigests) */

    chain_vote *votes;                 /* vote_slots, indexed by cc mod vote_slots */
    rc_crypto_digest *vote_digests;    /* vote_slots × nodes */
    uint64_t stable_number;            /* last_cc */
    rc_crypto_digest stable_digest;    /* H at last_cc·CHK */
    chain_send *sends;                 /* ring of sends_max queued CHECKPOINTs */
    uint32_t send_head;
    uint32_t send_count;

    rc_crypto_digest *scratch_digests; /* batch_count_max: D(req) of the batch being checked */
    uint64_t *scratch_timestamps;      /* batch_count_max: t_j[c] before the batch, to undo */
    rc_chain_abort_entry *abort_entries; /* history_max */
    uint8_t *abort_buffer;             /* rc_chain_abort_encoded_size(history_max): the bytes an ABORT signs */

    /* init history (chain_init.c, spec §12) */
    rc_chain_init_state init_state;
    bool init_from_backup;             /* the previous instance is a Backup: IH's proof is f+1 Backup abort histories */
    uint64_t init_first;               /* sn of IH's first entry (base·CHK + 1) */
    uint64_t init_last;                /* sn of IH's last entry (init_first - 1 for an empty IH) */
    uint32_t init_missing;             /* IH bodies still missing */
    uint64_t fetch_cursor;             /* next sn the current FETCH round looks at */
    uint32_t fetch_round;              /* which other replica this round asks */
    uint64_t fetch_round_tick;         /* when the round started */
    uint32_t *init_table;              /* init_table_size slots: P3's duplicate check (instances > 1 only) */
    uint32_t init_table_size;

    rc_chain_stats stats;
};

_Static_assert(sizeof(rc_crypto_digest) == RC_CRYPTO_DIGEST_BYTES, "digests are packed");
_Static_assert(sizeof(rc_crypto_mac) == RC_CRYPTO_MAC_BYTES, "MACs are packed");

/* ---- little-endian encoding ------------------------------------------------------------------ */
static inline void chain_put64(uint8_t *out, uint64_t v) {
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)(v >> (8 * i));
}
static inline void chain_put32(uint8_t *out, uint32_t v) {
    for (int i = 0; i < 4; i++) out[i] = (uint8_t)(v >> (8 * i));
}

/* ---- crypto through the provider, counted ----------------------------------------------------- */
int chain_mac(rc_chain *core, uint32_t peer, const rc_crypto_part *parts, uint32_t count, rc_crypto_mac *tag);
/* 1 valid, 0 invalid; a provider error counts as invalid (the input cannot be trusted). */
int chain_mac_verify(rc_chain *core, uint32_t peer, const rc_crypto_part *parts, uint32_t count,
                     const rc_crypto_mac *tag);
int chain_digest(rc_chain *core, const rc_crypto_part *parts, uint32_t count, rc_crypto_digest *out);
/* D(req), counted. */
int chain_core_request_digest(rc_chain *core, const rc_chain_request *request, rc_crypto_digest *out);

/* MAC inputs (rc_chain.h lists them). `buffer` is caller scratch of at least 64 bytes, alive while the
 * parts are used. */
uint32_t chain_parts_client(uint64_t instance, const rc_crypto_digest *request, uint8_t *buffer,
                            rc_crypto_part *parts);
uint32_t chain_parts_reply(uint64_t instance, uint64_t sn, const rc_crypto_digest *request,
                           const rc_crypto_digest *reply, const rc_crypto_digest *history, uint8_t *buffer,
                           rc_crypto_part *parts);
uint32_t chain_parts_order(uint64_t instance, uint64_t sn_first, uint32_t count, const rc_crypto_digest *batch,
                           uint8_t *buffer, rc_crypto_part *parts);
uint32_t chain_parts_checkpoint(uint64_t instance, uint64_t number, const rc_crypto_digest *digest,
                                uint8_t *buffer, rc_crypto_part *parts);
uint32_t chain_parts_panic(uint64_t instance, uint32_t client, uint64_t timestamp, uint8_t *buffer,
                           rc_crypto_part *parts);
int chain_request_digest(const rc_crypto *crypto, uint32_t client, uint64_t timestamp, const uint8_t *op,
                         uint32_t op_bytes, rc_crypto_digest *out);

/* ---- shape ------------------------------------------------------------------------------------- */
/* The batching stage's limits of this core (rc_batch.h): the head's batches. */
static inline rc_batch_limits chain_batch_limits(const rc_chain_settings *s) {
    return (rc_batch_limits){.count_max = s->batch_count_max, .bytes_max = s->batch_bytes_max};
}

static inline bool chain_is_head(const rc_chain *core) { return core->settings.self == 0; }
static inline bool chain_is_tail(const rc_chain *core) { return core->settings.self == core->nodes - 1; }
static inline bool chain_in_sigma_last(const rc_chain *core) { return core->settings.self >= 2 * core->settings.f; }

/* ---- history (chain_history.c) ----------------------------------------------------------------- */
static inline uint32_t chain_history_count(const rc_chain *core) {
    return (uint32_t)(core->sn_last + 1 - core->history_first);
}
static inline chain_entry *chain_history_entry(const rc_chain *core, uint64_t sn) {
    RC_ASSERT(sn >= core->history_first && sn <= core->sn_last);
    return &core->history[sn % core->settings.history_max];
}
/* Appends the next request (sn_last + 1) and extends H (D2). Only through chain_log (chain_checkpoint.c), which
 * also counts it towards the next checkpoint. */
int chain_history_append(rc_chain *core, const rc_chain_request *request, const rc_crypto_digest *digest);
/* Garbage collection (§14): drops entries at or below the stable checkpoint that were executed and replied. */
void chain_history_collect(rc_chain *core);

/* ---- batches (chain_slots.c) -------------------------------------------------------------------- */
chain_slot *chain_slot_at(const rc_chain *core, uint32_t index);
uint32_t chain_slot_index(const rc_chain *core, const chain_slot *slot);
rc_chain_request *chain_slot_requests(const rc_chain *core, uint32_t index);
rc_crypto_mac *chain_slot_window(const rc_chain *core, uint32_t index);
rc_crypto_mac *chain_slot_client_macs(const rc_chain *core, uint32_t index);
rc_crypto_mac *chain_slot_reply_macs(const rc_chain *core, uint32_t index);
rc_crypto_digest *chain_slot_history(const rc_chain *core, uint32_t index);
/* A new empty slot at the back of the ring, or NULL when the ring is full. */
chain_slot *chain_slot_push(rc_chain *core);
/* Writes this replica's own block of ordering MACs (one per replica successor) at the end of the slot's window. */
int chain_slot_append_own_block(rc_chain *core, uint32_t index, const rc_crypto_digest *batch_digest);
/* D(D(req_1) ‖ … ‖ D(req_b)): the batch digest the ordering MACs cover (spec §9.2). */
int chain_batch_digest(rc_chain *core, const rc_crypto_digest *requests, uint32_t count, rc_crypto_digest *out);

/* ---- checkpoints (chain_checkpoint.c) --------------------------------------------------------------- */
/* Logs the next request (C2 step 4, C3 step 3, an init history's entries): appends it to LH and H
 * (chain_history_append) and records our checkpoint when its sn closes one. */
int chain_log(rc_chain *core, const rc_chain_request *request, const rc_crypto_digest *digest);
/* Checkpoint retransmissions that are due (rc_chain_on_tick). */
void chain_checkpoint_on_tick(rc_chain *core);
/* Room in the send queue for the checkpoints `count` more logged requests can produce. */
bool chain_checkpoint_room(const rc_chain *core, uint32_t count);

void chain_stop(rc_chain *core, rc_chain_stop_reason reason);

/* ---- sizes of the core's memory (chain.c lays it out; the files that own the data use them too) ---------- */
#define CHAIN_ABORT_HEADER_BYTES (CHAIN_TAG_BYTES + 4 + 4 + 8 + 8 + 8 + 8 + RC_CRYPTO_DIGEST_BYTES + 4)
#define CHAIN_ABORT_ENTRY_BYTES (8 + 4 + 8 + 2 * RC_CRYPTO_DIGEST_BYTES)
/* The bytes an ABORT with `entry_count` entries signs (chain_abort.c encodes them). */
static inline size_t chain_abort_encoded_size(uint32_t entry_count) {
    return CHAIN_ABORT_HEADER_BYTES + (size_t)entry_count * CHAIN_ABORT_ENTRY_BYTES;
}
/* The open-addressing table P3 uses for `capacity` entries (chain_init.c), a power of two ≥ 2·capacity + 2. */
static inline uint32_t chain_abort_history_table_size(uint32_t capacity) {
    uint32_t size = 16;
    while (size < 2u * capacity + 2u) size <<= 1;
    return size;
}

/* ---- init history (chain_init.c) ---------------------------------------------------------------------- */
/* A new FETCH round when one is due. */
void chain_init_on_tick(rc_chain *core);

#endif /* RINGCAST_RC_CHAIN_INTERNAL_H */
