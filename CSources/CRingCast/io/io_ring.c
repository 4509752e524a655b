/*
 * io_ring.c — the transport's ring and event loop: settings, create/destroy, rc_io_wait.
 *
 * Ring flags follow the io_uring guide §5/§8.1: SINGLE_ISSUER|DEFER_TASKRUN|CQSIZE (task work runs
 * only when the owner thread enters the kernel, which rc_io_wait does), falling back to
 * COOP_TASKRUN|TASKRUN_FLAG where DEFER is rejected. No SQPOLL: on a 2-core machine it burns a core
 * for no gain (guide §5, [M §9.6]). The CQ is sized so that every operation that can be in flight at
 * once has room for its CQEs (recv, send, accept/connect/backoff, cancel, plus one notification per
 * pending zero-copy send), so the kernel's slower overflow path is never needed.
 */
#include "io_internal.h"

#include <errno.h>
#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define RC_IO_CQ_ENTRIES_MAX 65536u /* kernel IORING_MAX_CQ_ENTRIES */
#define RC_IO_DESTROY_BOUND_NS 2000000000ll

void rc_io_settings_default(rc_io_settings *settings) {
    RC_ASSERT(settings != NULL);
    memset(settings, 0, sizeof *settings);
    settings->conns_max = 16;
    settings->recv_buffer_bytes = 4u << 20;
    settings->recv_bytes_max = 1u << 20;
    settings->send_queue_max = 1024;
    settings->send_iovecs_max = 64;
    settings->send_bytes_max = 1u << 20;
    settings->send_inflight_bytes_max = 16u << 20;
    settings->zc_pending_max = 64;
    settings->zc_probe_sends = 64;
    settings->zc_threshold_bytes = RC_IO_ZC_THRESHOLD_BYTES_DEFAULT;
    settings->connect_retries = 5;
    settings->connect_backoff_ns = 50000000ull;
    settings->sq_entries = 256;
    settings->zerocopy = RC_IO_ZEROCOPY_OFF;
}

/* Room for every CQE that can be outstanding at once; never below 2×SQ (the kernel requires CQ ≥ SQ) or 4096 (guide §5). */
static uint32_t rc_io_cq_entries(const rc_io_settings *s) {
    uint32_t needed = s->conns_max * (5u + s->zc_pending_max);
    uint32_t floor = 2u * s->sq_entries > 4096u ? 2u * s->sq_entries : 4096u;
    return needed > floor ? needed : floor;
}

static int rc_io_settings_validate(const rc_io_settings *s) {
    long page = sysconf(_SC_PAGESIZE);
    RC_ASSERT(page > 0);
    if (s->conns_max == 0 || s->conns_max > RC_IO_CONNS_MAX) return -EINVAL;
    if (s->recv_buffer_bytes == 0 || s->recv_buffer_bytes > RC_IO_RECV_BUFFER_BYTES_MAX) return -EINVAL;
    if (s->recv_buffer_bytes % (uint32_t)page != 0) return -EINVAL;
    if (s->recv_bytes_max == 0 || s->recv_bytes_max > s->recv_buffer_bytes) return -EINVAL;
    if (s->send_queue_max == 0 || s->send_queue_max > RC_IO_SEND_QUEUE_MAX) return -EINVAL;
    if (s->send_iovecs_max == 0 || s->send_iovecs_max > RC_IO_SEND_IOVECS_MAX) return -EINVAL;
    if (s->send_bytes_max == 0 || s->send_bytes_max > RC_IO_SEND_BYTES_MAX) return -EINVAL;
    if (s->send_inflight_bytes_max == 0 || s->send_inflight_bytes_max > RC_IO_SEND_INFLIGHT_BYTES_MAX) return -EINVAL;
    if (s->zc_pending_max == 0 || s->zc_pending_max > RC_IO_ZC_PENDING_MAX) return -EINVAL;
    if (s->zc_probe_sends == 0 || s->zc_probe_sends > RC_IO_ZC_PROBE_SENDS_MAX) return -EINVAL;
    if (s->connect_retries > RC_IO_CONNECT_RETRIES_MAX) return -EINVAL;
    if (s->connect_backoff_ns > RC_IO_CONNECT_BACKOFF_NS_MAX) return -EINVAL;
    if (s->sq_entries == 0 || s->sq_entries > RC_IO_SQ_ENTRIES_MAX) return -EINVAL;
    if (s->zerocopy < RC_IO_ZEROCOPY_AUTO || s->zerocopy > RC_IO_ZEROCOPY_OFF) return -EINVAL;
    if (memchr(s->congestion, 0, sizeof s->congestion) == NULL) return -EINVAL;
    if (s->notsent_lowat > s->send_bytes_max) return -EINVAL;
    if (rc_io_cq_entries(s) > RC_IO_CQ_ENTRIES_MAX) return -EINVAL;
    return 0;
}

