import RingCastSimKit
import Testing

/// §2.5 of the thesis in the round model (§2.2.2), on real cores.
@Suite struct RoundModelTests {
    /// Every (N, K) with N in 2...9 and K in 1...N.
    static let ringsAndSenders: [(nodes: Int, senders: Int)] =
        (2...9).flatMap { nodes in (1...nodes).map { (nodes, $0) } }

    /// Fewer rounds than the CLI's acceptance run (100 000), to keep the suite short.
    static let rounds = 20_000

    /// Theorem 2.5.1: LCR completes one broadcast per round with K < N senders and N/(N−1) with
    /// K = N; with fairness on it must reach 99 % of that, with no safety violation on the way.
    @Test(arguments: ringsAndSenders)
    func theorem2_5_1_roundModelThroughput(nodes: Int, senders: Int) throws {
        let report = try RoundModel.run(.init(nodes: nodes, senders: Array(0..<senders), rounds: Self.rounds))
        let bound = senders == nodes ? Double(nodes) / Double(nodes - 1) : 1
        #expect(report.boundPerRound == bound)
        #expect(report.efficiency >= 0.99, "N=\(nodes) K=\(senders): \(report.throughputPerRound) per round")
        #expect(report.violations == 0, "N=\(nodes) K=\(senders): \(report.firstViolation.map(String.init(describing:)) ?? "")")
    }

    /// Minimal reproducer for own messages overtaking the forward queue (§2.4.1 with §2.5.2): with
    /// fairness an own message may leave before messages this process already received, so its stamp
    /// must not count them, or ≺ stops being an order (seen: (0,3) ≺ (1,1) ≺ (2,2) ≺ (0,3)) and the
    /// processes deliver in different orders. Three senders on three processes hit it by round 49.
    @Test func section2_4_1_overtakingOwnMessagesKeepTotalOrder() throws {
        let report = try RoundModel.run(.init(nodes: 3, senders: [0, 1, 2], rounds: 60))
        #expect(report.violations == 0, "\(report.firstViolation.map(String.init(describing:)) ?? "")")
    }

    /// The same bound is reached without fairness too (only the shares suffer).
    @Test(arguments: [(3, 3), (5, 1), (5, 3), (5, 5), (9, 9)])
    func theorem2_5_1_throughputWithoutFairness(nodes: Int, senders: Int) throws {
        let report = try RoundModel.run(.init(nodes: nodes, senders: Array(0..<senders), rounds: Self.rounds,
                                              fairness: false))
        #expect(report.efficiency >= 0.99)
        #expect(report.violations == 0)
    }

    /// §2.5.2: with fairness, every sender gets an equal share of the complete broadcasts (within
    /// one percentage point): the first K ring positions (the acceptance case) and blocks of
    /// neighbours elsewhere in the ring.
    @Test(arguments: [[0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [0, 1, 2, 3], [0, 1, 2, 3, 4]])
    func section2_5_2_fairnessSharesEqual(senders: [Int]) throws {
        let report = try RoundModel.run(.init(nodes: 5, senders: senders, rounds: Self.rounds))
        for sender in senders {
            let share = try #require(report.senderShares[String(sender)])
            #expect(abs(share - 1 / Double(senders.count)) <= 0.01, "sender \(sender) has \(share)")
        }
        #expect(report.violations == 0)
    }

    /// Known issue: with senders that are not one block of neighbours, or whose block wraps from
    /// p_{n-1} to p0, §2.5.2's rule leaves one sender about half of the ring (n = 5, senders
    /// {0, 2, 4}: p4 ≈ 0.50, p0 and p2 ≈ 0.25; senders {4, 0, 1}: p4 ≈ 0.50). A process is throttled
    /// only while its forward queue is non-empty, and the bottleneck process must forward FIFO.
    /// When this starts to pass, drop the known-issue wrapper.
    @Test(arguments: [[0, 2, 4], [4, 0, 1]])
    func section2_5_2_fairnessSharesUnequalAcrossGapsKnownIssue(senders: [Int]) throws {
        let report = try RoundModel.run(.init(nodes: 5, senders: senders, rounds: Self.rounds))
        withKnownIssue("§2.5.2 fairness is not equal for non-contiguous or wrapping sender sets") {
            #expect(report.shareDeviationMax <= 0.01, "shares \(report.senderShares)")
        }
        #expect(report.efficiency >= 0.99, "the ring stays busy; only the shares are off")
    }

    /// §2.5.2's problem: without fairness a process forwards first, so the sender upstream of the
    /// others (p0, whose predecessor does not broadcast) takes every slot and the others starve.
    @Test func section2_5_2_starvationWithoutFairness() throws {
        let report = try RoundModel.run(.init(nodes: 5, senders: [0, 1, 2], rounds: Self.rounds, fairness: false))
        #expect(report.senderShares["0"] == 1)
        #expect(report.senderShares["1"] == 0)
        #expect(report.senderShares["2"] == 0)
        #expect(report.efficiency >= 0.99, "starvation is unfair, not slow")
    }

    /// §2.5.3: a lone broadcast on an idle ring is delivered by the last process after 2n − 2 rounds
    /// (n − 1 rounds for the message to reach the origin's predecessor, n − 1 for the ACK to reach the
    /// predecessor's predecessor), whoever the origin.
    @Test(arguments: 2...9)
    func section2_5_3_loneBroadcastLatency(nodes: Int) throws {
        for origin in 0..<nodes {
            #expect(try RoundModel.loneLatencyRounds(nodes: nodes, origin: origin) == 2 * nodes - 2)
        }
    }

    /// The round model refuses settings it cannot run, with a message that says why.
    @Test func roundModelRejectsBadSettings() {
        #expect(throws: SimError.self) { try RoundModel.run(.init(nodes: 1, senders: [0], rounds: 10)) }
        #expect(throws: SimError.self) { try RoundModel.run(.init(nodes: 3, senders: [3], rounds: 10)) }
        #expect(throws: SimError.self) { try RoundModel.run(.init(nodes: 3, senders: [0, 0], rounds: 10)) }
        #expect(throws: SimError.self) {
            try RoundModel.run(.init(nodes: 3, senders: [0], rounds: 100,
                                     queues: .init(sendQueueMax: 4, forwardQueueMax: 4)))
        }
    }
}
