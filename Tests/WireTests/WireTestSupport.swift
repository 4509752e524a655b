import CRingCast

// Helpers shared by the wire codec tests: a seeded generator, frame descriptions in plain Swift,
// an encoder that assembles a frame from separate pieces the way the engine gathers iovecs, and a
// decoder that copies every decoded field (and the pointer offsets) out of the C structs.

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny seeded generator so a failing case can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// One cumulative ACK as plain values.
struct Ack: Equatable {
    var origin: UInt32
    var seq: UInt64
}

/// One LCR message block as plain values.
struct MessageSpec: Equatable {
    var origin: UInt32
    var seq: UInt64
    var burstSize: UInt32
    var clock: [UInt64]
    var apps: [[UInt8]]
}

/// A whole frame as plain values.
struct FrameSpec: Equatable {
    var type: UInt8
    var viewId: UInt64
    var nodes: UInt32
    var sender: UInt32
    var acks: [Ack]
    var message: MessageSpec?
    var controlBody: [UInt8] = []
}

/// The pieces of an encoded frame, before and after gathering.
struct EncodedFrame {
    var hop: [UInt8]
    var messageHeader: [UInt8]
    var payloads: [[UInt8]]
    var controlBody: [UInt8]

    /// The frame as a gather send would put it on the wire: iov[0] hop, iov[1] header, iov[2+i] payloads.
    var bytes: [UInt8] { hop + messageHeader + payloads.flatMap { $0 } + controlBody }
}

/// A decoded frame, copied out of the C structs; offsets are relative to the start of the input.
struct DecodedFrame: Equatable {
    var frameBytes: UInt32
    var spec: FrameSpec
    var bodyOffset: Int?
    var bodyBytes: UInt32
    var appOffsets: [Int]
}

enum Wire {
    static let data = UInt8(RC_WIRE_TYPE_DATA.rawValue)
    static let ack = UInt8(RC_WIRE_TYPE_ACK.rawValue)
    static let heartbeat = UInt8(RC_WIRE_TYPE_HEARTBEAT.rawValue)
    static let control = UInt8(RC_WIRE_TYPE_CONTROL.rawValue)
    static let nodesMax = UInt32(RC_LCR_NODES_MAX)
    static let hopFixedBytes = Int(RC_WIRE_HOP_FIXED_BYTES)
    static let messageFixedBytes = Int(RC_WIRE_MESSAGE_FIXED_BYTES)
    static let ackBytes = Int(RC_WIRE_ACK_BYTES)

    /// Encodes `spec` with the C encoders into separate buffers. Traps on an encoder error.
    static func encode(_ spec: FrameSpec) -> EncodedFrame {
        var header: [UInt8] = []
        var payloads: [[UInt8]] = []
        if let message = spec.message {
            header = encodeMessageHeader(message, nodes: spec.nodes)
            payloads = message.apps
        }
        let bodyBytes = header.count + payloads.reduce(0) { $0 + $1.count } + spec.controlBody.count
        var hop = [UInt8](repeating: 0, count: Int(RC_WIRE_HOP_MAX))
        let written = encodeHop(spec, bodyBytes: UInt32(bodyBytes), into: &hop)
        precondition(written > 0, "hop encode failed: \(String(cString: rc_wire_error_string(written)))")
        hop.removeSubrange(Int(written)...)
        return EncodedFrame(hop: hop, messageHeader: header, payloads: payloads, controlBody: spec.controlBody)
    }

    /// Calls rc_wire_hop_encode; returns its result (bytes written or an error).
    static func encodeHop(_ spec: FrameSpec, bodyBytes: UInt32, into out: inout [UInt8]) -> Int32 {
        let acks = spec.acks.map { rc_lcr_ack(origin: $0.origin, seq: $0.seq) }
        return acks.withUnsafeBufferPointer { acksPointer in
            var hop = rc_wire_hop(
                type: spec.type, view_id: spec.viewId, nodes: spec.nodes, sender: spec.sender,
                ack_count: UInt32(acks.count), acks: acksPointer.baseAddress, body_bytes: bodyBytes)
            let capacity = out.count
            return out.withUnsafeMutableBufferPointer { rc_wire_hop_encode($0.baseAddress, capacity, &hop) }
        }
    }

    /// Calls rc_wire_message_header_encode into a buffer of `capacity` bytes; returns (result, bytes).
    static func encodeMessageHeaderResult(
        _ message: MessageSpec, nodes: UInt32, capacity: Int = Int(RC_WIRE_MESSAGE_HEADER_MAX),
        bytesOverride: UInt64? = nil
    ) -> (Int32, [UInt8]) {
        var out = [UInt8](repeating: 0, count: max(capacity, 1))
        let lengths = message.apps.map { UInt32($0.count) }
        let bytes = bytesOverride ?? lengths.reduce(0) { $0 + UInt64($1) }
        let result = message.clock.withUnsafeBufferPointer { clock in
            lengths.withUnsafeBufferPointer { lengthsPointer in
                var lcr = rc_lcr_message()
                lcr.origin = message.origin
                lcr.seq = message.seq
                lcr.burst_size = message.burstSize
                lcr.count = UInt32(message.apps.count)
                lcr.bytes = bytes
                lcr.clock = clock.baseAddress
                return out.withUnsafeMutableBufferPointer {
                    rc_wire_message_header_encode($0.baseAddress, capacity, nodes, &lcr, lengthsPointer.baseAddress)
                }
            }
        }
        if result > 0 { out.removeSubrange(Int(result)...) }
        return (result, out)
    }

