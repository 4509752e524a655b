import ArgumentParser
import RingCastBackup
import RingCastChain

/// `ringcast-sim --backup`: seeded randomized runs of one Aliph Backup instance (spec §13.1) between two Chain
/// instances: n = 3f+1 real PBFT cores under the Backup wrapper, entered with a genuine Chain init history (2f+1
/// signed ABORTs), left with f+1 signed Backup abort histories that real Chain cores of the next instance must
/// install (rc_chain_expect_backup_proof). Faults are injected by the simulator around correct cores.
public enum BackupSimulation {
    public enum PlantedBug: String, Sendable, Codable, CaseIterable, ExpressibleByArgument {
        case none
        /// PBFT quorums of 2f instead of 2f+1 (PBFT.TestFault.prepareQuorumShort); caught as a Commit Order
        /// violation under an equivocating primary helped by an equivocating backup (f = 2).
        case prepareQuorumShort = "backup-prepare-quorum-short"
        /// The wrapper commits k+1 requests (Backup.WrapperFault.commitBeyondK).
        case commitBeyondK = "backup-commit-beyond-k"
    }

    /// What the f faulty replicas do (drawn per seed unless pinned).
    public enum Behaviour: String, Sendable, Codable, CaseIterable, ExpressibleByArgument {
        case none
        /// A backup crashed for a while (it loses what is sent to it meanwhile).
        case crash
        /// The primary of view 0 crashed for a while: the backups change view.
        case crashPrimary = "crash-primary"
        /// The primary sends one request's PRE-PREPARE to part of the replicas and another's to the rest; with f = 2
        /// a Byzantine backup votes for both (PREPARE and COMMIT).
        case equivocate
        /// f replicas send VIEW-CHANGEs with prepared certificates they forged (PREPAREs signed with their own key
        /// under other replicas' names).
        case forgedViewChange = "forged-view-change"
        /// f replicas answer clients with abort histories they altered and re-signed.
        case forgedAbortHistory = "forged-abort-history"
    }

    public struct Scenario: Sendable, Codable, Equatable {
        public var f: UInt32
        public var clients: Int
        public var requestsPerClient: Int
        /// The Backup instance's m (k = ⌈C·2^m⌉ with the default C) and k.
        public var m: UInt64
        public var k: UInt64
        /// Requests in the entering init history.
        public var initHistoryLength: Int
        public var delayMaxTicks: UInt64
        public var behaviour: Behaviour
        public var faulty: [UInt32]
        public var crashAt: UInt64
        public var crashTicks: UInt64
    }

    public struct SeedReport: Sendable, Codable, Equatable {
        public var seed: UInt64
        public var scenario: Scenario
        public var plantedBug: PlantedBug
        public var ticks: UInt64
        public var commits: Int
        public var abortedClients: Int
        public var viewChanges: UInt64
        public var refused: UInt64
        public var signatures: UInt64
        public var chainInstalls: Int
        public var violations: [String]

        public var replay: String {
            "ringcast-sim --backup --seed \(seed)" + (plantedBug == .none ? "" : " --backup-bug \(plantedBug.rawValue)")
        }
    }

    public struct SweepReport: Sendable, Codable, Equatable {
        public var firstSeed: UInt64
        public var seedsRun: Int
        public var plantedBug: PlantedBug
        public var commits: Int
        public var viewChanges: UInt64
        public var chainInstalls: Int
        public var seedsByBehaviour: [String: Int]
        public var violations: Int
        /// The first failing seeds (at most 10) with their first violation, each replayable.
        public var failing: [String]
    }

    static func scenario(seed: UInt64, plantedBug: PlantedBug, behaviour: Behaviour?, f pinned: UInt32?) -> Scenario {
        var prng = MembershipPrng(seed: seed ^ 0xb4c_c0de)
        // The short quorums show only under equivocation: that bug pins it (unless the caller pinned another).
        let drawn = prng.pick(Behaviour.allCases)!
        let behaviour = behaviour ?? (plantedBug == .prepareQuorumShort ? .equivocate : drawn)
        // The equivocation that splits short quorums needs a Byzantine backup as well as the primary: f = 2.
        let f: UInt32 = pinned ?? (plantedBug == .prepareQuorumShort ? 2 : UInt32(prng.int(1...2)))
        // Under the short-quorum bug enough requests must flow for the equivocation to find a second one.
        let m = UInt64(plantedBug == .prepareQuorumShort ? prng.int(6...8) : prng.int(0...8))
        let k = Backup.Schedule().k(m: m)
        let faulty: [UInt32]
        switch behaviour {
        case .none: faulty = []
        case .crash: faulty = [UInt32(prng.int(1...Int(3 * f)))]
        case .crashPrimary: faulty = [0]
        case .equivocate: faulty = Array(0..<f)
        case .forgedViewChange, .forgedAbortHistory: faulty = Array((3 * f + 1 - f)..<(3 * f + 1))
        }
        return Scenario(f: f, clients: prng.int(plantedBug == .prepareQuorumShort ? 2...4 : 1...4), requestsPerClient: prng.int(2...8), m: m, k: k,
                        initHistoryLength: prng.int(0...3), delayMaxTicks: UInt64(prng.int(1...6)), behaviour: behaviour,
                        faulty: faulty, crashAt: UInt64(prng.int(0...40)), crashTicks: UInt64(prng.int(100...600)))
    }

