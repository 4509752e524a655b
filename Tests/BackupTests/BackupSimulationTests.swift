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
