/*
 * engine_internal.h — the engine's state, shared by engine*.c only.
 */
#ifndef RINGCAST_ENGINE_INTERNAL_H
#define RINGCAST_ENGINE_INTERNAL_H

#include "rc_engine.h"
#include "rc_window.h"
#include "rc_wire.h"

#include <pthread.h>
#include <stdatomic.h>

/* Send tokens say what a SEND_DONE releases: the kind in the top byte, an index below. */
enum {
    ENGINE_TOKEN_HOP = 1,      /* a hop header slot */
    ENGINE_TOKEN_FORWARD = 2,  /* the body of received record `index` */
    ENGINE_TOKEN_OWN = 3,      /* an own message header slot */
    ENGINE_TOKEN_PAYLOAD = 4,  /* an own payload: nothing to release here (own delivery releases it) */
    ENGINE_TOKEN_AUTH = 5,     /* handshake bytes: they live in the link's state until the connection is closed */
    ENGINE_TOKEN_SEAL = 6,     /* a sealed frame's slot (mode ENCRYPT) */
};

/* Connection ids of the engine's transport: listener, predecessor, successor, and room for connections that
 * are still proving themselves (authenticated links) or are refused (open links). */
#define ENGINE_CONNS_MAX 8u
/* A hop slot holds the hop header and, with frame MACs, the frame's tag (sent after the frame's last piece). */
#define ENGINE_HOP_SLOT_BYTES (RC_WIRE_HOP_MAX + RC_AUTH_TAG_BYTES)

/* One connection's handshake (engine_auth.c). */
typedef struct engine_auth_link {
    bool active;            /* the handshake runs */
    bool successor;         /* the connection we dialled (initiator), else one accepted (responder) */
    uint64_t deadline_ns;   /* by then done, or closed and counted */
    rc_auth_handshake handshake; /* its `out` is the memory of the handshake's sends: kept until the id is reused */
} engine_auth_link;
#define ENGINE_TOKEN(kind, index) (((uint64_t)(kind) << 56) | (uint64_t)(index))
#define ENGINE_TOKEN_KIND(token) ((uint32_t)((token) >> 56))
#define ENGINE_TOKEN_INDEX(token) ((token) & ((1ull << 56) - 1))

/* A received DATA frame whose bytes are still in the receive buffer. Non-DATA frames need no record:
 * their bytes are released with the record before them (the buffer is released as a prefix). */
typedef struct engine_record {
    uint64_t stream_offset;   /* where the frame starts in the received byte stream */
    uint32_t bytes;           /* the whole frame */
    uint32_t hop_bytes;       /* the hop header: the message block starts after it */
    uint32_t apps_unreleased; /* application messages delivered or to deliver, not yet released */
    bool forward_pending;     /* handed to the core for forwarding and not yet sent */
    bool in_core;             /* accepted by the core and not yet delivered */
} engine_record;

/* One application message the application broadcast (its memory stays the application's). */
typedef struct engine_app {
    const uint8_t *bytes;
    uint32_t length;
    uint64_t token;
    /* Where its time goes (rc_engine_stats' latency decomposition), CLOCK_MONOTONIC ns: handed over by
     * the producer, taken into the core, sent to the successor, stable here. 0 = not yet. */
    uint64_t broadcast_ns, taken_ns, sent_ns, stable_ns;
} engine_app;

/* A delivery in the ring, with what its release frees. */
typedef struct engine_delivery_slot {
    rc_engine_delivery delivery;
    uint64_t record; /* received: the record to release; UINT64_MAX for own messages */
} engine_delivery_slot;

/* An own LCR message sent and not yet stable: what the byte window releases when its ACK comes back. */
typedef struct engine_own_sent {
    uint64_t seq;
    uint64_t bytes;
    uint64_t first_app;      /* index of its first application message (the core's ref) */
    uint32_t count;          /* application messages */
    uint64_t sent_ns;        /* handed to the transport: the round-trip sample's start */
} engine_own_sent;

/* A single-producer single-consumer ring of fixed-size entries; head/tail count entries forever. */
typedef struct engine_spsc {
    _Atomic uint64_t head; /* consumer position */
    _Atomic uint64_t tail; /* producer position */
    uint32_t capacity;
} engine_spsc;

struct rc_engine {
    rc_engine_settings settings;
    rc_lcr_settings lcr_settings;