    static func encodeMessageHeader(_ message: MessageSpec, nodes: UInt32) -> [UInt8] {
        let (result, header) = encodeMessageHeaderResult(message, nodes: nodes)
        precondition(result > 0, "header encode failed: \(String(cString: rc_wire_error_string(result)))")
        return header
    }

    /// Decodes `bytes` with rc_wire_decode and walks the application messages; returns the C result.
    static func decode(_ bytes: [UInt8]) -> Result<DecodedFrame, WireError> {
        bytes.withUnsafeBufferPointer { decode($0) }
    }

    static func decode(_ input: UnsafeBufferPointer<UInt8>) -> Result<DecodedFrame, WireError> {
        var frame = rc_wire_frame()
        var acks = [rc_lcr_ack](repeating: rc_lcr_ack(), count: Int(RC_LCR_NODES_MAX))
        var clock = [UInt64](repeating: 0, count: Int(RC_LCR_NODES_MAX))
        let result = acks.withUnsafeMutableBufferPointer { acksPointer in
            clock.withUnsafeMutableBufferPointer { clockPointer in
                let rc = rc_wire_decode(input.baseAddress, input.count, &frame, acksPointer.baseAddress,
                                        clockPointer.baseAddress)
                if rc == 0 {
                    // The C struct points at these arrays: check that, then read through the pointers.
                    precondition(frame.lcr.acks == UnsafePointer(acksPointer.baseAddress))
                    if frame.lcr.has_message {
                        precondition(frame.lcr.message.clock == UnsafePointer(clockPointer.baseAddress))
                    }
                }
                return rc
            }
        }
        guard result == 0 else { return .failure(WireError(code: result)) }
        return .success(copyOut(frame, acks: acks, clock: clock, input: input))
    }

    private static func copyOut(
        _ frame: rc_wire_frame, acks: [rc_lcr_ack], clock: [UInt64], input: UnsafeBufferPointer<UInt8>
    ) -> DecodedFrame {
        let base = input.baseAddress!
        var spec = FrameSpec(
            type: frame.type, viewId: frame.view_id, nodes: frame.nodes, sender: frame.sender,
            acks: acks.prefix(Int(frame.lcr.ack_count)).map { Ack(origin: $0.origin, seq: $0.seq) },
            message: nil)
        var appOffsets: [Int] = []
        let bodyOffset = frame.body.map { $0 - base }
        if frame.lcr.has_message {
            let message = frame.lcr.message
            var apps: [[UInt8]] = []
            var iter = rc_wire_app_iter()
            rc_wire_app_iter_init(&iter, frame.body, frame.body_bytes)
            var bytes: UnsafePointer<UInt8>? = nil
            var length: UInt32 = 0
            while rc_wire_app_next(&iter, &bytes, &length) {
                appOffsets.append(bytes! - base)
                apps.append(Array(UnsafeBufferPointer(start: bytes, count: Int(length))))
            }
            precondition(apps.count == Int(message.count))
            precondition(UInt64(apps.reduce(0) { $0 + $1.count }) == message.bytes)
            spec.message = MessageSpec(
                origin: message.origin, seq: message.seq, burstSize: message.burst_size,
                clock: Array(clock.prefix(Int(frame.nodes))), apps: apps)
        } else if frame.type == control, let body = frame.body {
            spec.controlBody = Array(UnsafeBufferPointer(start: body, count: Int(frame.body_bytes)))
        }
        return DecodedFrame(frameBytes: frame.frame_bytes, spec: spec, bodyOffset: bodyOffset,
                            bodyBytes: frame.body_bytes, appOffsets: appOffsets)
    }

    /// rc_wire_frame_length as a Swift value: nil for need-more, the length, or an error.
    static func frameLength(_ bytes: ArraySlice<UInt8>) -> Result<UInt32?, WireError> {
        var length: UInt32 = 0
        let rc = bytes.withUnsafeBufferPointer { rc_wire_frame_length($0.baseAddress, $0.count, &length) }
        if rc < 0 { return .failure(WireError(code: rc)) }
        return .success(rc == 1 ? length : nil)
    }

