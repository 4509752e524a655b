/*
 * auth_handshake.c — the mutual challenge–response handshake of rc_auth.h as a sans-IO state machine.
 * Bytes in (rc_auth_handshake_input), bytes out (rc_auth_handshake_output); the nonce comes from the caller.
 * Every field of the peer's messages is checked before anything is computed from it, and any failure is
 * sticky: a connection that failed once never becomes trusted.
 */
#include "rc_auth.h"

#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

enum { AUTH_TYPE_HELLO = 1, AUTH_TYPE_PROOF = 2 };
static const uint8_t auth_magic[4] = {'R', 'C', 'A', '1'};
static const char auth_context[] = "ringcast-auth-v1";
static const char auth_session_info[] = "ringcast-session-v1";
/* T's largest size: context, channel, mode, name length, name, two hellos. */
#define AUTH_TRANSCRIPT_MAX (sizeof auth_context + 4 + RC_AUTH_CLUSTER_NAME_MAX + 2 * RC_AUTH_HELLO_BYTES)

static void put_be32(uint8_t *out, uint32_t value) {
    out[0] = (uint8_t)(value >> 24);
    out[1] = (uint8_t)(value >> 16);
    out[2] = (uint8_t)(value >> 8);
    out[3] = (uint8_t)value;
}

static uint32_t get_be32(const uint8_t *in) {
    return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | (uint32_t)in[3];
}

/* T (rc_auth.h): everything both sides must agree on, in initiator-then-responder order. */
static size_t transcript(const rc_auth_handshake *h, uint8_t out[AUTH_TRANSCRIPT_MAX]) {
    size_t name = strnlen(h->config.cluster, RC_AUTH_CLUSTER_NAME_MAX);
    size_t at = 0;
    memcpy(out, auth_context, sizeof auth_context - 1);
    at += sizeof auth_context - 1;
    out[at++] = (uint8_t)h->config.channel;
    out[at++] = (uint8_t)h->config.mode;
    out[at++] = (uint8_t)(name >> 8);
    out[at++] = (uint8_t)name;
    memcpy(out + at, h->config.cluster, name);
    at += name;
    memcpy(out + at, h->initiator ? h->hello_self : h->hello_peer, RC_AUTH_HELLO_BYTES);
    at += RC_AUTH_HELLO_BYTES;
    memcpy(out + at, h->initiator ? h->hello_peer : h->hello_self, RC_AUTH_HELLO_BYTES);
    at += RC_AUTH_HELLO_BYTES;
    RC_ASSERT(at <= AUTH_TRANSCRIPT_MAX);
    return at;
}

/* HMAC-SHA-256(key, label || T) through EVP_MAC (OpenSSL 3). */
static int proof_compute(const rc_auth_handshake *h, bool of_initiator, uint8_t tag[32]) {
    uint8_t t[AUTH_TRANSCRIPT_MAX];
    size_t t_bytes = transcript(h, t);
    const char *label = of_initiator ? "initiator" : "responder";
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0), OSSL_PARAM_END};
    size_t out = 0;
    int ok = ctx != NULL && EVP_MAC_init(ctx, h->config.key, RC_AUTH_KEY_BYTES, params) == 1 &&
             EVP_MAC_update(ctx, (const uint8_t *)label, strlen(label)) == 1 && EVP_MAC_update(ctx, t, t_bytes) == 1 &&
             EVP_MAC_final(ctx, tag, &out, 32) == 1 && out == 32;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return ok ? 0 : RC_AUTH_ERROR_CRYPTO;
}

