import Foundation
import RingCastSimKit
import Testing

/// The membership simulator: view changes (§2.4.3, Fig. 2.7) over the membership core and the real LCR
/// core, judged by the checkers across views.
@Suite struct MembershipSimulationTests {
    /// CI runs thousands of seeds through the CLI; the unit test runs a slice.
    @Test func membershipSeedsKeepEveryProperty() {
        let sweep = MembershipSimulation.sweep(firstSeed: 1, count: 400)
        #expect(sweep.seedsRun == 400)
        #expect(sweep.violations == 0, "first failure: \(sweep.firstFailure.map { "\($0.violation) — \($0.replay)" } ?? "")")
        #expect(sweep.installs > 400 && sweep.deliveries > 0)
    }

    /// The checkers can fail: a coordinator that skips the fill round, and a shell that forgets
    /// Fig. 2.7's force delivery, are both caught on many seeds. (Skipping the fill matters only under the
    /// `union` recovery rule, half of the seeds, and only when some survivor lacks a message.)
    @Test(arguments: [MembershipSimulation.PlantedBug.installWithoutFill, .skipForceDelivery])
    func plantedBugIsCaught(bug: MembershipSimulation.PlantedBug) throws {
        let sweep = MembershipSimulation.sweep(firstSeed: 1, count: 100, plantedBug: bug)
        #expect(sweep.violations * 4 >= sweep.seedsRun, "caught on \(sweep.violations) of \(sweep.seedsRun) seeds")
        let failure = try #require(sweep.firstFailure)
        #expect(failure.replay == "ringcast-sim --membership --seed \(failure.seed) --membership-bug \(bug.rawValue) --trace")
        let replay = MembershipSimulation.run(seed: failure.seed, plantedBug: bug)
        #expect(replay.firstViolation == failure.violation, "a failing seed replays exactly")
    }

    /// A seed replays exactly: the same seed, the same digest over every event.
    @Test(arguments: [1, 42, 316, 984] as [UInt64])
    func replayIsDeterministic(seed: UInt64) {
        let first = MembershipSimulation.run(seed: seed)
        #expect(first == MembershipSimulation.run(seed: seed))
        #expect(MembershipSimulation.run(seed: seed + 1).traceDigest != first.traceDigest)
    }

    /// Seeds draw what membership mode promises: both modes, groups of 3...7, every kind of fault.
    @Test func seedsCoverTheScenarioSpace() {
        let reports = (1...150 as ClosedRange<UInt64>).map { MembershipSimulation.run(seed: $0) }
        #expect(Set(reports.map(\.mode)) == ["quorum", "perfect"])
        #expect(Set(reports.map(\.members)) == Set(3...7))
        for (name, count) in [("crashes", \MembershipSimulation.SeedReport.crashes), ("partitions", \.partitions),
                              ("joins", \.joins), ("leaves", \.leaves), ("rejoins", \.rejoins)] {
            #expect(reports.contains { $0[keyPath: count] > 0 }, "\(name) are exercised")
        }
        #expect(reports.allSatisfy { $0.finalViewID > 1 || $0.quorumLost }, "every run changes views and converges")
        #expect(reports.filter(\.quorumLost).count * 20 < reports.count, "few groups lose their quorum")
    }

    @Test func commandLineSweepPrintsTheContractFields() throws {
        let command = try SimCommand.parse(["--membership", "--seeds", "10", "--first-seed", "7", "--json"])
        let (output, passed) = try command.execute()
        #expect(passed)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        #expect(json["seeds_run"] as? Int == 10)
        #expect(json["violations"] as? Int == 0)
        #expect(json["first_seed"] as? Int == 7)
    }

    @Test func commandLineReplaysOneSeed() throws {
        let command = try SimCommand.parse(["--membership", "--seed", "42"])
        let (output, passed) = try command.execute()
        #expect(passed)
        #expect(output.contains("membership seed 42"))
        #expect(output.contains("checks          pass"))
    }

    /// With a planted bug, the command passes when the bug is caught.
    @Test func commandLinePlantedBugPassesWhenCaught() throws {
        let command = try SimCommand.parse(["--membership", "--seeds", "20", "--membership-bug", "skip-force-delivery"])
        let (output, passed) = try command.execute()
        #expect(passed)
        #expect(output.contains("first failure"))
    }

    @Test(arguments: [
        (["--membership", "--random"], "exclude"),
        (["--membership", "--trace"], "--trace"),
        (["--membership", "--seed", "1", "--seeds", "2"], "--seeds"),
        (["--membership", "--senders", "2"], "round model"),
        (["--membership-bug", "skip-force-delivery"], "--membership"),
        (["--membership", "--plant-bug", "deliver-unstable"], "--membership-bug"),
    ])
    func badOptionsAreRejected(arguments: [String], mentioned: String) {
        do {
            _ = try SimCommand.parse(arguments)
            Issue.record("\(arguments) was accepted")
        } catch {
            #expect(SimCommand.message(for: error).contains(mentioned), "\(arguments): \(SimCommand.message(for: error))")
        }
    }
}
