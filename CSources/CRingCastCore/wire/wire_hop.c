/*
 * wire_hop.c — the hop header: written afresh by every process for the link to its successor, because
 * it carries that hop's piggy-backed cumulative ACKs (thesis §2.4.2, Fig. 2.5 lines 16 and 22) while
 * the message block behind it travels unchanged. Layout and rules: rc_wire.h.
 */
#include "wire_bytes.h"

#include <errno.h>

_Static_assert(RC_LCR_NODES_MAX <= UINT16_MAX, "ring positions travel as u16");
_Static_assert(RC_WIRE_HOP_OFFSET_CHECKSUM + 8 == RC_WIRE_HOP_FIXED_BYTES, "checksum ends the fixed hop");
_Static_assert(RC_WIRE_HOP_OFFSET_TYPE + 1 == RC_WIRE_PREFIX_BYTES, "the prefix ends with the type");
_Static_assert(RC_WIRE_FRAME_MAX <= UINT32_MAX && RC_WIRE_FRAME_MAX <= INT32_MAX,
               "frame_bytes is a u32 and encoders return int");

uint32_t rc_wire_hop_bytes(uint32_t ack_count) {
    RC_ASSERT(ack_count <= UINT16_MAX);
    return RC_WIRE_HOP_FIXED_BYTES + RC_WIRE_ACK_BYTES * ack_count;
}

int rc_wire_hop_fields_check(uint32_t type, uint32_t nodes, uint32_t sender, uint32_t ack_count) {
    if (type < RC_WIRE_TYPE_DATA || type > RC_WIRE_TYPE_CONTROL) return RC_WIRE_E_TYPE;
    if (nodes == 0 || nodes > RC_LCR_NODES_MAX) return RC_WIRE_E_NODES;
    if (sender >= nodes) return RC_WIRE_E_SENDER;
    // At most one cumulative ACK per origin (rc_lcr.h), so never more than n of them.
    if (ack_count > nodes) return RC_WIRE_E_ACK_COUNT;
    if (type == RC_WIRE_TYPE_ACK && ack_count == 0) return RC_WIRE_E_ACK_COUNT;
    // ACKs are produced by the LCR core, which puts them on DATA or ACK frames only.
    if (type == RC_WIRE_TYPE_HEARTBEAT && ack_count != 0) return RC_WIRE_E_ACK_COUNT;
    if (type == RC_WIRE_TYPE_CONTROL && ack_count != 0) return RC_WIRE_E_ACK_COUNT;
    return 0;
}

int rc_wire_hop_body_check(uint32_t type, uint64_t body_bytes) {
    switch (type) {
    case RC_WIRE_TYPE_DATA:
        if (body_bytes < RC_WIRE_MESSAGE_FIXED_BYTES || body_bytes > RC_WIRE_MESSAGE_MAX) {
            return RC_WIRE_E_FRAME_LENGTH;
        }
        return 0;
    case RC_WIRE_TYPE_CONTROL:
        return body_bytes <= RC_WIRE_CONTROL_MAX ? 0 : RC_WIRE_E_FRAME_LENGTH;
    default:
        return body_bytes == 0 ? 0 : RC_WIRE_E_FRAME_LENGTH;
    }
}

int rc_wire_acks_check(const rc_lcr_ack *acks, uint32_t ack_count, uint32_t nodes) {
    RC_ASSERT(nodes <= RC_LCR_NODES_MAX);
    RC_ASSERT(acks != NULL || ack_count == 0);
    uint64_t seen[(RC_LCR_NODES_MAX + 63) / 64] = {0};
    for (uint32_t i = 0; i < ack_count; i++) {
        uint32_t origin = acks[i].origin;
        if (origin >= nodes) return RC_WIRE_E_ACK_ORIGIN;
        uint64_t bit = 1ull << (origin % 64);
        if (seen[origin / 64] & bit) return RC_WIRE_E_ACK_ORIGIN;
        seen[origin / 64] |= bit;
        // Sequence numbers count from 1 (rc_lcr.h); an ACK for 0 acknowledges nothing.
        if (acks[i].seq == 0) return RC_WIRE_E_ACK_SEQ;
    }
    return 0;
}

/** FNV-1a 64 of the hop header with its checksum field left out. */
static uint64_t rc_wire_hop_checksum(const uint8_t *hop, uint32_t hop_bytes) {
    RC_ASSERT(hop_bytes >= RC_WIRE_HOP_FIXED_BYTES);
    uint64_t state = rc_wire_fnv1a64(RC_WIRE_FNV1A64_BASIS, hop, RC_WIRE_HOP_OFFSET_CHECKSUM);
    return rc_wire_fnv1a64(state, hop + RC_WIRE_HOP_FIXED_BYTES, hop_bytes - RC_WIRE_HOP_FIXED_BYTES);
}

