/*
 * rc_chain.h — the Chain BFT core (Aliph's Chain with chain authenticators), sans-IO.
 * Thesis 001_…, ch. 3 §3.5.1.2 (Chain) and §3.2 (Abstract); the implementable specification is
 * shared/research/chain-bft-spec.md ("spec" below), which follows [T] = The Next 700 BFT Protocols, TOCS 2015.
 *
 * One `rc_chain` is one replica r_{self+1} of n = 3f+1 in one Abstract instance i. Positions are 0-indexed
 * here (the spec is 1-indexed): position 0 is the head, n-1 the tail, Σlast = {2f, …, 3f}. The core owns no
 * sockets, reads no clock, draws no random numbers and computes no cryptography itself: MACs, digests and
 * signatures go through the caller's `rc_crypto` (rc_crypto.h; OpenSSL EVP in production). Request and
 * reply bytes stay the caller's: events lend them for the duration of the call (to be hashed), and the
 * core names requests afterwards by the caller's `rc_ref`.
 *
 * Events in                                      Actions out (pulled)
 *   rc_chain_on_request     C2: a client's request  rc_chain_next_batch       a batch for the successor (the tail:
 *                           (head only)                                       replies to split per client)
 *   rc_chain_on_batch       C3: from the predecessor rc_chain_next_executions log/execute, in sn order
 *   rc_chain_on_reply       Σlast: the application's rc_chain_next_checkpoint CHECKPOINT for one replica (§14)
 *                           reply to an execution    (rc_chain_on_panic returns the signed ABORT at once)
 *   rc_chain_on_checkpoint  §14 from a replica
 *   rc_chain_on_panic       P2 from a client
 *   rc_chain_on_tick        timers (checkpoint retransmission)
 *
 * The caller's duties, after every event:
 *   1. rc_chain_next_executions until it returns 0; apply them to the state machine in that order. At Σlast
 *      (rc_chain_in_sigma_last) hand each reply back with rc_chain_on_reply, in sn order: a batch leaves
 *      Σlast only once all its replies are in (they carry the reply MACs ρ, spec C3, D1). Elsewhere the
 *      application may apply lazily (D3), but before its state must match a checkpoint.
 *   2. while the link to the successor can take a batch: rc_chain_next_batch, send it. At the head this is
 *      also what closes the open batch, so batches grow while the link is busy (spec §9.6).
 *      At the tail, send each request of the batch to its client with its reply, its history digest and its
 *      f+1 reply MACs (spec C4).
 *   3. rc_chain_next_checkpoint until it returns 0, send each to its replica.
 *   4. release a request's bytes once its batch was sent (rc_chain_next_batch) and it was executed.
 * A batch refused with -EAGAIN is held and offered again later, but it must not hold up CHECKPOINTs (nor PANICs):
 * deliver those on their own channel or read past the held batch. The votes it waits for are what frees the
 * history it lacks room in; behind the held batch they would never arrive (the simulator found this deadlock
 * when CHECKPOINTs shared the FIFO link with batches and one was lost).
 * Output pointers (batches, aborts) point into core memory and stay valid until the next call on the core.
 *
 * MAC contents (spec §5.2, D1; each a MAC over the concatenation, integers little-endian):
 *   D(req)        = SHA-256("RCCH-REQ" ‖ c ‖ t_c ‖ o)                    (the caller's bytes are hashed here)
 *   client MAC    = MAC_{c,r}("RCCH-CLI" ‖ i ‖ D(req))                   (req, i): the client knows no sn
 *   ordering MAC  = MAC_{p,q}("RCCH-ORD" ‖ i ‖ sn_first ‖ b ‖ D(D(req_1) ‖ … ‖ D(req_b)))  one per batch (D4)
 *   H_sn          = SHA-256(H_{sn-1} ‖ sn ‖ D(req_sn)), H_0 = 0^32        order-sensitive history digest (D2)
 *   reply MAC ρ_j = MAC_{r_j,c}("RCCH-REP" ‖ i ‖ sn ‖ D(req) ‖ D(reply_j) ‖ H_sn at r_j)  own values (D1)
 *   checkpoint    = MAC_{p,q}("RCCH-CKP" ‖ i ‖ cc ‖ H_{cc·CHK})
 *   PANIC         = MAC_{c,r}("RCCH-PAN" ‖ i ‖ c ‖ t_c)
 *   ABORT         = Sign_r(rc_chain_abort_encode(...))                    (spec §11.2–11.3)
 *
 * The chain authenticator (spec §5.3) travels as `window`: for the hop p → p+1 it holds, for each sender
 * s = max(0, p-f) … p in that order, s's ordering MACs still unconsumed, addressed to p+1 …
 * min(s+f+1, n-1) in that order. The client's MACs to r_1..r_{f+1} travel per request (`client_macs`,
 * f-p left on the hop p → p+1), and the reply MACs ρ of Σlast per request (`reply_macs`, p-2f+1 on the hop
 * p → p+1 for p ≥ 2f, f+1 out of the tail).
 *
 * Deviations from the spec are listed in the DocC catalogue of RingCastChain (ChainBFT.md) with their reasons.
 */
