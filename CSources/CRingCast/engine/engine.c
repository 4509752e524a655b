/*
 * engine.c — what every engine file leans on: the settings (defaults, validation), the clock, failure,
 * status and the published counters. It calls no other engine file, so the lifecycle (engine_thread.c)
 * and the steps of the loop can all use it without a circle.
 */
#include "engine_internal.h"

#include <errno.h>
#include <string.h>
#include <time.h>

uint64_t engine_now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

void rc_engine_settings_default(rc_engine_settings *s) {
    memset(s, 0, sizeof(*s));
    s->nodes = 1;
    s->view_id = 1;
    /* 1024 messages and 1 MiB: the engine admits half the count and all the bytes not yet stable
     * (engine_send.c). Measured on the emulated 100 Mbit/s LAN, n = k = 5, group members behind a staging
     * queue as small as the broadcast ring: 10 kB messages are bound by the bytes — efficiency 0.96 / 0.94
     * with 1 MiB, 0.97 / 0.94 with 512 KiB, 0.89 / 0.90 with 2 MiB (two runs each; deeper queues per hop
     * only add latency: p50 0.7 s, 1.0 s, 1.3 s); k = 1 0.95–0.98 with 512 KiB or 1 MiB; 1 Gbit/s, n = k = 3:
     * 0.99 with any of them. 100 B messages are bound by the count: 0.85–0.87 with 256, 0.89–0.93 with
     * 1024. The derived receive buffer (8 × n × 1 MiB, rc_engine_create) fits RC_IO_RECV_BUFFER_BYTES_MAX
     * up to n = 30; larger rings need a smaller window_bytes. */
    s->window = 1024;
    s->window_bytes = 1u << 20;
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
    /* cubic, as ringperf measures the raw link. Measured on the emulated 100 Mbit/s LAN, n = 5, 10 kB,
     * 10 s runs, efficiency against the same raw link: k = 5 median 0.977 of 23 runs with cubic, 0.965 of
     * 12 with BBR (this VM's default); k = 1 0.970–0.980 and 0.982–0.987; 100 B, k = 5 0.93 with either; loopback
     * n = k = 5 5.6–6.3 Gbit/s and 5.0–5.3. Under BBR the links of the ring idled more often, although
     * a single BBR stream saturates the same link. */
    memcpy(s->congestion, "cubic", sizeof "cubic");
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
    if (s->batch_count_max < 1 || s->batch_count_max > RC_LCR_BATCH_COUNT_MAX) return false;
    if (s->batch_bytes_max < 1 || s->batch_bytes_max > RC_LCR_BATCH_BYTES_MAX) return false;
    if (s->broadcast_ring_max < 1 || s->broadcast_ring_max > RC_ENGINE_BROADCAST_RING_MAX) return false;
    if (s->delivery_ring_max < s->batch_count_max || s->delivery_ring_max > RC_ENGINE_DELIVERY_RING_MAX) return false;
    if (s->heartbeat_ms < 1 || s->heartbeat_ms > RC_ENGINE_HEARTBEAT_MS_MAX || s->connect_timeout_ms < 1) return false;
    if (s->stall_ms < s->heartbeat_ms) return false;
    if (s->window_bytes < 1 || s->recv_buffer_bytes > RC_IO_RECV_BUFFER_BYTES_MAX) return false;
    if (memchr(s->congestion, 0, sizeof s->congestion) == NULL) return false;
    return s->recv_buffer_bytes >= recv_buffer_bytes_min(s);
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
    if (e->core != NULL) {
        rc_lcr_stats core = rc_lcr_stats_get(e->core);
        e->stats.own_held = core.own_held;
        e->stats.ack_only_frames = core.ack_only_frames;
    }
    pthread_mutex_lock(&e->stats_lock);
    e->published = e->stats;
    pthread_mutex_unlock(&e->stats_lock);
    e->published_ns = now_ns;
}
