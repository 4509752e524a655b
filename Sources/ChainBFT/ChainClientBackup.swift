import RingCastChain
import RingCastBackup
internal import CRingCastCore
import Glibc

/// The client side of a Backup instance (spec §13.1; PBFT §4.1 for the client): every request to every replica
/// (the first ones carry the init history, C1+), a result taken once f+1 replicas sent matching replies, a
/// retransmission to every replica when none came in time (no PANIC in Backup: PBFT's view change replaces a faulty
/// primary), and, once Backup aborts, f+1 identical signed abort histories that make the next Chain instance's init
/// history and its proof. Off the Chain fast path: the engine takes this path only in an even (Backup) instance.
extension ChainClientEngine {
    /// Into Backup instance `ih.instance`: ⟨IH, Proof_IH⟩ to every replica (each makes its own Backup instance;
    /// PBFT orders the first request carrying a valid IH), then every pending request to every replica with its
    /// timestamp (a request IH holds comes back as "in the init history" with its reply: it is not executed twice).
    func enterBackup(_ ih: ChainInitHistory, announce: Bool) {
        backupReplies.removeAll()
        backupCollectors.removeAll()
        backupCarryInitHistory = true
        if announce {
            for r in 0..<settings.replicas.count {
                guard let conn = conns[r], up[r] else { continue }
                _ = transport.send(conn, .initHistory(ih))
            }
        }
        for timestamp in pending.keys.sorted() {
            pending[timestamp]!.sends = 0
            let digest = pending[timestamp]!.digest
            let held = ih.entries.contains { $0.client == settings.client && $0.timestamp == timestamp && $0.requestDigest == digest }
            if held { statistics.inInitHistory += 1 } else { statistics.resubmitted += 1 }
            sendBackup(timestamp)
        }
    }

    /// PBFT's REQUEST (with this client's authenticator) for `timestamp`, to every replica. A request's first send in
    /// this instance decides whether it carries IH (while no request of this client committed here yet), and its
    /// retransmissions carry the same: PBFT answers a retransmission from its reply table.
    func sendBackup(_ timestamp: UInt64) {
        guard var p = pending[timestamp] else { return }
        if p.sends == 0 { p.carriesInitHistory = backupCarryInitHistory && enteredWith != nil }
        p.sends += 1
        p.deadline = monotonicNanos() + settings.timeoutNanos
        pending[timestamp] = p
        let request = PBFT.Request(client: settings.client, timestamp: timestamp, op: p.op,
                                   initHistory: p.carriesInitHistory ? enteredWith : nil)
        let signed = PBFT.ClientRequest(request, keyRing: keyRing, n: UInt32(settings.replicas.count))
        for r in 0..<settings.replicas.count {
            guard let conn = conns[r], up[r] else { continue }
            _ = transport.send(conn, .backupRequest(instance: instance, signed))
        }
    }

    /// PBFT's client timer: a request with no result in time goes again to every replica (a backup that did not get
    /// it from the client starts its view-change timer then, PBFT §4.4); after ``ChainClient/Settings/backupSendsMax``
    /// sends it fails with ``ChainBFTError/timedOut``.
    func backupTimers(now: UInt64) {
        for timestamp in pending.keys.sorted() {
            guard let p = pending[timestamp], now > p.deadline else { continue }
            guard p.sends < settings.backupSendsMax else {
                pending[timestamp] = nil
                backupReplies[timestamp] = nil
                backupCollectors[timestamp] = nil
                outcomes.append((p.completion, .failure(.timedOut)))
                continue
            }
            statistics.backupRetransmits += 1
            sendBackup(timestamp)
        }
    }

    /// A replica's reply: counted when its MAC is the replica's for this client; f+1 matching results decide.
    func receive(backupReply reply: PBFT.Reply, instance replyInstance: UInt64) {
        guard replyInstance == instance, reply.client == settings.client, reply.replica < UInt32(settings.replicas.count),
              pending[reply.timestamp] != nil else { return }
        guard reply.verify(keyRing: keyRing) else {
            statistics.replyChecksFailed += 1
            return
        }
        let timestamp = reply.timestamp
        var replies = backupReplies[timestamp] ?? [:]
        replies[reply.replica] = reply
        backupReplies[timestamp] = replies
        let matching = replies.values.filter { $0.result == reply.result }.count
        guard matching >= f + 1, let outcome = reply.result.first.flatMap(Backup.Outcome.init(rawValue:)) else { return }
        switch outcome {
        case .committed, .inInitHistory:
            // IH is installed at f+1 replicas, so at least one correct: later requests need not carry it.
            backupCarryInitHistory = false
            backupReplies[timestamp] = nil
            backupCollectors[timestamp] = nil
            statistics.backupCommits += 1
            commit(timestamp, Array(reply.result.dropFirst()))
        case .ignored:
            // Ordered before any valid IH: invoke it again with IH under a new timestamp (the old one's outcome is
            // cached as "ignored" in PBFT's reply table).
            guard var p = pending.removeValue(forKey: timestamp) else { return }
            backupReplies[timestamp] = nil
            backupCollectors[timestamp] = nil
            let again = nextTimestamp()
            p.digest = auth.digest(ChainRequest(client: settings.client, timestamp: again, op: p.op))
            p.sends = 0
            pending[again] = p
            backupCarryInitHistory = true
            sendBackup(again)
        case .aborted:
            break // the signed abort histories follow on the same connections
        }
    }

    /// A Backup abort history for a pending request: f+1 identical ones of distinct replicas (``Backup/AbortCollector``
    /// checks instance, next(i), shape, signer and signature) are the init history of the next Chain instance.
    func receive(backupAbortHistory history: ChainAbort) {
        let timestamp = history.timestamp
        guard history.instance == instance, history.client == settings.client, pending[timestamp] != nil else {
            if history.instance > instance { statistics.abortsInvalid += 1 }
            return
        }
        var collector = backupCollectors[timestamp]
            ?? Backup.AbortCollector(f: settings.f, checkpointInterval: settings.checkpointInterval, instance: instance,
                                     client: settings.client, timestamp: timestamp)
        let next: ChainInitHistory?
        do throws(Backup.AbortRejection) { next = try collector.add(history, keyRing: keyRing) } catch {
            if error != .duplicate { statistics.abortsInvalid += 1 }
            return
        }
        backupCollectors[timestamp] = collector
        statistics.abortsValid += 1
        guard let next else { return }
        backupReplies.removeAll()
        backupCollectors.removeAll()
        leave(to: next)
    }

    /// A replica's current IH for a Chain instance entered from a Backup (this client slept through the switch):
    /// its proof must be f+1 identical signed abort histories of the Backup before it, and IH exactly what they make.
    func adoptAfterBackup(_ ih: ChainInitHistory) {
        guard ih.instance > instance, ih.proof.count == f + 1, let first = ih.proof.first else {
            statistics.abortsInvalid += 1
            return
        }
        var collector = Backup.AbortCollector(f: settings.f, checkpointInterval: settings.checkpointInterval,
                                              instance: ih.instance - 1, client: first.client, timestamp: first.timestamp)
        var made: ChainInitHistory?
        for history in ih.proof { made = (try? collector.add(history, keyRing: keyRing)) ?? made }
        guard let made, made == ih else {
            statistics.abortsInvalid += 1
            return
        }
        join(ih)
    }
}
