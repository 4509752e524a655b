import Testing
@testable import RingCastLinCheck

/// Large histories made linearizable by construction (a sequential store driven with random overlaps), and
/// the same with one planted stale read.
@Suite struct RandomHistoryTests {
    static let generator = LinearizableHistoryGenerator(clients: 8, keys: 50, operations: 10_000, lostPerMille: 2, seed: 7)
    static let history = generator.generate()

    @Test func generatedHistoryHasOverlapsAndOpenOperations() {
        let history = Self.history
        #expect(history.count == 10_000)
        #expect(history.contains { $0.output == nil })
        let byInvoke = history.filter { $0.output != nil }.sorted { $0.invokeNanos < $1.invokeNanos }
        let overlapping = zip(byInvoke, byInvoke.dropFirst()).filter { $0.returnNanos! >= $1.invokeNanos }.count
        #expect(overlapping > 1_000, "the generator should make many operations overlap")
    }

    @Test(arguments: [UInt64(7), 8, 9])
    func linearizableByConstructionIsAccepted(seed: UInt64) {
        var generator = Self.generator
        generator.seed = seed
        let history = seed == Self.generator.seed ? Self.history : generator.generate()
        let report = checkKV(history, budget: LinearizabilityBudget(stepsMax: 2_000_000))
        #expect(report.decided, "\(report.explanation ?? "")")
        #expect(report.isLinearizable, "\(report.explanation ?? "")")
        #expect(report.keysChecked == 50)
        #expect(report.operations == 10_000)
    }

    @Test func plantedStaleReadIsRejectedAndExplained() throws {
        let (planted, index) = try #require(plantStaleRead(Self.history))
        let result = checkKVDetailed(planted, budget: LinearizabilityBudget(stepsMax: 2_000_000))
        #expect(result.report.decided)
        #expect(!result.report.isLinearizable)
        let violation = try #require(result.violation)
        #expect(violation.culprit == index)
        #expect(violation.key == KVFormat.bytes(planted[index].input.key))
        #expect(violation.operations.contains { $0.index == index && $0.role == "outputChecked" })
        // The evidence is short: the quiescent point before the read summarises the key's earlier history.
        #expect(violation.operations.count <= 8, "\(result.report.explanation ?? "")")
        #expect(violation.shrinkComplete && violation.prefixIsShortest)
        let explanation = try #require(result.report.explanation)
        #expect(explanation.contains("#\(index) client \(planted[index].client) get("))
        #expect(explanation.contains("<- cannot be placed"))
        // Deterministic: the same history gives the same explanation.
        #expect(checkKV(planted, budget: LinearizabilityBudget(stepsMax: 2_000_000)).explanation == explanation)
    }

    @Test func explanationWithoutBudgetIsLongerButStillNamesTheRead() throws {
        let (planted, index) = try #require(plantStaleRead(Self.history))
        let result = checkKVDetailed(planted, budget: LinearizabilityBudget(stepsMax: 2_000_000, explanationStepsMax: 0))
        #expect(result.report.decided && !result.report.isLinearizable)
        let violation = try #require(result.violation)
        #expect(!violation.shrinkComplete)
        #expect(!violation.prefixIsShortest)
        #expect(violation.key == KVFormat.bytes(planted[index].input.key))
        // Without budget the failing history is the key's whole sub-history up to its last return.
        #expect(violation.operations.contains { $0.index == index && $0.role == "outputChecked" })
        #expect(violation.operations.count > 8)
        #expect(result.report.explanation?.contains("perhaps not the shortest") == true)
    }

    @Test func exhaustedBudgetIsUndecided() {
        let report = checkKV(Self.history, budget: LinearizabilityBudget(stepsMax: 1_000))
        #expect(!report.decided)
        #expect(!report.isLinearizable)
        #expect(report.keysChecked < 50)
        #expect(report.explanation?.hasPrefix("undecided: the budget ran out after 1000 search steps") == true)
    }

    @Test func stopRequestIsUndecided() {
        let report = checkKV(Self.history, budget: LinearizabilityBudget(stepsMax: 10_000_000, shouldStop: { true }))
        #expect(!report.decided)
        #expect(!report.isLinearizable)
    }

    @Test func oneKeyHistoryWithManyClientsIsAccepted() {
        // Every operation on one key: the most concurrency per partition this generator can produce.
        let generator = LinearizableHistoryGenerator(clients: 8, keys: 1, operations: 2_000, lostPerMille: 2, seed: 3)
        let report = checkKV(generator.generate(), budget: LinearizabilityBudget(stepsMax: 2_000_000))
        #expect(report.decided && report.isLinearizable, "\(report.explanation ?? "")")
    }
}
