/*
 * rc_engine.h — one RingCast node: an engine thread that owns an io_uring transport (rc_io.h), the
 * connection from its predecessor and the one to its successor, and drives the sans-IO LCR core
 * (rc_lcr.h) with the wire codec (rc_wire.h): receive → core → forward and deliver.
 *
 * Threads. rc_engine_start spawns the engine thread; no lock is taken on the hot path. The caller talks
 * to it through two bounded single-producer/single-consumer rings, each with an eventfd:
 *   - broadcasts: ONE producer thread calls rc_engine_broadcast; -EAGAIN means the ring or the window is
 *     full (backpressure): wait until rc_engine_space_fd() is readable, then retry.
 *   - deliveries: ONE consumer thread calls rc_engine_deliveries_peek / _release; wait on
 *     rc_engine_delivery_fd() when there is nothing. A delivery is a view into the engine's receive
 *     buffer (or, for an own message, the broadcaster's memory): valid until it is released. Releasing
 *     late is backpressure: a full delivery ring stops the core's deliveries, a full pending stops
 *     reading from the predecessor, and the ring slows down to the consumer.
 *   Alternatively, settings.deliver (a synchronous handler) is called on the engine thread with each
 *   batch; views are valid during the call only, and nothing goes through the delivery ring.
 *
 * Memory. Everything is allocated in rc_engine_create from the settings, nothing after. Payload bytes
 * of received messages are never copied in user space: they are forwarded from the receive buffer
 * and delivered as views of it; own payloads are sent from, and delivered as, the broadcaster's memory
 * (which it must keep untouched until its own delivery comes back with its token).
 *
 * Ring positions are the LCR core's (0..nodes-1 in view order). This engine runs one view; a lost
 * connection or a malformed frame stops its ring with an error (rc_engine_status, rc_engine_lost_link)
 * but keeps its state, so that the membership layer above can freeze it and take `pending` out for the
 * view change (Fig. 2.7, rc_engine_freeze), then start a new engine for the next view.
 */
#ifndef RINGCAST_RC_ENGINE_H
#define RINGCAST_RC_ENGINE_H

#include "rc_auth.h"
#include "rc_common.h"
#include "rc_io.h"
#include "rc_lcr.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RC_ENGINE_BROADCAST_RING_MAX (1u << 20)
#define RC_ENGINE_DELIVERY_RING_MAX (1u << 22)
#define RC_ENGINE_HEARTBEAT_MS_MAX 60000u


/** One application message handed to the application, in total order. */
typedef struct rc_engine_delivery {
    const uint8_t *bytes;  /**< the payload, in place; valid until released (or the handler returns). */
    uint32_t length;
    uint32_t origin;       /**< ring position of the broadcaster. */
    uint64_t origin_seq;   /**< the origin's application message count, from 1 (delivery log field). */
    uint64_t view_id;
    uint64_t token;        /**< own messages: the token given to rc_engine_broadcast; else 0. */
    bool own;
} rc_engine_delivery;

typedef void (*rc_engine_deliver_fn)(void *context, const rc_engine_delivery *batch, uint32_t count);

