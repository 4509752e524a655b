/*
 * engine_thread.c — an engine's life: create (memory fixed for good), the engine thread, stop, destroy.
 * The thread creates the io_uring ring itself (IORING_SETUP_SINGLE_ISSUER lets only the creating thread
 * submit), listens, connects to the successor, then loops until stopped. The loop runs the steps in the
 * order rc_lcr.h asks for (send first to keep the ring busy, then deliver, then release), each bounded by
 * the memory fixed at create:
 *   take broadcasts → read frames into the core → send frames → deliver → reclaim released deliveries
 *   → publish counters → wait for the transport (submit + wait in one syscall).
 */
#include "engine_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* ---- create ---------------------------------------------------------------------------------- */

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
    if (ok && s->origin_seq_bases != NULL) {
        /* origin_seq continues across views (rc_engine.h); the window's epoch mark starts level with it. */
        memcpy(e->origin_delivered, s->origin_seq_bases, s->nodes * sizeof(uint64_t));
        memcpy(e->window_origin_mark, s->origin_seq_bases, s->nodes * sizeof(uint64_t));
    }
    e->hop_slots_max = 512;
    e->hop_slots = checked_calloc(e->hop_slots_max, ENGINE_HOP_SLOT_BYTES, &ok);
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
    if (s->auth.mode == RC_AUTH_MODE_ENCRYPT && s->nodes > 1) {
        /* A frame is asked of the core only while less than two frames' worth are unsent (engine_send.c), and
         * zero-copy sends hold theirs a little longer: 8 slots keep the link busy. */
        e->seal_slots_max = 8;
        e->seal_slot_bytes = (uint32_t)engine_frame_bytes_max(s) + RC_AUTH_SEAL_HEADER_BYTES + RC_AUTH_SEAL_TAG_BYTES;
        e->seal_slots = checked_calloc(e->seal_slots_max, e->seal_slot_bytes, &ok);
        e->seal_free = checked_calloc(e->seal_slots_max, sizeof(uint32_t), &ok);
        for (uint32_t i = 0; ok && i < e->seal_slots_max; i++) e->seal_free[i] = i;
        e->seal_free_count = e->seal_slots_max;
    }
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
    if (!engine_settings_complete(&complete)) return -EINVAL;
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
    e->settings.origin_seq_bases = NULL; /* copied by engine_allocate: the caller's array is not kept */
    if (rc < 0) {
        rc_engine_destroy(e);
        return rc;
    }
    *out = e;
    return 0;
}

/* ---- the engine thread ---------------------------------------------------------------------------- */

/* While connecting, the loop wakes this often to check the deadline. */
#define ENGINE_CONNECTING_WAIT_NS 10000000
#define ENGINE_FAILED_WAIT_NS 50000000 /* a failed engine only waits for rc_engine_freeze / _stop */

static int io_setup(rc_engine *e) {
    rc_io_settings io;
    rc_io_settings_default(&io);
    /* listener, predecessor, successor, one more to refuse intruders; authenticated links keep room for
     * connections still proving themselves (an intruder must not take the predecessor's place). */
    io.conns_max = engine_auth_enabled(e) ? ENGINE_CONNS_MAX : 4;
    io.recv_buffer_bytes = e->settings.recv_buffer_bytes;
    if (io.recv_bytes_max > io.recv_buffer_bytes) io.recv_bytes_max = io.recv_buffer_bytes;
    io.send_queue_max = 4096;
    io.zerocopy = e->settings.zerocopy;
    memcpy(io.congestion, e->settings.congestion, sizeof io.congestion);
    io.congestion_fallback = true; /* a preference: the ring must run for unprivileged users too */
    io.notsent_lowat = engine_unsent_bytes_max(e); /* see room_for_a_frame */
    if (io.send_bytes_max < io.notsent_lowat) io.send_bytes_max = io.notsent_lowat;
    /* 2 ms, doubling in the transport: after a view change every member starts its ring at about the same
     * time, so the first tries must be quick; 14 doublings still cover any sane connect timeout. */
    uint64_t backoff_ns = 2000000;
    io.connect_backoff_ns = backoff_ns;
    io.connect_retries = 14;
    int rc = rc_io_create(&e->io, &io);
    if (rc < 0) return rc;
    if (e->settings.nodes == 1) return 0;
    rc = rc_io_listen(e->io, &e->settings.listen, 16);
    if (rc < 0) return rc;
    e->listener = rc;
    rc = rc_io_connect(e->io, &e->settings.successor);
    if (rc < 0) return rc;
    e->successor_conn = -1; /* known once CONNECTED arrives */
    return 0;
}

static void start_report(rc_engine *e, int rc) {
    pthread_mutex_lock(&e->start_lock);
    e->start_reported = true;
    e->start_error = rc;
    pthread_cond_signal(&e->start_cond);
    pthread_mutex_unlock(&e->start_lock);
}