#ifndef RINGCAST_RC_CHAIN_H
#define RINGCAST_RC_CHAIN_H

#include "rc_batch.h"
#include "rc_common.h"
#include "rc_crypto.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Largest f this build supports: n = 3f+1 ≤ 64 replicas. */
#define RC_CHAIN_F_MAX 21u
#define RC_CHAIN_NODES_MAX (3u * RC_CHAIN_F_MAX + 1u)
#define RC_CHAIN_BATCH_COUNT_MAX RC_BATCH_COUNT_MAX /* the batching stage's limits (rc_batch.h) */
#define RC_CHAIN_HISTORY_MAX (1u << 20)
#define RC_CHAIN_CLIENTS_MAX (1u << 20)
#define RC_CHAIN_OUT_BATCHES_MAX 1024u

typedef struct rc_chain rc_chain;

typedef struct rc_chain_settings {
    uint32_t f;                      /**< faults tolerated; n = 3f+1 replicas, 1 ≤ f ≤ RC_CHAIN_F_MAX. */
    uint32_t self;                   /**< this replica's chain position, 0 (head) … 3f (tail). */
    uint64_t instance;               /**< the Abstract instance i (≥ 1); next(i) = i+1. */
    uint32_t clients_max;            /**< client ids are 0 … clients_max-1. */
    uint32_t batch_count_max;        /**< requests per batch (b_max); 1 turns batching off. */
    uint32_t batch_bytes_max;        /**< request bytes per batch at the head (a single larger request still goes alone). */
    uint32_t checkpoint_interval;    /**< CHK: a checkpoint every CHK requests (spec §14: 128). */
    uint32_t history_max;            /**< uncheckpointed requests kept (LH); ≥ CHK + batch_count_max. */
    uint32_t out_batches_max;        /**< built batches waiting for rc_chain_next_batch (≥ 2). */
    uint32_t checkpoint_retransmit_ticks; /**< resend an unstable own CHECKPOINT after this many ticks (0: never). */
    rc_crypto crypto;                /**< this replica's key ring. */
} rc_chain_settings;

/** One client request ⟨c, o, t_c⟩. As input, `op` is lent for the call; as output `op` is NULL. */
typedef struct rc_chain_request {
    uint32_t client;
    uint64_t timestamp;        /**< t_c, increasing per client. */
    const uint8_t *op;
    uint32_t op_bytes;
    rc_ref ref;                /**< the caller's handle for the bytes. */
} rc_chain_request;

/** A CHAIN message carrying `count` requests with consecutive sequence numbers (spec §9, D4). */
typedef struct rc_chain_batch {
    uint64_t instance;
    uint64_t sn_first;
    uint32_t count;
    const rc_chain_request *requests;          /**< count entries. */
    uint32_t window_count;
    const rc_crypto_mac *window;               /**< the ordering part of the chain authenticator. */
    uint32_t client_macs_per_request;
    const rc_crypto_mac *client_macs;          /**< count × client_macs_per_request, request-major. */
    uint32_t reply_macs_per_request;
    const rc_crypto_mac *reply_macs;           /**< count × reply_macs_per_request, request-major (ρ of r_2f … ). */
    const rc_crypto_digest *history_digests;   /**< out of the tail only: H_sn per request (LHDigest, C3); else NULL. */
} rc_chain_batch;

/** One request to log and (at Σlast: must; elsewhere: may, lazily) execute, in sn order. */
typedef struct rc_chain_execution {
    uint64_t sn;
    uint32_t client;
    uint64_t timestamp;
    rc_ref ref;
    bool reply_needed;          /**< Σlast: hand the reply back with rc_chain_on_reply. */
} rc_chain_execution;

/**
 * Kinds of CHECKPOINT. A replica sends its VOTE when it logs cc·CHK. It retransmits (RETRANSMISSION) only to replicas
 * whose vote it lacks, every checkpoint_retransmit_ticks while cc is not stable here, and asks for an ANSWER: the
 * receiver sends its own vote back (for cc, or its last stable checkpoint if cc is already stable there), since a
 * lost vote of the receiver is as likely as a lost vote of the sender. Answers are never answered, so stable
 * replicas do not ping-pong. Flipping the kind (it is not under the MAC) costs at most one message more or less.
 */
