/*
 * wire_bytes.h — private to the wire codec: little-endian loads and stores at any alignment, and the
 * rules shared by the encoders and the decoders (so an encoder can never write what a decoder refuses).
 *
 * Loads and stores are written as shifts of single bytes: they are correct on any host byte order and
 * at any address, and compilers turn them into one unaligned move on x86-64 and arm64.
 */
#ifndef RINGCAST_WIRE_BYTES_H
#define RINGCAST_WIRE_BYTES_H

#include "rc_wire.h"

static inline uint16_t rc_wire_load16(const uint8_t *p) {
    return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static inline uint32_t rc_wire_load32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t rc_wire_load64(const uint8_t *p) {
    return (uint64_t)rc_wire_load32(p) | (uint64_t)rc_wire_load32(p + 4) << 32;
}

static inline void rc_wire_store16(uint8_t *p, uint16_t value) {
    p[0] = (uint8_t)value;
    p[1] = (uint8_t)(value >> 8);
}

static inline void rc_wire_store32(uint8_t *p, uint32_t value) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(value >> (8 * i));
}

static inline void rc_wire_store64(uint8_t *p, uint64_t value) {
    rc_wire_store32(p, (uint32_t)value);
    rc_wire_store32(p + 4, (uint32_t)(value >> 32));
}

/** Checks the ACK list of one frame: origin < nodes, one ACK per origin, seq ≥ 1 (wire_hop.c). */
int rc_wire_acks_check(const rc_lcr_ack *acks, uint32_t ack_count, uint32_t nodes);

/** Checks type, n, sender and ACK count of a hop header (wire_hop.c). */
int rc_wire_hop_fields_check(uint32_t type, uint32_t nodes, uint32_t sender, uint32_t ack_count);

/** Checks the body length a frame type allows (wire_hop.c). */
int rc_wire_hop_body_check(uint32_t type, uint64_t body_bytes);

/**
 * Decodes and checks the hop header of a frame of `frame_bytes` bytes whose prefix
 * rc_wire_frame_length accepted; fills the hop fields of `*frame`, its ACKs and its body (wire_hop.c).
 */
int rc_wire_hop_decode(const uint8_t *bytes, uint32_t frame_bytes, rc_wire_frame *frame,
                       rc_lcr_ack *acks);

#endif /* RINGCAST_WIRE_BYTES_H */
