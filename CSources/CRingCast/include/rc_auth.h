/*
 * rc_auth.h — authenticated links: the mutual challenge–response handshake that opens every TCP connection
 * (ring data, control plane, a service's client port), the per-connection session keys it derives, and the per-frame MAC.
 *
 * The handshake is sans-IO (bytes in, bytes out, no socket, no clock, no randomness inside: the caller passes
 * the nonce), so that the C engine (io_uring), the Swift control plane (poll) and the fuzzer drive the very
 * same state machine. The cryptography is OpenSSL's libcrypto through EVP (HMAC-SHA-256, HKDF-SHA-256);
 * nothing here is a primitive of our own.
 *
 * Protocol (both sides run it; the side that dialled is the initiator):
 *   1. each side sends HELLO = "RCA1" 0x01 mode channel 0x00 | node (be32) | incarnation (be32) | nonce (32 B);
 *   2. on the peer's HELLO, each side checks it (magic, mode, channel, the expected node and incarnation)
 *      and sends PROOF = "RCA1" 0x02 0 0 0 | HMAC-SHA-256(K, label || T), where
 *      T = "ringcast-auth-v1" | channel | mode | len(cluster) (be16) | cluster | HELLO_initiator | HELLO_responder
 *      and label is "initiator" or "responder" (so that a proof reflected back to its sender fails);
 *   3. on the peer's PROOF, each side verifies it (CRYPTO_memcmp). Done when the peer's proof verified.
 * T holds both node ids, both incarnations, the cluster name and both nonces; each nonce is fresh from
 * RAND_bytes per connection, so a recorded transcript replayed to a new connection meets a new nonce and
 * its proof fails. Session keys: HKDF-SHA-256(ikm K, salt nonce_i || nonce_r, info "ringcast-session-v1" || T),
 * 64 bytes: initiator→responder key, then responder→initiator key.
 *
 * Frame MAC (mode FRAMES): after the handshake, every frame on the connection is followed by a 16-byte tag,
 * HMAC-SHA-256(session key of the direction, seq (be64) || frame) truncated to 128 bits (RFC 4868's
 * truncation), seq counting the direction's frames from 0, so that a frame dropped, replayed or reordered
 * on the connection fails too.
 */
#ifndef RINGCAST_RC_AUTH_H
#define RINGCAST_RC_AUTH_H

#include "rc_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RC_AUTH_KEY_BYTES 32u          /**< the cluster key: 256 bits */
#define RC_AUTH_NONCE_BYTES 32u
#define RC_AUTH_HELLO_BYTES 48u
#define RC_AUTH_PROOF_BYTES 40u
#define RC_AUTH_TAG_BYTES 16u          /**< frame MAC: HMAC-SHA-256 truncated to 128 bits */
#define RC_AUTH_CLUSTER_NAME_MAX 64u   /**< bytes of the cluster name, without the NUL */
#define RC_AUTH_PEER_ANY 0xffffffffu   /**< expect_node / expect_incarnation: any peer holding the key */

/** What an authenticated link protects (`--auth none|handshake|frames`). */
typedef enum rc_auth_mode {
    RC_AUTH_MODE_NONE = 0,      /**< no handshake: today's open links */
    RC_AUTH_MODE_HANDSHAKE = 1, /**< the handshake opens every connection; frames are not MACed */
    RC_AUTH_MODE_FRAMES = 2,    /**< the handshake, then a MAC per frame keyed per connection and direction */
    RC_AUTH_MODE_ENCRYPT = 3,   /**< the handshake, then every ring frame sealed with AES-256-GCM (rc_auth_seal) */
} rc_auth_mode;

/** Which plane a connection belongs to: bound into T, so that a ring handshake cannot open a control link. */
typedef enum rc_auth_channel {
    RC_AUTH_CHANNEL_RING = 1,
    RC_AUTH_CHANNEL_CONTROL = 2,
    RC_AUTH_CHANNEL_CLIENT = 3, /**< a service's client port (RingCastSMR): clients and snapshot pulls */
} rc_auth_channel;

