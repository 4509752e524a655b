import CRingCast
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Truncation at every length, the stream-length answer on partial input, and the encoders' refusals.

@Suite struct WireTruncationTests {
    /// Every strict prefix of a valid frame is "need more" for frame_length and TRUNCATED for decode.
    /// (Prefixes are views of one buffer, not copies, so frames of hundreds of KiB stay cheap.)
    @Test func everyPrefixOfEveryFrameIsIncomplete() throws {
        var generator = FrameGenerator(seed: 41)
        var checked = 0
        while checked < 60 {
            let bytes = Wire.encode(generator.frame()).bytes
            guard bytes.count <= 20_000 else { continue } // past the prefix every cut is alike
            checked += 1
            try bytes.withUnsafeBufferPointer { whole in
                for length in 0..<whole.count {
                    let prefix = UnsafeBufferPointer(rebasing: whole[..<length])
                    #expect(Wire.decode(prefix).map(\.spec) == .failure(WireError(RC_WIRE_E_TRUNCATED)))
                    let answer = try Wire.frameLength(bytes[..<length]).get()
                    #expect(answer == (length < Int(RC_WIRE_PREFIX_BYTES) ? nil : UInt32(whole.count)))
                }
            }
        }
    }

    /// The harder variant: cut the frame, then make its lengths and checksums agree with the cut.
    /// Only the rules inside the frame can refuse it now, and every cut of a LCR frame must be refused
    /// (a CONTROL body is opaque, so a shorter one is simply a shorter body).
    @Test(arguments: [UInt8(1), 2, 3])
    func everyResealedPrefixIsRefused(type: UInt8) throws {
        var generator = FrameGenerator(seed: 43 + UInt64(type))
        var checked = 0
        while checked < 40 {
            let bytes = Wire.encode(generator.frame(type: type)).bytes
            guard bytes.count <= 2_000 else { continue }
            checked += 1
            for length in 0..<bytes.count {
                var prefix = Array(bytes[..<length])
                Wire.reseal(&prefix)
                guard case .failure(let error) = Wire.decode(prefix) else {
                    Issue.record("a \(length)-byte cut of a \(bytes.count)-byte frame decoded")
                    continue
                }
                #expect(error.code < 0)
            }
        }
    }
}

@Suite struct WireEncoderTests {
    private static let message = MessageSpec(origin: 1, seq: 4, burstSize: 0, clock: [2, 4, 0], apps: [[7, 7], [8]])

    @Test func hopEncoderRefusesWhatTheDecoderWould() {
        func result(_ edit: (inout FrameSpec) -> Void, bodyBytes: UInt32 = 0) -> Int32 {
            var spec = FrameSpec(type: Wire.ack, viewId: 1, nodes: 3, sender: 0, acks: [Ack(origin: 2, seq: 1)])
            edit(&spec)
            var out = [UInt8](repeating: 0, count: Int(RC_WIRE_HOP_MAX))
            return Wire.encodeHop(spec, bodyBytes: bodyBytes, into: &out)
        }
        #expect(result { _ in } == Int32(Wire.hopFixedBytes + Wire.ackBytes))
        #expect(result { $0.type = 0 } == RC_WIRE_E_TYPE.rawValue)
        #expect(result { $0.type = 9 } == RC_WIRE_E_TYPE.rawValue)
        #expect(result { $0.nodes = 0 } == RC_WIRE_E_NODES.rawValue)
        #expect(result { $0.nodes = Wire.nodesMax + 1 } == RC_WIRE_E_NODES.rawValue)
        #expect(result { $0.sender = 3 } == RC_WIRE_E_SENDER.rawValue)
        #expect(result { $0.acks = [] } == RC_WIRE_E_ACK_COUNT.rawValue)
        #expect(result { $0.acks = (0..<4).map { _ in Ack(origin: 0, seq: 1) } } == RC_WIRE_E_ACK_COUNT.rawValue)
        #expect(result { $0.type = Wire.heartbeat } == RC_WIRE_E_ACK_COUNT.rawValue)
        #expect(result { $0.acks[0].origin = 3 } == RC_WIRE_E_ACK_ORIGIN.rawValue)
        #expect(result { $0.acks = [Ack(origin: 1, seq: 1), Ack(origin: 1, seq: 2)] } == RC_WIRE_E_ACK_ORIGIN.rawValue)
        #expect(result { $0.acks[0].seq = 0 } == RC_WIRE_E_ACK_SEQ.rawValue)
        #expect(result({ _ in }, bodyBytes: 1) == RC_WIRE_E_FRAME_LENGTH.rawValue)
        #expect(result({ $0.type = Wire.data }, bodyBytes: 31) == RC_WIRE_E_FRAME_LENGTH.rawValue)
        #expect(result({ $0.type = Wire.data }, bodyBytes: RC_WIRE_MESSAGE_MAX + 1) == RC_WIRE_E_FRAME_LENGTH.rawValue)
    }

    @Test func hopEncoderNeedsRoomForTheWholeHeader() {
        let spec = FrameSpec(type: Wire.ack, viewId: 1, nodes: 3, sender: 0, acks: [Ack(origin: 2, seq: 1)])
        var small = [UInt8](repeating: 0, count: Wire.hopFixedBytes + Wire.ackBytes - 1)
        #expect(Wire.encodeHop(spec, bodyBytes: 0, into: &small) == -ENOBUFS)
        #expect(small.allSatisfy { $0 == 0 }) // nothing written on refusal
    }

    @Test func messageHeaderEncoderRules() {
        func result(_ edit: (inout MessageSpec) -> Void, nodes: UInt32 = 3) -> Int32 {
            var message = Self.message
            edit(&message)
            return Wire.encodeMessageHeaderResult(message, nodes: nodes).0
        }
        #expect(result { _ in } == Int32(Wire.messageFixedBytes + 3 * 8 + 2 * 4))
        #expect(result({ _ in }, nodes: 0) == -EINVAL)
        #expect(result { $0.origin = 3 } == RC_WIRE_E_ORIGIN.rawValue)
        #expect(result { $0.seq = 0; $0.clock[1] = 0 } == RC_WIRE_E_SEQ.rawValue)
        #expect(result { $0.clock[1] = 5 } == RC_WIRE_E_SEQ.rawValue)
        #expect(result { $0.apps = [] } == RC_WIRE_E_APP_COUNT.rawValue)
        let bytes = Wire.encodeMessageHeaderResult(Self.message, nodes: 3, bytesOverride: 4).0
        #expect(bytes == -EINVAL) // lengths sum to 3, not 4
        let small = Wire.encodeMessageHeaderResult(Self.message, nodes: 3, capacity: 32 + 24 + 7).0
        #expect(small == -ENOBUFS)
    }

    @Test func everyErrorHasItsOwnName() {
        let codes = (1000...1018).map { Int32(-$0) } + [-EINVAL, -ENOBUFS]
        let names = codes.map { String(cString: rc_wire_error_string($0)) }
        #expect(Set(names).count == codes.count)
        #expect(!names.contains("unknown wire error"))
        #expect(String(cString: rc_wire_error_string(-1019)) == "unknown wire error")
        #expect(String(cString: rc_wire_error_string(0)) == "success")
    }
}
