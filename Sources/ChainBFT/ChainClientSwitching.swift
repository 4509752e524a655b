import RingCastChain
import RingCastBackup
internal import CRingCastCore
import Glibc

/// The client's side of switching instances (ChainClient.swift; spec §11–§12, Abstract's §2.3): PANIC when a request
/// is late (P1), the ABORTs collected into an abort history, the next instance entered with its init history (C1+),
/// and the requests still pending replanned into it.
extension ChainClientEngine {
    /// P1: PANIC to every replica for the request `timestamp`.
    func panic(_ timestamp: UInt64) {
        guard panicking == nil else { return }
        statistics.panics += 1
        panicking = (timestamp, monotonicNanos() + settings.abortWaitNanos)
        collector.reset()
        for r in 0..<settings.replicas.count {
            guard let conn = conns[r], up[r] else { continue }
            guard let frame = try? auth.panic(timestamp: timestamp, replica: UInt32(r)) else { continue }
            // P2+: a replica that has not entered this instance yet (the INIT did not come down the chain to it) enters
            // it with this IH first, on the same link just ahead of the PANIC, so it can answer with its ABORT.
            if let ih = enteredWith { _ = transport.send(conn, .initHistory(ih)) }
            _ = transport.send(conn, .panic(ChainPanicFrame(frame)))
        }
    }

    /// P3: 2f+1 valid ABORTs of distinct replicas for the PANIC in progress end the instance
    /// (``AbstractAbortCollector`` checks and counts them and extracts ⟨IH, Proof_IH⟩ through the C core).
    func receive(_ abort: ChainAbort) {
        if Backup.Order.isBackup(instance) { return receive(backupAbortHistory: abort) }
        guard abort.client == settings.client, abort.instance == instance, abort.nextInstance == instance + 1,
              abort.replica < UInt32(settings.replicas.count) else {
            // Late ABORTs of an instance already left change nothing.
            if abort.instance >= instance { statistics.abortsInvalid += 1 }
            return
        }
        if panicking == nil {
            // D13: a stopped replica answered a request with its ABORT: the instance is over, collect 2f+1.
            guard pending[abort.timestamp] != nil, abort.verify(with: keyRing) else { return }
            panic(abort.timestamp)
        }
        guard let p = panicking, abort.timestamp == p.timestamp else { return }
        let initHistory: ChainInitHistory?
        do throws(AbstractAbortRejection) {
            initHistory = try collector.add(abort, client: settings.client, timestamp: p.timestamp, keyRing: keyRing)
        } catch {
            if error != .duplicate { statistics.abortsInvalid += 1 }
            return
        }
        statistics.abortsValid += 1
        guard let initHistory else { return }
        panicking = nil
        leave(to: initHistory)
    }

    /// P3 done (2f+1 Chain ABORTs, or f+1 Backup abort histories): next(i) with `initHistory` when the switching
    /// policy allows, else every pending request fails with a clear error.
    func leave(to initHistory: ChainInitHistory) {
        statistics.instancesAborted += 1
        let aborted = instance
        let history = ChainAbortHistory(base: initHistory.base, baseDigest: initHistory.baseDigest, entries: initHistory.entries)
        if let next = settings.switchInstance, switchesWithoutCommit < settings.switchesWithoutCommitMax,
           next.switchInstance(from: aborted, to: initHistory.instance, abortHistory: history) {
            switchInstance(to: initHistory)
            return
        }
        let ordered = Set(history.entries.filter { $0.client == settings.client }.map(\.timestamp))
        for (timestamp, request) in pending {
            let error: ChainBFTError = settings.switchInstance == nil
                ? .aborted(instance: aborted, inAbortHistory: ordered.contains(timestamp))
                : .instancesExhausted(instance: aborted, inAbortHistory: ordered.contains(timestamp))
            outcomes.append((request.completion, .failure(error)))
        }
        pending.removeAll()
        initReplies.removeAll()
        dead = settings.switchInstance == nil ? .aborted(instance: aborted, inAbortHistory: false)
            : .instancesExhausted(instance: aborted, inAbortHistory: false)
    }

