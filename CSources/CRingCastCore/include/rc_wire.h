/*
 * rc_wire.h — the frame codec between a process and its successor in the ring (thesis 001_…, §2.4.2,
 * Fig. 2.5: the Rsend of a message ⟨m, p_j, C_m⟩ and of ⟨ACK, p_j, C_m⟩).
 *
 * A frame is a small *hop header*, rewritten at every hop because it carries this hop's piggy-backed
 * cumulative ACKs, optionally followed by one *body*. For DATA the body is one LCR *message block*,
 * written once by the origin and never changed along the ring: a successor forwards it byte for byte
 * from its receive buffer and only writes a new hop header in front (zero-copy forwarding, io_uring
 * guide §4.3 "splice in a small rewritten header from a separate buffer").
 *
 * Wire layout, version 1. All fields little-endian, fixed width, no padding, no alignment promised
 * (a frame may start at any byte of a stream buffer; fields are read and written byte by byte).
 *
 *   Hop header (RC_WIRE_HOP_FIXED_BYTES + RC_WIRE_ACK_BYTES × ack_count)
 *   off  size  field
 *     0     4  frame_bytes   total frame bytes, this field included (first: a stream parser needs it)
 *     4     2  magic         RC_WIRE_MAGIC
 *     6     1  version       RC_WIRE_VERSION
 *     7     1  type          rc_wire_type
 *     8     2  nodes         n of the sender's view, 1..RC_LCR_NODES_MAX
 *    10     2  sender        ring position of the sending process, < n
 *    12     2  ack_count     ≤ n; ≥ 1 for ACK; 0 for HEARTBEAT and CONTROL
 *    14     2  flags         none defined in version 1: must be 0
 *    16     8  view_id       frames of another view are the caller's to reject
 *    24     8  checksum      FNV-1a 64 of bytes [0, 24) then the ACK array
 *    32  10×k  acks          k × { u16 origin < n, distinct; u64 seq ≥ 1 }
 *
 *   Message block (DATA only; fills the frame after the hop header exactly)
 *   off  size  field
 *     0     4  block_bytes   bytes of this block, this field included
 *     4     2  nodes         n, equal to the hop header's
 *     6     2  origin        < n
 *     8     8  seq           C_m[origin], ≥ 1
 *    16     4  burst_size    §2.5.2
 *    20     4  app_count     application messages, 1..RC_LCR_BATCH_COUNT_MAX
 *    24     8  checksum      FNV-1a 64 of bytes [0, 24), the clock and the length table
 *    32   8×n  clock         C_m
 *   ..    4×c  app_bytes     length of each application message
 *   ..     Σ   payloads      the application messages, back to back, in order
 *
 *   CONTROL body: opaque bytes for the membership layer (frame_bytes − hop header bytes).
 *
 * Design choices (and why):
 *   - The application lengths form one table after the clock instead of a prefix before each payload.
 *     An own message is then sent as iov[0] = hop header, iov[1] = message header (fixed part, clock,
 *     length table; one small buffer), iov[2 + i] = payload i, untouched: count + 2 iovecs instead of
 *     2 × count + 1, and the checksum covers every length. Delivery still hands out each payload in place.
 *   - Checksums cover the headers, not the payloads. On real traces the TCP checksum missed errors in
 *     roughly 1 packet in 16 million to 10 billion, with causes from host memory errors to stack bugs
 *     that link-level CRCs never see (Stone & Partridge, "When the CRC and TCP Checksum Disagree",
 *     SIGCOMM 2000). A wrong clock, seq or ACK silently breaks total order or uniformity; a wrong payload
 *     byte does not. The block checksum is written once by the origin and checked at every hop, so it
 *     also catches our own bug class of forwarding from a receive buffer recycled too early. Cost:
 *     FNV-1a over 32 + 8n + 4c header bytes per hop, no payload bytes; payload integrity stays with
 *     TCP (and the delivery log's payload hash in tests). The checksum is checked after every
 *     structural rule, so a malformed frame reports its real fault.
 *   - Forwarding a received DATA frame: iov[0] = a new hop header (this hop's ACKs), iov[1] = the
 *     decoded `body` bytes as they are. The caller drops frames whose view_id is not its view.
 *   - Ring positions are u16 on the wire (n ≤ RC_LCR_NODES_MAX ≤ 65535) and u32 in rc_lcr.h.
 *   - Every field has exactly one accepted encoding, so encode(decode(frame)) == frame byte for byte
 *     (the fuzz target checks this).
 *
 * Errors: every function returns a negative value on failure: an rc_wire_error (never an errno value)
 * for a rule of the format, or -EINVAL / -ENOBUFS for a bad argument or too small a buffer.
 * rc_wire_error_string names both. Nothing allocates, nothing is global.
 */
