/* wire_error.c — names for the wire codec's errors (rc_wire.h). */
#include "wire_bytes.h"

#include <errno.h>

const char *rc_wire_error_string(int error) {
    switch (error) {
    case 0: return "success";
    case RC_WIRE_E_TRUNCATED: return "frame truncated: fewer bytes than frame_bytes";
    case RC_WIRE_E_MAGIC: return "bad magic: not a RingCast frame";
    case RC_WIRE_E_VERSION: return "unsupported wire version";
    case RC_WIRE_E_TYPE: return "unknown frame type";
    case RC_WIRE_E_FLAGS: return "undefined flag bits set";
    case RC_WIRE_E_FRAME_LENGTH: return "frame length out of range or inconsistent with its contents";
    case RC_WIRE_E_NODES: return "node count is 0 or above RC_LCR_NODES_MAX";
    case RC_WIRE_E_SENDER: return "sender ring position is not below the node count";
    case RC_WIRE_E_ACK_COUNT: return "ACK count too large or not allowed for the frame type";
    case RC_WIRE_E_ACK_ORIGIN: return "ACK origin out of range or repeated";
    case RC_WIRE_E_ACK_SEQ: return "ACK for seq 0";
    case RC_WIRE_E_HOP_CHECKSUM: return "hop header checksum mismatch";
    case RC_WIRE_E_BLOCK_LENGTH: return "message block length inconsistent with the frame or header";
    case RC_WIRE_E_NODES_MISMATCH: return "message block node count differs from the hop header's";
    case RC_WIRE_E_ORIGIN: return "message origin is not below the node count";
    case RC_WIRE_E_SEQ: return "message seq is 0 or differs from its clock entry";
    case RC_WIRE_E_APP_COUNT: return "application message count is 0 or above RC_LCR_BATCH_COUNT_MAX";
    case RC_WIRE_E_APP_LENGTH: return "application message lengths overrun or underrun the block";
    case RC_WIRE_E_BLOCK_CHECKSUM: return "message block checksum mismatch";
    // The only errno values the codec returns (its encoders'); strerror is avoided because it may
    // format unknown codes into a shared static buffer.
    case -EINVAL: return "invalid argument";
    case -ENOBUFS: return "output buffer too small";
    default: return "unknown wire error";
    }
}
