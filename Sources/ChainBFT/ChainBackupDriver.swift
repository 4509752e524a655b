import RingCastChain
import RingCastBackup
import RingCastSMR
internal import CRingCastCore
import Glibc

/// A request by its client and timestamp (outside the generic engine, like ``ChainStoredOp``).
struct ChainBackupKey: Hashable {
    var client: UInt32
    var timestamp: UInt64
}

/// The replica's state machine as a Backup instance sees it (spec §13.1): the same ``StateMachine`` the Chain
/// instances run, with the same discipline — every execution recorded in the rollback log (D10) at its Chain
/// position, with its D2 digests, so the next Chain instance can restore the state at its base and take the Backup's
/// requests as init-history bodies from this replica's own log. The factory is built before the engine exists, so
/// the engine is attached right after (and only the engine thread calls in).
final class ChainBackupMachine<Machine: StateMachine>: BackupStateMachine {
    weak var engine: ChainReplicaEngine<Machine>?

    func install(_ initHistory: ChainInitHistory) { engine?.backupInstall(initHistory) }

    func execute(position: UInt64, request: ChainRequest) -> [UInt8] {
        engine?.backupExecute(position: position, request) ?? []
    }

    func executedReply(client: UInt32, timestamp: UInt64) -> [UInt8]? {
        engine?.backupExecutedReply(client: client, timestamp: timestamp)
    }
}

/// How a replica drives a Backup instance (spec §13.1; the recipe is the simulator's BackupSimWorld): client requests
/// (sent to every replica) and PBFT envelopes (on the control links) go into ``Backup/Instance/handle(_:)``; its
/// actions come out in order — envelopes to one or every other replica, replies and signed abort histories to the
/// client on its connection — and its timers run on the engine's tick.
extension ChainReplicaEngine {
    /// Enters Backup instance `ih.instance`: the composer makes it (AliphInstanceFactory) and checks IH's proof;
    /// the state is put at the end of IH only when PBFT orders the first request carrying a valid IH (every correct
    /// replica installs the same one), in ``backupInstall(_:)``. The Chain instance left stops and keeps answering
    /// late PANICs with its ABORT.
    func enterBackup(_ ih: ChainInitHistory) {
        do { try composer.enter(ih) } catch {
            if case .refused = error { switching.initHistoriesRefused += 1 } else { switching.initHistoriesStale += 1 }
            switching.lastRefusal = "\(error)"
            return
        }
        guard let instance = composer.current as? Backup.Instance else {
            preconditionFailure("Aliph's order makes instance \(ih.instance) a Backup instance")
        }
        backup = instance
        backupBehind = false
        backupInitReplies.removeAll()
        backupInstalledLast.removeAll()
        toldOfSwitch.removeAll()
        switching.instance = instance.instanceNumber
        switching.instancesEntered += 1
        switching.backupInstancesEntered += 1
        // The Chain instance's request bodies and replies are of no use in Backup (the rollback log keeps what
        // was executed). Held head requests are answered by the stopped core's ABORT in retryHeld().
        ops.removeAll()
        replies.removeAll()
        let early = earlyEnvelopes.filter { $0.instance == instance.instanceNumber }
        earlyEnvelopes.removeAll { $0.instance <= instance.instanceNumber }
        for e in early { stepBackup(.message(e.envelope)) }
    }

