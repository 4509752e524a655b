import Testing
import RingCastSimKit

@Suite("BackupTests: the Backup simulator")
struct BackupSimulationTests {
    /// Every behaviour over a few seeds: no property violated, and the crashed primary makes the backups change view.
    @Test(arguments: BackupSimulation.Behaviour.allCases)
    func seedsHoldEveryProperty(behaviour: BackupSimulation.Behaviour) throws {
        let sweep = try BackupSimulation.sweep(firstSeed: 1, count: 6, behaviour: behaviour)
        #expect(sweep.violations == 0, "\(sweep.failing)")
        #expect(sweep.commits > 0)
        #expect(sweep.chainInstalls > 0)
        if behaviour == .crashPrimary { #expect(sweep.viewChanges > 0) }
    }

    /// The checkers can fail: each planted bug is caught on these seeds, with a replayable seed.
    @Test(arguments: [BackupSimulation.PlantedBug.prepareQuorumShort, .commitBeyondK])
    func plantedBugIsCaught(bug: BackupSimulation.PlantedBug) throws {
        let sweep = try BackupSimulation.sweep(firstSeed: 1, count: 8, plantedBug: bug)
        #expect(sweep.violations > 0)
        let first = try #require(sweep.failing.first)
        #expect(first.contains("--backup-bug \(bug.rawValue)"))
    }

    /// A seed replays exactly.
    @Test func seedReplays() throws {
        let a = try BackupSimulation.run(seed: 17)
        let b = try BackupSimulation.run(seed: 17)
        #expect(a == b)
    }
}

@Suite("BackupTests: the composition under a lasting crash (conformance test 10)")
struct BackupCompositionTests {
    /// Spec §21.10: one replica down for the whole run; Chain instances commit nothing and abort through real
    /// ABORTs, Backup instances commit k = ⌈C·2^m⌉ each with k doubling, and every request commits.
    @Test(arguments: [UInt32(1), 2])
    func section21_10_everyRequestCommitsAcrossSwitches(f: UInt32) throws {
        let sweep = try BackupSimulation.compositionSweep(firstSeed: 1, count: 5, f: f)
        #expect(sweep.violations == 0, "\(sweep.failing)")
        #expect(sweep.committed == sweep.requests)
        #expect(sweep.backupInstances >= 5)
    }

    /// k doubles per Backup instance after the flat start (C = 2^-1 in the composition run), and each Backup commits
    /// at most its k.
    @Test func section13_1_kGrowsAcrossBackupInstances() throws {
        let report = try BackupSimulation.composition(seed: 2, f: 1)
        #expect(report.violations.isEmpty, "\(report.violations)")
        #expect(Array(report.ks.prefix(4)) == [1, 1, 2, 4])
        #expect(zip(report.ks, report.commitsPerBackup).allSatisfy { UInt64($1) <= $0 })
        #expect(report.committed == report.requests)
        #expect(report.instanceReached >= 2 * UInt64(report.ks.count))
    }
}