typedef struct rc_engine_settings {
    uint32_t nodes;               /**< n, 1..RC_LCR_NODES_MAX. */
    uint32_t self;                /**< this node's ring position. */
    uint64_t view_id;             /**< carried by every frame; frames of another view are refused. */
    rc_io_addr listen;            /**< where the predecessor connects to us. */
    rc_io_addr successor;         /**< the successor's listen address. */

    uint32_t window;              /**< own application messages broadcast and not yet delivered locally; at
                                       most half of them not yet stable (see engine_send.c). */
    uint32_t window_bytes;        /**< own payload bytes broadcast and not yet stable, i.e. handed to
                                       rc_engine_broadcast and not yet back round the ring (one message is
                                       always admitted, so a message larger than this still goes). Released at
                                       stability, not delivery: see engine_send.c. With window_adaptive, the
                                       maximum of the window rc_window.h sizes from the ring. */
    uint32_t staging_bytes;       /**< bytes rc_engine_broadcast admits beyond the byte window, at least (an eighth
                                       of the window when that is more): they wait in the broadcast ring, so that
                                       the engine thread refills the window itself when an ACK frees it, without
                                       waiting for the producer's thread (engine_spsc.c, engine.c). */
    bool window_adaptive;         /**< size the byte window from the ring's measured round trip and rate
                                       (rc_window.h) instead of holding window_bytes in flight. */
    uint32_t batch_count_max;     /**< application messages per LCR message (1 = no batching). */
    uint32_t batch_bytes_max;     /**< payload bytes per LCR message. */
    bool fairness;                /**< §2.5.2. */

    uint32_t broadcast_ring_max;  /**< broadcasts handed over and not yet taken by the engine thread. */
    uint32_t delivery_ring_max;   /**< application messages delivered and not yet released. */
    uint32_t recv_buffer_bytes;   /**< mirrored receive buffer; 0 = derived from the windows (see rc_engine_create). */
    uint32_t heartbeat_ms;        /**< a HEARTBEAT goes out when the link was idle this long. */
    uint32_t connect_timeout_ms;  /**< give up connecting to the successor / waiting for the predecessor. */
    uint32_t stall_ms;            /**< fail (-ENOBUFS) when the receive buffer is full and nothing moved this long. */
    int32_t zerocopy;             /**< rc_io_zerocopy for the successor connection. */
    char congestion[16];          /**< TCP_CONGESTION of the ring's sockets ("" = the system default). Should the
                                       kernel refuse it (unprivileged and not in tcp_allowed_congestion_control,
                                       or not built), the socket keeps the system default and
                                       rc_engine_stats.congestion_refused counts it. */

    /* Authenticated links (rc_auth.h). auth.mode NONE (the default) keeps open links. Otherwise every connection
     * of the ring starts with the handshake, and nothing it sends reaches the core before its peer proved the
     * cluster key; FRAMES adds a MAC per frame. */
    rc_auth_config auth;          /**< key, cluster name, mode and this node's id; channel and expect_* are set per link. */
    uint32_t predecessor_node, predecessor_incarnation; /**< who must connect to us (RC_AUTH_PEER_ANY: anyone with the key). */
    uint32_t successor_node, successor_incarnation;     /**< who we must reach. */
    uint32_t auth_timeout_ms;     /**< a connection that has not finished its handshake by then is closed and counted. */

    rc_engine_deliver_fn deliver; /**< optional synchronous handler (see above); NULL = delivery ring. */
    void *deliver_context;
    const uint64_t *origin_seq_bases; /**< `nodes` entries or NULL (all 0): per ring position, the application
                                           messages of that origin delivered before this view, so that every
                                           origin_seq the engine emits (deliveries, the freeze's export) is final
                                           across views. Copied by rc_engine_create. */
} rc_engine_settings;

/** Defaults: window 1024 messages and 1 MiB (adaptive: rc_window.h's defaults below 1 MiB), 8 KiB staging, broadcast ring 64, stall 5 s, batches of ≤ 64 messages / 64 KiB, fairness on, receive buffer
 *  derived, heartbeat 100 ms, connect timeout 10 s, zero-copy off, congestion control cubic. nodes/self/addresses are the caller's. */
void rc_engine_settings_default(rc_engine_settings *settings);

typedef enum rc_engine_state {
    RC_ENGINE_CREATED = 0,
    RC_ENGINE_CONNECTING = 1, /**< waiting for the successor and the predecessor. */
    RC_ENGINE_RUNNING = 2,
    RC_ENGINE_STOPPED = 3,    /**< rc_engine_stop was called and the thread has ended. */
    RC_ENGINE_FAILED = 4,     /**< see rc_engine_status's error. */
} rc_engine_state;

