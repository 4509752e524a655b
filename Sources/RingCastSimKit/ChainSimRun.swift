internal import CRingCastCore
import Glibc
import RingCastChain

/// One seeded run: n replicas (each a switching composer over real Chain cores), clients and FIFO links, stepped
/// tick by tick. A Byzantine replica runs correct cores; the simulator alters what it sends (ChainSimByzantine.swift).
final class ChainSimWorld {
    let scenario: ChainSimulation.Scenario
    let plantedBug: ChainSimulation.PlantedBug
    var prng: MembershipPrng
    let nodes: [ChainSimNode]
    let clients: [ChainSimClient]
    /// A key ring for the checkers' digests (digests need no key; any principal's ring computes them).
    let digestRing: ChainKeyRing
    var links: [ChainSimLink] = []
    /// Per sender, receiver and channel (0 data, 1 control): CHECKPOINT, PANIC, ABORT and FETCH travel apart from
    /// requests, INITs and batches, so a batch the receiver holds back (-EAGAIN) never blocks the votes that would free it.
    var linkIndex: [ChainSimEndpoint: [ChainSimEndpoint: [Int: Int]]] = [:]
    var now: UInt64 = 0
    var invoked: [Key: [UInt8]] = [:]
    var commits: [ChainSimCommit] = []
    var panics = 0
    var invalidAborts = 0
    var checkpointsLost = 0
    var switches = 0
    var forgedInits = 0
    var lyingFetches = 0
    var stateTransfers = 0
    var wipedReplicas = 0
    /// What correct replicas executed, by H: the checkers follow any history back through it (Commit, Abort and
    /// Init Order), whatever rollbacks the replicas did since.
    var ledger: [ChainDigest: LedgerEntry] = [:]
    /// (sn, H, reply) computed by correct replicas (after a state transfer a member of Σlast answers with a reply
    /// another correct replica computed over the same history).
    var computed: Set<ReplyKey> = []
    /// Disagreements between the simulator's H and a core's (there must be none).
    var digestMismatches: [String] = []
    var trace: [String]?
    static let ticksMax: UInt64 = 400_000

    struct Key: Hashable {
        var client: UInt32
        var timestamp: UInt64
    }

    struct LedgerEntry {
        var sn: UInt64
        var parent: ChainDigest
        var request: ChainDigest
        var client: UInt32
        var timestamp: UInt64
    }

    struct ReplyKey: Hashable {
        var sn: UInt64
        var history: ChainDigest
        var reply: [UInt8]
    }

    init(seed: UInt64, scenario: ChainSimulation.Scenario, plantedBug: ChainSimulation.PlantedBug, trace: Bool) throws(ChainError) {
        self.scenario = scenario
        self.plantedBug = plantedBug
        prng = MembershipPrng(seed: seed ^ 0x9e37_79b9_7f4a_7c15)
        let byzantineClient = scenario.behaviour == .headOnlyClient
        let clientCount = scenario.clients + (byzantineClient ? 1 : 0)
        let keys = try ChainKeys.generate(f: scenario.f, clients: UInt32(clientCount))
        var nodes: [ChainSimNode] = []
        for position in 0..<scenario.nodes {
            let settings = ChainCore.settings(
                f: scenario.f, self: UInt32(position), clients: UInt32(clientCount), batchCount: scenario.batchCount,
                checkpointInterval: scenario.checkpointInterval, historyMax: scenario.historyMax,
                outBatches: scenario.outBatches, checkpointRetransmitTicks: 20, crypto: rc_crypto())
            let ring = try keys.keyRing(for: .replica(UInt32(position)))
            let composer = try AbstractReplica(factory: ChainInstanceFactory(settings: settings, keyRing: ring),
                                               retained: Int(scenario.instancesMax))
            nodes.append(ChainSimNode(position: position, composer: composer, keyRing: ring))
        }
        self.nodes = nodes
        var clients: [ChainSimClient] = []
        for id in 0..<clientCount {
            let auth = ChainClientAuthenticator(keyRing: try keys.keyRing(for: .client(UInt32(id))), f: scenario.f,
                                                client: UInt32(id))
            clients.append(ChainSimClient(
                id: id, byzantine: byzantineClient && id == clientCount - 1, auth: auth,
                collector: AbstractAbortCollector(f: scenario.f, checkpointInterval: scenario.checkpointInterval),
                requests: scenario.requestsPerClient))
        }
        self.clients = clients
        digestRing = try keys.keyRing(for: .client(0))
        self.trace = trace ? [] : nil
    }

