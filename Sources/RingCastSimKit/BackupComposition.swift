import RingCastBackup
import RingCastChain

extension BackupSimulation {
    /// One seed of the composition under a lasting crash (conformance test 10 at the switching layer): each replica
    /// is an AbstractReplica over AliphInstanceFactory (real Chain cores and real Backup instances); one replica is
    /// down for the whole run. A Chain instance then commits nothing ([T]: Chain needs every replica), so its clients
    /// panic and leave with 2f+1 real ABORTs; each Backup instance commits k = ⌈C·2^m⌉ requests and aborts with
    /// signed histories into the next Chain instance, whose cores install the Backup proof. The run ends when every
    /// request committed: the growing k is what makes that happen.
    ///
    /// Not simulated: Chain's normal case after the crash ends (the Chain simulator's business).
    public struct CompositionReport: Sendable, Codable, Equatable {
        public var seed: UInt64
        public var f: UInt32
        public var crashed: UInt32
        public var requests: Int
        public var committed: Int
        /// k and commits of each Backup instance, in order.
        public var ks: [UInt64]
        public var commitsPerBackup: [Int]
        public var instanceReached: UInt64
        public var violations: [String]

        public var replay: String { "ringcast-sim --backup --composition --seed \(seed)" }
    }

    static let compositionCyclesMax = 14

    public static func composition(seed: UInt64, f pinned: UInt32? = nil) throws(ChainError) -> CompositionReport {
        var prng = MembershipPrng(seed: seed ^ 0xa11f)
        let f = pinned ?? UInt32(prng.int(1...2))
        let n = 3 * f + 1
        let clientCount = prng.int(1...4)
        let perClient = prng.int(2...10)
        let crashed = UInt32(prng.int(0...Int(n - 1)))
        let keys = try ChainKeys.generate(f: f, clients: UInt32(clientCount) + 1)
        var rings: [ChainKeyRing] = []
        for r in 0..<n { rings.append(try keys.keyRing(for: .replica(r))) }
        let machines = (0..<n).map { _ in BackupSimMachine() }
        let chk = BackupSimWorld.chainCheckpointInterval
        var composers: [AbstractReplica] = []
        var factories: [AliphInstanceFactory] = []
        for r in 0..<n {
            let chain = ChainInstanceFactory(
                settings: ChainCore.settings(f: f, self: r, clients: UInt32(clientCount) + 1, checkpointInterval: chk,
                                             historyMax: BackupSimWorld.historyMax, crypto: rings[Int(r)].crypto),
                keyRing: rings[Int(r)])
            let machine = machines[Int(r)]
            let factory = AliphInstanceFactory(
                chain: chain,
                pbft: PBFT.Settings(f: f, replica: r, checkpointInterval: 8, logWindow: 32, clientsMax: UInt32(clientCount) + 1,
                                    viewChangeTimeoutTicks: 80),
                schedule: Backup.Schedule(cExponent: 1), machine: { _ in machine })
            factories.append(factory)
            composers.append(try AbstractReplica(factory: factory))
        }
        var clients: [BackupSimClient] = []
        for c in 1...UInt32(clientCount) {
            clients.append(BackupSimClient(id: c, ring: try keys.keyRing(for: .client(c)), requests: perClient))
        }
        var report = CompositionReport(seed: seed, f: f, crashed: crashed, requests: clientCount * perClient, committed: 0,
                                       ks: [], commitsPerBackup: [], instanceReached: 1, violations: [])
        var previousEntries: [ChainAbort.Entry] = []
        var historyKeys: [ChainDigest: Set<ChainSimWorld.Key>] = [:]
        let live = (0..<n).filter { $0 != crashed }
        for cycle in 0..<compositionCyclesMax {
            guard let panicking = clients.first(where: { $0.remaining > 0 }) else { break }
            let chainInstance = UInt64(2 * cycle + 1)
            // Chain i: the crashed replica is in the chain, so the request times out and the client panics (P1);
            // the live replicas answer with their signed ABORTs (P2) and 2f+1 make IH for Backup i+1 (P3).
            let auth = ChainClientAuthenticator(keyRing: panicking.ring, f: f, client: panicking.id, instance: chainInstance)
            var collector = AbstractAbortCollector(f: f, checkpointInterval: chk, instance: chainInstance)
            var toBackup: ChainInitHistory?
            for r in live where toBackup == nil {
                guard let core = composers[Int(r)].current as? ChainCore, core.instanceNumber == chainInstance,
                      let panic = try? auth.panic(timestamp: panicking.nextTimestamp, replica: r),
                      case .success(let abort) = core.panic(panic) else {
                    report.violations.append("cycle \(cycle): r\(r) gave no ABORT in Chain i\(chainInstance)")
                    continue
                }
                toBackup = try? collector.add(abort, client: panicking.id, timestamp: panicking.nextTimestamp, keyRing: panicking.ring)
            }
            guard let ih = toBackup else {
                report.violations.append("cycle \(cycle): no init history out of Chain i\(chainInstance)")
                break
            }
            let backupNumber = chainInstance + 1
            for r in live {
                do { try composers[Int(r)].enter(ih) } catch {
                    report.violations.append("cycle \(cycle): r\(r) refused to enter Backup i\(backupNumber): \(error)")
                }
            }
            guard report.violations.isEmpty else { break }
            var instances: [Backup.Instance] = []
            for r in 0..<n {
                if r == crashed { instances.append(try factories[Int(r)].makeBackup(backupNumber)); continue }
                instances.append(composers[Int(r)].current as! Backup.Instance)
            }
            for c in clients { c.carryInitHistory = true; c.exit = nil; c.collector = nil; c.outstanding = nil; c.replies = [:] }
            let scenario = Scenario(f: f, clients: clientCount, requestsPerClient: perClient, m: Backup.Order.backupIndex(backupNumber),
                                    k: instances[Int(live[0])].k, initHistoryLength: ih.entries.count, delayMaxTicks: UInt64(prng.int(1...4)),
                                    behaviour: .crash, faulty: [crashed], crashAt: 0, crashTicks: BackupSimWorld.ticksMax)
            let world = BackupSimWorld(seed: seed &+ UInt64(cycle), scenario: scenario, plantedBug: .none, keys: keys, rings: rings,
                                       instances: instances, machines: machines, clients: clients, entering: ih,
                                       instanceNumber: backupNumber)
            world.historyKeys = historyKeys
            let committedBefore = clients.reduce(0) { $0 + $1.commits }
            world.run()
            report.violations += world.check().map { "Backup i\(backupNumber): \($0)" }
            historyKeys = world.historyKeys
            report.ks.append(scenario.k)
            report.commitsPerBackup.append(clients.reduce(0) { $0 + $1.commits } - committedBefore)
            report.instanceReached = backupNumber
            // Abort Order across instances: the Backup's order extends the init history it entered with (an entry
            // of the previous Backup's history at or above the new base has the same H here).
            let entries = instances[Int(live[0])].entries
            let mine = Dictionary(entries.map { ($0.sn, $0.historyDigest) }, uniquingKeysWith: { a, _ in a })
            for e in previousEntries where mine[e.sn].map({ $0 != e.historyDigest }) ?? false {
                report.violations.append("Backup i\(backupNumber): its history differs from the previous Backup's at sn \(e.sn)")
            }
            previousEntries = entries
            guard report.violations.isEmpty else { break }
            // Into Chain i+2 with f+1 Backup histories (every client that aborted left with the same one).
            guard let back = world.exits.first else { break } // every request committed inside this Backup
            for r in live {
                do { try composers[Int(r)].enter(back) } catch {
                    report.violations.append("cycle \(cycle): r\(r) refused to enter Chain i\(back.instance): \(error)")
                }
            }
            report.instanceReached = back.instance
            // An aborted request was not executed: the client invokes it again (under its next timestamp) later.
            for c in clients where c.exit != nil { c.remaining += 1 }
            guard report.violations.isEmpty else { break }
        }
        report.committed = clients.reduce(0) { $0 + $1.commits }
        if report.violations.isEmpty && clients.contains(where: { $0.remaining > 0 }) {
            report.violations.append("liveness: \(report.requests - report.committed) requests still uncommitted after \(report.ks.count) Backup instances (k \(report.ks))")
        }
        return report
    }

