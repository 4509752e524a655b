import RingCast
@testable import RingCastSMR
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

final class StopFlag: Sendable {
    let stopped = Atomic<Bool>(false)
    func stop() { stopped.store(true, ordering: .relaxed) }
    var isStopped: Bool { stopped.load(ordering: .relaxed) }
}

/// A load that runs until stopped: 4 lanes through one client; `box` counts the acknowledged increments.
private func runningLoad(box: StartedBox, stop: StopFlag,
                         connect: @escaping @Sendable () async throws -> CounterClient) -> Task<Void, Error> {
    Task {
        let client = try await connect()
        defer { client.close() }
        try await withThrowingTaskGroup(of: Void.self) { lanes in
            for _ in 0..<4 {
                lanes.addTask {
                    while !stop.isStopped {
                        _ = try await client.submit(Counter.Add(delta: 1))
                        box.count.add(1, ordering: .relaxed)
                    }
                }
            }
            try await lanes.waitForAll()
        }
    }
}

/// Issue #12, Done-when 4: a *paced* learner whose feed backlog spills to a file in its work directory
/// (FeedStash.swift). In TransferTests' serialized suite (BulkCluster's ports).
extension TransferTests {
    /// The provider's stream to the learner is held at its gate while 120 writes are applied: their batches reach
    /// the learner's feed thread on its own connection, before its restore has read a chunk, so at least 120 batches (≥ 64 bytes each in the stash's count) meet a 4 KiB memory bound: the rest
    /// goes to the spill file, whatever the machine's speed. The learner reads the copy (2 MB) at 4 MB/s, the load
    /// goes on. Every digest equal, the counter is every acknowledged write, no fallback, no spill file left open.
    @Test func pacedLearner_feedSpillsToAFile_digestsEqualAndTheFileIsGone() async throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let cluster = try BulkCluster(size: 3, bulkBytes: 2_000_000)
        defer { cluster.shutdownAll() }
        let gate = SnapshotGate()
        defer { gate.open() }
        let provider = try cluster.start(0, initialView: [0, 1], gate: gate) { $0.snapshotChunkBytes = 64 << 10 }
        let other = try cluster.start(1, initialView: [0, 1])
        for replica in [provider, other] { try await replica.group.waitUntilRunning() }
        let box = StartedBox()
        let stop = StopFlag()
        let load = runningLoad(box: box, stop: stop) { try await cluster.client([0, 1], window: 4) }
        #expect(try await eventually(20) { box.count.load(ordering: .relaxed) >= 100 })