enum {
    RC_CHAIN_CHECKPOINT_VOTE = 0,
    RC_CHAIN_CHECKPOINT_RETRANSMISSION = 1,
    RC_CHAIN_CHECKPOINT_ANSWER = 2,
};

/** ⟨CHECKPOINT, cc, D(st_cc)⟩ from `from` to `to` (spec §14). The digest is H at cc·CHK (see the catalogue). */
typedef struct rc_chain_checkpoint {
    uint64_t instance;
    uint32_t from;
    uint32_t to;
    uint64_t number;           /**< cc */
    rc_crypto_digest digest;
    rc_crypto_mac mac;
    /** RC_CHAIN_CHECKPOINT_VOTE, _RETRANSMISSION or _ANSWER (see below); not covered by the MAC. */
    uint32_t kind;
} rc_chain_checkpoint;

/** ⟨PANIC, c, t_c⟩ with the client's MAC for one replica (spec P1). */
typedef struct rc_chain_panic {
    uint64_t instance;
    uint32_t client;
    uint64_t timestamp;
    uint32_t replica;          /**< the addressee. */
    rc_crypto_mac mac;
} rc_chain_panic;

/**
 * One entry of an ABORT's history: a request digest at its absolute position (spec §11.3, state transfer), with the
 * history digest H_sn there. At sn = cc·CHK that H is the replica's tentative checkpoint digest for cc (the partial
 * checkpoint rule of §11.3, generalised by D11 to every boundary in the suffix), which P3 needs to align ABORTs
 * truncated at different stable checkpoints.
 */
typedef struct rc_chain_abort_entry {
    uint64_t sn;
    uint32_t client;
    uint64_t timestamp;
    rc_crypto_digest request_digest;
    rc_crypto_digest history_digest;
} rc_chain_abort_entry;

/** ⟨ABORT, c, t_c, i, LH_j, next(i)⟩ signed by `replica` (spec P2, §11.3). */
typedef struct rc_chain_abort {
    uint32_t replica;
    uint32_t client;
    uint64_t timestamp;
    uint64_t instance;
    uint64_t next_instance;
    uint64_t checkpoint_number;          /**< last stable cc (0: none). */
    rc_crypto_digest checkpoint_digest;  /**< H at cc·CHK (H_0 = 0^32). */
    uint32_t entry_count;
    const rc_chain_abort_entry *entries; /**< the uncheckpointed suffix, sn ascending from cc·CHK+1. */
    rc_crypto_signature signature;
} rc_chain_abort;

typedef enum rc_chain_mode {
    RC_CHAIN_NORMAL = 0,
    RC_CHAIN_STOPPED = 1,     /**< no C2/C3 any more in this instance (verification failure or PANIC). */
} rc_chain_mode;

/** Why a replica stopped (the first cause is kept). */
typedef enum rc_chain_stop_reason {
    RC_CHAIN_STOP_NONE = 0,
    RC_CHAIN_STOP_MALFORMED = 1,    /**< a batch whose shape no correct predecessor sends (sizes, instance, client). */
    RC_CHAIN_STOP_SEQUENCE = 2,     /**< sn ≠ sn_j + 1 that is not a whole duplicate (D6). */
    RC_CHAIN_STOP_ORDERING_MAC = 3, /**< a predecessor's ordering MAC failed (C3 (i)). */
    RC_CHAIN_STOP_CLIENT_MAC = 4,   /**< a client MAC failed at r_2 … r_{f+1} (C3 (i), D5). */
    RC_CHAIN_STOP_TIMESTAMP = 5,    /**< t_c ≤ t_j[c] inside an ordered batch (C3 (iii), D5). */
    RC_CHAIN_STOP_PANIC = 6,        /**< a valid PANIC (P2). */
    RC_CHAIN_STOP_LEFT = 7,         /**< the replica entered a later instance (rc_chain_leave). */
} rc_chain_stop_reason;