int rc_wire_hop_encode(uint8_t *out, size_t capacity, const rc_wire_hop *hop) {
    RC_ASSERT(hop != NULL);
    RC_ASSERT(out != NULL || capacity == 0);
    int rc = rc_wire_hop_fields_check(hop->type, hop->nodes, hop->sender, hop->ack_count);
    if (rc == 0) rc = rc_wire_hop_body_check(hop->type, hop->body_bytes);
    if (rc == 0) rc = rc_wire_acks_check(hop->acks, hop->ack_count, hop->nodes);
    if (rc < 0) return rc;
    uint32_t hop_bytes = rc_wire_hop_bytes(hop->ack_count);
    if (capacity < hop_bytes) return -ENOBUFS;

    rc_wire_store32(out + RC_WIRE_HOP_OFFSET_FRAME_BYTES, hop_bytes + hop->body_bytes);
    rc_wire_store16(out + RC_WIRE_HOP_OFFSET_MAGIC, RC_WIRE_MAGIC);
    out[RC_WIRE_HOP_OFFSET_VERSION] = RC_WIRE_VERSION;
    out[RC_WIRE_HOP_OFFSET_TYPE] = hop->type;
    rc_wire_store16(out + RC_WIRE_HOP_OFFSET_NODES, (uint16_t)hop->nodes);
    rc_wire_store16(out + RC_WIRE_HOP_OFFSET_SENDER, (uint16_t)hop->sender);
    rc_wire_store16(out + RC_WIRE_HOP_OFFSET_ACK_COUNT, (uint16_t)hop->ack_count);
    rc_wire_store16(out + RC_WIRE_HOP_OFFSET_FLAGS, 0);
    rc_wire_store64(out + RC_WIRE_HOP_OFFSET_VIEW_ID, hop->view_id);
    for (uint32_t i = 0; i < hop->ack_count; i++) {
        uint8_t *entry = out + RC_WIRE_HOP_FIXED_BYTES + RC_WIRE_ACK_BYTES * i;
        rc_wire_store16(entry, (uint16_t)hop->acks[i].origin);
        rc_wire_store64(entry + 2, hop->acks[i].seq);
    }
    rc_wire_store64(out + RC_WIRE_HOP_OFFSET_CHECKSUM, rc_wire_hop_checksum(out, hop_bytes));
    return (int)hop_bytes;
}

int rc_wire_hop_decode(const uint8_t *bytes, uint32_t frame_bytes, rc_wire_frame *frame,
                       rc_lcr_ack *acks) {
    RC_ASSERT(frame_bytes >= RC_WIRE_HOP_FIXED_BYTES && frame_bytes <= RC_WIRE_FRAME_MAX);
    RC_ASSERT(rc_wire_load32(bytes + RC_WIRE_HOP_OFFSET_FRAME_BYTES) == frame_bytes);
    uint32_t type = bytes[RC_WIRE_HOP_OFFSET_TYPE];
    uint32_t nodes = rc_wire_load16(bytes + RC_WIRE_HOP_OFFSET_NODES);
    uint32_t sender = rc_wire_load16(bytes + RC_WIRE_HOP_OFFSET_SENDER);
    uint32_t ack_count = rc_wire_load16(bytes + RC_WIRE_HOP_OFFSET_ACK_COUNT);
    // Version 1 defines no flag, so any set bit means a peer that expects more than we understand.
    if (rc_wire_load16(bytes + RC_WIRE_HOP_OFFSET_FLAGS) != 0) return RC_WIRE_E_FLAGS;
    int rc = rc_wire_hop_fields_check(type, nodes, sender, ack_count);
    if (rc < 0) return rc;
    uint32_t hop_bytes = rc_wire_hop_bytes(ack_count);
    if (hop_bytes > frame_bytes) return RC_WIRE_E_FRAME_LENGTH;
    rc = rc_wire_hop_body_check(type, frame_bytes - hop_bytes);
    if (rc < 0) return rc;

    for (uint32_t i = 0; i < ack_count; i++) {
        const uint8_t *entry = bytes + RC_WIRE_HOP_FIXED_BYTES + RC_WIRE_ACK_BYTES * i;
        acks[i] = (rc_lcr_ack){.origin = rc_wire_load16(entry), .seq = rc_wire_load64(entry + 2)};
    }
    rc = rc_wire_acks_check(acks, ack_count, nodes);
    if (rc < 0) return rc;
    // The checksum last: every structural rule above stays reachable for the fuzzer and gives a more
    // precise error than "checksum" when a peer is wrong rather than a bit flipped.
    if (rc_wire_load64(bytes + RC_WIRE_HOP_OFFSET_CHECKSUM) != rc_wire_hop_checksum(bytes, hop_bytes)) {
        return RC_WIRE_E_HOP_CHECKSUM;
    }
    frame->frame_bytes = frame_bytes;
    frame->type = (uint8_t)type;
    frame->view_id = rc_wire_load64(bytes + RC_WIRE_HOP_OFFSET_VIEW_ID);
    frame->nodes = nodes;
    frame->sender = sender;
    frame->lcr = (rc_lcr_frame){.has_message = false, .ack_count = ack_count, .acks = acks};
    frame->body_bytes = frame_bytes - hop_bytes;
    frame->body = frame->body_bytes > 0 ? bytes + hop_bytes : NULL;
    return 0;
}
