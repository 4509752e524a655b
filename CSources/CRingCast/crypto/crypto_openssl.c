/*
 * crypto_openssl.c — rc_crypto over OpenSSL EVP: HMAC-SHA-256 (truncated), SHA-256, Ed25519
 * (Chain BFT spec §4 and D14: SHA-256 instead of [T]'s MD5, HMAC instead of UMAC, keys never derived
 * from ids).
 *
 * Each pairwise key keeps one EVP_MAC_CTX initialised with that key; a MAC re-initialises it with a NULL
 * key, which OpenSSL's HMAC takes as "the same key again" (EVP_MAC_init(3)), so no allocation and no key
 * schedule happen per operation.
 */
#include "rc_crypto_openssl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

struct rc_crypto_openssl {
    uint32_t self;
    uint32_t replicas_max;
    uint32_t clients_max;
    EVP_MAC *hmac;
    EVP_MD *sha256;            /* fetched once: see rc_crypto_openssl_create */
    EVP_MD_CTX *md;            /* reused for digests */
    EVP_MAC_CTX **mac_keys;    /* per peer slot, NULL when unknown */
    EVP_PKEY *signing_key;
    EVP_PKEY **public_keys;    /* per peer slot */
    rc_crypto_openssl_stats stats;
};

/* Replicas take slots 0..replicas_max-1, clients the slots after them. */
static int slot_of(const rc_crypto_openssl *p, uint32_t principal) {
    if (principal & RC_CRYPTO_CLIENT_FLAG) {
        uint32_t c = principal & ~RC_CRYPTO_CLIENT_FLAG;
        return c < p->clients_max ? (int)(p->replicas_max + c) : -1;
    }
    return principal < p->replicas_max ? (int)principal : -1;
}

int rc_crypto_openssl_create(rc_crypto_openssl **out, uint32_t self, uint32_t replicas_max, uint32_t clients_max) {
    if (out == NULL || replicas_max == 0 || replicas_max > RC_CRYPTO_REPLICAS_MAX || clients_max > RC_CRYPTO_CLIENTS_MAX)
        return -EINVAL;
    rc_crypto_openssl *p = calloc(1, sizeof *p);
    if (p == NULL) return -ENOMEM;
    p->self = self;
    p->replicas_max = replicas_max;
    p->clients_max = clients_max;
    size_t slots = (size_t)replicas_max + clients_max;
    p->mac_keys = calloc(slots, sizeof *p->mac_keys);
    p->public_keys = calloc(slots, sizeof *p->public_keys);
    p->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    /* Fetched once, not EVP_sha256(): OpenSSL 3 re-fetches a legacy EVP_MD from the provider (a name lookup under
     * a lock) on every EVP_DigestInit_ex, which the Chain profile found costing about as much as hashing a 4 kB
     * request (docs/chain-bft.md, 2026-12-07 third pass). */
    p->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    p->md = EVP_MD_CTX_new();
    if (p->mac_keys == NULL || p->public_keys == NULL || p->md == NULL) {
        rc_crypto_openssl_destroy(p);
        return -ENOMEM;
    }
    if (p->hmac == NULL || p->sha256 == NULL) {
        rc_crypto_openssl_destroy(p);
        return -EIO;
    }
    *out = p;
    return 0;
}

void rc_crypto_openssl_destroy(rc_crypto_openssl *p) {
    if (p == NULL) return;
    size_t slots = (size_t)p->replicas_max + p->clients_max;
    for (size_t i = 0; i < slots; i++) {
        if (p->mac_keys != NULL) EVP_MAC_CTX_free(p->mac_keys[i]);
        if (p->public_keys != NULL) EVP_PKEY_free(p->public_keys[i]);
    }
    free(p->mac_keys);
    free(p->public_keys);
    EVP_PKEY_free(p->signing_key);
    EVP_MD_CTX_free(p->md);
    EVP_MD_free(p->sha256);
    EVP_MAC_free(p->hmac);
    free(p);
}