    public static func run(seed: UInt64, plantedBug: PlantedBug = .none, behaviour: Behaviour? = nil,
                           f: UInt32? = nil) throws(ChainError) -> SeedReport {
        let scenario = scenario(seed: seed, plantedBug: plantedBug, behaviour: behaviour, f: f)
        let world = try BackupSimWorld(seed: seed, scenario: scenario, plantedBug: plantedBug)
        world.run()
        let violations = world.check()
        return SeedReport(seed: seed, scenario: scenario, plantedBug: plantedBug, ticks: world.now,
                          commits: world.clients.reduce(0) { $0 + $1.commits }, abortedClients: world.exits.count,
                          viewChanges: world.instances.reduce(0) { $0 + $1.replica.stats.viewChangesSent },
                          refused: world.instances.reduce(0) { $0 + $1.replica.stats.refused },
                          signatures: world.instances.reduce(0) { $0 + $1.replica.stats.signatures },
                          chainInstalls: world.chainInstalls, violations: violations)
    }

    public static func sweep(firstSeed: UInt64, count: Int, plantedBug: PlantedBug = .none, behaviour: Behaviour? = nil,
                             f: UInt32? = nil) throws(ChainError) -> SweepReport {
        var sweep = SweepReport(firstSeed: firstSeed, seedsRun: 0, plantedBug: plantedBug, commits: 0, viewChanges: 0,
                                chainInstalls: 0, seedsByBehaviour: [:], violations: 0, failing: [])
        for seed in firstSeed..<(firstSeed + UInt64(count)) {
            let report = try run(seed: seed, plantedBug: plantedBug, behaviour: behaviour, f: f)
            sweep.seedsRun += 1
            sweep.commits += report.commits
            sweep.viewChanges += report.viewChanges
            sweep.chainInstalls += report.chainInstalls
            sweep.seedsByBehaviour[report.scenario.behaviour.rawValue, default: 0] += 1
            if !report.violations.isEmpty {
                sweep.violations += 1
                if sweep.failing.count < 10 { sweep.failing.append("\(report.replay): \(report.violations[0])") }
            }
        }
        return sweep
    }

    public static func text(_ r: SeedReport) -> String {
        var lines = ["backup seed \(r.seed): f=\(r.scenario.f) behaviour \(r.scenario.behaviour.rawValue) faulty \(r.scenario.faulty) k=\(r.scenario.k) (m=\(r.scenario.m))",
                     "  ticks \(r.ticks), commits \(r.commits), clients left for Chain \(r.abortedClients), view changes \(r.viewChanges), refused \(r.refused), signatures \(r.signatures), Chain installs \(r.chainInstalls)"]
        lines += r.violations.isEmpty ? ["  no violation"] : r.violations.map { "  VIOLATION \($0)" }
        if !r.violations.isEmpty { lines.append("  replay: \(r.replay)") }
        return lines.joined(separator: "\n")
    }

    public static func text(_ s: SweepReport) -> String {
        var lines = ["backup sweep: \(s.seedsRun) seeds from \(s.firstSeed)\(s.plantedBug == .none ? "" : ", planted \(s.plantedBug.rawValue)")",
                     "  commits \(s.commits), view changes \(s.viewChanges), Chain installs \(s.chainInstalls)",
                     "  behaviours " + s.seedsByBehaviour.keys.sorted().map { "\($0)=\(s.seedsByBehaviour[$0]!)" }.joined(separator: " "),
                     "  seeds with violations \(s.violations)"]
        lines += s.failing.map { "  \($0)" }
        return lines.joined(separator: "\n")
    }
}
