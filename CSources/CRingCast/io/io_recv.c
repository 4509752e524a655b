/*
 * io_recv.c — the receive path: a mirrored ring buffer per connection, one IORING_OP_RECV in flight.
 *
 * Why a mirrored buffer and not multishot recv + provided buffers (guide §4.1 vs §4.2):
 *   - A node has exactly one inbound stream, so the provided-buffer ring's strength (many sockets
 *     sharing one pool) buys nothing, while its cost is real: one CQE per buffer (the guide measured
 *     exactly one 16/64 KiB buffer per CQE), frames straddling buffers needing a copy or an iovec
 *     pair, and ENOBUFS/re-arm storms when buffers are held (2.5–3.0 M re-arms in 3 s, guide §9.4).
 *   - The memfd mapped twice back to back makes every unconsumed range [head, tail) virtually
 *     contiguous, so any frame ≤ the buffer size is parsed in place, with no reassembly copy, and one
 *     recv fills all the free space (up to recv_bytes_max): the guide saw 0.5–1 MiB per CQE and
 *     141–224 ns/KiB forwarding CPU vs 206–268 for multishot.
 *   - Backpressure is exact and free: while the buffer is full or the consumer paused, no recv is
 *     in flight, so TCP's window closes and the sender stops. No ENOBUFS can happen.
 *   - Measured on this machine too: about a third of multishot's receiver CPU per byte, hundreds of
 *     KiB per CQE instead of 64 KiB (docs/tuning.md, "Receive path").
 * The cost: one SQE per recv (cheap when each recv moves hundreds of KiB) and twice the virtual
 * address space.
 */
#include "io_internal.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

/* memfd mapped twice at adjacent addresses: byte i and byte i + bytes are the same memory (guide §4.2). */
int rc_io_mirror_map(size_t bytes, uint8_t **base) {
    RC_ASSERT(base != NULL);
    RC_ASSERT(bytes > 0);
    *base = NULL;
    int fd = memfd_create("rc_io_recv", MFD_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = 0;
    if (ftruncate(fd, (off_t)bytes) < 0) rc = -errno;
    uint8_t *area = MAP_FAILED;
    if (rc == 0) {
        area = mmap(NULL, 2 * bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (area == MAP_FAILED) rc = -errno;
    }
    for (size_t copy = 0; rc == 0 && copy < 2; copy++) {
        void *at = mmap(area + copy * bytes, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
        if (at == MAP_FAILED) rc = -errno;
    }
    close(fd);
    if (rc < 0) {
        if (area != MAP_FAILED) munmap(area, 2 * bytes);
        return rc;
    }
    *base = area;
    return 0;
}

void rc_io_mirror_unmap(uint8_t *base, size_t bytes) {
    RC_ASSERT(base != NULL);
    int rc = munmap(base, 2 * bytes);
    RC_ASSERT(rc == 0);
}

static bool rc_io_recv_readable(const rc_io_conn *conn) {
    return conn->state == RC_IO_CONN_ESTABLISHED || conn->state == RC_IO_CONN_LOST;
}

/* Keeps one recv in flight into the free region, unless full or paused (that is the backpressure). */
void rc_io_recv_arm(rc_io *io, uint32_t id) {
    rc_io_conn *conn = &io->conns[id];
    if (conn->state == RC_IO_CONN_LISTENING && !conn->recv_armed) {
        struct io_uring_sqe *sqe = rc_io_sqe_get(io);
        io_uring_prep_accept(sqe, conn->fd, NULL, NULL, SOCK_CLOEXEC);
        io_uring_sqe_set_data64(sqe, rc_io_user_data(RC_IO_OP_ACCEPT, id, conn->generation, 0));
        conn->recv_armed = true;
        conn->ops++;
        return;
    }
    if (conn->state != RC_IO_CONN_ESTABLISHED || conn->recv_armed || conn->paused) return;
    uint64_t used = conn->recv_tail - conn->recv_head;
    RC_ASSERT(used <= io->settings.recv_buffer_bytes);
    uint64_t space = io->settings.recv_buffer_bytes - used;
    if (space == 0) {
        if (!conn->full_stalled) io->stats.recv_full_stalls++; /* count each stall once */
        conn->full_stalled = true;
        return;
    }
    uint32_t length = space < io->settings.recv_bytes_max ? (uint32_t)space : io->settings.recv_bytes_max;
    uint8_t *at = conn->recv_base + conn->recv_tail % io->settings.recv_buffer_bytes;
    struct io_uring_sqe *sqe = rc_io_sqe_get(io);
    io_uring_prep_recv(sqe, conn->fd, at, length, 0);
    io_uring_sqe_set_data64(sqe, rc_io_user_data(RC_IO_OP_RECV, id, conn->generation, 0));
    conn->recv_armed = true;
    conn->ops++;
}

void rc_io_on_recv(rc_io *io, uint32_t id, int32_t res) {
    rc_io_conn *conn = &io->conns[id];
    RC_ASSERT(conn->ops > 0 && conn->recv_armed);
    conn->ops--;
    conn->recv_armed = false;
    if (res > 0) {
        conn->recv_tail += (uint32_t)res;
        RC_ASSERT(conn->recv_tail - conn->recv_head <= io->settings.recv_buffer_bytes);
        io->stats.bytes_in += (uint32_t)res;
        io->stats.recvs++;
        conn->pending |= RC_IO_PENDING_DATA;
    } else if (res == 0) {
        rc_io_conn_lost(io, id, 0); /* orderly EOF: the peer closed */
    } else if (res == -EINTR || res == -EAGAIN) {
        /* transient: re-armed by the next rc_io_wait */
    } else if (res == -ENOBUFS) {
        io->stats.enobufs++;
    } else if (res != -ECANCELED || conn->state == RC_IO_CONN_ESTABLISHED) {
        rc_io_conn_lost(io, id, res);
    }
}

int rc_io_recv_peek(rc_io *io, uint32_t id, const uint8_t **data, size_t *bytes) {
    RC_ASSERT(data != NULL && bytes != NULL);
    rc_io_conn *conn = rc_io_conn_get(io, id);
    if (conn == NULL || !rc_io_recv_readable(conn)) return -EBADF;
    *data = conn->recv_base + conn->recv_head % io->settings.recv_buffer_bytes;
    *bytes = (size_t)(conn->recv_tail - conn->recv_head);
    return 0;
}

int rc_io_recv_consume(rc_io *io, uint32_t id, size_t bytes) {
    rc_io_conn *conn = rc_io_conn_get(io, id);
    if (conn == NULL || !rc_io_recv_readable(conn)) return -EBADF;
    if (bytes > conn->recv_tail - conn->recv_head) return -EINVAL;
    conn->recv_head += bytes;
    if (bytes > 0) conn->full_stalled = false;
    return 0;
}

int rc_io_recv_pause(rc_io *io, uint32_t id, bool paused) {
    rc_io_conn *conn = rc_io_conn_get(io, id);
    if (conn == NULL || !rc_io_recv_readable(conn)) return -EBADF;
    conn->paused = paused;
    return 0;
}
