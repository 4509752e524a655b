/*
 * wire_frame.c — framing a byte stream: how long is the next frame, and the whole-frame decoder that
 * joins the hop header (wire_hop.c) and the message block (wire_message.c). Layout: rc_wire.h.
 */
#include "wire_bytes.h"

int rc_wire_frame_length(const uint8_t *bytes, size_t length, uint32_t *frame_bytes) {
    RC_ASSERT(frame_bytes != NULL);
    RC_ASSERT(bytes != NULL || length == 0);
    if (length < RC_WIRE_PREFIX_BYTES) return 0;
    if (rc_wire_load16(bytes + RC_WIRE_HOP_OFFSET_MAGIC) != RC_WIRE_MAGIC) return RC_WIRE_E_MAGIC;
    if (bytes[RC_WIRE_HOP_OFFSET_VERSION] != RC_WIRE_VERSION) return RC_WIRE_E_VERSION;
    uint8_t type = bytes[RC_WIRE_HOP_OFFSET_TYPE];
    if (type < RC_WIRE_TYPE_DATA || type > RC_WIRE_TYPE_CONTROL) return RC_WIRE_E_TYPE;
    // Checked before anyone waits for (or allocates) that many bytes.
    uint32_t claimed = rc_wire_load32(bytes + RC_WIRE_HOP_OFFSET_FRAME_BYTES);
    if (claimed < RC_WIRE_HOP_FIXED_BYTES || claimed > RC_WIRE_FRAME_MAX) return RC_WIRE_E_FRAME_LENGTH;
    *frame_bytes = claimed;
    return 1;
}

int rc_wire_decode(const uint8_t *bytes, size_t length, rc_wire_frame *frame, rc_lcr_ack *acks,
                   uint64_t *clock) {
    RC_ASSERT(frame != NULL && acks != NULL && clock != NULL);
    RC_ASSERT(bytes != NULL || length == 0);
    uint32_t frame_bytes = 0;
    int rc = rc_wire_frame_length(bytes, length, &frame_bytes);
    if (rc < 0) return rc;
    if (rc == 0 || length < frame_bytes) return RC_WIRE_E_TRUNCATED;
    rc = rc_wire_hop_decode(bytes, frame_bytes, frame, acks);
    if (rc < 0) return rc;
    if (frame->type != RC_WIRE_TYPE_DATA) return 0;

    RC_ASSERT(frame->body != NULL && frame->body_bytes >= RC_WIRE_MESSAGE_FIXED_BYTES);
    rc = rc_wire_message_decode(frame->body, frame->body_bytes, frame->nodes, &frame->lcr.message,
                                clock);
    if (rc < 0) return rc;
    frame->lcr.has_message = true;
    return 0;
}
