import ChainBFT
import Foundation
import RingCastChain
import Testing

/// The switching seam (spec §2.3, P3): on 2f+1 ABORTs the client hands the abort history and next(i) to its
/// ``ChainInstanceSwitch``. Abort Order over real sockets: every request the client committed is in that history,
/// at its sequence number, in order.
@Suite(.serialized)
struct ChainSwitchTests {
    final class RecordingSwitch: ChainInstanceSwitch, @unchecked Sendable {
        private let lock = NSLock()
        private var seen: [(from: UInt64, to: UInt64, history: ChainAbortHistory)] = []
        func switchInstance(from instance: UInt64, to next: UInt64, abortHistory: ChainAbortHistory) -> Bool {
            lock.withLock { seen.append((instance, next, abortHistory)) }
            return false // no next instance here: the client fails its pending requests
        }
        var calls: [(from: UInt64, to: UInt64, history: ChainAbortHistory)] { lock.withLock { seen } }
    }

    @Test func section11_4_abortHistoryHoldsEveryCommittedRequest() async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try TestCluster(f: 1)
        defer { cluster.stop() }
        let recorder = RecordingSwitch()
        var settings = ChainClient.Settings(f: 1, client: 0, replicas: cluster.endpoints)
        // Long enough that a loaded machine (CI's 2 cores, parallel suites) does not panic the client before the
        // crash, which would switch early and leave fewer committed requests than the test counts on.
        settings.timeoutNanos = 2_000_000_000
        settings.checkpointInterval = 16
        settings.switchInstance = recorder
        let client = try ChainClient(settings: settings, keyRing: try cluster.keys.keyRing(for: .client(0)))
        try client.start()
        defer { client.close() }
        for k in 0..<20 { _ = try await put(client, "k\(k % 4)", "v\(k)") }
        cluster.replicas[1].stop()
        await #expect(throws: ChainBFTError.self) { _ = try await put(client, "late", "x") }
        let calls = recorder.calls
        try #require(calls.count == 1)
        #expect(calls[0].from == 1 && calls[0].to == 2)
        let history = calls[0].history
        // CHK = 16: checkpoint 1 (sn 16) may be stable or tentative; either way the history starts at a checkpoint
        // vouched for by f+1 ABORTs and continues with every later committed request.
        let first = history.base * 16 + 1
        #expect(history.base <= 1)
        let committedAfterBase = history.entries.filter { $0.sn <= 20 }
        #expect(committedAfterBase.count == Int(20 - first + 1), "\(history.entries.map(\.sn))")
        for (offset, entry) in committedAfterBase.enumerated() {
            #expect(entry.sn == first + UInt64(offset))
            #expect(entry.client == 0)
        }
        #expect(zip(committedAfterBase, committedAfterBase.dropFirst()).allSatisfy { $0.timestamp < $1.timestamp })
    }
}
