@testable import ChainBFT
import Foundation
import Glibc
import RingCastChain
import RingCastSMR
import Synchronization
import Testing

/// The replica hands consecutive commands to the state machine as one batch per run (ChainReplicaEngine.execute):
/// the replies and the state must be those of applying each command alone in sn order, a run must end at each
/// checkpoint boundary (the rollback log snapshots the state exactly there) and before a query.
@Suite("Chain execution runs") struct ChainExecuteRunTests {
    /// One client's requests are ordered in the order it sent them (one TCP stream to the head, increasing t_c), so
    /// sn = 1 + the submission index, and a reference store applying them one at a time predicts every reply.
    @Test func runsGiveTheRepliesAndStateOfOneByOneExecution() throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try TestCluster(f: 1) // CHK = 16
        defer { cluster.stop() }
        let client = try cluster.client(0, timeoutMillis: 10_000, window: 16)
        defer { client.close() }
        let count = 70
        let queries: Set<Int> = [5, 30, 47, 48, 63]
        func op(_ i: Int) -> [UInt8] {
            queries.contains(i)
                ? ChainOperation.query(TestStore.Query(key: Array(TestStore.appliedKey.utf8)))
                : ChainOperation.command(TestStore.Command.put(key: Array("k\(i % 9)".utf8), value: Array("v\(i)".utf8)))
        }
        // The reference: each command applied alone, with the context the replica gives it (index = sn).
        var reference = TestStore()
        var expected: [TestStore.Output] = []
        for i in 0..<count {
            if queries.contains(i) {
                expected.append(reference.query(TestStore.Query(key: Array(TestStore.appliedKey.utf8))))
            } else {
                var batch = CommandBatch<TestStore.Command>()
                batch.append(.put(key: Array("k\(i % 9)".utf8), value: Array("v\(i)".utf8)),
                             ChainOperation.context(sn: UInt64(i + 1), client: 0, timestamp: 0))
                var outputs: [TestStore.Output] = []
                reference.apply(batch, into: &outputs)
                expected.append(outputs[0])
            }
        }
        let replies = Mutex<[Int: Result<[UInt8], ChainBFTError>]>([:])
        let done = DispatchSemaphore(value: 0)
        for i in 0..<count {
            client.submit(op(i)) { result in
                let all = replies.withLock { $0[i] = result; return $0.count }
                if all == count { done.signal() }
            }
        }
        #expect(done.wait(timeout: .now() + 60) == .success, "not every request completed")
        let outcomes = replies.withLock { $0 }
        for i in 0..<count {
            guard case .success(let bytes)? = outcomes[i] else {
                Issue.record("request \(i): \(String(describing: outcomes[i]))")
                continue
            }
            #expect(try ChainOperation.decodeReply(bytes, as: TestStore.Output.self) == expected[i], "request \(i)")
        }
        let deadline = Date().addingTimeInterval(10)
        while cluster.replicas.contains(where: { $0.statistics.executed < UInt64(count) }), Date() < deadline { usleep(10_000) }
        let commands = UInt64(count - queries.count)
        for replica in cluster.replicas {
            let s = replica.statistics
            #expect(s.executed == UInt64(count))
            // Batched: fewer apply calls than commands. Never across a query (sn 6, 31, 48, 49, 64) or past a
            // checkpoint boundary (sn 16 and 32 are commands): at least the 7 runs 1-5, 7-16, 17-30, 32, 33-47, 50-63,
            // 65-70 (more when the commands arrive in more engine rounds).
            #expect(s.executeRuns < commands, "position \(s.position): \(s.executeRuns) runs for \(commands) commands")
            #expect(s.executeRuns >= 7, "position \(s.position): \(s.executeRuns) runs")
        }
        cluster.stop()
        let digests = cluster.replicas.map(\.statistics.stateDigest)
        #expect(digests.allSatisfy { $0 != nil } && Set(digests).count == 1, "state digests \(digests)")
    }

    /// The rollback log drops the prefix its oldest anchor covers in one move: it stays contiguous from the oldest
    /// anchor on and bounded by anchorsMax · CHK entries, over many checkpoints.
    @Test func rollbackLogStaysContiguousAndBounded() throws {
        var log = ChainRollbackLog(anchorsMax: 3, checkpointInterval: 8, initialSnapshot: [0])
        let digest = ChainDigest(bytes: [UInt8](repeating: 7, count: 32))
        for sn in UInt64(1)...1000 {
            log.record(ChainRollbackLog.Executed(sn: sn, client: 0, timestamp: sn, op: [UInt8](repeating: 1, count: 64),
                                                 reply: [1], requestDigest: digest, historyDigest: digest)) { [UInt8(sn % 251)] }
            #expect(log.log.count <= 3 * 8)
            #expect(log.log.map(\.sn) == Array((log.anchors[0].sn + 1)...sn))
        }
        #expect(log.anchors.map(\.sn) == [984, 992, 1000])
    }
}

/// The replica's store of request bytes by ref (a ring, stragglers in a dictionary) keeps what a dictionary would.
@Suite("Chain op store") struct ChainOpStoreTests {
    @Test func aRequestIsForgottenOnceSentAndExecutedInEitherOrder() {
        var store = ChainOpStore(capacity: 8)
        store.insert(1, ChainStoredOp(op: [1]))
        store.insert(2, ChainStoredOp(op: [2]))
        store.insert(3, ChainStoredOp(op: [3], sent: true)) // an IH body: never sent on
        #expect(store.count == 3 && store.op(1) == [1] && store.op(2) == [2] && store.op(4) == nil)
        store.markSent(1)
        #expect(store.op(1) == [1])
        store.markExecuted(1)
        #expect(store.op(1) == nil && store.count == 2)
        store.markExecuted(2)
        #expect(store.op(2) == [2])
        store.markSent(2)
        #expect(store.op(2) == nil)
        store.markExecuted(3)
        #expect(store.op(3) == nil && store.count == 0)
        store.markSent(99) // unknown: nothing happens
        #expect(store.count == 0)
    }

    /// Against a dictionary as the model: refs in increasing order, each released after a pseudo-random delay, some
    /// held far longer than the ring's capacity (stragglers); every lookup agrees and the counts match.
    @Test func agreesWithADictionaryIncludingStragglers() {
        var store = ChainOpStore(capacity: 16)
        var model: [UInt64: ChainStoredOp] = [:]
        var rng = SystemRandomNumberGenerator()
        var live: [UInt64] = []
        for ref in UInt64(1)...2000 {
            let stored = ChainStoredOp(op: [UInt8(truncatingIfNeeded: ref)])
            store.insert(ref, stored)
            model[ref] = stored
            live.append(ref)
            // Release a few: mostly the oldest, but every 97th ref stays for a long time.
            while live.count > 10 || (live.count > 0 && Bool.random(using: &rng)) {
                let index = live.firstIndex { $0 % 97 != 0 || ref - $0 > 100 } ?? 0
                let done = live.remove(at: index)
                if Bool.random(using: &rng) { store.markSent(done); store.markExecuted(done) } else {
                    store.markExecuted(done); store.markSent(done)
                }
                model[done] = nil
            }
            #expect(store.count == model.count)
            for probe in (ref > 40 ? ref - 40 : 1)...ref { #expect(store.op(probe) == model[probe]?.op, "ref \(probe)") }
        }
        #expect(store.stragglersMoved > 0)
        store.removeAll()
        #expect(store.count == 0 && store.op(2000) == nil)
    }
}