/** Why a handshake failed (negative returns; the state machine stays failed). */
typedef enum rc_auth_error {
    RC_AUTH_ERROR_MALFORMED = -1001, /**< not a HELLO/PROOF: magic, type or reserved bytes */
    RC_AUTH_ERROR_MODE = -1002,      /**< the peer runs another mode or channel */
    RC_AUTH_ERROR_STRANGER = -1003,  /**< the peer is not the node (or incarnation) expected */
    RC_AUTH_ERROR_PROOF = -1004,     /**< the peer's proof is wrong: no key, another key, or a replay */
    RC_AUTH_ERROR_CRYPTO = -1005,    /**< libcrypto failed */
} rc_auth_error;

/** What one side of a connection knows before it starts. */
typedef struct rc_auth_config {
    uint8_t key[RC_AUTH_KEY_BYTES];
    char cluster[RC_AUTH_CLUSTER_NAME_MAX + 1]; /**< NUL-terminated cluster (group) name */
    uint32_t mode;                /**< rc_auth_mode: HANDSHAKE or FRAMES (NONE runs no handshake) */
    uint32_t channel;             /**< rc_auth_channel */
    uint32_t self_node, self_incarnation;
    uint32_t expect_node, expect_incarnation; /**< RC_AUTH_PEER_ANY: anyone with the key */
} rc_auth_config;

typedef enum rc_auth_state {
    RC_AUTH_STATE_HELLO = 0,  /**< waiting for the peer's HELLO */
    RC_AUTH_STATE_PROOF = 1,  /**< waiting for the peer's PROOF */
    RC_AUTH_STATE_DONE = 2,   /**< the peer proved the key; session keys ready */
    RC_AUTH_STATE_FAILED = 3,
} rc_auth_state;

/** One side of one connection's handshake. Plain memory the caller owns (no allocation). */
typedef struct rc_auth_handshake {
    rc_auth_config config;
    bool initiator;
    uint32_t state;                           /**< rc_auth_state */
    int32_t error;                            /**< rc_auth_error once FAILED */
    uint8_t hello_self[RC_AUTH_HELLO_BYTES];
    uint8_t hello_peer[RC_AUTH_HELLO_BYTES];
    uint8_t in[RC_AUTH_HELLO_BYTES];          /**< the peer's message being assembled */
    uint32_t in_filled;
    uint8_t out[RC_AUTH_HELLO_BYTES + RC_AUTH_PROOF_BYTES];
    uint32_t out_length, out_sent;            /**< bytes queued for the peer, and handed out */
    uint32_t peer_node, peer_incarnation;     /**< from the peer's HELLO */
    uint8_t key_send[32], key_recv[32];       /**< session keys (DONE) */
} rc_auth_handshake;

/** Starts one side: queues its HELLO. -EINVAL on a bad config (mode NONE, cluster name too long). */
int rc_auth_handshake_init(rc_auth_handshake *handshake, const rc_auth_config *config, bool initiator,
                           const uint8_t nonce[RC_AUTH_NONCE_BYTES]);
/**
 * Feeds bytes received from the peer. Consumes at most up to the end of the handshake (what follows belongs
 * to the next layer). Returns the bytes consumed (≥ 0) or an rc_auth_error (sticky: the connection must
 * be closed and nothing it sent trusted).
 */
int rc_auth_handshake_input(rc_auth_handshake *handshake, const uint8_t *bytes, size_t length);
/** Bytes to send now (a view into the handshake; *length 0 when none). */
const uint8_t *rc_auth_handshake_output(const rc_auth_handshake *handshake, uint32_t *length);
/** The first `length` bytes of rc_auth_handshake_output were taken (copied, or sent and done with). */
void rc_auth_handshake_output_advance(rc_auth_handshake *handshake, uint32_t length);
/** True when the peer's proof verified. The caller still sends any output left, then uses the link. */
bool rc_auth_handshake_done(const rc_auth_handshake *handshake);
/** A short English description of an rc_auth_error (static string). */
const char *rc_auth_error_describe(int error);

