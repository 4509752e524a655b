import RingCastChain
import RingCastBackup
import RingCastSMR
internal import CRingCastCore
import Glibc

/// A request's bytes and what still needs them. Outside the generic engine on purpose: a type nested in
/// ChainReplicaEngine<Machine> is generic too, so `[UInt64: Stored]` could not be specialized in the engine's
/// (unspecialized, Machine-generic) code and every access went through runtime generic-metadata lookups (the
/// profile in docs/chain-bft.md).
struct ChainStoredOp {
    var op: [UInt8]
    var sent = false
    var executed = false
}

/// A replica's link to another replica (see ``ChainStoredOp`` for why it is not nested in the engine).
enum ChainLink { case connecting(UInt32), up(UInt32), down(retryAt: UInt64) }

/// The engine thread's state of one replica: transport, core, state machine, and the bytes of the requests the core
/// names by `ref` (rc_chain.h: the caller keeps them until the request was sent on and executed).
final class ChainReplicaEngine<Machine: StateMachine> {
    typealias Settings = ChainReplica<Machine>.Settings

    let settings: Settings
    let transport: ChainTransport
    /// The current instance's core (the composer's current instance, ChainInstanceLifecycle.swift).
    var core: ChainCore
    let composer: AbstractReplica
    /// The current instance when it is a Backup (ChainBackupDriver.swift); `core` is then the Chain instance left.
    var backup: Backup.Instance?
    let backupMachine: ChainBackupMachine<Machine>
    /// This replica could not put its state at the end of the current Backup's init history: it orders, but does not
    /// execute or reply there.
    var backupBehind = false
    /// The replies of the current Backup's init-history entries (for clients whose request IH holds).
    var backupInitReplies: [ChainBackupKey: [UInt8]] = [:]
    /// Each client's last execution as of the end of the current Backup's init history (exactly-once across instances).
    var backupInstalledLast: [UInt32: ChainRollbackLog.LastReply] = [:]
    /// PBFT envelopes of a later Backup instance, until this replica enters it (≤ backupEarlyEnvelopesMax).
    var earlyEnvelopes: [(instance: UInt64, envelope: PBFT.Envelope)] = []
    var rollback: ChainRollbackLog
    var switching = ChainSwitchStatistics()
    /// The IH bodies this replica holds in the current instance (own or fetched), for FETCHes of other replicas.
    var initBodies: [ChainRequest] = []
    /// Clients sent the current instance's init history (once each) because they still use an instance left.
    var toldOfSwitch = Set<UInt32>()
    let port: UInt16
    var machine: Machine
    var outputs: [Machine.Output] = []

    typealias Stored = ChainStoredOp
    var ops = ChainOpStore()
    var nextRef: UInt64 = 1
    /// The tail's replies, until its reply batch is sent.
    var replies: [UInt64: [UInt8]] = [:]

    typealias Link = ChainLink
    /// Control links to every other replica, and the data link to the successor.
    var control: [UInt32: Link] = [:]
    var data: Link?
    private var peers: [UInt32: ChainPeer] = [:]
    var clientConns: [UInt32: UInt32] = [:]
    /// A batch from the predecessor the core refused for now (-EAGAIN); its connection is paused.
    private var heldBatch: (conn: UInt32, batch: ChainBatch)?
    /// Requests the head refused for now (-EAGAIN), oldest first; their connections are paused.
    var heldRequests: [(conn: UInt32, request: ChainRequest, macs: [ChainMAC])] = []
    private var nextTickNanos: UInt64
    var statistics = ChainReplica<Machine>.Statistics()
    /// Well-formed frames no correct peer sends on the link they came on (the connection was closed).
    private var rejected: UInt64 = 0
    private static var reconnectNanos: UInt64 { 50_000_000 }