    /* Owned by the engine thread once started. */
    rc_io *io;
    rc_lcr *core;
    void *core_memory;
    int listener;
    int successor_conn;   /* -1 until connected */
    int predecessor_conn; /* -1 until accepted */
    bool predecessor_verified;

    /* Authenticated links (engine_auth.c): handshakes per connection id, then the successor's and the
     * predecessor's frame MACs (FRAMES). */
    engine_auth_link auth_links[ENGINE_CONNS_MAX];
    rc_auth_mac *mac_send, *mac_recv;
    uint32_t mac_slot;            /* the hop slot of the frame being tagged */
    bool mac_open;                /* a frame's pieces are being queued and tagged */
    uint64_t mac_verified_end;    /* stream offset up to which received frames were verified */
    /* Sealed frames (mode ENCRYPT, engine_send.c / engine_recv.c): each frame is encrypted into a slot of its own
     * (released at its SEND_DONE); received ones are opened in place. */
    rc_auth_seal *seal_send, *seal_recv;
    uint8_t *seal_slots;
    uint32_t *seal_free;
    uint32_t seal_free_count, seal_slots_max, seal_slot_bytes;
    uint32_t seal_slot, seal_filled, seal_length; /* the frame being sealed */
    bool seal_open;
    uint64_t opened_end;          /* stream offset up to which received frames were opened */

    engine_record *records; /* ring of records_max, positions records_head..records_tail */
    uint32_t records_max;
    uint64_t records_head, records_tail;
    uint64_t stream_consumed; /* bytes released to rc_io_recv_consume */
    uint64_t stream_parsed;   /* bytes parsed into frames */
    bool core_refused;        /* the core said -EAGAIN for the frame at stream_parsed */

    engine_app *apps;        /* the core's send queue, mirrored: app index % window */
    uint64_t apps_accepted;  /* application messages handed to the core */
    uint64_t own_inflight_bytes; /* their payload bytes not yet delivered locally */
    uint64_t own_unstable_bytes; /* their payload bytes not yet stable here (the byte window, n > 1) */
    uint64_t own_unstable_apps;  /* and their count (at most half the window, n > 1) */
    rc_window window;            /* the byte window's current size (settings.window_adaptive), rc_window.h */
    uint64_t *window_origin_mark; /* per origin: origin_delivered when the window's epoch started */
    engine_own_sent *own_sent;   /* ring of own_sent_max: own LCR messages sent, not yet stable, in seq order */
    uint32_t own_sent_max;
    uint64_t own_sent_head, own_sent_tail;
    uint64_t *origin_delivered; /* per origin: application messages delivered (origin_seq) */

    uint8_t *hop_slots;      /* hop_slots_max × RC_WIRE_HOP_MAX */
    uint32_t *hop_free;
    uint32_t hop_free_count, hop_slots_max;
    uint8_t *own_slots;      /* own_slots_max × own_slot_bytes: own message headers */
    uint32_t *own_free;
    uint32_t own_free_count, own_slots_max, own_slot_bytes;
    uint32_t *own_lengths;   /* scratch: the application lengths of the batch being encoded */

    uint64_t last_send_ns;
    uint64_t starved_since_ns;  /* the link ran dry at this time (0: it has a frame queued) */
    bool starved_window;        /* ... while own broadcasts were waiting for the window */
    uint64_t stall_mark, stall_since_ns; /* progress seen last, and since when nothing moved */
    uint64_t connect_deadline_ns;

    /* Shared with the producer (broadcasts) and the consumer (deliveries). */
    engine_spsc broadcast_ring;
    engine_app *broadcast_slots;
    engine_spsc delivery_ring;
    engine_delivery_slot *delivery_slots;
    engine_delivery_slot *delivery_scratch; /* batch_count_max entries: one LCR message expanded */
    uint64_t deliveries_reclaimed; /* engine thread: released slots already processed */
    int space_fd, delivery_fd;
    _Atomic bool producer_waiting;
    /* Own payload bytes handed to rc_engine_broadcast and not yet stable (n = 1: not yet delivered), and the
     * byte window they are admitted against: the window is checked where the producer hands a message
     * over, so that no queue in front of it grows while the window is full (rc_engine_broadcast). */
    _Atomic uint64_t admitted_bytes;
    _Atomic uint64_t window_bytes_now;
    _Atomic bool sleeping;       /* the engine thread is (about to be) blocked in rc_io_wait */
    pthread_mutex_t wake_lock;   /* rc_io_wake from other threads vs rc_io_destroy at shutdown */
    bool io_alive;

