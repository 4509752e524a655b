import CRingCast
import Testing

// Round trips, zero-copy forwarding and stream framing of the LCR frames (thesis §2.4.2, Fig. 2.5:
// a message ⟨m, p_j, C_m⟩ and ACKs travel from each process to its successor).

@Suite struct WireRoundTripTests {
    @Test(arguments: [UInt64(1), 2, 3, 4])
    func randomFramesDecodeToWhatWasEncoded(seed: UInt64) throws {
        var generator = FrameGenerator(seed: seed)
        for _ in 0..<150 {
            let spec = generator.frame()
            let bytes = Wire.encode(spec).bytes
            let decoded = try Wire.decode(bytes).get()
            #expect(decoded.spec == spec)
            #expect(decoded.frameBytes == UInt32(bytes.count))
        }
    }

    @Test(arguments: [UInt32(1), 2, 3, 5, 16, 64])
    func everyRingSizeWithFullAckListsRoundTrips(nodes: UInt32) throws {
        var generator = FrameGenerator(seed: UInt64(nodes))
        var spec = generator.frame(nodes: nodes, type: Wire.data)
        spec.acks = (0..<nodes).reversed().map { Ack(origin: $0, seq: UInt64($0) + 1) }
        let decoded = try Wire.decode(Wire.encode(spec).bytes).get()
        #expect(decoded.spec == spec)
        #expect(decoded.spec.acks.count == Int(nodes))
    }

    @Test func largestBatchRoundTrips() throws {
        let apps = (0..<Int(RC_LCR_BATCH_COUNT_MAX)).map { [UInt8(truncatingIfNeeded: $0)] }
        let message = MessageSpec(origin: 0, seq: 9, burstSize: 1, clock: [9, 0, 4], apps: apps)
        let spec = FrameSpec(type: Wire.data, viewId: 1, nodes: 3, sender: 2, acks: [], message: message)
        let encoded = Wire.encode(spec)
        #expect(encoded.messageHeader.count == Int(Wire.messageFixedBytes) + 3 * 8 + apps.count * 4)
        #expect(try Wire.decode(encoded.bytes).get().spec == spec)
    }

    /// A frame is decoded from the start of a longer buffer without reading past its own end.
    @Test func bytesAfterTheFrameAreNotPartOfIt() throws {
        var generator = FrameGenerator(seed: 13)
        for _ in 0..<50 {
            let spec = generator.frame()
            let bytes = Wire.encode(spec).bytes
            let decoded = try Wire.decode(bytes + [0xFF, 0x00, 0x52, 0x43]).get()
            #expect(decoded.spec == spec)
            #expect(decoded.frameBytes == UInt32(bytes.count))
        }
    }

    /// The format has one encoding per value, so encoding the decoded fields gives the same bytes.
    @Test func encodingIsCanonical() throws {
        var generator = FrameGenerator(seed: 11)
        for _ in 0..<200 {
            let bytes = Wire.encode(generator.frame()).bytes
            let decoded = try Wire.decode(bytes).get()
            #expect(Wire.encode(decoded.spec).bytes == bytes)
        }
    }

    /// §2.4.2 forwarding with zero copies: the block is a pointer into the input, and each application
    /// message is a pointer into the block, in order and back to back.
    @Test func decodedMessagePointsIntoTheInput() throws {
        var generator = FrameGenerator(seed: 21)
        for _ in 0..<100 {
            let spec = generator.frame(type: Wire.data)
            let encoded = Wire.encode(spec)
            let bytes = encoded.bytes
            let decoded = try Wire.decode(bytes).get()
            let bodyOffset = try #require(decoded.bodyOffset)
            #expect(bodyOffset == encoded.hop.count)
            #expect(bodyOffset + Int(decoded.bodyBytes) == bytes.count)
            var expectedOffset = encoded.hop.count + encoded.messageHeader.count
            for (offset, app) in zip(decoded.appOffsets, spec.message!.apps) {
                #expect(offset == expectedOffset)
                expectedOffset += app.count
            }
            #expect(expectedOffset == bytes.count)
        }
    }

    /// A successor forwards the block bytes untouched behind its own new hop header (other sender,
    /// its own ACKs); the successor's successor decodes the same message.
    @Test func forwardingNewHopHeaderWithTheSameBlockKeepsTheMessage() throws {
        var generator = FrameGenerator(seed: 31)
        for _ in 0..<100 {
            let spec = generator.frame(type: Wire.data)
            let received = Wire.encode(spec).bytes
            let decoded = try Wire.decode(received).get()
            let block = Array(received[decoded.bodyOffset!...])

            var next = spec
            next.sender = (spec.sender + 1) % spec.nodes
            next.acks = [Ack(origin: spec.nodes - 1, seq: 42)]
            var hop = [UInt8](repeating: 0, count: Int(RC_WIRE_HOP_MAX))
            let hopBytes = Wire.encodeHop(next, bodyBytes: decoded.bodyBytes, into: &hop)
            try #require(hopBytes > 0)
            let forwarded = Array(hop[..<Int(hopBytes)]) + block

            let again = try Wire.decode(forwarded).get()
            #expect(again.spec.message == spec.message)
            #expect(again.spec.sender == next.sender)
            #expect(again.spec.acks == next.acks)
        }
    }

