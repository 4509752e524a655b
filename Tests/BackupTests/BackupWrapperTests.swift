import Testing
import RingCastBackup
import RingCastChain

/// The application under Backup in the tests: a running sum of the ops' first bytes.
final class SumMachine: BackupStateMachine {
    var installed: ChainInitHistory?
    var executed: [(position: UInt64, request: ChainRequest)] = []
    var sum: UInt64 = 0

    func install(_ initHistory: ChainInitHistory) { installed = initHistory }

    func execute(position: UInt64, request: ChainRequest) -> [UInt8] {
        executed.append((position, request))
        sum += UInt64(request.op.first ?? 0)
        return [UInt8(truncatingIfNeeded: sum)]
    }

    /// Requests this test's state executed before the init history's base (client, timestamp).
    var executedBefore: Set<[UInt64]> = []

    /// The reply of an IH entry or of a request executed before the base, as this test's state knows it: 0xEE and
    /// the timestamp.
    func executedReply(client: UInt32, timestamp: UInt64) -> [UInt8]? {
        guard installed?.entries.contains(where: { $0.client == client && $0.timestamp == timestamp }) == true
                || executedBefore.contains([UInt64(client), timestamp]) else { return nil }
        return [0xEE, UInt8(truncatingIfNeeded: timestamp)]
    }
}

/// n Backup instances of one instance number over a FIFO network (crashed replicas neither receive nor act).
final class BackupCluster {
    let f: UInt32
    let keys: ChainKeys
    let instance: UInt64
    var instances: [Backup.Instance] = []
    var machines: [SumMachine] = []
    var queue: [(to: UInt32, envelope: PBFT.Envelope)] = []
    var crashed: Set<UInt32> = []
    var replies: [PBFT.Reply] = []
    var aborts: [ChainAbort] = []

    init(f: UInt32, keys: ChainKeys, instance: UInt64 = 2, k: UInt64, fault: Backup.WrapperFault = .none) throws {
        self.f = f
        self.keys = keys
        self.instance = instance
        for r in 0..<(3 * f + 1) {
            let machine = SumMachine()
            machines.append(machine)
            let settings = PBFT.Settings(f: f, replica: r, clientsMax: keys.clients, viewChangeTimeoutTicks: 20)
            instances.append(try Backup.Instance(instance: instance, k: k, settings: settings,
                                                 keyRing: keys.keyRing(for: .replica(r)), chainCheckpointInterval: 4,
                                                 historyMax: 64, machine: machine, fault: fault))
        }
    }

    var n: UInt32 { 3 * f + 1 }

    func submit(client: UInt32, timestamp: UInt64, op: [UInt8], initHistory: ChainInitHistory? = nil) throws {
        let r = PBFT.ClientRequest(PBFT.Request(client: client, timestamp: timestamp, op: op, initHistory: initHistory),
                                   keyRing: try keys.keyRing(for: .client(client)), n: n)
        for q in 0..<n where !crashed.contains(q) { try deliver(.request(r), to: q) }
        while !queue.isEmpty {
            let (to, e) = queue.removeFirst()
            try deliver(.message(e), to: to)
        }
    }

    func deliver(_ event: PBFT.Event, to q: UInt32) throws {
        guard !crashed.contains(q) else { return }
        for a in try instances[Int(q)].handle(event) {
            switch a {
            case .broadcast(let e): for p in 0..<n where p != q { queue.append((p, e)) }
            case .send(let to, let e): queue.append((to, e))
            case .reply(let r): replies.append(r)
            case .abort(let h): aborts.append(h)
            case .installed, .executed, .enteredView: break
            }
        }
    }
}

/// 2f+1 signed Chain ABORTs of instance `instance` − 1 whose histories hold `requests` at positions 1, 2, …, and the
/// init history P3 extracts from them: what a client carries into the instance.
func chainInitHistory(keys: ChainKeys, instance: UInt64, requests: [ChainRequest], signers: [UInt32]? = nil) throws -> ChainInitHistory {
    let f = keys.f
    let hashRing = try keys.keyRing(for: .replica(0))
    var h = ChainDigest.zero
    var entries: [ChainAbort.Entry] = []
    for (k, r) in requests.enumerated() {
        let d = ChainDigest.request(client: r.client, timestamp: r.timestamp, op: r.op, keyRing: hashRing)
        h = h.extended(sn: UInt64(k + 1), request: d, keyRing: hashRing)
        entries.append(ChainAbort.Entry(sn: UInt64(k + 1), client: r.client, timestamp: r.timestamp, requestDigest: d, historyDigest: h))
    }
    let proof = try (signers ?? Array(0..<(2 * f + 1))).map { r in
        ChainAbort.backupHistory(replica: r, client: 0, timestamp: 100, instance: instance - 1, base: 0, baseDigest: .zero,
                                 entries: entries, keyRing: try keys.keyRing(for: .replica(r)))
    }
    return try #require(ChainInitHistory.extract(proof: proof, f: f, checkpointInterval: 4, instance: instance))
}

