/*
 * make_seeds.c — writes the seed corpus of fuzz_wire into a directory: one valid frame of every type
 * and of several sizes (n, ACK count, application count), built with the real encoders so that the
 * fuzzer starts past the checksums. Usage: make_seeds DIR
 */
#include "rc_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void seed_write(const char *dir, const char *name, const uint8_t *bytes, size_t length) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *file = fopen(path, "wb");
    if (file == NULL || fwrite(bytes, 1, length, file) != length || fclose(file) != 0) {
        perror(path);
        exit(1);
    }
}

/** One frame: n nodes, `acks` ACKs, and (for DATA) `apps` application messages of i+1 bytes each. */
static void seed_frame(const char *dir, uint8_t type, uint32_t nodes, uint32_t ack_count, uint32_t apps) {
    static uint8_t frame[RC_WIRE_HOP_MAX + RC_WIRE_MESSAGE_HEADER_MAX + 4096];
    rc_lcr_ack acks[RC_LCR_NODES_MAX];
    uint64_t clock[RC_LCR_NODES_MAX];
    uint32_t app_bytes[64];
    uint32_t body_bytes = 0, payload = 0;
    for (uint32_t i = 0; i < ack_count; i++) acks[i] = (rc_lcr_ack){.origin = i, .seq = 3 * i + 1};
    for (uint32_t i = 0; i < nodes; i++) clock[i] = i + 1;
    for (uint32_t i = 0; i < apps; i++) payload += app_bytes[i] = i + 1;
    rc_lcr_message message = {.origin = nodes - 1, .seq = nodes, .burst_size = 2, .count = apps,
                              .bytes = payload, .clock = clock};
    if (type == RC_WIRE_TYPE_DATA) body_bytes = rc_wire_message_header_bytes(nodes, apps) + payload;
    if (type == RC_WIRE_TYPE_CONTROL) body_bytes = 5;
    rc_wire_hop hop = {.type = type, .view_id = 7, .nodes = nodes, .sender = 0,
                       .ack_count = ack_count, .acks = acks, .body_bytes = body_bytes};
    int hop_bytes = rc_wire_hop_encode(frame, RC_WIRE_HOP_MAX, &hop);
    if (hop_bytes < 0) exit(2);
    uint8_t *body = frame + hop_bytes;
    if (type == RC_WIRE_TYPE_DATA) {
        int header = rc_wire_message_header_encode(body, RC_WIRE_MESSAGE_HEADER_MAX, nodes, &message, app_bytes);
        if (header < 0) exit(3);
        for (uint32_t i = 0; i < payload; i++) body[(uint32_t)header + i] = (uint8_t)i;
    } else {
        memset(body, 0xab, body_bytes);
    }
    char name[64];
    snprintf(name, sizeof name, "type%u-n%u-acks%u-apps%u", type, nodes, ack_count, apps);
    seed_write(dir, name, frame, (size_t)hop_bytes + body_bytes);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds DIR\n");
        return 64;
    }
    seed_frame(argv[1], RC_WIRE_TYPE_HEARTBEAT, 1, 0, 0);
    seed_frame(argv[1], RC_WIRE_TYPE_CONTROL, 3, 0, 0);
    seed_frame(argv[1], RC_WIRE_TYPE_ACK, 5, 1, 0);
    seed_frame(argv[1], RC_WIRE_TYPE_ACK, 5, 5, 0);
    seed_frame(argv[1], RC_WIRE_TYPE_DATA, 1, 0, 1);
    seed_frame(argv[1], RC_WIRE_TYPE_DATA, 3, 2, 3);
    seed_frame(argv[1], RC_WIRE_TYPE_DATA, 5, 0, 8);
    seed_frame(argv[1], RC_WIRE_TYPE_DATA, 64, 64, 16);
    return 0;
}