    /// The whole-frame encoder needs no contiguous buffer: hop header, message header and each payload
    /// are separate pieces (iovecs), and the block's length counts all of them.
    @Test func ownMessageIsHeaderThenPayloadsByReference() throws {
        let message = MessageSpec(origin: 1, seq: 3, burstSize: 0, clock: [5, 3], apps: [[1, 2, 3], [], [9]])
        let spec = FrameSpec(type: Wire.data, viewId: 77, nodes: 2, sender: 1, acks: [Ack(origin: 0, seq: 5)],
                             message: message)
        let encoded = Wire.encode(spec)
        #expect(encoded.hop.count == Wire.hopFixedBytes + Wire.ackBytes)
        #expect(encoded.messageHeader.count == Wire.messageFixedBytes + 2 * 8 + 3 * 4)
        #expect(Wire.load32(encoded.hop, at: 0) == UInt32(encoded.bytes.count))
        #expect(Wire.load32(encoded.messageHeader, at: 0) == UInt32(encoded.messageHeader.count + 4))
        #expect(Array(encoded.bytes.suffix(4)) == [1, 2, 3, 9])
    }

    /// The layout table of rc_wire.h, byte by byte, with checksums from an independent FNV-1a.
    @Test func heartbeatBytesMatchTheLayoutTable() {
        let spec = FrameSpec(type: Wire.heartbeat, viewId: 0x0102_0304_0506_0708, nodes: 3, sender: 1,
                             acks: [], message: nil)
        let bytes = Wire.encode(spec).bytes
        let fixed: [UInt8] = [32, 0, 0, 0, 0x52, 0x43, 1, 3, 3, 0, 1, 0, 0, 0, 0, 0,
                              8, 7, 6, 5, 4, 3, 2, 1]
        #expect(Array(bytes[0..<24]) == fixed)
        var checksum = [UInt8](repeating: 0, count: 8)
        Wire.store64(&checksum, at: 0, Wire.fnv(fixed))
        #expect(Array(bytes[24..<32]) == checksum)
        #expect(bytes.count == 32)
    }

    @Test func messageBlockBytesMatchTheLayoutTable() {
        let message = MessageSpec(origin: 1, seq: 2, burstSize: 4, clock: [7, 2], apps: [[0xAA]])
        let header = Wire.encodeMessageHeader(message, nodes: 2)
        let fixed: [UInt8] = [53, 0, 0, 0, 2, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0]
        #expect(Array(header[0..<24]) == fixed)
        let table: [UInt8] = [7, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]
        #expect(Array(header[32...]) == table)
        var checksum = [UInt8](repeating: 0, count: 8)
        Wire.store64(&checksum, at: 0, Wire.fnv(fixed + table))
        #expect(Array(header[24..<32]) == checksum)
    }

    /// Published FNV-1a 64 test vectors (draft-eastlake-fnv, appendix C).
    @Test func fnv1a64MatchesPublishedVectors() {
        func hash(_ text: String) -> UInt64 {
            let bytes = Array(text.utf8)
            return bytes.withUnsafeBytes { rc_wire_fnv1a64(RC_WIRE_FNV1A64_BASIS, $0.baseAddress, $0.count) }
        }
        #expect(hash("") == 0xcbf2_9ce4_8422_2325)
        #expect(hash("a") == 0xaf63_dc4c_8601_ec8c)
        #expect(hash("foobar") == 0x8594_4171_f739_67e8)
    }

    /// A stream parser that only ever sees what has arrived: frame_length says "need more" until the
    /// prefix is there and then the exact length; frames come out whole, in order, whatever the chunking.
    @Test(arguments: [1, 3, 7, 64, 1000])
    func streamParsingOnPartialInput(chunkBytes: Int) throws {
        var generator = FrameGenerator(seed: UInt64(chunkBytes))
        let specs = (0..<20).map { _ in generator.frame() }
        let stream = specs.flatMap { Wire.encode($0).bytes }
        var buffered: [UInt8] = []
        var parsed: [FrameSpec] = []
        var position = 0
        while position < stream.count {
            buffered += stream[position..<min(position + chunkBytes, stream.count)]
            position += chunkBytes
            while let length = try Wire.frameLength(buffered[...]).get(), Int(length) <= buffered.count {
                parsed.append(try Wire.decode(Array(buffered[..<Int(length)])).get().spec)
                buffered.removeFirst(Int(length))
            }
        }
        #expect(parsed == specs)
        #expect(buffered.isEmpty)
    }

    @Test func frameLengthAnswersAfterThePrefix() throws {
        var generator = FrameGenerator(seed: 5)
        let bytes = Wire.encode(generator.frame(nodes: 5, type: Wire.data)).bytes
        for available in 0..<Int(RC_WIRE_PREFIX_BYTES) {
            #expect(try Wire.frameLength(bytes[..<available]).get() == nil)
        }
        for available in [8, 9, 31, 32, bytes.count - 1, bytes.count] {
            #expect(try Wire.frameLength(bytes[..<available]).get() == UInt32(bytes.count))
        }
    }
}