static void event_handle(rc_engine *e, const rc_io_event *event) {
    switch (event->type) {
    case RC_IO_EVENT_ACCEPTED:
        if (engine_auth_enabled(e)) engine_auth_on_accepted(e, event->conn); /* a link only once proved */
        else if (e->predecessor_conn < 0) e->predecessor_conn = (int)event->conn;
        else { /* only the predecessor may connect to us */
            e->stats.connections_refused++;
            rc_io_close(e->io, event->conn);
        }
        break;
    case RC_IO_EVENT_CONNECTED:
        if (engine_auth_enabled(e)) engine_auth_on_connected(e, event->conn);
        else e->successor_conn = (int)event->conn;
        break;
    case RC_IO_EVENT_DATA:
        engine_auth_on_data(e, event->conn); /* a handshake's bytes; frames are read in the next pass */
        break;
    case RC_IO_EVENT_CONNECT_FAILED:
        atomic_store(&e->lost_link, RC_ENGINE_LINK_SUCCESSOR);
        engine_fail(e, event->error < 0 ? event->error : -ECONNREFUSED);
        break;
    case RC_IO_EVENT_SEND_DONE:
        if (event->error == 0 || event->error == -ECANCELED) engine_send_done(e, event->token);
        break;
    case RC_IO_EVENT_CLOSED:
        if (engine_auth_on_closed(e, event->conn, event->error)) break; /* gone before proving itself */
        if ((int)event->conn == e->predecessor_conn || (int)event->conn == e->successor_conn) {
            /* A lost neighbour stops the ring, not the thread: the membership layer above suspects the
             * neighbour, freezes this engine and takes pending out for the view change (Fig. 2.7). The
             * connection is not closed here, so the receive buffer keeps the pending messages' bytes. */
            int expected = RC_ENGINE_LINK_NONE;
            atomic_compare_exchange_strong(&e->lost_link, &expected,
                                           (int)event->conn == e->predecessor_conn ? RC_ENGINE_LINK_PREDECESSOR
                                                                                   : RC_ENGINE_LINK_SUCCESSOR);
            engine_fail(e, event->error < 0 ? event->error : -ECONNRESET);
        } else {
            rc_io_close(e->io, event->conn);
        }
        break;
    default:
        break;
    }
}

static bool connected(const rc_engine *e) {
    return e->settings.nodes == 1 || (e->successor_conn >= 0 && e->predecessor_conn >= 0);
}

/* A full receive buffer that nothing drains for stall_ms is a deadlock of the buffers around the ring
 * (rc_engine.h: the receive-buffer rule); fail with a clear error instead of hanging. */
static int stall_check(rc_engine *e, uint64_t now, uint64_t mark) {
    if (mark != e->stall_mark) {
        e->stall_mark = mark;
        e->stall_since_ns = now;
        return 0;
    }
    const uint8_t *data = NULL;
    size_t bytes = 0;
    bool full = e->predecessor_conn >= 0 &&
                rc_io_recv_peek(e->io, (uint32_t)e->predecessor_conn, &data, &bytes) == 0 &&
                bytes + engine_frame_bytes_max(&e->settings) + RC_AUTH_TAG_BYTES > e->settings.recv_buffer_bytes;
    bool stalled = now - e->stall_since_ns > (uint64_t)e->settings.stall_ms * 1000000u;
    return full && stalled ? -ENOBUFS : 0;
}

/* What a pass changed; a pass that changed something may have unblocked another step. */
static uint64_t progress_mark(const rc_engine *e) {
    return e->stream_parsed + e->stats.frames_out + e->stats.delivered_messages + e->stats.broadcasts +
           e->deliveries_reclaimed;
}

/* One pass of the loop, repeated while it makes progress: delivering frees pending, which lets the core
 * take a frame it refused, which lets more go out... none of which raises a transport event. Bounded so
 * that transport completions are still reaped regularly. Returns a negative error that stops the engine. */
static int engine_pass(rc_engine *e, uint64_t now) {
    for (int round = 0; round < 16; round++) {
        uint64_t before = progress_mark(e);
        engine_broadcasts_take(e, now);
        int rc = engine_recv_process(e);
        if (rc < 0) return rc;
        if (e->settings.nodes == 1) {
            rc_lcr_frame frame;
            RC_ASSERT(rc_lcr_next_frame(e->core, &frame) == 0); /* alone: own messages go straight to pending */
        }
        rc = engine_send_process(e, now);
        if (rc < 0) return rc;
        engine_own_stable_release(e, now); /* before delivering: an own message's stable time precedes its delivery */
        engine_deliver_process(e);
        engine_deliveries_reclaim(e);
        engine_record_release(e);
        if (progress_mark(e) == before) break;
    }
    engine_window_progress(e, now);
    engine_stats_publish(e, now, false);
    return stall_check(e, now, progress_mark(e));
}

/* True when the producer or the consumer left work that needs no transport event to proceed. */
static bool work_waiting(rc_engine *e, uint64_t now) {
    bool broadcasts = engine_broadcast_admissible(e, now);
    bool released = atomic_load(&e->delivery_ring.head) != e->deliveries_reclaimed;
    return broadcasts || released;
}

