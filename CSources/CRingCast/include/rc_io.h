/*
 * rc_io.h — the io_uring TCP transport: one ring per engine thread, a few TCP connections.
 *
 * Shape (io_uring guide §8): the RingCast engine thread owns one `rc_io`; it holds a connection from
 * its predecessor and one to its successor (plus a listener). Everything is allocated in
 * `rc_io_create` (the receive buffers, the send queues, the ring); nothing is allocated afterwards.
 * liburing stays inside the C target: this header is all Swift sees.
 *
 * Connections are named by a small id (0..conns_max-1) returned by rc_io_listen / rc_io_connect /
 * rc_io_adopt or carried by an ACCEPTED event. The caller's duties:
 *   1. call rc_io_wait regularly (with DEFER_TASKRUN nothing completes unless the owner thread enters
 *      the kernel, guide §5) and handle every event it returns;
 *   2. after DATA: rc_io_recv_peek, parse in place, rc_io_recv_consume what is done. Bytes not
 *      consumed stay; a full buffer (or rc_io_recv_pause) stops receiving — TCP backpressure;
 *   3. memory lent to rc_io_send stays untouched until its SEND_DONE event (zero-copy: until the
 *      kernel's notification, guide §2);
 *   4. after CLOSED or CONNECT_FAILED (or whenever it is done) call rc_io_close; the id may be reused
 *      once every token of the connection has been reported (SEND_DONE with error -ECANCELED for
 *      bytes that never left).
 * Only the thread that called rc_io_create may call the other functions (IORING_SETUP_SINGLE_ISSUER).
 */
#ifndef RINGCAST_RC_IO_H
#define RINGCAST_RC_IO_H

#include "rc_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Documented maxima of every setting; rc_io_create returns -EINVAL beyond them. */
#define RC_IO_CONNS_MAX 256u                       /**< listeners + connections per rc_io */
#define RC_IO_RECV_BUFFER_BYTES_MAX (256u << 20)   /**< mirrored receive buffer per connection */
#define RC_IO_SEND_QUEUE_MAX (1u << 16)            /**< queued send entries per connection */
#define RC_IO_SEND_IOVECS_MAX 1024u                /**< iovecs per sendmsg (IOV_MAX) */
#define RC_IO_SEND_BYTES_MAX (64u << 20)           /**< bytes per sendmsg */
#define RC_IO_SEND_INFLIGHT_BYTES_MAX (1u << 30)   /**< sent but not yet released bytes per connection */
#define RC_IO_ZC_PENDING_MAX 1024u                 /**< zero-copy sends awaiting their notification */
#define RC_IO_ZC_PROBE_SENDS_MAX 4096u
#define RC_IO_CONNECT_RETRIES_MAX 1000u
#define RC_IO_CONNECT_BACKOFF_NS_MAX 10000000000ull /**< 10 s */
#define RC_IO_SQ_ENTRIES_MAX 4096u
/** Sends smaller than this never go zero-copy (guide §3: "only effective over around 10 KB"). */
#define RC_IO_ZC_THRESHOLD_BYTES_DEFAULT 16384u

typedef enum rc_io_zerocopy {
    RC_IO_ZEROCOPY_AUTO = 0, /**< probe the first sends, keep zero-copy only if the kernel really does it */
    RC_IO_ZEROCOPY_ON = 1,   /**< zero-copy for every send ≥ the threshold */
    RC_IO_ZEROCOPY_OFF = 2,  /**< plain copying sends */
} rc_io_zerocopy;

/** What a connection currently does (auto mode starts PROBING and ends ON or OFF). */
typedef enum rc_io_zc_state {
    RC_IO_ZC_STATE_OFF = 0,
    RC_IO_ZC_STATE_ON = 1,
    RC_IO_ZC_STATE_PROBING = 2,
} rc_io_zc_state;

