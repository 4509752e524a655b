@testable import RingCastSMR
import Testing

/// Transcript tests of the replicated session table alone: a script of requests, the admission each gets.
@Suite struct SessionTableTests {
    @Test func dedup_duplicateReturnsCachedReply_neverAppliesTwice() {
        var table = SessionTable(limits: .init(sessionsMax: 4, windowMax: 4, timeoutMillis: 1000))
        table.open(id: 7, nowMillis: 0)
        #expect(table.admit(session: 7, sequence: 1, firstUnacknowledged: 1, nowMillis: 1) == .apply)
        // The same request again before its reply was recorded (same batch): apply the batch first.
        #expect(table.admit(session: 7, sequence: 1, firstUnacknowledged: 1, nowMillis: 1) == .duplicateInFlight)
        table.record(session: 7, sequence: 1, reply: [42])
        #expect(table.admit(session: 7, sequence: 1, firstUnacknowledged: 1, nowMillis: 2) == .duplicate(reply: [42]))
        // Pipelined requests 2 and 3, retried out of order after a failover.
        #expect(table.admit(session: 7, sequence: 3, firstUnacknowledged: 1, nowMillis: 3) == .apply)
        table.record(session: 7, sequence: 3, reply: [3])
        #expect(table.admit(session: 7, sequence: 2, firstUnacknowledged: 1, nowMillis: 3) == .apply)
        table.record(session: 7, sequence: 2, reply: [2])
        #expect(table.admit(session: 7, sequence: 3, firstUnacknowledged: 1, nowMillis: 4) == .duplicate(reply: [3]))
        #expect(table.cachedReplies == 3)
    }

    @Test func acknowledgement_forgetsRepliesAndRefusesOldRequests() {
        var table = SessionTable(limits: .init(sessionsMax: 4, windowMax: 4, timeoutMillis: 1000))
        table.open(id: 1, nowMillis: 0)
        for sequence in UInt64(1)...3 {
            #expect(table.admit(session: 1, sequence: sequence, firstUnacknowledged: 1, nowMillis: 0) == .apply)
            table.record(session: 1, sequence: sequence, reply: [UInt8(sequence)])
        }
        // The client has the replies of 1 and 2: they are forgotten; a late copy of 2 is not applied.
        #expect(table.admit(session: 1, sequence: 4, firstUnacknowledged: 3, nowMillis: 0) == .apply)
        table.record(session: 1, sequence: 4, reply: [4])
        #expect(table.cachedReplies == 2)
        #expect(table.admit(session: 1, sequence: 2, firstUnacknowledged: 2, nowMillis: 0) == .alreadyAcknowledged)
        // The window: at most 4 requests at or above firstUnacknowledged (3): 7 is outside and not applied.
        #expect(table.admit(session: 1, sequence: 7, firstUnacknowledged: 3, nowMillis: 0) == .outsideWindow)
        #expect(table.admit(session: 1, sequence: 6, firstUnacknowledged: 3, nowMillis: 0) == .apply)
    }

    @Test func expiry_decidedByOrderedTime_thenRequestsAreRefused() {
        var table = SessionTable(limits: .init(sessionsMax: 4, windowMax: 4, timeoutMillis: 1000))
        table.open(id: 1, nowMillis: 0)
        table.open(id: 2, nowMillis: 0)
        #expect(table.admit(session: 2, sequence: 1, firstUnacknowledged: 1, nowMillis: 900) == .apply)
        table.record(session: 2, sequence: 1, reply: [])
        table.expire(nowMillis: 999)
        #expect(table.count == 2)
        table.expire(nowMillis: 1000) // within the scan interval (timeout / 8) of the last scan: no scan
        #expect(table.count == 2)
        table.expire(nowMillis: 1200)
        #expect(table.count == 1 && !table.contains(1) && table.contains(2))
        #expect(table.expired == 1)
        #expect(table.admit(session: 1, sequence: 1, firstUnacknowledged: 1, nowMillis: 1200) == .unknownSession)
        table.expire(nowMillis: 2000)
        #expect(table.count == 0)
    }

