/*
 * auth_seal.c — sealed ring frames (rc_auth.h, mode ENCRYPT): AES-256-GCM through EVP, keyed once per connection
 * and direction by the handshake; per frame only the IV is set (EVP_EncryptInit_ex with NULL cipher and key keeps
 * both, EVP_EncryptInit(3)). The nonce is a per-direction counter, so it never repeats under one key (NIST SP
 * 800-38D §8.2.1, deterministic construction).
 */
#include "rc_auth.h"

#include <errno.h>
#include <stdlib.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

struct rc_auth_seal {
    EVP_CIPHER_CTX *ctx;
    uint64_t count;
    bool encrypt;
};

int rc_auth_seal_create(rc_auth_seal **out, const uint8_t key[32], bool encrypt) {
    RC_ASSERT(out != NULL && key != NULL);
    rc_auth_seal *s = calloc(1, sizeof *s);
    if (s == NULL) return -ENOMEM;
    s->encrypt = encrypt;
    s->ctx = EVP_CIPHER_CTX_new();
    int ok = s->ctx != NULL && EVP_CipherInit_ex(s->ctx, EVP_aes_256_gcm(), NULL, key, NULL, encrypt ? 1 : 0) == 1 &&
             EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) == 1;
    if (!ok) {
        rc_auth_seal_destroy(s);
        return RC_AUTH_ERROR_CRYPTO;
    }
    *out = s;
    return 0;
}

void rc_auth_seal_destroy(rc_auth_seal *s) {
    if (s == NULL) return;
    EVP_CIPHER_CTX_free(s->ctx);
    free(s);
}

int rc_auth_seal_begin(rc_auth_seal *s, const uint8_t header[RC_AUTH_SEAL_HEADER_BYTES]) {
    uint8_t iv[12] = {0};
    for (int i = 0; i < 8; i++) iv[4 + i] = (uint8_t)(s->count >> (56 - 8 * i));
    int length = 0;
    if (EVP_CipherInit_ex(s->ctx, NULL, NULL, NULL, iv, -1) != 1) return RC_AUTH_ERROR_CRYPTO;
    if (EVP_CipherUpdate(s->ctx, NULL, &length, header, RC_AUTH_SEAL_HEADER_BYTES) != 1) return RC_AUTH_ERROR_CRYPTO;
    return 0;
}

int rc_auth_seal_update(rc_auth_seal *s, uint8_t *out, const uint8_t *in, size_t length) {
    while (length > 0) { /* EVP takes int lengths */
        int chunk = length > (1u << 30) ? (1 << 30) : (int)length, written = 0;
        if (EVP_CipherUpdate(s->ctx, out, &written, in, chunk) != 1 || written != chunk) return RC_AUTH_ERROR_CRYPTO;
        out += chunk;
        in += chunk;
        length -= (size_t)chunk;
    }
    return 0;
}

int rc_auth_seal_finish(rc_auth_seal *s, uint8_t tag[RC_AUTH_SEAL_TAG_BYTES]) {
    RC_ASSERT(s->encrypt);
    int length = 0;
    uint8_t none[16];
    s->count++;
    if (EVP_CipherFinal_ex(s->ctx, none, &length) != 1) return RC_AUTH_ERROR_CRYPTO;
    return EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_GET_TAG, RC_AUTH_SEAL_TAG_BYTES, tag) == 1 ? 0 : RC_AUTH_ERROR_CRYPTO;
}

int rc_auth_seal_open(rc_auth_seal *s, const uint8_t header[RC_AUTH_SEAL_HEADER_BYTES], uint8_t *bytes, size_t length,
                      const uint8_t tag[RC_AUTH_SEAL_TAG_BYTES]) {
    RC_ASSERT(!s->encrypt);
    int rc = rc_auth_seal_begin(s, header);
    s->count++;
    if (rc == 0) rc = rc_auth_seal_update(s, bytes, bytes, length);
    if (rc < 0) return rc;
    uint8_t expected[RC_AUTH_SEAL_TAG_BYTES], none[16];
    for (uint32_t i = 0; i < RC_AUTH_SEAL_TAG_BYTES; i++) expected[i] = tag[i];
    int out = 0;
    if (EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_SET_TAG, RC_AUTH_SEAL_TAG_BYTES, expected) != 1) return RC_AUTH_ERROR_CRYPTO;
    return EVP_CipherFinal_ex(s->ctx, none, &out) == 1 ? 0 : RC_AUTH_ERROR_PROOF;
}
