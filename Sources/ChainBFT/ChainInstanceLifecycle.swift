import RingCastChain
import RingCastBackup
import RingCastSMR
internal import CRingCastCore
import Glibc

/// Counters of switching at one replica (spec §2.3, §12).
public struct ChainSwitchStatistics: Sendable, Hashable {
    /// The instance this replica is in.
    public var instance: UInt64 = 1
    public var instancesEntered: UInt64 = 0
    /// Init histories the new instance's core refused (bad proof, wrong next instance, not P3 of its proof).
    public var initHistoriesRefused: UInt64 = 0
    /// Init histories for this instance or an earlier one (switching is monotonic): ignored.
    public var initHistoriesStale: UInt64 = 0
    /// Valid init histories this replica could not enter because its state cannot reach the checkpoint base
    /// (``ChainRollbackLog/Unreachable``: state transfer is not implemented).
    public var initHistoriesUnreachable: UInt64 = 0
    /// Batches, CHECKPOINTs and PANICs of an instance this replica left (or never had): ignored.
    public var oldInstanceFrames: UInt64 = 0
    public var fetchesSent: UInt64 = 0
    public var fetchesAnswered: UInt64 = 0
    /// FETCH answers whose body did not have the digest IH holds (a lying replica): refused by the core.
    public var fetchedRejected: UInt64 = 0
    public var fetchedAccepted: UInt64 = 0
    /// IH bodies this replica supplied from its own log on entering.
    public var bodiesSupplied: UInt64 = 0
    /// Σlast's direct replies for IH requests (rc_chain_init_reply) and base-covered ones (D7, rc_chain_cached_reply).
    public var initRepliesSent: UInt64 = 0
    /// Why the last init history for a later instance was not entered (refused or unreachable), in words.
    public var lastRefusal: String?
    /// Backup instances entered; client requests and PBFT envelopes handed to them (and refused by them).
    public var backupInstancesEntered: UInt64 = 0
    public var backupRequests: UInt64 = 0
    public var backupEnvelopesIn: UInt64 = 0
    public var backupEnvelopesOut: UInt64 = 0
    public var backupRefused: UInt64 = 0
    /// Requests this replica executed in Backup instances (init-history replays not counted), replies and signed
    /// abort histories it sent clients.
    public var backupExecuted: UInt64 = 0
    public var backupReplies: UInt64 = 0
    public var backupAbortHistories: UInt64 = 0
    /// Backup instances in which this replica could not put its state at the end of the init history (a body it
    /// never executed, or a base it cannot reach): it orders with PBFT but executes and replies nothing there, and
    /// catches up in the next Chain instance (FETCH; spec §12).
    public var backupBehind: UInt64 = 0
    /// PBFT envelopes of a later instance kept until this replica entered it, and those dropped beyond the bound.
    public var backupEarlyKept: UInt64 = 0
    public var backupEarlyDropped: UInt64 = 0
    /// PBFT views entered (view changes completed) in Backup instances.
    public var backupViewsEntered: UInt64 = 0
}

