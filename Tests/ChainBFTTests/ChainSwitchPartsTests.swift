@testable import ChainBFT
import CRingCastCore
import Foundation
import RingCastChain
import RingCastSMR
import Testing

/// The parts of switching below the network: the switching frames' codec and the rollback log (D10).
struct ChainSwitchPartsTests {
    func decode(_ bytes: [UInt8]) throws(ChainWireError) -> ChainFrame {
        let result = bytes.withUnsafeBytes { raw -> Result<ChainFrame, ChainWireError> in
            do throws(ChainWireError) { return .success(try ChainWire.decode(raw, limits: ChainWireLimits())) } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    func digest(_ seed: UInt8) -> ChainDigest { ChainDigest(bytes: (0..<32).map { seed &+ $0 }) }

    @Test func switchingFramesRoundTrip() throws {
        let keys = try ChainKeys.generate(f: 1, clients: 1)
        let entry = ChainAbort.Entry(sn: 17, client: 0, timestamp: 4, requestDigest: digest(1), historyDigest: digest(2))
        // A real signed ABORT, so the proof round-trips with its signature.
        let fixture = try ChainCore(ChainCore.settings(f: 1, self: 1, clients: 1, crypto: rc_crypto()),
                                    keyRing: try keys.keyRing(for: .replica(1)))
        let auth = ChainClientAuthenticator(keyRing: try keys.keyRing(for: .client(0)), f: 1, client: 0)
        guard case .success(let abort) = fixture.panic(try auth.panic(timestamp: 4, replica: 1)) else {
            Issue.record("no ABORT from a fresh core")
            return
        }
        let ih = ChainInitHistory(instance: 2, base: 1, baseDigest: digest(3), entries: [entry], proof: [abort, abort])
        guard case .initHistory(let back) = try decode(ChainWire.encode(.initHistory(ih))) else { Issue.record("not an INIT"); return }
        #expect(back == ih)
        #expect(back.proof[0].verify(with: try keys.keyRing(for: .client(0))))

        var c = rc_chain_fetch()
        c.instance = 2; c.from = 3; c.to = 0; c.sn = 17; c.client = 0; c.timestamp = 4; c.request_digest = digest(1).c
        let fetch = ChainFetchFrame(c)
        guard case .fetch(let f) = try decode(ChainWire.encode(.fetch(fetch))) else { Issue.record("not a FETCH"); return }
        #expect(f == fetch)
        for request in [ChainRequest(client: 0, timestamp: 4, op: [1, 2]), nil] {
            let fetched = ChainFetchedFrame(instance: 2, sn: 17, request: request)
            guard case .fetched(let g) = try decode(ChainWire.encode(.fetched(fetched))) else { Issue.record("not FETCHED"); return }
            #expect(g == fetched)
        }
        let reply = ChainInitReply(instance: 2, replica: 3, client: 0, timestamp: 4, sn: 17, reply: [7], historyDigest: digest(4),
                                   mac: ChainMAC(bytes: [UInt8](repeating: 9, count: 16)))
        guard case .initReply(let r) = try decode(ChainWire.encode(.initReply(reply))) else { Issue.record("not INIT-REPLY"); return }
        #expect(r == reply)
    }

    @Test func anInitHistoryWithAnImpossibleProofCountIsRefused() throws {
        var bytes = ChainWire.encode(.initHistory(ChainInitHistory(instance: 2, base: 0, baseDigest: digest(0), entries: [], proof: [])))
        // The proof count is the frame's last u32: claim a million ABORTs.
        let at = bytes.count - 4
        for k in 0..<4 { bytes[at + k] = UInt8(truncatingIfNeeded: 1_000_000 >> (8 * k)) }
        #expect(throws: ChainWireError.self) { _ = try decode(bytes) }
        var fetched = ChainWire.encode(.fetched(ChainFetchedFrame(instance: 2, sn: 1, request: nil)))
        fetched[fetched.count - 1] = 7
        #expect(throws: ChainWireError.self) { _ = try decode(fetched) }
    }

    func executed(_ sn: UInt64) -> ChainRollbackLog.Executed {
        ChainRollbackLog.Executed(sn: sn, client: UInt32(sn % 2), timestamp: sn, op: [UInt8(sn)], reply: [UInt8(sn), 1],
                                  requestDigest: digest(UInt8(sn)), historyDigest: digest(UInt8(100 + sn)))
    }

    /// D10: the base is reached from the nearest snapshot at or before it and the requests after; bounded to
    /// anchorsMax snapshots; unreachable bases are refused with the reason, nothing changed.
    @Test func rollbackLogPlansAndRefuses() throws {
        var log = ChainRollbackLog(anchorsMax: 2, checkpointInterval: 4, initialSnapshot: [0])
        for sn in UInt64(1)...10 { log.record(executed(sn)) { [UInt8(sn)] } }
        // Anchors kept: sn 4 and 8 (0 dropped beyond anchorsMax); the log holds 5...10.
        #expect(log.anchors.map(\.sn) == [4, 8])
        #expect(log.log.map(\.sn) == Array(5...10))
        let plan = try log.plan(to: 8, baseDigest: digest(108))
        #expect(plan.anchor.sn == 8 && plan.replay.isEmpty && plan.anchor.snapshot == [8])
        #expect(plan.anchor.last[0]?.sn == 8 && plan.anchor.last[1]?.sn == 7)
        #expect(throws: ChainRollbackLog.Unreachable.ahead(boundary: 12, executed: 10)) { try log.plan(to: 12, baseDigest: digest(0)) }
        #expect(throws: ChainRollbackLog.Unreachable.behind(boundary: 0, oldest: 4)) { try log.plan(to: 0, baseDigest: digest(0)) }
        #expect(throws: ChainRollbackLog.Unreachable.digest(boundary: 8)) { try log.plan(to: 8, baseDigest: digest(1)) }
        // With CHK = 4 a base is a multiple of 4; a replay happens from an older anchor when the newer is gone.
        var wide = ChainRollbackLog(anchorsMax: 4, checkpointInterval: 4, initialSnapshot: [0])
        for sn in UInt64(1)...6 { wide.record(executed(sn)) { sn == 4 ? nil : [UInt8(sn)] } } // no snapshot at 4
        let replay = try wide.plan(to: 4, baseDigest: digest(104))
        #expect(replay.anchor.sn == 0 && replay.replay.map(\.sn) == [1, 2, 3, 4])
        wide.truncate(to: 4, last: [:])
        #expect(wide.lastSN == 4 && wide.body(client: 1, timestamp: 5) == nil && wide.body(client: 1, timestamp: 3)?.op == [3])
    }
}