    var n: Int { nodes.count }
    var f: Int { Int(scenario.f) }
    var chk: UInt64 { UInt64(scenario.checkpointInterval) }

    func isByzantine(_ position: Int) -> Bool { scenario.behaviour.byzantineReplica && position == scenario.byzantine }

    func note(_ line: @autoclosure () -> String) {
        if trace != nil { trace!.append("t=\(now) \(line())") }
    }

    func paused(_ node: ChainSimNode) -> Bool { now < node.pausedUntil }

    // ---- links --------------------------------------------------------------------------------------

    func linkID(_ from: ChainSimEndpoint, _ to: ChainSimEndpoint, channel: Int = 0) -> Int {
        if let id = linkIndex[from]?[to]?[channel] { return id }
        links.append(ChainSimLink(from: from, to: to))
        linkIndex[from, default: [:]][to, default: [:]][channel] = links.count - 1
        return links.count - 1
    }

    func send(_ message: ChainSimMessage, from: ChainSimEndpoint, to: ChainSimEndpoint) {
        if case .checkpoint = message, scenario.checkpointLossPercent > 0, prng.chance(scenario.checkpointLossPercent) {
            checkpointsLost += 1
            return
        }
        let control: Bool
        switch message {
        case .checkpoint, .panic, .abort, .fetch, .fetched, .initReply: control = true
        case .request, .batch, .reply, .initHistory: control = false
        }
        let id = linkID(from, to, channel: control ? 1 : 0)
        let at = max(now + prng.ticks(1...scenario.delayMaxTicks), links[id].lastAt)
        links[id].lastAt = at
        links[id].queue.append((at, message))
    }

    func inFlight(_ from: ChainSimEndpoint, _ to: ChainSimEndpoint) -> Int { links[linkID(from, to)].inFlight }

    /// Delivers every due message in link order; a refused one (-EAGAIN) blocks its link until a later tick, and so
    /// does every message to a paused replica.
    func deliver() {
        for id in links.indices {
            if case .replica(let q) = links[id].to, paused(nodes[q]) { continue }
            while links[id].head < links[id].queue.count, links[id].queue[links[id].head].at <= now {
                let entry = links[id].queue[links[id].head]
                guard handle(entry.message, from: links[id].from, to: links[id].to) else { break }
                links[id].head += 1
            }
            if links[id].head > 64 && links[id].head * 2 > links[id].queue.count {
                links[id].queue.removeFirst(links[id].head)
                links[id].head = 0
            }
        }
    }

