/*
 * rc_crypto.h — the narrow cryptographic interface a protocol core calls (Chain BFT, spec §4, D14).
 *
 * The cores are sans-IO and are built without OpenSSL (CRingCastCore links nothing), so they never
 * compute a MAC, a digest or a signature themselves: the caller hands them an `rc_crypto`, a table of
 * function pointers with an opaque context, at init. The production provider is OpenSSL EVP
 * (HMAC-SHA-256, SHA-256, Ed25519; rc_crypto_openssl.h in CRingCast). Calls are synchronous and pure
 * (no IO, no clock), so a core stays deterministic given its inputs.
 *
 * Principals: replicas are 0..n-1 (chain positions); client c is RC_CRYPTO_CLIENT(c). A provider belongs
 * to one principal ("self") and holds only that party's pairwise MAC keys, its signing key and the others'
 * public keys, so `peer` names the other end of a pairwise key.
 */
#ifndef RINGCAST_RC_CRYPTO_H
#define RINGCAST_RC_CRYPTO_H

#include "rc_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** MAC tag length: HMAC-SHA-256 truncated to 128 bits (RFC 2104 §5, RFC 4868 §2.3). */
#define RC_CRYPTO_MAC_BYTES 16u
/** Digest length: SHA-256. */
#define RC_CRYPTO_DIGEST_BYTES 32u
/** Signature length: Ed25519 (RFC 8032). */
#define RC_CRYPTO_SIGNATURE_BYTES 64u
/** Ed25519 public and private key length. */
#define RC_CRYPTO_SIGN_KEY_BYTES 32u

/** Client principals are tagged with the top bit; replicas are plain positions. */
#define RC_CRYPTO_CLIENT_FLAG 0x80000000u
#define RC_CRYPTO_CLIENT(c) (RC_CRYPTO_CLIENT_FLAG | (uint32_t)(c))

typedef struct rc_crypto_mac { uint8_t bytes[RC_CRYPTO_MAC_BYTES]; } rc_crypto_mac;
typedef struct rc_crypto_digest { uint8_t bytes[RC_CRYPTO_DIGEST_BYTES]; } rc_crypto_digest;
typedef struct rc_crypto_signature { uint8_t bytes[RC_CRYPTO_SIGNATURE_BYTES]; } rc_crypto_signature;

/** One piece of a message to digest or authenticate: the pieces are concatenated in order. */
typedef struct rc_crypto_part {
    const void *data;
    size_t bytes;
} rc_crypto_part;

/**
 * The provider. Every function returns 0 on success or a negative errno (-ENOKEY when no key is known
 * for `peer`/`signer`, -EIO when the library fails). The verify functions return 1 for a valid tag or
 * signature, 0 for an invalid one, and a negative errno only when they could not check at all.
 */
typedef struct rc_crypto {
    void *context;
    /** tag := MAC(key(self, peer), parts...). */
    int (*mac)(void *context, uint32_t peer, const rc_crypto_part *parts, uint32_t count, rc_crypto_mac *tag);
    /** 1 when tag = MAC(key(peer, self), parts...), compared in constant time. */
    int (*mac_verify)(void *context, uint32_t peer, const rc_crypto_part *parts, uint32_t count,
                      const rc_crypto_mac *tag);
    /** out := D(parts...). */
    int (*digest)(void *context, const rc_crypto_part *parts, uint32_t count, rc_crypto_digest *out);
    /** signature := Sign(self's signing key, data). */
    int (*sign)(void *context, const void *data, size_t bytes, rc_crypto_signature *signature);
    /** 1 when signature is `signer`'s over data. */
    int (*sign_verify)(void *context, uint32_t signer, const void *data, size_t bytes,
                       const rc_crypto_signature *signature);
} rc_crypto;

#ifdef __cplusplus
}
#endif

#endif /* RINGCAST_RC_CRYPTO_H */
