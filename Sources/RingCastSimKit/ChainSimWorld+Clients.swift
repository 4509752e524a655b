internal import CRingCastCore
import Glibc
import RingCastChain

/// The simulated clients: invoke, commit rule C4, panic, abort history and the switch (spec §8 C4, §11, §12).
extension ChainSimWorld {
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
}