typedef struct rc_chain_stats {
    uint64_t requests_logged;        /**< requests appended to LH. */
    uint64_t batches_in;             /**< batches accepted from the predecessor. */
    uint64_t batches_out;            /**< batches returned by rc_chain_next_batch. */
    uint64_t mac_generations;        /**< MACs this core asked the provider to compute. */
    uint64_t mac_verifications;      /**< MACs this core asked the provider to check. */
    uint64_t digests;                /**< digests computed. */
    uint64_t signatures;             /**< ABORTs signed. */
    uint64_t requests_not_new;       /**< head: t_c ≤ t_1[c], ignored (C2 step 2). */
    uint64_t requests_bad_mac;       /**< head: client MAC failed, discarded (C2 step 3). */
    uint64_t duplicates_ignored;     /**< batches wholly at or below sn_j (retransmissions, D6). */
    uint64_t refused_full;           /**< events answered -EAGAIN (history or out queue full). */
    uint64_t checkpoints_sent;
    uint64_t checkpoints_stable;     /**< stable checkpoints reached (3f+1 matching). */
    uint64_t checkpoints_bad_mac;
    uint64_t checkpoints_conflicting;/**< a CHECKPOINT whose digest differs from our own for that cc. */
    uint64_t checkpoints_out_of_window;
    uint64_t history_truncated;      /**< entries removed by garbage collection. */
    uint64_t panics_bad_mac;
    uint64_t aborts_signed;
    uint64_t inits_refused;          /**< init histories refused (rc_chain_on_init -EPROTO). */
    uint64_t signature_verifications;/**< ABORT signatures checked for init histories. */
    uint64_t fetches_sent;           /**< FETCH actions returned. */
    uint64_t fetched_accepted;       /**< IH request bodies accepted. */
    uint64_t fetched_rejected;       /**< bodies whose digest did not match (a lying answer). */
} rc_chain_stats;

/** A read-only look at one logged request. */
typedef struct rc_chain_history_view {
    uint64_t sn;
    uint32_t client;
    uint64_t timestamp;
    rc_ref ref;
    rc_crypto_digest request_digest;  /**< D(req) */
    rc_crypto_digest history_digest;  /**< H_sn */
} rc_chain_history_view;

/* ---- the chain's shape (spec §5.1), for tests and the engine ---------------------------------- */

/** n = 3f+1. */
static inline uint32_t rc_chain_nodes(uint32_t f) { return 3u * f + 1u; }
/** Replica successors of `position`: writes them to out (≤ f+1) and returns how many; `*client` is set when the
 *  client is a successor too (positions ≥ 2f). */
uint32_t rc_chain_successors(uint32_t f, uint32_t position, uint32_t *out, bool *client);
/** Replica predecessors of `position` (≤ f+1), ascending; `*client` is set when the client is one (position ≤ f). */
uint32_t rc_chain_predecessors(uint32_t f, uint32_t position, uint32_t *out, bool *client);
/** Ordering MACs in the window on the hop from `position` to position+1 (position ≤ 3f-1; at most (f+1)(f+2)/2). */
uint32_t rc_chain_window_count(uint32_t f, uint32_t position);
/** Client MACs per request on the hop out of `position` (f - position, or 0); position = UINT32_MAX: client → head (f+1). */
uint32_t rc_chain_client_macs_count(uint32_t f, uint32_t position);
/** Reply MACs per request on the hop out of `position` (position - 2f + 1 from Σlast, else 0). */
uint32_t rc_chain_reply_macs_count(uint32_t f, uint32_t position);

/* ---- the replica ---------------------------------------------------------------------------------- */

/** Bytes of caller memory a core with these settings needs, or 0 for invalid settings. */
size_t rc_chain_memory_size(const rc_chain_settings *settings);

/** Initializes a core in `memory` (16-byte aligned, ≥ rc_chain_memory_size). No allocation. 0 or -EINVAL. */
int rc_chain_init(rc_chain **core, void *memory, size_t size, const rc_chain_settings *settings);

/**
 * C2 at the head: a client's request with its f+1 client MACs (to r_1 … r_{f+1}).
 * Returns 0 when ordered (logged, sn assigned, in the open batch); 1 when not new (t_c ≤ t_1[c]: ignored);
 * -EBADMSG when the head's client MAC fails (discarded, the head keeps running, C2 step 3); -EAGAIN when the
 * history or the batch queue is full (nothing changed; retry after checkpoints or sends); -ESHUTDOWN when
 * stopped; -EINVAL when this is not the head or the client id is out of range; -EPROTO for a request of
 * another instance; -ENOTCONN while no init history is installed (instances after the first, see rc_chain_on_init).
 */
int rc_chain_on_request(rc_chain *core, const rc_chain_request *request, const rc_crypto_mac *client_macs);

