import RingCastSimKit
import Testing

/// Randomized schedules over real cores, judged by the property checkers.
@Suite struct RandomSimulationTests {
    /// The CI script runs 10 000 seeds through the CLI; the unit test runs a slice of them.
    @Test func randomSeedsKeepEveryProperty() throws {
        let sweep = try RandomSimulation.sweep(firstSeed: 1, count: 2_000)
        #expect(sweep.seedsRun == 2_000)
        #expect(sweep.violations == 0, "first failure: \(sweep.firstFailure.map { "\($0.violation) — \($0.replay)" } ?? "")")
        #expect(sweep.deliveries > 0)
    }

    /// The checkers can fail: a core that delivers without waiting for stability (Fig. 2.5 line 25
    /// broken) is caught on most seeds.
    @Test func plantedBugIsCaught() throws {
        let sweep = try RandomSimulation.sweep(firstSeed: 1, count: 300, plantedBug: .deliverUnstable)
        #expect(sweep.violations * 10 >= sweep.seedsRun * 9, "caught on \(sweep.violations) of \(sweep.seedsRun) seeds")
        let failure = try #require(sweep.firstFailure)
        #expect(failure.replay == "ringcast-sim --random --seed \(failure.seed) --plant-bug deliver-unstable --trace")
    }

    /// The planted bug is also caught in the round model, by the uniformity and total-order checks.
    @Test func plantedBugIsCaughtInTheRoundModel() throws {
        let report = try RoundModel.run(.init(nodes: 4, senders: [0, 1, 2, 3], rounds: 500, plantedBug: .deliverUnstable))
        #expect(report.violations > 0)
    }

    /// Running out of steps before every broadcast is delivered everywhere is reported as a
    /// liveness violation, not taken for a pass.
    @Test func stepBoundIsALivenessViolation() throws {
        let report = try RandomSimulation.run(seed: 1, stepMax: 20)
        #expect(report.firstViolation?.property == .liveness)
        #expect(report.steps == 20)
    }

    /// A seed replays exactly: the same seed gives the same digest over every event.
    @Test(arguments: [1, 7, 42, 9_999] as [UInt64])
    func replayIsDeterministic(seed: UInt64) throws {
        let first = try RandomSimulation.run(seed: seed)
        let second = try RandomSimulation.run(seed: seed)
        #expect(first == second)
        let other = try RandomSimulation.run(seed: seed + 1)
        #expect(other.traceDigest != first.traceDigest)
    }

    /// Seeds draw what the randomized mode promises: rings of 2...9 and both fairness settings.
    @Test func seedsCoverTheSettingsSpace() throws {
        let reports = try (1...200 as ClosedRange<UInt64>).map { try RandomSimulation.run(seed: $0) }
        #expect(Set(reports.map(\.nodes)) == Set(2...9))
        #expect(Set(reports.map(\.fairness)) == [true, false])
        #expect(reports.contains { $0.batchCountMax > 1 })
        #expect(reports.contains { $0.framesRefused > 0 }, "backpressure is exercised")
        #expect(reports.contains { $0.broadcastsRefused > 0 }, "full send queues are exercised")
        #expect(reports.allSatisfy { $0.broadcasts == $0.messagesPlanned || $0.violations > 0 })
    }
}
