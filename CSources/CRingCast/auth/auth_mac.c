/*
 * auth_mac.c — the per-frame MAC of rc_auth.h: HMAC-SHA-256 through EVP_MAC, keyed once per connection and
 * direction (EVP_MAC_init with a NULL key re-uses the key already set, OpenSSL 3 EVP_MAC_init(3)), over the
 * direction's frame counter and the frame's pieces in wire order, truncated to 128 bits (RFC 4868 §2.6).
 * The pieces are read where they lie (receive buffer, the broadcaster's memory): nothing is copied.
 */
#include "rc_auth.h"

#include <errno.h>
#include <stdlib.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

struct rc_auth_mac {
    EVP_MAC *mac;
    EVP_MAC_CTX *ctx;
    uint64_t count; /* frames finished: the next frame's sequence number */
    bool open;      /* between begin and finish */
};

int rc_auth_mac_create(rc_auth_mac **out, const uint8_t key[32]) {
    RC_ASSERT(out != NULL && key != NULL);
    rc_auth_mac *m = calloc(1, sizeof *m);
    if (m == NULL) return -ENOMEM;
    m->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    m->ctx = m->mac ? EVP_MAC_CTX_new(m->mac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0), OSSL_PARAM_END};
    if (m->ctx == NULL || EVP_MAC_init(m->ctx, key, 32, params) != 1) {
        rc_auth_mac_destroy(m);
        return RC_AUTH_ERROR_CRYPTO;
    }
    *out = m;
    return 0;
}

void rc_auth_mac_destroy(rc_auth_mac *m) {
    if (m == NULL) return;
    EVP_MAC_CTX_free(m->ctx);
    EVP_MAC_free(m->mac);
    free(m);
}

int rc_auth_mac_begin(rc_auth_mac *m) {
    RC_ASSERT(!m->open);
    uint8_t seq[8];
    for (int i = 0; i < 8; i++) seq[i] = (uint8_t)(m->count >> (56 - 8 * i));
    if (EVP_MAC_init(m->ctx, NULL, 0, NULL) != 1 || EVP_MAC_update(m->ctx, seq, sizeof seq) != 1) {
        return RC_AUTH_ERROR_CRYPTO;
    }
    m->open = true;
    return 0;
}

int rc_auth_mac_update(rc_auth_mac *m, const uint8_t *bytes, size_t length) {
    RC_ASSERT(m->open);
    if (length == 0) return 0;
    return EVP_MAC_update(m->ctx, bytes, length) == 1 ? 0 : RC_AUTH_ERROR_CRYPTO;
}

int rc_auth_mac_finish(rc_auth_mac *m, uint8_t tag[RC_AUTH_TAG_BYTES]) {
    RC_ASSERT(m->open);
    uint8_t full[32];
    size_t bytes = 0;
    m->open = false;
    if (EVP_MAC_final(m->ctx, full, &bytes, sizeof full) != 1 || bytes != sizeof full) return RC_AUTH_ERROR_CRYPTO;
    for (uint32_t i = 0; i < RC_AUTH_TAG_BYTES; i++) tag[i] = full[i];
    m->count++;
    return 0;
}

int rc_auth_mac_verify(rc_auth_mac *m, const uint8_t *frame, size_t length, const uint8_t tag[RC_AUTH_TAG_BYTES]) {
    uint8_t expected[RC_AUTH_TAG_BYTES];
    int rc = rc_auth_mac_begin(m);
    if (rc == 0) rc = rc_auth_mac_update(m, frame, length);
    if (rc == 0) rc = rc_auth_mac_finish(m, expected);
    if (rc < 0) return rc;
    return CRYPTO_memcmp(expected, tag, RC_AUTH_TAG_BYTES) == 0 ? 0 : RC_AUTH_ERROR_PROOF;
}

uint64_t rc_auth_mac_count(const rc_auth_mac *m) { return m->count; }
