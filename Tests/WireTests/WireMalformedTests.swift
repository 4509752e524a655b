import CRingCast
import Testing

// Every rule of the layout (rc_wire.h) has an input that breaks it and the error it must produce.
// Edited frames are resealed (lengths and checksums recomputed) unless the test is about those, so
// that the rule under test, not a stale checksum, is what the decoder trips over.

/// A DATA frame of a 5-process ring with 2 ACKs and applications of 3, 5 and 0 bytes.
///   hop header 0..<52 (ACKs at 32 and 42), block at 52: clock at 84, length table at 124,
///   payloads at 136..<144.
private let sample = FrameSpec(
    type: Wire.data, viewId: 9, nodes: 5, sender: 2,
    acks: [Ack(origin: 4, seq: 8), Ack(origin: 1, seq: 3)],
    message: MessageSpec(origin: 3, seq: 6, burstSize: 1, clock: [1, 2, 3, 6, 5],
                         apps: [[1, 2, 3], [4, 5, 6, 7, 8], []]))
private let block = 52
private let clockAt = block + 32
private let lengthsAt = clockAt + 40

private func sampleBytes(_ spec: FrameSpec = sample) -> [UInt8] { Wire.encode(spec).bytes }

private func ackFrame() -> [UInt8] {
    sampleBytes(FrameSpec(type: Wire.ack, viewId: 9, nodes: 5, sender: 2, acks: [Ack(origin: 0, seq: 1)]))
}

private func heartbeat() -> [UInt8] {
    sampleBytes(FrameSpec(type: Wire.heartbeat, viewId: 9, nodes: 5, sender: 2, acks: []))
}

/// Applies `edit`, reseals unless told not to, and expects `error` from the decoder.
private func expectError(
    _ error: rc_wire_error, from original: [UInt8] = sampleBytes(), reseal: Bool = true,
    fixLengths: Bool = true, sourceLocation: SourceLocation = #_sourceLocation,
    _ edit: (inout [UInt8]) -> Void
) {
    var bytes = original
    edit(&bytes)
    if reseal { Wire.reseal(&bytes, fixLengths: fixLengths) }
    let result = Wire.decode(bytes)
    #expect(result.map(\.spec) == .failure(WireError(error)), sourceLocation: sourceLocation)
}

@Suite struct WireMalformedTests {
    @Test func sampleIsValidAndHasTheDocumentedLayout() throws {
        let bytes = sampleBytes()
        #expect(bytes.count == 144)
        #expect(try Wire.decode(bytes).get().spec == sample)
        #expect(Wire.load32(bytes, at: lengthsAt) == 3)
    }

    @Test func hopHeaderPrefixRules() {
        expectError(RC_WIRE_E_MAGIC) { $0[4] ^= 0xFF }
        expectError(RC_WIRE_E_MAGIC) { $0[5] = 0 }
        expectError(RC_WIRE_E_VERSION) { $0[6] = 0 }
        expectError(RC_WIRE_E_VERSION) { $0[6] = 2 }
        for type: UInt8 in [0, 5, 16, 255] {
            expectError(RC_WIRE_E_TYPE) { $0[7] = type }
        }
    }

    @Test func frameLengthRules() {
        expectError(RC_WIRE_E_FRAME_LENGTH, reseal: false) { Wire.store32(&$0, at: 0, 31) }
        expectError(RC_WIRE_E_FRAME_LENGTH, reseal: false) { Wire.store32(&$0, at: 0, 0) }
        expectError(RC_WIRE_E_FRAME_LENGTH, reseal: false) { Wire.store32(&$0, at: 0, RC_WIRE_FRAME_MAX + 1) }
        expectError(RC_WIRE_E_FRAME_LENGTH, reseal: false) { Wire.store32(&$0, at: 0, .max) }
        // An ACK frame with one byte more than its ACKs.
        expectError(RC_WIRE_E_FRAME_LENGTH, from: ackFrame()) { $0.append(0) }
        // A heartbeat that claims 3 ACKs it has no room for.
        expectError(RC_WIRE_E_FRAME_LENGTH, from: heartbeat()) {
            $0[7] = Wire.ack
            Wire.store16(&$0, at: 12, 3)
        }
        // DATA whose body is too short for even the fixed message header.
        expectError(RC_WIRE_E_FRAME_LENGTH) { $0.removeSubrange((block + 20)...) }
        // Frames shorter than they say.
        expectError(RC_WIRE_E_TRUNCATED, reseal: false) { $0.removeLast() }
        expectError(RC_WIRE_E_TRUNCATED, reseal: false) { $0.removeSubrange(7...) }
        expectError(RC_WIRE_E_TRUNCATED, reseal: false) { $0 = [] }
    }