typedef struct rc_io_settings {
    uint32_t conns_max;               /**< listeners + connections, 1..RC_IO_CONNS_MAX */
    uint32_t recv_buffer_bytes;       /**< per connection; a multiple of the page size */
    uint32_t recv_bytes_max;          /**< cap of one IORING_OP_RECV, ≤ recv_buffer_bytes */
    uint32_t send_queue_max;          /**< send entries queued per connection */
    uint32_t send_iovecs_max;         /**< iovecs gathered into one sendmsg */
    uint32_t send_bytes_max;          /**< bytes gathered into one sendmsg (one entry may exceed it) */
    uint32_t send_inflight_bytes_max; /**< no new send while this many bytes await release */
    uint32_t zc_pending_max;          /**< zero-copy sends awaiting their notification, per connection */
    uint32_t zc_probe_sends;          /**< auto mode: zero-copy sends probed before deciding */
    uint32_t zc_threshold_bytes;      /**< smallest send that goes zero-copy */
    uint32_t connect_retries;         /**< extra connect attempts after a refusal/unreachable */
    uint64_t connect_backoff_ns;      /**< wait between attempts (doubles each time) */
    uint32_t sq_entries;              /**< submission queue size; the CQ is sized from the limits */
    int32_t zerocopy;                 /**< rc_io_zerocopy for new connections */
    char congestion[16];              /**< TCP_CONGESTION per socket ("" = system default) */
    uint32_t notsent_lowat;           /**< TCP_NOTSENT_LOWAT in bytes, ≤ send_bytes_max (0 = system default) */
    bool congestion_fallback;         /**< when the kernel refuses `congestion` (EPERM: an unprivileged process
                                           and a name outside tcp_allowed_congestion_control; ENOENT: not built),
                                           keep the system default and count congestion_refused instead of failing */
} rc_io_settings;
_Static_assert(sizeof(rc_io_settings) == 88, "rc_io_settings is shared with Swift");

/** Fills sane defaults (4 MiB receive buffer, 1 MiB sends of ≤ 64 iovecs, zero-copy off). */
void rc_io_settings_default(rc_io_settings *settings);

typedef enum rc_io_event_type {
    RC_IO_EVENT_ACCEPTED = 1,       /**< conn is new; aux = listener id */
    RC_IO_EVENT_CONNECTED = 2,      /**< rc_io_connect succeeded */
    RC_IO_EVENT_CONNECT_FAILED = 3, /**< error = -errno of the last attempt; call rc_io_close */
    RC_IO_EVENT_DATA = 4,           /**< new bytes arrived: rc_io_recv_peek */
    RC_IO_EVENT_SEND_DONE = 5,      /**< token's memory is free again; error 0 or -ECANCELED */
    RC_IO_EVENT_CLOSED = 6,         /**< connection lost: error 0 = peer closed (EOF), -ECONNRESET = reset, other -errno */
    RC_IO_EVENT_WAKE = 7,           /**< rc_io_wake was called (conn = RC_IO_CONN_NONE); wakes coalesce */
} rc_io_event_type;

/** The `conn` of events that belong to no connection (WAKE). */
#define RC_IO_CONN_NONE 0xffffffffu

typedef struct rc_io_event {
    uint32_t type;  /**< rc_io_event_type */
    uint32_t conn;  /**< connection id */
    int32_t error;  /**< 0 or -errno, see the type */
    uint32_t aux;   /**< ACCEPTED: listener id */
    uint64_t token; /**< SEND_DONE: the caller's token */
} rc_io_event;
_Static_assert(sizeof(rc_io_event) == 24, "rc_io_event is shared with Swift");

/** A socket address, parsed once (opaque bytes: a struct sockaddr_in or sockaddr_in6). */
typedef struct rc_io_addr {
    uint8_t bytes[28];
    uint32_t length;
} rc_io_addr;
_Static_assert(sizeof(rc_io_addr) == 32, "rc_io_addr is shared with Swift");

typedef struct rc_io_stats {
    uint64_t bytes_in, bytes_out;
    uint64_t recvs;             /**< completed IORING_OP_RECV with data */
    uint64_t recv_full_stalls;  /**< times receiving stopped because the buffer was full or paused */
    uint64_t sends;             /**< completed send operations (plain + zero-copy) */
    uint64_t sends_zc;          /**< zero-copy send operations */
    uint64_t zc_notifications;  /**< notifications received */
    uint64_t zc_copied;         /**< notifications saying the kernel copied after all */
    uint64_t short_sends;       /**< sends that moved fewer bytes than asked (remainder resent first) */
    uint64_t send_iovecs;       /**< iovecs over all sends (÷ sends = gather factor) */
    uint64_t enobufs;           /**< -ENOBUFS completions that forced a re-arm */
    uint64_t accepts, accepts_rejected; /**< rejected: no free connection id (the socket is closed) */
    uint64_t connects, connect_retries;
    uint64_t cqes, waits;
    uint32_t ring_flags;        /**< the IORING_SETUP_* flags the kernel accepted */
    uint32_t defer_taskrun;     /**< 1 = DEFER_TASKRUN, 0 = fell back to COOP_TASKRUN */
    uint64_t congestion_refused; /**< sockets left on the system default because `congestion` was refused */
} rc_io_stats;