/**
 * C3 at r_2 … r_n: a batch from the predecessor. Returns 0 when accepted; 1 for a duplicate (every sn ≤ sn_j:
 * ignored); -EAGAIN when the history, the batch queue or the checkpoint queue lacks room (nothing changed:
 * hold it, retry); -EPROTO when it fails a check (C3 (i)–(iii)) — the replica is then STOPPED (see
 * rc_chain_stop_reason_get); -ESHUTDOWN when already stopped; -EINVAL at the head; -EAGAIN as well while no init history is installed
 * (the INIT message travels ahead of the first batch on the same link; hold the batch).
 */
int rc_chain_on_batch(rc_chain *core, const rc_chain_batch *batch);

/** Up to `max` executions in sn order; returns how many were written. */
uint32_t rc_chain_next_executions(rc_chain *core, rc_chain_execution *out, uint32_t max);

/**
 * Σlast: the application's reply to execution `sn` (the next one expected, in order). Computes D(reply) and
 * ρ over this replica's own reply and H_sn (D1). 0; -EINVAL when this replica is not in Σlast, or `sn` is not
 * the next reply expected.
 */
int rc_chain_on_reply(rc_chain *core, uint64_t sn, const uint8_t *reply, uint32_t reply_bytes);

/** The next batch for the successor (the tail: the replies); 1 with `*out` filled, 0 when none is ready. */
int rc_chain_next_batch(rc_chain *core, rc_chain_batch *out);

/** The next CHECKPOINT to send; 1 with `*out` filled (MAC computed now), 0 when none. */
int rc_chain_next_checkpoint(rc_chain *core, rc_chain_checkpoint *out);

/**
 * A CHECKPOINT from another replica (spec §14). 0 when counted; 1 when stale (cc ≤ last stable); a RETRANSMISSION
 * queues this replica's answer;
 * -EBADMSG for a bad MAC; -ERANGE for a cc beyond the vote window; -EINVAL when not addressed to this
 * replica or from an unknown replica; -EPROTO for another instance.
 */
int rc_chain_on_checkpoint(rc_chain *core, const rc_chain_checkpoint *checkpoint);

/**
 * P2: a client's PANIC. On a valid MAC the replica stops (if it had not) and returns its signed ABORT in
 * `*abort` (entries point into core memory). 0; -EBADMSG for a bad MAC (ignored); -EINVAL for a client out of
 * range or another addressee; -EPROTO for another instance; -EIO when signing failed; -ENOTCONN while no init
 * history is installed (P2+: install the PANIC's IH with rc_chain_on_init first, so the ABORT holds it).
 */
int rc_chain_on_panic(rc_chain *core, const rc_chain_panic *panic, rc_chain_abort *abort);

/**
 * D13: the signed ABORT a STOPPED replica answers a CHAIN request with, so a client that has not switched yet
 * learns the instance is over (it then panics to collect 2f+1). Same frozen history as rc_chain_on_panic.
 * 0; -EBUSY when the replica is not stopped; -EINVAL for a client out of range; -EIO when signing failed.
 */
int rc_chain_stopped_abort(rc_chain *core, uint32_t client, uint64_t timestamp, rc_chain_abort *abort);

/**
 * The replica entered a later instance (spec §2.3: an instance aborted once is abandoned for good): it stops here, so
 * it orders nothing more in this instance and answers late clients with its signed ABORT (D13, rc_chain_stopped_abort),
 * from which they learn to switch. Idempotent.
 */
void rc_chain_leave(rc_chain *core);

/** One timer tick (the caller's period): retransmits unstable own CHECKPOINTs. */
void rc_chain_on_tick(rc_chain *core);

rc_chain_mode rc_chain_mode_get(const rc_chain *core);
rc_chain_stop_reason rc_chain_stop_reason_get(const rc_chain *core);
rc_chain_stats rc_chain_stats_get(const rc_chain *core);
bool rc_chain_in_sigma_last(const rc_chain *core);
/** sn_j: the last sequence number logged (the head: assigned). */
uint64_t rc_chain_last_sn(const rc_chain *core);
/** The last stable checkpoint number (0: none). */
uint64_t rc_chain_stable_checkpoint(const rc_chain *core);
/** Requests in LH (uncheckpointed or not yet collected). */
uint32_t rc_chain_history_count(const rc_chain *core);
/** The logged request at `sn` while it is kept; 0, or -ERANGE. */
int rc_chain_history_at(const rc_chain *core, uint64_t sn, rc_chain_history_view *out);

/**
 * The ordering MACs `position` writes over a batch with this content: its own block of the window, one per replica
 * successor, in order. For tests and the simulator, whose Byzantine replicas re-authenticate content they altered
 * with their own keys (the strongest such replica can do). Returns how many were written (≤ f+1), -E2BIG above 256
 * requests, or the provider's error.
 */