int rc_crypto_openssl_set_mac_key(rc_crypto_openssl *p, uint32_t peer, const uint8_t *key, size_t bytes) {
    int slot = slot_of(p, peer);
    if (slot < 0 || key == NULL || bytes < 16 || bytes > 64) return -EINVAL;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(p->hmac);
    if (ctx == NULL) return -ENOMEM;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_init(ctx, key, bytes, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        return -EIO;
    }
    EVP_MAC_CTX_free(p->mac_keys[slot]);
    p->mac_keys[slot] = ctx;
    return 0;
}

int rc_crypto_openssl_set_signing_key(rc_crypto_openssl *p, const uint8_t key[RC_CRYPTO_SIGN_KEY_BYTES]) {
    if (key == NULL) return -EINVAL;
    EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, key, RC_CRYPTO_SIGN_KEY_BYTES);
    if (pkey == NULL) return -EIO;
    EVP_PKEY_free(p->signing_key);
    p->signing_key = pkey;
    return 0;
}

int rc_crypto_openssl_set_public_key(rc_crypto_openssl *p, uint32_t signer, const uint8_t key[RC_CRYPTO_SIGN_KEY_BYTES]) {
    int slot = slot_of(p, signer);
    if (slot < 0 || key == NULL) return -EINVAL;
    EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key, RC_CRYPTO_SIGN_KEY_BYTES);
    if (pkey == NULL) return -EIO;
    EVP_PKEY_free(p->public_keys[slot]);
    p->public_keys[slot] = pkey;
    return 0;
}

/* The full HMAC-SHA-256 of the parts under the key shared with `peer`. */
static int hmac_full(rc_crypto_openssl *p, uint32_t peer, const rc_crypto_part *parts, uint32_t count,
                     uint8_t full[32]) {
    int slot = slot_of(p, peer);
    if (slot < 0 || p->mac_keys[slot] == NULL) return -ENOKEY;
    EVP_MAC_CTX *ctx = p->mac_keys[slot];
    if (EVP_MAC_init(ctx, NULL, 0, NULL) != 1) return -EIO;
    for (uint32_t i = 0; i < count; i++) {
        if (parts[i].bytes > 0 && EVP_MAC_update(ctx, parts[i].data, parts[i].bytes) != 1) return -EIO;
    }
    size_t length = 0;
    if (EVP_MAC_final(ctx, full, &length, 32) != 1 || length != 32) return -EIO;
    return 0;
}

static int provider_mac(void *context, uint32_t peer, const rc_crypto_part *parts, uint32_t count,
                        rc_crypto_mac *tag) {
    rc_crypto_openssl *p = context;
    uint8_t full[32];
    int rc = hmac_full(p, peer, parts, count, full);
    if (rc < 0) return rc;
    memcpy(tag->bytes, full, RC_CRYPTO_MAC_BYTES);
    p->stats.mac_generations++;
    return 0;
}

static int provider_mac_verify(void *context, uint32_t peer, const rc_crypto_part *parts, uint32_t count,
                               const rc_crypto_mac *tag) {
    rc_crypto_openssl *p = context;
    uint8_t full[32];
    int rc = hmac_full(p, peer, parts, count, full);
    if (rc < 0) return rc;
    p->stats.mac_verifications++;
    if (CRYPTO_memcmp(full, tag->bytes, RC_CRYPTO_MAC_BYTES) != 0) {
        p->stats.mac_failures++;
        return 0;
    }
    return 1;
}