    /* rc_engine_freeze: set by the caller, carried out by the engine thread before it ends. */
    _Atomic bool freeze_requested;
    rc_engine_export_fn export_fn;
    void *export_context;
    uint64_t freeze_deadline_ns;
    int freeze_result;
    bool freeze_done; /* guarded by start_lock, signalled on start_cond */
    rc_engine_delivery *export_apps; /* batch_count_max entries: one pending message's views */
    _Atomic int lost_link; /* rc_engine_link */

    pthread_t thread;
    bool thread_started;
    _Atomic bool stop_requested;
    _Atomic int state;
    _Atomic int error;
    pthread_mutex_t start_lock;
    pthread_cond_t start_cond;
    bool start_reported;
    int start_error;

    rc_engine_stats stats;      /* engine thread's working copy */
    pthread_mutex_t stats_lock; /* guards `published`, copied from `stats` a few times per ms at most */
    rc_engine_stats published;
    uint64_t published_ns;
};

/* engine_spsc.c */
void engine_spsc_init(engine_spsc *ring, uint32_t capacity);
uint32_t engine_spsc_free(const engine_spsc *ring);
uint32_t engine_spsc_used(const engine_spsc *ring);
void engine_eventfd_signal(int fd);
void engine_wake(rc_engine *engine);

/* engine_recv.c */
int engine_recv_process(rc_engine *engine);
void engine_record_release(rc_engine *engine);
void engine_record_forward_done(rc_engine *engine, uint64_t record);
const uint8_t *engine_record_body(rc_engine *engine, uint64_t record, uint32_t *body_bytes);
engine_record *engine_record_get(rc_engine *engine, uint64_t record);

/* engine_send.c */
int engine_send_process(rc_engine *engine, uint64_t now_ns);
void engine_send_done(rc_engine *engine, uint64_t token);
void engine_broadcasts_take(rc_engine *engine, uint64_t now_ns);
void engine_admitted_release(rc_engine *engine, uint64_t bytes);
void engine_own_stable_release(rc_engine *engine, uint64_t now_ns);
void engine_window_progress(rc_engine *engine, uint64_t now_ns);
bool engine_broadcast_admissible(rc_engine *engine, uint64_t now_ns);
uint64_t engine_window_bytes(const rc_engine *engine);
uint64_t engine_staging_bytes(const rc_engine *engine, uint64_t window);
uint32_t engine_unsent_bytes_max(const rc_engine *engine);

/* engine_views.c: the application messages of one LCR message, one view at a time. */
typedef struct engine_app_views {
    rc_engine *engine;
    rc_wire_app_iter wire; /* a received message's block in the receive buffer */
    uint64_t ref;          /* rc_lcr_message.ref: the first own app index, or the record */
    uint32_t origin, count, next;
    bool own;
} engine_app_views;
void engine_app_views_init(engine_app_views *views, rc_engine *engine, uint32_t origin, bool own, uint64_t ref,
                           uint32_t count);
bool engine_app_views_next(engine_app_views *views, rc_engine_delivery *out);

/* engine_deliver.c */
void engine_deliver_process(rc_engine *engine);
void engine_deliveries_reclaim(rc_engine *engine);

/* engine_freeze.c */
bool engine_freeze_step(rc_engine *engine, uint64_t now_ns);
void engine_freeze_release_port(rc_engine *engine);
void engine_freeze_done(rc_engine *engine);

/* engine_auth.c */
bool engine_auth_enabled(const rc_engine *engine);
void engine_auth_on_accepted(rc_engine *engine, uint32_t conn);
void engine_auth_on_connected(rc_engine *engine, uint32_t conn);
bool engine_auth_on_data(rc_engine *engine, uint32_t conn);
bool engine_auth_on_closed(rc_engine *engine, uint32_t conn, int error);
void engine_auth_expire(rc_engine *engine, uint64_t now_ns);
void engine_auth_release(rc_engine *engine);

/* engine.c: the leaves every other engine file uses (engine_thread.c holds create/destroy). */
bool engine_settings_complete(rc_engine_settings *settings);
uint64_t engine_now_ns(void);
void engine_fail(rc_engine *engine, int error);
void engine_stats_publish(rc_engine *engine, uint64_t now_ns, bool force);
uint64_t engine_frame_bytes_max(const rc_engine_settings *settings);

#endif /* RINGCAST_ENGINE_INTERNAL_H */
