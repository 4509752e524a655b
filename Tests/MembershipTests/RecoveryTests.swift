import CRingCast
import RingCastMembership
import Testing

/// The data side of Fig. 2.7 and the total order ≺ of §2.4.1.
@Suite struct RecoveryTests {
    typealias Recovery = Membership.Recovery<String>

    /// The Swift ≺ is the C `rc_lcr_precedes`, on random clocks that often tie.
    @Test func section2_4_1_precedesMatchesTheCCore() {
        var generator = SplitMix(seed: 241)
        for _ in 0..<20_000 {
            let nodes = Int(1 + generator.next() % 7)
            let a = UInt32(generator.next() % UInt64(nodes)), b = UInt32(generator.next() % UInt64(nodes))
            let clockA = (0..<nodes).map { _ in generator.next() % 4 }, clockB = (0..<nodes).map { _ in generator.next() % 4 }
            let swift = Membership.precedes(originA: a, clockA: clockA, originB: b, clockB: clockB)
            let c = rc_lcr_precedes(UInt32(nodes), a, clockA, b, clockB)
            #expect(swift == c, "\(a) \(clockA) vs \(b) \(clockB)")
        }
    }

    /// Fig. 2.6: with C_m1 = [0,1,0,0] and C_m3 = [0,0,0,1], m3 ≺ m1 (p3 sent m3 before receiving m1).
    @Test func figure2_6_m3PrecedesM1() {
        #expect(Membership.precedes(originA: 3, clockA: [0, 0, 0, 1], originB: 1, clockB: [0, 1, 0, 0]))
        #expect(!Membership.precedes(originA: 1, clockA: [0, 1, 0, 0], originB: 3, clockB: [0, 0, 0, 1]))
    }

    func entry(_ origin: UInt32, _ seq: UInt64, _ clock: [UInt64]) -> Recovery.Entry {
        Recovery.Entry(origin: origin, seq: seq, clock: clock, payload: "m\(origin)#\(seq)")
    }

    @Test func addExtendsTheClockAndKeepsOutOfOrderEntries() {
        var recovery = Recovery(nodes: 2, frozen: [1, 0], pending: [entry(0, 1, [1, 0])]) // a pending entry at freeze
        var added = [recovery.count == 1]
        added.append(recovery.add(entry(0, 3, [3, 0])))
        #expect(recovery.received == [1, 0], "3 waits for 2")
        added.append(recovery.add(entry(0, 2, [2, 0])))
        #expect(recovery.received == [3, 0], "2 makes 3 contiguous")
        added.append(recovery.add(entry(0, 2, [2, 0]))) // a duplicate
        added.append(recovery.add(entry(1, 1, [0, 2]))) // a stamp whose own entry is not its seq
        added.append(recovery.add(entry(2, 1, [0, 0]))) // an origin outside the view
        #expect(added == [true, true, true, false, false, false])
        #expect(recovery.refused == 2)
        #expect(recovery.refusals == [.malformed: 2, .duplicate: 1])
        #expect(recovery.count == 3)
        #expect(recovery.entries(origin: 0, seqs: 2...5).map(\.seq) == [2, 3])
        #expect(recovery.entries(origin: 0, seqs: 1...1_000_000).map(\.seq) == [1, 2, 3])
        #expect(recovery.entries(origin: 9, seqs: 1...2).isEmpty)
        // The pending entry of the freeze is held; adding it again is a duplicate, not a delivery.
        let again = recovery.add(entry(0, 1, [1, 0]))
        #expect(!again)
        #expect(recovery.refusals[.duplicate] == 2 && recovery.refusals[.deliveredBeforeFreeze] == nil)
    }

    /// Fig. 2.7 line 10: a process adds a recovered message m to its pending only if C_m[l] > C[l], that
    /// is, only if it has not received m already; so a message it delivered in the view is never
    /// delivered again by forceDeliver.
    // Reference: Fig. 2.7 line 10
    @Test func figure2_7_line10_recoveryNeverReAddsWhatWasDelivered() {
        // Frozen with C = [2, 1]: m0#1 was delivered, m0#2 and m1#1 are still pending.
        var recovery = Recovery(nodes: 2, frozen: [2, 1], pending: [entry(0, 2, [2, 1]), entry(1, 1, [1, 1])])
        #expect(recovery.frozen == [2, 1] && recovery.received == [2, 1] && recovery.count == 2)
        // Another member still holds m0#1 and supplies it: refused, it was delivered here.
        #expect(recovery.ignoreAdd(entry(0, 1, [1, 0])) == .deliveredBeforeFreeze)
        let delivered = recovery.add(entry(0, 1, [1, 0]))
        #expect(!delivered)
        #expect(recovery.refusals == [.deliveredBeforeFreeze: 1])
        // What this member never received (C_m[l] > C[l]) is added.
        let beyond = recovery.add(entry(0, 3, [3, 1]))
        #expect(beyond)
        #expect(recovery.received == [3, 1])
        let order = recovery.forceDeliveryOrder(target: [3, 1]).map(\.payload)
        #expect(!order.contains("m0#1"))
        #expect(order.count == 3)
    }

    /// Force delivery (Fig. 2.7 line 6) takes what the target allows, in ≺ order.
    @Test func figure2_7_forceDeliveryIsInTotalOrderUpToTheTarget() {
        var recovery = Recovery(nodes: 4, frozen: [0, 0, 0, 0], pending: [])
        recovery.add(entry(1, 1, [0, 1, 0, 0]))
        recovery.add(entry(3, 1, [0, 0, 0, 1]))
        recovery.add(entry(1, 2, [0, 2, 0, 1]))
        recovery.add(entry(0, 1, [1, 2, 0, 1]))
        let all = recovery.forceDeliveryOrder(target: [1, 2, 0, 1]).map(\.payload)
        #expect(all == ["m3#1", "m1#1", "m1#2", "m0#1"])
        let bounded = recovery.forceDeliveryOrder(target: [0, 1, 0, 1]).map(\.payload)
        #expect(bounded == ["m3#1", "m1#1"])
    }

    /// On random sets of LCR stamps the merge gives a sequence in which no later entry precedes an
    /// earlier one.
    @Test func forceDeliveryOrderIsConsistentWithPrecedes() {
        var generator = SplitMix(seed: 27)
        for _ in 0..<300 {
            let nodes = Int(2 + generator.next() % 5)
            var recovery = Recovery(nodes: nodes, frozen: Array(repeating: 0, count: nodes), pending: [])
            // A run of the ring where each origin's n-th message saw a growing clock.
            var clock = Array(repeating: UInt64(0), count: nodes)
            for _ in 0..<Int(generator.next() % 20) {
                let origin = Int(generator.next() % UInt64(nodes))
                clock[origin] += 1
                recovery.add(entry(UInt32(origin), clock[origin], clock))
            }
            let order = recovery.forceDeliveryOrder(target: clock)
            #expect(order.count == recovery.count)
            for (earlier, later) in zip(order, order.dropFirst()) {
                #expect(!Membership.precedes(originA: later.origin, clockA: later.clock, originB: earlier.origin, clockB: earlier.clock))
            }
        }
    }
}
