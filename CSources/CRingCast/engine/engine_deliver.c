/*
 * engine_deliver.c — utoDeliver: the core's deliveries, in total order, handed to the application as
 * views of the bytes they arrived in (or, for own messages, of the broadcaster's memory).
 *
 * With a synchronous handler the views live for the call only, so the bytes are released right after.
 * With the delivery ring they live until the consumer releases them; the engine thread then walks the
 * released slots (reclaim) and lets the receive buffer go. A full ring stops taking deliveries from the
 * core: pending fills, the core refuses frames, the transport stops reading — backpressure, no loss.
 */
#include "engine_internal.h"

#include <string.h>

static uint64_t later(uint64_t a, uint64_t b) { return a > b ? a : b; }

/* Adds where an own message's time went to the latency decomposition (rc_engine_stats). The engine stamps
 * with the time its pass started, the producer with its own clock read, so the stamps are made monotonic
 * here; a stamp not set (a ring of one sends nothing: sent and stable when taken) counts as the one before. */
static void own_latency_account(rc_engine *engine, const engine_app *app, uint64_t now_ns) {
    RC_ASSERT(app->broadcast_ns > 0 && now_ns >= app->broadcast_ns);
    uint64_t taken = later(app->taken_ns, app->broadcast_ns), sent = later(app->sent_ns, taken);
    uint64_t stable = later(app->stable_ns, sent), delivered = later(now_ns, stable);
    engine->stats.own_latency_samples++;
    engine->stats.own_admit_wait_ns += taken - app->broadcast_ns;
    engine->stats.own_send_wait_ns += sent - taken;
    engine->stats.own_ring_trip_ns += stable - sent;
    engine->stats.own_deliver_wait_ns += delivered - stable;
}

/* Fills `out` with the application messages of one delivered LCR message. Returns their count. */
static uint32_t expand(rc_engine *engine, const rc_lcr_message *m, engine_delivery_slot *out) {
    uint32_t count = 0;
    engine_app_views views;
    engine_app_views_init(&views, engine, m->origin, m->own, m->ref, m->count);
    rc_engine_delivery delivery;
    uint64_t now_ns = m->own ? engine_now_ns() : 0; /* one clock read per own LCR message, not per application message */
    while (engine_app_views_next(&views, &delivery)) {
        if (m->own) {
            RC_ASSERT(engine->own_inflight_bytes >= delivery.length);
            engine->own_inflight_bytes -= delivery.length;
            own_latency_account(engine, &engine->apps[(m->ref + count) % engine->settings.window], now_ns);
            if (engine->settings.nodes == 1) engine_admitted_release(engine, delivery.length);
        }
        out[count++] = (engine_delivery_slot){.delivery = delivery, .record = m->own ? UINT64_MAX : m->ref};
    }
    if (!m->own) {
        engine_record *record = engine_record_get(engine, m->ref);
        RC_ASSERT(record->in_core);
        record->in_core = false;
    }
    RC_ASSERT(count == m->count);
    for (uint32_t i = 0; i < count; i++) {
        rc_engine_delivery *d = &out[i].delivery;
        d->origin = m->origin;
        d->origin_seq = ++engine->origin_delivered[m->origin];
        d->view_id = engine->settings.view_id;
        engine->stats.delivered_bytes += d->length;
        rc_window_on_delivery(&engine->window, d->length);
    }
    engine->stats.delivered_messages += count;
    return count;
}

static void deliver_to_handler(rc_engine *engine) {
    engine_delivery_slot *scratch = engine->delivery_scratch;
    rc_engine_delivery batch[64];
    rc_lcr_message m;
    while (rc_lcr_next_deliveries(engine->core, &m, 1) == 1) {
        uint32_t count = expand(engine, &m, scratch);
        for (uint32_t done = 0; done < count;) {
            uint32_t chunk = count - done < 64 ? count - done : 64;
            for (uint32_t i = 0; i < chunk; i++) batch[i] = scratch[done + i].delivery;
            engine->settings.deliver(engine->settings.deliver_context, batch, chunk);
            done += chunk;
        }
    }
}

static void deliver_to_ring(rc_engine *engine) {
    engine_spsc *ring = &engine->delivery_ring;
    uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
    uint64_t start = tail;
    for (;;) {
        /* Room for the largest batch, counting released slots not yet reclaimed as used. */
        if (ring->capacity - (tail - engine->deliveries_reclaimed) < engine->settings.batch_count_max) {
            engine->stats.delivery_stalls++;
            break;
        }
        rc_lcr_message m;
        if (rc_lcr_next_deliveries(engine->core, &m, 1) == 0) break;
        /* expand() writes contiguous slots and the ring wraps: stage through the scratch array. */
        uint32_t count = expand(engine, &m, engine->delivery_scratch);
        for (uint32_t i = 0; i < count; i++) {
            engine->delivery_slots[(tail + i) % ring->capacity] = engine->delivery_scratch[i];
            if (engine->delivery_scratch[i].record != UINT64_MAX) {
                engine_record_get(engine, engine->delivery_scratch[i].record)->apps_unreleased++;
            }
        }
        tail += count;
    }
    if (tail == start) return;
    atomic_store_explicit(&ring->tail, tail, memory_order_release);
    engine_eventfd_signal(engine->delivery_fd);
}

void engine_deliver_process(rc_engine *engine) {
    if (engine->settings.deliver != NULL) deliver_to_handler(engine);
    else deliver_to_ring(engine);
    engine_record_release(engine);
}

/* Walks the slots the consumer released since last time and frees what they held. */
void engine_deliveries_reclaim(rc_engine *engine) {
    if (engine->settings.deliver != NULL) return;
    engine_spsc *ring = &engine->delivery_ring;
    uint64_t head = atomic_load_explicit(&ring->head, memory_order_acquire);
    for (uint64_t i = engine->deliveries_reclaimed; i < head; i++) {
        uint64_t record = engine->delivery_slots[i % ring->capacity].record;
        if (record == UINT64_MAX) continue;
        engine_record *entry = engine_record_get(engine, record);
        RC_ASSERT(entry->apps_unreleased > 0);
        entry->apps_unreleased--;
    }
    engine->deliveries_reclaimed = head;
}