#ifndef RINGCAST_RC_WIRE_H
#define RINGCAST_RC_WIRE_H

#include "rc_common.h"
#include "rc_lcr.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RC_WIRE_MAGIC 0x4352u /**< bytes 'R' 'C' on the wire. */
#define RC_WIRE_VERSION 1u

/** Bytes frame_length needs before it can answer: frame_bytes, magic, version, type. */
#define RC_WIRE_PREFIX_BYTES 8u
#define RC_WIRE_HOP_FIXED_BYTES 32u
#define RC_WIRE_ACK_BYTES 10u
/*
 * The maxima are plain literals so that Swift imports them; the _Static_asserts below tie each to its
 * formula, so a change of RC_LCR_NODES_MAX or of a batch limit cannot leave them stale.
 */
/** Largest hop header: n ACKs. */
#define RC_WIRE_HOP_MAX 672u
#define RC_WIRE_MESSAGE_FIXED_BYTES 32u
/** Largest message header (fixed part, clock, length table): what an own message's header buffer needs. */
#define RC_WIRE_MESSAGE_HEADER_MAX 16928u
/** Largest message block: the largest header and RC_LCR_BATCH_BYTES_MAX of payload. */
#define RC_WIRE_MESSAGE_MAX 67125792u
/** Largest CONTROL body; control messages (membership, recovery) are rare but may carry pending lists. */
#define RC_WIRE_CONTROL_MAX RC_WIRE_MESSAGE_MAX
/** Largest frame of any type. A stream parser may refuse a smaller one by its own buffer size. */
#define RC_WIRE_FRAME_MAX 67126464u

_Static_assert(RC_WIRE_HOP_MAX == RC_WIRE_HOP_FIXED_BYTES + RC_WIRE_ACK_BYTES * RC_LCR_NODES_MAX,
               "RC_WIRE_HOP_MAX: fixed part and one ACK per node");
_Static_assert(RC_WIRE_MESSAGE_HEADER_MAX ==
                   RC_WIRE_MESSAGE_FIXED_BYTES + 8u * RC_LCR_NODES_MAX + 4u * RC_LCR_BATCH_COUNT_MAX,
               "RC_WIRE_MESSAGE_HEADER_MAX: fixed part, full clock, full length table");
_Static_assert(RC_WIRE_MESSAGE_MAX == RC_WIRE_MESSAGE_HEADER_MAX + RC_LCR_BATCH_BYTES_MAX,
               "RC_WIRE_MESSAGE_MAX: largest header and largest batch");
_Static_assert(RC_WIRE_FRAME_MAX == RC_WIRE_HOP_MAX + RC_WIRE_MESSAGE_MAX,
               "RC_WIRE_FRAME_MAX: largest hop header and largest body");

/** Byte offsets of the fields above, for the codec, the tests and the fuzz target. */
#define RC_WIRE_HOP_OFFSET_FRAME_BYTES 0u
#define RC_WIRE_HOP_OFFSET_MAGIC 4u
#define RC_WIRE_HOP_OFFSET_VERSION 6u
#define RC_WIRE_HOP_OFFSET_TYPE 7u
#define RC_WIRE_HOP_OFFSET_NODES 8u
#define RC_WIRE_HOP_OFFSET_SENDER 10u
#define RC_WIRE_HOP_OFFSET_ACK_COUNT 12u
#define RC_WIRE_HOP_OFFSET_FLAGS 14u
#define RC_WIRE_HOP_OFFSET_VIEW_ID 16u
#define RC_WIRE_HOP_OFFSET_CHECKSUM 24u
#define RC_WIRE_MESSAGE_OFFSET_BLOCK_BYTES 0u
#define RC_WIRE_MESSAGE_OFFSET_NODES 4u
#define RC_WIRE_MESSAGE_OFFSET_ORIGIN 6u
#define RC_WIRE_MESSAGE_OFFSET_SEQ 8u
#define RC_WIRE_MESSAGE_OFFSET_BURST_SIZE 16u
#define RC_WIRE_MESSAGE_OFFSET_APP_COUNT 20u
#define RC_WIRE_MESSAGE_OFFSET_CHECKSUM 24u