    /// false when the receiver refused it for now (backpressure, or an instance it has not entered yet).
    func handle(_ message: ChainSimMessage, from: ChainSimEndpoint, to: ChainSimEndpoint) -> Bool {
        switch (to, message) {
        case (.replica(let q), .request(let request, let macs, let instance)):
            let node = nodes[q]
            if instance > node.instance { return true } // no INIT for it arrived (or it was refused): dropped
            guard let core = node.core(instance) else { return true }
            let rc = core.request(node.localize(request), clientMACs: macs)
            if rc == -EAGAIN { return false }
            note("r\(q) i\(instance) request c\(request.client) t\(request.timestamp) → \(rc)")
            if rc == -ESHUTDOWN, case .success(let abort) = core.stoppedAbort(client: request.client, timestamp: request.timestamp) {
                send(.abort(abort), from: to, to: .client(Int(request.client)))
            }
        case (.replica(let q), .batch(let batch)):
            let node = nodes[q]
            if batch.instance > node.instance { return false } // the INIT ahead of it was refused: hold (P2+ will come)
            guard batch.instance == node.instance else { return true } // an instance this replica left
            var local = batch
            local.requests = batch.requests.map(node.localize)
            let rc = node.core.receive(local)
            if rc == -EAGAIN { return false }
            note("r\(q) i\(batch.instance) batch sn \(batch.snFirst)+\(batch.requests.count) from \(from) → \(rc)\(rc == -EPROTO ? " STOP \(node.core.stopReason.rawValue)" : "")")
        case (.replica(let q), .checkpoint(let checkpoint)):
            guard let core = nodes[q].core(checkpoint.instance) else { return true }
            let rc = core.receive(checkpoint: checkpoint)
            note("r\(q) CHECKPOINT \(checkpoint.number) kind \(checkpoint.kind) from r\(checkpoint.from) → \(rc), stable \(core.stableCheckpoint)")
        case (.replica(let q), .panic(let panic, let initHistory)):
            let node = nodes[q]
            // P2+: an instance not entered yet is entered with the PANIC's init history first.
            if panic.instance > node.instance, let initHistory, initHistory.instance == panic.instance {
                enter(node, initHistory, via: "PANIC of c\(panic.client)")
            }
            if let core = node.core(panic.instance), case .success(let abort) = core.panic(panic) {
                send(.abort(abort), from: to, to: .client(Int(panic.client)))
            }
        case (.replica(let q), .initHistory(let initHistory)):
            enter(nodes[q], initHistory, via: "INIT from \(from)")
        case (.replica(let q), .fetch(let fetch)):
            answerFetch(nodes[q], fetch)
        case (.replica(let q), .fetched(let instance, let sn, let request)):
            let node = nodes[q]
            guard let request, let core = node.core(instance) else { return true }
            let rc = core.supply(sn: sn, node.localize(request))
            note("r\(q) i\(instance) fetched sn \(sn) from \(from) → \(rc)")
        case (.client(let c), .reply(let reply)):
            clientReply(clients[c], reply)
        case (.client(let c), .abort(let abort)):
            clientAbort(clients[c], abort)
        case (.client(let c), .initReply(let reply)):
            clientInitReply(clients[c], reply)
        default:
            preconditionFailure("misrouted message to \(to)")
        }
        return true
    }

    // ---- switching (replicas) -------------------------------------------------------------------------

    /// Enters a later instance with a (checked) init history: rolls the application back to the checkpoint base
    /// (D10), supplies the bodies it has, and forwards the INIT to its successor ahead of the instance's batches (D8).
    func enter(_ node: ChainSimNode, _ initHistory: ChainInitHistory, via: String) {
        guard initHistory.instance > node.instance else { return }
        let left = node.core.stats
        do {
            try node.composer.enter(initHistory)
        } catch {
            note("r\(node.position) refuses INIT for i\(initHistory.instance) (\(via)): \(error)")
            if case .refused = error { node.retired.initsRefused += 1 }
            return
        }
        node.retired.add(left)
        node.installed[initHistory.instance] = initHistory
        note("r\(node.position) enters i\(initHistory.instance) (\(via)): base \(initHistory.base), \(initHistory.entries.count) entries")
        rollBack(node, to: initHistory)
        // t_j[c] at the base comes from the restored state, not from IH (which starts after the base).
        var timestamps = [UInt64](repeating: 0, count: clients.count)
        for e in node.log { timestamps[Int(e.client)] = max(timestamps[Int(e.client)], e.timestamp) }
        let rc = node.core.installBaseTimestamps(timestamps)
        precondition(rc == 0, "rc_chain_init_base_timestamps: \(rc)")
        // A restarted replica forgets its request bodies and must FETCH them. At most f replicas, once each: of the
        // f+1 that vouched for a digest one then still holds the body (spec §12), as the FETCH argument assumes.
        if scenario.bodyLossPercent > 0 && !node.wiped && wipedReplicas < f && prng.chance(scenario.bodyLossPercent) {
            node.bodies = [:]
            node.wiped = true
            wipedReplicas += 1
        }
        for entry in initHistory.entries {
            if let body = node.bodies[entry.requestDigest] { _ = node.core.supply(sn: entry.sn, node.localize(body)) }
        }
        // D7 for requests the base covers: Σlast sends each client its last reply up to the base, from its own state.
        if node.position >= 2 * f {
            var last: [UInt32: ChainSimLogEntry] = [:]
            for e in node.log { last[e.client] = e }
            for (client, e) in last.sorted(by: { $0.key < $1.key }) {
                guard let reply = node.replies[e.sn],
                      let mac = node.core.cachedReply(client: client, sn: e.sn, request: e.requestDigest, reply: reply,
                                                      history: e.historyDigest) else { continue }
                send(.initReply(ChainSimInitReply(instance: node.instance, replica: node.position, client: client,
                                                  timestamp: e.timestamp, sn: e.sn, reply: reply, history: e.historyDigest, mac: mac)),
                     from: .replica(node.position), to: .client(Int(client)))
            }
        }
        if node.position < n - 1 {
            send(.initHistory(byzantineInit(node, initHistory)), from: .replica(node.position), to: .replica(node.position + 1))
        }
    }

