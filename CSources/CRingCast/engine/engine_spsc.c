/*
 * engine_spsc.c — the single-producer/single-consumer rings between the application's threads and the
 * engine thread, and the eventfds that wake the waiting side.
 *
 * head and tail count entries forever (64 bits never wrap in practice); an entry lives at index
 * position % capacity. The producer publishes with a release store of tail after writing the entry; the
 * consumer reads tail with acquire, reads the entry, then publishes head with release. No locks.
 */
#include "engine_internal.h"

#include <errno.h>
#include <stdint.h>
#include <unistd.h>

void engine_spsc_init(engine_spsc *ring, uint32_t capacity) {
    RC_ASSERT(capacity > 0);
    atomic_init(&ring->head, 0);
    atomic_init(&ring->tail, 0);
    ring->capacity = capacity;
}

uint32_t engine_spsc_used(const engine_spsc *ring) {
    uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
    uint64_t head = atomic_load_explicit(&ring->head, memory_order_acquire);
    RC_ASSERT(tail - head <= ring->capacity);
    return (uint32_t)(tail - head);
}

uint32_t engine_spsc_free(const engine_spsc *ring) { return ring->capacity - engine_spsc_used(ring); }

/* Wakes the engine thread if it sleeps in rc_io_wait. Only then is the lock taken: under load the
 * engine never sleeps, so the hot path stays lock-free. `sleeping` and the ring positions are
 * sequentially consistent, so either the engine sees the new entry before it sleeps, or we see it
 * sleeping and wake it. */
void engine_wake(rc_engine *engine) {
    if (!atomic_load(&engine->sleeping)) return;
    pthread_mutex_lock(&engine->wake_lock);
    if (engine->io_alive) rc_io_wake(engine->io);
    pthread_mutex_unlock(&engine->wake_lock);
}

/* ---- broadcasts: the application's producer thread ------------------------------------------ */

/* A slot in the ring, and room for `length` more bytes in the byte window plus the staging (or nothing
 * admitted at all). The staging bytes wait in the ring for the window: when an ACK frees the window,
 * the engine thread takes the next message itself, without waiting for the producer's thread to wake up
 * (with windows of a few messages, that hand-off left the links idle). */
static bool broadcast_room(rc_engine *engine, uint64_t tail, uint32_t length) {
    uint64_t head = atomic_load_explicit(&engine->broadcast_ring.head, memory_order_seq_cst);
    if (tail - head >= engine->broadcast_ring.capacity) return false;
    uint64_t admitted = atomic_load_explicit(&engine->admitted_bytes, memory_order_seq_cst);
    uint64_t window = atomic_load_explicit(&engine->window_bytes_now, memory_order_acquire);
    return admitted == 0 || admitted + length <= window + engine_staging_bytes(engine, window);
}

int rc_engine_broadcast(rc_engine *engine, const void *bytes, uint32_t length, uint64_t token) {
    RC_ASSERT(engine != NULL);
    int state = atomic_load_explicit(&engine->state, memory_order_acquire);
    if (state == RC_ENGINE_STOPPED || state == RC_ENGINE_FAILED) return -EPIPE;
    if (length > engine->settings.batch_bytes_max) return -EMSGSIZE;
    if (bytes == NULL && length > 0) return -EINVAL;
    engine_spsc *ring = &engine->broadcast_ring;
    uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
    if (!broadcast_room(engine, tail, length)) {
        atomic_store_explicit(&engine->producer_waiting, true, memory_order_seq_cst);
        /* Re-check: the engine may have taken entries or released bytes between our load and the flag. */
        if (!broadcast_room(engine, tail, length)) return -EAGAIN;
    }
    atomic_fetch_add_explicit(&engine->admitted_bytes, length, memory_order_acq_rel);
    engine_app *slot = &engine->broadcast_slots[tail % ring->capacity];
    *slot = (engine_app){.bytes = bytes, .length = length, .token = token, .broadcast_ns = engine_now_ns()};
    atomic_store(&ring->tail, tail + 1);
    engine_wake(engine);
    return 0;
}

int rc_engine_space_fd(const rc_engine *engine) { return engine->space_fd; }

uint64_t rc_engine_staging_bytes(const rc_engine *engine) {
    return engine_staging_bytes(engine, atomic_load_explicit(&((rc_engine *)engine)->window_bytes_now, memory_order_acquire));
}

/* ---- deliveries: the application's consumer thread ------------------------------------------ */

uint32_t rc_engine_deliveries_peek(rc_engine *engine, rc_engine_delivery *out, uint32_t max) {
    RC_ASSERT(engine != NULL && (out != NULL || max == 0));
    engine_spsc *ring = &engine->delivery_ring;
    uint64_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
    uint64_t available = tail - head;
    uint32_t count = available < max ? (uint32_t)available : max;
    for (uint32_t i = 0; i < count; i++) {
        out[i] = engine->delivery_slots[(head + i) % ring->capacity].delivery;
    }
    return count;
}

void rc_engine_deliveries_release(rc_engine *engine, uint32_t count) {
    engine_spsc *ring = &engine->delivery_ring;
    uint64_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
    RC_ASSERT(count <= tail - head); /* releasing what was never peeked is a caller bug */
    atomic_store(&ring->head, head + count);
    engine_wake(engine); /* released bytes may unblock a stalled ring */
}

int rc_engine_delivery_fd(const rc_engine *engine) { return engine->delivery_fd; }
