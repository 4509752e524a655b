/*
 * engine_send.c — frames to the successor. The core decides what goes next (fairness, piggy-backed
 * ACKs); this file turns its decision into transport sends without copying payload bytes:
 *   forward:  [hop header slot] [message block, in place in the receive buffer]
 *   own:      [hop header slot] [own message header slot] [payload 1] … [payload c] (the broadcaster's memory)
 *   ACK only: [hop header slot]           heartbeat: [hop header slot] when the link was idle
 * A frame is only asked of the core when the transport can take all of its pieces, because once the
 * core has handed a frame out, it has to go.
 */
#include "engine_internal.h"

#include <errno.h>
#include <string.h>

static uint32_t slot_take(uint32_t *free_list, uint32_t *free_count) {
    RC_ASSERT(*free_count > 0);
    return free_list[--*free_count];
}

static void slot_give(uint32_t *free_list, uint32_t *free_count, uint32_t max, uint32_t slot) {
    RC_ASSERT(*free_count < max && slot < max);
    free_list[(*free_count)++] = slot;
}

/* Moves broadcasts from the producer's ring into the core while its window has room. */
void engine_broadcasts_take(rc_engine *engine) {
    engine_spsc *ring = &engine->broadcast_ring;
    uint64_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
    uint64_t taken = 0;
    while (head + taken < tail) {
        const engine_app *request = &engine->broadcast_slots[(head + taken) % ring->capacity];
        bool bytes_full = engine->own_inflight_bytes > 0 &&
                          engine->own_inflight_bytes + request->length > engine->settings.window_bytes;
        if (bytes_full) break; /* the byte window: what bounds the receive buffers around the ring */
        uint64_t index = engine->apps_accepted;
        int rc = rc_lcr_broadcast(engine->core, index, request->length);
        if (rc == -EAGAIN) break; /* the window is full: the ring fills, then the producer waits */
        RC_ASSERT(rc == 0);       /* lengths were checked in rc_engine_broadcast */
        engine->apps[index % engine->settings.window] = *request;
        engine->apps_accepted++;
        engine->own_inflight_bytes += request->length;
        engine->stats.broadcasts++;
        taken++;
    }
    if (taken == 0) return;
    atomic_store_explicit(&ring->head, head + taken, memory_order_release);
    if (atomic_exchange_explicit(&engine->producer_waiting, false, memory_order_acq_rel)) {
        engine_eventfd_signal(engine->space_fd);
    }
}

static int send_piece(rc_engine *engine, const void *bytes, uint32_t length, uint64_t token) {
    int rc = rc_io_send(engine->io, (uint32_t)engine->successor_conn, bytes, length, token);
    RC_ASSERT(rc != -EAGAIN); /* space was checked before the core was asked */
    if (rc == 0) engine->stats.bytes_out += length;
    return rc;
}

/* Encodes the hop header of `frame` (type, view, ACKs) into a free slot and queues it. */
static int send_hop(rc_engine *engine, uint8_t type, const rc_lcr_frame *frame, uint32_t body_bytes) {
    uint32_t slot = slot_take(engine->hop_free, &engine->hop_free_count);
    uint8_t *out = engine->hop_slots + (size_t)slot * RC_WIRE_HOP_MAX;
    rc_wire_hop hop = {
        .type = type, .view_id = engine->settings.view_id, .nodes = engine->settings.nodes,
        .sender = engine->settings.self, .ack_count = frame ? frame->ack_count : 0,
        .acks = frame ? frame->acks : NULL, .body_bytes = body_bytes,
    };
    int bytes = rc_wire_hop_encode(out, RC_WIRE_HOP_MAX, &hop);
    RC_ASSERT(bytes > 0); /* the core only produces valid ACKs */
    return send_piece(engine, out, (uint32_t)bytes, ENGINE_TOKEN(ENGINE_TOKEN_HOP, slot));
}

static int send_forward(rc_engine *engine, const rc_lcr_frame *frame) {
    uint64_t record = frame->message.ref;
    uint32_t body_bytes = 0;
    const uint8_t *body = engine_record_body(engine, record, &body_bytes);
    int rc = send_hop(engine, RC_WIRE_TYPE_DATA, frame, body_bytes);
    if (rc < 0) return rc;
    engine->stats.forwarded++;
    return send_piece(engine, body, body_bytes, ENGINE_TOKEN(ENGINE_TOKEN_FORWARD, record));
}