        let learnFrom = [try Address(host: "127.0.0.1", port: provider.clientPort)]
        let joiner = try cluster.start(2, initialView: [0, 1]) {
            $0.learnFrom = learnFrom
            $0.workDirectory = directory.path
            $0.learnerStashMemoryBytes = 4_096
            $0.learnerBytesPerSecondMax = 4_000_000
            // The stream waits at the gate while the test writes: no stall timeout meanwhile (a busy machine).
            $0.snapshotStallTimeoutMillis = 120_000
        }
        #expect(try await eventually(20) { gate.entered >= 1 }, "the learner's copy never started streaming")
        let writer = try await cluster.client([1])
        defer { writer.close() }
        try await withDeadline(30) {
            for _ in 0..<120 { _ = try await writer.submit(Counter.Add(delta: 1)) }
        }
        box.count.add(120, ordering: .relaxed)
        gate.open()
        #expect(try await eventually(30) { joiner.statistics.learnerJoins == 1 }, "the learner never joined")
        try await withDeadline(30) { try await joiner.group.waitUntilRunning(timeout: .seconds(20)) }
        #expect(try await eventually(30) { joiner.statistics.snapshotsRestored == 1 && !joiner.isTransferring },
                "the joiner did not catch up")
        stop.stop()
        try await withDeadline(60) { try await load.value }
        let digests = try await cluster.settledDigests([0, 1, 2])
        #expect(Set(digests.map(\.index)).count == 1, "\(digests)")
        #expect(Set(digests.map(\.digest)).count == 1, "\(digests)")
        #expect(joiner.withMachine { $0.counter.value } == Int64(box.count.load(ordering: .relaxed)))
        let learned = joiner.statistics
        #expect(learned.learnerRestores == 1 && learned.learnerFallbacks == 0 && learned.learnerAttemptsFailed == 0,
                "\(learned)")
        #expect(learned.learnerSpilledBatches >= 1 && learned.learnerSpillBytesPeak >= 1, "the feed never spilled")
        #expect(learned.learnerStashBytesPeak <= 4_096 + UInt64(1 << 20), "the in-memory stash exceeded its bound")
        #expect(learned.learnerPacingWaits >= 1, "the learner's restore was not paced")
        #expect(directory.openDescriptors.isEmpty, "the spill file outlived the join: \(directory.openDescriptors)")
        #expect(directory.entries.isEmpty, "\(directory.entries)")
    }

    /// The spill limit (0: nothing may spill) ends the learner's only attempt with a clear error — 120 batches
    /// queued at the provider's gate meet a 4 KiB memory bound during the restore — and the learner falls back to
    /// the ordinary join and ends with the group's state; the spill file is gone after the failed attempt.
    @Test func learnerSpillLimit_attemptFailsAndTheOrdinaryJoinFollows() async throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let cluster = try BulkCluster(size: 3, bulkBytes: 2_000_000)
        defer { cluster.shutdownAll() }
        let gate = SnapshotGate()
        defer { gate.open() }
        let provider = try cluster.start(0, initialView: [0, 1], gate: gate) { $0.snapshotChunkBytes = 64 << 10 }
        let other = try cluster.start(1, initialView: [0, 1])
        for replica in [provider, other] { try await replica.group.waitUntilRunning() }

        let learnFrom = [try Address(host: "127.0.0.1", port: provider.clientPort)]
        let joiner = try cluster.start(2, initialView: [0, 1]) {
            $0.learnFrom = learnFrom
            $0.learnerAttemptsMax = 1
            $0.workDirectory = directory.path
            $0.learnerStashMemoryBytes = 4_096
            $0.learnerSpillBytesMax = 0
            $0.learnerBytesPerSecondMax = 4_000_000
            // The stream waits at the gate while the test writes: no stall timeout meanwhile (a busy machine).
            $0.snapshotStallTimeoutMillis = 120_000
        }
        #expect(try await eventually(20) { gate.entered >= 1 }, "the learner's copy never started streaming")
        let writer = try await cluster.client([1])
        defer { writer.close() }
        try await withDeadline(30) {
            for _ in 0..<120 { _ = try await writer.submit(Counter.Add(delta: 1)) }
        }
        gate.open()
        #expect(try await eventually(30) { joiner.statistics.learnerFallbacks == 1 }, "the learner did not fall back")
        #expect(joiner.statistics.learnerAttemptsFailed == 1 && joiner.statistics.learnerRestores == 0,
                "\(joiner.statistics)")
        #expect(directory.openDescriptors.isEmpty, "the spill file outlived the failed attempt")
        try await withDeadline(30) { try await joiner.group.waitUntilRunning(timeout: .seconds(20)) }
        #expect(try await eventually(30) { joiner.statistics.snapshotsRestored == 1 && !joiner.isTransferring },
                "the ordinary join did not catch up")
        try await withDeadline(30) {
            for _ in 0..<100 { _ = try await writer.submit(Counter.Add(delta: 1)) }
        }
        let digests = try await cluster.settledDigests([0, 1, 2])
        #expect(Set(digests.map(\.index)).count == 1, "\(digests)")
        #expect(Set(digests.map(\.digest)).count == 1, "\(digests)")
        #expect(joiner.withMachine { $0.counter.value } == 220)
        #expect(directory.openDescriptors.isEmpty && directory.entries.isEmpty)
    }
}
