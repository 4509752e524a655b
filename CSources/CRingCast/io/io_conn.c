/*
 * io_conn.c — connection lifetime: listen/accept, connect with bounded retries, adopt, loss, close.
 *
 * A connection id stays owned by the caller from the moment it is handed out until rc_io_close; a
 * lost connection (EOF, reset, error) keeps its received bytes readable. After rc_io_close the id is
 * freed only once nothing is in flight and every queued token was reported, so a late completion can
 * never be mistaken for one of the id's next user (the generation in user_data asserts this).
 */
#include "io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int rc_io_conn_alloc(rc_io *io) {
    for (uint32_t id = 0; id < io->settings.conns_max; id++) {
        rc_io_conn *conn = &io->conns[id];
        if (conn->state != RC_IO_CONN_FREE) continue;
        RC_ASSERT(conn->ops == 0 && conn->fd < 0);
        conn->pending = 0;
        conn->error = 0;
        conn->recv_armed = conn->send_armed = conn->paused = conn->full_stalled = false;
        conn->want_shutdown = conn->shut = conn->cancel_sent = false;
        conn->recv_head = conn->recv_tail = 0;
        conn->q_tail = conn->q_sent = conn->q_done = conn->q_reported = 0;
        conn->q_sent_offset = 0;
        conn->q_ok_end = UINT64_MAX;
        conn->r_head = conn->r_tail = 0;
        conn->unreleased_bytes = 0;
        conn->zc_mode = io->settings.zerocopy;
        conn->zc_probed = conn->zc_probe_copied = 0;
        conn->zc_decided_off = false;
        conn->zc_decided_on = false;
        conn->connect_attempts = 0;
        return (int)id;
    }
    return -EMFILE;
}

static int rc_io_socket_open(rc_io *io, const rc_io_addr *addr) {
    sa_family_t family;
    memcpy(&family, addr->bytes, sizeof family);
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int rc = rc_io_socket_configure(io, fd);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int rc_io_listen(rc_io *io, const rc_io_addr *addr, int backlog) {
    RC_ASSERT(io != NULL && addr != NULL);
    if (addr->length == 0 || backlog <= 0) return -EINVAL;
    int id = rc_io_conn_alloc(io);
    if (id < 0) return id;
    int fd = rc_io_socket_open(io, addr);
    if (fd < 0) return fd;
    int one = 1;
    int rc = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) rc = -errno;
    if (rc == 0 && bind(fd, (const struct sockaddr *)(const void *)addr->bytes, addr->length) < 0) rc = -errno;
    if (rc == 0 && listen(fd, backlog) < 0) rc = -errno;
    if (rc < 0) {
        close(fd);
        return rc;
    }
    rc_io_conn *conn = &io->conns[id];
    conn->fd = fd;
    conn->state = RC_IO_CONN_LISTENING;
    return id;
}

int rc_io_listen_port(rc_io *io, uint32_t listener) {
    rc_io_conn *conn = rc_io_conn_get(io, listener);
    if (conn == NULL || conn->state != RC_IO_CONN_LISTENING) return -EBADF;
    rc_io_addr bound;
    socklen_t length = sizeof bound.bytes;
    if (getsockname(conn->fd, (struct sockaddr *)(void *)bound.bytes, &length) < 0) return -errno;
    bound.length = length;
    return rc_io_addr_port(&bound);
}

static void rc_io_connect_start(rc_io *io, uint32_t id) {
    rc_io_conn *conn = &io->conns[id];
    RC_ASSERT(conn->state == RC_IO_CONN_CONNECTING && conn->fd < 0);
    int fd = rc_io_socket_open(io, &conn->peer);
    if (fd < 0) {
        conn->state = RC_IO_CONN_LOST;
        conn->error = fd;
        conn->pending |= RC_IO_PENDING_CONNECT_FAILED;
        return;
    }
    conn->fd = fd;
    conn->connect_attempts++;
    struct io_uring_sqe *sqe = rc_io_sqe_get(io);
    io_uring_prep_connect(sqe, fd, (const struct sockaddr *)(const void *)conn->peer.bytes, conn->peer.length);
    io_uring_sqe_set_data64(sqe, rc_io_user_data(RC_IO_OP_CONNECT, id, conn->generation, 0));
    conn->ops++;
}