    /// BackupStateMachine.install: D10 for Backup — the state restored at IH's base, then IH's entries executed from
    /// this replica's own bodies, each recorded in the rollback log (and its reply kept for clients whose request IH
    /// holds). A base this replica cannot reach or a body it does not have leaves it behind for this instance.
    func backupInstall(_ ih: ChainInitHistory) {
        backupInitReplies.removeAll()
        backupInstalledLast.removeAll()
        let boundary = ih.base * UInt64(settings.checkpointInterval)
        let plan: (anchor: ChainRollbackLog.Anchor, replay: [ChainRollbackLog.Executed])
        do { plan = try rollback.plan(to: boundary, baseDigest: ih.baseDigest) } catch {
            return fallBehind("\(error)")
        }
        var bodies: [[UInt8]] = []
        bodies.reserveCapacity(ih.entries.count)
        for e in ih.entries {
            if let body = rollback.body(client: e.client, timestamp: e.timestamp), body.requestDigest == e.requestDigest {
                bodies.append(body.op)
            } else if let body = initBodies.last(where: { $0.client == e.client && $0.timestamp == e.timestamp }),
                      ChainDigest.request(client: e.client, timestamp: e.timestamp, op: body.op, keyRing: core.keyRing)
                        == e.requestDigest {
                bodies.append(body.op)
            } else {
                return fallBehind("no body for IH entry sn \(e.sn) (client \(e.client), t \(e.timestamp))")
            }
        }
        guard let (restored, last) = restore(plan.anchor, plan.replay) else {
            return fallBehind("the state machine could not restore its snapshot at sn \(plan.anchor.sn)")
        }
        machine = restored
        rollback.truncate(to: boundary, last: last)
        initBodies = []
        for (e, op) in zip(ih.entries, bodies) {
            let reply = ChainOperation.execute(&machine, op: op, sn: e.sn, client: e.client, timestamp: e.timestamp,
                                               outputs: &outputs)
            statistics.executed += 1
            rollback.record(ChainRollbackLog.Executed(sn: e.sn, client: e.client, timestamp: e.timestamp, op: op, reply: reply,
                                                      requestDigest: e.requestDigest, historyDigest: e.historyDigest)) {
                Self.snapshot(machine)
            }
            backupInitReplies[ChainBackupKey(client: e.client, timestamp: e.timestamp)] = reply
        }
        backupInstalledLast = rollback.last
    }

    /// BackupStateMachine.executedReply: whether the state as installed (end of IH) already executed (client, t) —
    /// an IH entry, or t at or below the client's last executed timestamp there (a client's timestamps execute in
    /// increasing order: Chain's head discards t ≤ t_j[c], PBFT's reply table skips t ≤ its last, and this rule) —
    /// and its reply: IH's, the last one's, or the rollback log's (empty when the log no longer holds it).
    func backupExecutedReply(client: UInt32, timestamp: UInt64) -> [UInt8]? {
        guard !backupBehind else { return nil }
        if let reply = backupInitReplies[ChainBackupKey(client: client, timestamp: timestamp)] { return reply }
        guard let last = backupInstalledLast[client], timestamp <= last.timestamp else { return nil }
        if timestamp == last.timestamp { return last.reply }
        return rollback.reply(client: client, timestamp: timestamp) ?? []
    }

    private func fallBehind(_ reason: String) {
        if !backupBehind { switching.backupBehind += 1 }
        backupBehind = true
        switching.lastRefusal = "Backup: \(reason)"
    }

    /// BackupStateMachine.execute: one committed request at Chain position `position`, on the replica's state.
    func backupExecute(position: UInt64, _ request: ChainRequest) -> [UInt8] {
        guard !backupBehind else { return [] }
        guard position == rollback.lastSN + 1 else {
            fallBehind("a Backup commit at sn \(position) after state sn \(rollback.lastSN)")
            return []
        }
        let reply = ChainOperation.execute(&machine, op: request.op, sn: position, client: request.client,
                                           timestamp: request.timestamp, outputs: &outputs)
        let d = ChainDigest.request(client: request.client, timestamp: request.timestamp, op: request.op, keyRing: core.keyRing)
        let h = rollback.lastHistoryDigest.extended(sn: position, request: d, keyRing: core.keyRing)
        rollback.record(ChainRollbackLog.Executed(sn: position, client: request.client, timestamp: request.timestamp,
                                                  op: request.op, reply: reply, requestDigest: d, historyDigest: h)) {
            Self.snapshot(machine)
        }
        statistics.executed += 1
        switching.backupExecuted += 1
        return reply
    }

    // ---- events ---------------------------------------------------------------------------------------

