/*
 * perf_run.c — ringperf's hot loops: one side of stream / maerts / rr over one rc_io connection.
 *
 * Everything per message happens here, in C; Swift only sets up, calls rc_perf_run once and prints.
 * The sender keeps at most RC_PERF_QUEUED_BYTES_MAX queued beyond what the kernel released, so that
 * stopping at the end of --duration drains quickly even on a slow link (no long tail after the timer).
 */
#include "perf_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RC_PERF_QUEUED_BYTES_MAX (4ull << 20)
#define RC_PERF_WAIT_SLICE_NS 50000000ll
#define RC_PERF_EVENTS_MAX 64u

typedef struct rc_perf_loop {
    const rc_perf_params *params;
    rc_perf_result *result;
    rc_io *io;
    uint32_t conn;
    uint8_t *pattern;
    uint64_t tx_queued, tx_released, tx_token, rx_offset;
    int64_t start_ns, deadline_ns, load_end_ns, first_rx_ns, last_rx_ns, drained_ns;
    bool closed, stopping, adopted;
    uint64_t answered;            /* rr server: responses queued */
    bool outstanding;             /* rr client: a request waits for its response */
    int64_t request_ns;
} rc_perf_loop;

static int64_t rc_perf_clock_ns(clockid_t clock) {
    struct timespec now;
    int rc = clock_gettime(clock, &now);
    RC_ASSERT(rc == 0);
    return (int64_t)now.tv_sec * 1000000000ll + now.tv_nsec;
}

static void rc_perf_receive(rc_perf_loop *loop) {
    const uint8_t *data = NULL;
    size_t bytes = 0;
    if (rc_io_recv_peek(loop->io, loop->conn, &data, &bytes) < 0 || bytes == 0) return;
    int64_t now = rc_perf_clock_ns(CLOCK_MONOTONIC);
    if (loop->rx_offset == 0) loop->first_rx_ns = now;
    loop->last_rx_ns = now;
    if (loop->params->verify) rc_perf_pattern_check(loop->pattern, loop->rx_offset, data, bytes, loop->result);
    int rc = rc_io_recv_consume(loop->io, loop->conn, bytes);
    RC_ASSERT(rc == 0);
    loop->rx_offset += bytes;
}

static void rc_perf_on_event(rc_perf_loop *loop, const rc_io_event *event) {
    RC_ASSERT(event->conn == loop->conn);
    switch (event->type) {
    case RC_IO_EVENT_SEND_DONE:
        RC_ASSERT(event->token == loop->tx_token); /* tokens come back in queue order */
        loop->tx_token++;
        loop->tx_released += loop->params->size_bytes;
        break;
    case RC_IO_EVENT_DATA: rc_perf_receive(loop); break;
    case RC_IO_EVENT_CLOSED:
        loop->closed = true;
        /* EOF is the normal end; a reset before our own end is an error. */
        if (event->error != 0 && loop->result->error == 0) loop->result->error = event->error;
        if (event->error == 0 && !loop->stopping && (loop->params->role == RC_PERF_ROLE_STREAM_SENDER ||
                                                     loop->params->role == RC_PERF_ROLE_RR_CLIENT)) {
            loop->result->error = -ECONNRESET; /* the peer left before the test was over */
        }
        break;
    case RC_IO_EVENT_CONNECT_FAILED:
        loop->closed = true;
        loop->result->error = event->error;
        break;
    default: break;
    }
}

static bool rc_perf_send_one(rc_perf_loop *loop) {
    const uint8_t *slice = rc_perf_pattern_at(loop->pattern, loop->tx_queued);
    uint64_t token = loop->tx_queued / loop->params->size_bytes;
    int rc = rc_io_send(loop->io, loop->conn, slice, loop->params->size_bytes, token);
    if (rc == -EAGAIN) return false;
    if (rc < 0) {
        if (loop->result->error == 0) loop->result->error = rc;
        loop->stopping = true;
        return false;
    }
    loop->tx_queued += loop->params->size_bytes;
    return true;
}

static void rc_perf_stop(rc_perf_loop *loop) {
    if (loop->stopping) return;
    loop->stopping = true;
    (void)rc_io_shutdown(loop->io, loop->conn); /* the peer sees EOF once everything queued is out */
}