int rc_io_connect(rc_io *io, const rc_io_addr *addr) {
    RC_ASSERT(io != NULL && addr != NULL);
    if (addr->length == 0) return -EINVAL;
    int id = rc_io_conn_alloc(io);
    if (id < 0) return id;
    rc_io_conn *conn = &io->conns[id];
    conn->peer = *addr;
    conn->state = RC_IO_CONN_CONNECTING;
    rc_io_connect_start(io, (uint32_t)id);
    return id;
}

int rc_io_adopt(rc_io *io, int fd) {
    RC_ASSERT(io != NULL);
    if (fd < 0) return -EBADF;
    /* A blocking socket: io_uring then waits for readiness itself instead of completing with -EAGAIN. */
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) return -errno;
    int rc = rc_io_socket_configure(io, fd);
    if (rc < 0) return rc;
    int id = rc_io_conn_alloc(io);
    if (id < 0) return id;
    io->conns[id].fd = fd;
    io->conns[id].state = RC_IO_CONN_ESTABLISHED;
    return id;
}

/* Refused/unreachable may be a peer still starting: retry with doubling backoff, a bounded number of times. */
static bool rc_io_connect_retriable(int32_t res) {
    return res == -ECONNREFUSED || res == -ENETUNREACH || res == -EHOSTUNREACH || res == -ETIMEDOUT ||
           res == -ECONNRESET || res == -EAGAIN;
}

void rc_io_on_connect(rc_io *io, uint32_t id, int32_t res) {
    rc_io_conn *conn = &io->conns[id];
    RC_ASSERT(conn->ops > 0);
    conn->ops--;
    if (conn->state != RC_IO_CONN_CONNECTING) return; /* closed meanwhile */
    if (res == 0) {
        conn->state = RC_IO_CONN_ESTABLISHED;
        conn->pending |= RC_IO_PENDING_CONNECTED;
        io->stats.connects++;
        return;
    }
    close(conn->fd);
    conn->fd = -1;
    if (rc_io_connect_retriable(res) && conn->connect_attempts <= io->settings.connect_retries) {
        uint32_t shift = conn->connect_attempts - 1u < 16u ? conn->connect_attempts - 1u : 16u;
        uint64_t wait_ns = io->settings.connect_backoff_ns << shift;
        if (wait_ns > RC_IO_CONNECT_BACKOFF_NS_MAX) wait_ns = RC_IO_CONNECT_BACKOFF_NS_MAX;
        conn->backoff.tv_sec = (long long)(wait_ns / 1000000000ull);
        conn->backoff.tv_nsec = (long long)(wait_ns % 1000000000ull);
        struct io_uring_sqe *sqe = rc_io_sqe_get(io);
        io_uring_prep_timeout(sqe, &conn->backoff, 0, 0);
        io_uring_sqe_set_data64(sqe, rc_io_user_data(RC_IO_OP_BACKOFF, id, conn->generation, 0));
        conn->ops++;
        io->stats.connect_retries++;
        return;
    }
    conn->state = RC_IO_CONN_LOST;
    conn->error = res;
    conn->pending |= RC_IO_PENDING_CONNECT_FAILED;
}

void rc_io_on_backoff(rc_io *io, uint32_t id) {
    rc_io_conn *conn = &io->conns[id];
    RC_ASSERT(conn->ops > 0);
    conn->ops--;
    if (conn->state == RC_IO_CONN_CONNECTING) rc_io_connect_start(io, id);
}

