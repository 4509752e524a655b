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

/*
 * The byte window: own payload bytes taken and not yet stable here (their ACK came back around the ring),
 * rather than not yet delivered. One message is always admitted. Its size follows the ring's
 * bandwidth-delay product (rc_window.h; settings.window_bytes is its maximum) unless window_adaptive is off.
 *
 * Why stability and not delivery: an own message is delivered only after every message before it in ≺
 * (§2.4.1), and for concurrent messages ≺ puts the higher ring position first, so a low position waits
 * longer for its own deliveries than a high one. A window released at delivery therefore turns over
 * faster at high positions, the shares rise with the position and the links of the starved origins idle
 * (docs/tuning.md). Stability takes the same path for every origin (n − 1 hops of data, one of ACK),
 * so a window released there gives every origin the same rate, whatever the queues. The bound the byte
 * window exists for still holds: an origin has at most window_bytes on its way round the ring; messages
 * stable but not yet delivered wait in pending, bounded by the core's message window (released at
 * delivery, rc_lcr.h sizing rule 1).
 */
static bool window_bytes_full(const rc_engine *engine, uint32_t length) {
    uint64_t held = engine->settings.nodes == 1 ? engine->own_inflight_bytes : engine->own_unstable_bytes;
    return held > 0 && held + length > engine_window_bytes(engine);
}

/* Once per pass: the window's epoch (rc_window.h), with the origins that had a delivery in it. */
void engine_window_progress(rc_engine *engine, uint64_t now_ns) {
    if (engine->settings.nodes == 1 || !engine->settings.window_adaptive) return;
    uint32_t active = 0;
    for (uint32_t i = 0; i < engine->settings.nodes; i++) active += engine->origin_delivered[i] != engine->window_origin_mark[i];
    if (!rc_window_on_progress(&engine->window, now_ns, engine->stats.delivered_bytes, active)) return;
    memcpy(engine->window_origin_mark, engine->origin_delivered, engine->settings.nodes * sizeof(uint64_t));
    atomic_store_explicit(&engine->window_bytes_now, engine_window_bytes(engine), memory_order_seq_cst);
    if (atomic_exchange_explicit(&engine->producer_waiting, false, memory_order_seq_cst)) {
        engine_eventfd_signal(engine->space_fd); /* a larger window may admit what waits */
    }
}

/* Bytes no longer held against the producer's admission (rc_engine_broadcast): wake it if it waits. */
void engine_admitted_release(rc_engine *engine, uint64_t bytes) {
    uint64_t before = atomic_fetch_sub_explicit(&engine->admitted_bytes, bytes, memory_order_seq_cst);
    RC_ASSERT(before >= bytes);
    atomic_store_explicit(&engine->window_bytes_now, engine_window_bytes(engine), memory_order_seq_cst);
    /* seq_cst with rc_engine_broadcast's flag-then-recheck: either it sees the room, or we see it waiting. */
    if (atomic_exchange_explicit(&engine->producer_waiting, false, memory_order_seq_cst)) {
        engine_eventfd_signal(engine->space_fd);
    }
}

/*
 * The same for the count: the core's send queue (`window` messages) is released at delivery, so when it
 * binds, it binds unequally, as above (small messages hit it first). So the engine admits
 * at most half the window not yet stable, which leaves the other half for messages stable and waiting for
 * their turn in ≺ (one more trip round the ring at most), and the core's limit stays a backstop.
 */
static bool window_count_full(const rc_engine *engine) {
    return engine->settings.nodes > 1 && engine->own_unstable_apps > 0 &&
           engine->own_unstable_apps >= (engine->settings.window + 1) / 2;
}

/* The one admission check of an own message into the core: both windows above, and the core's send queue
 * (which rc_lcr_broadcast would refuse anyway: a backstop, so that both callers below agree). */
static bool own_admits(const rc_engine *engine, uint32_t length) {
    return rc_lcr_send_queue_count(engine->core) < engine->settings.window && !window_count_full(engine) &&
           !window_bytes_full(engine, length);
}

/* Releases the byte window of own LCR messages that became stable (cumulative: seq order), and samples the
 * ring round trip and rate for the window's size. */
