/*
 * engine_recv.c — frames from the predecessor: parsed in place in the mirrored receive buffer, given to
 * the LCR core, and released in stream order once nothing refers to their bytes any more.
 *
 * The receive buffer can only be released as a prefix (rc_io_recv_consume), while a message's bytes are
 * needed until it is forwarded (its SEND_DONE) and every one of its application messages was delivered
 * and released by the application, which happens in ≺ order, not in arrival order. So each DATA frame
 * gets a record; the head record holds back everything behind it. A full receive buffer stops the
 * transport from reading: that is the backpressure towards the predecessor (ARCHITECTURE §2).
 */
#include "engine_internal.h"

#include <errno.h>
#include <string.h>

static engine_record *record_at(rc_engine *engine, uint64_t record) {
    RC_ASSERT(record >= engine->records_head && record < engine->records_tail);
    return &engine->records[record % engine->records_max];
}

static bool record_done(const engine_record *record) {
    return !record->forward_pending && !record->in_core && record->apps_unreleased == 0;
}

/* Consumes the prefix of the stream that no record holds any more. */
void engine_record_release(rc_engine *engine) {
    uint64_t releasable = engine->stream_parsed;
    while (engine->records_head < engine->records_tail) {
        engine_record *head = record_at(engine, engine->records_head);
        if (!record_done(head)) {
            releasable = head->stream_offset;
            break;
        }
        engine->records_head++;
    }
    if (releasable > engine->stream_consumed) {
        int rc = rc_io_recv_consume(engine->io, (uint32_t)engine->predecessor_conn,
                                    (size_t)(releasable - engine->stream_consumed));
        RC_ASSERT(rc == 0);
        engine->stream_consumed = releasable;
    }
}

void engine_record_forward_done(rc_engine *engine, uint64_t record) {
    engine_record *entry = record_at(engine, record);
    RC_ASSERT(entry->forward_pending);
    entry->forward_pending = false;
}

/* The predecessor's first frame proves who it is: a wrong view or sender closes the ring. */
static int frame_check_origin(rc_engine *engine, const rc_wire_frame *frame) {
    uint32_t n = engine->settings.nodes;
    if (frame->view_id != engine->settings.view_id || frame->nodes != n) return -ESTALE;
    if (frame->sender != (engine->settings.self + n - 1) % n) return -EPROTO;
    engine->predecessor_verified = true;
    return 0;
}

/* Hands one decoded DATA or ACK frame to the core. -EAGAIN: keep it, try again later. */
static int frame_to_core(rc_engine *engine, rc_wire_frame *frame, uint64_t offset) {
    bool has_message = frame->type == RC_WIRE_TYPE_DATA;
    uint64_t record = engine->records_tail;
    if (has_message && record - engine->records_head >= engine->records_max) return -EAGAIN;
    frame->lcr.message.ref = record;
    bool forwarded = false, duplicate = false;
    int rc = rc_lcr_on_frame(engine->core, &frame->lcr, &forwarded, &duplicate);
    if (rc < 0) return rc;
    if (!has_message || duplicate) return 0; /* no record: released with the record before it */
    engine_record *entry = &engine->records[record % engine->records_max];
    *entry = (engine_record){
        .stream_offset = offset, .bytes = frame->frame_bytes,
        .hop_bytes = frame->frame_bytes - frame->body_bytes, .apps_unreleased = 0,
        .forward_pending = forwarded, .in_core = true,
    };
    engine->records_tail++;
    return 0;
}

/* Parses and handles one complete frame at `bytes`. Returns its length, 0 if incomplete, or -errno. */
static int frame_handle_at(rc_engine *engine, const uint8_t *bytes, size_t available, uint64_t offset) {
    uint32_t frame_bytes = 0;
    int rc = rc_wire_frame_length(bytes, available, &frame_bytes);
    if (rc <= 0) return rc;
    uint32_t tag_bytes = engine->mac_recv != NULL ? RC_AUTH_TAG_BYTES : 0;
    if ((uint64_t)frame_bytes + tag_bytes > available) return 0;
    /* Frame MACs: verified before the frame is decoded, once (a frame the core refuses is seen again). */
    if (tag_bytes > 0 && engine->stream_parsed >= engine->mac_verified_end) {
        engine->stats.auth_macs_in++;
        if (rc_auth_mac_verify(engine->mac_recv, bytes, frame_bytes, bytes + frame_bytes) != 0) {
            engine->stats.auth_mac_failures++;
            int expected = RC_ENGINE_LINK_NONE;
            atomic_compare_exchange_strong(&engine->lost_link, &expected, RC_ENGINE_LINK_PREDECESSOR);
            return -EBADMSG;
        }
        engine->mac_verified_end = engine->stream_parsed + frame_bytes + tag_bytes;
    }
    rc_lcr_ack acks[RC_LCR_NODES_MAX];
    uint64_t clock[RC_LCR_NODES_MAX];
    rc_wire_frame frame;
    rc = rc_wire_decode(bytes, available, &frame, acks, clock);
    if (rc < 0) return rc;
    rc = frame_check_origin(engine, &frame);
    if (rc < 0) return rc;
    if (frame.type == RC_WIRE_TYPE_DATA || frame.type == RC_WIRE_TYPE_ACK) {
        rc = frame_to_core(engine, &frame, offset);
        if (rc < 0) return rc;
    }
    /* HEARTBEAT: the link is alive. CONTROL: belongs to the membership layer, not in this view. */
    engine->stats.frames_in++;
    return (int)(frame_bytes + tag_bytes);
}