int rc_chain_ordering_block(const rc_crypto *crypto, uint32_t f, uint32_t position, const rc_chain_batch *batch,
                            rc_crypto_mac *out);

/* ---- init history (spec §12, D8–D10): entering instance i' = next(i) ------------------------------------ */

/**
 * A replica of instance 1 starts initialised. A replica of a later instance starts WAITING: it orders, logs and
 * answers PANICs only once it installed a valid init history IH (rc_chain_on_init). Installing logs IH's entries by
 * digest (LH := IH, sn_j := base·CHK + |IH|, t_j[c] from IH, D9) and leaves it FETCHING until the caller supplied
 * every request body behind those digests (rc_chain_on_fetched: from its own store, or fetched from other replicas
 * with the FETCH actions of rc_chain_next_fetch). Ordering and logging already run while FETCHING (they need only
 * digests); executions stop at the first body still missing, so the state machine never skips one.
 */
typedef enum rc_chain_init_state {
    RC_CHAIN_INIT_WAITING = 0,   /**< no init history installed yet. */
    RC_CHAIN_INIT_FETCHING = 1,  /**< IH installed; some request bodies still missing. */
    RC_CHAIN_INIT_DONE = 2,      /**< initialised: every IH request is present. */
} rc_chain_init_state;

/** Why rc_chain_on_init refused an init history (it then returns -EPROTO). */
typedef enum rc_chain_init_error {
    RC_CHAIN_INIT_ERROR_NONE = 0,
    RC_CHAIN_INIT_ERROR_INSTANCE = 1,    /**< IH is for another instance, or its ABORTs come from different instances or
                                              from one not older than this instance. */
    RC_CHAIN_INIT_ERROR_PROOF_SIZE = 2,  /**< the proof does not hold exactly 2f+1 ABORTs. */
    RC_CHAIN_INIT_ERROR_ABORT_SHAPE = 3, /**< an ABORT is not well formed (rc_chain_abort_well_formed) or too long. */
    RC_CHAIN_INIT_ERROR_SIGNER = 4,      /**< two ABORTs of one replica. */
    RC_CHAIN_INIT_ERROR_NEXT = 5,        /**< an ABORT names next(i) ≠ this instance. */
    RC_CHAIN_INIT_ERROR_SIGNATURE = 6,   /**< an ABORT's signature is not its replica's. */
    RC_CHAIN_INIT_ERROR_MISMATCH = 7,    /**< IH is not exactly the P3 result of its proof. */
    RC_CHAIN_INIT_ERROR_TOO_LONG = 8,    /**< IH holds more requests than this core's history_max. */
} rc_chain_init_error;

/** ⟨IH, Proof_IH⟩: an init history (positions base·CHK + 1, …) with the 2f+1 signed ABORTs it was extracted from. */
typedef struct rc_chain_init_history {
    uint64_t instance;                     /**< i': the instance it initialises. */
    uint64_t base;                         /**< the checkpoint number IH starts from. */
    rc_crypto_digest base_digest;          /**< H at base·CHK. */
    uint32_t entry_count;
    const rc_chain_abort_entry *entries;   /**< sn, client, t_c, D(req); history_digest is not compared (recomputed). */
    uint32_t proof_count;
    const rc_chain_abort *proof;
} rc_chain_init_history;

/** A FETCH: ask replica `to` for the request with this digest at `sn` of the init history (spec §12, [T§4.4]). */
typedef struct rc_chain_fetch {
    uint64_t instance;
    uint32_t from;
    uint32_t to;
    uint64_t sn;
    uint32_t client;
    uint64_t timestamp;
    rc_crypto_digest request_digest;
} rc_chain_fetch;

/**
 * C2+/C3+/P2+: validates and installs an init history. Checks, in this order: IH names this instance; the proof
 * holds exactly 2f+1 well-formed ABORTs of distinct replicas, all of one instance i < this one, all naming
 * next(i) = this instance, each signed by its replica; IH is exactly P3 of the proof (base, base digest, and per
 * position sn, c, t_c, D(req)); IH fits history_max. Returns 0 when installed (then FETCHING, or DONE for an IH with
 * no entries); 1 when the replica is already initialised or has an IH (a later IH is ignored, spec §12);
 * -EPROTO when refused, with the reason in `*why` (nothing changed); -EINVAL for NULL arguments.
 */
int rc_chain_on_init(rc_chain *core, const rc_chain_init_history *ih, rc_chain_init_error *why);