void engine_own_stable_release(rc_engine *engine, uint64_t now_ns) {
    uint64_t stable = rc_lcr_stable_seq(engine->core, engine->settings.self);
    uint64_t released = 0;
    while (engine->own_sent_head < engine->own_sent_tail) {
        const engine_own_sent *sent = &engine->own_sent[engine->own_sent_head % engine->own_sent_max];
        if (sent->seq > stable) break;
        RC_ASSERT(engine->own_unstable_bytes >= sent->bytes && engine->own_unstable_apps >= sent->count);
        engine->own_unstable_bytes -= sent->bytes;
        engine->own_unstable_apps -= sent->count;
        rc_window_on_stable(&engine->window, now_ns, sent->sent_ns);
        for (uint32_t i = 0; i < sent->count; i++) {
            engine->apps[(sent->first_app + i) % engine->settings.window].stable_ns = now_ns;
        }
        released += sent->bytes;
        engine->own_sent_head++;
    }
    if (released > 0) engine_admitted_release(engine, released);
}

/* True when the producer's next broadcast would be taken now: the ring has one and both windows have room.
 * The engine thread must not skip its wait for a broadcast that only a delivery can admit: it spun through
 * empty passes (millions per 10 s run at n = 5, counted as window_full) and took CPU from the other nodes
 * on a 2-core machine. */
bool engine_broadcast_admissible(rc_engine *engine, uint64_t now_ns) {
    engine_spsc *ring = &engine->broadcast_ring;
    uint64_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
    if (head == tail) return false;
    engine_own_stable_release(engine, now_ns);
    return own_admits(engine, engine->broadcast_slots[head % ring->capacity].length);
}

/* Moves broadcasts from the producer's ring into the core while its window has room. */
void engine_broadcasts_take(rc_engine *engine, uint64_t now_ns) {
    engine_spsc *ring = &engine->broadcast_ring;
    uint64_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
    uint64_t taken = 0;
    engine_own_stable_release(engine, now_ns);
    while (head + taken < tail) {
        const engine_app *request = &engine->broadcast_slots[(head + taken) % ring->capacity];
        if (!own_admits(engine, request->length)) {
            engine->stats.window_full++;
            break;
        }
        uint64_t index = engine->apps_accepted;
        int rc = rc_lcr_broadcast(engine->core, index, request->length);
        if (rc == -EAGAIN) { /* the window is full: the ring fills, then the producer waits */
            engine->stats.window_full++;
            break;
        }
        RC_ASSERT(rc == 0);       /* lengths were checked in rc_engine_broadcast */
        engine_app *app = &engine->apps[index % engine->settings.window];
        *app = *request;
        app->taken_ns = now_ns;
        engine->apps_accepted++;
        engine->own_inflight_bytes += request->length;
        engine->own_unstable_bytes += request->length;
        engine->own_unstable_apps++;
        engine->stats.broadcasts++;
        taken++;
    }
    if (taken == 0) return;
    atomic_store_explicit(&ring->head, head + taken, memory_order_release);
    if (atomic_exchange_explicit(&engine->producer_waiting, false, memory_order_acq_rel)) {
        engine_eventfd_signal(engine->space_fd);
    }
}

/* Every piece of a frame is added to its tag, where it lies (no copy), while the frame MAC is open. */
static int send_piece(rc_engine *engine, const void *bytes, uint32_t length, uint64_t token) {
    if (engine->seal_open) {
        /* Sealed: the piece is encrypted into the frame's slot, so its own memory is free at once. */
        uint8_t *box = engine->seal_slots + (size_t)engine->seal_slot * engine->seal_slot_bytes;
        RC_ASSERT(engine->seal_filled + length <= engine->seal_length);
        uint8_t *out = box + RC_AUTH_SEAL_HEADER_BYTES + engine->seal_filled;
        if (rc_auth_seal_update(engine->seal_send, out, bytes, length) < 0) return -EIO;
        engine->seal_filled += length;
        engine_send_done(engine, token);
        return 0;
    }
    if (engine->mac_open && rc_auth_mac_update(engine->mac_send, bytes, length) < 0) return -EIO;
    int rc = rc_io_send(engine->io, (uint32_t)engine->successor_conn, bytes, length, token);
    RC_ASSERT(rc != -EAGAIN); /* space was checked before the core was asked */
    if (rc == 0) engine->stats.bytes_out += length;
    return rc;
}