    /// A replica told this client that the replicas entered a later instance (it still used an earlier one): the client
    /// checks ⟨IH, Proof_IH⟩ as a replica would — 2f+1 ABORTs of distinct replicas with valid signatures, and IH exactly
    /// P3 of them — and moves there, resubmitting its pending requests IH does not hold. Anything else is ignored.
    func adopt(_ ih: ChainInitHistory) {
        if ih.instance > 1, Backup.Order.isBackup(ih.instance - 1) { return adoptAfterBackup(ih) }
        guard ih.instance > instance || (ih.instance == instance && ih != enteredWith), ih.proof.count == 2 * f + 1,
              Set(ih.proof.map(\.replica)).count == ih.proof.count,
              ih.proof.allSatisfy({ $0.replica < UInt32(settings.replicas.count) && $0.nextInstance == ih.instance && $0.verify(with: keyRing) }),
              let again = ChainInitHistory.extract(proof: ih.proof, f: settings.f, checkpointInterval: settings.checkpointInterval,
                                                    instance: ih.instance,
                                                    capacity: UInt32(max(1, ih.entries.count))),
              again == ih else {
            statistics.abortsInvalid += 1
            return
        }
        if ih.instance == instance {
            // The replicas installed another valid IH for this instance than the one this client built: plan again.
            enteredWith = ih
            replan(ih)
            return
        }
        join(ih)
    }

    /// Moves to a later instance the replicas already entered (its proof checked by the caller).
    func join(_ ih: ChainInitHistory) {
        panicking = nil
        collector = AbstractAbortCollector(f: settings.f, checkpointInterval: settings.checkpointInterval, instance: ih.instance)
        statistics.instancesJoined += 1
        switchInstance(to: ih, announce: false)
    }

    /// ACP (spec §2.3, §12): invoke next(i) with IH. ⟨IH, Proof_IH⟩ goes to every replica first (on each link, ahead
    /// of this client's requests of the new instance, so the head installs it before ordering them); the pending
    /// requests IH holds commit from Σlast's direct replies, the others are sent again in the new instance with their
    /// timestamps (a request is executed at most once per t_c: a replica holding it in IH finds it not new).
    func switchInstance(to initHistory: ChainInitHistory, announce: Bool = true) {
        statistics.switches += 1
        switchesWithoutCommit += 1
        previousAuth = auth
        instance = initHistory.instance
        // Chain after a Backup: probe with the short timer (ChainClient.Settings.probeTimeoutNanos).
        probing = !Backup.Order.isBackup(instance) && instance > 1 && Backup.Order.isBackup(instance - 1)
        auth = auth.switched(to: instance)
        enteredWith = initHistory
        // Out of a Backup (f+1 histories): the Chain collector starts at this instance.
        collector = AbstractAbortCollector(f: settings.f, checkpointInterval: settings.checkpointInterval, instance: instance)
        if Backup.Order.isBackup(instance) { return enterBackup(initHistory, announce: announce) }
        // D8: to the head, which installs the first INIT it gets and forwards it down the chain ahead of the new
        // instance's batches, so every replica installs the same IH even when clients built different ones (from
        // different 2f+1 ABORTs). To every replica only when the head is unreachable.
        if announce {
            if let head = conns[0], up[0] {
                _ = transport.send(head, .initHistory(initHistory))
            } else {
                for r in 0..<settings.replicas.count {
                    guard let conn = conns[r], up[r] else { continue }
                    _ = transport.send(conn, .initHistory(initHistory))
                }
            }
        }
        replan(initHistory)
    }

    /// Pending requests IH holds await Σlast's direct replies; the others go to the head again with their timestamps.
    func replan(_ initHistory: ChainInitHistory) {
        let requests = pending.sorted { $0.key < $1.key }.map { ChainRequest(client: settings.client, timestamp: $0.key, op: $0.value.op) }
        let plan = AbstractResubmission.plan(pending: requests, initHistory: initHistory, digest: { pending[$0.timestamp]?.digest ?? auth.digest($0) })
        let deadline = monotonicNanos() + timerNanos
        for (request, _) in plan.inInitHistory { pending[request.timestamp]?.deadline = deadline }
        statistics.inInitHistory += UInt64(plan.inInitHistory.count)
        for request in plan.resubmit {
            pending[request.timestamp]?.deadline = deadline
            statistics.resubmitted += 1
            guard let digest = pending[request.timestamp]?.digest else { continue }
            send(request.timestamp, request.op, digest)
        }
    }
}
