internal import CRingCast

/// One application message as the simulator names it: the origin's ring position and its
/// application sequence number (1, 2, 3, … per origin), as in the delivery log of ARCHITECTURE §3.3.
public struct MessageID: Hashable, Sendable, Codable, CustomStringConvertible {
    public var origin: Int
    public var sequence: Int

    public init(origin: Int, sequence: Int) {
        precondition(origin >= 0 && sequence >= 1, "origin ≥ 0 and sequence ≥ 1")
        self.origin = origin
        self.sequence = sequence
    }

    /// Decodes the C simulator's packed id; nil for 0 (no message).
    init?(packed: UInt64) {
        guard packed != 0 else { return nil }
        self.init(origin: Int(rc_sim_id_origin(packed)), sequence: Int(rc_sim_id_seq(packed)))
    }

    var packed: UInt64 { rc_sim_id_make(UInt32(origin), UInt64(sequence)) }

    /// `m(origin,sequence)`, e.g. `m(1,3)`.
    public var description: String { "m(\(origin),\(sequence))" }
}