    @Test func flagsAreReservedInVersion1() {
        expectError(RC_WIRE_E_FLAGS) { Wire.store16(&$0, at: 14, 1) }
        expectError(RC_WIRE_E_FLAGS) { Wire.store16(&$0, at: 14, 0x8000) }
    }

    @Test func nodeAndSenderRules() {
        expectError(RC_WIRE_E_NODES) { Wire.store16(&$0, at: 8, 0) }
        expectError(RC_WIRE_E_NODES) { Wire.store16(&$0, at: 8, UInt16(RC_LCR_NODES_MAX) + 1) }
        expectError(RC_WIRE_E_NODES) { Wire.store16(&$0, at: 8, .max) }
        expectError(RC_WIRE_E_SENDER) { Wire.store16(&$0, at: 10, 5) }
        expectError(RC_WIRE_E_SENDER) { Wire.store16(&$0, at: 10, .max) }
    }

    @Test func ackCountRules() {
        // More ACKs than processes (room made for them, so only the count is wrong).
        expectError(RC_WIRE_E_ACK_COUNT) {
            $0.insert(contentsOf: [UInt8](repeating: 1, count: 4 * Wire.ackBytes), at: 52)
            Wire.store16(&$0, at: 12, 6)
        }
        expectError(RC_WIRE_E_ACK_COUNT) { Wire.store16(&$0, at: 12, .max) }
        // An ACK frame without ACKs; a heartbeat or control frame with them.
        expectError(RC_WIRE_E_ACK_COUNT, from: heartbeat()) { $0[7] = Wire.ack }
        expectError(RC_WIRE_E_ACK_COUNT, from: ackFrame()) { $0[7] = Wire.heartbeat }
        expectError(RC_WIRE_E_ACK_COUNT, from: ackFrame()) { $0[7] = Wire.control }
    }

    @Test func ackEntryRules() {
        expectError(RC_WIRE_E_ACK_ORIGIN) { Wire.store16(&$0, at: 32, 5) }
        expectError(RC_WIRE_E_ACK_ORIGIN) { Wire.store16(&$0, at: 42, .max) }
        expectError(RC_WIRE_E_ACK_ORIGIN) { Wire.store16(&$0, at: 42, 4) } // two ACKs for origin 4
        expectError(RC_WIRE_E_ACK_SEQ) { Wire.store64(&$0, at: 44, 0) }
    }

    @Test func checksumsCatchFlippedBits() {
        expectError(RC_WIRE_E_HOP_CHECKSUM, reseal: false) { $0[16] ^= 1 }   // view id
        expectError(RC_WIRE_E_HOP_CHECKSUM, reseal: false) { $0[44] ^= 0x80 } // an ACK's seq
        expectError(RC_WIRE_E_HOP_CHECKSUM, reseal: false) { $0[24] ^= 1 }   // the checksum itself
        expectError(RC_WIRE_E_BLOCK_CHECKSUM, reseal: false) { $0[block + 16] ^= 4 }  // burst_size
        expectError(RC_WIRE_E_BLOCK_CHECKSUM, reseal: false) { $0[clockAt] ^= 1 }     // C_m[0]
        expectError(RC_WIRE_E_BLOCK_CHECKSUM, reseal: false) { $0[block + 24] ^= 1 }  // the checksum
        // Swapping two lengths keeps their sum, so only the checksum over the table sees it.
        expectError(RC_WIRE_E_BLOCK_CHECKSUM, reseal: false) {
            Wire.store32(&$0, at: lengthsAt, 5)
            Wire.store32(&$0, at: lengthsAt + 4, 3)
        }
    }