    /// The application state at IH's base (D10): its own log when it passes through the base digest, else the log
    /// prefix and snapshot of a replica whose log does (checked against the base digest: this stands in for the
    /// checkpoint state transfer the core does not implement).
    func rollBack(_ node: ChainSimNode, to initHistory: ChainInitHistory) {
        let boundary = Int(initHistory.base * chk)
        func passes(_ log: [ChainSimLogEntry]) -> Bool {
            boundary == 0 || (log.count >= boundary && log[boundary - 1].historyDigest == initHistory.baseDigest)
        }
        if !passes(node.log) {
            if let source = nodes.first(where: { passes($0.log) && !isByzantine($0.position) }) ?? nodes.first(where: { passes($0.log) }) {
                // The history is checked against the base digest; the replica replays it, so its state and replies
                // are its own computation, not the source's word.
                node.log = replay(Array(source.log.prefix(boundary)), node: node)
                note("r\(node.position) takes the state at sn \(boundary) from r\(source.position)")
            } else {
                // Nobody executed that far yet (the vouchers are still fetching): rebuild the prefix from the hash
                // chain of what was executed and what signed ABORTs list, each link recomputed, and the invoked bodies.
                node.log = rebuild(to: UInt64(boundary), end: initHistory.baseDigest, proof: initHistory.proof, node: node)
                note("r\(node.position) rebuilds the state at sn \(boundary) from the hash chain")
            }
            stateTransfers += 1
        }
        node.log.removeLast(node.log.count - boundary)
        node.state = node.log.last?.stateAfter ?? 0
        node.history = boundary == 0 ? .zero : initHistory.baseDigest
    }

    /// Executes `log`'s requests from the initial state at `node`: its states, H and replies.
    func replay(_ log: [ChainSimLogEntry], node: ChainSimNode) -> [ChainSimLogEntry] {
        var state: UInt64 = 0, h = ChainDigest.zero
        return log.map { e in
            let reply = ChainSimApplication.apply(&state, e.op)
            let parent = h
            h = h.extended(sn: e.sn, request: e.requestDigest, keyRing: digestRing)
            precondition(h == e.historyDigest, "a transferred history does not chain")
            node.replies[e.sn] = reply
            if !isByzantine(node.position) {
                computed.insert(ReplyKey(sn: e.sn, history: h, reply: reply))
                ledger[h] = LedgerEntry(sn: e.sn, parent: parent, request: e.requestDigest, client: e.client, timestamp: e.timestamp)
            }
            var mine = e
            mine.stateAfter = state
            return mine
        }
    }

