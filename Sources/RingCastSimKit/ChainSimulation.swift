internal import CRingCastCore
import Foundation
import RingCastChain

extension ChainSimulation {
    /// One seed's outcome.
    public struct SeedReport: Sendable, Codable, Equatable {
        public var seed: UInt64
        public var scenario: Scenario
        public var plantedBug: PlantedBug
        public var ticks: UInt64
        public var commits: Int
        public var panics: Int
        public var abortedClients: Int
        public var invalidAborts: Int
        /// Replicas that stopped, as "r<position>:<rc_chain_stop_reason>".
        public var stopped: [String]
        public var checkpointsStable: UInt64
        /// CHECKPOINT messages sent, and refused (bad MAC, conflicting digest, out of window), over all replicas.
        public var checkpointsSent: UInt64
        public var checkpointsRefused: UInt64
        public var checkpointsLost: Int
        /// MAC operations per committed request at each position (generations + verifications), from the cores' counters.
        public var macOpsPerRequest: [Double]
        public var meanBatch: Double
        /// Switches to a next instance (client side), the highest instance a replica reached, init histories refused
        /// (forged ones included), FETCHes sent and fetched bodies refused for their digest, state transfers.
        public var switches: Int
        public var instanceReached: UInt64
        public var forgedInits: Int
        public var initsRefused: UInt64
        public var fetchesSent: UInt64
        public var fetchedRejected: UInt64
        public var stateTransfers: Int
        public var violations: [ChainViolation]
        public var trace: [String]?

        public var replay: String { "ringcast-sim --chain --seed \(seed)" + (plantedBug == .none ? "" : " --chain-bug \(plantedBug.rawValue)") }
    }

    public struct SweepReport: Sendable, Codable, Equatable {
        public var firstSeed: UInt64
        public var seedsRun: Int
        public var plantedBug: PlantedBug
        public var commits: Int
        public var panics: Int
        public var switches: Int
        public var forgedInitsRefused: UInt64
        public var fetchesSent: UInt64
        public var seedsByBehaviour: [String: Int]
        public var violations: Int
        public var violationsByProperty: [String: Int]
        public var failingSeeds: [UInt64]
        public var firstFailure: SeedReport?
    }

    /// Runs one seed. `behaviour` and `f` override the draw (tests pin them).
    public static func run(seed: UInt64, plantedBug: PlantedBug = .none, behaviour: Behaviour? = nil, f: UInt32? = nil,
                           trace: Bool = false) throws(ChainError) -> SeedReport {
        let forced: Behaviour?
        switch plantedBug {
        case .clientTrustsTail: forced = .lyingTail
        case .abortHistorySkip: forced = .lyingSigmaLast
        case .none: forced = behaviour
        }
        let scenario = Scenario.draw(seed: seed, behaviour: forced, f: f)
        let world = try ChainSimWorld(seed: seed, scenario: scenario, plantedBug: plantedBug, trace: trace)
        world.run()
        let violations = world.check()
        let stats = world.nodes.map(\.counters)
        let committed = max(1, world.commits.count)
        let batches = stats[0].batchesOut
        return SeedReport(
            seed: seed, scenario: scenario, plantedBug: plantedBug, ticks: world.now, commits: world.commits.count,
            panics: world.panics, abortedClients: world.clients.filter(\.aborted).count, invalidAborts: world.invalidAborts,
            stopped: world.nodes.filter { $0.core.stopped }.map { "r\($0.position):\($0.core.stopReason.rawValue)" },
            checkpointsStable: stats.map(\.checkpointsStable).min() ?? 0,
            checkpointsSent: stats.map(\.checkpointsSent).reduce(0, +),
            checkpointsRefused: stats.map(\.checkpointsRefused).reduce(0, +),
            checkpointsLost: world.checkpointsLost,
            macOpsPerRequest: stats.map { Double($0.macGenerations + $0.macVerifications) / Double(committed) },
            meanBatch: batches == 0 ? 0 : Double(stats[0].requestsLogged) / Double(batches),
            switches: world.switches, instanceReached: world.nodes.map(\.instance).max() ?? 1,
            forgedInits: world.forgedInits, initsRefused: stats.map(\.initsRefused).reduce(0, +),
            fetchesSent: stats.map(\.fetchesSent).reduce(0, +), fetchedRejected: stats.map(\.fetchedRejected).reduce(0, +),
            stateTransfers: world.stateTransfers,
            violations: violations, trace: world.trace)
    }