/**
 * Aliph's composition (spec §13.1): the instance before this one is a Backup, so rc_chain_on_init takes a Backup
 * proof instead of 2f+1 Chain ABORTs: f+1 signed Backup abort histories (rc_chain_abort records signed the same way,
 * `instance` the Backup's, `checkpoint_*` its init history's base, `entries` the whole executed sequence) of distinct
 * replicas, identical except for the signer, all of one instance i < this one naming next(i) = this instance; IH
 * must be exactly their common history. Set by the replica's composition (which knows the order of protocols),
 * never by a client. 0; -EBUSY once an init history is installed.
 */
int rc_chain_expect_backup_proof(rc_chain *core);

/**
 * The last timestamp of each client in the application state at the checkpoint base (`count` ≤ clients_max entries,
 * by client id), which the caller restored on entering (D10). IH lists requests only after the base, so without
 * this a request inside the base would be new again here and execute twice ([T] keeps t_j[c] in st_cc). Raises
 * t_j[c] to the given values. Call it right after rc_chain_on_init installed IH, before any other event.
 * 0; -EINVAL when no IH was just installed or count > clients_max.
 */
int rc_chain_init_base_timestamps(rc_chain *core, const uint64_t *timestamps, uint32_t count);

/**
 * A request body for IH entry `sn` (from the caller's own store, or a FETCH answer): accepted only when its D(req)
 * is the digest IH holds there. 0 accepted (its `ref` is kept); 1 already present; -EBADMSG wrong digest (refused,
 * counted); -ERANGE when `sn` is not an IH entry of this replica; -EINVAL for NULL or WAITING.
 */
int rc_chain_on_fetched(rc_chain *core, uint64_t sn, const rc_chain_request *request);

/**
 * The next FETCH to send while FETCHING, 1 with `*out` filled, 0 when none is due. Each round asks, for every missing
 * body, one other replica; rc_chain_on_tick starts a new round (every checkpoint_retransmit_ticks ticks, or every tick
 * when that is 0) asking the next replica, so the f+1 replicas that vouched for a digest, one of them correct, are
 * all reached within n-1 rounds.
 */
int rc_chain_next_fetch(rc_chain *core, rc_chain_fetch *out);

/**
 * Σlast, for a request of the init history: ρ over (this instance, sn, D(req), D(reply), H_sn), as rc_chain_on_reply
 * computes it. IH requests were ordered in an earlier instance, so no batch of this one carries their ρ to the tail:
 * each member of Σlast sends its ρ with its reply and H_sn straight to the client, which commits when all f+1 agree
 * and verify (rc_chain_client_check_reply over the values they agree on) — the evidence of C4, gathered without the
 * tail (see the catalogue).
 * A duty at Σlast: call it for every IH execution (sn in rc_chain_init_range; reply_needed is false for them), in sn
 * order, after applying it; the entry is kept until then, and replies to later requests (rc_chain_on_reply) wait for
 * it. 0; -EINVAL outside Σlast, or for an sn that is not the next executed IH entry to reply to.
 */
int rc_chain_init_reply(rc_chain *core, uint64_t sn, const uint8_t *reply, uint32_t reply_bytes, rc_crypto_mac *rho,
                        rc_crypto_digest *history);

/**
 * Σlast, D7 for a request the checkpoint base covers: ρ over (this instance, sn, D(req), D(reply), H_sn) for a reply
 * the replica's own application state holds (its last reply to that client, restored on entering, D10), to send
 * straight to the client like rc_chain_init_reply. The core cannot check these values: they are the replica's own.
 * 0; -EINVAL outside Σlast, for a client out of range or sn = 0.
 */
int rc_chain_cached_reply(rc_chain *core, uint32_t client, uint64_t sn, const rc_crypto_digest *request_digest,
                          const uint8_t *reply, uint32_t reply_bytes, const rc_crypto_digest *history, rc_crypto_mac *rho);

/** The sns of the installed init history: first … last (last = first - 1 when empty); 0 while WAITING, else 1. */
int rc_chain_init_range(const rc_chain *core, uint64_t *first, uint64_t *last);

rc_chain_init_state rc_chain_init_state_get(const rc_chain *core);
/** Bodies still missing while FETCHING (0 otherwise). */
uint32_t rc_chain_init_missing(const rc_chain *core);

/**
 * An ABORT a client may use in P3 and put in a proof: its replica is one of the 3f+1, its entries are consecutive
 * from checkpoint_number·CHK + 1, there are at most RC_CHAIN_HISTORY_MAX of them, and checkpoint 0 has digest 0^32.
 * A correct replica only signs such ABORTs; a client drops others (a Byzantine replica signed them) and waits for more.
 */