static int rc_io_conns_allocate(rc_io *io) {
    const rc_io_settings *s = &io->settings;
    io->conns = calloc(s->conns_max, sizeof *io->conns);
    if (io->conns == NULL) return -ENOMEM;
    for (uint32_t id = 0; id < s->conns_max; id++) {
        rc_io_conn *conn = &io->conns[id];
        conn->fd = -1;
        conn->queue = calloc(s->send_queue_max, sizeof *conn->queue);
        conn->records = calloc(s->zc_pending_max + 1u, sizeof *conn->records);
        conn->iov = calloc(s->send_iovecs_max, sizeof *conn->iov);
        if (conn->queue == NULL || conn->records == NULL || conn->iov == NULL) return -ENOMEM;
        int rc = rc_io_mirror_map(s->recv_buffer_bytes, &conn->recv_base);
        if (rc < 0) return rc;
    }
    return 0;
}

static void rc_io_conns_free(rc_io *io) {
    if (io->conns == NULL) return;
    for (uint32_t id = 0; id < io->settings.conns_max; id++) {
        rc_io_conn *conn = &io->conns[id];
        if (conn->fd >= 0) close(conn->fd);
        if (conn->recv_base != NULL) rc_io_mirror_unmap(conn->recv_base, io->settings.recv_buffer_bytes);
        free(conn->queue);
        free(conn->records);
        free(conn->iov);
    }
    free(io->conns);
    io->conns = NULL;
}

/* DEFER_TASKRUN needs kernel 6.1; fall back to COOP_TASKRUN (5.19) and report which (guide §8.1). */
static int rc_io_ring_setup(rc_io *io) {
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    params.cq_entries = rc_io_cq_entries(&io->settings);
    int rc = io_uring_queue_init_params(io->settings.sq_entries, &io->ring, &params);
    io->stats.defer_taskrun = 1;
    if (rc == -EINVAL) {
        memset(&params, 0, sizeof params);
        params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN |
                       IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_CQSIZE;
        params.cq_entries = rc_io_cq_entries(&io->settings);
        rc = io_uring_queue_init_params(io->settings.sq_entries, &io->ring, &params);
        io->stats.defer_taskrun = 0;
    }
    if (rc < 0) return rc;
    io->stats.ring_flags = params.flags;
    (void)io_uring_register_ring_fd(&io->ring); /* an optimisation only: fewer fd lookups per enter */
    return 0;
}

int rc_io_create(rc_io **out, const rc_io_settings *settings) {
    RC_ASSERT(out != NULL);
    RC_ASSERT(settings != NULL);
    *out = NULL;
    int rc = rc_io_settings_validate(settings);
    if (rc < 0) return rc;
    rc_io *io = calloc(1, sizeof *io);
    if (io == NULL) return -ENOMEM;
    io->settings = *settings;
    io->wake_fd = -1;
    rc = rc_io_conns_allocate(io);
    if (rc == 0) rc = rc_io_ring_setup(io);
    if (rc == 0) rc = rc_io_wake_open(io);
    if (rc < 0) {
        if (io->stats.ring_flags != 0) io_uring_queue_exit(&io->ring);
        if (io->wake_fd >= 0) close(io->wake_fd);
        rc_io_conns_free(io);
        free(io);
        return rc;
    }
    *out = io;
    return 0;
}

static void rc_io_dispatch(rc_io *io, const struct io_uring_cqe *cqe) {
    uint64_t user_data = cqe->user_data;
    uint32_t op = (uint32_t)(user_data & 0xffu);
    uint32_t id = (uint32_t)((user_data >> 8) & 0xffffu);
    uint8_t generation = (uint8_t)(user_data >> 24);
    if (op == RC_IO_OP_CANCEL) return;
    if (op == RC_IO_OP_WAKE) {
        rc_io_on_wake(io, cqe->res);
        return;
    }
    rc_io_conn *conn = rc_io_conn_get(io, id);
    RC_ASSERT(conn != NULL && conn->state != RC_IO_CONN_FREE);
    RC_ASSERT(conn->generation == generation);
    switch (op) {
    case RC_IO_OP_RECV: rc_io_on_recv(io, id, cqe->res); break;
    case RC_IO_OP_SEND: rc_io_on_send(io, id, (uint32_t)(user_data >> 32), cqe); break;
    case RC_IO_OP_ACCEPT: rc_io_on_accept(io, id, cqe->res); break;
    case RC_IO_OP_CONNECT: rc_io_on_connect(io, id, cqe->res); break;
    case RC_IO_OP_BACKOFF: rc_io_on_backoff(io, id); break;
    default: RC_ASSERT(!"unknown operation in user_data");
    }
    rc_io_conn_progress(io, id);
}

