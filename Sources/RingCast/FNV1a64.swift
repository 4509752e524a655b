internal import CRingCast

/// FNV-1a 64, the hash of the delivery log (ARCHITECTURE §3.3: `<fnv1a64_hex_of_payload>`) and of the wire
/// checksums; the C module's implementation (`rc_wire_fnv1a64`), so that logs written from Swift and checks
/// written in C agree.
public enum FNV1a64 {
    /// The offset basis: the state before any byte.
    public static let basis: UInt64 = RC_WIRE_FNV1A64_BASIS

    /// Continues `state` over `bytes`.
    public static func hash(_ bytes: UnsafeRawBufferPointer, state: UInt64 = basis) -> UInt64 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return state }
        return rc_wire_fnv1a64(state, base, bytes.count)
    }

    /// Continues `state` over the bytes of `bytes`.
    public static func hash(_ bytes: [UInt8], state: UInt64 = basis) -> UInt64 {
        bytes.withUnsafeBytes { hash($0, state: state) }
    }
}
