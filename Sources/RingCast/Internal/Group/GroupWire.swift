import RingCastMembership

/// What a group member sends another on the control plane (ControlChannel frames). The first byte says
/// which kind; everything is little-endian and length-checked; a malformed frame is counted and dropped
/// (the sender is then suspected by the membership core if it also stops answering).
enum GroupFrame: Sendable {
    /// A membership core message (`Membership.Message.encoded()`).
    case membership([UInt8])
    /// One pending LCR message of view `fromViewID`, for a member that lacks it (Fig. 2.7, RECOVER).
    case recovery(fromViewID: UInt64, entry: Membership.Recovery<RecoveredPayload>.Entry)
    /// The application's state for a joiner of view `viewID`, with each member's delivered count so far.
    case state(viewID: UInt64, seqBases: [UInt32: UInt64], snapshot: [UInt8])

    static let appsMax = 1 << 16
    static let nodesMax = 64

    func encoded() -> [UInt8] {
        var out = ByteWriter()
        switch self {
        case let .membership(bytes):
            out.u8(1)
            out.bytes(bytes)
        case let .recovery(fromViewID, entry):
            out.u8(2)
            out.u64(fromViewID)
            out.u32(entry.origin)
            out.u64(entry.seq)
            out.u64(entry.payload.firstOriginSeq)
            out.u32(UInt32(entry.clock.count))
            for value in entry.clock { out.u64(value) }
            out.u32(UInt32(entry.payload.lengths.count))
            for length in entry.payload.lengths { out.u32(length) }
            out.bytes(entry.payload.bytes)
        case let .state(viewID, seqBases, snapshot):
            out.u8(3)
            out.u64(viewID)
            out.u32(UInt32(seqBases.count))
            for (node, base) in seqBases.sorted(by: { $0.key < $1.key }) {
                out.u32(node)
                out.u64(base)
            }
            out.bytes(snapshot)
        }
        return out.buffer
    }

    static func decode(_ bytes: [UInt8]) -> GroupFrame? {
        var input = ByteReader(bytes)
        guard let kind = input.u8() else { return nil }
        switch kind {
        case 1:
            return .membership(input.rest())
        case 2:
            guard let view = input.u64(), let origin = input.u32(), let seq = input.u64(), let firstOriginSeq = input.u64(),
                  firstOriginSeq >= 1, let nodes = input.u32(), nodes >= 1, nodes <= nodesMax, origin < nodes, seq >= 1
            else { return nil }
            var clock: [UInt64] = []
            for _ in 0..<nodes {
                guard let value = input.u64() else { return nil }
                clock.append(value)
            }
            guard let count = input.u32(), count >= 1, count <= appsMax else { return nil }
            var lengths: [UInt32] = []
            var total = 0
            for _ in 0..<count {
                guard let length = input.u32() else { return nil }
                lengths.append(length)
                total += Int(length)
            }
            let payload = input.rest()
            guard payload.count == total else { return nil }
            return .recovery(fromViewID: view, entry: .init(origin: origin, seq: seq, clock: clock,
                                                            payload: RecoveredPayload(bytes: payload, lengths: lengths,
                                                                                     firstOriginSeq: firstOriginSeq, tokens: [])))
        case 3:
            guard let view = input.u64(), let count = input.u32(), count <= nodesMax else { return nil }
            var bases: [UInt32: UInt64] = [:]
            for _ in 0..<count {
                guard let node = input.u32(), let base = input.u64() else { return nil }
                bases[node] = base
            }
            return .state(viewID: view, seqBases: bases, snapshot: input.rest())
        default:
            return nil
        }
    }
}

struct ByteWriter {
    var buffer: [UInt8] = []
    mutating func u8(_ value: UInt8) { buffer.append(value) }
    mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) } }
    mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) } }
    mutating func bytes(_ value: [UInt8]) { buffer.append(contentsOf: value) }
}

struct ByteReader {
    private let bytes: [UInt8]
    private var offset = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func u8() -> UInt8? {
        guard offset < bytes.count else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func u32() -> UInt32? {
        guard bytes.count - offset >= 4 else { return nil }
        var value: UInt32 = 0
        for index in 0..<4 { value |= UInt32(bytes[offset + index]) << (8 * index) }
        offset += 4
        return value
    }

    mutating func u64() -> UInt64? {
        guard bytes.count - offset >= 8 else { return nil }
        var value: UInt64 = 0
        for index in 0..<8 { value |= UInt64(bytes[offset + index]) << (8 * index) }
        offset += 8
        return value
    }

    mutating func rest() -> [UInt8] {
        defer { offset = bytes.count }
        return Array(bytes[offset...])
    }
}
