internal import CRingCastCore
import Glibc
import RingCastChain

/// One seeded run: n real Chain cores, clients and FIFO links, stepped tick by tick. The Byzantine replica (if any)
/// runs a correct core; the simulator alters what it sends (ChainSimByzantine.swift).
final class ChainSimWorld {
    let scenario: ChainSimulation.Scenario
    let plantedBug: ChainSimulation.PlantedBug
    var prng: MembershipPrng
    let nodes: [ChainSimNode]
    let clients: [ChainSimClient]
    var links: [ChainSimLink] = []
    /// Per sender, receiver and channel (0 data, 1 control): CHECKPOINT, PANIC and ABORT travel apart from
    /// requests and batches, so a batch the receiver holds back (-EAGAIN) never blocks the votes that would free it.
    var linkIndex: [ChainSimEndpoint: [ChainSimEndpoint: [Int: Int]]] = [:]
    var now: UInt64 = 0
    var invoked: [Key: [UInt8]] = [:]
    var commits: [ChainSimCommit] = []
    var panics = 0
    var invalidAborts = 0
    var checkpointsLost = 0
    var trace: [String]?
    static let ticksMax: UInt64 = 400_000

    struct Key: Hashable {
        var client: UInt32
        var timestamp: UInt64
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
            let core = try ChainCore(settings, keyRing: keys.keyRing(for: .replica(UInt32(position))))
            nodes.append(ChainSimNode(position: position, core: core))
        }
        self.nodes = nodes
        var clients: [ChainSimClient] = []
        for id in 0..<clientCount {
            let auth = ChainClientAuthenticator(keyRing: try keys.keyRing(for: .client(UInt32(id))), f: scenario.f,
                                                client: UInt32(id))
            clients.append(ChainSimClient(id: id, byzantine: byzantineClient && id == clientCount - 1, auth: auth,
                                          requests: scenario.requestsPerClient))
        }
        self.clients = clients
        self.trace = trace ? [] : nil
    }

    var n: Int { nodes.count }
    var f: Int { Int(scenario.f) }

    func isByzantine(_ position: Int) -> Bool { scenario.behaviour.byzantineReplica && position == scenario.byzantine }

    func note(_ line: @autoclosure () -> String) {
        if trace != nil { trace!.append("t=\(now) \(line())") }
    }

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
        case .checkpoint, .panic, .abort: control = true
        case .request, .batch, .reply: control = false
        }
        let id = linkID(from, to, channel: control ? 1 : 0)
        let at = max(now + prng.ticks(1...scenario.delayMaxTicks), links[id].lastAt)
        links[id].lastAt = at
        links[id].queue.append((at, message))
    }

    func inFlight(_ from: ChainSimEndpoint, _ to: ChainSimEndpoint) -> Int { links[linkID(from, to)].inFlight }

    /// Delivers every due message in link order; a refused one (-EAGAIN) blocks its link until a later tick.
    func deliver() {
        for id in links.indices {
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

    /// false when the receiver refused it for now (backpressure).
    func handle(_ message: ChainSimMessage, from: ChainSimEndpoint, to: ChainSimEndpoint) -> Bool {
        switch (to, message) {
        case (.replica(let q), .request(let request, let macs)):
            let node = nodes[q]
            let rc = node.core.request(node.localize(request), clientMACs: macs)
            if rc == -EAGAIN { return false }
            note("r\(q) request c\(request.client) t\(request.timestamp) → \(rc)")
            if rc == -ESHUTDOWN, case .success(let abort) = node.core.stoppedAbort(client: request.client, timestamp: request.timestamp) {
                send(.abort(abort), from: to, to: .client(Int(request.client)))
            }
        case (.replica(let q), .batch(let batch)):
            let node = nodes[q]
            var local = batch
            local.requests = batch.requests.map(node.localize)
            let rc = node.core.receive(local)
            if rc == -EAGAIN { return false }
            note("r\(q) batch sn \(batch.snFirst)+\(batch.requests.count) from \(from) → \(rc)\(rc == -EPROTO ? " STOP \(node.core.stopReason.rawValue)" : "")")
        case (.replica(let q), .checkpoint(let checkpoint)):
            let rc = nodes[q].core.receive(checkpoint: checkpoint)
            note("r\(q) CHECKPOINT \(checkpoint.number) kind \(checkpoint.kind) from r\(checkpoint.from) → \(rc), stable \(nodes[q].core.stableCheckpoint)")
        case (.replica(let q), .panic(let panic)):
            if case .success(let abort) = nodes[q].core.panic(panic) {
                send(.abort(abort), from: to, to: .client(Int(panic.client)))
            }
        case (.client(let c), .reply(let reply)):
            clientReply(clients[c], reply)
        case (.client(let c), .abort(let abort)):
            clientAbort(clients[c], abort)
        default:
            preconditionFailure("misrouted message to \(to)")
        }
        return true
    }

    // ---- replicas -----------------------------------------------------------------------------------

    func duties(_ node: ChainSimNode) {
        let core = node.core
        for e in core.executions() {
            let op = node.ops[e.ref] ?? []
            var reply = ChainSimApplication.apply(&node.state, op)
            if isByzantine(node.position) && scenario.behaviour == .lyingSigmaLast && node.batchesOut >= scenario.trigger
                && scenario.variant % 2 == 0 {
                reply[0] ^= 0xff
            }
            let view = core.history(e.sn)
            node.log.append(ChainSimLogEntry(
                sn: e.sn, client: e.client, timestamp: e.timestamp, op: op,
                requestDigest: view.map { ChainDigest($0.request_digest) }, historyDigest: view.map { ChainDigest($0.history_digest) }))
            if e.reply_needed {
                let rc = core.reply(sn: e.sn, reply)
                precondition(rc == 0, "rc_chain_on_reply refused sn \(e.sn): \(rc)")
                node.replies[e.sn] = reply
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
        core.tick()
    }

    func sendReplies(_ node: ChainSimNode, _ batch: ChainBatch) {
        let per = batch.replyMACsPerRequest
        for (k, request) in batch.requests.enumerated() {
            let sn = batch.sn(k)
            var reply = ChainSimReply(
                client: request.client, timestamp: request.timestamp, sn: sn, reply: node.replies[sn] ?? [],
                history: batch.historyDigests[k], replyMACs: Array(batch.replyMACs[(k * per)..<((k + 1) * per)]))
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
                    note("c\(client.id) timer expired for t\(outstanding.timestamp)")
                    panic(client)
                }
            }
            return
        }
        guard client.remaining > 0 else { return }
        let timestamp = client.nextTimestamp
        client.nextTimestamp += 1
        let op = Array("c\(client.id)-t\(timestamp)-\(prng.int(0...999_999))".utf8)
        guard var macs = try? client.auth.authenticate(timestamp: timestamp, op: op) else {
            preconditionFailure("client MACs failed")
        }
        if client.byzantine {
            for k in 1..<macs.count { macs[k] = macs[k].flipped() }
        }
        invoked[Key(client: UInt32(client.id), timestamp: timestamp)] = op
        client.outstanding = (timestamp, op, now)
        send(.request(ChainRequest(client: UInt32(client.id), timestamp: timestamp, op: op), macs),
             from: .client(client.id), to: .replica(0))
    }

    func clientReply(_ client: ChainSimClient, _ reply: ChainSimReply) {
        guard let outstanding = client.outstanding, !client.panicking, outstanding.timestamp == reply.timestamp else { return }
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
        note("c\(client.id) commits t\(reply.timestamp) at sn \(reply.sn)")
        commits_append(ChainSimCommit(client: client.id, timestamp: reply.timestamp, sn: reply.sn, reply: reply.reply,
                                      history: reply.history))
        client.commits += 1
        client.outstanding = nil
        client.remaining -= 1
    }

    private func commits_append(_ commit: ChainSimCommit) { commits.append(commit) }

    /// P1: PANIC to every replica.
    func panic(_ client: ChainSimClient) {
        guard let outstanding = client.outstanding else { return }
        client.panicking = true
        panics += 1
        for r in 0..<n {
            guard let panic = try? client.auth.panic(timestamp: outstanding.timestamp, replica: UInt32(r)) else {
                preconditionFailure("PANIC MAC failed")
            }
            send(.panic(panic), from: .client(client.id), to: .replica(r))
        }
    }

    /// P3's input: 2f+1 ABORTs with valid signatures from distinct replicas, naming the same next(i).
    func clientAbort(_ client: ChainSimClient, _ abort: ChainAbort) {
        guard !client.aborted, !client.byzantine, let outstanding = client.outstanding else { return }
        if !client.panicking {
            // D13: a stopped head answered the request with its ABORT; the client panics to collect 2f+1.
            guard abort.verify(with: client.auth.keyRing), abort.timestamp == outstanding.timestamp else { return }
            note("c\(client.id) learns from r\(abort.replica)'s ABORT that the instance stopped")
            panic(client)
        }
        guard abort.verify(with: client.auth.keyRing), abort.client == UInt32(client.id),
              abort.timestamp == outstanding.timestamp, abort.instance == 1, abort.nextInstance == 2 else {
            invalidAborts += 1
            return
        }
        guard !client.aborts.contains(where: { $0.replica == abort.replica }) else { return }
        client.aborts.append(abort)
        if client.aborts.count == 2 * f + 1 {
            client.aborted = true
            note("c\(client.id) aborts with \(client.aborts.count) ABORTs")
        }
    }

    // ---- the run --------------------------------------------------------------------------------------

    func run() {
        while now < Self.ticksMax {
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