    /// Runs `count` consecutive seeds from `firstSeed`.
    public static func sweep(firstSeed: UInt64, count: Int, plantedBug: PlantedBug = .none, behaviour: Behaviour? = nil,
                             f: UInt32? = nil) throws(ChainError) -> SweepReport {
        var sweep = SweepReport(firstSeed: firstSeed, seedsRun: 0, plantedBug: plantedBug, commits: 0, panics: 0, switches: 0,
                                forgedInitsRefused: 0, fetchesSent: 0,
                                seedsByBehaviour: [:], violations: 0, violationsByProperty: [:], failingSeeds: [],
                                firstFailure: nil)
        for offset in 0..<count {
            let report = try run(seed: firstSeed &+ UInt64(offset), plantedBug: plantedBug, behaviour: behaviour, f: f)
            sweep.seedsRun += 1
            sweep.commits += report.commits
            sweep.panics += report.panics
            sweep.switches += report.switches
            sweep.forgedInitsRefused += report.initsRefused
            sweep.fetchesSent += report.fetchesSent
            sweep.seedsByBehaviour[report.scenario.behaviour.rawValue, default: 0] += 1
            if let first = report.violations.first {
                sweep.violations += 1
                sweep.violationsByProperty[first.property.rawValue, default: 0] += 1
                sweep.failingSeeds.append(report.seed)
                if sweep.firstFailure == nil { sweep.firstFailure = report }
            }
        }
        return sweep
    }
}

/// Readable reports of chain mode.
enum ChainSimOutput {
    static func text(_ r: ChainSimulation.SeedReport) -> String {
        let s = r.scenario
        let verdict = r.violations.first.map { "VIOLATED — \($0)" } ?? "pass"
        var lines = [
            "ringcast-sim chain seed \(r.seed)\(bugNote(r.plantedBug))",
            "  cluster         f=\(s.f), n=\(s.nodes), \(s.clients) client(s) × \(s.requestsPerClient) requests, batch ≤ \(s.batchCount), CHK \(s.checkpointInterval), history ≤ \(s.historyMax)",
            "  byzantine       \(s.behaviour.rawValue)\(s.byzantine >= 0 ? " at r\(s.byzantine) from its batch \(s.trigger + 1), variant \(s.variant)" : "")",
            "  outcome         \(r.commits) commits, \(r.panics) panic(s), \(r.abortedClients) client(s) aborted, \(r.invalidAborts) invalid ABORT(s), \(r.ticks) ticks",
            "  replicas        stopped: \(r.stopped.isEmpty ? "none" : r.stopped.joined(separator: " ")); stable checkpoints ≥ \(r.checkpointsStable) (\(r.checkpointsSent) CHECKPOINTs sent, \(r.checkpointsRefused) refused, \(r.checkpointsLost) lost)",
            "  switching       \(r.switches) switch(es), instance \(r.instanceReached) reached; \(r.forgedInits) forged INIT(s) sent, \(r.initsRefused) init histories refused; \(r.fetchesSent) FETCH(es), \(r.fetchedRejected) fetched bodies refused; \(r.stateTransfers) state transfer(s)",
            "  MAC ops/commit  " + r.macOpsPerRequest.enumerated().map { "r\($0.offset):\(String(format: "%.2f", $0.element))" }.joined(separator: " ")
                + String(format: " (mean batch %.2f)", r.meanBatch),
            "  checks          \(verdict)",
        ]
        if !r.violations.isEmpty { lines.append("  replay          \(r.replay)") }
        if let trace = r.trace { lines += trace.map { "  " + $0 } }
        return lines.joined(separator: "\n")
    }

    static func text(_ sweep: ChainSimulation.SweepReport) -> String {
        let last = sweep.firstSeed &+ UInt64(max(sweep.seedsRun, 1) - 1)
        let behaviours = sweep.seedsByBehaviour.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        var lines = [
            "ringcast-sim chain seeds \(sweep.firstSeed)...\(last)\(bugNote(sweep.plantedBug))",
            "  seeds run       \(sweep.seedsRun) (\(behaviours))",
            "  traffic         \(sweep.commits) commits, \(sweep.panics) panics, \(sweep.switches) switches, \(sweep.forgedInitsRefused) init histories refused, \(sweep.fetchesSent) FETCHes",
            "  violations      \(sweep.violations)",
        ]
        for (property, count) in sweep.violationsByProperty.sorted(by: { $0.key < $1.key }) {
            lines.append("    \(property): \(count) seed(s)")
        }
        if let failure = sweep.firstFailure {
            lines.append("  first failure   seed \(failure.seed): \(failure.violations[0])")
            lines.append("  replay          \(failure.replay)")
            lines.append("  failing seeds   \(sweep.failingSeeds.prefix(20).map(String.init).joined(separator: " "))")
        }
        return lines.joined(separator: "\n")
    }

    private static func bugNote(_ bug: ChainSimulation.PlantedBug) -> String {
        bug == .none ? "" : " [planted bug: \(bug.rawValue)]"
    }
}
