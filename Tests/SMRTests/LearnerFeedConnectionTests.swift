import RingCast
@testable import RingCastSMR
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue #12: the learner's feed on a connection of its own (``ClientFrame/learnRequestFeedApart``,
/// ``ClientFrame/learnFeed(learner:)``), so that a restore that does not read its copy (idle-class, starved, or as
/// here held at the provider's gate and then paced very slowly) does not leave the feed waiting in the provider's
/// queue. In TransferTests' serialized suite (BulkCluster's ports).
extension TransferTests {
    /// The provider's feed queue for one learner at most 64 KiB, the copy held at the gate while 700 writes are
    /// applied one after the other (about 80 KB of batches: on one connection they would all wait in that queue,
    /// and the learner was dropped, LearnerTests' overflow test of the earlier protocol; apart, the queue holds what
    /// apply queues between two sends, about 2 ms of it), then read at 1 MB/s (2 s)
    /// while a load runs: the feed reaches the learner's stash through its own connection, the provider never drops
    /// it, its queue's peak stays below the bound, and every digest is equal.
    @Test func learnerFeedOnItsOwnConnection_slowRestore_providerQueueStaysSmall_digestsEqual() async throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let cluster = try BulkCluster(size: 3, bulkBytes: 2_000_000)
        defer { cluster.shutdownAll() }
        let gate = SnapshotGate()
        defer { gate.open() }
        let feedBound = 64 << 10
        let provider = try cluster.start(0, initialView: [0, 1], gate: gate) {
            $0.snapshotChunkBytes = 64 << 10
            $0.learnerFeedBytesMax = feedBound
        }
        let other = try cluster.start(1, initialView: [0, 1])
        for replica in [provider, other] { try await replica.group.waitUntilRunning() }