void rc_io_on_accept(rc_io *io, uint32_t id, int32_t res) {
    rc_io_conn *listener = &io->conns[id];
    RC_ASSERT(listener->ops > 0);
    listener->ops--;
    listener->recv_armed = false;
    if (res < 0) return; /* -ECANCELED on close; transient errors (EMFILE…) re-arm */
    if (listener->state != RC_IO_CONN_LISTENING) {
        close(res); /* accepted while the listener was being closed: nobody asked for it */
        return;
    }
    int new_id = rc_io_conn_alloc(io);
    if (new_id < 0 || rc_io_socket_configure(io, res) < 0) {
        /* Limit reached: refuse by closing (the peer sees a reset), never queue unboundedly. */
        close(res);
        io->stats.accepts_rejected++;
        return;
    }
    rc_io_conn *conn = &io->conns[new_id];
    conn->fd = res;
    conn->state = RC_IO_CONN_ESTABLISHED;
    conn->listener = id;
    conn->pending |= RC_IO_PENDING_ACCEPTED;
    io->stats.accepts++;
}

void rc_io_conn_lost(rc_io *io, uint32_t id, int32_t error) {
    rc_io_conn *conn = &io->conns[id];
    RC_ASSERT(error <= 0);
    if (conn->state != RC_IO_CONN_ESTABLISHED && conn->state != RC_IO_CONN_CONNECTING) return;
    conn->state = RC_IO_CONN_LOST;
    conn->error = error;
    conn->pending |= RC_IO_PENDING_CLOSED;
}

int rc_io_close(rc_io *io, uint32_t id) {
    rc_io_conn *conn = rc_io_conn_get(io, id);
    if (conn == NULL || conn->state == RC_IO_CONN_FREE || conn->state == RC_IO_CONN_CLOSING) return -EBADF;
    conn->state = RC_IO_CONN_CLOSING;
    conn->pending = 0;
    rc_io_conn_progress(io, id);
    return 0;
}

int rc_io_shutdown(rc_io *io, uint32_t id) {
    rc_io_conn *conn = rc_io_conn_get(io, id);
    if (conn == NULL) return -EBADF;
    if (conn->state != RC_IO_CONN_ESTABLISHED && conn->state != RC_IO_CONN_CONNECTING) return -ENOTCONN;
    conn->want_shutdown = true;
    rc_io_conn_progress(io, id);
    return 0;
}

static void rc_io_conn_cancel(rc_io *io, uint32_t id) {
    rc_io_conn *conn = &io->conns[id];
    struct io_uring_sqe *sqe = rc_io_sqe_get(io);
    if (conn->fd >= 0) {
        io_uring_prep_cancel_fd(sqe, conn->fd, IORING_ASYNC_CANCEL_ALL);
    } else {
        io_uring_prep_timeout_remove(sqe, rc_io_user_data(RC_IO_OP_BACKOFF, id, conn->generation, 0), 0);
    }
    io_uring_sqe_set_data64(sqe, rc_io_user_data(RC_IO_OP_CANCEL, id, conn->generation, 0));
    conn->cancel_sent = true;
}

/* Moves a connection along after any change: shutdown when drained, cancel/close/free when ending. */
void rc_io_conn_progress(rc_io *io, uint32_t id) {
    rc_io_conn *conn = &io->conns[id];
    if (conn->state == RC_IO_CONN_ESTABLISHED && conn->want_shutdown && !conn->shut &&
        conn->q_sent == conn->q_tail && !conn->send_armed) {
        (void)shutdown(conn->fd, SHUT_WR); /* an error here means the connection is gone: recv reports it */
        conn->shut = true;
    }
    if (conn->state != RC_IO_CONN_LOST && conn->state != RC_IO_CONN_CLOSING) return;
    if (conn->ops > 0 && !conn->cancel_sent) rc_io_conn_cancel(io, id);
    if (conn->ops == 0 && conn->r_head == conn->r_tail && conn->q_done < conn->q_tail) {
        RC_ASSERT(conn->q_done == conn->q_sent); /* every completed send was released */
        conn->q_ok_end = conn->q_done; /* what never fully left is reported -ECANCELED */
        conn->q_done = conn->q_tail;
    }
    if (conn->state != RC_IO_CONN_CLOSING || conn->ops > 0) return;
    if (conn->fd >= 0) {
        close(conn->fd);
        conn->fd = -1;
    }
    if (conn->r_head == conn->r_tail && conn->q_reported == conn->q_tail) {
        conn->state = RC_IO_CONN_FREE;
        conn->generation++;
    }
}