    /// A PBFT envelope from replica `from` (its control link; the envelope's signature is checked by PBFT).
    func receive(pbft envelope: PBFT.Envelope, instance: UInt64) {
        if let backup, instance == backup.instanceNumber {
            switching.backupEnvelopesIn += 1
            stepBackup(.message(envelope))
        } else if instance > composer.currentNumber, Backup.Order.isBackup(instance) {
            // A peer entered first (its client's INIT reached it first): kept until this replica enters.
            guard earlyEnvelopes.count < settings.backupEarlyEnvelopesMax else {
                switching.backupEarlyDropped += 1
                return
            }
            earlyEnvelopes.append((instance, envelope))
            switching.backupEarlyKept += 1
        } else {
            switching.oldInstanceFrames += 1
        }
    }

    /// A client's request for Backup instance `instance`. The first one of a client carries IH (C1+): a replica that
    /// has not entered yet enters with it. A Backup instance left answers a new request with its signed abort
    /// history, so a late client learns where to go; an older one gets the current IH (once per instance).
    func receive(backupRequest request: PBFT.ClientRequest, instance: UInt64, client: UInt32, on conn: UInt32) {
        if instance > composer.currentNumber, let ih = request.request.initHistory, ih.instance == instance {
            enter(ih, client: client, on: conn)
        }
        if let backup, instance == backup.instanceNumber {
            switching.backupRequests += 1
            stepBackup(.request(request))
            return
        }
        if let left = composer.instance(instance) as? Backup.Instance {
            guard let actions = try? left.handle(.request(request)) else { return }
            // Only what concerns the client: the order there is over.
            perform(actions.filter { if case .reply = $0 { true } else if case .abort = $0 { true } else { false } },
                    instance: instance)
            return
        }
        switching.oldInstanceFrames += 1
        if instance < composer.currentNumber, let ih = composer.currentInitHistory, client < settings.clientsMax,
           toldOfSwitch.insert(client).inserted {
            _ = send(conn, .initHistory(ih))
        }
    }

    /// One tick of the current Backup instance's timers (PBFT's view-change timer).
    func tickBackup() {
        guard backup != nil else { return }
        stepBackup(.tick)
    }

    func stepBackup(_ event: PBFT.Event) {
        guard let backup else { return }
        let actions: [Backup.Action]
        do { actions = try backup.handle(event) } catch {
            switching.backupRefused += 1 // bad input: refused by the core, which is unchanged
            return
        }
        perform(actions, instance: backup.instanceNumber)
    }

    /// Backup's actions, in order: envelopes on the control links, replies and abort histories to the client.
    private func perform(_ actions: [Backup.Action], instance: UInt64) {
        for action in actions {
            switch action {
            case .send(let to, let e):
                sendEnvelope(e, to: to, instance: instance)
            case .broadcast(let e):
                for q in 0..<(3 * settings.f + 1) where q != settings.position { sendEnvelope(e, to: q, instance: instance) }
            case .reply(let reply):
                // A replica whose state is not at the end of IH computed nothing worth sending (f+1 others will).
                guard !backupBehind || instance != backup?.instanceNumber else { continue }
                guard let conn = clientConns[reply.client] else {
                    statistics.repliesUnroutable += 1
                    continue
                }
                switching.backupReplies += 1
                _ = send(conn, .backupReply(instance: instance, reply))
            case .abort(let history):
                guard let conn = clientConns[history.client] else {
                    statistics.repliesUnroutable += 1
                    continue
                }
                switching.backupAbortHistories += 1
                _ = send(conn, .abort(history))
            case .enteredView:
                switching.backupViewsEntered += 1
            case .installed, .executed:
                break
            }
        }
    }

    /// PBFT has no retransmission of its own (RingCastBackup's catalogue): a link down or full loses the envelope,
    /// counted; the view-change timer and the next instance are the recovery.
    private func sendEnvelope(_ e: PBFT.Envelope, to q: UInt32, instance: UInt64) {
        guard case .up(let conn)? = control[q] else {
            statistics.framesDropped += 1
            return
        }
        switching.backupEnvelopesOut += 1
        _ = send(conn, .pbft(instance: instance, e))
    }
}
