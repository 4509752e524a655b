import CRingCast
import RingCastLCR
import Testing

/// The tests' name for the shared wrapper's frame (RingCastLCR).
typealias Frame = LCRFrame

// Unit tests of the sans-IO LCR core against the thesis (001_…, §2.4, Fig. 2.5, §2.5.2) and rc_lcr.h.
// Whole-ring behaviour (Fig. 2.6, Theorem 2.5.1, random schedules) is in SimTests.

private let EAGAIN: Int32 = 11
private let EINVAL: Int32 = 22
private let EMSGSIZE: Int32 = 90
private let EPROTO: Int32 = 71

@Suite("LCR core")
struct LCRCoreTests {
    @Test func section2_4_1_totalOrderDefinition() {
        // Fig. 2.6: C_m1 = [0,1,0,0], C_m3 = [0,0,0,1]; m3 ≺ m1 because p1 < p3 and C_m1[1] > C_m3[1].
        let m1: [UInt64] = [0, 1, 0, 0], m3: [UInt64] = [0, 0, 0, 1]
        #expect(rc_lcr_precedes(4, 3, m3, 1, m1))
        #expect(!rc_lcr_precedes(4, 1, m1, 3, m3))
        // Once p3 has received m1 before sending, m1 ≺ m3'.
        let m3AfterM1: [UInt64] = [0, 1, 0, 2]
        #expect(rc_lcr_precedes(4, 1, m1, 3, m3AfterM1))
        // Same origin: seq order, and a message never precedes itself.
        #expect(rc_lcr_precedes(4, 3, m3, 3, m3AfterM1))
        #expect(!rc_lcr_precedes(4, 3, m3, 3, m3))
    }

    @Test func settingsOutsideTheSizingRulesAreRefused() {
        var tooSmallForward = LCRCore.settings(nodes: 4, self: 0)
        tooSmallForward.forward_queue_max = tooSmallForward.send_queue_max
        var tooSmallPending = LCRCore.settings(nodes: 4, self: 0)
        tooSmallPending.pending_max -= 1
        var selfOutside = LCRCore.settings(nodes: 4, self: 0)
        selfOutside.`self` = 4
        var noNodes = LCRCore.settings(nodes: 1, self: 0)
        noNodes.nodes = 0
        for var bad in [tooSmallForward, tooSmallPending, selfOutside, noNodes] {
            #expect(rc_lcr_memory_size(&bad) == 0)
            #expect(throws: LCRError.code(-EINVAL)) { _ = try LCRCore(bad) }
        }
        var good = LCRCore.settings(nodes: 4, self: 0)
        #expect(rc_lcr_memory_size(&good) > 0)
    }