typedef struct rc_engine_stats {
    uint64_t broadcasts;           /**< application messages taken from the broadcast ring. */
    uint64_t delivered_messages;   /**< application messages delivered. */
    uint64_t delivered_bytes;
    uint64_t lcr_messages_sent;    /**< own LCR messages (batches). */
    uint64_t forwarded;            /**< LCR messages forwarded. */
    uint64_t frames_in, frames_out, heartbeats_out;
    uint64_t payload_copies;       /**< user-space copies of payload bytes: 0 by design, counted to prove it. */
    uint64_t recv_stalls;          /**< times reading stopped for backpressure (pending or receive buffer full). */
    uint64_t delivery_stalls;      /**< times the delivery ring was full. */
    uint64_t bytes_in, bytes_out;
    double zerocopy_fraction;
    /* Pacing diagnostics (cheap: a comparison and an add per frame, no clock read of their own). */
    uint64_t link_starved_ns;        /**< time the successor link was below its low-water mark and the core had no frame. */
    uint64_t link_starved_window_ns; /**< part of it while own broadcasts waited for the window (byte or message). */
    uint64_t window_full;            /**< passes in which broadcasts waited because the window was full. */
    uint64_t own_held;               /**< frames where fairness forwarded although an own message was ready. */
    uint64_t ack_only_frames;        /**< frames with ACKs and no message. */
    uint64_t congestion_refused;     /**< sockets on the system's congestion control: `congestion` was refused. */
    /* The byte window (rc_window.h) as it stands. */
    uint64_t window_bytes_now;       /**< current byte window. */
    uint64_t ring_rtt_min_ns;        /**< unloaded ring round trip of own messages (sent → stable), 0 before any. */
    /* Where own messages' time went, summed over own application messages delivered (divide by
     * own_latency_samples for the means): handed over by the producer → taken into the core (waiting in
     * the broadcast ring for the window), → sent to the successor (the core's send queue: fairness, the
     * link), → stable here (the ring round trip: socket buffers, qdiscs, links, the other processes) →
     * delivered here (pending: waiting for the messages before it in ≺). */
    uint64_t own_latency_samples;
    uint64_t own_admit_wait_ns;
    uint64_t own_send_wait_ns;
    uint64_t own_ring_trip_ns;
    uint64_t own_deliver_wait_ns;
    /* Authenticated links (rc_auth.h); all 0 with auth mode NONE. */
    uint64_t auth_handshakes;        /**< connections whose peer proved the cluster key. */
    uint64_t auth_rejected;          /**< connections closed for a failed or unfinished handshake (intruders included). */
    uint64_t auth_macs_out;          /**< frame tags computed (FRAMES). */
    uint64_t auth_macs_in;           /**< frame tags verified, good or bad (FRAMES). */
    uint64_t auth_mac_failures;      /**< frame tags that did not verify: the link is closed, the frame never reaches the core. */
    uint64_t connections_refused;    /**< accepted connections closed because the predecessor is already there. */
    uint64_t accepts_rejected;       /**< connections the transport closed at once: no free connection id (rc_io_stats). */
    uint64_t auth_cipher_bytes;      /**< frame bytes encrypted plus decrypted (ENCRYPT; tags count in auth_macs_*). */
} rc_engine_stats;

typedef struct rc_engine rc_engine;

/**
 * Validates the settings (-EINVAL) and allocates everything. The core's queue sizes follow rc_lcr.h's
 * sizing rules from `window`.
 *
 * The receive buffer is released only as a prefix, so one received message that waits for its ACK
 * holds every byte received after it. Between a message and its ACK the predecessor can send what was
 * in its forward queue (at most the other origins' windows, (n − 1) × window_bytes) plus about as
 * much of its own (fairness alternates), plus its own window: about 2n windows. The byte window is
 * released when an own message is stable at its origin, and the ACK that makes it stable there still
 * has to travel on to the other processes, ahead of the origin's next messages (FIFO links): an origin
 * can have up to two windows not yet stable at some process, which halves the margin below. The rule
 * keeps a factor of 4 over 2n windows: recv_buffer_bytes ≥ 8 × nodes × (window_bytes + largest frame); 0 picks
 * exactly that, rounded up to whole MiB. If the buffer still fills and the ring stops moving for
 * stall_ms, the engine fails with -ENOBUFS rather than hang (raise recv_buffer_bytes or lower
 * window_bytes).
 */
int rc_engine_create(rc_engine **engine, const rc_engine_settings *settings);
/** Listens, then starts the engine thread (which connects to the successor). -errno (-EADDRINUSE …). */
int rc_engine_start(rc_engine *engine);
/** Asks the thread to stop, waits for it (bounded), closes the connections. Idempotent. */
void rc_engine_stop(rc_engine *engine);
/** Stops if needed and frees everything. Outstanding views become invalid. */
void rc_engine_destroy(rc_engine *engine);

/** Current state; `error` (may be NULL) gets the -errno / rc_wire_error that made it fail. */
rc_engine_state rc_engine_status(const rc_engine *engine, int *error);