    init(settings: Settings, keyRing: ChainKeyRing, machine: Machine) throws(ChainBFTError) {
        self.settings = settings
        self.machine = machine
        var coreSettings = ChainCore.settings(
            f: settings.f, self: settings.position, instance: settings.instance, clients: settings.clientsMax,
            batchCount: settings.batchCountMax, batchBytes: settings.batchBytesMax,
            checkpointInterval: settings.checkpointInterval, historyMax: settings.historyMax,
            outBatches: settings.outBatchesMax, checkpointRetransmitTicks: settings.checkpointRetransmitTicks,
            crypto: rc_crypto())
        coreSettings.crypto = keyRing.crypto
        // Aliph's order (spec §13.1): Chain (odd instances) → Backup (even) → Chain → …; one old instance kept (late
        // PANICs get its ABORT, late Backup requests its abort history).
        let backupMachine = ChainBackupMachine<Machine>()
        self.backupMachine = backupMachine
        let pbft = PBFT.Settings(f: settings.f, replica: settings.position, checkpointInterval: settings.backupCheckpointInterval,
                                 logWindow: settings.backupLogWindow, clientsMax: settings.clientsMax,
                                 pendingMax: settings.backupPendingMax, opBytesMax: Int(settings.batchBytesMax),
                                 viewChangeTimeoutTicks: settings.backupViewChangeTimeoutTicks)
        do {
            let factory = AliphInstanceFactory(chain: ChainInstanceFactory(settings: coreSettings, keyRing: keyRing), pbft: pbft,
                                               schedule: settings.backupSchedule, machine: { _ in backupMachine })
            _ = try factory.makeBackup(2) // settings check up front: PBFT's settings are validated when one is made
            composer = try AbstractReplica(factory: factory, first: settings.instance, retained: 1)
        } catch { throw .core("rc_chain_init", -22) }
        core = composer.current as! ChainCore
        // D10 must reach back to the oldest base an init history can name: with a replica down no Chain checkpoint
        // becomes stable (it needs all 3f+1), so the base stays put while history_max entries accumulate.
        let anchors = max(4, Int(coreSettings.history_max / max(1, settings.checkpointInterval)) + 2)
        rollback = ChainRollbackLog(anchorsMax: anchors, checkpointInterval: UInt64(settings.checkpointInterval),
                                    initialSnapshot: Self.snapshot(machine) ?? [])
        var transportSettings = ChainTransport.Settings()
        transportSettings.connectionsMax = settings.connectionsMax
        transportSettings.receiveBufferBytes = settings.receiveBufferBytes
        transportSettings.limits = settings.limits
        transport = try ChainTransport(transportSettings)
        let me = settings.listen ?? settings.replicas[Int(settings.position)]
        port = try transport.listen(host: me.host, port: me.port)
        nextTickNanos = monotonicNanos() + settings.tickNanos
        statistics.position = settings.position
        let n = 3 * settings.f + 1
        for q in 0..<n where q != settings.position { control[q] = .down(retryAt: 0) }
        if settings.position + 1 < n { data = .down(retryAt: 0) }
        backupMachine.engine = self
    }

    private var n: UInt32 { 3 * settings.f + 1 }
    private var isHead: Bool { settings.position == 0 }
    private var isTail: Bool { settings.position == n - 1 }

    // ---- the loop ---------------------------------------------------------------------------------------

    /// One round: wait for events (at most until the next tick), handle them, then the caller's duties.
    func round() throws(ChainBFTError) {
        let now = monotonicNanos()
        let wait = nextTickNanos > now ? Int64(nextTickNanos - now) : 0
        try transport.poll(timeoutNanos: wait) { event in handle(event) }
        let after = monotonicNanos()
        if after >= nextTickNanos {
            core.tick()
            tickBackup()
            nextTickNanos = after + settings.tickNanos
            reconnect(now: after)
        }
        retryHeld()
        duties()
        refreshStatistics()
    }

    static func snapshot(_ machine: Machine) -> [UInt8]? {
        var bytes: [UInt8] = []
        var writer = SnapshotWriter(chunkBytesMax: 1 << 16) { chunk in bytes.append(contentsOf: chunk) }
        do throws(SnapshotError) {
            try machine.snapshot(into: &writer)
            try writer.flush()
            return bytes
        } catch { return nil }
    }

    func finish() {
        var digest = FNV1a64()
        var writer = SnapshotWriter(chunkBytesMax: 1 << 16) { chunk in digest.combine(chunk) }
        do throws(SnapshotError) {
            try machine.snapshot(into: &writer)
            try writer.flush()
            statistics.stateDigest = digest.value
        } catch {
            statistics.stateDigest = nil
        }
    }

    func send(_ conn: UInt32, _ frame: ChainFrame) -> Bool {
        var frame = frame
        if let outbound = settings.outbound {
            guard let altered = outbound(frame) else { return true }
            frame = altered
        }
        let sent = transport.send(conn, frame)
        if !sent { statistics.framesDropped += 1 }
        return sent
    }

    // ---- links ----------------------------------------------------------------------------------------

    private func reconnect(now: UInt64) {
        for (q, link) in control {
            if case .down(let at) = link, now >= at { control[q] = open(to: q, .replicaControl(settings.position), now: now) }
        }
        if let link = data, case .down(let at) = link, now >= at {
            data = open(to: settings.position + 1, .replicaData(settings.position), now: now)
        }
    }