    @Test func broadcastBackpressureAtTheWindow() throws {
        let core = try LCRCore(LCRCore.settings(nodes: 3, self: 0, window: 4, batchBytes: 1000))
        for ref in 1...4 { #expect(core.broadcast(UInt64(ref)) == 0) }
        #expect(core.broadcast(5) == -EAGAIN)
        #expect(core.broadcast(6, bytes: 1001) == -EMSGSIZE)
        #expect(core.stats.broadcasts == 4)
    }

    @Test func batchingPacksQueuedMessagesAndALoneMessageGoesAtOnce() throws {
        let lone = try LCRCore(LCRCore.settings(nodes: 2, self: 0, window: 16, batchCount: 4))
        #expect(lone.broadcast(1) == 0)
        let single = try #require(lone.nextFrame()?.message)
        #expect(single.count == 1 && single.burstSize == 0 && single.seq == 1)

        let busy = try LCRCore(LCRCore.settings(nodes: 2, self: 0, window: 16, batchCount: 4))
        for ref in 0..<10 { #expect(busy.broadcast(UInt64(ref)) == 0) }
        let batches = (0..<3).compactMap { _ in busy.nextFrame()?.message }
        #expect(batches.map(\.count) == [4, 4, 2])
        #expect(batches.map(\.seq) == [1, 2, 3])
        #expect(batches.map(\.ref) == [0, 4, 8]) // index of the first application message
        // §2.5.2: the first message of a burst carries its size, in LCR messages.
        #expect(batches.map(\.burstSize) == [3, 0, 0])
        #expect(busy.nextFrame() == nil)
    }

    @Test func batchBytesLimitSplitsBatches() throws {
        let core = try LCRCore(LCRCore.settings(nodes: 2, self: 0, window: 16, batchCount: 16, batchBytes: 250))
        for ref in 0..<5 { #expect(core.broadcast(UInt64(ref), bytes: 100) == 0) }
        let counts = (0..<3).compactMap { _ in core.nextFrame()?.message?.count }
        #expect(counts == [2, 2, 1])
    }

    /// A process takes a received message only if its stamp is newer than what it has from that origin,
    /// C_m[j] > C[j]; anything else was seen before and is ignored.
    // Reference: Fig. 2.5 line 10
    @Test func figure2_5_line10_duplicateIsIgnored() throws {
        let p1 = try LCRCore(LCRCore.settings(nodes: 4, self: 1))
        let m0 = Frame(message: .init(origin: 0, seq: 1, clock: [1, 0, 0, 0]))
        #expect(p1.receive(m0) == (0, true))
        #expect(p1.receive(m0).rc == 0)
        #expect(p1.stats.duplicates_ignored == 1)
        // The core says so itself, so the engine need not diff its statistics to find out.
        let again = p1.receiveReporting(m0)
        #expect(again.rc == 0 && again.duplicate && !again.forwarded)
        #expect(p1.stats.duplicates_ignored == 2)
        #expect(p1.pendingCount == 1)
        #expect(p1.forwardQueueCount == 1)
    }

    @Test func framesNoCorrectPredecessorSendsAreRejectedWithoutChange() throws {
        let p1 = try LCRCore(LCRCore.settings(nodes: 4, self: 1))
        let bad: [Frame] = [
            Frame(message: .init(origin: 4, seq: 1, clock: [0, 0, 0, 0])),        // origin outside the ring
            Frame(message: .init(origin: 1, seq: 1, clock: [0, 1, 0, 0])),        // our own message back
            Frame(message: .init(origin: 0, seq: 2, clock: [2, 0, 0, 0])),        // a gap: seq 1 missing
            Frame(message: .init(origin: 0, seq: 1, clock: [3, 0, 0, 0])),        // C_m[origin] ≠ seq
            Frame(message: nil, acks: [rc_lcr_ack(origin: 2, seq: 1)]),           // ACK for a message never received
        ]
        for frame in bad { #expect(p1.receive(frame).rc == -EPROTO) }
        #expect(p1.stats.frames_rejected == UInt64(bad.count))
        // Each refusal says why (one count per reason, as TigerBeetle's ignore_* predicates do).
        let stats = p1.stats
        #expect(stats.rejected_foreign_origin == 1 && stats.rejected_own_returned == 1 && stats.rejected_gap == 1)
        #expect(stats.rejected_malformed == 1 && stats.rejected_ack_unreceived == 1)
        #expect(p1.pendingCount == 0 && p1.forwardQueueCount == 0)
        // The core still works after bad input.
        let accepted = p1.receiveReporting(Frame(message: .init(origin: 0, seq: 1, clock: [1, 0, 0, 0])))
        #expect(accepted.rc == 0 && !accepted.duplicate)
    }

    @Test func fullForwardQueueRefusesAndKeepsNothing() throws {
        // window 1 ⇒ forward_queue_max 2.
        let p1 = try LCRCore(LCRCore.settings(nodes: 4, self: 1, window: 1))
        for seq in 1...2 {
            let frame = Frame(message: .init(origin: 0, seq: UInt64(seq), clock: [UInt64(seq), 0, 0, 0]))
            #expect(p1.receive(frame).rc == 0)
        }
        let third = Frame(message: .init(origin: 0, seq: 3, clock: [3, 0, 0, 0]))
        #expect(p1.receive(third).rc == -EAGAIN)
        #expect(p1.stats.frames_refused == 1 && p1.forwardQueueCount == 2 && p1.pendingCount == 2)
        // Backpressure, never loss: once a message has left, the same frame is accepted.
        let forwarded = try #require(p1.nextFrame()?.message)
        #expect(forwarded.origin == 0 && forwarded.seq == 1)
        #expect(p1.receive(third).rc == 0)
    }

    /// An ACK tells its receiver that it already received every message ordered before m: so it may not
    /// overtake a message received before it (§2.4.2, the second point; deviation 5 of rc_lcr.h).
    // Reference: §2.4.2
    @Test func section2_4_2_ackNeverOvertakesDataReceivedBeforeIt() throws {
        // p1 of 4 holds m0 for forwarding, then learns an ACK. Fairness lets p1's own message go first
        // (received[0] = 1 ≥ sent[0] = 0), but the ACK must wait for m0 and ride on m0's frame.
        let p1 = try LCRCore(LCRCore.settings(nodes: 4, self: 1))
        #expect(p1.receive(Frame(message: .init(origin: 0, seq: 1, clock: [1, 0, 0, 0]))).rc == 0)
        #expect(p1.broadcast(7) == 0)
        #expect(p1.receive(Frame(message: nil, acks: [rc_lcr_ack(origin: 0, seq: 1)])).rc == 0)

        let own = try #require(p1.nextFrame())
        #expect(own.message?.own == true && own.message?.origin == 1)
        #expect(own.acks.isEmpty)
        let forward = try #require(p1.nextFrame())
        #expect(forward.message?.origin == 0 && forward.message?.own == false)
        #expect(forward.acks.map(\.origin) == [0] && forward.acks.map(\.seq) == [1])
        #expect(p1.stats.acks_piggybacked == 1 && p1.stats.ack_only_frames == 0)
        #expect(p1.nextFrame() == nil)
    }

    /// The origin's predecessor has seen m complete a round of the ring: it marks m stable and does not
    /// forward it.
    // Reference: Fig. 2.5 line 15
    @Test func figure2_5_line15_predecessorOfOriginMarksStableAndAcks() throws {
        // p3 is the predecessor of p0: m0 completes its round there, is stable, and is not forwarded.
        let p3 = try LCRCore(LCRCore.settings(nodes: 4, self: 3))
        #expect(p3.receive(Frame(message: .init(origin: 0, seq: 1, clock: [1, 0, 0, 0]))) == (0, false))
        let delivered = p3.deliveries()
        #expect(delivered.map(\.origin) == [0])
        let ack = try #require(p3.nextFrame())
        #expect(ack.message == nil && ack.acks.map(\.origin) == [0])
        #expect(p3.stats.ack_only_frames == 1)
    }

    /// The ACK stops at the predecessor of the origin's predecessor, which still marks m stable (deviation 1
    /// of rc_lcr.h: the figure's guard covers forwarding only).
    // Reference: Fig. 2.5 line 20
    @Test func figure2_5_line20_lastAckReceiverMarksStableButDoesNotForward() throws {
        // ACK for m0 stops at predecessor(predecessor(p0)) = p2 in a ring of 4; p2 must still deliver.
        let p2 = try LCRCore(LCRCore.settings(nodes: 4, self: 2))
        #expect(p2.receive(Frame(message: .init(origin: 0, seq: 1, clock: [1, 0, 0, 0]))).rc == 0)
        _ = try #require(p2.nextFrame()) // forwards m0 to p3
        #expect(p2.deliveries().isEmpty)  // not stable yet
        #expect(p2.receive(Frame(message: nil, acks: [rc_lcr_ack(origin: 0, seq: 1)])).rc == 0)
        #expect(p2.deliveries().map(\.origin) == [0])
        #expect(p2.nextFrame() == nil) // the ACK goes no further
    }

    /// A process that is not the origin's predecessor forwards the message to its successor unchanged, and
    /// "processes forward messages in the order in which they receive them" (§2.4.2).
    // Reference: Fig. 2.5 line 12
    @Test func figure2_5_line12_forwardsInReceiveOrder() throws {
        // p1 of 4 hears origins 3 and 0 through p0; it is the predecessor of neither, so it forwards all three.
        let p1 = try LCRCore(LCRCore.settings(nodes: 4, self: 1))
        let received: [Frame.Message] = [
            .init(origin: 3, seq: 1, clock: [0, 0, 0, 1]),
            .init(origin: 0, seq: 1, clock: [1, 0, 0, 1]),
            .init(origin: 3, seq: 2, clock: [1, 0, 0, 2]),
        ]
        for message in received { #expect(p1.receive(Frame(message: message)) == (0, true)) }
        let sent = (0..<3).compactMap { _ in p1.nextFrame()?.message }
        #expect(sent.map(\.origin) == [3, 0, 3] && sent.map(\.seq) == [1, 1, 2])
        #expect(sent.map(\.clock) == received.map(\.clock)) // C_m travels unchanged
        #expect(sent.allSatisfy { !$0.own })
        #expect(p1.stats.forwarded == 3 && p1.forwardQueueCount == 0)
        #expect(p1.nextFrame() == nil)
    }

    /// The origin's predecessor sends an ACK for m to its successor (line 16); each process that receives
    /// it forwards it on (line 22) unless it is the predecessor of the origin's predecessor (line 20).
    // Reference: Fig. 2.5 lines 16 and 22
    @Test func figure2_5_line16_22_ackIsSentByThePredecessorAndForwarded() throws {
        // Ring of 4, origin p0: p3 sends the ACK, p1 forwards it, p2 would stop it.
        let p3 = try LCRCore(LCRCore.settings(nodes: 4, self: 3))
        #expect(p3.receive(Frame(message: .init(origin: 0, seq: 1, clock: [1, 0, 0, 0]))) == (0, false))
        let sentAck = try #require(p3.nextFrame())
        #expect(sentAck.message == nil && sentAck.acks.map(\.origin) == [0] && sentAck.acks.map(\.seq) == [1])

        let p1 = try LCRCore(LCRCore.settings(nodes: 4, self: 1))
        #expect(p1.receive(Frame(message: .init(origin: 0, seq: 1, clock: [1, 0, 0, 0]))).rc == 0)
        #expect(p1.nextFrame()?.message?.origin == 0) // m0 goes on first
        #expect(p1.receive(Frame(message: nil, acks: sentAck.acks)).rc == 0)
        let forwardedAck = try #require(p1.nextFrame())
        #expect(forwardedAck.message == nil && forwardedAck.acks.map(\.origin) == [0] && forwardedAck.acks.map(\.seq) == [1])
        #expect(rc_lcr_stable_seq(p1.pointer, 0) == 1)
        #expect(p1.nextFrame() == nil)
    }

    /// tryDeliver hands out the first message of pending while it is stable, in ≺ order; a stable message
    /// behind an unstable one waits (Fig. 2.6: p0 knows m1 is stable but must deliver m3 first).
    // Reference: Fig. 2.5 lines 24–27
    @Test func figure2_5_line24_27_deliversOnlyAStableHeadInOrder() throws {
        let p0 = try LCRCore(LCRCore.settings(nodes: 4, self: 0))
        let m3 = Frame.Message(origin: 3, seq: 1, clock: [0, 0, 0, 1])
        let m1 = Frame.Message(origin: 1, seq: 1, clock: [0, 1, 0, 0])
        #expect(p0.receive(Frame(message: m3)) == (0, true))
        #expect(p0.receive(Frame(message: m1)) == (0, false)) // p0 is m1's origin's predecessor: stable here
        #expect(rc_lcr_stable_seq(p0.pointer, 1) == 1 && rc_lcr_stable_seq(p0.pointer, 3) == 0)
        #expect(p0.deliveries().isEmpty) // m3 ≺ m1 is first, and not stable
        #expect(p0.pendingCount == 2)
        #expect(p0.receive(Frame(message: nil, acks: [rc_lcr_ack(origin: 3, seq: 1)])).rc == 0)
        let delivered = p0.deliveries()
        #expect(delivered.map(\.origin) == [3, 1] && delivered.map(\.seq) == [1, 1])
        #expect(p0.pendingCount == 0 && p0.stats.delivered_messages == 2)
        #expect(p0.deliveries().isEmpty)
    }

    @Test func aloneInTheRingDeliversOwnMessagesInOrder() throws {
        let solo = try LCRCore(LCRCore.settings(nodes: 1, self: 0, window: 4, batchCount: 2))
        for ref in 0..<3 { #expect(solo.broadcast(UInt64(ref)) == 0) }
        #expect(solo.nextFrame() == nil)
        let delivered = solo.deliveries()
        #expect(delivered.map(\.seq) == [1, 2] && delivered.map(\.count) == [2, 1])
        #expect(delivered.allSatisfy { $0.own })
    }

    @Test func twoProcessRingDeliversTheSameSequence() throws {
        let ring = try (0..<2).map { try LCRCore(LCRCore.settings(nodes: 2, self: UInt32($0), window: 8)) }
        var logs: [[String]] = [[], []]
        for round in 0..<40 {
            if round < 20 { for p in 0..<2 { _ = ring[p].broadcast(UInt64(round)) } }
            let frames = ring.map { $0.nextFrame() }
            for p in 0..<2 { if let frame = frames[p] { #expect(ring[1 - p].receive(frame).rc == 0) } }
            for p in 0..<2 { logs[p] += ring[p].deliveries().map { "\($0.origin):\($0.seq)" } }
        }
        #expect(logs[0].count == 40)
        #expect(logs[0] == logs[1])
    }

    @Test func section2_5_2_withoutFairnessForwardingComesFirst() throws {
        let p1 = try LCRCore(LCRCore.settings(nodes: 4, self: 1, fairness: false))
        #expect(p1.receive(Frame(message: .init(origin: 0, seq: 1, clock: [1, 0, 0, 0]))).rc == 0)
        #expect(p1.broadcast(7) == 0)
        #expect(p1.nextFrame()?.message?.origin == 0)
        #expect(p1.nextFrame()?.message?.origin == 1)
    }

    @Test func section2_5_2_fairnessHoldsOwnMessagesBackOncePastTheOrigin() throws {
        // After p0 announces a burst of 4, p1 may send as many own messages as it has received from p0.
        let p1 = try LCRCore(LCRCore.settings(nodes: 4, self: 1))
        #expect(p1.receive(Frame(message: .init(origin: 0, seq: 1, clock: [1, 0, 0, 0], burstSize: 4))).rc == 0)
        for ref in 0..<3 { #expect(p1.broadcast(UInt64(ref)) == 0) }
        let choices = (0..<3).compactMap { _ in p1.nextFrame()?.message?.origin }
        // received 1 ≥ sent 0 → own; received 1 ≥ sent 1 → own; received 1 < sent 2 → forward m0.
        #expect(choices == [1, 1, 0])
    }

    @Test func invariantViolationTraps() async {
        // Reading an application message outside the send queue is a programmer error: it must stop
        // the process (RC_ASSERT stays on in release builds), not read stale memory.
        await #expect(processExitsWith: .failure) {
            var settings = LCRCore.settings(nodes: 2, self: 0)
            let size = rc_lcr_memory_size(&settings)
            let memory = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
            var core: OpaquePointer?
            _ = rc_lcr_init(&core, memory, size, &settings)
            _ = rc_lcr_app_at(core, 5)
        }
    }
}
