import RingCastBackup
import RingCastChain

/// The simulated service under Backup: the running state ChainSimApplication keeps, so a reply depends on the order.
final class BackupSimMachine: BackupStateMachine {
    var state: UInt64 = 0
    var installs = 0

    /// D10 in the simulator: the state at the end of IH is a fold over its request digests (the bodies behind them
    /// are the Chain instance's business; FETCH is not simulated here).
    func install(_ initHistory: ChainInitHistory) {
        installs += 1
        for e in initHistory.entries { _ = ChainSimApplication.apply(&state, Array(e.requestDigest.bytes.prefix(8))) }
    }

    func execute(position: UInt64, request: ChainRequest) -> [UInt8] { ChainSimApplication.apply(&state, request.op) }
}

/// A client of the Backup instance: sequential, one outstanding request, every request to every replica.
final class BackupSimClient {
    let id: UInt32
    let ring: ChainKeyRing
    var nextTimestamp: UInt64 = 1
    var remaining: Int
    var outstanding: (timestamp: UInt64, op: [UInt8], sentAt: UInt64, initHistory: ChainInitHistory?)?
    var replies: [UInt32: PBFT.Reply] = [:]
    var collector: Backup.AbortCollector?
    var commits = 0
    /// (timestamp, result) of what committed, and the init history of next(i) it left with.
    var committed: [(timestamp: UInt64, result: [UInt8])] = []
    var exit: ChainInitHistory?
    /// The first request carries the init history (C1+); so does a request resent after an "ignored" reply.
    var carryInitHistory = true

    init(id: UInt32, ring: ChainKeyRing, requests: Int) {
        self.id = id
        self.ring = ring
        remaining = requests
    }

    var finished: Bool { exit != nil || (remaining == 0 && outstanding == nil) }
}

/// One seeded run (BackupSimulation): replicas, clients and FIFO links with drawn delays, stepped tick by tick.
final class BackupSimWorld {
    enum Message {
        case event(PBFT.Event)
        case reply(PBFT.Reply)
        case abort(ChainAbort)
    }

    struct Link {
        var queue: [(at: UInt64, message: Message)] = []
        var head = 0
        var lastAt: UInt64 = 0
    }

    let scenario: BackupSimulation.Scenario
    let plantedBug: BackupSimulation.PlantedBug
    var prng: MembershipPrng
    let keys: ChainKeys
    let rings: [ChainKeyRing]
    var instances: [Backup.Instance]
    var machines: [BackupSimMachine]
    var clients: [BackupSimClient]
    let entering: ChainInitHistory
    var links: [Int: Link] = [:]
    var now: UInt64 = 0
    /// Every request a client sent (the equivocating primary picks its second request from them).
    var pool: [PBFT.ClientRequest] = []
    var invoked: Set<ChainSimWorld.Key> = []
    /// sn → the digest the equivocating replicas told group B.
    var equivocations: [UInt64: (digest: ChainDigest, request: PBFT.ClientRequest)] = [:]
    var exits: [ChainInitHistory] = []
    /// H at a position → every request at or below it, over what correct replicas executed (in this and, for the
    /// composition run, earlier instances): an abort history summarises its base by H, so Abort Order looks it up.
    var historyKeys: [ChainDigest: Set<ChainSimWorld.Key>] = [:]
    var chainInstalls = 0
    var violations: [String] = []
    static let ticksMax: UInt64 = 30_000
    static let chainCheckpointInterval: UInt32 = 4
    static let historyMax: UInt32 = 256

    /// The Backup instance number this world runs (2 in a single-instance run).
    let instanceNumber: UInt64

    /// A run over instances made elsewhere (the composition run: each replica's AbstractReplica made them).
    init(seed: UInt64, scenario: BackupSimulation.Scenario, plantedBug: BackupSimulation.PlantedBug, keys: ChainKeys,
         rings: [ChainKeyRing], instances: [Backup.Instance], machines: [BackupSimMachine], clients: [BackupSimClient],
         entering: ChainInitHistory, instanceNumber: UInt64) {
        self.scenario = scenario
        self.plantedBug = plantedBug
        prng = MembershipPrng(seed: seed ^ 0x5eed_bac0)
        self.keys = keys
        self.rings = rings
        self.instances = instances
        self.machines = machines
        self.clients = clients
        self.entering = entering
        self.instanceNumber = instanceNumber
    }

