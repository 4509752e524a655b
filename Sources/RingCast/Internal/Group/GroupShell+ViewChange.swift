internal import CRingCast
import Logging
import RingCastMembership
#if canImport(Glibc)
import Glibc
#endif

/// The shell's side of a view change (Fig. 2.7), on the shell thread: it carries out the membership core's
/// directives — send, freeze the ring and take `pending` out (line 1), supply recovery data (line 2), install the
/// decided view by force-delivering what the survivors hold (line 6) and starting the next view's ring (lines 7,
/// 17) — and hands a joiner the state it waits for. GroupShell.swift holds the state, the threads and the events.
extension GroupShell {
    func apply(_ directives: [Membership.Directive]) {
        for directive in directives {
            switch directive {
            case let .send(message, to):
                channel.send(GroupFrame.membership(message.encoded()).encoded(), to: peer(to))
            case .freeze:
                freeze()
            case let .supply(origin, seqs, to):
                supply(origin: origin, seqs: seqs, to: to)
            case let .install(installation):
                install(installation)
            case .excluded:
                logger.warning("excluded from the group: the others installed a view without this member",
                               metadata: ["view_id": "\(instance.view?.id ?? 0)"])
                end(as: .excluded, error: .excluded)
            case .left:
                if publicState != .left {
                    logger.info("left the group", metadata: ["view_id": "\(instance.view?.id ?? 0)"])
                }
                end(as: .left, error: .shutdown)
            case let .suspect(member, cause):
                logger.warning("member suspected", metadata: ["suspect": "\(member.node)", "cause": "\(Self.describe(cause))",
                                                             "view_id": "\(instance.view?.id ?? 0)"])
                if changeStartedUnixNanos == 0 { changeStartedUnixNanos = realtimeNanos() }
            }
        }
    }

    func freeze() {
        if changeStartedUnixNanos == 0 { changeStartedUnixNanos = realtimeNanos() }
        logger.debug("freezing the ring", metadata: ["view_id": "\(instance.view?.id ?? 0)"])
        published.withLock { $0.state = .changingView }
        guard let engine else {
            // Nothing ran in this view (e.g. the previous install failed to start): an empty pending.
            let nodes = instance.view?.members.count ?? 0
            recovery = Membership.Recovery(nodes: nodes, frozen: Array(repeating: 0, count: nodes), pending: [])
            frozenView = instance.view
            frozenDelivered = Array(repeating: 0, count: nodes)
            apply(instance.onFrozen(received: recovery!.received, nowTicks: nowTicks))
            return
        }
        // The ring's last counters go into the metrics before the engine is retired.
        updateMetrics()
        outbox.detach()
        let frozen = engine.freeze(timeoutMillis: configuration.freezeTimeoutMillis)
        precondition(frozen.error == 0, "freezing the ring failed (\(frozen.error)): deliveries were not released in time")
        // Built from the frozen state, so that recovery data never re-adds what this member received before the
        // freeze, delivered or not (Fig. 2.7 line 10: only "if C_m[l] > C[l]").
        let set = Membership.Recovery<RecoveredPayload>(nodes: frozen.clock.count, frozen: frozen.clock,
                                                         pending: frozen.pending)
        var exported = Set<UInt64>()
        for entry in frozen.pending { exported.formUnion(entry.payload.tokens) }
        outbox.requeueUnstamped(exported: exported)
        logger.debug("ring frozen", metadata: ["view_id": "\(engine.view.id)", "clock": "\(frozen.clock)",
                                               "pending": "\(frozen.pending.count)", "own_exported": "\(exported.count)"])
        recovery = set
        frozenView = engine.view
        frozenDelivered = engine.deliveredPerPosition
        published.withLock { $0.recoveryCopies += frozen.copies }
        retire(engine)
        self.engine = nil
        apply(instance.onFrozen(received: set.received, nowTicks: nowTicks))
    }

    /// Destroys a frozen engine on another thread: its thread is still freeing the transport's buffers
    /// (tens of ms of munmap for large receive buffers), which must not delay the view change.
    /// The shell thread never waits here (it must keep heartbeating): finished reapers are joined on the next
    /// retirement, the others at shutdown.
    func retire(_ old: ViewEngine) {
        reapers.removeAll { reaper in
            guard reaper.done.value.load(ordering: .acquiring) else { return false }
            reaper.thread.join()
            return true
        }
        let done = Reaper.Flag()
        let box = Reaper.Box(old)
        let logger = logger, viewID = old.view.id
        guard let thread = try? OSThread({
            let start = monotonicNanos()
            box.drop()
            logger.trace("old ring destroyed", metadata: ["view_id": "\(viewID)",
                                                          "duration_ms": "\((monotonicNanos() - start) / 1_000_000)"])
            done.value.store(true, ordering: .releasing)
        }) else { return } // no thread: the engine is destroyed right here instead
        reapers.append(Reaper(thread: thread, done: done))
    }