    private func open(to q: UInt32, _ hello: ChainPeer, now: UInt64) -> Link {
        let endpoint = settings.replicas[Int(q)]
        do throws(ChainBFTError) {
            let conn = try transport.connect(host: endpoint.host, port: endpoint.port)
            peers[conn] = nil
            return .connecting(conn)
        } catch {
            return .down(retryAt: now + Self.reconnectNanos)
        }
    }

    private func linkEvent(_ conn: UInt32, up: Bool) {
        let now = monotonicNanos()
        for (q, link) in control {
            switch link {
            case .connecting(let c) where c == conn, .up(let c) where c == conn:
                if up {
                    control[q] = .up(conn)
                    _ = transport.send(conn, .hello(.replicaControl(settings.position), instance: settings.instance))
                } else {
                    control[q] = .down(retryAt: now + Self.reconnectNanos)
                }
                return
            default: continue
            }
        }
        if let link = data {
            switch link {
            case .connecting(let c) where c == conn, .up(let c) where c == conn:
                if up {
                    data = .up(conn)
                    _ = transport.send(conn, .hello(.replicaData(settings.position), instance: settings.instance))
                } else {
                    data = .down(retryAt: now + Self.reconnectNanos)
                }
            default: break
            }
        }
    }

    private func dropInbound(_ conn: UInt32) {
        if case .client(let c)? = peers[conn], clientConns[c] == conn { clientConns[c] = nil }
        peers[conn] = nil
        if heldBatch?.conn == conn { heldBatch = nil }
        heldRequests.removeAll { $0.conn == conn }
    }

    /// A frame no correct peer sends on this link: counted, the connection closed, the node keeps working.
    private func reject(_ conn: UInt32) {
        rejected += 1
        transport.close(conn)
        linkEvent(conn, up: false)
        dropInbound(conn)
    }

    // ---- events ---------------------------------------------------------------------------------------

    private func handle(_ event: ChainTransport.Event) -> ChainTransport.Disposition {
        switch event {
        case .accepted(let conn): peers[conn] = nil
        case .connected(let conn): linkEvent(conn, up: true)
        case .connectFailed(let conn, _), .closed(let conn, _):
            linkEvent(conn, up: false)
            dropInbound(conn)
        case .malformed(let conn, _):
            linkEvent(conn, up: false)
            dropInbound(conn)
        case .wake: break
        case .frame(let conn, let frame): return handle(frame, on: conn)
        }
        return .next
    }

    private func handle(_ frame: ChainFrame, on conn: UInt32) -> ChainTransport.Disposition {
        guard let peer = peers[conn] else {
            // Any instance: links outlive instances, and every later frame names its instance or carries its MACs.
            guard case .hello(let peer, let instance) = frame, instance >= 1, admits(peer) else {
                reject(conn)
                return .next
            }
            peers[conn] = peer
            if case .client(let c) = peer { clientConns[c] = conn }
            return .next
        }
        switch (peer, frame) {
        case (.replicaData, .batch(let batch)):
            statistics.payloadCopies += UInt64(batch.requests.count) // ChainWire.decode copied each op out of rc_io's buffer
            return receive(batch, on: conn) ? .next : .pause
        case (.replicaControl, .checkpoint(let checkpoint)):
            if checkpoint.c.instance == core.instanceNumber { _ = core.receive(checkpoint: checkpoint.c) } else { switching.oldInstanceFrames += 1 }
        case (.client(let c), .initHistory(let ih)):
            enter(ih, client: c, on: conn)
        case (_, .initHistory(let ih)):
            enter(ih)
        case (.replicaControl(let q), .fetch(let fetch)) where fetch.from == q && fetch.to == settings.position:
            answer(fetch)
        case (.replicaControl, .fetched(let fetched)):
            receive(fetched)
        case (.client(let c), .request(let request, let macs)) where isHead && request.client == c:
            statistics.payloadCopies += 1 // ChainWire.decode copied the op out of rc_io's buffer
            return order(request, macs, on: conn) ? .next : .pause
        case (.client(let c), .panic(let panic)) where panic.c.client == c:
            route(panic, on: conn)
        case (.replicaControl(let q), .pbft(let instance, let envelope)) where envelope.sender == q:
            receive(pbft: envelope, instance: instance)
        case (.client(let c), .backupRequest(let instance, let request)) where request.request.client == c:
            receive(backupRequest: request, instance: instance, client: c, on: conn)
        default:
            reject(conn)
        }
        return .next
    }

    private func admits(_ peer: ChainPeer) -> Bool {
        switch peer {
        case .replicaData(let p): return p + 1 == settings.position
        case .replicaControl(let p): return p < n && p != settings.position
        case .client(let c): return c < settings.clientsMax
        }
    }