    convenience init(seed: UInt64, scenario: BackupSimulation.Scenario, plantedBug: BackupSimulation.PlantedBug) throws(ChainError) {
        let n = 3 * scenario.f + 1
        let keys = try ChainKeys.generate(f: scenario.f, clients: UInt32(scenario.clients) + 1)
        var rings: [ChainKeyRing] = []
        for r in 0..<n { rings.append(try keys.keyRing(for: .replica(r))) }
        let entering = try Self.enteringHistory(keys: keys, rings: rings, length: scenario.initHistoryLength)
        let pbftFault: PBFT.TestFault = plantedBug == .prepareQuorumShort ? .prepareQuorumShort : .none
        let wrapperFault: Backup.WrapperFault = plantedBug == .commitBeyondK ? .commitBeyondK : .none
        var instances: [Backup.Instance] = []
        var machines: [BackupSimMachine] = []
        for r in 0..<n {
            let machine = BackupSimMachine()
            machines.append(machine)
            let settings = PBFT.Settings(f: scenario.f, replica: r, checkpointInterval: 8, logWindow: 32,
                                         clientsMax: UInt32(scenario.clients) + 1, viewChangeTimeoutTicks: 80, testFault: pbftFault)
            do {
                instances.append(try Backup.Instance(
                    instance: 2, k: scenario.k, settings: settings, keyRing: rings[Int(r)],
                    chainCheckpointInterval: Self.chainCheckpointInterval, historyMax: Self.historyMax, machine: machine,
                    fault: wrapperFault))
            } catch {
                throw .code(-22)
            }
        }
        // Client 0 is the one of the previous instance whose requests fill the init history; the simulated ones
        // are 1 … clients.
        var clients: [BackupSimClient] = []
        for c in 1...UInt32(scenario.clients) {
            clients.append(BackupSimClient(id: c, ring: try keys.keyRing(for: .client(c)), requests: scenario.requestsPerClient))
        }
        self.init(seed: seed, scenario: scenario, plantedBug: plantedBug, keys: keys, rings: rings, instances: instances,
                  machines: machines, clients: clients, entering: entering, instanceNumber: 2)
    }

    /// IH for instance 2: what P3 extracts from 2f+1 signed ABORTs of Chain instance 1 whose replicas logged
    /// `length` requests of client 0 (signed by each replica with its own key, as rc_chain_on_panic does).
    static func enteringHistory(keys: ChainKeys, rings: [ChainKeyRing], length: Int) throws(ChainError) -> ChainInitHistory {
        var h = ChainDigest.zero
        var entries: [ChainAbort.Entry] = []
        for k in 0..<length {
            let d = ChainDigest.request(client: 0, timestamp: UInt64(k + 1), op: [UInt8(k)], keyRing: rings[0])
            h = h.extended(sn: UInt64(k + 1), request: d, keyRing: rings[0])
            entries.append(ChainAbort.Entry(sn: UInt64(k + 1), client: 0, timestamp: UInt64(k + 1), requestDigest: d, historyDigest: h))
        }
        let proof = (0..<(2 * keys.f + 1)).map { r in
            ChainAbort.backupHistory(replica: r, client: 0, timestamp: 1000, instance: 1, base: 0, baseDigest: .zero,
                                     entries: entries, keyRing: rings[Int(r)])
        }
        guard let ih = ChainInitHistory.extract(proof: proof, f: keys.f, checkpointInterval: chainCheckpointInterval, instance: 2)
        else { throw .code(-22) }
        return ih
    }

    var n: UInt32 { 3 * scenario.f + 1 }
    var f: Int { Int(scenario.f) }

    func faulty(_ r: UInt32) -> Bool { scenario.faulty.contains(r) }
    var byzantine: Bool { [.equivocate, .forgedViewChange, .forgedAbortHistory].contains(scenario.behaviour) }
    func correct(_ r: UInt32) -> Bool { !(byzantine && faulty(r)) }

    func down(_ r: UInt32) -> Bool {
        guard scenario.behaviour == .crash || scenario.behaviour == .crashPrimary, faulty(r) else { return false }
        return now >= scenario.crashAt && now < scenario.crashAt + scenario.crashTicks
    }

    // ---- links: endpoint ids are replicas 0 … n−1, clients n + id -------------------------------------------

    func send(_ message: Message, from: Int, to: Int) {
        let key = from * 1024 + to
        var link = links[key] ?? Link()
        let at = max(now + prng.ticks(1...scenario.delayMaxTicks), link.lastAt)
        link.lastAt = at
        link.queue.append((at, message))
        links[key] = link
    }

    func deliver() {
        for key in links.keys.sorted() {
            let to = key % 1024
            while let link = links[key], link.head < link.queue.count, link.queue[link.head].at <= now {
                links[key]!.head += 1
                handle(link.queue[link.head].message, to: to)
            }
            if let link = links[key], link.head > 64 {
                links[key]!.queue.removeFirst(link.head)
                links[key]!.head = 0
            }
        }
    }

