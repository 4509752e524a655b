import RingCastSimKit
import Testing

/// The Chain simulator over many seeds (spec §21 tests 2–7 under random schedules), its planted bug and replay.
@Suite struct ChainSimulationTests {
    @Test func manySeedsHoldEveryProperty() throws {
        let sweep = try ChainSimulation.sweep(firstSeed: 1, count: 150)
        #expect(sweep.violations == 0, "first failure: \(sweep.firstFailure.map { "\($0.seed): \($0.violations)" } ?? "none")")
        #expect(sweep.commits > 1000 && sweep.panics > 0)
        #expect(sweep.seedsByBehaviour.count == ChainSimulation.Behaviour.allCases.count, "every behaviour drawn")
    }

    @Test(arguments: ChainSimulation.Behaviour.allCases)
    func eachBehaviourKeepsSafety(behaviour: ChainSimulation.Behaviour) throws {
        for f in [UInt32(1), 2] {
            let sweep = try ChainSimulation.sweep(firstSeed: 1000, count: 12, behaviour: behaviour, f: f)
            #expect(sweep.violations == 0, "f=\(f): \(sweep.firstFailure.map { "\($0.seed): \($0.violations)" } ?? "")")
            if behaviour == .none { #expect(sweep.panics == 0, "no fault, no panic (Progress)") }
        }
    }

    /// Under a Byzantine replica that acts from its first batch, some correct replica stops or some client panics.
    @Test(arguments: ChainSimulation.Behaviour.allCases.filter { $0 != .none })
    func byzantineBehaviourIsNoticed(behaviour: ChainSimulation.Behaviour) throws {
        var noticed = 0
        for seed in UInt64(1)...10 {
            let report = try ChainSimulation.run(seed: seed, behaviour: behaviour)
            if report.panics > 0 || !report.stopped.isEmpty { noticed += 1 }
            #expect(report.violations.isEmpty)
        }
        #expect(noticed > 0)
    }

    @Test func plantedBugIsCaught() throws {
        let sweep = try ChainSimulation.sweep(firstSeed: 1, count: 10, plantedBug: .clientTrustsTail)
        #expect(sweep.violations > 0)
        #expect(sweep.violationsByProperty["reply_not_computed"] ?? 0 > 0)
        let failing = try #require(sweep.firstFailure)
        let replay = try ChainSimulation.run(seed: failing.seed, plantedBug: .clientTrustsTail)
        #expect(replay.violations == failing.violations, "the failing seed replays")
    }

    /// The Abort Order checker can fail too: P3 that skips the first position after the base is caught.
    @Test func plantedAbortHistoryBugIsCaught() throws {
        let sweep = try ChainSimulation.sweep(firstSeed: 1, count: 30, plantedBug: .abortHistorySkip)
        #expect(sweep.violationsByProperty["abort_order"] ?? 0 > 0)
    }

    @Test func seedsReplay() throws {
        for seed in [UInt64(3), 77, 501] {
            let a = try ChainSimulation.run(seed: seed), b = try ChainSimulation.run(seed: seed)
            #expect(a == b)
        }
    }
}