/** Fills `bytes` from OpenSSL's RAND_bytes (the nonce; key files). 0 or RC_AUTH_ERROR_CRYPTO. */
int rc_auth_random(uint8_t *bytes, size_t length);

/** The per-frame MAC of one direction of one connection (opaque: an EVP_MAC_CTX keyed once). */
typedef struct rc_auth_mac rc_auth_mac;
/** Allocates and keys a MAC context (done at connection start, not per frame). -ENOMEM or RC_AUTH_ERROR_CRYPTO. */
int rc_auth_mac_create(rc_auth_mac **mac, const uint8_t key[32]);
void rc_auth_mac_destroy(rc_auth_mac *mac);
/** Starts the next frame's tag (binds the direction's frame counter). */
int rc_auth_mac_begin(rc_auth_mac *mac);
/** Adds bytes of the frame (pieces in wire order). */
int rc_auth_mac_update(rc_auth_mac *mac, const uint8_t *bytes, size_t length);
/** Ends the frame: writes its RC_AUTH_TAG_BYTES tag and advances the counter. */
int rc_auth_mac_finish(rc_auth_mac *mac, uint8_t tag[RC_AUTH_TAG_BYTES]);
/** begin + update(frame) + finish, then compares with `tag` in constant time: 0, or RC_AUTH_ERROR_PROOF. */
int rc_auth_mac_verify(rc_auth_mac *mac, const uint8_t *frame, size_t length, const uint8_t tag[RC_AUTH_TAG_BYTES]);
/** Frames tagged or verified so far (the direction's counter). */
uint64_t rc_auth_mac_count(const rc_auth_mac *mac);

/*
 * Sealed frames (mode ENCRYPT): on the ring, every frame travels as
 *   [L: be32] [AES-256-GCM ciphertext of the frame: L bytes] [GCM tag: 16 bytes]
 * under the session key of the direction, nonce = 0x00000000 || be64 frame counter (unique per key: a key lives
 * for one connection and direction), the 4-byte length as additional authenticated data. The receiver decrypts
 * in place in its receive buffer, so the frame is then parsed, forwarded from and delivered from as before.
 */
#define RC_AUTH_SEAL_HEADER_BYTES 4u
#define RC_AUTH_SEAL_TAG_BYTES 16u

/** One direction's AES-256-GCM state (opaque: an EVP_CIPHER_CTX keyed once, a counter). */
typedef struct rc_auth_seal rc_auth_seal;
/** Keys a sealing (`encrypt`) or opening context at connection start. -ENOMEM or RC_AUTH_ERROR_CRYPTO. */
int rc_auth_seal_create(rc_auth_seal **seal, const uint8_t key[32], bool encrypt);
void rc_auth_seal_destroy(rc_auth_seal *seal);
/** Starts the next frame: its nonce from the counter, `header` (the 4 length bytes) as AAD. */
int rc_auth_seal_begin(rc_auth_seal *seal, const uint8_t header[RC_AUTH_SEAL_HEADER_BYTES]);
/** Encrypts `length` bytes of `in` to `out` (pieces in wire order; `out` may equal `in`). */
int rc_auth_seal_update(rc_auth_seal *seal, uint8_t *out, const uint8_t *in, size_t length);
/** Ends a sealed frame: writes its tag, advances the counter. */
int rc_auth_seal_finish(rc_auth_seal *seal, uint8_t tag[RC_AUTH_SEAL_TAG_BYTES]);
/** Opens one frame in place: decrypts `bytes` (L = `length`) and checks the tag. 0, or RC_AUTH_ERROR_PROOF (the
 *  bytes are then garbage and the link must be closed). Advances the counter either way. */
int rc_auth_seal_open(rc_auth_seal *seal, const uint8_t header[RC_AUTH_SEAL_HEADER_BYTES], uint8_t *bytes,
                      size_t length, const uint8_t tag[RC_AUTH_SEAL_TAG_BYTES]);

#ifdef __cplusplus
}
#endif

#endif /* RINGCAST_RC_AUTH_H */