typedef struct rc_io rc_io;

/** Validates `settings` (-EINVAL), maps the receive buffers and sets up the ring. */
int rc_io_create(rc_io **io, const rc_io_settings *settings);
/** Cancels everything in flight, waits (bounded, ~2 s) for the completions, closes and unmaps. */
void rc_io_destroy(rc_io *io);

/** Parses an IPv4 or IPv6 literal or "localhost" (→ 127.0.0.1). -EINVAL otherwise. */
int rc_io_addr_parse(const char *host, uint16_t port, rc_io_addr *out);
/** The port of a bound or parsed address. */
uint16_t rc_io_addr_port(const rc_io_addr *addr);

/** Listens (SO_REUSEADDR) and keeps one accept in flight. Returns the listener id or -errno (-EADDRINUSE). */
int rc_io_listen(rc_io *io, const rc_io_addr *addr, int backlog);
/** The port a listener is bound to (after listening on port 0). -errno on a bad id. */
int rc_io_listen_port(rc_io *io, uint32_t listener);
/** Starts a connect with bounded retries. Returns the id; the outcome arrives as CONNECTED / CONNECT_FAILED. */
int rc_io_connect(rc_io *io, const rc_io_addr *addr);
/** Takes over a connected TCP socket (e.g. accepted elsewhere); sets TCP_NODELAY. Returns the id. */
int rc_io_adopt(rc_io *io, int fd);
/** Half-close: no more sends (shutdown SHUT_WR) once the queue is empty; the peer sees EOF. */
int rc_io_shutdown(rc_io *io, uint32_t conn);
/** Releases the id: cancels in-flight work, closes the socket; pending tokens come back -ECANCELED. */
int rc_io_close(rc_io *io, uint32_t conn);
/** Stops a listener at once (its port can be bound again right away); call rc_io_close later. */
int rc_io_listener_stop(rc_io *io, uint32_t conn);

/**
 * Queues `bytes` at `base` (memory the caller owns until SEND_DONE(token)). Returns 0, -EAGAIN when
 * the queue is full (backpressure: retry after a SEND_DONE), -ENOTCONN / -EPIPE on a dead connection.
 */
int rc_io_send(rc_io *io, uint32_t conn, const void *base, uint32_t bytes, uint64_t token);
/** Free entries in the connection's send queue (0 on a bad id). */
uint32_t rc_io_send_space(const rc_io *io, uint32_t conn);

/** Lends the received, not yet consumed bytes: always contiguous (mirrored buffer). */
int rc_io_recv_peek(rc_io *io, uint32_t conn, const uint8_t **data, size_t *bytes);
/** Frees the first `bytes` of what rc_io_recv_peek showed. -EINVAL if more than received. */
int rc_io_recv_consume(rc_io *io, uint32_t conn, size_t bytes);
/** Pauses (true) or resumes receiving; a paused connection keeps no recv in flight. */
int rc_io_recv_pause(rc_io *io, uint32_t conn, bool paused);

/** Per-connection zero-copy mode (rc_io_zerocopy). Takes effect for the next send. */
int rc_io_zerocopy_set(rc_io *io, uint32_t conn, int32_t mode);
/** rc_io_zc_state of the connection, or -errno. */
int rc_io_zerocopy_state(const rc_io *io, uint32_t conn);

/**
 * Makes the owner's rc_io_wait return a WAKE event (e.g. after another thread filled a queue for the
 * engine). The only call that any thread may make: it just writes to an eventfd the ring is reading.
 * It must not race with rc_io_destroy (the caller stops its producers first).
 */
int rc_io_wake(rc_io *io);

/**
 * Submits queued work and waits up to `timeout_ns` (0 = poll, < 0 = forever) for at least one event;
 * fills up to `max` events. Returns the count (0 on timeout or signal) or -errno.
 */
int rc_io_wait(rc_io *io, rc_io_event *events, uint32_t max, int64_t timeout_ns);

rc_io_stats rc_io_stats_get(const rc_io *io);
/** Share of sends the kernel really did without copying (zc notifications not copied ÷ all sends). */
double rc_io_stats_zerocopy_fraction(const rc_io_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* RINGCAST_RC_IO_H */