static int provider_digest(void *context, const rc_crypto_part *parts, uint32_t count, rc_crypto_digest *out) {
    rc_crypto_openssl *p = context;
    if (EVP_DigestInit_ex(p->md, p->sha256, NULL) != 1) return -EIO;
    for (uint32_t i = 0; i < count; i++) {
        if (parts[i].bytes > 0 && EVP_DigestUpdate(p->md, parts[i].data, parts[i].bytes) != 1) return -EIO;
    }
    unsigned int length = 0;
    if (EVP_DigestFinal_ex(p->md, out->bytes, &length) != 1 || length != RC_CRYPTO_DIGEST_BYTES) return -EIO;
    p->stats.digests++;
    return 0;
}

static int provider_sign(void *context, const void *data, size_t bytes, rc_crypto_signature *signature) {
    rc_crypto_openssl *p = context;
    if (p->signing_key == NULL) return -ENOKEY;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) return -ENOMEM;
    size_t length = RC_CRYPTO_SIGNATURE_BYTES;
    int ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, p->signing_key) == 1 &&
             EVP_DigestSign(ctx, signature->bytes, &length, data, bytes) == 1 && length == RC_CRYPTO_SIGNATURE_BYTES;
    EVP_MD_CTX_free(ctx);
    if (!ok) return -EIO;
    p->stats.signatures++;
    return 0;
}

static int provider_sign_verify(void *context, uint32_t signer, const void *data, size_t bytes,
                                const rc_crypto_signature *signature) {
    rc_crypto_openssl *p = context;
    int slot = slot_of(p, signer);
    if (slot < 0 || p->public_keys[slot] == NULL) return -ENOKEY;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) return -ENOMEM;
    int rc = -EIO;
    if (EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, p->public_keys[slot]) == 1) {
        rc = EVP_DigestVerify(ctx, signature->bytes, RC_CRYPTO_SIGNATURE_BYTES, data, bytes) == 1 ? 1 : 0;
    }
    EVP_MD_CTX_free(ctx);
    if (rc >= 0) {
        p->stats.signature_verifications++;
        if (rc == 0) p->stats.signature_failures++;
    }
    return rc;
}

rc_crypto rc_crypto_openssl_provider(rc_crypto_openssl *p) {
    return (rc_crypto){
        .context = p,
        .mac = provider_mac,
        .mac_verify = provider_mac_verify,
        .digest = provider_digest,
        .sign = provider_sign,
        .sign_verify = provider_sign_verify,
    };
}

rc_crypto_openssl_stats rc_crypto_openssl_stats_get(const rc_crypto_openssl *p) { return p->stats; }
void rc_crypto_openssl_stats_reset(rc_crypto_openssl *p) { memset(&p->stats, 0, sizeof p->stats); }

int rc_crypto_openssl_random(uint8_t *out, size_t bytes) {
    if (bytes > INT32_MAX) return -EINVAL;
    return RAND_bytes(out, (int)bytes) == 1 ? 0 : -EIO;
}

int rc_crypto_openssl_ed25519_keypair(uint8_t private_key[RC_CRYPTO_SIGN_KEY_BYTES],
                                      uint8_t public_key[RC_CRYPTO_SIGN_KEY_BYTES]) {
    if (rc_crypto_openssl_random(private_key, RC_CRYPTO_SIGN_KEY_BYTES) != 0) return -EIO;
    return rc_crypto_openssl_ed25519_public(private_key, public_key);
}

int rc_crypto_openssl_ed25519_public(const uint8_t private_key[RC_CRYPTO_SIGN_KEY_BYTES],
                                     uint8_t public_key[RC_CRYPTO_SIGN_KEY_BYTES]) {
    if (private_key == NULL || public_key == NULL) return -EINVAL;
    EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, private_key, RC_CRYPTO_SIGN_KEY_BYTES);
    if (pkey == NULL) return -EIO;
    size_t length = RC_CRYPTO_SIGN_KEY_BYTES;
    int ok = EVP_PKEY_get_raw_public_key(pkey, public_key, &length) == 1 && length == RC_CRYPTO_SIGN_KEY_BYTES;
    EVP_PKEY_free(pkey);
    return ok ? 0 : -EIO;
}
