@testable import RingCastSMR
import Testing

/// The apply loop's decoding of a delivered ring batch (entries whose commands are slices of the batch's bytes)
/// reads what ``RingBatch/decode(_:)`` reads, and refuses what it refuses, leaving nothing to apply.
@Suite struct RingBatchSliceTests {
    static func copied(_ entry: RingEntrySlice) -> RingEntry {
        switch entry {
        case let .command(session, sequence, firstUnacknowledged, command):
            .command(session: session, sequence: sequence, firstUnacknowledged: firstUnacknowledged,
                     command: Array(command))
        case let .openSession(tag): .openSession(tag: tag)
        case let .barrier(number): .barrier(number: number)
        case let .closeSession(session): .closeSession(session: session)
        }
    }

    @Test func slices_readWhatTheBatchHolds_refuseWhatDecodeRefuses() throws {
        let batch = RingBatch(replica: 3, stampMillis: 99, entries: [
            .command(session: 5, sequence: 2, firstUnacknowledged: 1, command: [1, 2, 3]),
            .openSession(tag: 8), .barrier(number: 4), .closeSession(session: 5),
            .command(session: 6, sequence: 1, firstUnacknowledged: 1, command: []),
        ])
        let bytes = batch.encoded()
        var entries: [RingEntrySlice] = [.barrier(number: 1)]  // emptied first
        let header = try RingBatch.decode(bytes, into: &entries)
        #expect(header.replica == 3 && header.stampMillis == 99)
        #expect(entries.map(Self.copied) == batch.entries)
        // Truncated, a wrong version, trailing bytes, an unknown kind: refused like decode, and no entry is left.
        let bad: [[UInt8]] = [Array(bytes.dropLast()), [2, 0, 0], bytes + [0], Array(bytes.prefix(15)) + [1, 0, 9]]
        for input in bad {
            #expect(throws: SMRCodecError.self) { try RingBatch.decode(input) }
            #expect(throws: SMRCodecError.self) { try RingBatch.decode(input, into: &entries) }
            #expect(entries.isEmpty)
        }
    }
}