/**
 * Hands one application message to the engine (producer thread only). `bytes` must stay untouched
 * until the own delivery carrying `token` is released. Returns 0; -EAGAIN when full (wait on
 * rc_engine_space_fd): the broadcast ring is full, or the bytes handed over and not yet stable would exceed
 * the byte window by more than the staging (staging_bytes, or an eighth of the window) (one message is always admitted), so that backpressure reaches the caller instead of
 * a queue growing in front of the window; -EMSGSIZE beyond batch_bytes_max; -EPIPE when the engine is stopped or failed.
 */
int rc_engine_broadcast(rc_engine *engine, const void *bytes, uint32_t length, uint64_t token);
/** The bytes rc_engine_broadcast admits beyond the byte window now (staging_bytes, or an eighth of the current
 *  window): what a queue in front of the engine should hold at most, too (any thread). */
uint64_t rc_engine_staging_bytes(const rc_engine *engine);
/** eventfd that becomes readable when broadcast space may have freed (read it to clear). */
int rc_engine_space_fd(const rc_engine *engine);

/** Up to `max` deliveries not yet released, in order (consumer thread only). Returns the count. */
uint32_t rc_engine_deliveries_peek(rc_engine *engine, rc_engine_delivery *out, uint32_t max);
/** Releases the first `count` peeked deliveries: their views become invalid. */
void rc_engine_deliveries_release(rc_engine *engine, uint32_t count);
/** eventfd that becomes readable when deliveries arrive or the engine stops (read it to clear). */
int rc_engine_delivery_fd(const rc_engine *engine);

/** Which neighbour link broke the ring (rc_engine_lost_link). */
typedef enum rc_engine_link {
    RC_ENGINE_LINK_NONE = 0,
    RC_ENGINE_LINK_PREDECESSOR = 1, /**< the connection from the predecessor closed or failed */
    RC_ENGINE_LINK_SUCCESSOR = 2,   /**< the connection to the successor closed or could not be made */
} rc_engine_link;

/** The link whose loss failed the engine, or RC_ENGINE_LINK_NONE (any thread). */
rc_engine_link rc_engine_lost_link(const rc_engine *engine);

/** One message of `pending` handed out by rc_engine_freeze, with views of its application messages. */
typedef struct rc_engine_pending {
    uint32_t origin;                  /**< ring position of the broadcaster in this view. */
    uint64_t seq;                     /**< C_m[origin]. */
    uint32_t count;                   /**< application messages (entries of `apps`). */
    bool own;
    const uint64_t *clock;            /**< C_m, `nodes` entries. */
    const rc_engine_delivery *apps;   /**< bytes, length, token (own), origin_seq (final: what delivering it would
                                           give, the same at every process); view_id is 0. */
} rc_engine_pending;

/**
 * Called by rc_engine_freeze on the engine thread: first with `message` = NULL and `clock` = this
 * node's vector clock C (what it received, per origin), then once per message of pending in ≺ order
 * (undelivered here, each with its clock). Views are valid during the call only: copy what you keep.
 */
typedef void (*rc_engine_export_fn)(void *context, const uint64_t *clock, uint32_t nodes,
                                    const rc_engine_pending *message);

/**
 * Freezes the ring for a view change (Fig. 2.7: every process "first completes … then freezes those
 * procedures"). The engine thread stops receiving, sending and delivering; waits until every delivery
 * already in the delivery ring is released (so what the application saw is exactly what the core
 * delivered); calls `export` with C and every message of pending; then ends (state STOPPED, or stays
 * FAILED). Works on a running or a failed engine. Own application messages handed over and neither
 * delivered nor in pending are not exported: the caller still owns them (their tokens) and re-sends
 * them in the next view. Returns 0; -EALREADY if the engine was never started or already stopped;
 * -ETIMEDOUT if the deliveries were not released within `timeout_ms` (the engine is stopped then,
 * nothing exported).
 */
int rc_engine_freeze(rc_engine *engine, rc_engine_export_fn export, void *context, uint32_t timeout_ms);

/** A snapshot of the counters (any thread). */
rc_engine_stats rc_engine_stats_get(const rc_engine *engine);

/**
 * Per ring position, the last origin_seq delivered (the base given at creation if none): `nodes` entries into
 * `out`. Only once the engine thread no longer delivers (after rc_engine_freeze returned 0, or rc_engine_stop).
 */
void rc_engine_origin_delivered(const rc_engine *engine, uint64_t *out, uint32_t nodes);

#ifdef __cplusplus
}
#endif

#endif /* RINGCAST_RC_ENGINE_H */
