/*
 * io_send.c — the send path: a bounded queue of caller-owned iovecs, at most ONE send in flight.
 *
 * One send per socket at a time is not a taste: with 8 or 32 concurrent sends on one TCP socket the
 * guide saw the byte stream corrupted, because io_uring only orders the *issue* of requests and
 * retries a short/EAGAIN send after later ones went out (guide §0.1, §9.5; liburing man io_uring.7,
 * issues #1001/#1282). Throughput comes from size instead: every send gathers the queued entries into
 * one sendmsg of up to send_iovecs_max iovecs / send_bytes_max bytes (guide §8.4), with
 * MSG_WAITALL (the kernel finishes a partial stream send itself) and MSG_NOSIGNAL (a dead peer is an
 * -EPIPE completion, not a SIGPIPE). Should a send still come back short, the next send starts at the
 * first unsent byte, i.e. the remainder goes out before anything queued after it.
 *
 * Release: a copying send releases its entries at its CQE; a zero-copy send only at its notification
 * (guide §2 "two CQEs per request"). Notifications can arrive out of order, so each send gets a record
 * and entries are released in order as the oldest records complete.
 */
#include "io_internal.h"

#include <errno.h>
#include <string.h>

int rc_io_send(rc_io *io, uint32_t id, const void *base, uint32_t bytes, uint64_t token) {
    rc_io_conn *conn = rc_io_conn_get(io, id);
    if (conn == NULL) return -EBADF;
    if (conn->state == RC_IO_CONN_LOST) return -EPIPE;
    if (conn->state != RC_IO_CONN_ESTABLISHED && conn->state != RC_IO_CONN_CONNECTING) return -ENOTCONN;
    if (conn->want_shutdown) return -EPIPE;
    if (bytes == 0 || base == NULL) return -EINVAL;
    if (conn->q_tail - conn->q_reported >= io->settings.send_queue_max) return -EAGAIN;
    rc_io_send_entry *entry = &conn->queue[conn->q_tail % io->settings.send_queue_max];
    entry->base = base;
    entry->bytes = bytes;
    entry->token = token;
    conn->q_tail++;
    return 0;
}

uint32_t rc_io_send_space(const rc_io *io, uint32_t id) {
    const rc_io_conn *conn = rc_io_conn_get(io, id);
    if (conn == NULL) return 0;
    RC_ASSERT(conn->q_tail - conn->q_reported <= io->settings.send_queue_max);
    return io->settings.send_queue_max - (uint32_t)(conn->q_tail - conn->q_reported);
}

/* Gathers entries from the first unsent byte; returns the iovec count and total bytes. */
static uint32_t rc_io_send_gather(const rc_io *io, rc_io_conn *conn, uint32_t *total) {
    const rc_io_settings *s = &io->settings;
    uint32_t count = 0;
    uint64_t bytes = 0;
    uint32_t offset = conn->q_sent_offset;
    for (uint64_t i = conn->q_sent; i < conn->q_tail && count < s->send_iovecs_max; i++) {
        const rc_io_send_entry *entry = &conn->queue[i % s->send_queue_max];
        RC_ASSERT(offset < entry->bytes);
        uint64_t length = entry->bytes - offset;
        if (count > 0 && bytes + length > s->send_bytes_max) break;
        if (length > s->send_bytes_max) length = s->send_bytes_max; /* a huge entry goes in pieces */
        conn->iov[count].iov_base = (void *)(uintptr_t)(entry->base + offset);
        conn->iov[count].iov_len = (size_t)length;
        count++;
        bytes += length;
        offset = 0;
    }
    RC_ASSERT(count > 0 && bytes <= UINT32_MAX);
    *total = (uint32_t)bytes;
    return count;
}

static void rc_io_send_prep(rc_io *io, rc_io_conn *conn, struct io_uring_sqe *sqe, uint32_t count,
                            uint32_t bytes, bool zero_copy) {
    const int flags = MSG_WAITALL | MSG_NOSIGNAL;
    if (count == 1 && zero_copy) {
        io_uring_prep_send_zc(sqe, conn->fd, conn->iov[0].iov_base, bytes, flags, IORING_SEND_ZC_REPORT_USAGE);
    } else if (count == 1) {
        io_uring_prep_send(sqe, conn->fd, conn->iov[0].iov_base, bytes, flags);
    } else {
        memset(&conn->msg, 0, sizeof conn->msg);
        conn->msg.msg_iov = conn->iov;
        conn->msg.msg_iovlen = count;
        if (zero_copy) {
            io_uring_prep_sendmsg_zc(sqe, conn->fd, &conn->msg, (unsigned)flags);
            sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
        } else {
            io_uring_prep_sendmsg(sqe, conn->fd, &conn->msg, (unsigned)flags);
        }
    }
    io->stats.send_iovecs += count;
}

