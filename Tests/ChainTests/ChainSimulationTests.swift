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

/// Switching in the simulator (spec §2.3, §12, §21 tests 8–10): a crash longer than a switch, forged init histories
/// and lying FETCH answers, over many seeds and both f.
@Suite struct ChainSwitchingSimulationTests {
    /// §21.10 with a new Chain instance standing in for Backup: every request of every correct client commits
    /// across the switches a crash causes (the checker's progress property), and nothing else is violated.
    @Test(arguments: [UInt32(1), 2])
    func crashLongerThanASwitchKeepsEveryRequestLive(f: UInt32) throws {
        var switches = 0
        for seed in UInt64(1)...12 {
            let report = try ChainSimulation.run(seed: seed, behaviour: .crash, f: f)
            #expect(report.violations.isEmpty, "seed \(seed): \(report.violations)")
            #expect(report.abortedClients == 0, "seed \(seed): a client ran out of instances")
            switches += report.switches
        }
        #expect(switches > 0, "the crashes caused switches")
    }

    /// §21.8 in the simulator: the Byzantine replica's forged INITs are refused by its correct successor, which enters
    /// through a client's PANIC instead; Init Order and init validity hold.
    @Test func forgedInitHistoriesAreRefused() throws {
        var forged = 0, refused: UInt64 = 0
        for seed in UInt64(1)...20 {
            let report = try ChainSimulation.run(seed: seed, behaviour: .forgedInit)
            #expect(report.violations.isEmpty, "seed \(seed): \(report.violations)")
            forged += report.forgedInits
            refused += report.initsRefused
        }
        #expect(forged > 0 && refused >= UInt64(forged), "every forged INIT sent was refused")
    }

    /// §21.9 in the simulator: replicas that lost their bodies FETCH them; the Byzantine replica's wrong answers are
    /// refused by digest, and initialisation still finishes.
    @Test func lyingFetchAnswersAreRefused() throws {
        var fetches: UInt64 = 0, rejected: UInt64 = 0
        for seed in UInt64(1)...20 {
            let report = try ChainSimulation.run(seed: seed, behaviour: .lyingFetch)
            #expect(report.violations.isEmpty, "seed \(seed): \(report.violations)")
            fetches += report.fetchesSent
            rejected += report.fetchedRejected
        }
        #expect(fetches > 0 && rejected > 0)
    }
}