bool rc_chain_abort_well_formed(uint32_t f, uint32_t checkpoint_interval, const rc_chain_abort *abort);

/** Scratch bytes rc_chain_abort_history_extract needs for up to `capacity` entries. */
size_t rc_chain_abort_history_scratch_size(uint32_t capacity);

/**
 * P3 (spec §11.4, D11): the abort history of `count` = 2f+1 well-formed ABORTs of distinct replicas with valid
 * signatures (the caller checked). Base: the highest checkpoint whose digest ≥ f+1 ABORTs vouch for (their stable
 * checkpoint, or their H at that boundary); then per absolute position the value (c, t_c, D(req)) ≥ f+1 ABORTs hold,
 * until a position has none, truncated before the first request that appears twice. Each entry's history_digest is
 * the first voter's. Returns the number of entries written to `out`, -ENOSPC above `capacity`, -EINVAL.
 */
long rc_chain_abort_history_extract(uint32_t f, uint32_t checkpoint_interval, const rc_chain_abort *aborts,
                                    uint32_t count, uint64_t *base, rc_crypto_digest *base_digest,
                                    rc_chain_abort_entry *out, uint32_t capacity, void *scratch, size_t scratch_bytes);

/* ---- ABORT encoding (shared by replicas and clients) ---------------------------------------------- */

/** Bytes rc_chain_abort_encode writes for `entry_count` entries. */
size_t rc_chain_abort_encoded_size(uint32_t entry_count);
/** The bytes an ABORT's signature covers; returns the length, or -ENOSPC when `capacity` is too small. */
long rc_chain_abort_encode(const rc_chain_abort *abort, uint8_t *out, size_t capacity);
/** 1 when the ABORT's signature is its replica's; 0 when not; -ENOSPC when `scratch` is too small. */
int rc_chain_abort_verify(const rc_crypto *crypto, const rc_chain_abort *abort, uint8_t *scratch, size_t capacity);

/* ---- the client's side (C1, C4, P1): stateless helpers over the client's key ring ------------------ */

typedef struct rc_chain_client_settings {
    uint32_t f;
    uint32_t client;
    uint64_t instance;
    rc_crypto crypto;           /**< the client's key ring. */
} rc_chain_client_settings;

/** D(req) as the replicas compute it. 0 or the provider's error. */
int rc_chain_request_digest(const rc_crypto *crypto, uint32_t client, uint64_t timestamp, const uint8_t *op,
                            uint32_t op_bytes, rc_crypto_digest *out);

/** C1: the client's f+1 MACs to r_1 … r_{f+1} over (req, i). 0 or the provider's error. */
int rc_chain_client_authenticate(const rc_chain_client_settings *settings, uint64_t timestamp, const uint8_t *op,
                                 uint32_t op_bytes, rc_crypto_mac *macs);

/**
 * C4: 1 when the reply from the tail commits — every one of the f+1 ρ (from r_{2f+1} … r_{3f+1}, in that
 * order) authenticates (req, i, sn, D(reply), history_digest) with D(reply) computed here from the bytes;
 * 0 when it does not (the client panics); a negative errno when it could not check.
 */
int rc_chain_client_check_reply(const rc_chain_client_settings *settings, uint64_t timestamp, const uint8_t *op,
                                uint32_t op_bytes, uint64_t sn, const uint8_t *reply, uint32_t reply_bytes,
                                const rc_crypto_digest *history_digest, const rc_crypto_mac *reply_macs);

/**
 * C1 and C4 over D(req) the caller computed once with rc_chain_request_digest: a client that keeps the digest
 * of each request in flight hashes its payload once instead of at C1 and again at C4 (and again at every
 * resubmission: D(req) does not depend on the instance). Same results and errors as the functions above.
 */
int rc_chain_client_authenticate_digest(const rc_chain_client_settings *settings, const rc_crypto_digest *request,
                                        rc_crypto_mac *macs);
int rc_chain_client_check_reply_digest(const rc_chain_client_settings *settings, const rc_crypto_digest *request,
                                       uint64_t sn, const uint8_t *reply, uint32_t reply_bytes,
                                       const rc_crypto_digest *history_digest, const rc_crypto_mac *reply_macs);

/** P1: the PANIC for `replica`, MAC included. 0 or the provider's error. */
int rc_chain_client_panic(const rc_chain_client_settings *settings, uint64_t timestamp, uint32_t replica,
                          rc_chain_panic *out);

#ifdef __cplusplus
}
#endif

#endif /* RINGCAST_RC_CHAIN_H */
