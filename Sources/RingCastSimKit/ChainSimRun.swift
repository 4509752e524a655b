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