    /// Payload bytes are TCP's to protect (rc_wire.h): a flipped payload byte decodes, changed.
    @Test func payloadBytesAreNotChecksummed() throws {
        var bytes = sampleBytes()
        bytes[136] ^= 0xFF
        let decoded = try Wire.decode(bytes).get()
        #expect(decoded.spec.message?.apps[0] == [0xFE, 2, 3])
    }

    @Test func messageBlockLengthRules() {
        // block_bytes disagreeing with the bytes the hop header leaves for it.
        expectError(RC_WIRE_E_BLOCK_LENGTH, fixLengths: false) { Wire.store32(&$0, at: block, 93) }
        expectError(RC_WIRE_E_BLOCK_LENGTH, fixLengths: false) { Wire.store32(&$0, at: block, 91) }
        expectError(RC_WIRE_E_BLOCK_LENGTH, fixLengths: false) { Wire.store32(&$0, at: block, 0) }
        expectError(RC_WIRE_E_BLOCK_LENGTH, fixLengths: false) { Wire.store32(&$0, at: block, .max) }
        // A length table that would end past the block.
        expectError(RC_WIRE_E_BLOCK_LENGTH) { Wire.store32(&$0, at: block + 20, RC_LCR_BATCH_COUNT_MAX) }
        // A clock for 64 processes in a block that has room for 5 (hop header agreeing on n = 64).
        expectError(RC_WIRE_E_BLOCK_LENGTH) {
            Wire.store16(&$0, at: 8, 64)
            Wire.store16(&$0, at: block + 4, 64)
        }
    }

    @Test func messageFieldRules() {
        expectError(RC_WIRE_E_NODES_MISMATCH) { Wire.store16(&$0, at: block + 4, 4) }
        expectError(RC_WIRE_E_NODES) { Wire.store16(&$0, at: block + 4, 0) }
        expectError(RC_WIRE_E_NODES) { Wire.store16(&$0, at: block + 4, UInt16(RC_LCR_NODES_MAX) + 1) }
        expectError(RC_WIRE_E_ORIGIN) { Wire.store16(&$0, at: block + 6, 5) }
        expectError(RC_WIRE_E_SEQ) {
            Wire.store64(&$0, at: block + 8, 0)
            Wire.store64(&$0, at: clockAt + 3 * 8, 0)
        }
        expectError(RC_WIRE_E_SEQ) { Wire.store64(&$0, at: block + 8, 7) } // C_m[3] is 6
        expectError(RC_WIRE_E_SEQ) { Wire.store64(&$0, at: clockAt + 3 * 8, 5) }
        expectError(RC_WIRE_E_APP_COUNT) { Wire.store32(&$0, at: block + 20, 0) }
        expectError(RC_WIRE_E_APP_COUNT) { Wire.store32(&$0, at: block + 20, RC_LCR_BATCH_COUNT_MAX + 1) }
        expectError(RC_WIRE_E_APP_COUNT) { Wire.store32(&$0, at: block + 20, .max) }
    }

    @Test func applicationLengthRules() {
        expectError(RC_WIRE_E_APP_LENGTH) { Wire.store32(&$0, at: lengthsAt, 4) }       // overruns by 1
        expectError(RC_WIRE_E_APP_LENGTH) { Wire.store32(&$0, at: lengthsAt + 8, 1) }   // the last, too
        expectError(RC_WIRE_E_APP_LENGTH) { Wire.store32(&$0, at: lengthsAt, 2) }       // underruns by 1
        expectError(RC_WIRE_E_APP_LENGTH) { Wire.store32(&$0, at: lengthsAt, .max) }
        expectError(RC_WIRE_E_APP_LENGTH) { $0.append(0) }                              // a stray byte
        expectError(RC_WIRE_E_APP_LENGTH) { $0.removeLast() }                           // a missing byte
        // Lengths that each fit but wrap a 32-bit sum back to the right total.
        expectError(RC_WIRE_E_APP_LENGTH) {
            Wire.store32(&$0, at: lengthsAt, 0x8000_0000)
            Wire.store32(&$0, at: lengthsAt + 4, 0x8000_0000)
            Wire.store32(&$0, at: lengthsAt + 8, 8)
        }
    }
}