    /// The executed log up to `sn` whose H there is `end`: walked back through the ledger and the ABORTs' entries
    /// (a link is taken only when H recomputes from its parent), then replayed from the invoked bodies.
    func rebuild(to sn: UInt64, end: ChainDigest, proof: [ChainAbort], node: ChainSimNode) -> [ChainSimLogEntry] {
        var links = ledger
        for abort in proof {
            var parent = abort.checkpointDigest
            for e in abort.entries {
                if parent.extended(sn: e.sn, request: e.requestDigest, keyRing: digestRing) == e.historyDigest {
                    links[e.historyDigest] = LedgerEntry(sn: e.sn, parent: parent, request: e.requestDigest, client: e.client,
                                                         timestamp: e.timestamp)
                }
                parent = e.historyDigest
            }
        }
        var chain: [LedgerEntry] = []
        var current = end, position = sn
        while position > 0 {
            guard let link = links[current], link.sn == position else {
                preconditionFailure("the state at sn \(sn) is known to nobody")
            }
            chain.append(link)
            current = link.parent
            position -= 1
        }
        var state: UInt64 = 0, h = ChainDigest.zero
        var log: [ChainSimLogEntry] = []
        for link in chain.reversed() {
            let op = invoked[Key(client: link.client, timestamp: link.timestamp)] ?? []
            let reply = ChainSimApplication.apply(&state, op)
            let parent = h
            h = h.extended(sn: link.sn, request: link.request, keyRing: digestRing)
            node.replies[link.sn] = reply
            // The replaying replica computes these replies itself (it executes the history).
            if !isByzantine(node.position) {
                computed.insert(ReplyKey(sn: link.sn, history: h, reply: reply))
                ledger[h] = LedgerEntry(sn: link.sn, parent: parent, request: link.request, client: link.client, timestamp: link.timestamp)
            }
            log.append(ChainSimLogEntry(sn: link.sn, client: link.client, timestamp: link.timestamp, op: op,
                                        requestDigest: link.request, historyDigest: h, stateAfter: state))
        }
        precondition(h == end || sn == 0, "the rebuilt history does not end at the base digest")
        return log
    }

    /// FETCH: the body with that digest from the replica's store, or nothing.
    func answerFetch(_ node: ChainSimNode, _ fetch: rc_chain_fetch) {
        var body = node.bodies[ChainDigest(fetch.request_digest)]
        // Deterministic (dictionary order is not): the first other body by client and timestamp.
        let others = node.bodies.values.filter { !($0.client == fetch.client && $0.timestamp == fetch.timestamp) }
        if isByzantine(node.position) && scenario.behaviour == .lyingFetch,
           let other = others.min(by: { ($0.client, $0.timestamp) < ($1.client, $1.timestamp) }) {
            body = other
            lyingFetches += 1
            note("r\(node.position) BYZANTINE answers FETCH sn \(fetch.sn) with another body")
        }
        send(.fetched(instance: fetch.instance, sn: fetch.sn, body), from: .replica(node.position), to: .replica(Int(fetch.from)))
    }

    // ---- replicas -----------------------------------------------------------------------------------