extension ChainReplicaEngine {
    /// C2+/C3+ and D8–D10: enters `ih.instance` when its proof holds. In order: check that this replica's state can be
    /// put at the checkpoint base (D10); let the composer make the instance and install IH (the core checks the proof
    /// and P3; a refusal changes nothing); leave the old instance (rc_chain_leave: late PANICs still get its ABORT);
    /// restore the state at the base; give the core t_j[c] there and the bodies this replica has; D7 replies at Σlast;
    /// forward the INIT to the successor ahead of the new instance's batches (D8).
    func enter(_ ih: ChainInitHistory, client: UInt32? = nil, on conn: UInt32? = nil) {
        guard ih.instance > composer.currentNumber else {
            switching.initHistoriesStale += 1
            // A client that built another IH for the instance this replica is in (or one for an earlier instance):
            // it gets the IH installed here, once per instance, and checks it itself.
            if let client, let conn, let installed = composer.currentInitHistory, installed != ih,
               client < settings.clientsMax, toldOfSwitch.insert(client).inserted {
                _ = send(conn, .initHistory(installed))
            }
            return
        }
        if Backup.Order.isBackup(ih.instance) { return enterBackup(ih) }
        let boundary = ih.base * UInt64(settings.checkpointInterval)
        let plan: (anchor: ChainRollbackLog.Anchor, replay: [ChainRollbackLog.Executed])
        do { plan = try rollback.plan(to: boundary, baseDigest: ih.baseDigest) } catch {
            switching.initHistoriesUnreachable += 1
            switching.lastRefusal = "\(error)"
            return
        }
        // The bodies this replica executed, before the log is cut back to the base.
        var bodies: [(sn: UInt64, request: ChainRequest)] = []
        if !settings.forgetBodiesOnEnter {
            for entry in ih.entries {
                if let body = rollback.body(client: entry.client, timestamp: entry.timestamp), body.requestDigest == entry.requestDigest {
                    bodies.append((entry.sn, ChainRequest(client: entry.client, timestamp: entry.timestamp, op: body.op)))
                }
            }
        }
        // D10 on a copy first: a state the machine cannot restore leaves this replica where it was.
        guard let (restored, last) = restore(plan.anchor, plan.replay) else {
            switching.initHistoriesUnreachable += 1
            switching.lastRefusal = "the state machine could not restore its snapshot at sn \(plan.anchor.sn)"
            return
        }
        do { try composer.enter(ih) } catch {
            if case .refused = error { switching.initHistoriesRefused += 1 } else { switching.initHistoriesStale += 1 }
            switching.lastRefusal = "\(error)"
            return
        }
        guard let next = composer.current as? ChainCore else {
            preconditionFailure("the engine drives Chain instances; a Backup instance needs its own engine path")
        }
        core = next
        backup = nil
        toldOfSwitch.removeAll()
        switching.instance = next.instanceNumber
        switching.instancesEntered += 1
        machine = restored
        rollback.truncate(to: boundary, last: last)
        // The old instance's request bodies, replies and held frames are of no use in the new one.
        ops.removeAll()
        replies.removeAll()
        heldRequests.removeAll()
        var timestamps = [UInt64](repeating: 0, count: Int(settings.clientsMax))
        for (client, reply) in last where Int(client) < timestamps.count { timestamps[Int(client)] = reply.timestamp }
        let rc = core.installBaseTimestamps(timestamps)
        precondition(rc == 0, "rc_chain_init_base_timestamps right after rc_chain_on_init: \(rc)")
        initBodies = []
        for (sn, request) in bodies { supply(sn: sn, request) }
        switching.bodiesSupplied += UInt64(bodies.count)
        cachedReplies(last)
        if case .up(let conn)? = data { _ = send(conn, .initHistory(ih)) }
    }

    /// D10: the state machine back at the anchor, then the requests up to the base replayed (the same outputs: the
    /// machine is deterministic). Returns each client's last request as of the base.
    func restore(_ anchor: ChainRollbackLog.Anchor, _ replay: [ChainRollbackLog.Executed])
        -> (Machine, [UInt32: ChainRollbackLog.LastReply])? {
        var chunks = [anchor.snapshot]
        var reader = SnapshotReader { () throws(SnapshotError) -> [UInt8]? in chunks.isEmpty ? nil : chunks.removeFirst() }
        var state = machine
        do throws(SnapshotError) { try state.restore(from: &reader) } catch { return nil }
        var last = anchor.last
        for e in replay {
            _ = ChainOperation.execute(&state, op: e.op, sn: e.sn, client: e.client, timestamp: e.timestamp, outputs: &outputs)
            last[e.client] = ChainRollbackLog.LastReply(sn: e.sn, timestamp: e.timestamp, reply: e.reply,
                                                        requestDigest: e.requestDigest, historyDigest: e.historyDigest)
        }
        return (state, last)
    }

    /// An IH body (own or fetched) to the core; stored under a fresh ref until executed.
    @discardableResult
    func supply(sn: UInt64, _ request: ChainRequest) -> Int32 {
        var local = request
        local.ref = nextRef
        let rc = core.supply(sn: sn, local)
        if rc == 0 {
            // IH requests are not sent on in batches: every replica holds IH.
            ops.insert(nextRef, Stored(op: request.op, sent: true))
            nextRef += 1
            initBodies.append(request)
        }
        return rc
    }

    /// D7 at Σlast: each client's last reply up to the base, MACed for this instance, straight to the client (its
    /// request is not new here, so no batch will carry it).
    private func cachedReplies(_ last: [UInt32: ChainRollbackLog.LastReply]) {
        guard core.inSigmaLast else { return }
        for (client, r) in last.sorted(by: { $0.key < $1.key }) {
            guard let conn = clientConns[client],
                  let mac = core.cachedReply(client: client, sn: r.sn, request: r.requestDigest, reply: r.reply,
                                             history: r.historyDigest) else { continue }
            switching.initRepliesSent += 1
            _ = send(conn, .initReply(ChainInitReply(instance: core.instanceNumber, replica: settings.position, client: client,
                                                     timestamp: r.timestamp, sn: r.sn, reply: r.reply,
                                                     historyDigest: r.historyDigest, mac: mac)))
        }
    }