/* Waits for transport events, a wake-up from another thread, or the next heartbeat. */
static int engine_sleep(rc_engine *e, rc_io_event *events, uint32_t max, uint64_t now) {
    int64_t timeout = ENGINE_CONNECTING_WAIT_NS;
    if (atomic_load(&e->freeze_requested)) timeout = 1000000; /* polling the consumer's releases */
    else if (atomic_load(&e->state) == RC_ENGINE_FAILED) timeout = ENGINE_FAILED_WAIT_NS;
    else if (atomic_load(&e->state) == RC_ENGINE_RUNNING) {
        uint64_t heartbeat = (uint64_t)e->settings.heartbeat_ms * 1000000u, since = now - e->last_send_ns;
        timeout = since >= heartbeat ? 0 : (int64_t)(heartbeat - since);
    }
    atomic_store(&e->sleeping, true);
    if (!atomic_load(&e->freeze_requested) && atomic_load(&e->state) != RC_ENGINE_FAILED && work_waiting(e, now)) {
        timeout = 0;
    } /* checked after announcing sleep: no wake-up is lost */
    int count = rc_io_wait(e->io, events, max, timeout);
    atomic_store(&e->sleeping, false);
    return count;
}

static void *engine_main(void *argument) {
    rc_engine *e = argument;
    int rc = io_setup(e);
    if (rc == 0) {
        pthread_mutex_lock(&e->wake_lock);
        e->io_alive = true;
        pthread_mutex_unlock(&e->wake_lock);
    }
    start_report(e, rc);
    if (rc < 0) {
        if (e->io != NULL) rc_io_destroy(e->io); /* created, then listen or connect failed */
        e->io = NULL;
        engine_fail(e, rc);
        return NULL;
    }
    atomic_store(&e->state, RC_ENGINE_CONNECTING);
    uint64_t deadline = engine_now_ns() + (uint64_t)e->settings.connect_timeout_ms * 1000000u;
    e->last_send_ns = engine_now_ns();
    rc_io_event events[64];
    /* A failed engine keeps its thread (and transport) until stopped or frozen: see rc_engine_freeze. */
    while (!atomic_load_explicit(&e->stop_requested, memory_order_acquire)) {
        uint64_t now = engine_now_ns();
        if (engine_auth_enabled(e)) engine_auth_expire(e, now);
        if (atomic_load_explicit(&e->freeze_requested, memory_order_acquire)) {
            if (engine_freeze_step(e, now)) break;
        } else if (atomic_load(&e->state) == RC_ENGINE_CONNECTING) {
            if (connected(e)) atomic_store(&e->state, RC_ENGINE_RUNNING);
            else if (now > deadline) {
                atomic_store(&e->lost_link, e->successor_conn < 0 ? RC_ENGINE_LINK_SUCCESSOR : RC_ENGINE_LINK_PREDECESSOR);
                engine_fail(e, -ETIMEDOUT);
            }
        }
        if (!atomic_load(&e->freeze_requested) && atomic_load(&e->state) == RC_ENGINE_RUNNING &&
            (rc = engine_pass(e, now)) < 0) {
            engine_fail(e, rc);
            continue;
        }
        int count = engine_sleep(e, events, 64, now);
        if (count < 0 && count != -EINTR) {
            engine_fail(e, count);
            break; /* the transport itself failed: nothing more can be read from it */
        }
        for (int i = 0; i < count; i++) event_handle(e, &events[i]);
    }
    if (atomic_load(&e->freeze_requested)) engine_freeze_release_port(e);
    engine_stats_publish(e, engine_now_ns(), true);
    pthread_mutex_lock(&e->wake_lock);
    e->io_alive = false;
    pthread_mutex_unlock(&e->wake_lock);
    rc_io_destroy(e->io); /* after a freeze this runs while the next view starts: freeing the buffers is slow */
    e->io = NULL;
    if (atomic_load(&e->state) != RC_ENGINE_FAILED) atomic_store(&e->state, RC_ENGINE_STOPPED);
    engine_eventfd_signal(e->delivery_fd);
    engine_eventfd_signal(e->space_fd);
    engine_freeze_done(e); /* a freeze requested after the loop ended must not wait forever */
    return NULL;
}

int rc_engine_start(rc_engine *e) {
    RC_ASSERT(e != NULL);
    if (e->thread_started) return -EALREADY;
    int rc = pthread_create(&e->thread, NULL, engine_main, e);
    if (rc != 0) return -rc;
    e->thread_started = true;
    pthread_mutex_lock(&e->start_lock);
    while (!e->start_reported) pthread_cond_wait(&e->start_cond, &e->start_lock);
    rc = e->start_error;
    pthread_mutex_unlock(&e->start_lock);
    return rc;
}

void rc_engine_stop(rc_engine *e) {
    if (e == NULL || !e->thread_started) return;
    atomic_store_explicit(&e->stop_requested, true, memory_order_release);
    pthread_join(e->thread, NULL);
    e->thread_started = false;
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
    free(engine->seal_slots);
    free(engine->seal_free);
    engine_auth_release(engine);
    pthread_mutex_destroy(&engine->start_lock);
    pthread_cond_destroy(&engine->start_cond);
    pthread_mutex_destroy(&engine->stats_lock);
    pthread_mutex_destroy(&engine->wake_lock);
    free(engine);
}