    func duties(_ node: ChainSimNode) {
        if paused(node) { return }
        let core = node.core
        let initRange = core.initRange
        for e in core.executions() {
            let op = node.ops[e.ref] ?? []
            var reply = ChainSimApplication.apply(&node.state, op)
            if isByzantine(node.position) && scenario.behaviour == .lyingSigmaLast && node.batchesOut >= scenario.trigger
                && scenario.variant % 2 == 0 {
                reply[0] ^= 0xff
            }
            let digest = ChainDigest.request(client: e.client, timestamp: e.timestamp, op: op, keyRing: node.keyRing)
            let parent = node.history
            node.history = parent.extended(sn: e.sn, request: digest, keyRing: node.keyRing)
            if let view = core.history(e.sn), ChainDigest(view.history_digest) != node.history {
                digestMismatches.append("r\(node.position) sn \(e.sn): the core's H differs from the simulator's")
            }
            node.log.append(ChainSimLogEntry(sn: e.sn, client: e.client, timestamp: e.timestamp, op: op, requestDigest: digest,
                                             historyDigest: node.history, stateAfter: node.state))
            node.replies[e.sn] = reply
            if !isByzantine(node.position) {
                ledger[node.history] = LedgerEntry(sn: e.sn, parent: parent, request: digest, client: e.client, timestamp: e.timestamp)
                computed.insert(ReplyKey(sn: e.sn, history: node.history, reply: reply))
            }
            if e.reply_needed {
                let rc = core.reply(sn: e.sn, reply)
                precondition(rc == 0, "rc_chain_on_reply refused sn \(e.sn): \(rc)")
            } else if let initRange, initRange.contains(e.sn), let (mac, history) = core.initReply(sn: e.sn, reply) {
                send(.initReply(ChainSimInitReply(instance: node.instance, replica: node.position, client: e.client,
                                                  timestamp: e.timestamp, sn: e.sn, reply: reply, history: history, mac: mac)),
                     from: .replica(node.position), to: .client(Int(e.client)))
            }
        }
        let me = ChainSimEndpoint.replica(node.position)
        let tail = node.position == n - 1
        while tail || inFlight(me, .replica(node.position + 1)) < scenario.linkCapacity,
              let batch = core.nextBatch(op: { node.ops[$0] ?? [] }) {
            node.batchesOut += 1
            if tail {
                sendReplies(node, batch)
            } else {
                for (destination, out) in byzantineForward(node, batch) {
                    send(.batch(out), from: me, to: .replica(destination))
                }
            }
        }
        for checkpoint in core.checkpoints() {
            send(.checkpoint(checkpoint), from: me, to: .replica(Int(checkpoint.to)))
        }
        for fetch in core.fetches() {
            send(.fetch(fetch), from: me, to: .replica(Int(fetch.to)))
        }
        core.tick()
    }

    func sendReplies(_ node: ChainSimNode, _ batch: ChainBatch) {
        let per = batch.replyMACsPerRequest
        for (k, request) in batch.requests.enumerated() {
            let sn = batch.sn(k)
            var reply = ChainSimReply(
                instance: batch.instance, client: request.client, timestamp: request.timestamp, sn: sn,
                reply: node.replies[sn] ?? [], history: batch.historyDigests[k],
                replyMACs: Array(batch.replyMACs[(k * per)..<((k + 1) * per)]))
            if isByzantine(node.position) { byzantineReply(node, &reply) }
            send(.reply(reply), from: .replica(node.position), to: .client(Int(request.client)))
        }
    }

    // ---- clients ------------------------------------------------------------------------------------

    func clientStep(_ client: ChainSimClient) {
        if client.aborted || client.panicking { return }
        if let outstanding = client.outstanding {
            if now - outstanding.sentAt > scenario.clientTimeoutTicks {
                if client.byzantine {
                    client.outstanding = nil
                    client.remaining -= 1
                } else {
                    note("c\(client.id) timer expired for t\(outstanding.timestamp) in i\(client.instance)")
                    panic(client)
                }
            }
            return
        }
        guard client.remaining > 0 else { return }
        let timestamp = client.nextTimestamp
        client.nextTimestamp += 1
        let op = Array("c\(client.id)-t\(timestamp)-\(prng.int(0...999_999))".utf8)
        invoked[Key(client: UInt32(client.id), timestamp: timestamp)] = op
        invoke(client, timestamp: timestamp, op: op)
    }

