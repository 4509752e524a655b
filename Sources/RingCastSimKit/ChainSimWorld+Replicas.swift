internal import CRingCastCore
import Glibc
import RingCastChain

/// The simulated replicas: entering a later instance (init history, roll-back, replay, FETCH; spec §12) and the
/// per-tick duties of a replica (ordering, executing, replying).
extension ChainSimWorld {
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
}
