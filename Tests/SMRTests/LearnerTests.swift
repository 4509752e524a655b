import RingCast
@testable import RingCastSMR
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue #12, Done-when 4: a joiner catches up as a learner outside the view first, then joins (Learner.swift,
/// LearnerFeed.swift). In TransferTests' serialized suite (BulkCluster's ports).
extension TransferTests {
    private func clientAddress(_ replica: Replica<BulkCounter>) throws -> Address {
        try Address(host: "127.0.0.1", port: replica.clientPort)
    }

    /// At load: the learner restores the provider's copy, applies its feed, joins, applies the feed up to the cut
    /// and its own deliveries after it. Every digest equal, the joiner's counter is every write, and the learner
    /// neither fell back nor pulled the transfer's snapshot (declined).
    @Test func learner_catchesUpAtLoadThenJoins_digestsEqual() async throws {
        let cluster = try BulkCluster(size: 3, bulkBytes: 200_000)
        defer { cluster.shutdownAll() }
        let provider = try cluster.start(0, initialView: [0, 1]) { $0.snapshotChunkBytes = 16 << 10 }
        let other = try cluster.start(1, initialView: [0, 1])
        for replica in [provider, other] { try await replica.group.waitUntilRunning() }
        let total = 1_200
        let box = StartedBox()
        let writes = incrementLoad(total: total, box: box) { try await cluster.client([0, 1], window: 4) }
        #expect(try await eventually(20) { box.count.load(ordering: .relaxed) >= 100 })

        let learnFrom = [try clientAddress(provider)]
        let joiner = try cluster.start(2, initialView: [0, 1]) { $0.learnFrom = learnFrom }
        #expect(try await eventually(30) { joiner.statistics.learnerJoins == 1 }, "the learner never joined")
        try await withDeadline(30) { try await joiner.group.waitUntilRunning(timeout: .seconds(20)) }
        #expect(try await eventually(30) { joiner.statistics.snapshotsRestored == 1 && !joiner.isTransferring },
                "the joiner did not catch up")
        try await withDeadline(60) { try await writes.value }
        let digests = try await cluster.settledDigests([0, 1, 2])
        #expect(Set(digests.map(\.index)).count == 1, "\(digests)")
        #expect(Set(digests.map(\.digest)).count == 1, "\(digests)")
        #expect(joiner.withMachine { $0.counter.value } == Int64(total))
        let learned = joiner.statistics
        #expect(learned.learnerRestores == 1 && learned.learnerFallbacks == 0 && learned.learnerAttemptsFailed == 0)
        #expect(learned.learnerBatchesApplied >= 1, "the learner applied its feed")
        let provided = provider.statistics
        #expect(provided.learnersServed == 1 && provided.learnersDropped == 0)
        #expect(provided.learnerBatchesFed >= 1)
        // The group's transfer (provider 0, the lowest old member) was declined, not pulled nor left to expire.
        #expect(try await eventually(10) { provider.statistics.transfersDeclined == 1 })
        #expect(provider.statistics.transfersExpired == 0)
        // The joiner serves like the others.
        let joinerClient = try await cluster.client([2])
        defer { joinerClient.close() }
        let written = try await withDeadline(20) { try await joinerClient.submit(Counter.Add(delta: 1)).value }
        #expect(written == Int64(total + 1))
    }

    /// The earlier protocol (``ClientFrame/learnRequest``: the feed between the copy's chunks, on one connection),
    /// which a provider still serves, from a raw client: the provider's feed queue for the learner overflows while
    /// its copy is held at the gate and the load goes on; the provider drops the learner with a clear error frame
    /// and keeps applying (its own client's writes are acknowledged meanwhile). (A learner of this version sends
    /// its feed apart: LearnerFeedConnectionTests.)
    @Test func learnerFeedOverflow_providerDropsTheLearnerAndKeepsApplying() async throws {
        let cluster = try BulkCluster(size: 2, bulkBytes: 100_000)
        defer { cluster.shutdownAll() }
        let gate = SnapshotGate()
        defer { gate.open() }
        let provider = try cluster.start(0, initialView: [0, 1], gate: gate) { $0.learnerFeedBytesMax = 4096 }
        let other = try cluster.start(1, initialView: [0, 1])
        for replica in [provider, other] { try await replica.group.waitUntilRunning() }
        let providerClient = try await cluster.client([0])
        defer { providerClient.close() }

        let learner = try Socket.connect(try clientAddress(provider), timeoutMillis: 2_000)
        defer { close(learner) }
        #expect(Socket.sendAll(learner, ClientFrame.learnRequest.encoded()))
        #expect(try await eventually(20) { gate.entered >= 1 }, "the learner's copy never started streaming")
        // Its feed goes out on its one connection: a feed connection naming its id (the first, 1) is refused.
        let intruder = try Socket.connect(try clientAddress(provider), timeoutMillis: 2_000)
        defer { close(intruder) }
        #expect(provider.core.lock.withLock { provider.core.learners.keys.sorted() } == [1])
        #expect(Socket.sendAll(intruder, ClientFrame.learnFeed(learner: 1).encoded()))
        guard case let .error(intruderCode, _)? = readFrames(intruder, until: { _ in false }).last else {
            Issue.record("a feed connection for a learner fed on its one connection was not refused")
            return
        }
        #expect(intruderCode == ClientErrorCode.learnRefused.rawValue)
        let before = provider.appliedIndex
        try await withDeadline(30) {
            for _ in 0..<300 { _ = try await providerClient.submit(Counter.Add(delta: 1)) }
        }
        #expect(provider.appliedIndex >= before + 300, "the provider applied while its learner fell behind")
        #expect(provider.statistics.learnersServed == 1)
        gate.open()
        #expect(try await eventually(20) { provider.statistics.learnersDropped == 1 }, "the learner was not dropped")
        let frames = readFrames(learner) { frames in
            if case .error = frames.last { return true }
            return false
        }
        guard case let .error(code, message)? = frames.last else {
            Issue.record("no error frame: \(frames.suffix(2))")
            return
        }
        #expect(code == ClientErrorCode.learnerDropped.rawValue && message.contains("fell behind"), "\(message)")
        #expect(frames.contains { if case .snapshotChunk = $0 { true } else { false } }, "the copy came on this connection")
        #expect(provider.core.lock.withLock { provider.core.learners.isEmpty })
        _ = try await withDeadline(20) { try await providerClient.submit(Counter.Add(delta: 1)) }
    }

    /// The provider stops while it streams the learner's copy (paced): the learner's attempt fails, it learns from
    /// the next provider, joins, and ends with the group's state — no hang.
    @Test func learnerProviderStopsDuringPhaseOne_learnerRetriesAnotherProvider() async throws {
        let cluster = try BulkCluster(size: 4, bulkBytes: 300_000)
        defer { cluster.shutdownAll() }
        let first = try cluster.start(0, initialView: [0, 1, 2]) {
            $0.snapshotChunkBytes = 8 << 10
            $0.snapshotBytesPerSecondMax = 100_000 // 3 s for the bulk
        }
        let second = try cluster.start(1, initialView: [0, 1, 2])
        let third = try cluster.start(2, initialView: [0, 1, 2])
        for replica in [first, second, third] { try await replica.group.waitUntilRunning() }
        let client = try await cluster.client([1])
        defer { client.close() }
        try await withDeadline(30) {
            for _ in 0..<100 { _ = try await client.submit(Counter.Add(delta: 1)) }
        }

        let learnFrom = [try clientAddress(first), try clientAddress(second)]
        let joiner = try cluster.start(3, initialView: [0, 1, 2]) { $0.learnFrom = learnFrom }
        #expect(try await eventually(20) { first.statistics.learnersServed == 1 }, "the learner never reached provider 0")
        try await Task.sleep(for: .milliseconds(300))
        first.shutdown()
        #expect(try await eventually(30) { joiner.statistics.learnerRestores == 1 }, "the learner did not retry")
        #expect(joiner.statistics.learnerAttemptsFailed == 1)
        try await withDeadline(40) { try await joiner.group.waitUntilRunning(timeout: .seconds(30)) }
        #expect(try await eventually(30) { joiner.statistics.snapshotsRestored == 1 && !joiner.isTransferring })
        try await withDeadline(30) {
            for _ in 0..<100 { _ = try await client.submit(Counter.Add(delta: 1)) }
        }
        let digests = try await cluster.settledDigests([1, 2, 3])
        #expect(Set(digests.map(\.index)).count == 1, "\(digests)")
        #expect(Set(digests.map(\.digest)).count == 1, "\(digests)")
        #expect(joiner.withMachine { $0.counter.value } == 200)
        #expect(joiner.statistics.learnerFallbacks == 0)
    }

    /// Shutdown while the learner restores its copy (held at the provider's gate) and its feed thread spills the
    /// feed (a 4 KiB memory bound, 120 writes meanwhile): it returns, no transfer thread is left, the spill file is
    /// gone, both connections ended (the provider forgot the learner); the learner never started its group member.
    @Test func shutdownDuringLearnerPhaseOne_returnsAndLeavesNoThread() async throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let cluster = try BulkCluster(size: 3, bulkBytes: 100_000)
        defer { cluster.shutdownAll() }
        let gate = SnapshotGate()
        defer { gate.open() }
        let provider = try cluster.start(0, initialView: [0, 1], gate: gate)
        let other = try cluster.start(1, initialView: [0, 1])
        for replica in [provider, other] { try await replica.group.waitUntilRunning() }
        let learnFrom = [try clientAddress(provider)]
        let joiner = try cluster.start(2, initialView: [0, 1]) {
            $0.learnFrom = learnFrom
            $0.workDirectory = directory.path
            $0.learnerStashMemoryBytes = 4_096
            $0.snapshotStallTimeoutMillis = 120_000
        }
        #expect(try await eventually(20) { gate.entered >= 1 }, "the learner's copy never started streaming")
        let writer = try await cluster.client([1])
        defer { writer.close() }
        try await withDeadline(30) {
            for _ in 0..<120 { _ = try await writer.submit(Counter.Add(delta: 1)) }
        }
        #expect(try await eventually(20) { !directory.openDescriptors.isEmpty }, "the feed thread never spilled")
        #expect(joiner.transferThreadsRunning == 1)
        try await withDeadline(10) { joiner.shutdown() }
        #expect(joiner.transferThreadsRunning == 0)
        #expect(directory.openDescriptors.isEmpty && directory.entries.isEmpty, "\(directory.openDescriptors)")
        #expect(joiner.statistics.learnerJoins == 0 && joiner.statistics.learnerRestores == 0)
        #expect(provider.group.currentView?.members.sorted() == [0, 1], "the learner never joined")
        gate.open()
        #expect(try await eventually(20) { provider.core.lock.withLock { provider.core.learners.isEmpty } },
                "the provider still feeds the learner that stopped")
    }

    /// The feed queue's bound: a batch that does not fit drops the learner and empties the queue; one batch larger
    /// than the bound is admitted into an empty queue.
    @Test func learnerFeed_boundDropsAndEmpties() {
        var feed = LearnerFeed(bytesMax: 1_000)
        feed.append([UInt8](repeating: 1, count: 2_000), index: 1)
        #expect(feed.dropped == nil && feed.entries.count == 1, "one large batch into an empty queue")
        #expect(feed.takeAll().map(\.index) == [1])
        feed.append([UInt8](repeating: 2, count: 500), index: 2)
        feed.append([UInt8](repeating: 3, count: 500), index: 3)
        #expect(feed.dropped != nil, "the second batch did not fit")
        #expect(feed.entries.isEmpty && feed.bytes == 0)
        feed.append([UInt8](repeating: 4, count: 10), index: 4)
        #expect(feed.entries.isEmpty, "nothing is queued for a dropped learner")
    }
}
