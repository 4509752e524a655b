/*
 * fuzz_wire.c — libFuzzer target for the wire codec (CSources/CRingCastCore/wire/*.c, rc_wire.h).
 *
 * For every input it checks, besides "no crash, no over-read" (ASan, UBSan, RC_ASSERT):
 *   1. rc_wire_frame_length and rc_wire_decode agree (same error, same length);
 *   2. a decoded frame points only inside the input, and its application messages fill the block;
 *   3. round trip: encoding the decoded fields again gives the input's bytes exactly (the format has
 *      one encoding per value), and decoding that gives the same fields;
 *   4. forwarding: a new hop header in front of the same block decodes to the same message.
 * Because both headers carry checksums, random mutations rarely get past them; each input is
 * therefore also decoded a second time after "repair" (lengths and checksums recomputed), so the
 * fuzzer explores every structural rule behind the checksums as well.
 */
#include "rc_wire.h"
#include "wire_bytes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(condition)                                                                       \
    do {                                                                                            \
        if (!(condition)) {                                                                         \
            fprintf(stderr, "fuzz_wire: property failed: %s (line %d)\n", #condition, __LINE__);   \
            abort();                                                                                \
        }                                                                                           \
    } while (0)

/** Inputs larger than this are only decoded as they are (repair and round trip need a copy). */
#define FUZZ_COPY_MAX (1u << 20)

typedef struct fuzz_decoded {
    rc_wire_frame frame;
    rc_lcr_ack acks[RC_LCR_NODES_MAX];
    uint64_t clock[RC_LCR_NODES_MAX];
} fuzz_decoded;

static void fuzz_expect_same(const fuzz_decoded *a, const uint8_t *base_a, const fuzz_decoded *b,
                             const uint8_t *base_b, bool same_hop) {
    const rc_wire_frame *fa = &a->frame, *fb = &b->frame;
    FUZZ_CHECK(fa->type == fb->type && fa->nodes == fb->nodes);
    FUZZ_CHECK(fa->lcr.has_message == fb->lcr.has_message && fa->body_bytes == fb->body_bytes);
    if (same_hop) {
        FUZZ_CHECK(fa->frame_bytes == fb->frame_bytes && fa->view_id == fb->view_id);
        FUZZ_CHECK(fa->sender == fb->sender && fa->lcr.ack_count == fb->lcr.ack_count);
        for (uint32_t i = 0; i < fa->lcr.ack_count; i++) { // field by field: structs have padding
            FUZZ_CHECK(fa->lcr.acks[i].origin == fb->lcr.acks[i].origin);
            FUZZ_CHECK(fa->lcr.acks[i].seq == fb->lcr.acks[i].seq);
        }
        FUZZ_CHECK((fa->body == NULL) == (fb->body == NULL));
        if (fa->body != NULL) FUZZ_CHECK(fa->body - base_a == fb->body - base_b);
    }
    if (fa->body_bytes > 0) FUZZ_CHECK(memcmp(fa->body, fb->body, fa->body_bytes) == 0);
    if (!fa->lcr.has_message) return;
    const rc_lcr_message *ma = &fa->lcr.message, *mb = &fb->lcr.message;
    FUZZ_CHECK(ma->origin == mb->origin && ma->seq == mb->seq && ma->burst_size == mb->burst_size);
    FUZZ_CHECK(ma->count == mb->count && ma->bytes == mb->bytes);
    FUZZ_CHECK(memcmp(ma->clock, mb->clock, 8 * (size_t)fa->nodes) == 0);
}

/** Walks the application messages; collects their lengths for re-encoding. */
static void fuzz_walk_apps(const rc_wire_frame *frame, uint32_t *app_bytes) {
    rc_wire_app_iter iter;
    rc_wire_app_iter_init(&iter, frame->body, frame->body_bytes);
    const uint8_t *bytes = NULL;
    uint32_t length = 0, count = 0;
    uint64_t sum = 0;
    const uint8_t *expected = frame->body + (frame->body_bytes - frame->lcr.message.bytes);
    while (rc_wire_app_next(&iter, &bytes, &length)) {
        FUZZ_CHECK(count < frame->lcr.message.count);
        FUZZ_CHECK(bytes == expected); // back to back, in place
        app_bytes[count++] = length;
        sum += length;
        expected += length;
    }
    FUZZ_CHECK(count == frame->lcr.message.count && sum == frame->lcr.message.bytes);
    FUZZ_CHECK(expected == frame->body + frame->body_bytes);
}

/** Encodes `decoded` into `out` (frame_bytes long); returns the hop header's bytes. */
static uint32_t fuzz_encode(const fuzz_decoded *decoded, uint8_t *out, const uint32_t *app_bytes) {
    const rc_wire_frame *frame = &decoded->frame;
    rc_wire_hop hop = {
        .type = frame->type, .view_id = frame->view_id, .nodes = frame->nodes, .sender = frame->sender,
        .ack_count = frame->lcr.ack_count, .acks = frame->lcr.acks, .body_bytes = frame->body_bytes,
    };
    int hop_bytes = rc_wire_hop_encode(out, RC_WIRE_HOP_MAX, &hop);
    FUZZ_CHECK(hop_bytes > 0 && (uint32_t)hop_bytes + frame->body_bytes == frame->frame_bytes);
    if (!frame->lcr.has_message) {
        if (frame->body_bytes > 0) memcpy(out + hop_bytes, frame->body, frame->body_bytes);
        return (uint32_t)hop_bytes;
    }
    int header_bytes = rc_wire_message_header_encode(out + hop_bytes, RC_WIRE_MESSAGE_HEADER_MAX,
                                                     frame->nodes, &frame->lcr.message, app_bytes);
    FUZZ_CHECK(header_bytes > 0 && (uint64_t)header_bytes + frame->lcr.message.bytes == frame->body_bytes);
    memcpy(out + hop_bytes + header_bytes, frame->body + header_bytes, frame->lcr.message.bytes);
    return (uint32_t)hop_bytes;
}

static void fuzz_round_trip(const fuzz_decoded *decoded, const uint8_t *input) {
    uint32_t app_bytes[RC_LCR_BATCH_COUNT_MAX];
    const rc_wire_frame *frame = &decoded->frame;
    if (frame->lcr.has_message) fuzz_walk_apps(frame, app_bytes);
    uint8_t *copy = malloc(frame->frame_bytes);
    FUZZ_CHECK(copy != NULL);
    uint32_t hop_bytes = fuzz_encode(decoded, copy, app_bytes);
    FUZZ_CHECK(memcmp(copy, input, frame->frame_bytes) == 0);
    fuzz_decoded again;
    FUZZ_CHECK(rc_wire_decode(copy, frame->frame_bytes, &again.frame, again.acks, again.clock) == 0);
    fuzz_expect_same(decoded, input, &again, copy, true);

    if (frame->lcr.has_message) {
        // Forwarding: the successor writes its own hop header (another sender, no ACKs) in front of
        // the very same block bytes; the message must decode unchanged.
        uint8_t hop[RC_WIRE_HOP_MAX];
        rc_wire_hop next = {.type = RC_WIRE_TYPE_DATA, .view_id = frame->view_id + 1,
                            .nodes = frame->nodes, .sender = (frame->sender + 1) % frame->nodes,
                            .body_bytes = frame->body_bytes};
        int next_bytes = rc_wire_hop_encode(hop, sizeof hop, &next);
        FUZZ_CHECK(next_bytes == RC_WIRE_HOP_FIXED_BYTES);
        memcpy(copy + hop_bytes - RC_WIRE_HOP_FIXED_BYTES, hop, RC_WIRE_HOP_FIXED_BYTES);
        const uint8_t *forwarded = copy + hop_bytes - RC_WIRE_HOP_FIXED_BYTES;
        size_t forwarded_bytes = RC_WIRE_HOP_FIXED_BYTES + frame->body_bytes;
        FUZZ_CHECK(rc_wire_decode(forwarded, forwarded_bytes, &again.frame, again.acks, again.clock) == 0);
        FUZZ_CHECK(again.frame.lcr.ack_count == 0 && again.frame.sender == next.sender);
        fuzz_expect_same(decoded, input, &again, forwarded, false);
    }
    free(copy);
}

static void fuzz_decode(const uint8_t *data, size_t size) {
    uint32_t frame_bytes = 0;
    int length_rc = rc_wire_frame_length(data, size, &frame_bytes);
    FUZZ_CHECK(length_rc <= 1);
    fuzz_decoded decoded;
    int rc = rc_wire_decode(data, size, &decoded.frame, decoded.acks, decoded.clock);
    FUZZ_CHECK(rc <= 0 && rc_wire_error_string(rc) != NULL);
    if (length_rc < 0) FUZZ_CHECK(rc == length_rc);
    if (length_rc == 0 || (length_rc == 1 && frame_bytes > size)) FUZZ_CHECK(rc == RC_WIRE_E_TRUNCATED);
    if (rc < 0) return;
    FUZZ_CHECK(length_rc == 1 && decoded.frame.frame_bytes == frame_bytes && frame_bytes <= size);
    const rc_wire_frame *frame = &decoded.frame;
    if (frame->body != NULL) {
        FUZZ_CHECK(frame->body >= data && frame->body + frame->body_bytes == data + frame_bytes);
    }
    FUZZ_CHECK(frame->lcr.has_message == (frame->type == RC_WIRE_TYPE_DATA));
    if (frame_bytes <= FUZZ_COPY_MAX) fuzz_round_trip(&decoded, data);
}

/** Rewrites lengths and checksums in place so that only the structural rules decide. */
static void fuzz_repair(uint8_t *data, size_t size) {
    if (size < RC_WIRE_HOP_FIXED_BYTES) return;
    rc_wire_store32(data + RC_WIRE_HOP_OFFSET_FRAME_BYTES, (uint32_t)size);
    size_t hop_bytes = RC_WIRE_HOP_FIXED_BYTES +
                       RC_WIRE_ACK_BYTES * (size_t)rc_wire_load16(data + RC_WIRE_HOP_OFFSET_ACK_COUNT);
    if (hop_bytes > size) return;
    uint64_t state = rc_wire_fnv1a64(RC_WIRE_FNV1A64_BASIS, data, RC_WIRE_HOP_OFFSET_CHECKSUM);
    state = rc_wire_fnv1a64(state, data + RC_WIRE_HOP_FIXED_BYTES, hop_bytes - RC_WIRE_HOP_FIXED_BYTES);
    rc_wire_store64(data + RC_WIRE_HOP_OFFSET_CHECKSUM, state);
    uint8_t *block = data + hop_bytes;
    size_t block_bytes = size - hop_bytes;
    if (block_bytes < RC_WIRE_MESSAGE_FIXED_BYTES) return;
    rc_wire_store32(block + RC_WIRE_MESSAGE_OFFSET_BLOCK_BYTES, (uint32_t)block_bytes);
    size_t header_bytes = RC_WIRE_MESSAGE_FIXED_BYTES +
                          8 * (size_t)rc_wire_load16(block + RC_WIRE_MESSAGE_OFFSET_NODES) +
                          4 * (size_t)rc_wire_load32(block + RC_WIRE_MESSAGE_OFFSET_APP_COUNT);
    if (header_bytes > block_bytes) return;
    state = rc_wire_fnv1a64(RC_WIRE_FNV1A64_BASIS, block, RC_WIRE_MESSAGE_OFFSET_CHECKSUM);
    state = rc_wire_fnv1a64(state, block + RC_WIRE_MESSAGE_FIXED_BYTES,
                            header_bytes - RC_WIRE_MESSAGE_FIXED_BYTES);
    rc_wire_store64(block + RC_WIRE_MESSAGE_OFFSET_CHECKSUM, state);
}

/** The input as a bare message block (recovery carries blocks without hop headers). */
static void fuzz_decode_block(const uint8_t *data, size_t size) {
    if (size < RC_WIRE_MESSAGE_OFFSET_NODES + 2) return;
    uint32_t nodes = rc_wire_load16(data + RC_WIRE_MESSAGE_OFFSET_NODES);
    nodes = nodes == 0 || nodes > RC_LCR_NODES_MAX ? 1 + nodes % RC_LCR_NODES_MAX : nodes;
    rc_lcr_message message;
    uint64_t clock[RC_LCR_NODES_MAX];
    if (rc_wire_message_decode(data, size, nodes, &message, clock) != 0) return;
    FUZZ_CHECK(message.seq == clock[message.origin] && message.origin < nodes);
    rc_wire_frame frame = {.body = data, .body_bytes = (uint32_t)size, .nodes = nodes,
                           .lcr = {.has_message = true, .message = message}};
    uint32_t app_bytes[RC_LCR_BATCH_COUNT_MAX];
    fuzz_walk_apps(&frame, app_bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_decode(data, size);
    fuzz_decode_block(data, size);
    if (size > FUZZ_COPY_MAX) return 0;
    // An exact-size heap copy, so ASan reports any read past the end of the repaired input.
    uint8_t *copy = malloc(size > 0 ? size : 1);
    FUZZ_CHECK(copy != NULL);
    if (size > 0) memcpy(copy, data, size);
    fuzz_repair(copy, size);
    fuzz_decode(copy, size);
    free(copy);
    return 0;
}
