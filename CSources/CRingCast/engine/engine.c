/*
 * engine.c — what every engine file leans on: the settings (defaults, validation), the clock, wake-ups, failure,
 * status and the published counters. It calls no other engine file, so the lifecycle (engine_thread.c)
 * and the steps of the loop can all use it without a circle.
 */
#include "engine_internal.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t engine_now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

void rc_engine_settings_default(rc_engine_settings *s) {
    memset(s, 0, sizeof(*s));
    s->nodes = 1;
    s->view_id = 1;
    /* 1024 messages; 1 MiB of bytes as the maximum of the adaptive byte window, which sizes the receive
     * buffer (8 × n × 1 MiB fits RC_IO_RECV_BUFFER_BYTES_MAX up to n = 30). docs/tuning.md has the
     * measurements behind both. */
    s->window = 1024;
    s->window_bytes = 1u << 20;
    s->window_adaptive = true;
    s->staging_bytes = 8u << 10;
    s->batch_count_max = 64;
    s->batch_bytes_max = 64u << 10;
    s->fairness = true;
    s->broadcast_ring_max = 64;
    s->delivery_ring_max = 4096;
    s->recv_buffer_bytes = 0;
    s->heartbeat_ms = 100;
    s->connect_timeout_ms = 10000;
    s->stall_ms = 5000;
    s->zerocopy = RC_IO_ZEROCOPY_OFF;
    /* cubic, as ringperf measures the raw link: under BBR, this VM's default, the links of the ring idled
     * more often although a single BBR stream fills the same link (docs/tuning.md). */
    memcpy(s->congestion, "cubic", sizeof "cubic");
    s->auth.mode = RC_AUTH_MODE_NONE;
    memcpy(s->auth.cluster, "ringcast", sizeof "ringcast");
    s->predecessor_node = s->predecessor_incarnation = RC_AUTH_PEER_ANY;
    s->successor_node = s->successor_incarnation = RC_AUTH_PEER_ANY;
    s->auth_timeout_ms = 2000;
}

/* The largest frame these settings allow: a full hop header, a full message header, a full batch. */
uint64_t engine_frame_bytes_max(const rc_engine_settings *s) {
    return RC_WIRE_HOP_MAX + rc_wire_message_header_bytes(s->nodes, s->batch_count_max) + s->batch_bytes_max;
}

/* rc_engine_create's rule (see rc_engine.h). */
static uint64_t recv_buffer_bytes_min(const rc_engine_settings *s) {
    uint64_t frame = engine_frame_bytes_max(s);
    return 8ull * s->nodes * (s->window_bytes + frame);
}

static bool settings_valid(const rc_engine_settings *s) {
    if (s->nodes < 1 || s->nodes > RC_LCR_NODES_MAX || s->self >= s->nodes) return false;
    if (s->window < 1 || s->window > RC_LCR_QUEUE_MAX / 4) return false;
    rc_batch_limits batch = {.count_max = s->batch_count_max, .bytes_max = s->batch_bytes_max};
    if (!rc_batch_limits_valid(batch)) return false;
    if (s->broadcast_ring_max < 1 || s->broadcast_ring_max > RC_ENGINE_BROADCAST_RING_MAX) return false;
    if (s->delivery_ring_max < s->batch_count_max || s->delivery_ring_max > RC_ENGINE_DELIVERY_RING_MAX) return false;
    if (s->heartbeat_ms < 1 || s->heartbeat_ms > RC_ENGINE_HEARTBEAT_MS_MAX || s->connect_timeout_ms < 1) return false;
    if (s->stall_ms < s->heartbeat_ms) return false;
    if (s->window_bytes < 1 || s->recv_buffer_bytes > RC_IO_RECV_BUFFER_BYTES_MAX) return false;
    if (memchr(s->congestion, 0, sizeof s->congestion) == NULL) return false;
    if (s->auth.mode > RC_AUTH_MODE_ENCRYPT || memchr(s->auth.cluster, 0, sizeof s->auth.cluster) == NULL) return false;
    if (s->auth.mode != RC_AUTH_MODE_NONE && s->auth_timeout_ms < 1) return false;
    return s->recv_buffer_bytes >= recv_buffer_bytes_min(s);
}