    func handle(_ message: Message, to: Int) {
        switch message {
        case .event(let event):
            let r = UInt32(to)
            guard !down(r) else { return } // lost while crashed
            step(r, event)
        case .reply(let reply):
            clientReply(clients[to - Int(n) - 1], reply)
        case .abort(let history):
            clientAbort(clients[to - Int(n) - 1], history)
        }
    }

    /// One event at replica r and its actions, with the faulty replicas' messages altered on the way out.
    func step(_ r: UInt32, _ event: PBFT.Event) {
        let actions: [Backup.Action]
        do { actions = try instances[Int(r)].handle(event) } catch { return } // refused and counted by the core
        for a in actions {
            switch a {
            case .broadcast(let e): for p in 0..<n where p != r { send(.event(.message(outgoing(e, from: r, to: p))), from: Int(r), to: Int(p)) }
            case .send(let to, let e): send(.event(.message(outgoing(e, from: r, to: to))), from: Int(r), to: Int(to))
            case .reply(let reply): send(.reply(reply), from: Int(r), to: Int(n) + Int(reply.client))
            case .abort(let history):
                send(.abort(byzantine && faulty(r) ? forged(history, by: r) : history), from: Int(r), to: Int(n) + Int(history.client))
            case .installed, .executed, .enteredView: break
            }
        }
    }

    // ---- Byzantine replicas, around correct cores ---------------------------------------------------------

    /// Group B of the equivocation: the last f replicas (all correct); the primary tells them another request.
    func inGroupB(_ p: UInt32) -> Bool { p >= n - scenario.f }

    func outgoing(_ e: PBFT.Envelope, from r: UInt32, to p: UInt32) -> PBFT.Envelope {
        guard scenario.behaviour == .equivocate, faulty(r), inGroupB(p) else { return e }
        switch e.message {
        case .prePrepare(let pp) where pp.view == 0 && r == 0:
            guard !pp.requests.isEmpty else { return e }
            if equivocations[pp.sn] == nil {
                // Group B gets a batch of one request the true batch does not hold.
                let key = { (c: PBFT.ClientRequest) in "\(c.request.client).\(c.request.timestamp)" }
                let told = Set(pp.requests.map(key))
                guard let y = pool.last(where: { !told.contains(key($0)) }) else { return e }
                equivocations[pp.sn] = (PBFT.requestDigest(y.request, keyRing: rings[0]), y)
            }
            let (d, y) = equivocations[pp.sn]!
            return PBFT.Envelope.sign(.prePrepare(PBFT.PrePrepare(view: 0, sn: pp.sn, digest: d, request: y)), by: 0, keyRing: rings[0])
        case .prepare(let v) where v.view == 0:
            guard let (d, _) = equivocations[v.sn] else { return e }
            return PBFT.Envelope.sign(.prepare(PBFT.Vote(view: 0, sn: v.sn, digest: d)), by: r, keyRing: rings[Int(r)])
        case .commit(let v) where v.view == 0:
            guard let (d, _) = equivocations[v.sn] else { return e }
            return PBFT.Envelope.sign(.commit(PBFT.Vote(view: 0, sn: v.sn, digest: d)), by: r, keyRing: rings[Int(r)])
        default:
            return e
        }
    }

    /// An abort history a Byzantine replica altered (its last entry dropped, or a made-up one added) and signed.
    func forged(_ history: ChainAbort, by r: UInt32) -> ChainAbort {
        guard scenario.behaviour == .forgedAbortHistory else { return history }
        var h = history
        if h.entries.isEmpty {
            h.entries = [ChainAbort.Entry(sn: h.checkpointNumber * UInt64(Self.chainCheckpointInterval) + 1, client: 0,
                                          timestamp: 999, requestDigest: .zero, historyDigest: .zero)]
        } else {
            h.entries.removeLast()
        }
        return h.resigned(with: rings[Int(r)])
    }