    @Test func bounded_openingBeyondSessionsMaxEvictsLeastRecentlyUsed() {
        var table = SessionTable(limits: .init(sessionsMax: 2, windowMax: 2, timeoutMillis: 1_000_000))
        table.open(id: 10, nowMillis: 5)
        table.open(id: 11, nowMillis: 1)
        #expect(table.admit(session: 11, sequence: 1, firstUnacknowledged: 1, nowMillis: 9) == .apply)
        table.record(session: 11, sequence: 1, reply: [])
        table.open(id: 12, nowMillis: 10) // 10 was used last at 5, 11 at 9: 10 goes
        #expect(table.count == 2 && !table.contains(10) && table.contains(11) && table.contains(12))
        #expect(table.evicted == 1)
    }

    @Test func snapshot_roundTripsAndIsCanonical() throws {
        var table = SessionTable(limits: .init(sessionsMax: 8, windowMax: 4, timeoutMillis: 1000))
        for id in [UInt64(5), 3, 9] {
            table.open(id: id, nowMillis: id)
            #expect(table.admit(session: id, sequence: 1, firstUnacknowledged: 1, nowMillis: id) == .apply)
            table.record(session: id, sequence: 1, reply: [UInt8(id), 1, 2])
        }
        func bytes(_ table: SessionTable) throws -> [UInt8] {
            nonisolated(unsafe) var out: [UInt8] = []
            var writer = SnapshotWriter(chunkBytesMax: 64) { out.append(contentsOf: $0) }
            try table.snapshot(into: &writer)
            try writer.flush()
            return out
        }
        let first = try bytes(table)
        nonisolated(unsafe) var chunks = stride(from: 0, to: first.count, by: 10).map { Array(first[$0..<min($0 + 10, first.count)]) }
        var reader = SnapshotReader { chunks.isEmpty ? nil : chunks.removeFirst() }
        var copy = SessionTable(limits: table.limits)
        try copy.restore(from: &reader)
        #expect(try reader.isAtEnd())
        #expect(try bytes(copy) == first)
        #expect(copy.admit(session: 3, sequence: 1, firstUnacknowledged: 1, nowMillis: 20) == .duplicate(reply: [3, 1, 2]))
    }

    @Test func ringBatch_roundTripsAndRejectsGarbage() throws {
        let batch = RingBatch(replica: 3, stampMillis: 99, entries: [
            .command(session: 1, sequence: 2, firstUnacknowledged: 1, command: [9, 9]),
            .openSession(tag: 4), .barrier(number: 5), .closeSession(session: 6)])
        #expect(try RingBatch.decode(batch.encoded()) == batch)
        #expect(throws: SMRCodecError.self) { try RingBatch.decode(Array(batch.encoded().dropLast())) }
        #expect(throws: SMRCodecError.self) { try RingBatch.decode([2, 0, 0]) }
    }

    @Test func clientFrame_roundTripsAndBoundsLengths() throws {
        let frames: [ClientFrame] = [.hello, .openSession(request: 1),
                                     .command(request: 2, session: 3, sequence: 4, firstUnacknowledged: 1, command: [1, 2]),
                                     .read(request: 5, consistency: .sequential, minIndex: 6, query: [7]),
                                     .reply(request: 8, status: .busy, index: 9, payload: [1]),
                                     .error(code: 1, message: "bad")]
        var assembler = FrameAssembler(frameBytesMax: 128)
        let stream = frames.flatMap { $0.encoded() }
        stream.withUnsafeBytes { assembler.append($0) }
        var decoded: [ClientFrame] = []
        while let body = try assembler.next() { decoded.append(try ClientFrame.decode(body)) }
        #expect(decoded == frames)
        var tooLong = FrameAssembler(frameBytesMax: 16)
        [UInt8]([200, 0, 0, 0, 1, 1]).withUnsafeBytes { tooLong.append($0) }
        #expect(throws: SMRCodecError.self) { _ = try tooLong.next() }
        #expect(throws: SMRCodecError.self) { _ = try ClientFrame.decode([9, 1][...]) }
    }
}
