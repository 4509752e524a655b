/*
 * wire_message.c — the LCR message block ⟨m, p_j, C_m⟩ of thesis §2.4.2 (Fig. 2.5 lines 8 and 12),
 * batched: one clock stamp for `count` application messages of one origin. The origin writes it once;
 * every other process forwards the same bytes and delivers its application messages in place.
 * Layout and rules: rc_wire.h.
 */
#include "wire_bytes.h"

#include <errno.h>

_Static_assert(RC_WIRE_MESSAGE_OFFSET_CHECKSUM + 8 == RC_WIRE_MESSAGE_FIXED_BYTES,
               "checksum ends the fixed message header");
_Static_assert(RC_LCR_BATCH_COUNT_MAX <= UINT32_MAX / 4, "the length table size fits a u32");

uint32_t rc_wire_message_header_bytes(uint32_t nodes, uint32_t app_count) {
    RC_ASSERT(nodes <= RC_LCR_NODES_MAX);
    RC_ASSERT(app_count <= RC_LCR_BATCH_COUNT_MAX);
    return RC_WIRE_MESSAGE_FIXED_BYTES + 8 * nodes + 4 * app_count;
}

/** Rules on the fixed fields, shared by encoder and decoder; `view_nodes` is the hop's (or view's) n. */
static int rc_wire_message_fields_check(uint32_t nodes, uint32_t view_nodes, uint32_t origin,
                                        uint64_t seq, uint32_t app_count) {
    if (nodes == 0 || nodes > RC_LCR_NODES_MAX) return RC_WIRE_E_NODES;
    if (nodes != view_nodes) return RC_WIRE_E_NODES_MISMATCH;
    if (origin >= nodes) return RC_WIRE_E_ORIGIN;
    // seq is C_m[origin], which utoBroadcast incremented before stamping (Fig. 2.5 line 6): ≥ 1.
    if (seq == 0) return RC_WIRE_E_SEQ;
    if (app_count == 0 || app_count > RC_LCR_BATCH_COUNT_MAX) return RC_WIRE_E_APP_COUNT;
    return 0;
}

/** FNV-1a 64 of the message header (fixed part, clock, length table) without its checksum field. */
static uint64_t rc_wire_message_checksum(const uint8_t *block, uint32_t header_bytes) {
    RC_ASSERT(header_bytes >= RC_WIRE_MESSAGE_FIXED_BYTES);
    uint64_t state = rc_wire_fnv1a64(RC_WIRE_FNV1A64_BASIS, block, RC_WIRE_MESSAGE_OFFSET_CHECKSUM);
    return rc_wire_fnv1a64(state, block + RC_WIRE_MESSAGE_FIXED_BYTES,
                           header_bytes - RC_WIRE_MESSAGE_FIXED_BYTES);
}

int rc_wire_message_header_encode(uint8_t *out, size_t capacity, uint32_t nodes,
                                  const rc_lcr_message *message, const uint32_t *app_bytes) {
    RC_ASSERT(message != NULL && message->clock != NULL);
    RC_ASSERT(app_bytes != NULL || message->count == 0);
    if (nodes == 0 || nodes > RC_LCR_NODES_MAX) return -EINVAL;
    int rc = rc_wire_message_fields_check(nodes, nodes, message->origin, message->seq, message->count);
    if (rc < 0) return rc;
    if (message->clock[message->origin] != message->seq) return RC_WIRE_E_SEQ;
    uint64_t payload_bytes = 0;
    for (uint32_t i = 0; i < message->count; i++) payload_bytes += app_bytes[i];
    if (payload_bytes != message->bytes) return -EINVAL;
    if (payload_bytes > RC_LCR_BATCH_BYTES_MAX) return RC_WIRE_E_APP_LENGTH;
    uint32_t header_bytes = rc_wire_message_header_bytes(nodes, message->count);
    if (capacity < header_bytes) return -ENOBUFS;

    rc_wire_store32(out + RC_WIRE_MESSAGE_OFFSET_BLOCK_BYTES, header_bytes + (uint32_t)payload_bytes);
    rc_wire_store16(out + RC_WIRE_MESSAGE_OFFSET_NODES, (uint16_t)nodes);
    rc_wire_store16(out + RC_WIRE_MESSAGE_OFFSET_ORIGIN, (uint16_t)message->origin);
    rc_wire_store64(out + RC_WIRE_MESSAGE_OFFSET_SEQ, message->seq);
    rc_wire_store32(out + RC_WIRE_MESSAGE_OFFSET_BURST_SIZE, message->burst_size);
    rc_wire_store32(out + RC_WIRE_MESSAGE_OFFSET_APP_COUNT, message->count);
    uint8_t *clock = out + RC_WIRE_MESSAGE_FIXED_BYTES;
    for (uint32_t i = 0; i < nodes; i++) rc_wire_store64(clock + 8 * i, message->clock[i]);
    uint8_t *lengths = clock + 8 * nodes;
    for (uint32_t i = 0; i < message->count; i++) rc_wire_store32(lengths + 4 * i, app_bytes[i]);
    rc_wire_store64(out + RC_WIRE_MESSAGE_OFFSET_CHECKSUM, rc_wire_message_checksum(out, header_bytes));
    return (int)header_bytes;
}

