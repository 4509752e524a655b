/*
 * engine.c — a RingCast node's life: set-up, the engine thread's loop, shutdown.
 *
 * The loop, in the order rc_lcr.h asks for (send first to keep the ring busy, then deliver, then
 * release), each step bounded by the memory fixed at create:
 *   take broadcasts → read frames into the core → send frames → deliver → reclaim released deliveries
 *   → publish counters → wait for the transport (submit + wait in one syscall).
 */
#include "engine_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
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
    s->staging_bytes = 32u << 10;
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
static bool settings_complete(rc_engine_settings *s) {
    if (s->recv_buffer_bytes == 0) {
        uint64_t mib = 1u << 20, bytes = (recv_buffer_bytes_min(s) + mib - 1) / mib * mib;
        if (bytes > RC_IO_RECV_BUFFER_BYTES_MAX) return false;
        s->recv_buffer_bytes = (uint32_t)bytes;
    }
    return settings_valid(s);
}

static rc_lcr_settings lcr_settings_of(const rc_engine_settings *s) {
    /* rc_lcr.h's sizing rules: forward queue > window, pending ≥ n × (window + forward queue). */
    uint32_t forward = s->window + 1;
    return (rc_lcr_settings){
        .nodes = s->nodes, .self = s->self, .send_queue_max = s->window, .forward_queue_max = forward,
        .pending_max = s->nodes * (s->window + forward), .batch_count_max = s->batch_count_max,
        .batch_bytes_max = s->batch_bytes_max, .fairness = s->fairness, .test_fault = 0,
    };
}

static void *checked_calloc(size_t count, size_t size, bool *ok) {
    void *memory = calloc(count ? count : 1, size);
    if (memory == NULL) *ok = false;
    return memory;
}

static int engine_allocate(rc_engine *e) {
    const rc_engine_settings *s = &e->settings;
    bool ok = true;
    size_t core_bytes = rc_lcr_memory_size(&e->lcr_settings);
    e->core_memory = aligned_alloc(16, (core_bytes + 15) & ~(size_t)15);
    if (e->core_memory == NULL || core_bytes == 0) return -ENOMEM;
    if (rc_lcr_init(&e->core, e->core_memory, core_bytes, &e->lcr_settings) != 0) return -EINVAL;
    e->records_max = e->lcr_settings.pending_max + s->delivery_ring_max + 1024;
    e->records = checked_calloc(e->records_max, sizeof(engine_record), &ok);
    e->apps = checked_calloc(s->window, sizeof(engine_app), &ok);
    e->own_sent_max = s->window; /* each LCR message holds ≥ 1 of the ≤ window application messages */
    e->own_sent = checked_calloc(e->own_sent_max, sizeof(engine_own_sent), &ok);
    e->origin_delivered = checked_calloc(s->nodes, sizeof(uint64_t), &ok);
    e->window_origin_mark = checked_calloc(s->nodes, sizeof(uint64_t), &ok);
    e->hop_slots_max = 512;
    e->hop_slots = checked_calloc(e->hop_slots_max, RC_WIRE_HOP_MAX, &ok);
    e->hop_free = checked_calloc(e->hop_slots_max, sizeof(uint32_t), &ok);
    e->own_slots_max = s->window < 256 ? s->window : 256;
    e->own_slot_bytes = rc_wire_message_header_bytes(s->nodes, s->batch_count_max);
    e->own_slots = checked_calloc(e->own_slots_max, e->own_slot_bytes, &ok);
    e->own_free = checked_calloc(e->own_slots_max, sizeof(uint32_t), &ok);
    e->own_lengths = checked_calloc(s->batch_count_max, sizeof(uint32_t), &ok);
    e->broadcast_slots = checked_calloc(s->broadcast_ring_max, sizeof(engine_app), &ok);
    e->delivery_slots = checked_calloc(s->delivery_ring_max, sizeof(engine_delivery_slot), &ok);
    e->delivery_scratch = checked_calloc(s->batch_count_max, sizeof(engine_delivery_slot), &ok);
    e->export_apps = checked_calloc(s->batch_count_max, sizeof(rc_engine_delivery), &ok);
    if (!ok) return -ENOMEM;
    for (uint32_t i = 0; i < e->hop_slots_max; i++) e->hop_free[i] = i;
    e->hop_free_count = e->hop_slots_max;
    for (uint32_t i = 0; i < e->own_slots_max; i++) e->own_free[i] = i;
    e->own_free_count = e->own_slots_max;
    engine_spsc_init(&e->broadcast_ring, s->broadcast_ring_max);
    engine_spsc_init(&e->delivery_ring, s->delivery_ring_max);
    e->space_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    e->delivery_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return e->space_fd < 0 || e->delivery_fd < 0 ? -errno : 0;
}

int rc_engine_create(rc_engine **out, const rc_engine_settings *settings) {
    if (out == NULL || settings == NULL) return -EINVAL;
    rc_engine_settings complete = *settings;
    if (!settings_complete(&complete)) return -EINVAL;
    rc_engine *e = calloc(1, sizeof(*e));
    if (e == NULL) return -ENOMEM;
    e->settings = complete;
    e->lcr_settings = lcr_settings_of(settings);
    e->listener = e->successor_conn = e->predecessor_conn = -1;
    e->space_fd = e->delivery_fd = -1;
    atomic_init(&e->state, RC_ENGINE_CREATED);
    atomic_init(&e->error, 0);
    atomic_init(&e->stop_requested, false);
    atomic_init(&e->producer_waiting, false);
    atomic_init(&e->admitted_bytes, 0);
    rc_window_settings window;
    rc_window_settings_default(&window, complete.window_bytes);
    RC_ASSERT(rc_window_init(&e->window, &window, engine_now_ns()) == 0);
    atomic_init(&e->window_bytes_now, engine_window_bytes(e));
    pthread_mutex_init(&e->start_lock, NULL);
    pthread_cond_init(&e->start_cond, NULL);
    pthread_mutex_init(&e->stats_lock, NULL);
    pthread_mutex_init(&e->wake_lock, NULL);
    atomic_init(&e->sleeping, false);
    int rc = engine_allocate(e);
    if (rc < 0) {
        rc_engine_destroy(e);
        return rc;
    }
    *out = e;
    return 0;
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
    e->stats.window_bytes_now = engine_window_bytes(e);
    e->stats.ring_rtt_min_ns = e->window.rtt_min_ns;
    pthread_mutex_lock(&e->stats_lock);
    e->published = e->stats;
    pthread_mutex_unlock(&e->stats_lock);
    e->published_ns = now_ns;
}

void rc_engine_destroy(rc_engine *engine) {
    if (engine == NULL) return;
    rc_engine_stop(engine);
    if (engine->space_fd >= 0) close(engine->space_fd);
    if (engine->delivery_fd >= 0) close(engine->delivery_fd);
    free(engine->core_memory);
    free(engine->records);
    free(engine->apps);
    free(engine->own_sent);
    free(engine->origin_delivered);
    free(engine->window_origin_mark);
    free(engine->hop_slots);
    free(engine->hop_free);
    free(engine->own_slots);
    free(engine->own_free);
    free(engine->own_lengths);
    free(engine->broadcast_slots);
    free(engine->delivery_slots);
    free(engine->delivery_scratch);
    free(engine->export_apps);
    pthread_mutex_destroy(&engine->start_lock);
    pthread_cond_destroy(&engine->start_cond);
    pthread_mutex_destroy(&engine->stats_lock);
    pthread_mutex_destroy(&engine->wake_lock);
    free(engine);
}