@Suite("BackupTests: the Backup wrapper and the way back into Chain")
struct BackupWrapperTests {
    /// Spec §13.1: k = ⌈C·2^m⌉ with C = 2^-e, capped.
    @Test func section13_1_kSchedule() {
        let s = Backup.Schedule(cExponent: 4, kMax: 1000)
        #expect((0...4).map { s.k(m: $0) } == [1, 1, 1, 1, 1])
        #expect((5...8).map { s.k(m: $0) } == [2, 4, 8, 16])
        #expect(s.k(m: 100) == 1000)
        #expect(Backup.Schedule(cExponent: 0).k(m: 3) == 8)
        #expect(Backup.Order.isBackup(2) && !Backup.Order.isBackup(3))
        #expect(Backup.Order.backupIndex(2) == 0 && Backup.Order.backupIndex(6) == 2)
    }

    /// Spec §13.1: requests ordered before a valid init history are ignored; the first with one installs it; the
    /// next k commit; later ones abort with an abort history signed by each replica that verifies, and f+1 of them
    /// make the init history of next(i).
    @Test(arguments: [UInt32(1), 2])
    func section13_1_commitsExactlyKThenAborts(f: UInt32) throws {
        let keys = try ChainKeys.generate(f: f, clients: 4)
        let cluster = try BackupCluster(f: f, keys: keys, k: 3)
        let inIH = [ChainRequest(client: 1, timestamp: 1, op: [5])]
        let ih = try chainInitHistory(keys: keys, instance: 2, requests: inIH)
        try cluster.submit(client: 0, timestamp: 1, op: [1])
        #expect(cluster.replies.allSatisfy { $0.result == [Backup.Outcome.ignored.rawValue] })
        #expect(cluster.instances.allSatisfy { $0.phase == .waiting })
        try cluster.submit(client: 0, timestamp: 2, op: [1], initHistory: ih)
        for t in 3...6 as ClosedRange<UInt64> { try cluster.submit(client: 2, timestamp: t, op: [2]) }
        for (q, instance) in cluster.instances.enumerated() {
            #expect(instance.phase == .aborting)
            #expect(instance.committedCount == 3)
            #expect(cluster.machines[q].installed == ih)
            #expect(cluster.machines[q].executed.map(\.position) == [2, 3, 4])
            #expect(instance.entries.map(\.sn) == [1, 2, 3, 4])
        }
        // Requests 2.5 and 2.6 aborted at every replica, each with a signed history.
        let forFive = cluster.aborts.filter { $0.timestamp == 5 }
        #expect(forFive.count == Int(cluster.n))
        let hashRing = try keys.keyRing(for: .client(2))
        // 4 positions, under half of history_max (64): the whole sequence from the base IH had (a replica that did not
        // execute these commits can still enter the next Chain instance and FETCH them).
        #expect(forFive.allSatisfy {
            $0.verify(with: hashRing) && $0.nextInstance == 3 && $0.checkpointNumber == 0 && $0.entries.count == 4
        })
        var collector = Backup.AbortCollector(f: f, checkpointInterval: 4, instance: 2, client: 2, timestamp: 5)
        var next: ChainInitHistory?
        for (k, h) in forFive.enumerated() {
            let out = try collector.add(h, keyRing: hashRing)
            if k < Int(f) { #expect(out == nil) } else if next == nil { next = out }
        }
        let built = try #require(next)
        #expect(built.instance == 3 && built.proof.count == Int(f) + 1 && built.entries.count == 4)
        // The entries' H chain continues the init history's.
        #expect(built.historyDigests(keyRing: hashRing) == built.entries.map(\.historyDigest))
    }

    /// Spec §13.1, the design choice of [T] footnote 10: once a Backup's executed sequence holds more than half of
    /// history_max, its abort history starts at the last Chain checkpoint boundary the sequence reaches (H there as
    /// the base digest) and holds only the positions after it, so the next Chain instance does not enter with a full
    /// history while a replica is down. The H chain of the entries continues from the new base, and a Chain replica
    /// of next(i) installs it from there.
    @Test(arguments: [UInt32(1), 2])
    func section13_1_abortHistoryStartsAtTheLastCheckpointBoundary(f: UInt32) throws {
        let keys = try ChainKeys.generate(f: f, clients: 4)
        let cluster = try BackupCluster(f: f, keys: keys, k: 33)
        let inIH = [ChainRequest(client: 1, timestamp: 1, op: [5]), ChainRequest(client: 1, timestamp: 2, op: [6])]
        try cluster.submit(client: 0, timestamp: 1, op: [1],
                           initHistory: try chainInitHistory(keys: keys, instance: 2, requests: inIH))
        for t in 2...35 as ClosedRange<UInt64> { try cluster.submit(client: 2, timestamp: t, op: [UInt8(t)]) }
        // IH's 2 positions and 33 commits: 1…35, more than half of history_max (64); the last boundary (CHK 4) is 32.
        let instance = cluster.instances[0]
        #expect(instance.phase == .aborting && instance.entries.map(\.sn) == Array(1...35))
        let ring = try keys.keyRing(for: .client(2))
        let histories = cluster.aborts.filter { $0.client == 2 && $0.timestamp == 35 }.sorted { $0.replica < $1.replica }
        #expect(histories.count == Int(cluster.n))
        #expect(histories.allSatisfy {
            $0.checkpointNumber == 8 && $0.checkpointDigest == instance.entries[31].historyDigest
                && $0.entries.map(\.sn) == [33, 34, 35] && $0.entries == Array(instance.entries[32...])
        })
        var collector = Backup.AbortCollector(f: f, checkpointInterval: 4, instance: 2, client: 2, timestamp: 35)
        var next: ChainInitHistory?
        for h in histories where next == nil { next = try collector.add(h, keyRing: ring) }
        let built = try #require(next)
        #expect(built.base == 8 && built.historyDigests(keyRing: ring) == built.entries.map(\.historyDigest))
        let replicaRing = try keys.keyRing(for: .replica(1))
        let core = try ChainCore(ChainCore.settings(f: f, self: 1, instance: 3, clients: 4, checkpointInterval: 4,
                                                    crypto: replicaRing.crypto), keyRing: replicaRing)
        try core.expectBackupProof()
        #expect(try core.install(built) == .installed)
        #expect(core.initRange == 33...35)
    }

    /// A retransmitted request after the k commits gets the same outcome (PBFT's reply table): an abort again.
    /// A request the previous instance ordered (it is in IH), or executed before IH's base, sent again to Backup: not
    /// executed a second time, and every replica's reply carries the outcome and the reply the state has for it, so
    /// f+1 matching replies commit it with its reply (the engine's client needs the reply, not only the outcome).
    @Test func section13_1_requestExecutedBeforeRepliesWithItsReply() throws {
        let keys = try ChainKeys.generate(f: 1, clients: 4)
        let cluster = try BackupCluster(f: 1, keys: keys, k: 4)
        let ih = try chainInitHistory(keys: keys, instance: 2, requests: [ChainRequest(client: 1, timestamp: 7, op: [5])])
        try cluster.submit(client: 1, timestamp: 7, op: [5], initHistory: ih)
        #expect(cluster.replies.count == Int(cluster.n))
        #expect(cluster.replies.allSatisfy { $0.result == [Backup.Outcome.inInitHistory.rawValue, 0xEE, 7] })
        #expect(cluster.machines.allSatisfy { $0.executed.isEmpty })
        #expect(cluster.instances.allSatisfy { $0.committedCount == 0 })
        // A request the state executed before IH's base (its reply never reached the client): answered, not executed.
        for machine in cluster.machines { machine.executedBefore.insert([2, 3]) }
        cluster.replies.removeAll()
        try cluster.submit(client: 2, timestamp: 3, op: [9])
        #expect(cluster.replies.count == Int(cluster.n))
        #expect(cluster.replies.allSatisfy { $0.result == [Backup.Outcome.inInitHistory.rawValue, 0xEE, 3] })
        #expect(cluster.machines.allSatisfy { $0.executed.isEmpty })
        // A new request commits as usual.
        try cluster.submit(client: 2, timestamp: 4, op: [9])
        #expect(cluster.machines.allSatisfy { $0.executed.map(\.request.timestamp) == [4] })
    }

    @Test func abortedRequestRetransmittedAbortsAgain() throws {
        let keys = try ChainKeys.generate(f: 1, clients: 4)
        let cluster = try BackupCluster(f: 1, keys: keys, k: 1)
        try cluster.submit(client: 0, timestamp: 1, op: [1], initHistory: chainInitHistory(keys: keys, instance: 2, requests: []))
        try cluster.submit(client: 1, timestamp: 1, op: [1])
        try cluster.submit(client: 1, timestamp: 1, op: [1])
        #expect(cluster.aborts.filter { $0.client == 1 }.count == 8)
        #expect(cluster.machines.allSatisfy { $0.executed.count == 1 })
    }

    /// The Chain instance after a Backup enters from f+1 identical signed Backup abort histories, and refuses a short
    /// proof, a forged signature, histories that differ, another next(i), and a Chain-kind proof.
    @Test(arguments: [UInt32(1), 2])
    func section13_1_chainEnteredFromBackupProof(f: UInt32) throws {
        let keys = try ChainKeys.generate(f: f, clients: 4)
        let cluster = try BackupCluster(f: f, keys: keys, k: 2)
        try cluster.submit(client: 0, timestamp: 1, op: [1], initHistory: chainInitHistory(keys: keys, instance: 2, requests: []))
        try cluster.submit(client: 1, timestamp: 1, op: [2])
        try cluster.submit(client: 1, timestamp: 2, op: [3])
        let histories = cluster.aborts.filter { $0.client == 1 && $0.timestamp == 2 }.sorted { $0.replica < $1.replica }
        let proof = Array(histories.prefix(Int(f) + 1))
        let h = proof[0]
        let ih = ChainInitHistory(instance: 3, base: h.checkpointNumber, baseDigest: h.checkpointDigest, entries: h.entries, proof: proof)
        func chain(_ position: UInt32 = 1) throws -> ChainCore {
            let ring = try keys.keyRing(for: .replica(position))
            let core = try ChainCore(ChainCore.settings(f: f, self: position, instance: 3, clients: 4, checkpointInterval: 4,
                                                        crypto: ring.crypto), keyRing: ring)
            try core.expectBackupProof()
            return core
        }
        var short = ih
        short.proof.removeLast()
        #expect(throws: ChainInitRefusal.proofSize) { try chain().install(short) }
        var forged = ih
        forged.proof[0] = forged.proof[0].resigned(with: try keys.keyRing(for: .replica(proof[1].replica)))
        #expect(throws: ChainInitRefusal.signature) { try chain().install(forged) }
        var different = ih
        different.proof[1].entries.removeLast()
        different.proof[1] = different.proof[1].resigned(with: try keys.keyRing(for: .replica(proof[1].replica)))
        #expect(throws: ChainInitRefusal.mismatch) { try chain().install(different) }
        var twice = ih
        twice.proof[1] = twice.proof[0]
        #expect(throws: ChainInitRefusal.signer) { try chain().install(twice) }
        var longer = ih
        longer.entries.removeLast()
        #expect(throws: ChainInitRefusal.mismatch) { try chain().install(longer) }
        // A Chain replica that does not expect a Backup proof refuses f+1 histories (it wants 2f+1 ABORTs).
        let ring = try keys.keyRing(for: .replica(2))
        let plain = try ChainCore(ChainCore.settings(f: f, self: 2, instance: 3, clients: 4, checkpointInterval: 4,
                                                     crypto: ring.crypto), keyRing: ring)
        #expect(throws: ChainInitRefusal.proofSize) { try plain.install(ih) }
        // The genuine proof installs: LH := the Backup's history, positions continued.
        let core = try chain()
        #expect(try core.install(ih) == .installed)
        #expect(core.initRange == 1...2)
    }

    /// Backup checks a Chain init history exactly as a Chain replica does: a forged or short proof is refused and
    /// ordering it changes nothing (the request is ignored).
    @Test func backupRefusesForgedChainInitHistory() throws {
        let keys = try ChainKeys.generate(f: 1, clients: 4)
        let cluster = try BackupCluster(f: 1, keys: keys, k: 2)
        let genuine = try chainInitHistory(keys: keys, instance: 2, requests: [ChainRequest(client: 1, timestamp: 1, op: [4])])
        var short = genuine
        short.proof.removeLast()
        #expect(throws: ChainInitRefusal.proofSize) { try cluster.instances[0].install(short) }
        var wrongNext = genuine
        for k in wrongNext.proof.indices {
            wrongNext.proof[k].nextInstance = 5
            wrongNext.proof[k] = wrongNext.proof[k].resigned(with: try keys.keyRing(for: .replica(wrongNext.proof[k].replica)))
        }
        #expect(throws: ChainInitRefusal.next) { try cluster.instances[0].install(wrongNext) }
        var tampered = genuine
        tampered.entries[0].timestamp = 9
        #expect(throws: ChainInitRefusal.mismatch) { try cluster.instances[0].install(tampered) }
        var forged = genuine
        forged.proof[2] = forged.proof[2].resigned(with: try keys.keyRing(for: .replica(3)))
        #expect(throws: ChainInitRefusal.signature) { try cluster.instances[0].install(forged) }
        try cluster.submit(client: 0, timestamp: 1, op: [1], initHistory: forged)
        #expect(cluster.instances.allSatisfy { $0.phase == .waiting })
        #expect(try cluster.instances[0].install(genuine) == .installed)
    }

    /// The planted bug commits k+1: the count the tests and the simulator check catches it.
    @Test func plantedCommitBeyondKIsVisible() throws {
        let keys = try ChainKeys.generate(f: 1, clients: 4)
        let cluster = try BackupCluster(f: 1, keys: keys, k: 1, fault: .commitBeyondK)
        try cluster.submit(client: 0, timestamp: 1, op: [1], initHistory: chainInitHistory(keys: keys, instance: 2, requests: []))
        try cluster.submit(client: 1, timestamp: 1, op: [1])
        #expect(cluster.instances.allSatisfy { $0.committedCount == 2 })
    }
}

