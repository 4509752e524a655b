/*
 * fuzz_auth.c — libFuzzer target for the authentication handshake (CSources/CRingCast/auth/, rc_auth.h), the
 * first code that reads bytes from any TCP connection to a node.
 *
 * The first input byte picks a scenario; the rest is the attacker's:
 *   0. raw bytes to a responder (and to an initiator), fed in chunks whose sizes come from the input:
 *      the state machine never consumes more than it is given, never reports DONE (nobody holding the key
 *      wrote these bytes), and once failed stays failed and says nothing more;
 *   1. a genuine exchange between two holders of the key whose bytes the attacker XORs: it completes exactly
 *      when nothing was changed (every byte of HELLO is in the transcript, every byte of PROOF is checked),
 *      and then both sides hold crosswise-equal session keys;
 *   2. a genuine initiator's messages replayed to a fresh responder (new nonce) with attacker bytes appended:
 *      never DONE;
 *   3. sealed frames (AES-256-GCM, mode ENCRYPT): the attacker's bytes as a sealed frame never open, a genuine
 *      seal opens to its plaintext, and with one byte changed it does not.
 * Besides these properties: no crash, no over-read (ASan, UBSan), no RC_ASSERT.
 */
#include "rc_auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(condition)                                                                       \
    do {                                                                                            \
        if (!(condition)) {                                                                         \
            fprintf(stderr, "fuzz_auth: property failed: %s (line %d)\n", #condition, __LINE__);   \
            abort();                                                                                \
        }                                                                                           \
    } while (0)

static void side_init(rc_auth_handshake *h, bool initiator, uint32_t node, uint8_t nonce_byte, uint8_t mode) {
    rc_auth_config config;
    memset(&config, 0, sizeof config);
    memset(config.key, 0x42, sizeof config.key);
    memcpy(config.cluster, "fuzz", 5);
    config.mode = mode % 2 ? RC_AUTH_MODE_FRAMES : RC_AUTH_MODE_HANDSHAKE;
    config.channel = RC_AUTH_CHANNEL_RING;
    config.self_node = node;
    config.self_incarnation = 1;
    config.expect_node = initiator ? 2 : RC_AUTH_PEER_ANY;
    config.expect_incarnation = RC_AUTH_PEER_ANY;
    uint8_t nonce[RC_AUTH_NONCE_BYTES];
    memset(nonce, nonce_byte, sizeof nonce);
    FUZZ_CHECK(rc_auth_handshake_init(h, &config, initiator, nonce) == 0);
}

/* Feeds `bytes` in chunks; checks the consumption contract. Returns the last result. */
static int feed(rc_auth_handshake *h, const uint8_t *bytes, size_t length, const uint8_t *chunks, size_t chunk_count) {
    size_t at = 0, chunk = 0;
    int last = 0;
    while (at < length) {
        size_t take = chunk_count ? (size_t)chunks[chunk++ % chunk_count] + 1 : length - at;
        if (take > length - at) take = length - at;
        bool failed_before = h->state == RC_AUTH_STATE_FAILED;
        last = rc_auth_handshake_input(h, bytes + at, take);
        if (failed_before) FUZZ_CHECK(last < 0);
        if (last < 0) {
            uint32_t out = 1;
            (void)rc_auth_handshake_output(h, &out);
            FUZZ_CHECK(out == 0 && h->state == RC_AUTH_STATE_FAILED && !rc_auth_handshake_done(h));
            return last;
        }
        FUZZ_CHECK((size_t)last <= take);
        if ((size_t)last < take) FUZZ_CHECK(rc_auth_handshake_done(h)); /* only the end of the handshake stops it */
        at += (size_t)last;
        if (rc_auth_handshake_done(h)) break;
    }
    return last;
}

static void take_output(rc_auth_handshake *h, uint8_t *out, size_t *length, size_t capacity) {
    uint32_t bytes = 0;
    const uint8_t *data = rc_auth_handshake_output(h, &bytes);
    FUZZ_CHECK(*length + bytes <= capacity);
    memcpy(out + *length, data, bytes);
    *length += bytes;
    rc_auth_handshake_output_advance(h, bytes);
}

static void scenario_raw(const uint8_t *data, size_t size) {
    size_t chunks = size > 8 ? 8 : size;
    rc_auth_handshake responder, initiator;
    uint8_t mode = size > 0 ? data[0] : 0;
    side_init(&responder, false, 1, 7, mode);
    side_init(&initiator, true, 1, 7, mode);
    feed(&responder, data, size, data, chunks);
    feed(&initiator, data, size, data + (size > 1), chunks ? chunks - 1 : 0);
    FUZZ_CHECK(!rc_auth_handshake_done(&responder) && !rc_auth_handshake_done(&initiator));
}

/* A genuine exchange; `flips` XORs the stream each side receives (initiator's bytes first, then responder's). */
static void scenario_tamper(const uint8_t *data, size_t size) {
    rc_auth_handshake i, r;
    side_init(&i, true, 1, 3, 0);
    side_init(&r, false, 2, 4, 0);
    uint8_t to_r[RC_AUTH_HELLO_BYTES + RC_AUTH_PROOF_BYTES], to_i[RC_AUTH_HELLO_BYTES + RC_AUTH_PROOF_BYTES];
    size_t to_r_len = 0, to_i_len = 0;
    bool changed = false;
    take_output(&i, to_r, &to_r_len, sizeof to_r);  /* initiator HELLO */
    for (size_t k = 0; k < to_r_len && k < size; k++) { to_r[k] ^= data[k]; changed |= data[k] != 0; }
    feed(&r, to_r, to_r_len, NULL, 0);
    take_output(&r, to_i, &to_i_len, sizeof to_i);  /* responder HELLO + PROOF (if the HELLO passed) */
    for (size_t k = 0; k < to_i_len && RC_AUTH_HELLO_BYTES + k < size; k++) {
        to_i[k] ^= data[RC_AUTH_HELLO_BYTES + k];
        changed |= data[RC_AUTH_HELLO_BYTES + k] != 0;
    }
    feed(&i, to_i, to_i_len, NULL, 0);
    size_t before = to_r_len;
    take_output(&i, to_r, &to_r_len, sizeof to_r);  /* initiator PROOF */
    size_t base = RC_AUTH_HELLO_BYTES + RC_AUTH_HELLO_BYTES + RC_AUTH_PROOF_BYTES;
    for (size_t k = before; k < to_r_len && base + (k - before) < size; k++) {
        to_r[k] ^= data[base + (k - before)];
        changed |= data[base + (k - before)] != 0;
    }
    feed(&r, to_r + before, to_r_len - before, NULL, 0);
    bool both = rc_auth_handshake_done(&i) && rc_auth_handshake_done(&r);
    if (!changed) {
        FUZZ_CHECK(both);
        FUZZ_CHECK(memcmp(i.key_send, r.key_recv, 32) == 0 && memcmp(i.key_recv, r.key_send, 32) == 0);
    } else {
        /* A change the responder saw fails it, a change the initiator saw fails the initiator. */
        FUZZ_CHECK(!both);
    }
}

static void scenario_replay(const uint8_t *data, size_t size) {
    rc_auth_handshake i, r, fresh;
    side_init(&i, true, 1, 5, 0);
    side_init(&r, false, 2, 6, 0);
    uint8_t recorded[RC_AUTH_HELLO_BYTES + RC_AUTH_PROOF_BYTES + 4096], back[RC_AUTH_HELLO_BYTES + RC_AUTH_PROOF_BYTES];
    size_t recorded_len = 0, back_len = 0;
    take_output(&i, recorded, &recorded_len, sizeof recorded);
    feed(&r, recorded, recorded_len, NULL, 0);
    take_output(&r, back, &back_len, sizeof back);
    feed(&i, back, back_len, NULL, 0);
    take_output(&i, recorded, &recorded_len, sizeof recorded);
    feed(&r, recorded + RC_AUTH_HELLO_BYTES, recorded_len - RC_AUTH_HELLO_BYTES, NULL, 0);
    FUZZ_CHECK(rc_auth_handshake_done(&r));
    size_t extra = size > 4096 ? 4096 : size;
    memcpy(recorded + recorded_len, data, extra);
    side_init(&fresh, false, 2, 9, 0); /* another connection: another nonce */
    feed(&fresh, recorded, recorded_len + extra, data, size > 4 ? 4 : size);
    FUZZ_CHECK(!rc_auth_handshake_done(&fresh));
}

/* Sealed frames: an attacker's [header][box][tag] never opens (it would need the key); a genuine seal opens to
 * its plaintext, and with any byte of it changed it does not. */
static void scenario_seal(const uint8_t *data, size_t size) {
    uint8_t key[32];
    memset(key, 0x24, sizeof key);
    rc_auth_seal *sealer = NULL, *opener = NULL, *forged = NULL;
    FUZZ_CHECK(rc_auth_seal_create(&sealer, key, true) == 0 && rc_auth_seal_create(&opener, key, false) == 0);
    FUZZ_CHECK(rc_auth_seal_create(&forged, key, false) == 0);
    static uint8_t box[8192], plain[8192];
    size_t length = size > sizeof plain ? sizeof plain : size;
    memcpy(plain, data, length);
    if (length >= RC_AUTH_SEAL_HEADER_BYTES + RC_AUTH_SEAL_TAG_BYTES) { /* the input as a forged sealed frame */
        size_t inner = length - RC_AUTH_SEAL_HEADER_BYTES - RC_AUTH_SEAL_TAG_BYTES;
        memcpy(box, data + RC_AUTH_SEAL_HEADER_BYTES, inner);
        FUZZ_CHECK(rc_auth_seal_open(forged, data, box, inner, data + length - RC_AUTH_SEAL_TAG_BYTES) != 0);
    }
    uint8_t header[4] = {(uint8_t)(length >> 24), (uint8_t)(length >> 16), (uint8_t)(length >> 8), (uint8_t)length};
    uint8_t tag[RC_AUTH_SEAL_TAG_BYTES];
    FUZZ_CHECK(rc_auth_seal_begin(sealer, header) == 0 && rc_auth_seal_update(sealer, box, plain, length) == 0);
    FUZZ_CHECK(rc_auth_seal_finish(sealer, tag) == 0);
    if (length > 0 && data[0] % 2 == 1) { /* change one byte the input picks */
        box[data[length - 1] % length] ^= (uint8_t)(data[0] | 1);
        FUZZ_CHECK(rc_auth_seal_open(opener, header, box, length, tag) != 0);
    } else {
        FUZZ_CHECK(rc_auth_seal_open(opener, header, box, length, tag) == 0 && memcmp(box, plain, length) == 0);
    }
    rc_auth_seal_destroy(sealer);
    rc_auth_seal_destroy(opener);
    rc_auth_seal_destroy(forged);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    switch (data[0] % 4) {
    case 0: scenario_raw(data + 1, size - 1); break;
    case 1: scenario_tamper(data + 1, size - 1); break;
    case 2: scenario_replay(data + 1, size - 1); break;
    default: scenario_seal(data + 1, size - 1); break;
    }
    return 0;
}
