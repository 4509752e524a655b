/*
 * rc_crypto_openssl.h — the OpenSSL EVP provider of rc_crypto (Chain BFT spec §4, D14).
 *
 * MACs are HMAC-SHA-256 (EVP_MAC "HMAC") truncated to RC_CRYPTO_MAC_BYTES; digests are SHA-256
 * (EVP_Digest); signatures are Ed25519 (EVP_DigestSign, RFC 8032). One provider is one principal's
 * key ring: the pairwise MAC keys it shares with each peer, its own Ed25519 private key and the peers'
 * public keys. Keys come from key files made by a key tool (or, in tests and the simulator, from
 * rc_crypto_openssl_random, OpenSSL's DRBG); the provider never derives a key from an id.
 *
 * It counts every operation, so tests and benchmarks can compare MAC operations per request with the
 * cost model (spec §16.2). The counters are plain integers: a provider belongs to one thread at a time.
 *
 * OpenSSL's headers stay inside this target's .c files; this header only names opaque types.
 */
#ifndef RINGCAST_RC_CRYPTO_OPENSSL_H
#define RINGCAST_RC_CRYPTO_OPENSSL_H

#include "rc_crypto.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Bytes of a pairwise MAC key (HMAC-SHA-256: a full block of entropy is more than enough). */
#define RC_CRYPTO_MAC_KEY_BYTES 32u
/** Peers a provider can hold keys for, per kind. */
#define RC_CRYPTO_REPLICAS_MAX 256u
#define RC_CRYPTO_CLIENTS_MAX 65536u

typedef struct rc_crypto_openssl rc_crypto_openssl;

typedef struct rc_crypto_openssl_stats {
    uint64_t mac_generations;
    uint64_t mac_verifications;
    uint64_t mac_failures;        /**< verifications that found an invalid tag. */
    uint64_t digests;
    uint64_t signatures;
    uint64_t signature_verifications;
    uint64_t signature_failures;
} rc_crypto_openssl_stats;

/**
 * A key ring for principal `self` (a replica position, or RC_CRYPTO_CLIENT(c)) that can hold keys for
 * replicas 0..replicas_max-1 and clients 0..clients_max-1. Allocates (set-up only, never per operation).
 * Returns 0, -EINVAL for sizes out of range, -ENOMEM, -EIO when OpenSSL lacks HMAC or SHA-256.
 */
int rc_crypto_openssl_create(rc_crypto_openssl **out, uint32_t self, uint32_t replicas_max, uint32_t clients_max);
void rc_crypto_openssl_destroy(rc_crypto_openssl *provider);

/** The pairwise MAC key shared by self and `peer` (the same bytes at both ends). 0, -EINVAL, -EIO. */
int rc_crypto_openssl_set_mac_key(rc_crypto_openssl *provider, uint32_t peer, const uint8_t *key, size_t bytes);
/** Self's Ed25519 private key (32 bytes, RFC 8032 seed). 0, -EINVAL, -EIO. */
int rc_crypto_openssl_set_signing_key(rc_crypto_openssl *provider, const uint8_t key[RC_CRYPTO_SIGN_KEY_BYTES]);
/** `signer`'s Ed25519 public key. 0, -EINVAL, -EIO. */
int rc_crypto_openssl_set_public_key(rc_crypto_openssl *provider, uint32_t signer,
                                     const uint8_t key[RC_CRYPTO_SIGN_KEY_BYTES]);

/** The function table a core takes; valid while the provider lives. */
rc_crypto rc_crypto_openssl_provider(rc_crypto_openssl *provider);
rc_crypto_openssl_stats rc_crypto_openssl_stats_get(const rc_crypto_openssl *provider);
void rc_crypto_openssl_stats_reset(rc_crypto_openssl *provider);

/** Fills `out` from OpenSSL's DRBG (RAND_bytes), for generating keys. 0 or -EIO. */
int rc_crypto_openssl_random(uint8_t *out, size_t bytes);
/** A fresh Ed25519 key pair (private seed and public key). 0 or -EIO. */
int rc_crypto_openssl_ed25519_keypair(uint8_t private_key[RC_CRYPTO_SIGN_KEY_BYTES],
                                      uint8_t public_key[RC_CRYPTO_SIGN_KEY_BYTES]);
/** The Ed25519 public key of a private seed (key files check that the pair they hold belongs together). 0 or -EIO. */
int rc_crypto_openssl_ed25519_public(const uint8_t private_key[RC_CRYPTO_SIGN_KEY_BYTES],
                                     uint8_t public_key[RC_CRYPTO_SIGN_KEY_BYTES]);

#ifdef __cplusplus
}
#endif

#endif /* RINGCAST_RC_CRYPTO_OPENSSL_H */