@Suite("BackupTests: Aliph's composition")
struct AliphCompositionTests {
    /// Chain 1 → Backup 2 → Chain 3 through AbstractReplica: Backup is entered with a Chain init history (2f+1
    /// ABORTs), Chain 3 with the f+1 Backup abort histories, and each refuses the other kind of proof.
    @Test func section13_1_chainBackupChain() throws {
        let keys = try ChainKeys.generate(f: 1, clients: 4)
        let cluster = try BackupCluster(f: 1, keys: keys, k: 1)
        let enteringBackup = try chainInitHistory(keys: keys, instance: 2, requests: [ChainRequest(client: 1, timestamp: 1, op: [4])])
        try cluster.submit(client: 0, timestamp: 1, op: [1], initHistory: enteringBackup)
        try cluster.submit(client: 2, timestamp: 1, op: [2])
        let histories = cluster.aborts.filter { $0.client == 2 }.sorted { $0.replica < $1.replica }
        var collector = Backup.AbortCollector(f: 1, checkpointInterval: 4, instance: 2, client: 2, timestamp: 1)
        var enteringChain: ChainInitHistory?
        for h in histories where enteringChain == nil { enteringChain = try collector.add(h, keyRing: keys.keyRing(for: .client(2))) }
        let backToChain = try #require(enteringChain)

        let ring = try keys.keyRing(for: .replica(1))
        let chainSettings = ChainCore.settings(f: 1, self: 1, clients: 4, checkpointInterval: 4, crypto: ring.crypto)
        let factory = AliphInstanceFactory(chain: ChainInstanceFactory(settings: chainSettings, keyRing: ring),
                                           pbft: PBFT.Settings(f: 1, replica: 1, clientsMax: 4),
                                           schedule: Backup.Schedule(cExponent: 0), machine: { _ in SumMachine() })
        let replica = try AbstractReplica(factory: factory)
        #expect(replica.current is ChainCore)
        // Backup 2 refuses the Backup proof (it wants 2f+1 Chain ABORTs of instance 1).
        var wrongKind = backToChain
        wrongKind.instance = 2
        #expect(throws: AbstractEnterError.refused(.proofSize)) { try replica.enter(wrongKind) }
        try replica.enter(enteringBackup)
        let backup = try #require(replica.current as? Backup.Instance)
        #expect(backup.instanceNumber == 2 && backup.nextInstanceNumber == 3 && backup.k == 1)
        // Chain 3 refuses 2f+1 Chain ABORTs (it wants f+1 Backup histories), then installs the Backup proof.
        var chainKind = try chainInitHistory(keys: keys, instance: 3, requests: [])
        chainKind.instance = 3
        #expect(throws: AbstractEnterError.refused(.proofSize)) { try replica.enter(chainKind) }
        try replica.enter(backToChain)
        let chain = try #require(replica.current as? ChainCore)
        #expect(chain.instanceNumber == 3)
        #expect(chain.initRange == 1...2)
        #expect(try factory.makeBackup(4).k == 2)
    }
}
