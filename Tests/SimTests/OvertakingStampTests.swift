internal import CRingCast
import RingCastLCR
import Testing

/// A minimal reproducer, on bare cores, of what the simulators found: with §2.5.2 fairness an own
/// message may leave ahead of messages already received and still queued for forwarding, and its
/// vector-clock stamp must then not count them. Otherwise ≺ (§2.4.1) is no longer an order: three
/// broadcasts give m(0,1) ≺ m(1,1) ≺ m(2,1) ≺ m(0,1), and processes sort `pending` differently.
@Suite struct OvertakingStampTests {
    /// One core of a ring of three (the shared wrapper, RingCastLCR), window 4, no batching.
    func core(_ position: UInt32) throws -> LCRCore {
        try LCRCore(LCRCore.settings(nodes: 3, self: position, window: 4, batchCount: 1, batchBytes: 100))
    }

    /// A message as it left a core: origin and its clock stamp, copied out of core memory.
    struct Stamp {
        var origin: UInt32
        var clock: [UInt64]
    }

    /// Takes the next frame of `core`, which must carry a message; hands it to `receiver` if given.
    func send(_ core: LCRCore, to receiver: LCRCore?) throws -> Stamp {
        var frame = rc_lcr_frame()
        try #require(rc_lcr_next_frame(core.pointer, &frame) == 1 && frame.has_message)
        let stamp = Stamp(origin: frame.message.origin, clock: (0..<3).map { frame.message.clock[$0] })
        if let receiver {
            var forwarded = false
            try #require(rc_lcr_on_frame(receiver.pointer, &frame, &forwarded, nil) == 0)
        }
        return stamp
    }

    func precedes(_ a: Stamp, _ b: Stamp) -> Bool {
        rc_lcr_precedes(3, a.origin, a.clock, b.origin, b.clock)
    }

    @Test func section2_4_1_overtakingStampsKeepPrecedenceAnOrder() throws {
        let p0 = try core(0), p1 = try core(1), p2 = try core(2)
        #expect(rc_lcr_broadcast(p0.pointer, 100, 10) == 0)
        let m0 = try send(p0, to: p1)          // p1 now holds m(0,1) in its forward queue
        #expect(rc_lcr_broadcast(p1.pointer, 200, 10) == 0)
        let m1 = try send(p1, to: p2)          // fairness lets m(1,1) leave ahead of m(0,1)
        #expect(m1.origin == 1, "fairness admits the own message first (received 1 ≥ sent 0)")
        #expect(rc_lcr_broadcast(p2.pointer, 300, 10) == 0)
        let m2 = try send(p2, to: nil)         // and m(2,1) ahead of m(1,1)
        #expect(m2.origin == 2)
        let stamps = [m0, m1, m2]
        // ≺ must be transitive: no cycle among the three.
        for a in 0..<3 {
            for b in 0..<3 where b != a {
                for c in 0..<3 where c != a && c != b {
                    let cycle = precedes(stamps[a], stamps[b]) && precedes(stamps[b], stamps[c])
                        && precedes(stamps[c], stamps[a])
                    #expect(!cycle, "cycle m\(a) ≺ m\(b) ≺ m\(c) ≺ m\(a): stamps \(stamps.map(\.clock))")
                }
            }
        }
        // m(1,1) left p1 before m(0,1) did, so downstream it arrives first: its stamp must not count m(0,1).
        #expect(m1.clock[0] == 0, "m(1,1) is stamped \(m1.clock) although m(0,1) travels behind it")
    }
}