    /// A VIEW-CHANGE with a forged prepared certificate: a PRE-PREPARE under the primary's name and PREPAREs under
    /// other replicas' names, all signed with the faulty replica's own key.
    func forgeViewChange(_ r: UInt32) {
        guard let y = pool.last else { return }
        let view = instances[Int(r)].replica.view
        let ring = rings[Int(r)]
        let d = PBFT.requestDigest(y.request, keyRing: ring)
        let sn = instances[Int(r)].replica.lowWaterMark + 1
        let pp = PBFT.Envelope(sender: PBFT.primary(view, n: n), message: .prePrepare(PBFT.PrePrepare(view: view, sn: sn, digest: d, request: y)),
                               signature: PBFT.Envelope.sign(.prePrepare(PBFT.PrePrepare(view: view, sn: sn, digest: d, request: y)), by: r, keyRing: ring).signature)
        let vote = PBFT.Message.prepare(PBFT.Vote(view: view, sn: sn, digest: d))
        let prepares = (0..<n).filter { $0 != PBFT.primary(view, n: n) }.prefix(2 * f).map { q in
            PBFT.Envelope(sender: q, message: vote, signature: PBFT.Envelope.sign(vote, by: r, keyRing: ring).signature)
        }
        let vc = PBFT.ViewChange(newView: view + 1, stableSn: 0, stableDigest: .zero, checkpointProof: [],
                                 prepared: [PBFT.PreparedCertificate(prePrepare: pp, prepares: Array(prepares))])
        let e = PBFT.Envelope.sign(.viewChange(vc), by: r, keyRing: ring)
        for p in 0..<n where p != r { send(.event(.message(e)), from: Int(r), to: Int(p)) }
    }

    // ---- clients -----------------------------------------------------------------------------------------

    func clientStep(_ c: BackupSimClient) {
        guard c.exit == nil else { return }
        if let o = c.outstanding {
            if now - o.sentAt > 300 { invoke(c, timestamp: o.timestamp, op: o.op, initHistory: o.initHistory) } // retransmit
            return
        }
        guard c.remaining > 0, prng.chance(30) else { return }
        c.remaining -= 1
        let t = c.nextTimestamp
        c.nextTimestamp += 1
        invoke(c, timestamp: t, op: [UInt8(truncatingIfNeeded: c.id), UInt8(truncatingIfNeeded: t)],
               initHistory: c.carryInitHistory ? entering : nil)
        c.carryInitHistory = false
    }

    func invoke(_ c: BackupSimClient, timestamp: UInt64, op: [UInt8], initHistory: ChainInitHistory?) {
        let request = PBFT.ClientRequest(PBFT.Request(client: c.id, timestamp: timestamp, op: op, initHistory: initHistory),
                                         keyRing: c.ring, n: n)
        if c.outstanding?.timestamp != timestamp { c.replies = [:]; c.collector = nil }
        c.outstanding = (timestamp, op, now, initHistory)
        pool.append(request)
        if pool.count > 64 { pool.removeFirst() }
        invoked.insert(ChainSimWorld.Key(client: c.id, timestamp: timestamp))
        for r in 0..<n { send(.event(.request(request)), from: Int(n) + Int(c.id), to: Int(r)) }
    }

    func clientReply(_ c: BackupSimClient, _ reply: PBFT.Reply) {
        guard let o = c.outstanding, reply.timestamp == o.timestamp, reply.verify(keyRing: c.ring) else { return }
        c.replies[reply.replica] = reply
        let matching = c.replies.values.filter { $0.result == reply.result }.count
        guard matching >= f + 1, let outcome = reply.result.first.flatMap(Backup.Outcome.init(rawValue:)) else { return }
        c.outstanding = nil
        c.replies = [:]
        switch outcome {
        case .committed, .inInitHistory:
            c.commits += 1
            c.committed.append((o.timestamp, reply.result))
        case .ignored:
            // Ordered before any init history: invoke again with it, under a new timestamp.
            let t = c.nextTimestamp
            c.nextTimestamp += 1
            invoke(c, timestamp: t, op: o.op, initHistory: entering)
        case .aborted:
            break // aborts come as signed histories
        }
    }

    func clientAbort(_ c: BackupSimClient, _ history: ChainAbort) {
        guard let o = c.outstanding, history.timestamp == o.timestamp, c.exit == nil else { return }
        if c.collector == nil {
            c.collector = Backup.AbortCollector(f: scenario.f, checkpointInterval: Self.chainCheckpointInterval, instance: instanceNumber,
                                                client: c.id, timestamp: o.timestamp)
        }
        guard let ih = try? c.collector!.add(history, keyRing: c.ring) else { return }
        c.exit = ih
        c.outstanding = nil
        exits.append(ih)
    }

    // ---- the run -------------------------------------------------------------------------------------------

    func run() {
        while now < Self.ticksMax {
            deliver()
            for r in 0..<n where !down(r) { step(r, .tick) }
            if scenario.behaviour == .forgedViewChange && now % 50 == 25 {
                for r in scenario.faulty { forgeViewChange(r) }
            }
            for c in clients { clientStep(c) }
            if clients.allSatisfy(\.finished) { break }
            now += 1
        }
    }
}