static void rc_perf_tick_sender(rc_perf_loop *loop, int64_t now) {
    if (!loop->stopping && now >= loop->load_end_ns) rc_perf_stop(loop);
    while (!loop->stopping && loop->tx_queued - loop->tx_released < RC_PERF_QUEUED_BYTES_MAX) {
        if (!rc_perf_send_one(loop)) break;
    }
    if (loop->stopping && loop->drained_ns == 0 && loop->tx_released == loop->tx_queued) loop->drained_ns = now;
}

static void rc_perf_tick_rr_client(rc_perf_loop *loop, int64_t now) {
    uint64_t size = loop->params->size_bytes;
    rc_perf_result *result = loop->result;
    if (loop->outstanding && loop->rx_offset >= (result->transactions + 1) * size) {
        uint64_t latency = (uint64_t)(now - loop->request_ns);
        if (result->latency_count < loop->params->latency_capacity && loop->params->latency_ns != NULL) {
            loop->params->latency_ns[result->latency_count++] = latency > UINT32_MAX ? UINT32_MAX : (uint32_t)latency;
        }
        if (latency > result->latency_max_ns) result->latency_max_ns = latency;
        result->transactions++;
        loop->outstanding = false;
    }
    if (loop->outstanding || loop->stopping) return;
    if (now >= loop->load_end_ns) {
        rc_perf_stop(loop);
        loop->drained_ns = now;
        return;
    }
    if (rc_perf_send_one(loop)) {
        loop->outstanding = true;
        loop->request_ns = now;
    }
}

static void rc_perf_tick_rr_server(rc_perf_loop *loop) {
    uint64_t size = loop->params->size_bytes;
    while (loop->rx_offset >= (loop->answered + 1) * size) {
        if (!rc_perf_send_one(loop)) return;
        loop->answered++;
    }
}

static void rc_perf_tick(rc_perf_loop *loop, int64_t now) {
    switch (loop->params->role) {
    case RC_PERF_ROLE_STREAM_SENDER: rc_perf_tick_sender(loop, now); break;
    case RC_PERF_ROLE_RR_CLIENT: rc_perf_tick_rr_client(loop, now); break;
    case RC_PERF_ROLE_RR_SERVER: rc_perf_tick_rr_server(loop); break;
    default: break;
    }
}

static bool rc_perf_done(const rc_perf_loop *loop) {
    if (!loop->closed) return false;
    if (loop->result->error != 0) return true;
    /* Senders wait for every byte to be released, then for the peer's EOF (it read everything). */
    return loop->tx_released == loop->tx_queued;
}

static int rc_perf_loop_run(rc_perf_loop *loop) {
    rc_io_event events[RC_PERF_EVENTS_MAX];
    for (;;) {
        int64_t now = rc_perf_clock_ns(CLOCK_MONOTONIC);
        if (!loop->closed) rc_perf_tick(loop, now);
        if (rc_perf_done(loop)) return loop->result->error;
        if (now >= loop->deadline_ns) return -ETIMEDOUT;
        int64_t timeout = RC_PERF_WAIT_SLICE_NS;
        if (!loop->stopping && loop->load_end_ns > now && loop->load_end_ns - now < timeout) {
            timeout = loop->load_end_ns - now;
        }
        int count = rc_io_wait(loop->io, events, RC_PERF_EVENTS_MAX, timeout);
        if (count < 0) return count;
        for (int i = 0; i < count; i++) rc_perf_on_event(loop, &events[i]);
    }
}

static int rc_perf_params_validate(const rc_perf_params *params) {
    if (params->role > RC_PERF_ROLE_RR_SERVER) return -EINVAL;
    if (params->size_bytes == 0 || params->size_bytes > RC_PERF_SIZE_BYTES_MAX) return -EINVAL;
    if (params->zerocopy < RC_IO_ZEROCOPY_AUTO || params->zerocopy > RC_IO_ZEROCOPY_OFF) return -EINVAL;
    if (params->timeout_ns == 0 || params->timeout_ns > INT64_MAX / 2) return -EINVAL;
    if (memchr(params->congestion, 0, sizeof params->congestion) == NULL) return -EINVAL;
    return 0;
}