static void rc_io_cqes_drain(rc_io *io) {
    struct io_uring_cqe *cqes[64];
    for (;;) {
        unsigned count = io_uring_peek_batch_cqe(&io->ring, cqes, 64);
        if (count == 0) return;
        for (unsigned i = 0; i < count; i++) rc_io_dispatch(io, cqes[i]);
        io_uring_cq_advance(&io->ring, count);
        io->stats.cqes += count;
    }
}

static void rc_io_arm_all(rc_io *io) {
    rc_io_wake_arm(io);
    for (uint32_t id = 0; id < io->settings.conns_max; id++) {
        if (io->conns[id].state == RC_IO_CONN_FREE) continue;
        rc_io_recv_arm(io, id);
        rc_io_send_arm(io, id);
        rc_io_conn_progress(io, id);
    }
}

/* One kernel entry both submits and waits (guide §5 loop shape). */
static int rc_io_enter(rc_io *io, int64_t timeout_ns) {
    if (timeout_ns == 0 || rc_io_events_ready(io)) return io_uring_submit_and_get_events(&io->ring);
    if (timeout_ns < 0) return io_uring_submit_and_wait(&io->ring, 1);
    struct __kernel_timespec ts = {
        .tv_sec = timeout_ns / 1000000000ll,
        .tv_nsec = timeout_ns % 1000000000ll,
    };
    struct io_uring_cqe *cqe = NULL;
    return io_uring_submit_and_wait_timeout(&io->ring, &cqe, 1, &ts, NULL);
}

int rc_io_wait(rc_io *io, rc_io_event *events, uint32_t max, int64_t timeout_ns) {
    RC_ASSERT(io != NULL);
    RC_ASSERT(events != NULL || max == 0);
    io->stats.waits++;
    rc_io_arm_all(io);
    int rc = rc_io_enter(io, timeout_ns);
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) return rc;
    rc_io_cqes_drain(io);
    rc_io_arm_all(io);
    return (int)rc_io_events_collect(io, events, max);
}

static int64_t rc_io_now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000ll + now.tv_nsec;
}

static bool rc_io_all_free(const rc_io *io) {
    for (uint32_t id = 0; id < io->settings.conns_max; id++) {
        if (io->conns[id].state != RC_IO_CONN_FREE) return false;
    }
    return true;
}

/* Bounded shutdown: cancel, wait for the CQEs (incl. zero-copy notifications), then tear down. */
int rc_io_listener_stop(rc_io *io, uint32_t id) {
    RC_ASSERT(io != NULL && id < io->settings.conns_max);
    rc_io_conn *conn = &io->conns[id];
    if (conn->fd < 0) return -EBADF;
    /* shutdown(2) on a listening socket moves it to CLOSE at once: the port is free for a new listener
     * even while the multishot accept still holds a reference to the file (close alone would not do). */
    return shutdown(conn->fd, SHUT_RDWR) == 0 ? 0 : -errno;
}

void rc_io_destroy(rc_io *io) {
    if (io == NULL) return;
    for (uint32_t id = 0; id < io->settings.conns_max; id++) {
        uint32_t state = io->conns[id].state;
        if (state != RC_IO_CONN_FREE && state != RC_IO_CONN_CLOSING) (void)rc_io_close(io, id);
    }
    int64_t deadline = rc_io_now_ns() + RC_IO_DESTROY_BOUND_NS;
    rc_io_event discard[64];
    /* Short waits: the last step of a close (reporting its tokens) may need one more pass after the final
     * CQE, and a long wait there would idle for its whole timeout. A view change freezes and destroys an
     * engine on its critical path, so this matters (tens of ms otherwise). */
    while (!rc_io_all_free(io) && rc_io_now_ns() < deadline) {
        (void)rc_io_wait(io, discard, 64, 1000000ll);
    }
    rc_io_wake_close(io);
    int fd = io->wake_fd;
    io->wake_fd = -1; /* no re-arm from here on */
    while (io->wake_armed && rc_io_now_ns() < deadline) {
        (void)rc_io_enter(io, 1000000ll);
        rc_io_cqes_drain(io);
    }
    close(fd);
    io_uring_queue_exit(&io->ring);
    rc_io_conns_free(io);
    free(io);
}

rc_io_stats rc_io_stats_get(const rc_io *io) {
    RC_ASSERT(io != NULL);
    return io->stats;
}

double rc_io_stats_zerocopy_fraction(const rc_io_stats *stats) {
    RC_ASSERT(stats != NULL);
    RC_ASSERT(stats->zc_copied <= stats->zc_notifications);
    if (stats->sends == 0) return 0.0;
    return (double)(stats->zc_notifications - stats->zc_copied) / (double)stats->sends;
}
