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
        // The view whose ring did not start is being replaced; how long this member's ring has been down carries over.
        if let retry = ringStartRetry { ringStartRetryCarried = retry.firstFailureTicks }
        ringStartRetry = nil
        if changeStartedUnixNanos == 0 { changeStartedUnixNanos = realtimeNanos() }
        logger.debug("freezing the ring", metadata: ["view_id": "\(instance.view?.id ?? 0)"])
        published.withLock { $0.state = .changingView }
        if let stale = engine, stale.view?.id != instance.view?.id {
            // A ring of an older view than the installed one (the installed view's ring never started): its pending
            // belongs to a view change already done, and a clock of its size would not fit this view's.
            logger.warning("retiring the ring of an older view at a freeze",
                           metadata: ["ring_view_id": "\(stale.configuration.viewId)", "view_id": "\(instance.view?.id ?? 0)"])
            outbox.detach()
            outbox.requeueInFlight()
            retire(stale)
            engine = nil
        }
        guard let engine else {
            // Nothing ran in this view (e.g. the previous install failed to start): an empty pending.
            let nodes = instance.view?.members.count ?? 0
            recovery = Membership.Recovery(nodes: nodes, frozen: Array(repeating: 0, count: nodes), pending: [])
            frozenView = instance.view
            frozenDelivered = instance.view?.members.map { seqBases[$0.node] ?? 0 } ?? []
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
        logger.debug("ring frozen", metadata: ["view_id": "\(engine.configuration.viewId)", "clock": "\(frozen.clock)",
                                               "pending": "\(frozen.pending.count)", "own_exported": "\(exported.count)"])
        recovery = set
        frozenView = engine.view
        // Per position, the last origin_seq delivered here: the next view's bases unless the view change delivers more.
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
    func retire(_ old: Ring) {
        reapers.removeAll { reaper in
            guard reaper.done.value.load(ordering: .acquiring) else { return false }
            reaper.thread.join()
            return true
        }
        let done = Reaper.Flag()
        let box = Reaper.Box(old)
        let logger = logger, viewID = old.configuration.viewId
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
        if let admitting = waitingForState, installation.previousView != nil {
            // A joiner admitted in `admitting` whose provider never sent the state (it stalled or died right after the
            // decision) takes part in the next view change as a member. It has no state, and no provider sends one
            // for this view (its decision admits no joiner): starting this view's ring would hand the application
            // deliveries for a state it does not have, and a late state for the admitting view would start a ring of
            // that older view beside this one. Nor may it stay a voting member that never runs a ring: with the
            // others it could form a majority that excludes a healthy member and then never deliver. So it withdraws:
            // no ring, no more heartbeats or votes (the shell thread stops); the others exclude it as silent, and the
            // application sees `Group.State.excluded` (restart it to join again).
            logger.error("""
                the state for the view that admitted this member never arrived before the next view change: it \
                withdraws from the group (the others exclude it); restart it to join again
                """,
                metadata: ["admitting_view_id": "\(admitting.view.id)", "view_id": "\(installation.view.id)"])
            recovery = nil
            frozenView = nil
            receivedState = nil
            waitingForState = nil
            withdrawn = true
            end(as: .excluded, error: .excluded)
            return
        }
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
        if installation.stateProvider == me { provideState(to: installation.joiners, of: installation.view) }
        startView(installation)
    }

    /// Delivers the old view's messages the view change decided, in ≺ order, each numbered as its exporting engine
    /// numbered it; then the next view's origin_seq bases are the last numbers delivered here, per member.
    func forceDeliver(_ entries: [Membership.Recovery<RecoveredPayload>.Entry], in view: Membership.View) {
        let memberIDs = view.members.map(\.node)
        var delivered = frozenDelivered
        if delivered.count != memberIDs.count { delivered = memberIDs.map { seqBases[$0] ?? 0 } }
        var recovered: UInt64 = 0
        for entry in entries {
            let position = Int(entry.origin)
            // Uniform agreement: the entry continues exactly where this member's delivery of its origin stopped.
            precondition(entry.payload.firstOriginSeq == delivered[position] + 1,
                         "a recovered message of origin \(position) numbered \(entry.payload.firstOriginSeq) after \(delivered[position])")
            sink.deliverRecovered(entry, viewID: view.id, memberIDs: memberIDs)
            delivered[position] += UInt64(entry.payload.lengths.count)
            recovered += UInt64(entry.payload.lengths.count)
        }
        for (position, node) in memberIDs.enumerated() { seqBases[node] = delivered[position] }
        published.withLock { $0.recoveredMessages += recovered }
        if recovered > 0 {
            logger.info("old view's messages delivered by the view change",
                        metadata: ["view_id": "\(view.id)", "recovered_messages": "\(recovered)"])
        }
    }

    func startView(_ installation: Membership.Installation) {
        if let retry = ringStartRetry { ringStartRetryCarried = retry.firstFailureTicks }
        ringStartRetry = nil
        var started = true
        do {
            try startEngine(for: installation.view)
        } catch {
            // The ring of this view cannot start here (its port taken by another process, no threads, …). The
            // failure is this member's: suspecting a neighbour (as this once did) only makes every next view fail the
            // same way, thousands of view changes a second. Retry with backoff instead; if this member's ring stays
            // down, the others' ring links to it break and they exclude it, and after ``RingStartRetry/giveUpTicks``
            // it leaves by itself.
            started = false
            // Counted from the first failure of any view: when each new view fails too (the others reinstate this
            // member while it still answers on the control plane), the bound still ends it.
            ringStartFailed(view: installation.view, error: error, attempts: 0,
                            firstFailureTicks: ringStartRetryCarried ?? nowTicks)
        }
        ringStartRetryCarried = nil
        publish(view: installation.view, causes: installation.causes.map(Self.describe),
                changeStarted: changeStartedUnixNanos, ringRunning: started)
        changeStartedUnixNanos = 0
    }

    /// Records a failed start of `view`'s ring and when to try again.
    func ringStartFailed(view: Membership.View, error: RingCastError, attempts: Int, firstFailureTicks: UInt64) {
        published.withLock { $0.ringStartFailures += 1 }
        let retry = RingStartRetry(view: view, attempts: attempts + 1, firstFailureTicks: firstFailureTicks, now: nowTicks)
        logger.error("the ring of the view did not start here; retrying (a local failure: no member is suspected)",
                     metadata: ["view_id": "\(view.id)", "error": "\(error)", "attempt": "\(retry.attempts)",
                                "retry_in_ms": "\(retry.nextTicks - nowTicks)"])
        ringStartRetry = retry
    }

    /// Shell loop: starts the ring of the installed view again once its backoff is over; gives up (leaves the group,
    /// with the reason logged) when it has failed for ``RingStartRetry/giveUpTicks``.
    func retryRingStartIfDue() {
        guard let retry = ringStartRetry, nowTicks >= retry.nextTicks else { return }
        guard instance.view?.id == retry.view.id, engine == nil else {
            ringStartRetry = nil // a newer view or a ring already running: nothing to retry
            return
        }
        do {
            try startEngine(for: retry.view)
            ringStartRetry = nil
            logger.notice("the ring of the view started after failed attempts",
                          metadata: ["view_id": "\(retry.view.id)", "attempts": "\(retry.attempts)"])
            published.withLock { if $0.state == .changingView { $0.state = .running } }
        } catch {
            guard nowTicks - retry.firstFailureTicks < RingStartRetry.giveUpTicks else {
                ringStartRetry = nil
                logger.error("the ring of the view could not start here: leaving the group",
                             metadata: ["view_id": "\(retry.view.id)", "error": "\(error)",
                                        "attempts": "\(retry.attempts + 1)",
                                        "failing_ms": "\(nowTicks - retry.firstFailureTicks)"])
                published.withLock { $0.ringStartFailures += 1 }
                apply(instance.leave(nowTicks: nowTicks))
                return
            }
            ringStartFailed(view: retry.view, error: error, attempts: retry.attempts,
                            firstFailureTicks: retry.firstFailureTicks)
        }
    }

    func startEngine(for view: Membership.View) throws(RingCastError) {
        if let fault = ringStartFault.withLock({ $0 }), let error = fault(view.id) { throw error }
        let bases = view.members.map { seqBases[$0.node] ?? 0 }
        guard let position = view.position(of: me) else { preconditionFailure("starting the ring of a view without me") }
        let members = view.members.map(\.node)
        guard let listen = configuration.addresses[members[position]],
              let successor = configuration.addresses[members[(position + 1) % members.count]] else {
            throw .invalidConfiguration("a member of view \(view.id) has no address")
        }
        var ringConfiguration = try Node.Configuration(position: position, nodeCount: members.count, listen: listen,
                                                       successor: successor, viewId: view.id, limits: configuration.limits)
        ringConfiguration.security = configuration.security
        ringConfiguration.name = configuration.name
        let next = try Ring(configuration: ringConfiguration, view: view, originSeqBases: bases, sink: sink)
        if let stale = engine {
            // Installed without a freeze of the previous ring (it cannot happen by the membership core's directives:
            // .freeze precedes .install); it must not keep running beside the new one.
            logger.warning("replacing a ring that was not frozen", metadata: ["ring_view_id": "\(stale.configuration.viewId)",
                                                                           "view_id": "\(view.id)"])
            outbox.detach()
            outbox.requeueInFlight()
            retire(stale)
            engine = nil
        }
        try next.start()
        engine = next
        engineLossReported = false
        engineRunningLogged = false
        congestionWarned = false
        outbox.attach(next.engine)
    }

    func end(as state: Group.State, error: RingCastError) {
        ringStartRetry = nil
        ringStartRetryCarried = nil
        outbox.close(error)
        engine = nil
        recovery = nil
        published.withLock { $0.state = state }
    }
}