    func supply(origin: UInt32, seqs: ClosedRange<UInt64>, to: Membership.MemberID) {
        guard let recovery, let frozenView else { return }
        let peer = peer(to)
        for var entry in recovery.entries(origin: origin, seqs: seqs) {
            entry.payload.tokens = [] // tokens mean something only to their broadcaster
            channel.send(GroupFrame.recovery(fromViewID: frozenView.id, entry: entry).encoded(), to: peer)
        }
    }

    /// Fig. 2.7 lines 6–7: forceDeliver the old view's remaining messages in ≺ order, then the new view.
    func install(_ installation: Membership.Installation) {
        logger.debug("installing view", metadata: [
            "view_id": "\(installation.view.id)", "members": "\(installation.view.members.map(\.node))",
            "previous_view_id": "\(installation.previousView.map { String($0.id) } ?? "-")",
            "target": "\(installation.target)", "held": "\(recovery?.count ?? 0)",
            "received": "\(recovery?.received ?? [])"])
        if let previous = installation.previousView, let recovery, let frozenView, frozenView.id == previous.id {
            forceDeliver(recovery.forceDeliveryOrder(target: installation.target), in: previous)
            outbox.requeueInFlight()
        }
        recovery = nil
        frozenView = nil
        if installation.previousView == nil {
            // A joiner: the state comes first (from the provider: the application's snapshot, if any, and every
            // origin's delivered count, so that origin_seq continues across views), then the ring.
            guard installation.stateProvider == nil else {
                waitingForState = installation
                startJoinedViewIfReady()
                return
            }
            startView(installation)
            return
        }
        if installation.stateProvider == me {
            let snapshot = stateTransfer?.snapshot() ?? []
            let frame = GroupFrame.state(viewID: installation.view.id, seqBases: seqBases, snapshot: snapshot).encoded()
            for joiner in installation.joiners {
                channel.send(frame, to: peer(joiner))
            }
        }
        startView(installation)
    }

    func forceDeliver(_ entries: [Membership.Recovery<RecoveredPayload>.Entry], in view: Membership.View) {
        let memberIDs = view.members.map(\.node)
        var delivered = frozenDelivered
        if delivered.count != memberIDs.count { delivered = Array(repeating: 0, count: memberIDs.count) }
        let bases = memberIDs.map { seqBases[$0] ?? 0 }
        var recovered: UInt64 = 0
        for entry in entries {
            let position = Int(entry.origin)
            var batch: [rc_engine_delivery] = []
            entry.payload.bytes.withUnsafeBytes { raw in
                var offset = 0
                for (index, length) in entry.payload.lengths.enumerated() {
                    delivered[position] += 1
                    let token = entry.payload.tokens.isEmpty ? 0 : entry.payload.tokens[index]
                    batch.append(rc_engine_delivery(
                        bytes: raw.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) + offset },
                        length: length, origin: entry.origin, origin_seq: delivered[position], view_id: view.id,
                        token: token, own: !entry.payload.tokens.isEmpty))
                    offset += Int(length)
                }
                memberIDs.withUnsafeBufferPointer { ids in
                    bases.withUnsafeBufferPointer { seqs in
                        batch.withUnsafeBufferPointer { deliveries in
                            sink.deliver(deliveries.baseAddress!, count: deliveries.count,
                                         mapping: OriginMapping(memberIDs: ids.baseAddress!, seqBases: seqs.baseAddress!))
                        }
                    }
                }
            }
            recovered += UInt64(batch.count)
        }
        for (position, node) in memberIDs.enumerated() { seqBases[node, default: 0] += delivered[position] }
        published.withLock { $0.recoveredMessages += recovered }
        if recovered > 0 {
            logger.info("old view's messages delivered by the view change",
                        metadata: ["view_id": "\(view.id)", "recovered_messages": "\(recovered)"])
        }
    }

    func startView(_ installation: Membership.Installation) {
        do {
            try startEngine(for: installation.view)
        } catch {
            // The ring of this view cannot start here (e.g. the port is still taken): suspect the view at once.
            logger.error("the ring of the new view did not start", metadata: ["view_id": "\(installation.view.id)",
                                                                             "error": "\(error)"])
            apply(instance.onLinkLost(installation.view.members.first { $0 != me } ?? me, nowTicks: nowTicks))
        }
        publish(view: installation.view, causes: installation.causes.map(Self.describe),
                changeStarted: changeStartedUnixNanos)
        changeStartedUnixNanos = 0
    }

    func startEngine(for view: Membership.View) throws(RingCastError) {
        let bases = view.members.map { seqBases[$0.node] ?? 0 }
        let next = try ViewEngine(view: view, me: me, configuration: configuration, seqBases: bases, sink: sink)
        try next.start()
        engine = next
        engineLossReported = false
        engineRunningLogged = false
        congestionWarned = false
        outbox.attach(next.engine)
    }

    func end(as state: Group.State, error: RingCastError) {
        outbox.close(error)
        engine = nil
        recovery = nil
        published.withLock { $0.state = state }
    }
}
