/*
 * io_internal.h — the transport's private state, shared by the io_*.c files (not seen by Swift).
 */
#ifndef RINGCAST_IO_INTERNAL_H
#define RINGCAST_IO_INTERNAL_H

#include "rc_io.h"

#include <liburing.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* Constants liburing 2.3 lacks (first in 2.4); values from the kernel uapi, guide §1. */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

/* What an operation in flight is; packed into the low byte of user_data. */
enum rc_io_op {
    RC_IO_OP_RECV = 1,
    RC_IO_OP_SEND = 2,
    RC_IO_OP_ACCEPT = 3,
    RC_IO_OP_CONNECT = 4,
    RC_IO_OP_BACKOFF = 5,
    RC_IO_OP_CANCEL = 6,
    RC_IO_OP_WAKE = 7,
};

enum rc_io_conn_state {
    RC_IO_CONN_FREE = 0,
    RC_IO_CONN_LISTENING,
    RC_IO_CONN_CONNECTING,
    RC_IO_CONN_ESTABLISHED,
    RC_IO_CONN_LOST,    /**< EOF/error/connect failure seen; data stays readable until rc_io_close */
    RC_IO_CONN_CLOSING, /**< rc_io_close called; freed when nothing is in flight and tokens are reported */
};

/* Events waiting to be reported, one bit each (tokens are counted, not flagged). */
enum rc_io_pending {
    RC_IO_PENDING_ACCEPTED = 1u << 0,
    RC_IO_PENDING_CONNECTED = 1u << 1,
    RC_IO_PENDING_DATA = 1u << 2,
    RC_IO_PENDING_CONNECT_FAILED = 1u << 3,
    RC_IO_PENDING_CLOSED = 1u << 4,
};

typedef struct rc_io_send_entry {
    const uint8_t *base;
    uint32_t bytes;
    uint64_t token;
} rc_io_send_entry;

/* One send operation until its bytes are released: at its CQE (copy) or its notification (zero-copy). */
typedef struct rc_io_send_record {
    uint64_t release_upto; /**< entries fully sent once this send completed (absolute index) */
    uint32_t bytes;
    bool completed;        /**< the send CQE arrived */
    bool released;         /**< nothing more will come (no notification, or it arrived) */
} rc_io_send_record;

typedef struct rc_io_conn {
    uint32_t state;
    uint32_t pending;        /**< rc_io_pending bits */
    int fd;
    uint8_t generation;      /**< detects completions meant for an earlier user of this id */
    int32_t error;           /**< CLOSED / CONNECT_FAILED error */
    uint32_t listener;       /**< ACCEPTED: which listener */
    uint32_t ops;            /**< recv/send/accept/connect/backoff in flight (not notifications) */
    bool recv_armed, send_armed, paused, full_stalled, want_shutdown, shut, cancel_sent;

    /* Receive: a mirrored buffer, so [head, tail) is always contiguous (guide §4.2). */
    uint8_t *recv_base;
    uint64_t recv_head, recv_tail;

    /* Send queue (absolute indices): reported ≤ done ≤ sent ≤ tail. */
    rc_io_send_entry *queue;
    uint64_t q_tail, q_sent, q_done, q_reported;
    uint32_t q_sent_offset;  /**< bytes of entry q_sent already sent */
    uint64_t q_ok_end;       /**< entries below this were released with success; the rest -ECANCELED */
    rc_io_send_record *records;
    uint64_t r_head, r_tail; /**< records in flight or awaiting notification */
    uint64_t unreleased_bytes;
    struct iovec *iov;
    struct msghdr msg;

    /* Zero-copy (guide §2, §8.5). */
    int32_t zc_mode;
    uint32_t zc_probed, zc_probe_copied;
    bool zc_decided_off, zc_decided_on;

    /* Connect with retries. */
    rc_io_addr peer;
    uint32_t connect_attempts;
    struct __kernel_timespec backoff;
} rc_io_conn;

struct rc_io {
    struct io_uring ring;
    rc_io_settings settings;
    rc_io_stats stats;
    rc_io_conn *conns;
    uint32_t scan_start;     /**< round-robin start for fairness between connections */
    int wake_fd;             /**< eventfd other threads write to (rc_io_wake) */
    uint64_t wake_value;     /**< the read target of the eventfd read in flight */
    bool wake_armed, wake_pending;
};

/* user_data = op | id << 8 | generation << 24 | aux << 32 (aux: the send record index). */
static inline uint64_t rc_io_user_data(uint32_t op, uint32_t id, uint8_t generation, uint32_t aux) {
    return (uint64_t)op | ((uint64_t)id << 8) | ((uint64_t)generation << 24) | ((uint64_t)aux << 32);
}

/* io_slots.c: below every other io file. */
struct io_uring_sqe *rc_io_sqe_get(rc_io *io);
rc_io_conn *rc_io_conn_get(const rc_io *io, uint32_t id);
/* io_conn.c */
int rc_io_socket_configure(rc_io *io, int fd);
void rc_io_conn_lost(rc_io *io, uint32_t id, int32_t error);
void rc_io_conn_reset(rc_io *io, uint32_t id);
void rc_io_conn_progress(rc_io *io, uint32_t id);
void rc_io_on_accept(rc_io *io, uint32_t id, int32_t res);
void rc_io_on_connect(rc_io *io, uint32_t id, int32_t res);
void rc_io_on_backoff(rc_io *io, uint32_t id);
int rc_io_conn_alloc(rc_io *io);
/* io_recv.c */
int rc_io_mirror_map(size_t bytes, uint8_t **base);
void rc_io_mirror_unmap(uint8_t *base, size_t bytes);
void rc_io_recv_arm(rc_io *io, uint32_t id);
void rc_io_on_recv(rc_io *io, uint32_t id, int32_t res);
/* io_send.c */
void rc_io_send_arm(rc_io *io, uint32_t id);
void rc_io_on_send(rc_io *io, uint32_t id, uint32_t record, const struct io_uring_cqe *cqe);
void rc_io_records_drain(rc_io *io, rc_io_conn *conn);
/* io_zerocopy.c */
bool rc_io_zc_wanted(const rc_io *io, const rc_io_conn *conn, uint32_t bytes);
void rc_io_zc_on_notification(rc_io *io, rc_io_conn *conn, int32_t res);
/* io_wake.c */
int rc_io_wake_open(rc_io *io);
void rc_io_wake_arm(rc_io *io);
void rc_io_on_wake(rc_io *io, int32_t res);
void rc_io_wake_close(rc_io *io);
/* io_events.c */
uint32_t rc_io_events_collect(rc_io *io, rc_io_event *events, uint32_t max);
bool rc_io_events_ready(const rc_io *io);

#endif /* RINGCAST_IO_INTERNAL_H */