/* The byte window in force: rc_window.h's when adaptive (a ring of one has no round trip to size it from). */
uint64_t engine_window_bytes(const rc_engine *engine) {
    if (engine->settings.nodes == 1 || !engine->settings.window_adaptive) return engine->settings.window_bytes;
    return rc_window_bytes(&engine->window);
}

/* Bytes admitted beyond `window`: settings.staging_bytes, or an eighth of the window when that is more. A slow
 * ring needs little in front of its window (each byte there is latency: 8 KiB is one 10 kB message, 2.6 ms at a
 * 25 Mbit/s share), a fast one needs the producer to run ahead in batches: on loopback (n = k = 5, 10 kB, CPU-bound)
 * 8 KiB in front of the window gave 2.3–2.6 Gbit/s, an eighth of it 5.5, as much as 1 MiB 5.6 (docs/tuning.md). An
 * eighth keeps 8 KiB at 100 Mbit/s (n = k = 5: a 64 KiB window), where a quarter cost 3 ms of p50. */
uint64_t engine_staging_bytes(const rc_engine *engine, uint64_t window) {
    return window / 8 > engine->settings.staging_bytes ? window / 8 : engine->settings.staging_bytes;
}

/* Settings with the receive buffer derived when it is 0; false when even the maximum is too small. */
bool engine_settings_complete(rc_engine_settings *s) {
    if (s->recv_buffer_bytes == 0) {
        uint64_t mib = 1u << 20, bytes = (recv_buffer_bytes_min(s) + mib - 1) / mib * mib;
        if (bytes > RC_IO_RECV_BUFFER_BYTES_MAX) return false;
        s->recv_buffer_bytes = (uint32_t)bytes;
    }
    return settings_valid(s);
}

void engine_eventfd_signal(int fd) {
    uint64_t one = 1;
    /* An eventfd counter only overflows after 2^64-2 unread signals; EAGAIN then still means "readable". */
    ssize_t written = write(fd, &one, sizeof(one));
    (void)written;
}

void engine_fail(rc_engine *engine, int error) {
    RC_ASSERT(error < 0);
    int expected = 0;
    atomic_compare_exchange_strong(&engine->error, &expected, error);
    atomic_store_explicit(&engine->state, RC_ENGINE_FAILED, memory_order_release);
    engine_eventfd_signal(engine->delivery_fd); /* wake a waiting consumer */
    engine_eventfd_signal(engine->space_fd);    /* and a waiting producer */
}

rc_engine_state rc_engine_status(const rc_engine *engine, int *error) {
    if (error != NULL) *error = atomic_load(&((rc_engine *)engine)->error);
    return (rc_engine_state)atomic_load(&((rc_engine *)engine)->state);
}

rc_engine_stats rc_engine_stats_get(const rc_engine *engine) {
    rc_engine *e = (rc_engine *)engine;
    pthread_mutex_lock(&e->stats_lock);
    rc_engine_stats copy = e->published;
    pthread_mutex_unlock(&e->stats_lock);
    return copy;
}

/* Copies the working counters for other threads, at most every 100 µs (a lock, never per message). */
void engine_stats_publish(rc_engine *e, uint64_t now_ns, bool force) {
    if (!force && now_ns - e->published_ns < 100000) return;
    rc_io_stats io = rc_io_stats_get(e->io);
    e->stats.bytes_in = io.bytes_in;
    e->stats.zerocopy_fraction = rc_io_stats_zerocopy_fraction(&io);
    e->stats.congestion_refused = io.congestion_refused;
    e->stats.accepts_rejected = io.accepts_rejected;
    if (e->core != NULL) {
        rc_lcr_stats core = rc_lcr_stats_get(e->core);
        e->stats.own_held = core.own_held;
        e->stats.ack_only_frames = core.ack_only_frames;
    }
    e->stats.window_bytes_now = engine_window_bytes(e);
    e->stats.ring_rtt_min_ns = e->window.rtt_min_ns;
    pthread_mutex_lock(&e->stats_lock);
    e->published = e->stats;
    pthread_mutex_unlock(&e->stats_lock);
    e->published_ns = now_ns;
}
