import CRingCastCore
import Glibc
import RingCastChain
import Testing

/// The switching composer (spec §2.3, thesis §3.2): the client's collector turns 2f+1 ABORTs into the next instance's
/// init history, and a replica's AbstractReplica enters it, monotonically, through its instance factory.
@Suite struct ChainAbstractTests {
    @Test func collectorBuildsTheNextInitHistory() throws {
        let (x, aborts) = try ChainInitTests.abortedInstance(f: 1)
        let client = try x.client(0)
        var collector = AbstractAbortCollector(f: 1, checkpointInterval: 4)
        #expect(throws: AbstractAbortRejection.mismatch) {
            _ = try collector.add(aborts[0], client: 0, timestamp: 98, keyRing: client.keyRing)
        }
        var unsigned = aborts[0]
        unsigned.entries[0].timestamp += 1
        #expect(throws: AbstractAbortRejection.signature) {
            _ = try collector.add(unsigned, client: 0, timestamp: 99, keyRing: client.keyRing)
        }
        var gap = aborts[0]
        gap.entries.remove(at: 1)
        #expect(throws: AbstractAbortRejection.shape) {
            _ = try collector.add(gap.resigned(with: x.cores[0].keyRing), client: 0, timestamp: 99, keyRing: client.keyRing)
        }
        #expect(try collector.add(aborts[0], client: 0, timestamp: 99, keyRing: client.keyRing) == nil)
        #expect(throws: AbstractAbortRejection.duplicate) {
            _ = try collector.add(aborts[0], client: 0, timestamp: 99, keyRing: client.keyRing)
        }
        #expect(try collector.add(aborts[1], client: 0, timestamp: 99, keyRing: client.keyRing) == nil)
        let ih = try #require(try collector.add(aborts[2], client: 0, timestamp: 99, keyRing: client.keyRing))
        #expect(ih.instance == 2 && ih.proof.count == 3 && collector.instance == 2)
        #expect(ih.base * 4 + UInt64(ih.entries.count) == 15, "every committed request is in it")
        // The pending requests: one IH holds (resubmitting it would execute it twice), one it does not.
        let last = try #require(ih.entries.last)
        let inIH = ChainRequest(client: last.client, timestamp: last.timestamp, op: Array("c\(last.client)-t\(last.timestamp)".utf8))
        let fresh = ChainRequest(client: 0, timestamp: 50, op: Array("new".utf8))
        let plan = AbstractResubmission.plan(pending: [inIH, fresh], initHistory: ih, digest: client.digest)
        #expect(plan.resubmit == [fresh])
        #expect(plan.inInitHistory.map(\.sn) == [last.sn])
    }

    @Test func replicaEntersMonotonicallyThroughItsFactory() throws {
        let (x, aborts) = try ChainInitTests.abortedInstance(f: 1)
        let ih = try ChainInitTests.initHistory(x, aborts)
        let settings = ChainCore.settings(f: 1, self: 2, clients: 4, batchCount: 3, checkpointInterval: 4, historyMax: 16,
                                          crypto: rc_crypto())
        let replica = try AbstractReplica(factory: ChainInstanceFactory(settings: settings, keyRing: x.keys.keyRing(for: .replica(2))))
        #expect(replica.currentNumber == 1 && replica.currentInitHistory == nil)
        let first = try #require(replica.current as? ChainCore)
        var forged = ih
        forged.entries.removeLast()
        #expect(throws: AbstractEnterError.refused(.mismatch)) { try replica.enter(forged) }
        #expect(replica.currentNumber == 1 && !first.stopped, "a refused IH changes nothing")
        let second = try #require(try replica.enter(ih) as? ChainCore)
        #expect(replica.currentNumber == 2 && second.lastSN == 15 && replica.currentInitHistory == ih)
        #expect(first.stopped && first.stopReason == RC_CHAIN_STOP_LEFT, "the instance left is abandoned")
        #expect(replica.instance(1) === first, "kept for late PANICs")
        #expect(throws: AbstractEnterError.stale(current: 2, offered: 2)) { try replica.enter(ih) }
        // A late client of instance 1 learns from the ABORT there (D13) that it must switch.
        let late = try first.stoppedAbort(client: 1, timestamp: 7).get()
        #expect(late.instance == 1 && late.nextInstance == 2)
    }
}