/* Encodes the hop header of `frame` (type, view, ACKs) into a free slot and queues it. */
static int send_hop(rc_engine *engine, uint8_t type, const rc_lcr_frame *frame, uint32_t body_bytes) {
    uint32_t slot = slot_take(engine->hop_free, &engine->hop_free_count);
    uint8_t *out = engine->hop_slots + (size_t)slot * ENGINE_HOP_SLOT_BYTES;
    rc_wire_hop hop = {
        .type = type, .view_id = engine->settings.view_id, .nodes = engine->settings.nodes,
        .sender = engine->settings.self, .ack_count = frame ? frame->ack_count : 0,
        .acks = frame ? frame->acks : NULL, .body_bytes = body_bytes,
    };
    int bytes = rc_wire_hop_encode(out, RC_WIRE_HOP_MAX, &hop);
    RC_ASSERT(bytes > 0); /* the core only produces valid ACKs */
    if (engine->seal_send != NULL) { /* sealed: the frame's length is known now, the AAD of its seal */
        RC_ASSERT(!engine->seal_open);
        uint32_t box_slot = slot_take(engine->seal_free, &engine->seal_free_count);
        uint8_t *box = engine->seal_slots + (size_t)box_slot * engine->seal_slot_bytes;
        uint32_t length = (uint32_t)bytes + body_bytes;
        RC_ASSERT(RC_AUTH_SEAL_HEADER_BYTES + length + RC_AUTH_SEAL_TAG_BYTES <= engine->seal_slot_bytes);
        box[0] = (uint8_t)(length >> 24);
        box[1] = (uint8_t)(length >> 16);
        box[2] = (uint8_t)(length >> 8);
        box[3] = (uint8_t)length;
        if (rc_auth_seal_begin(engine->seal_send, box) < 0) return -EIO;
        engine->seal_open = true;
        engine->seal_slot = box_slot;
        engine->seal_filled = 0;
        engine->seal_length = length;
        return send_piece(engine, out, (uint32_t)bytes, ENGINE_TOKEN(ENGINE_TOKEN_HOP, slot));
    }
    if (engine->mac_send == NULL) return send_piece(engine, out, (uint32_t)bytes, ENGINE_TOKEN(ENGINE_TOKEN_HOP, slot));
    /* Frame MACs: the hop opens the frame's tag; the slot (which holds the tag too) is released with the tag,
     * the frame's last piece, since the transport reports SEND_DONE in queue order. */
    RC_ASSERT(!engine->mac_open);
    if (rc_auth_mac_begin(engine->mac_send) < 0) return -EIO;
    engine->mac_open = true;
    engine->mac_slot = slot;
    return send_piece(engine, out, (uint32_t)bytes, ENGINE_TOKEN(ENGINE_TOKEN_PAYLOAD, 0));
}