    /// Records an execution for D10, and at Σlast answers an IH request straight to its client (rc_chain_init_reply).
    func executed(_ e: rc_chain_execution, op: [UInt8], reply: [UInt8]) {
        let requestDigest: ChainDigest, historyDigest: ChainDigest
        if let view = core.history(e.sn) {
            requestDigest = ChainDigest(view.request_digest); historyDigest = ChainDigest(view.history_digest)
        } else {
            // Already collected by the core (a stable checkpoint): the same D2 digests, recomputed.
            requestDigest = ChainDigest.request(client: e.client, timestamp: e.timestamp, op: op, keyRing: core.keyRing)
            historyDigest = rollback.lastHistoryDigest.extended(sn: e.sn, request: requestDigest, keyRing: core.keyRing)
        }
        rollback.record(ChainRollbackLog.Executed(sn: e.sn, client: e.client, timestamp: e.timestamp, op: op, reply: reply,
                                                  requestDigest: requestDigest, historyDigest: historyDigest)) { Self.snapshot(machine) }
        guard !e.reply_needed, core.inSigmaLast, let range = core.initRange, range.contains(e.sn),
              let (mac, history) = core.initReply(sn: e.sn, reply) else { return }
        switching.initRepliesSent += 1
        guard let conn = clientConns[e.client] else {
            statistics.repliesUnroutable += 1
            return
        }
        _ = send(conn, .initReply(ChainInitReply(instance: core.instanceNumber, replica: settings.position, client: e.client,
                                                 timestamp: e.timestamp, sn: e.sn, reply: reply, historyDigest: history, mac: mac)))
    }

    /// FETCH from replica `fetch.from`: the body this replica executed for (client, t_c) when its digest is the one
    /// asked for, else none; on this replica's own control link to the asker.
    func answer(_ fetch: ChainFetchFrame) {
        var request: ChainRequest?
        if let body = rollback.body(client: fetch.client, timestamp: fetch.timestamp), body.requestDigest == fetch.requestDigest {
            request = ChainRequest(client: fetch.client, timestamp: fetch.timestamp, op: body.op)
        } else if let body = initBodies.last(where: { $0.client == fetch.client && $0.timestamp == fetch.timestamp }) {
            // Supplied to the core (which checked its digest) but not executed again yet.
            request = ChainRequest(client: body.client, timestamp: body.timestamp, op: body.op)
        }
        guard case .up(let conn)? = control[fetch.from] else { return } // the asker asks again next round
        switching.fetchesAnswered += 1
        _ = send(conn, .fetched(ChainFetchedFrame(instance: fetch.instance, sn: fetch.sn, request: request)))
    }

    /// A FETCH answer: the core takes the body only when its digest is IH's at that sn.
    func receive(_ fetched: ChainFetchedFrame) {
        guard fetched.instance == core.instanceNumber, let request = fetched.request else { return }
        let rc = supply(sn: fetched.sn, request)
        if rc == 0 { switching.fetchedAccepted += 1 } else if rc == -EBADMSG { switching.fetchedRejected += 1 }
    }

    /// Duty: the FETCHes due now, each on the control link to the replica asked.
    func sendFetches() {
        for fetch in core.fetches() {
            guard case .up(let conn)? = control[fetch.to] else { continue }
            switching.fetchesSent += 1
            _ = send(conn, .fetch(ChainFetchFrame(fetch)))
        }
    }

    /// A request whose head MAC failed in the current instance, at a head that entered it with an init history: most
    /// likely a client that has not switched yet (its MACs are for an instance left, perhaps several instances ago,
    /// beyond the one old instance kept). The head sends it ⟨IH, Proof_IH⟩ of the current instance, once per client
    /// and instance; the client checks the proof itself (signatures and P3) and moves there without waiting for its
    /// timer. A Byzantine client gets one frame per instance at most and no signature.
    func staleClientRequest(_ request: ChainRequest, on conn: UInt32) {
        guard let ih = composer.currentInitHistory, request.client < settings.clientsMax,
              toldOfSwitch.insert(request.client).inserted else { return }
        switching.oldInstanceFrames += 1
        _ = send(conn, .initHistory(ih))
    }

    /// A PANIC goes to the instance it names: the current one, or the one just left (still answering with its ABORT).
    func route(_ panic: ChainPanicFrame, on conn: UInt32) {
        guard let instance = composer.instance(panic.c.instance) as? ChainCore else {
            switching.oldInstanceFrames += 1
            // An instance left longer ago than the one kept: no ABORT of it any more, but the IH of the current one,
            // which the client checks and joins (once per client and instance).
            if panic.c.instance < core.instanceNumber, let ih = composer.currentInitHistory,
               panic.c.client < settings.clientsMax, toldOfSwitch.insert(panic.c.client).inserted {
                _ = send(conn, .initHistory(ih))
            }
            return
        }
        if case .success(let abort) = instance.panic(panic.c) {
            statistics.aborts += 1
            _ = send(conn, .abort(abort))
        }
    }
}