void rc_io_send_arm(rc_io *io, uint32_t id) {
    rc_io_conn *conn = &io->conns[id];
    const uint32_t records_max = io->settings.zc_pending_max + 1u;
    if (conn->state != RC_IO_CONN_ESTABLISHED || conn->send_armed || conn->q_sent == conn->q_tail) return;
    if (conn->r_tail - conn->r_head >= records_max) return;                   /* notifications outstanding */
    if (conn->unreleased_bytes >= io->settings.send_inflight_bytes_max) return; /* bytes in flight */
    uint32_t bytes = 0;
    uint32_t count = rc_io_send_gather(io, conn, &bytes);
    bool zero_copy = rc_io_zc_wanted(io, conn, bytes);
    uint32_t slot = (uint32_t)(conn->r_tail % records_max);
    conn->records[slot] = (rc_io_send_record){.release_upto = conn->q_sent, .bytes = bytes};
    conn->r_tail++;
    conn->unreleased_bytes += bytes;
    struct io_uring_sqe *sqe = rc_io_sqe_get(io);
    rc_io_send_prep(io, conn, sqe, count, bytes, zero_copy);
    io_uring_sqe_set_data64(sqe, rc_io_user_data(RC_IO_OP_SEND, id, conn->generation, slot));
    if (zero_copy) io->stats.sends_zc++;
    conn->send_armed = true;
    conn->ops++;
}

/* Advances the first-unsent position by `sent` bytes (whole entries, then an offset into the next). */
static void rc_io_send_advance(rc_io *io, rc_io_conn *conn, uint32_t sent) {
    const uint32_t queue_max = io->settings.send_queue_max;
    while (sent > 0) {
        RC_ASSERT(conn->q_sent < conn->q_tail);
        const rc_io_send_entry *entry = &conn->queue[conn->q_sent % queue_max];
        uint32_t left = entry->bytes - conn->q_sent_offset;
        if (sent < left) {
            conn->q_sent_offset += sent;
            return;
        }
        sent -= left;
        conn->q_sent++;
        conn->q_sent_offset = 0;
    }
}

/* Releases the oldest records that are complete, in order; their entries become reportable tokens. */
void rc_io_records_drain(rc_io *io, rc_io_conn *conn) {
    const uint32_t records_max = io->settings.zc_pending_max + 1u;
    while (conn->r_head < conn->r_tail) {
        rc_io_send_record *record = &conn->records[conn->r_head % records_max];
        if (!record->completed || !record->released) return;
        RC_ASSERT(record->release_upto >= conn->q_done && record->release_upto <= conn->q_sent);
        conn->q_done = record->release_upto;
        RC_ASSERT(conn->unreleased_bytes >= record->bytes);
        conn->unreleased_bytes -= record->bytes;
        conn->r_head++;
    }
}

void rc_io_on_send(rc_io *io, uint32_t id, uint32_t slot, const struct io_uring_cqe *cqe) {
    rc_io_conn *conn = &io->conns[id];
    RC_ASSERT(slot <= io->settings.zc_pending_max);
    rc_io_send_record *record = &conn->records[slot];
    if (cqe->flags & IORING_CQE_F_NOTIF) {
        rc_io_zc_on_notification(io, conn, cqe->res);
        record->released = true;
        rc_io_records_drain(io, conn);
        return;
    }
    RC_ASSERT(conn->ops > 0 && conn->send_armed);
    conn->ops--;
    conn->send_armed = false;
    int32_t res = cqe->res;
    if (res > 0) {
        if ((uint32_t)res < record->bytes) io->stats.short_sends++;
        rc_io_send_advance(io, conn, (uint32_t)res);
        io->stats.bytes_out += (uint32_t)res;
        io->stats.sends++;
    } else if (res < 0 && res != -EINTR && res != -EAGAIN) {
        rc_io_conn_lost(io, id, res);
    }
    record->release_upto = conn->q_sent;
    record->completed = true;
    /* Decide from F_MORE, never from res: failed zero-copy sends can still owe a notification (guide §2). */
    if (!(cqe->flags & IORING_CQE_F_MORE)) record->released = true;
    rc_io_records_drain(io, conn);
}