/** FNV-1a 64 offset basis (the starting state of rc_wire_fnv1a64). */
#define RC_WIRE_FNV1A64_BASIS 0xcbf29ce484222325ull

typedef enum rc_wire_type {
    RC_WIRE_TYPE_DATA = 1,      /**< hop header, ACKs (0..n), one message block. */
    RC_WIRE_TYPE_ACK = 2,       /**< hop header with 1..n ACKs, nothing else. */
    RC_WIRE_TYPE_HEARTBEAT = 3, /**< hop header alone: the link is alive (failure detection). */
    RC_WIRE_TYPE_CONTROL = 4,   /**< hop header and an opaque body for the membership layer. */
    /* 5..255 are free for later versions; version 1 refuses them. */
} rc_wire_type;

typedef enum rc_wire_error {
    RC_WIRE_E_TRUNCATED = -1000,      /**< fewer bytes than the frame says it has. */
    RC_WIRE_E_MAGIC = -1001,          /**< not a RingCast frame. */
    RC_WIRE_E_VERSION = -1002,        /**< a version this build does not speak. */
    RC_WIRE_E_TYPE = -1003,           /**< unknown frame type. */
    RC_WIRE_E_FLAGS = -1004,          /**< a flag bit this version does not define. */
    RC_WIRE_E_FRAME_LENGTH = -1005,   /**< frame_bytes out of range or disagreeing with the contents. */
    RC_WIRE_E_NODES = -1006,          /**< n = 0 or n > RC_LCR_NODES_MAX. */
    RC_WIRE_E_SENDER = -1007,         /**< sender ≥ n. */
    RC_WIRE_E_ACK_COUNT = -1008,      /**< more ACKs than n, or a count the type does not allow. */
    RC_WIRE_E_ACK_ORIGIN = -1009,     /**< an ACK origin ≥ n, or two ACKs for one origin. */
    RC_WIRE_E_ACK_SEQ = -1010,        /**< an ACK for seq 0. */
    RC_WIRE_E_HOP_CHECKSUM = -1011,   /**< the hop header's checksum does not match. */
    RC_WIRE_E_BLOCK_LENGTH = -1012,   /**< block_bytes disagrees with the frame or the header. */
    RC_WIRE_E_NODES_MISMATCH = -1013, /**< the block's n is not the hop header's n. */
    RC_WIRE_E_ORIGIN = -1014,         /**< the message's origin ≥ n. */
    RC_WIRE_E_SEQ = -1015,            /**< seq = 0, or seq ≠ C_m[origin]. */
    RC_WIRE_E_APP_COUNT = -1016,      /**< no application message, or more than RC_LCR_BATCH_COUNT_MAX. */
    RC_WIRE_E_APP_LENGTH = -1017,     /**< application lengths overrun or underrun the block. */
    RC_WIRE_E_BLOCK_CHECKSUM = -1018, /**< the message block's checksum does not match. */
} rc_wire_error;

/** What the hop encoder writes. */
typedef struct rc_wire_hop {
    uint8_t type;            /**< rc_wire_type. */
    uint64_t view_id;
    uint32_t nodes;          /**< n, 1..RC_LCR_NODES_MAX. */
    uint32_t sender;         /**< < nodes. */
    uint32_t ack_count;      /**< see the layout table for what each type allows. */
    const rc_lcr_ack *acks;  /**< ack_count entries (origin < nodes, distinct, seq ≥ 1). */
    uint32_t body_bytes;     /**< DATA: the message block's bytes; CONTROL: the body's; else 0. */
} rc_wire_hop;

/**
 * A decoded frame. Pointers point into the decoded input or the caller's arrays; nothing is copied.
 * The codec checks the frame against itself only: the caller drops frames whose view_id or nodes
 * differ from its view, or whose sender is not its predecessor.
 */
typedef struct rc_wire_frame {
    uint32_t frame_bytes;  /**< bytes of the input this frame occupies. */
    uint8_t type;          /**< rc_wire_type. */
    uint64_t view_id;
    uint32_t nodes;
    uint32_t sender;
    /**
     * The frame as rc_lcr_on_frame takes it. acks point at the caller's ack array, message.clock at
     * the caller's clock array; message.own is false and message.ref is 0: set ref to the handle of
     * the receive buffer before giving the frame to the core.
     */
    rc_lcr_frame lcr;
    const uint8_t *body;   /**< DATA: the message block, to forward as is; CONTROL: the body; else NULL. */
    uint32_t body_bytes;
} rc_wire_frame;