    /// C2 at the head. false: the core is full, the request is held and its connection paused.
    private func order(_ request: ChainRequest, _ macs: [ChainMAC], on conn: UInt32) -> Bool {
        guard macs.count == Int(settings.f) + 1 else {
            reject(conn)
            return true
        }
        var local = request
        local.ref = nextRef
        let rc = core.request(local, clientMACs: macs)
        switch rc {
        case 0:
            ops.insert(nextRef, Stored(op: request.op))
            nextRef += 1
        case -EAGAIN:
            guard heldRequests.count < settings.heldRequestsMax else {
                statistics.framesDropped += 1
                return true
            }
            heldRequests.append((conn, request, macs))
            return false
        case -ESHUTDOWN where backup != nil:
            // The head is in a Backup instance (the Chain core is the instance left): a client still sending Chain
            // requests gets the Backup's IH, checks its proof and joins (once per client and instance).
            staleClientRequest(request, on: conn)
        case -ESHUTDOWN:
            // D13: a stopped head answers with its signed ABORT, so the client learns the instance is over.
            if case .success(let abort) = core.stoppedAbort(client: request.client, timestamp: request.timestamp) {
                statistics.aborts += 1
                _ = send(conn, .abort(abort))
            }
        case -EBADMSG:
            staleClientRequest(request, on: conn) // C2 step 3: discarded; a client still in an instance left learns of it
        default:
            break // not new (1): discarded (C2 step 2); counted by the core
        }
        return true
    }

    /// C3. false: the core is full, the batch is held and its connection paused.
    private func receive(_ batch: ChainBatch, on conn: UInt32) -> Bool {
        // The predecessor forwards the INIT ahead of the new instance's batches (D8), so a later instance's batch
        // waits (held, its link paused) only while this replica has not entered it; an earlier one's is dropped.
        if batch.instance > core.instanceNumber { heldBatch = (conn, batch); return false }
        if batch.instance < core.instanceNumber { switching.oldInstanceFrames += 1; return true }
        let firstRef = nextRef
        // No copy: ChainBatch.withCBatch lends each op where its array keeps it, with refs from firstRef.
        let rc = core.receive(batch, firstRef: firstRef)
        if rc == -EAGAIN {
            heldBatch = (conn, batch)
            return false
        }
        if rc == 0 {
            for (k, request) in batch.requests.enumerated() { ops.insert(firstRef + UInt64(k), Stored(op: request.op)) }
            nextRef += UInt64(batch.requests.count)
        }
        return true
    }

    private func retryHeld() {
        if let held = heldBatch {
            heldBatch = nil
            if receive(held.batch, on: held.conn) { transport.resume(held.conn) { handle($0) } }
        }
        while let first = heldRequests.first {
            heldRequests.removeFirst()
            guard order(first.request, first.macs, on: first.conn) else {
                // order() appended it again at the end: put it back in front, keep FIFO per client.
                let again = heldRequests.removeLast()
                heldRequests.insert(again, at: 0)
                return
            }
            if !heldRequests.contains(where: { $0.conn == first.conn }) {
                transport.resume(first.conn) { handle($0) }
            }
        }
    }

    // ---- duties (rc_chain.h, in order) ----------------------------------------------------------------

    private func duties() {
        execute()
        forward()
        sendFetches()
        for checkpoint in core.checkpoints() {
            guard case .up(let conn)? = control[checkpoint.to] else {
                statistics.framesDropped += 1 // retransmitted by the core while cc is not stable
                continue
            }
            _ = send(conn, .checkpoint(ChainCheckpointFrame(checkpoint)))
        }
    }

    /// 1. Executions in sn order; at Σlast each reply back to the core.
    ///
    /// Consecutive commands go to the state machine as one ``CommandBatch`` (one `apply` per run instead of one per
    /// request: the engine is generic over the machine and not specialized for it, so each call into it pays runtime
    /// generic dispatch — ≈ 10 % of a replica's CPU with one call per request, docs/chain-bft.md, third pass). A run
    /// ends after a checkpoint boundary (sn a multiple of CHK: the rollback log snapshots the state exactly there) and
    /// before an operation that is not a decodable command (a query or bad bytes, answered one by one as before).
    /// The state and the replies are those of applying each command alone, in sn order.
    private func execute() {
        let executions = core.executions()
        var k = 0
        while k < executions.count {
            var run = CommandBatch<Machine.Command>()
            var runOps: [[UInt8]] = []
            var end = k
            while end < executions.count {
                let e = executions[end], op = ops.op(e.ref) ?? []
                guard let command = ChainOperation.command(op, for: Machine.self) else { break }
                run.append(command, ChainOperation.context(sn: e.sn, client: e.client, timestamp: e.timestamp))
                runOps.append(op)
                end += 1
                if e.sn % rollback.checkpointInterval == 0 { break }
            }
            if end == k {
                let e = executions[k], op = ops.op(e.ref) ?? []
                finish(e, op: op, reply: ChainOperation.execute(&machine, op: op, sn: e.sn, client: e.client,
                                                                timestamp: e.timestamp, outputs: &outputs))
                k += 1
                continue
            }
            outputs.removeAll(keepingCapacity: true)
            machine.apply(run, into: &outputs)
            precondition(outputs.count == end - k, "a state machine appends exactly one output per command")
            statistics.executeRuns += 1
            for i in k..<end {
                let e = executions[i]
                finish(e, op: runOps[i - k], reply: ChainOperation.output(outputs[i - k]))
            }
            k = end
        }
    }