        let learnFrom = [try Address(host: "127.0.0.1", port: provider.clientPort)]
        let joiner = try cluster.start(2, initialView: [0, 1]) {
            $0.learnFrom = learnFrom
            $0.learnerAttemptsMax = 1
            $0.workDirectory = directory.path
            $0.learnerBytesPerSecondMax = 1_000_000
            // The stream waits at the gate while the test writes: no stall timeout meanwhile (a busy machine).
            $0.snapshotStallTimeoutMillis = 120_000
        }
        #expect(try await eventually(20) { gate.entered >= 1 }, "the learner's copy never started streaming")
        let writer = try await cluster.client([1])
        defer { writer.close() }
        try await withDeadline(90) {
            for _ in 0..<700 { _ = try await writer.submit(Counter.Add(delta: 1)) }
        }
        #expect(provider.statistics.learnersDropped == 0, "the learner was dropped while its copy was held")
        #expect(provider.core.lock.withLock { provider.core.learners.count == 1
                    && provider.core.learners.values.allSatisfy(\.attached) },
                "the learner's feed connection is not attached")
        let box = StartedBox()
        box.count.add(700, ordering: .relaxed)
        let stop = StopFlag()
        let load = Task {
            let client = try await cluster.client([0, 1], window: 4)
            defer { client.close() }
            while !stop.isStopped {
                _ = try await client.submit(Counter.Add(delta: 1))
                box.count.add(1, ordering: .relaxed)
            }
        }
        gate.open()
        #expect(try await eventually(40) { joiner.statistics.learnerJoins == 1 }, "the learner never joined")
        try await withDeadline(30) { try await joiner.group.waitUntilRunning(timeout: .seconds(20)) }
        #expect(try await eventually(30) { joiner.statistics.snapshotsRestored == 1 && !joiner.isTransferring },
                "the joiner did not catch up")
        stop.stop()
        try await withDeadline(60) { try await load.value }
        let digests = try await cluster.settledDigests([0, 1, 2])
        #expect(Set(digests.map(\.index)).count == 1, "\(digests)")
        #expect(Set(digests.map(\.digest)).count == 1, "\(digests)")
        #expect(joiner.withMachine { $0.counter.value } == Int64(box.count.load(ordering: .relaxed)))
        let provided = provider.statistics
        #expect(provided.learnersServed == 1 && provided.learnersDropped == 0, "\(provided)")
        #expect(provided.learnerFeedBytesPeak >= 1 && provided.learnerFeedBytesPeak <= UInt64(feedBound),
                "the provider's feed queue peak: \(provided.learnerFeedBytesPeak)")
        let learned = joiner.statistics
        #expect(learned.learnerRestores == 1 && learned.learnerFallbacks == 0 && learned.learnerAttemptsFailed == 0,
                "\(learned)")
        #expect(learned.learnerPacingWaits >= 1, "the learner's restore was not paced")
        #expect(learned.learnerBatchesApplied >= 700)
        // Both connections ended at the provider: its learner is gone.
        #expect(try await eventually(10) { provider.core.lock.withLock { provider.core.learners.isEmpty } })
        #expect(directory.openDescriptors.isEmpty && directory.entries.isEmpty, "\(directory.openDescriptors)")
    }

    /// The provider's side with a learner that takes its id but never opens its feed connection (a raw client): the
    /// batches applied meanwhile fill the feed queue (4 KiB), the provider drops the learner and keeps applying, the
    /// copy's connection ends with a clear error frame, and the id is unknown afterwards; so is an id never given,
    /// and a second feed connection for a learner is refused too.
    @Test func learnerFeed_unattachedLearnerDropped_unknownIdsRefused() async throws {
        let cluster = try BulkCluster(size: 2, bulkBytes: 100_000)
        defer { cluster.shutdownAll() }
        let gate = SnapshotGate()
        defer { gate.open() }
        let provider = try cluster.start(0, initialView: [0, 1], gate: gate) { $0.learnerFeedBytesMax = 4096 }
        let other = try cluster.start(1, initialView: [0, 1])
        for replica in [provider, other] { try await replica.group.waitUntilRunning() }
        let providerClient = try await cluster.client([0])
        defer { providerClient.close() }
        let address = try Address(host: "127.0.0.1", port: provider.clientPort)

        let copy = try Socket.connect(address, timeoutMillis: 2_000)
        defer { close(copy) }
        #expect(Socket.sendAll(copy, ClientFrame.learnRequestFeedApart.encoded()))
        let admitted = readFrames(copy) { !$0.isEmpty }
        guard case let .learnerAdmitted(id)? = admitted.first else {
            Issue.record("no learner id: \(admitted)")
            return
        }
        #expect(try await eventually(20) { gate.entered >= 1 }, "the learner's copy never started streaming")
        // A second learner's feed with an id never given: refused, the connection closed.
        let stranger = try Socket.connect(address, timeoutMillis: 2_000)
        defer { close(stranger) }
        #expect(Socket.sendAll(stranger, ClientFrame.learnFeed(learner: id + 1_000).encoded()))
        let refusal = readFrames(stranger) { _ in false }
        guard case let .error(code, message)? = refusal.last else {
            Issue.record("no error frame: \(refusal)")
            return
        }
        #expect(code == ClientErrorCode.learnRefused.rawValue && message.contains("unknown learner"), "\(message)")

        let before = provider.appliedIndex
        try await withDeadline(30) {
            for _ in 0..<300 { _ = try await providerClient.submit(Counter.Add(delta: 1)) }
        }
        #expect(provider.appliedIndex >= before + 300, "the provider applied while its learner fell behind")
        gate.open()
        #expect(try await eventually(20) { provider.statistics.learnersDropped == 1 }, "the learner was not dropped")
        let copyFrames = readFrames(copy) { frames in
            if case .error = frames.last { return true }
            return false
        }
        guard case let .error(dropCode, dropMessage)? = copyFrames.last else {
            Issue.record("the copy's connection did not end with an error frame: \(copyFrames.suffix(2))")
            return
        }
        #expect(dropCode == ClientErrorCode.learnerDropped.rawValue, "\(dropMessage)")
        #expect(provider.core.lock.withLock { provider.core.learners.isEmpty })
        // The dropped learner's id is unknown now.
        let late = try Socket.connect(address, timeoutMillis: 2_000)
        defer { close(late) }
        #expect(Socket.sendAll(late, ClientFrame.learnFeed(learner: id).encoded()))
        guard case let .error(lateCode, _)? = readFrames(late, until: { _ in false }).last else {
            Issue.record("a dropped learner's feed was not refused")
            return
        }
        #expect(lateCode == ClientErrorCode.learnRefused.rawValue)
        // The provider serves on.
        _ = try await withDeadline(20) { try await providerClient.submit(Counter.Add(delta: 1)) }
    }

    /// A learner's id admits one feed connection: a second one naming it is refused, the first goes on.
    @Test func learnerFeed_secondConnectionForAnIdRefused() async throws {
        let cluster = try BulkCluster(size: 2, bulkBytes: 100_000)
        defer { cluster.shutdownAll() }
        let gate = SnapshotGate()
        defer { gate.open() }
        let provider = try cluster.start(0, initialView: [0, 1], gate: gate)
        let other = try cluster.start(1, initialView: [0, 1])
        for replica in [provider, other] { try await replica.group.waitUntilRunning() }
        let address = try Address(host: "127.0.0.1", port: provider.clientPort)
        let copy = try Socket.connect(address, timeoutMillis: 2_000)
        defer { close(copy) }
        #expect(Socket.sendAll(copy, ClientFrame.learnRequestFeedApart.encoded()))
        guard case let .learnerAdmitted(id)? = readFrames(copy, until: { !$0.isEmpty }).first else {
            Issue.record("no learner id")
            return
        }
        let feed = try Socket.connect(address, timeoutMillis: 2_000)
        defer { close(feed) }
        #expect(Socket.sendAll(feed, ClientFrame.learnFeed(learner: id).encoded()))
        #expect(try await eventually(10) {
            provider.core.lock.withLock { provider.core.learners[id]?.attached == true }
        })
        let second = try Socket.connect(address, timeoutMillis: 2_000)
        defer { close(second) }
        #expect(Socket.sendAll(second, ClientFrame.learnFeed(learner: id).encoded()))
        guard case let .error(code, message)? = readFrames(second, until: { _ in false }).last else {
            Issue.record("a second feed connection was not refused")
            return
        }
        #expect(code == ClientErrorCode.learnRefused.rawValue && message.contains("already"), "\(message)")
        #expect(provider.core.lock.withLock { provider.core.learners[id]?.attached == true }, "the first feed went on")
    }
}