/** Walks the application messages of a decoded message block in order. */
typedef struct rc_wire_app_iter {
    const uint8_t *lengths; /**< next entry of the length table. */
    const uint8_t *payload; /**< first byte of the next application message. */
    const uint8_t *end;     /**< one past the block. */
    uint32_t remaining;
} rc_wire_app_iter;

/**
 * How long is the frame at `bytes`? Reads only the first RC_WIRE_PREFIX_BYTES and checks magic,
 * version, type and that frame_bytes lies in [RC_WIRE_HOP_FIXED_BYTES, RC_WIRE_FRAME_MAX].
 * Returns 1 with `*frame_bytes` set (the frame is complete once `length` ≥ *frame_bytes); 0 when
 * fewer than RC_WIRE_PREFIX_BYTES are available (need more; `*frame_bytes` is left unchanged);
 * or a negative rc_wire_error (the stream is not ours: close it).
 */
int rc_wire_frame_length(const uint8_t *bytes, size_t length, uint32_t *frame_bytes);

/**
 * Decodes the frame at the start of `bytes` (`length` may extend past it: the rest is not read) and
 * checks every rule of the layout. `acks` and `clock` hold RC_LCR_NODES_MAX entries each.
 * Returns 0 with `*frame` filled, or a negative rc_wire_error (RC_WIRE_E_TRUNCATED when `length` is
 * shorter than the frame); on error `*frame` is unspecified.
 */
int rc_wire_decode(const uint8_t *bytes, size_t length, rc_wire_frame *frame, rc_lcr_ack *acks,
                   uint64_t *clock);

/**
 * Decodes a message block alone (a DATA frame's body, or one carried inside a control message),
 * `nodes` being the view's n. Fills origin, seq, burst_size, count, bytes and clock (RC_LCR_NODES_MAX
 * entries) of `*message`; own = false, ref = 0. Returns 0 or a negative rc_wire_error.
 */
int rc_wire_message_decode(const uint8_t *block, size_t block_bytes, uint32_t nodes,
                           rc_lcr_message *message, uint64_t *clock);

/** Starts a walk over the application messages of a block that rc_wire_message_decode accepted. */
void rc_wire_app_iter_init(rc_wire_app_iter *iter, const uint8_t *block, uint32_t block_bytes);

/** The next application message in place; returns false after the last one. */
bool rc_wire_app_next(rc_wire_app_iter *iter, const uint8_t **bytes, uint32_t *length);

/** Bytes of a hop header with `ack_count` ACKs. */
uint32_t rc_wire_hop_bytes(uint32_t ack_count);

/**
 * Writes the hop header of `*hop` into `out` (`capacity` ≥ rc_wire_hop_bytes; RC_WIRE_HOP_MAX always
 * suffices). A DATA frame is then this header followed by the message block's body_bytes bytes.
 * Returns the bytes written, the rc_wire_error the decoder would report for the same fields, or
 * -ENOBUFS when `capacity` is too small.
 */
int rc_wire_hop_encode(uint8_t *out, size_t capacity, const rc_wire_hop *hop);

/** Bytes of a message header (fixed part, clock, length table) for `nodes` and `app_count`. */
uint32_t rc_wire_message_header_bytes(uint32_t nodes, uint32_t app_count);

/**
 * Writes the header of an own message block: fixed part, clock (`nodes` entries of message->clock),
 * length table from `app_bytes` (message->count entries, summing to message->bytes) and checksum.
 * The block is this header followed by the payloads in order, referenced by the caller's iovecs:
 * iov[0] = hop header, iov[1] = this header, iov[2 + i] = payload i. Returns the header's bytes
 * (the block's are that plus message->bytes), an rc_wire_error for invalid fields (-EINVAL when
 * the lengths do not sum to message->bytes), or -ENOBUFS when `capacity` is too small.
 */
int rc_wire_message_header_encode(uint8_t *out, size_t capacity, uint32_t nodes,
                                  const rc_lcr_message *message, const uint32_t *app_bytes);

/** FNV-1a 64 over `length` bytes, continuing from `state` (start with RC_WIRE_FNV1A64_BASIS). */
uint64_t rc_wire_fnv1a64(uint64_t state, const void *bytes, size_t length);

/** A short English description of an rc_wire_error or a negative errno value. Never NULL. */
const char *rc_wire_error_string(int error);

#ifdef __cplusplus
}
#endif

#endif /* RINGCAST_RC_WIRE_H */