    public struct CompositionSweep: Sendable, Codable, Equatable {
        public var firstSeed: UInt64
        public var seedsRun: Int
        public var requests: Int
        public var committed: Int
        public var backupInstances: Int
        public var largestK: UInt64
        public var violations: Int
        public var failing: [String]
    }

    public static func compositionSweep(firstSeed: UInt64, count: Int, f: UInt32? = nil) throws(ChainError) -> CompositionSweep {
        var sweep = CompositionSweep(firstSeed: firstSeed, seedsRun: 0, requests: 0, committed: 0, backupInstances: 0,
                                     largestK: 0, violations: 0, failing: [])
        for seed in firstSeed..<(firstSeed + UInt64(count)) {
            let r = try composition(seed: seed, f: f)
            sweep.seedsRun += 1
            sweep.requests += r.requests
            sweep.committed += r.committed
            sweep.backupInstances += r.ks.count
            sweep.largestK = max(sweep.largestK, r.ks.max() ?? 0)
            if !r.violations.isEmpty {
                sweep.violations += 1
                if sweep.failing.count < 10 { sweep.failing.append("\(r.replay): \(r.violations[0])") }
            }
        }
        return sweep
    }

    public static func text(_ r: CompositionReport) -> String {
        var lines = ["backup composition seed \(r.seed): f=\(r.f), r\(r.crashed) down throughout, \(r.requests) requests",
                     "  committed \(r.committed), Backup instances \(r.ks.count), k per Backup \(r.ks), commits per Backup \(r.commitsPerBackup), instance reached \(r.instanceReached)"]
        lines += r.violations.isEmpty ? ["  no violation"] : r.violations.map { "  VIOLATION \($0)" }
        return lines.joined(separator: "\n")
    }

    public static func text(_ s: CompositionSweep) -> String {
        (["backup composition sweep: \(s.seedsRun) seeds from \(s.firstSeed), a replica down throughout each",
          "  requests \(s.requests), committed \(s.committed), Backup instances \(s.backupInstances), largest k \(s.largestK)",
          "  seeds with violations \(s.violations)"] + s.failing.map { "  \($0)" }).joined(separator: "\n")
    }
}