static int link_broken(rc_engine *engine, int error) {
    int expected = RC_ENGINE_LINK_NONE;
    atomic_compare_exchange_strong(&engine->lost_link, &expected, RC_ENGINE_LINK_PREDECESSOR);
    return error;
}

/* A sealed frame (rc_auth.h, mode ENCRYPT): opened in place in the receive buffer, once (a frame the core
 * refuses is seen again), then handled as a plain frame that must fill the seal exactly. The receive buffer is
 * the engine's memory: the transport lends it read-only only to keep callers from corrupting what they parse. */
static int frame_handle_sealed(rc_engine *engine, const uint8_t *bytes, size_t available) {
    if (available < RC_AUTH_SEAL_HEADER_BYTES) return 0;
    uint32_t length = (uint32_t)bytes[0] << 24 | (uint32_t)bytes[1] << 16 | (uint32_t)bytes[2] << 8 | bytes[3];
    if (length == 0 || length > engine_frame_bytes_max(&engine->settings)) return link_broken(engine, -EMSGSIZE);
    size_t total = RC_AUTH_SEAL_HEADER_BYTES + (size_t)length + RC_AUTH_SEAL_TAG_BYTES;
    if (total > available) return 0;
    uint8_t *box = (uint8_t *)bytes + RC_AUTH_SEAL_HEADER_BYTES;
    if (engine->stream_parsed >= engine->opened_end) {
        engine->stats.auth_macs_in++;
        engine->stats.auth_cipher_bytes += length;
        if (rc_auth_seal_open(engine->seal_recv, bytes, box, length, box + length) != 0) {
            engine->stats.auth_mac_failures++;
            return link_broken(engine, -EBADMSG);
        }
        engine->opened_end = engine->stream_parsed + total;
    }
    int rc = frame_handle_at(engine, box, length, engine->stream_parsed + RC_AUTH_SEAL_HEADER_BYTES);
    if (rc < 0) return rc;
    if ((uint32_t)rc != length) return link_broken(engine, -EPROTO); /* one whole frame per seal */
    return (int)total;
}

/* Parses and handles one complete frame at the parse position. Returns its wire length, 0 if incomplete, or -errno. */
static int frame_handle(rc_engine *engine, const uint8_t *bytes, size_t available) {
    if (engine->seal_recv != NULL) return frame_handle_sealed(engine, bytes, available);
    return frame_handle_at(engine, bytes, available, engine->stream_parsed);
}

int engine_recv_process(rc_engine *engine) {
    if (engine->predecessor_conn < 0) return 0;
    const uint8_t *data = NULL;
    size_t bytes = 0;
    int rc = rc_io_recv_peek(engine->io, (uint32_t)engine->predecessor_conn, &data, &bytes);
    if (rc < 0) return rc;
    RC_ASSERT(engine->stream_consumed + bytes >= engine->stream_parsed);
    engine->core_refused = false;
    for (;;) {
        uint64_t parsed_in_view = engine->stream_parsed - engine->stream_consumed;
        rc = frame_handle(engine, data + parsed_in_view, bytes - parsed_in_view);
        if (rc == -EAGAIN) {
            engine->core_refused = true; /* backpressure: the frame stays in the buffer */
            engine->stats.recv_stalls++;
            break;
        }
        if (rc < 0) return rc;
        if (rc == 0) break;
        /* Bytes between records (ACK, HEARTBEAT frames) are released with the record before them. */
        engine->stream_parsed += (uint64_t)rc;
    }
    engine_record_release(engine);
    return 0;
}

/* The message block of a record, in place in the receive buffer. */
const uint8_t *engine_record_body(rc_engine *engine, uint64_t record, uint32_t *body_bytes) {
    engine_record *entry = record_at(engine, record);
    const uint8_t *data = NULL;
    size_t bytes = 0;
    int rc = rc_io_recv_peek(engine->io, (uint32_t)engine->predecessor_conn, &data, &bytes);
    RC_ASSERT(rc == 0 && entry->stream_offset >= engine->stream_consumed);
    RC_ASSERT(entry->stream_offset + entry->bytes <= engine->stream_consumed + bytes);
    *body_bytes = entry->bytes - entry->hop_bytes;
    return data + (entry->stream_offset - engine->stream_consumed) + entry->hop_bytes;
}

engine_record *engine_record_get(rc_engine *engine, uint64_t record) { return record_at(engine, record); }