    /// What follows one execution, in sn order: the reply to the core (Σlast), the rollback log, the op released.
    private func finish(_ e: rc_chain_execution, op: [UInt8], reply: [UInt8]) {
        var reply = reply
        statistics.executed += 1
        if let tamper = settings.replyTamper { reply = tamper(e.sn, reply) }
        executed(e, op: op, reply: reply)
        if e.reply_needed {
            let rc = core.reply(sn: e.sn, reply)
            precondition(rc == 0, "rc_chain_on_reply refused sn \(e.sn): \(rc)")
            if isTail { replies[e.sn] = reply }
        }
        ops.markExecuted(e.ref)
    }

    /// 2. Batches to the successor while its link takes them; at the tail, each client its reply (C4).
    private func forward() {
        if isTail {
            while let batch = core.nextBatch(op: { _ in [] }) { sendReplies(batch) }
            return
        }
        guard case .up(let conn)? = data else { return }
        while transport.sendSpace(conn) > 0, let batch = core.nextBatch(op: { ops.op($0) ?? [] }) {
            _ = send(conn, .batch(batch))
            statistics.payloadCopies += UInt64(batch.requests.count) // encoded into the send buffer
            release(batch)
        }
    }

    private func release(_ batch: ChainBatch) {
        for request in batch.requests {
            ops.markSent(request.ref)
        }
    }

    /// The replies of one batch, grouped by client connection: one send (one submission, one buffer) per client per
    /// batch instead of one per reply; each reply stays its own frame, in sn order per client.
    private func sendReplies(_ batch: ChainBatch) {
        let per = batch.replyMACsPerRequest
        var byConn: [(conn: UInt32, frames: [ChainFrame])] = []
        for (k, request) in batch.requests.enumerated() {
            let sn = batch.sn(k)
            var frame = ChainFrame.reply(ChainReply(
                client: request.client, timestamp: request.timestamp, sn: sn, reply: replies.removeValue(forKey: sn) ?? [],
                historyDigest: batch.historyDigests[k], replyMACs: Array(batch.replyMACs[(k * per)..<((k + 1) * per)])))
            guard let conn = clientConns[request.client] else {
                statistics.repliesUnroutable += 1
                continue
            }
            if let outbound = settings.outbound {
                guard let altered = outbound(frame) else { continue }
                frame = altered
            }
            if let i = byConn.firstIndex(where: { $0.conn == conn }) {
                byConn[i].frames.append(frame)
            } else {
                byConn.append((conn, [frame]))
            }
        }
        for (conn, frames) in byConn where !transport.send(conn, frames: frames) {
            statistics.framesDropped += UInt64(frames.count)
        }
        release(batch)
    }

    private func refreshStatistics() {
        func isUp(_ link: Link?) -> Bool { if case .up? = link { return true } else { return false } }
        statistics.linksUp = control.values.allSatisfy(isUp) && (data == nil || isUp(data))
        let s = core.stats
        statistics.lastSN = core.lastSN
        statistics.stableCheckpoint = core.stableCheckpoint
        // In a Backup instance the Chain core is the instance left (stopped on purpose); the replica is not.
        statistics.stopped = backup == nil && core.stopped
        statistics.stopReason = backup == nil ? core.stopReason.rawValue : 0
        statistics.batchesIn = s.batches_in
        statistics.batchesOut = s.batches_out
        statistics.requestsLogged = s.requests_logged
        statistics.macGenerations = s.mac_generations
        statistics.macVerifications = s.mac_verifications
        statistics.framesIn = transport.framesIn
        statistics.framesOut = transport.framesOut
        statistics.malformedFrames = rejected + transport.malformedFrames
        statistics.switching = switching
        statistics.stateSN = rollback.lastSN
    }
}