    /// C1 (and C1+: the first invocation in an instance carries its init history, ahead of it on the link).
    func invoke(_ client: ChainSimClient, timestamp: UInt64, op: [UInt8]) {
        guard var macs = try? client.auth.authenticate(timestamp: timestamp, op: op) else {
            preconditionFailure("client MACs failed")
        }
        if client.byzantine {
            for k in 1..<macs.count { macs[k] = macs[k].flipped() }
        }
        client.outstanding = (timestamp, op, now)
        if client.initPending, let initHistory = client.initHistory {
            client.initPending = false
            send(.initHistory(initHistory), from: .client(client.id), to: .replica(0))
        }
        send(.request(ChainRequest(client: UInt32(client.id), timestamp: timestamp, op: op), macs, instance: client.instance),
             from: .client(client.id), to: .replica(0))
    }

    func clientReply(_ client: ChainSimClient, _ reply: ChainSimReply) {
        guard let outstanding = client.outstanding, !client.panicking, outstanding.timestamp == reply.timestamp,
              reply.instance == client.instance else { return }
        if client.byzantine {
            client.outstanding = nil
            client.remaining -= 1
            return
        }
        let commits = plantedBug == .clientTrustsTail || client.auth.commits(
            timestamp: reply.timestamp, op: outstanding.op, sn: reply.sn, reply: reply.reply, historyDigest: reply.history,
            replyMACs: reply.replyMACs)
        guard commits else {
            note("c\(client.id) reply for t\(reply.timestamp) fails C4")
            panic(client)
            return
        }
        commit(client, instance: reply.instance, sn: reply.sn, reply: reply.reply, history: reply.history)
    }

    /// A commit in `instance` (the one whose Σlast vouched; a client may still be in an earlier one).
    func commit(_ client: ChainSimClient, instance: UInt64, sn: UInt64, reply: [UInt8], history: ChainDigest) {
        guard let outstanding = client.outstanding else { return }
        note("c\(client.id) commits t\(outstanding.timestamp) at sn \(sn) in i\(instance)")
        commits.append(ChainSimCommit(client: client.id, instance: instance, timestamp: outstanding.timestamp, sn: sn,
                                      reply: reply, history: history))
        client.commits += 1
        client.outstanding = nil
        client.awaitingInit = nil
        client.initReplies = [:]
        client.remaining -= 1
    }

    /// A request of an init history, or one a checkpoint base covers (cached reply, D7): it commits when every member
    /// of Σlast of one instance sent the same reply and H at one sn, each with a valid ρ for that instance (the
    /// evidence of C4). Such evidence is a commit whatever the client is doing (panicking, or already in a later
    /// instance): the request is then done, and its ABORTs are ignored.
    func clientInitReply(_ client: ChainSimClient, _ reply: ChainSimInitReply) {
        guard let outstanding = client.outstanding, !client.byzantine, reply.timestamp == outstanding.timestamp,
              reply.replica >= 2 * f else { return }
        let slot = ChainSimReplySlot(instance: reply.instance, sn: reply.sn)
        client.initReplies[slot, default: [:]][reply.replica] = reply
        guard let received = client.initReplies[slot], received.count == f + 1 else { return }
        let members = (2 * f..<n).compactMap { received[$0] }
        guard members.count == f + 1, members.allSatisfy({ $0.reply == members[0].reply && $0.history == members[0].history }),
              client.auth.switched(to: reply.instance).commits(
                timestamp: reply.timestamp, op: outstanding.op, sn: reply.sn, reply: members[0].reply,
                historyDigest: members[0].history, replyMACs: members.map(\.mac)) else {
            note("c\(client.id) direct replies for t\(reply.timestamp) at sn \(reply.sn) in i\(reply.instance) disagree or fail")
            return
        }
        client.panicking = false
        client.collector.reset()
        commit(client, instance: reply.instance, sn: reply.sn, reply: members[0].reply, history: members[0].history)
    }

    /// P1 (P1+: with the instance's init history): PANIC to every replica.
    func panic(_ client: ChainSimClient) {
        guard let outstanding = client.outstanding else { return }
        client.panicking = true
        client.collector.reset()
        panics += 1
        for r in 0..<n {
            guard let panic = try? client.auth.panic(timestamp: outstanding.timestamp, replica: UInt32(r)) else {
                preconditionFailure("PANIC MAC failed")
            }
            send(.panic(panic, client.initHistory), from: .client(client.id), to: .replica(r))
        }
    }

