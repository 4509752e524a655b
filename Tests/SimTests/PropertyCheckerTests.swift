import RingCastSimKit
import Testing

/// The checkers on hand-written delivery logs: each property is violated once on purpose, and the
/// crash-tolerant reading (crashed logs are consistent prefixes, only correct processes owe
/// validity and agreement) is pinned down.
@Suite struct PropertyCheckerTests {
    static func m(_ origin: Int, _ sequence: Int) -> MessageID { MessageID(origin: origin, sequence: sequence) }

    /// Three processes; p0 broadcast two messages, p2 one.
    static let counts = [2, 0, 1]
    static let order = [m(0, 1), m(2, 1), m(0, 2)]

    func verdict(_ logs: [[MessageID]], correct: Set<Int>? = nil, quiescent: Bool = true) throws -> PropertyChecker.Verdict {
        try PropertyChecker.check(.init(deliveries: logs, broadcastCounts: Self.counts, correctProcesses: correct,
                                        quiescent: quiescent))
    }

    @Test func agreeingLogsHold() throws {
        #expect(try verdict([Self.order, Self.order, Self.order]).holds)
    }

    @Test func integrityCatchesDuplicatesAndInventions() throws {
        let duplicate = try verdict([Self.order + [Self.m(0, 1)], Self.order, Self.order])
        #expect(duplicate.firstViolation?.property == .integrity)
        #expect(duplicate.firstViolation?.process == 0)
        let invented = try verdict([Self.order, Self.order + [Self.m(1, 1)], Self.order])
        #expect(invented.firstViolation?.property == .integrity)
        #expect(invented.firstViolation?.message == Self.m(1, 1))
    }

    @Test func validityNeedsTheOriginToDeliver() throws {
        let logs = [[Self.m(2, 1)], [Self.m(2, 1)], [Self.m(2, 1)]]
        let partial = try PropertyChecker.check(.init(deliveries: logs, broadcastCounts: [0, 0, 1]))
        #expect(partial.holds)
        let missing = try PropertyChecker.check(.init(deliveries: logs, broadcastCounts: [1, 0, 1]))
        #expect(missing.firstViolation?.property == .validity)
        #expect(missing.firstViolation?.message == Self.m(0, 1))
        let crashed = try PropertyChecker.check(.init(deliveries: logs, broadcastCounts: [1, 0, 1],
                                                      correctProcesses: [1, 2]))
        #expect(crashed.holds, "a crashed origin owes no validity")
    }

    @Test func uniformAgreementBindsEveryCorrectProcess() throws {
        let short = Array(Self.order.prefix(2))
        let lagging = try verdict([Self.order, Self.order, short])
        #expect(lagging.firstViolation?.property == .uniformAgreement)
        #expect(lagging.firstViolation?.process == 2)
        // Uniform: a message a crashed process delivered must reach every correct one too.
        let crashedDelivered = try verdict([Self.order, short, short], correct: [1, 2])
        #expect(crashedDelivered.firstViolation?.property == .uniformAgreement)
        // A crashed process may have delivered less.
        #expect(try verdict([Self.order, Self.order, short], correct: [0, 1]).holds)
        // Mid-run (not quiescent) nobody owes anything yet.
        #expect(try verdict([Self.order, Self.order, short], quiescent: false).holds)
    }

    @Test func totalOrderCatchesASwap() throws {
        let swapped = [Self.order[1], Self.order[0], Self.order[2]]
        let result = try verdict([Self.order, swapped, Self.order])
        #expect(result.firstViolation?.property == .totalOrder)
        #expect(result.violatedPropertyCount == 1)
    }

    /// The thesis's total order (§2.4): if p delivers m without having delivered m', nobody
    /// delivers m' before m. A gap is therefore a violation even though no pair is swapped.
    @Test func totalOrderCatchesAGap() throws {
        let gap = [Self.order[0], Self.order[2]]
        let result = try verdict([Self.order, gap, Self.order], quiescent: false)
        #expect(result.firstViolation?.property == .totalOrder)
    }

    /// A crashed process's log must be a prefix of what the survivors agree on: a different last
    /// delivery is caught, a plain prefix is fine.
    @Test func crashedLogsMustBeConsistentPrefixes() throws {
        let survivors = Self.order
        #expect(try verdict([Array(survivors.prefix(1)), survivors, survivors], correct: [1, 2]).holds)
        let diverging = [Self.order[0], Self.order[2]]
        let result = try verdict([diverging, survivors, survivors], correct: [1, 2])
        #expect(result.firstViolation?.property == .totalOrder)
    }
}
