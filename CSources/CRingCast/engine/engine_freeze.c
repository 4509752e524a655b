/*
 * engine_freeze.c — the engine's half of a view change (thesis §2.4.3, Fig. 2.7): freeze the ring and
 * hand `pending` to the membership layer, which exchanges it with the other survivors and force-delivers.
 *
 * The engine thread does the work, because only it may touch the transport (the receive buffer holds
 * the bytes of received pending messages) and the core. It first waits for the application to release
 * every delivery already handed out, so that "delivered" means the same thing to the application and to
 * the exported state: C and pending then partition what this node received into delivered and not.
 */
#include "engine_internal.h"

#include <errno.h>
#include <string.h>

/* The views of one pending message's application messages, in `apps` (batch_count_max entries). */
static uint32_t pending_apps(rc_engine *e, const rc_lcr_pending_view *view, rc_engine_delivery *apps) {
    uint32_t count = 0;
    engine_app_views views;
    engine_app_views_init(&views, e, view->origin, view->own, view->ref, view->count);
    while (engine_app_views_next(&views, &apps[count])) count++;
    RC_ASSERT(count == view->count);
    return count;
}

/*
 * Each exported application message carries its final origin_seq. An origin's pending messages are the
 * contiguous run of what it received from that origin after what it delivered (links are FIFO, delivery is a
 * prefix of each origin's messages), and ≺ keeps each origin's order: numbering them on from
 * origin_delivered gives every message the number delivering it gives it, at every process (uniform
 * agreement). `origin_delivered` itself is left as it is: what was delivered here.
 */
static void export_pending(rc_engine *e) {
    const uint32_t nodes = e->settings.nodes;
    e->export_fn(e->export_context, rc_lcr_clock(e->core), nodes, NULL);
    memcpy(e->window_origin_mark, e->origin_delivered, nodes * sizeof(uint64_t)); /* reused: next origin_seq - 1 */
    uint32_t total = rc_lcr_pending_count(e->core);
    for (uint32_t position = 0; position < total; position++) {
        rc_lcr_pending_view view;
        RC_ASSERT(rc_lcr_pending_at(e->core, position, &view) == 0);
        RC_ASSERT(view.count >= 1 && view.count <= e->settings.batch_count_max);
        RC_ASSERT(view.origin < nodes);
        rc_engine_pending message = {
            .origin = view.origin, .seq = view.seq, .count = view.count, .own = view.own,
            .clock = view.clock, .apps = e->export_apps,
        };
        pending_apps(e, &view, e->export_apps);
        for (uint32_t i = 0; i < view.count; i++) e->export_apps[i].origin_seq = ++e->window_origin_mark[view.origin];
        e->export_fn(e->export_context, rc_lcr_clock(e->core), nodes, &message);
    }
}

void rc_engine_origin_delivered(const rc_engine *engine, uint64_t *out, uint32_t nodes) {
    RC_ASSERT(engine != NULL && out != NULL && nodes == engine->settings.nodes);
    /* The engine thread no longer delivers: frozen (freeze_done was read under start_lock by the freezing
     * thread, the caller), or ended. */
    int state = atomic_load(&((rc_engine *)engine)->state);
    RC_ASSERT(engine->freeze_done || (state != RC_ENGINE_CONNECTING && state != RC_ENGINE_RUNNING));
    memcpy(out, engine->origin_delivered, nodes * sizeof(uint64_t));
}

/* One step of a requested freeze, from the engine loop. Returns true when the thread may end. */
bool engine_freeze_step(rc_engine *e, uint64_t now_ns) {
    if (e->settings.deliver == NULL) {
        engine_deliveries_reclaim(e);
        uint64_t tail = atomic_load_explicit(&e->delivery_ring.tail, memory_order_acquire);
        if (e->deliveries_reclaimed != tail) {
            if (now_ns < e->freeze_deadline_ns) return false; /* the consumer still holds views */
            e->freeze_result = -ETIMEDOUT;
            return true;
        }
    }
    if (e->core != NULL) export_pending(e);
    e->freeze_result = 0;
    return true;
}

int rc_engine_freeze(rc_engine *e, rc_engine_export_fn export, void *context, uint32_t timeout_ms) {
    RC_ASSERT(e != NULL && export != NULL);
    if (!e->thread_started || atomic_load(&e->freeze_requested)) return -EALREADY;
    e->export_fn = export;
    e->export_context = context;
    e->freeze_deadline_ns = engine_now_ns() + (uint64_t)timeout_ms * 1000000u;
    e->freeze_result = -EALREADY; /* the thread had already ended (rc_engine_stop raced us) */
    atomic_store_explicit(&e->freeze_requested, true, memory_order_release);
    pthread_mutex_lock(&e->wake_lock);
    if (e->io_alive) rc_io_wake(e->io);
    pthread_mutex_unlock(&e->wake_lock);
    /* Wait for the export and the listener's close, not for the thread: it goes on to free the transport,
     * which takes tens of ms for large receive buffers (munmap); rc_engine_destroy joins it later. */
    pthread_mutex_lock(&e->start_lock);
    while (!e->freeze_done) pthread_cond_wait(&e->start_cond, &e->start_lock);
    pthread_mutex_unlock(&e->start_lock);
    return e->freeze_result;
}

/* Engine thread, after a freeze: stops the listener (so the next view's engine can listen on the same
 * port at once) and tells rc_engine_freeze it may return. */
void engine_freeze_release_port(rc_engine *e) {
    if (e->io != NULL && e->listener >= 0) (void)rc_io_listener_stop(e->io, (uint32_t)e->listener);
    engine_freeze_done(e);
}

void engine_freeze_done(rc_engine *e) {
    pthread_mutex_lock(&e->start_lock);
    e->freeze_done = true;
    pthread_cond_broadcast(&e->start_cond);
    pthread_mutex_unlock(&e->start_lock);
}

rc_engine_link rc_engine_lost_link(const rc_engine *engine) {
    return (rc_engine_link)atomic_load(&((rc_engine *)engine)->lost_link);
}
