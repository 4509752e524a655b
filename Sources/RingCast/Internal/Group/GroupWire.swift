internal import CRingCastCore
import RingCastMembership

/// What a group member sends another on the control plane (ControlChannel frames). The first byte says
/// which kind; the fields are little-endian and length-checked through the control plane's one codec
/// (RingCastMembership's `WireWriter`/`WireReader`); a malformed frame is counted and dropped (the sender is then
/// suspected by the membership core if it also stops answering).
enum GroupFrame: Sendable {
    /// A membership core message (`Membership.Message.encoded()`).
    case membership([UInt8])
    /// One pending LCR message of view `fromViewID`, for a member that lacks it (Fig. 2.7, RECOVER).
    case recovery(fromViewID: UInt64, entry: Membership.Recovery<RecoveredPayload>.Entry)
    /// The application's state for a joiner of view `viewID`, with each member's delivered count so far.
    case state(viewID: UInt64, seqBases: [UInt32: UInt64], snapshot: [UInt8])

    static let nodesMax = Int(RC_LCR_NODES_MAX)

    func encoded() -> [UInt8] {
        var out = WireWriter()
        switch self {
        case let .membership(bytes):
            out.byte(1)
            out.raw(bytes)
        case let .recovery(fromViewID, entry):
            // The LCR message travels as the ring carries it: the C wire's message block (fixed part, C_m, length
            // table, checksum, payloads), so there is one encoding of a message and the receiver's decoder checks it.
            out.byte(2)
            out.u64(fromViewID)
            out.u64(entry.payload.firstOriginSeq)
            out.u32(UInt32(entry.clock.count))
            out.raw(Self.messageBlock(entry))
        case let .state(viewID, seqBases, snapshot):
            out.byte(3)
            out.u64(viewID)
            out.u32(UInt32(seqBases.count))
            for (node, base) in seqBases.sorted(by: { $0.key < $1.key }) {
                out.u32(node)
                out.u64(base)
            }
            out.raw(snapshot)
        }
        return out.bytes
    }

    static func decode(_ bytes: [UInt8]) -> GroupFrame? {
        var input = WireReader(bytes)
        do {
            switch try input.byte() {
            case 1:
                return .membership(input.rest())
            case 2:
                let view = try input.u64(), firstOriginSeq = try input.u64(), nodes = try input.u32()
                guard firstOriginSeq >= 1, nodes >= 1, nodes <= nodesMax else { return nil }
                guard let entry = messageEntry(input.rest(), nodes: nodes, firstOriginSeq: firstOriginSeq) else { return nil }
                return .recovery(fromViewID: view, entry: entry)
            case 3:
                let view = try input.u64(), count = try input.u32()
                guard count <= nodesMax else { return nil }
                var bases: [UInt32: UInt64] = [:]
                for _ in 0..<count { bases[try input.u32()] = try input.u64() }
                return .state(viewID: view, seqBases: bases, snapshot: input.rest())
            default:
                return nil
            }
        } catch {
            return nil
        }
    }

    /// The entry as a C wire message block (rc_wire_message_header_encode, then the payloads).
    private static func messageBlock(_ entry: Membership.Recovery<RecoveredPayload>.Entry) -> [UInt8] {
        let payload = entry.payload
        let nodes = UInt32(entry.clock.count)
        let headerBytes = Int(rc_wire_message_header_bytes(nodes, UInt32(payload.lengths.count)))
        var block = [UInt8](repeating: 0, count: headerBytes)
        let written = entry.clock.withUnsafeBufferPointer { clock in
            payload.lengths.withUnsafeBufferPointer { lengths in
                var message = rc_lcr_message()
                message.origin = entry.origin
                message.seq = entry.seq
                message.count = UInt32(lengths.count)
                message.bytes = UInt64(payload.bytes.count)
                message.clock = clock.baseAddress
                return block.withUnsafeMutableBytes { out in
                    rc_wire_message_header_encode(out.baseAddress!.assumingMemoryBound(to: UInt8.self), out.count,
                                                  nodes, &message, lengths.baseAddress)
                }
            }
        }
        // The entry came out of this member's engine (or a checked frame): its fields are valid for the wire.
        precondition(Int(written) == headerBytes, "a pending message the wire refuses (\(written))")
        return block + payload.bytes
    }

    /// A recovery entry from a message block, checked by the C wire's decoder (lengths, clock, checksum).
    private static func messageEntry(_ block: [UInt8], nodes: UInt32,
                                     firstOriginSeq: UInt64) -> Membership.Recovery<RecoveredPayload>.Entry? {
        block.withUnsafeBufferPointer { raw -> Membership.Recovery<RecoveredPayload>.Entry? in
            guard let base = raw.baseAddress else { return nil }
            var message = rc_lcr_message()
            var clock = [UInt64](repeating: 0, count: Int(RC_LCR_NODES_MAX))
            let result = clock.withUnsafeMutableBufferPointer { rc_wire_message_decode(base, raw.count, nodes, &message, $0.baseAddress) }
            guard result == 0 else { return nil }
            var payload = RecoveredPayload(bytes: [], lengths: [], firstOriginSeq: firstOriginSeq, tokens: [])
            payload.bytes.reserveCapacity(Int(message.bytes))
            var iterator = rc_wire_app_iter()
            rc_wire_app_iter_init(&iterator, base, UInt32(raw.count))
            var bytes: UnsafePointer<UInt8>?
            var length: UInt32 = 0
            while rc_wire_app_next(&iterator, &bytes, &length) {
                payload.lengths.append(length)
                payload.bytes.append(contentsOf: UnsafeBufferPointer(start: bytes, count: Int(length)))
            }
            guard payload.lengths.count == Int(message.count) else { return nil }
            return .init(origin: message.origin, seq: message.seq, clock: Array(clock.prefix(Int(nodes))), payload: payload)
        }
    }
}