static int send_own(rc_engine *engine, const rc_lcr_frame *frame) {
    const rc_lcr_message *m = &frame->message;
    uint32_t window = engine->settings.window;
    for (uint32_t i = 0; i < m->count; i++) engine->own_lengths[i] = engine->apps[(m->ref + i) % window].length;
    uint32_t slot = slot_take(engine->own_free, &engine->own_free_count);
    uint8_t *header = engine->own_slots + (size_t)slot * engine->own_slot_bytes;
    int header_bytes = rc_wire_message_header_encode(header, engine->own_slot_bytes, engine->settings.nodes,
                                                     m, engine->own_lengths);
    RC_ASSERT(header_bytes > 0);
    int rc = send_hop(engine, RC_WIRE_TYPE_DATA, frame, (uint32_t)header_bytes + (uint32_t)m->bytes);
    if (rc == 0) rc = send_piece(engine, header, (uint32_t)header_bytes, ENGINE_TOKEN(ENGINE_TOKEN_OWN, slot));
    for (uint32_t i = 0; rc == 0 && i < m->count; i++) {
        const engine_app *app = &engine->apps[(m->ref + i) % window];
        if (app->length > 0) rc = send_piece(engine, app->bytes, app->length, ENGINE_TOKEN(ENGINE_TOKEN_PAYLOAD, 0));
    }
    engine->stats.lcr_messages_sent++;
    return rc;
}

/* Two largest frames: enough to keep the link busy while the next one is chosen. */
uint32_t engine_unsent_bytes_max(const rc_engine *engine) {
    return (uint32_t)(2 * engine_frame_bytes_max(&engine->settings));
}

/*
 * "While the link to the successor can take a frame" (rc_lcr.h, the caller's duties). The core chooses
 * between forwarding and its own messages (fairness, §2.5.2) at the moment it is asked; asked whenever
 * the transport has queue space, it would choose megabytes ahead of the wire, with an empty forward
 * queue each time, and fairness would never hold anything back (seen on the emulated LAN: shares of
 * 0.14 vs 0.28). So a frame is asked for only when less than two frames' worth of bytes are unsent,
 * and TCP_NOTSENT_LOWAT keeps the kernel's own queue just as short.
 */
static bool room_for_a_frame(rc_engine *engine) {
    uint32_t pieces = 3 + engine->settings.batch_count_max;
    uint64_t sent = rc_io_stats_get(engine->io).bytes_out;
    uint64_t unsent = engine->stats.bytes_out - sent;
    return engine->hop_free_count > 0 && engine->own_free_count > 0 && unsent < engine_unsent_bytes_max(engine) &&
           rc_io_send_space(engine->io, (uint32_t)engine->successor_conn) >= pieces;
}

int engine_send_process(rc_engine *engine, uint64_t now_ns) {
    if (engine->successor_conn < 0) return 0;
    while (room_for_a_frame(engine)) {
        rc_lcr_frame frame;
        if (rc_lcr_next_frame(engine->core, &frame) == 0) break;
        int rc;
        if (!frame.has_message) rc = send_hop(engine, RC_WIRE_TYPE_ACK, &frame, 0);
        else if (frame.message.own) rc = send_own(engine, &frame);
        else rc = send_forward(engine, &frame);
        if (rc < 0) return rc;
        engine->stats.frames_out++;
        engine->last_send_ns = now_ns;
    }
    bool idle = now_ns - engine->last_send_ns >= (uint64_t)engine->settings.heartbeat_ms * 1000000u;
    if (idle && engine->hop_free_count > 0 && rc_io_send_space(engine->io, (uint32_t)engine->successor_conn) > 0) {
        int rc = send_hop(engine, RC_WIRE_TYPE_HEARTBEAT, NULL, 0);
        if (rc < 0) return rc;
        engine->stats.heartbeats_out++;
        engine->last_send_ns = now_ns;
    }
    return 0;
}

void engine_send_done(rc_engine *engine, uint64_t token) {
    uint64_t index = ENGINE_TOKEN_INDEX(token);
    switch (ENGINE_TOKEN_KIND(token)) {
    case ENGINE_TOKEN_HOP:
        slot_give(engine->hop_free, &engine->hop_free_count, engine->hop_slots_max, (uint32_t)index);
        break;
    case ENGINE_TOKEN_OWN:
        slot_give(engine->own_free, &engine->own_free_count, engine->own_slots_max, (uint32_t)index);
        break;
    case ENGINE_TOKEN_FORWARD:
        engine_record_forward_done(engine, index);
        break;
    case ENGINE_TOKEN_PAYLOAD:
        break; /* the broadcaster's memory: released by its own delivery */
    default:
        RC_ASSERT(!"unknown send token");
    }
}