    /// P3's input: 2f+1 valid ABORTs of distinct replicas (AbstractAbortCollector); then the switch (§2.3).
    func clientAbort(_ client: ChainSimClient, _ abort: ChainAbort) {
        guard !client.aborted, !client.byzantine, let outstanding = client.outstanding else { return }
        // Late ABORTs of an instance already left (the 3f+1-th, or D13 answers to an old request) change nothing.
        guard abort.instance >= client.instance, abort.timestamp == outstanding.timestamp else { return }
        if !client.panicking {
            // D13: a stopped replica answered the request with its ABORT; the client panics to collect 2f+1.
            guard abort.instance == client.instance, abort.verify(with: client.auth.keyRing),
                  abort.timestamp == outstanding.timestamp else { return }
            note("c\(client.id) learns from r\(abort.replica)'s ABORT that i\(abort.instance) stopped")
            panic(client)
        }
        let initHistory: ChainInitHistory?
        do {
            initHistory = try client.collector.add(abort, client: UInt32(client.id), timestamp: outstanding.timestamp,
                                                   keyRing: client.auth.keyRing)
        } catch {
            if error != .duplicate { invalidAborts += 1 }
            return
        }
        guard let initHistory else { return }
        client.abortHistories.append(initHistory)
        note("c\(client.id) aborts i\(client.instance) with \(2 * f + 1) ABORTs: base \(initHistory.base), \(initHistory.entries.count) entries")
        if initHistory.instance > scenario.instancesMax {
            client.aborted = true
            return
        }
        switchInstance(client, to: initHistory, outstanding: outstanding)
    }

    /// ACP (§2.3): invoke next(i) with the abort history as init history; the pending request is resubmitted, or,
    /// when IH holds it, awaited from Σlast's init replies.
    func switchInstance(_ client: ChainSimClient, to initHistory: ChainInitHistory,
                        outstanding: (timestamp: UInt64, op: [UInt8], sentAt: UInt64)) {
        client.switches += 1
        switches += 1
        client.auth = client.auth.switched(to: initHistory.instance)
        client.initHistory = initHistory
        client.panicking = false
        client.initReplies = [:]
        let pending = ChainRequest(client: UInt32(client.id), timestamp: outstanding.timestamp, op: outstanding.op)
        let plan = AbstractResubmission.plan(pending: [pending], initHistory: initHistory, digest: client.auth.digest)
        if let (_, sn) = plan.inInitHistory.first {
            client.awaitingInit = sn
            client.outstanding = (outstanding.timestamp, outstanding.op, now)
            // The INIT still goes to the head, so the instance starts even if nobody else switched yet.
            client.initPending = false
            send(.initHistory(initHistory), from: .client(client.id), to: .replica(0))
        } else {
            client.awaitingInit = nil
            client.initPending = true
            invoke(client, timestamp: outstanding.timestamp, op: outstanding.op)
        }
    }

    // ---- the run --------------------------------------------------------------------------------------

    func run() {
        while now < Self.ticksMax {
            if scenario.behaviour == .crash && now == scenario.crashAt {
                nodes[scenario.byzantine].pausedUntil = now + scenario.crashTicks
                note("r\(scenario.byzantine) crashes for \(scenario.crashTicks) ticks")
            }
            deliver()
            for node in nodes { duties(node) }
            for client in clients { clientStep(client) }
            if clients.allSatisfy({ $0.finished || $0.byzantine }) { break }
            now += 1
        }
    }
}

/// The simulated service: a running state over every op, so a reply depends on the whole order before it.
enum ChainSimApplication {
    static func apply(_ state: inout UInt64, _ op: [UInt8]) -> [UInt8] {
        for byte in op { state = (state ^ UInt64(byte)) &* 1_099_511_628_211 }
        return withUnsafeBytes(of: state.littleEndian) { Array($0) }
    }
}