    /// Recomputes frame_bytes, block_bytes and both checksums after a test edited a frame, so that the
    /// edit itself (not a stale length or checksum) decides the outcome. Does what fits in `bytes`.
    static func reseal(_ bytes: inout [UInt8], fixLengths: Bool = true) {
        if fixLengths && bytes.count >= 4 { store32(&bytes, at: 0, UInt32(bytes.count)) }
        guard bytes.count >= hopFixedBytes else { return }
        let hopBytes = hopFixedBytes + ackBytes * Int(load16(bytes, at: Int(RC_WIRE_HOP_OFFSET_ACK_COUNT)))
        guard hopBytes <= bytes.count else { return }
        let hopSum = fnv(bytes[0..<24] + bytes[hopFixedBytes..<hopBytes])
        store64(&bytes, at: Int(RC_WIRE_HOP_OFFSET_CHECKSUM), hopSum)
        guard bytes[Int(RC_WIRE_HOP_OFFSET_TYPE)] == data, bytes.count >= hopBytes + messageFixedBytes else {
            return
        }
        if fixLengths { store32(&bytes, at: hopBytes, UInt32(bytes.count - hopBytes)) }
        let nodes = Int(load16(bytes, at: hopBytes + Int(RC_WIRE_MESSAGE_OFFSET_NODES)))
        let apps = Int(load32(bytes, at: hopBytes + Int(RC_WIRE_MESSAGE_OFFSET_APP_COUNT)))
        let headerEnd = hopBytes + messageFixedBytes + 8 * nodes + 4 * apps
        guard headerEnd <= bytes.count else { return }
        let blockSum = fnv(bytes[hopBytes..<(hopBytes + 24)] + bytes[(hopBytes + messageFixedBytes)..<headerEnd])
        store64(&bytes, at: hopBytes + Int(RC_WIRE_MESSAGE_OFFSET_CHECKSUM), blockSum)
    }

    /// FNV-1a 64 written out in Swift, independent of the C implementation under test.
    static func fnv<C: Collection<UInt8>>(_ bytes: C) -> UInt64 {
        var state: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            state ^= UInt64(byte)
            state = state &* 0x100_0000_01b3
        }
        return state
    }

    static func load16(_ bytes: [UInt8], at offset: Int) -> UInt16 {
        UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
    }

    static func load32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(bytes[offset + $1]) << (8 * $1) }
    }

    static func store16(_ bytes: inout [UInt8], at offset: Int, _ value: UInt16) {
        for i in 0..<2 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    static func store32(_ bytes: inout [UInt8], at offset: Int, _ value: UInt32) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    static func store64(_ bytes: inout [UInt8], at offset: Int, _ value: UInt64) {
        for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }
}

/// A negative result of the codec, printable by name.
struct WireError: Error, Equatable, CustomStringConvertible {
    var code: Int32
    var description: String { "\(code) (\(String(cString: rc_wire_error_string(code))))" }

    init(code: Int32) { self.code = code }
    init(_ error: rc_wire_error) { code = error.rawValue }
}

/// Random valid frames: every type, many n, ACK counts, application counts and sizes.
struct FrameGenerator {
    var random: SplitMix64

    init(seed: UInt64) { random = SplitMix64(seed: seed) }

    mutating func frame(nodes fixedNodes: UInt32? = nil, type fixedType: UInt8? = nil) -> FrameSpec {
        let nodes = fixedNodes ?? [1, 2, 3, 5, 8, 17, 64].randomElement(using: &random)!
        let type = fixedType ?? [Wire.data, Wire.data, Wire.data, Wire.ack, Wire.heartbeat, Wire.control]
            .randomElement(using: &random)!
        var spec = FrameSpec(
            type: type, viewId: random.next(), nodes: nodes,
            sender: UInt32.random(in: 0..<nodes, using: &random), acks: [], message: nil)
        if type == Wire.data || type == Wire.ack {
            let lowest: UInt32 = type == Wire.ack ? 1 : 0
            let count = UInt32.random(in: lowest...nodes, using: &random)
            let origins = Array(0..<nodes).shuffled(using: &random).prefix(Int(count))
            spec.acks = origins.map { Ack(origin: $0, seq: UInt64.random(in: 1...UInt64.max, using: &random)) }
        }
        if type == Wire.data { spec.message = message(nodes: nodes) }
        if type == Wire.control { spec.controlBody = bytes(count: Int.random(in: 0...300, using: &random)) }
        return spec
    }

    mutating func message(nodes: UInt32) -> MessageSpec {
        let origin = UInt32.random(in: 0..<nodes, using: &random)
        var clock = (0..<nodes).map { _ in UInt64.random(in: 0...1_000_000, using: &random) }
        let seq = UInt64.random(in: 1...UInt64.max, using: &random)
        clock[Int(origin)] = seq
        let appCount = [1, 1, 2, 3, 10, 100].randomElement(using: &random)!
        let apps = (0..<appCount).map { _ in
            bytes(count: [0, 1, 7, 100, 1500, 10_000].randomElement(using: &random)!)
        }
        return MessageSpec(origin: origin, seq: seq, burstSize: UInt32.random(in: 0...8, using: &random),
                           clock: clock, apps: apps)
    }

    mutating func bytes(count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        for start in stride(from: 0, to: count, by: 8) {
            let word = random.next()
            for i in start..<min(start + 8, count) { out[i] = UInt8(truncatingIfNeeded: word >> (8 * (i - start))) }
        }
        return out
    }
}