/** Sums the length table; the payloads must fill the block after the header exactly. */
static int rc_wire_message_lengths_check(const uint8_t *lengths, uint32_t app_count,
                                         uint64_t payload_bytes) {
    RC_ASSERT(app_count <= RC_LCR_BATCH_COUNT_MAX);
    uint64_t sum = 0; // ≤ 4096 × (2^32 − 1): cannot overflow.
    for (uint32_t i = 0; i < app_count; i++) sum += rc_wire_load32(lengths + 4 * i);
    if (sum != payload_bytes) return RC_WIRE_E_APP_LENGTH;
    if (sum > RC_LCR_BATCH_BYTES_MAX) return RC_WIRE_E_APP_LENGTH;
    return 0;
}

int rc_wire_message_decode(const uint8_t *block, size_t block_bytes, uint32_t nodes,
                           rc_lcr_message *message, uint64_t *clock) {
    RC_ASSERT(message != NULL && clock != NULL);
    RC_ASSERT(block != NULL || block_bytes == 0);
    if (nodes == 0 || nodes > RC_LCR_NODES_MAX) return -EINVAL;
    if (block_bytes < RC_WIRE_MESSAGE_FIXED_BYTES || block_bytes > RC_WIRE_MESSAGE_MAX) {
        return RC_WIRE_E_BLOCK_LENGTH;
    }
    if (rc_wire_load32(block + RC_WIRE_MESSAGE_OFFSET_BLOCK_BYTES) != block_bytes) {
        return RC_WIRE_E_BLOCK_LENGTH;
    }
    uint32_t block_nodes = rc_wire_load16(block + RC_WIRE_MESSAGE_OFFSET_NODES);
    uint32_t origin = rc_wire_load16(block + RC_WIRE_MESSAGE_OFFSET_ORIGIN);
    uint64_t seq = rc_wire_load64(block + RC_WIRE_MESSAGE_OFFSET_SEQ);
    uint32_t app_count = rc_wire_load32(block + RC_WIRE_MESSAGE_OFFSET_APP_COUNT);
    int rc = rc_wire_message_fields_check(block_nodes, nodes, origin, seq, app_count);
    if (rc < 0) return rc;
    uint32_t header_bytes = rc_wire_message_header_bytes(nodes, app_count);
    if (header_bytes > block_bytes) return RC_WIRE_E_BLOCK_LENGTH;

    const uint8_t *stamp = block + RC_WIRE_MESSAGE_FIXED_BYTES;
    for (uint32_t i = 0; i < nodes; i++) clock[i] = rc_wire_load64(stamp + 8 * i);
    if (clock[origin] != seq) return RC_WIRE_E_SEQ;
    rc = rc_wire_message_lengths_check(stamp + 8 * nodes, app_count, block_bytes - header_bytes);
    if (rc < 0) return rc;
    if (rc_wire_load64(block + RC_WIRE_MESSAGE_OFFSET_CHECKSUM) !=
        rc_wire_message_checksum(block, header_bytes)) {
        return RC_WIRE_E_BLOCK_CHECKSUM;
    }
    *message = (rc_lcr_message){
        .origin = origin,
        .seq = seq,
        .burst_size = rc_wire_load32(block + RC_WIRE_MESSAGE_OFFSET_BURST_SIZE),
        .count = app_count,
        .bytes = block_bytes - header_bytes,
        .clock = clock,
        .own = false,
        .ref = 0,
    };
    return 0;
}

void rc_wire_app_iter_init(rc_wire_app_iter *iter, const uint8_t *block, uint32_t block_bytes) {
    RC_ASSERT(iter != NULL && block != NULL);
    RC_ASSERT(block_bytes >= RC_WIRE_MESSAGE_FIXED_BYTES &&
              rc_wire_load32(block + RC_WIRE_MESSAGE_OFFSET_BLOCK_BYTES) == block_bytes);
    uint32_t nodes = rc_wire_load16(block + RC_WIRE_MESSAGE_OFFSET_NODES);
    uint32_t app_count = rc_wire_load32(block + RC_WIRE_MESSAGE_OFFSET_APP_COUNT);
    // Only decoded blocks may be walked; these hold for every one of them.
    RC_ASSERT(nodes >= 1 && nodes <= RC_LCR_NODES_MAX);
    RC_ASSERT(app_count >= 1 && app_count <= RC_LCR_BATCH_COUNT_MAX);
    uint32_t header_bytes = rc_wire_message_header_bytes(nodes, app_count);
    RC_ASSERT(header_bytes <= block_bytes);
    *iter = (rc_wire_app_iter){
        .lengths = block + RC_WIRE_MESSAGE_FIXED_BYTES + 8 * nodes,
        .payload = block + header_bytes,
        .end = block + block_bytes,
        .remaining = app_count,
    };
}

bool rc_wire_app_next(rc_wire_app_iter *iter, const uint8_t **bytes, uint32_t *length) {
    RC_ASSERT(iter != NULL && bytes != NULL && length != NULL);
    if (iter->remaining == 0) return false;
    uint32_t app_bytes = rc_wire_load32(iter->lengths);
    // Decoding checked that the lengths fill the block exactly; never read past it even if not.
    RC_ASSERT(app_bytes <= (size_t)(iter->end - iter->payload));
    *bytes = iter->payload;
    *length = app_bytes;
    iter->lengths += 4;
    iter->payload += app_bytes;
    iter->remaining--;
    return true;
}