static int rc_perf_io_open(rc_perf_loop *loop) {
    const rc_perf_params *params = loop->params;
    rc_io_settings settings;
    rc_io_settings_default(&settings);
    settings.conns_max = 2;
    settings.send_queue_max = 4096;
    settings.send_iovecs_max = 256;
    settings.zerocopy = params->zerocopy;
    settings.connect_retries = 3;
    memcpy(settings.congestion, params->congestion, sizeof settings.congestion);
    int rc = rc_io_create(&loop->io, &settings);
    if (rc < 0) return rc;
    rc = params->fd >= 0 ? rc_io_adopt(loop->io, params->fd) : rc_io_connect(loop->io, &params->peer);
    if (rc < 0) return rc;
    loop->adopted = params->fd >= 0;
    loop->conn = (uint32_t)rc;
    return 0;
}

/* Waits for CONNECTED (or the failure) when we dialled; an adopted socket is connected already. */
static int rc_perf_connected_wait(rc_perf_loop *loop) {
    rc_io_event events[RC_PERF_EVENTS_MAX];
    if (loop->params->fd >= 0) return 0;
    for (;;) {
        if (rc_perf_clock_ns(CLOCK_MONOTONIC) >= loop->deadline_ns) return -ETIMEDOUT;
        int count = rc_io_wait(loop->io, events, RC_PERF_EVENTS_MAX, RC_PERF_WAIT_SLICE_NS);
        if (count < 0) return count;
        for (int i = 0; i < count; i++) {
            if (events[i].type == RC_IO_EVENT_CONNECTED) return 0;
            if (events[i].type == RC_IO_EVENT_CONNECT_FAILED) return events[i].error;
        }
    }
}

static void rc_perf_finish(rc_perf_loop *loop, int64_t cpu_process_start, int64_t cpu_thread_start) {
    rc_perf_result *result = loop->result;
    int64_t end = rc_perf_clock_ns(CLOCK_MONOTONIC);
    result->wall_ns = (uint64_t)(end - loop->start_ns);
    result->cpu_process_ns = (uint64_t)(rc_perf_clock_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu_process_start);
    result->cpu_thread_ns = (uint64_t)(rc_perf_clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu_thread_start);
    result->bytes_sent = loop->tx_released;
    result->bytes_received = loop->rx_offset;
    switch (loop->params->role) {
    case RC_PERF_ROLE_STREAM_RECEIVER:
        result->measured_ns = loop->rx_offset > 0 ? (uint64_t)(loop->last_rx_ns - loop->first_rx_ns) : 0;
        break;
    default: {
        int64_t stop = loop->drained_ns != 0 ? loop->drained_ns : end;
        result->measured_ns = (uint64_t)(stop - loop->start_ns);
        break;
    }
    }
    result->io = rc_io_stats_get(loop->io);
    int state = rc_io_zerocopy_state(loop->io, loop->conn);
    result->zerocopy_state = state < 0 ? RC_IO_ZC_STATE_OFF : state;
}

int rc_perf_run(const rc_perf_params *params, rc_perf_result *result) {
    RC_ASSERT(params != NULL && result != NULL);
    memset(result, 0, sizeof *result);
    int rc = rc_perf_params_validate(params);
    if (rc < 0) return result->error = rc;
    rc_perf_loop loop = {.params = params, .result = result};
    loop.start_ns = rc_perf_clock_ns(CLOCK_MONOTONIC);
    loop.deadline_ns = loop.start_ns + (int64_t)params->timeout_ns;
    loop.pattern = rc_perf_pattern_create(params->size_bytes);
    rc = loop.pattern == NULL ? -ENOMEM : rc_perf_io_open(&loop);
    if (rc == 0) rc = rc_perf_connected_wait(&loop);
    if (rc == 0) {
        int64_t cpu_process = rc_perf_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        int64_t cpu_thread = rc_perf_clock_ns(CLOCK_THREAD_CPUTIME_ID);
        loop.start_ns = rc_perf_clock_ns(CLOCK_MONOTONIC);
        loop.load_end_ns = loop.start_ns + (int64_t)params->duration_ns;
        rc = rc_perf_loop_run(&loop);
        rc_perf_finish(&loop, cpu_process, cpu_thread);
    }
    if (params->fd >= 0 && !loop.adopted) close(params->fd); /* the socket is ours on every path */
    if (loop.io != NULL) rc_io_destroy(loop.io);
    free(loop.pattern);
    result->error = rc;
    return rc;
}