/* The session keys: HKDF-SHA-256(K, salt nonce_i || nonce_r, info "ringcast-session-v1" || T), 64 bytes. */
static int session_derive(rc_auth_handshake *h) {
    uint8_t info[sizeof auth_session_info + AUTH_TRANSCRIPT_MAX];
    memcpy(info, auth_session_info, sizeof auth_session_info - 1);
    size_t info_bytes = sizeof auth_session_info - 1 + transcript(h, info + sizeof auth_session_info - 1);
    const uint8_t *hello_i = h->initiator ? h->hello_self : h->hello_peer;
    const uint8_t *hello_r = h->initiator ? h->hello_peer : h->hello_self;
    uint8_t salt[2 * RC_AUTH_NONCE_BYTES];
    memcpy(salt, hello_i + 16, RC_AUTH_NONCE_BYTES);
    memcpy(salt + RC_AUTH_NONCE_BYTES, hello_r + 16, RC_AUTH_NONCE_BYTES);
    uint8_t keys[64];
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, h->config.key, RC_AUTH_KEY_BYTES),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt, sizeof salt),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, info_bytes),
        OSSL_PARAM_END,
    };
    int ok = ctx != NULL && EVP_KDF_derive(ctx, keys, sizeof keys, params) == 1;
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    if (!ok) return RC_AUTH_ERROR_CRYPTO;
    memcpy(h->initiator ? h->key_send : h->key_recv, keys, 32);
    memcpy(h->initiator ? h->key_recv : h->key_send, keys + 32, 32);
    OPENSSL_cleanse(keys, sizeof keys);
    return 0;
}

static void out_queue(rc_auth_handshake *h, const uint8_t *bytes, uint32_t length) {
    RC_ASSERT(h->out_length + length <= sizeof h->out);
    memcpy(h->out + h->out_length, bytes, length);
    h->out_length += length;
}

int rc_auth_handshake_init(rc_auth_handshake *h, const rc_auth_config *config, bool initiator,
                           const uint8_t nonce[RC_AUTH_NONCE_BYTES]) {
    if (h == NULL || config == NULL || nonce == NULL) return -EINVAL;
    if (config->mode < RC_AUTH_MODE_HANDSHAKE || config->mode > RC_AUTH_MODE_ENCRYPT) return -EINVAL;
    if (config->channel != RC_AUTH_CHANNEL_RING && config->channel != RC_AUTH_CHANNEL_CONTROL &&
        config->channel != RC_AUTH_CHANNEL_CLIENT)
        return -EINVAL;
    if (memchr(config->cluster, 0, sizeof config->cluster) == NULL) return -EINVAL;
    memset(h, 0, sizeof *h);
    h->config = *config;
    h->initiator = initiator;
    h->state = RC_AUTH_STATE_HELLO;
    uint8_t *hello = h->hello_self;
    memcpy(hello, auth_magic, 4);
    hello[4] = AUTH_TYPE_HELLO;
    hello[5] = (uint8_t)config->mode;
    hello[6] = (uint8_t)config->channel;
    hello[7] = 0;
    put_be32(hello + 8, config->self_node);
    put_be32(hello + 12, config->self_incarnation);
    memcpy(hello + 16, nonce, RC_AUTH_NONCE_BYTES);
    out_queue(h, hello, RC_AUTH_HELLO_BYTES);
    return 0;
}

static int fail(rc_auth_handshake *h, int error) {
    h->state = RC_AUTH_STATE_FAILED;
    h->error = error;
    OPENSSL_cleanse(h->key_send, sizeof h->key_send);
    OPENSSL_cleanse(h->key_recv, sizeof h->key_recv);
    return error;
}

/* The peer's HELLO is complete in h->in: check it, then queue our PROOF. */
static int on_hello(rc_auth_handshake *h) {
    const uint8_t *in = h->in;
    if (memcmp(in, auth_magic, 4) != 0 || in[4] != AUTH_TYPE_HELLO || in[7] != 0) return RC_AUTH_ERROR_MALFORMED;
    if (in[5] != h->config.mode || in[6] != h->config.channel) return RC_AUTH_ERROR_MODE;
    uint32_t node = get_be32(in + 8), incarnation = get_be32(in + 12);
    if (h->config.expect_node != RC_AUTH_PEER_ANY && node != h->config.expect_node) return RC_AUTH_ERROR_STRANGER;
    if (h->config.expect_incarnation != RC_AUTH_PEER_ANY && incarnation != h->config.expect_incarnation) {
        return RC_AUTH_ERROR_STRANGER;
    }
    /* Our own HELLO echoed back (same node, incarnation and nonce) is a reflection, not a peer. */
    if (memcmp(in, h->hello_self, RC_AUTH_HELLO_BYTES) == 0) return RC_AUTH_ERROR_STRANGER;
    memcpy(h->hello_peer, in, RC_AUTH_HELLO_BYTES);
    h->peer_node = node;
    h->peer_incarnation = incarnation;
    uint8_t proof[RC_AUTH_PROOF_BYTES] = {0};
    memcpy(proof, auth_magic, 4);
    proof[4] = AUTH_TYPE_PROOF;
    int rc = proof_compute(h, h->initiator, proof + 8);
    if (rc < 0) return rc;
    out_queue(h, proof, RC_AUTH_PROOF_BYTES);
    h->state = RC_AUTH_STATE_PROOF;
    return 0;
}