/* Ends a frame: with frame MACs, its tag goes out right after its last piece (rc_auth.h). */
static int send_frame_end(rc_engine *engine, int rc) {
    if (engine->seal_open) {
        engine->seal_open = false;
        if (rc < 0) return rc;
        RC_ASSERT(engine->seal_filled == engine->seal_length);
        uint8_t *box = engine->seal_slots + (size_t)engine->seal_slot * engine->seal_slot_bytes;
        if (rc_auth_seal_finish(engine->seal_send, box + RC_AUTH_SEAL_HEADER_BYTES + engine->seal_length) < 0) return -EIO;
        engine->stats.auth_macs_out++;
        engine->stats.auth_cipher_bytes += engine->seal_length;
        uint32_t total = RC_AUTH_SEAL_HEADER_BYTES + engine->seal_length + RC_AUTH_SEAL_TAG_BYTES;
        return send_piece(engine, box, total, ENGINE_TOKEN(ENGINE_TOKEN_SEAL, engine->seal_slot));
    }
    if (!engine->mac_open) return rc;
    engine->mac_open = false;
    if (rc < 0) return rc;
    uint8_t *tag = engine->hop_slots + (size_t)engine->mac_slot * ENGINE_HOP_SLOT_BYTES + RC_WIRE_HOP_MAX;
    if (rc_auth_mac_finish(engine->mac_send, tag) < 0) return -EIO;
    engine->stats.auth_macs_out++;
    return send_piece(engine, tag, RC_AUTH_TAG_BYTES, ENGINE_TOKEN(ENGINE_TOKEN_HOP, engine->mac_slot));
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

static int send_own(rc_engine *engine, const rc_lcr_frame *frame, uint64_t now_ns) {
    const rc_lcr_message *m = &frame->message;
    uint32_t window = engine->settings.window;
    for (uint32_t i = 0; i < m->count; i++) {
        engine_app *app = &engine->apps[(m->ref + i) % window];
        engine->own_lengths[i] = app->length;
        app->sent_ns = now_ns;
    }
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
    RC_ASSERT(engine->own_sent_tail - engine->own_sent_head < engine->own_sent_max);
    engine->own_sent[engine->own_sent_tail++ % engine->own_sent_max] = (engine_own_sent){
        .seq = m->seq, .bytes = m->bytes, .first_app = m->ref, .count = m->count, .sent_ns = now_ns};
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
    uint32_t pieces = 4 + engine->settings.batch_count_max; /* hop, message header, payloads, tag */
    uint64_t sent = rc_io_stats_get(engine->io).bytes_out;
    uint64_t unsent = engine->stats.bytes_out - sent;
    if (engine->seal_send != NULL && engine->seal_free_count == 0) return false;
    return engine->hop_free_count > 0 && engine->own_free_count > 0 && unsent < engine_unsent_bytes_max(engine) &&
           rc_io_send_space(engine->io, (uint32_t)engine->successor_conn) >= pieces;
}

/* Diagnostics: how long the link had room and the core had nothing for it (the ring left idle time on
 * this link), and whether own broadcasts were waiting for the window meanwhile. */
static void starved_begin(rc_engine *engine, uint64_t now_ns) {
    if (engine->starved_since_ns != 0 || engine->stats.frames_out == 0) return; /* not before the ring started */
    engine->starved_since_ns = now_ns;
    engine->starved_window = atomic_load_explicit(&engine->broadcast_ring.tail, memory_order_relaxed) !=
                             atomic_load_explicit(&engine->broadcast_ring.head, memory_order_relaxed);
}

static void starved_end(rc_engine *engine, uint64_t now_ns) {
    if (engine->starved_since_ns == 0) return;
    uint64_t starved = now_ns - engine->starved_since_ns;
    engine->stats.link_starved_ns += starved;
    if (engine->starved_window) engine->stats.link_starved_window_ns += starved;
    engine->starved_since_ns = 0;
}

int engine_send_process(rc_engine *engine, uint64_t now_ns) {
    if (engine->successor_conn < 0) return 0;
    while (room_for_a_frame(engine)) {
        rc_lcr_frame frame;
        if (rc_lcr_next_frame(engine->core, &frame) == 0) {
            starved_begin(engine, now_ns);
            break;
        }
        starved_end(engine, now_ns);
        int rc;
        if (!frame.has_message) rc = send_hop(engine, RC_WIRE_TYPE_ACK, &frame, 0);
        else if (frame.message.own) rc = send_own(engine, &frame, now_ns);
        else rc = send_forward(engine, &frame);
        rc = send_frame_end(engine, rc);
        if (rc < 0) return rc;
        engine->stats.frames_out++;
        engine->last_send_ns = now_ns;
    }
    bool idle = now_ns - engine->last_send_ns >= (uint64_t)engine->settings.heartbeat_ms * 1000000u;
    bool box_free = engine->seal_send == NULL || engine->seal_free_count > 0;
    uint32_t pieces = engine->mac_send != NULL ? 2 : 1; /* the hop, and its tag */
    if (idle && box_free && engine->hop_free_count > 0 &&
        rc_io_send_space(engine->io, (uint32_t)engine->successor_conn) >= pieces) {
        int rc = send_frame_end(engine, send_hop(engine, RC_WIRE_TYPE_HEARTBEAT, NULL, 0));
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
    case ENGINE_TOKEN_SEAL:
        slot_give(engine->seal_free, &engine->seal_free_count, engine->seal_slots_max, (uint32_t)index);
        break;
    case ENGINE_TOKEN_PAYLOAD: /* the broadcaster's memory: released by its own delivery */
    case ENGINE_TOKEN_AUTH:    /* handshake bytes: they live in the link's state */
        break;
    default:
        RC_ASSERT(!"unknown send token");
    }
}