/* The peer's PROOF is complete in h->in: verify it against the peer's role, derive the session keys. */
static int on_proof(rc_auth_handshake *h) {
    const uint8_t *in = h->in;
    if (memcmp(in, auth_magic, 4) != 0 || in[4] != AUTH_TYPE_PROOF || in[5] != 0 || in[6] != 0 || in[7] != 0) {
        return RC_AUTH_ERROR_MALFORMED;
    }
    uint8_t expected[32];
    int rc = proof_compute(h, !h->initiator, expected);
    if (rc < 0) return rc;
    if (CRYPTO_memcmp(expected, in + 8, 32) != 0) return RC_AUTH_ERROR_PROOF;
    rc = session_derive(h);
    if (rc < 0) return rc;
    h->state = RC_AUTH_STATE_DONE;
    return 0;
}

int rc_auth_handshake_input(rc_auth_handshake *h, const uint8_t *bytes, size_t length) {
    RC_ASSERT(h != NULL && (bytes != NULL || length == 0));
    if (h->state == RC_AUTH_STATE_FAILED) return h->error;
    size_t used = 0;
    while (h->state == RC_AUTH_STATE_HELLO || h->state == RC_AUTH_STATE_PROOF) {
        uint32_t want = h->state == RC_AUTH_STATE_HELLO ? RC_AUTH_HELLO_BYTES : RC_AUTH_PROOF_BYTES;
        size_t take = want - h->in_filled;
        if (take > length - used) take = length - used;
        memcpy(h->in + h->in_filled, bytes + used, take);
        h->in_filled += (uint32_t)take;
        used += take;
        /* Check the magic as soon as it is there: garbage fails at its first bytes, not after 48. */
        if (h->in_filled >= 4 && memcmp(h->in, auth_magic, 4) != 0) return fail(h, RC_AUTH_ERROR_MALFORMED);
        if (h->in_filled < want) break;
        h->in_filled = 0;
        int rc = h->state == RC_AUTH_STATE_HELLO ? on_hello(h) : on_proof(h);
        if (rc < 0) return fail(h, rc);
    }
    RC_ASSERT(used <= length && used <= (size_t)INT32_MAX);
    return (int)used;
}

const uint8_t *rc_auth_handshake_output(const rc_auth_handshake *h, uint32_t *length) {
    RC_ASSERT(h->out_sent <= h->out_length);
    *length = h->state == RC_AUTH_STATE_FAILED ? 0 : h->out_length - h->out_sent;
    return h->out + h->out_sent;
}

void rc_auth_handshake_output_advance(rc_auth_handshake *h, uint32_t length) {
    RC_ASSERT(length <= h->out_length - h->out_sent);
    h->out_sent += length;
}

bool rc_auth_handshake_done(const rc_auth_handshake *h) { return h->state == RC_AUTH_STATE_DONE; }

const char *rc_auth_error_describe(int error) {
    switch (error) {
    case RC_AUTH_ERROR_MALFORMED: return "not an authentication handshake (bad magic, type or reserved bytes)";
    case RC_AUTH_ERROR_MODE: return "the peer runs another --auth mode or plane";
    case RC_AUTH_ERROR_STRANGER: return "the peer is not the member expected (node id or incarnation)";
    case RC_AUTH_ERROR_PROOF: return "the peer's proof is wrong (no cluster key, another key, or a replay)";
    case RC_AUTH_ERROR_CRYPTO: return "libcrypto failed";
    default: return "unknown authentication error";
    }
}

int rc_auth_random(uint8_t *bytes, size_t length) {
    RC_ASSERT(bytes != NULL && length <= INT32_MAX);
    return RAND_bytes(bytes, (int)length) == 1 ? 0 : RC_AUTH_ERROR_CRYPTO;
}
