import RingCast

/// What a replica does once the group excluded its member (the others installed a view without it: it was silent
/// or cut off for longer than the suspicion timeout, e.g. a stalled process — issue #12's hang).
///
/// An excluded member receives no delivery of the views that follow, so nothing it holds is answered any more:
/// commands it broadcast are delivered (or not) to the others only, barriers of its linearizable reads never come
/// back to it, its applied index stops. Before this, its clients waited for those answers until their own timeout
/// (30 s in `join-bench`) and only then failed over — the "hang" seen after a stall. So, as soon as the exclusion is
/// seen (the group publishes it as ``Group/State/excluded``; polled every ``exclusionPollMillis``):
/// - it stops taking work: the broadcaster stops, and client requests that need the group's state — session
///   openings, commands, reads of every consistency (its state is behind the group's by an unknown amount, so even
///   a stale read would be older than a client may expect), session closings — are refused with an error frame
///   (``exclusionErrorCode``), on which ``SMRClient`` fails over to another replica with the same session, so a
///   command retried there is applied once;
/// - every client waiting for an answer from it gets the same error now, not at its timeout;
/// - it keeps answering `hello`, statistics and digests (tools watch it), and keeps streaming a snapshot it
///   announced before the exclusion: that cut is a state of the group's log, still valid for the joiner;
/// - it logs, once, at error level, what happened and what the operator does: stop it, and start it again as a
///   joiner (a member not in its initial view, with a new incarnation) to rejoin with the group's state.
extension ReplicaCore {
    /// The error code of the frame an excluded replica closes client connections with.
    static var exclusionErrorCode: UInt8 { ClientErrorCode.excluded.rawValue }
    /// How often the group's state is checked for an exclusion: bounds how late clients learn of it.
    static var exclusionPollMillis: Int { 20 }

    /// Why this replica refuses `frame` (under `lock`); nil when it serves it.
    func refusal(of frame: ClientFrame) -> (code: UInt8, message: String)? {
        if case .snapshotRequest = frame { return nil }
        if failed { return (ClientErrorCode.transferFailed.rawValue, "this replica's state transfer failed; it does not serve") }
        guard excluded else { return nil }
        switch frame {
        case .hello, .statistics, .digest: return nil
        default:
            return (Self.exclusionErrorCode,
                    "this replica was excluded from the group; it does not serve (use another replica)")
        }
    }

    /// Watches the group's state until the replica shuts down; acts on an exclusion (``leaveServiceAfterExclusion()``).
    func startExclusionWatch() {
        guard let group else { return }
        Task.detached { [self] in
            while !lock.withLock({ shuttingDown }) {
                if group.state == .excluded {
                    leaveServiceAfterExclusion()
                    return
                }
                try? await Task.sleep(for: .milliseconds(Self.exclusionPollMillis))
            }
        }
    }

    /// The group excluded this member: stop taking work and tell every waiting client (they fail over).
    func leaveServiceAfterExclusion() {
        let waiting: [Connection]? = lock.withLock {
            guard !excluded else { return nil }
            excluded = true
            // Its learners would wait for a feed that stopped: dropped, they try another provider (Learner.swift).
            for id in learners.keys { learners[id]!.drop("the provider is no longer a member (the group excluded it)") }
            var connections = pendingCommands.values.map(\.connection) + pendingOpens.values.map(\.connection)
                + waitingSequential.map(\.connection)
            pendingCommands = [:]
            pendingOpens = [:]
            waitingSequential = []
            lock.broadcast()
            connections += reads.withLock { () -> [Connection] in
                let queued = barriersInFlight.values.flatMap { $0 } + readsForNextBarrier
                barriersInFlight = [:]
                readsForNextBarrier = []
                barrierQueued = false
                readsWaiting = 0
                return queued.map(\.connection)
            }
            return connections
        }
        guard let waiting else { return }
        // Nothing more enters the ring from here (a request already queued is answered `notRunning`).
        stop()
        let view = group?.currentView
        logger.error("""
            excluded from the group: this replica applies nothing more and refuses clients (they fail over); \
            stop it and start it again as a joiner, with a new incarnation, to rejoin with the group's state
            """, metadata: ["last_view_id": "\(view?.id ?? 0)", "applied_index": "\(lock.withLock { appliedIndex })",
                            "clients_told": "\(waiting.count)"])
        var told = Set<ObjectIdentifier>()
        for connection in waiting where told.insert(ObjectIdentifier(connection)).inserted {
            connection.fail(code: Self.exclusionErrorCode,
                            message: "this replica was excluded from the group; it does not serve (use another replica)")
        }
    }

    /// A linearizable read's barrier could not be queued (the replica stopped): the reads waiting for it are
    /// answered `notRunning` (the client retries at another replica) instead of waiting forever.
    func refuseReadsWithoutBarrier() {
        let refused: [PendingRead] = reads.withLock {
            defer {
                readsWaiting -= readsForNextBarrier.count
                readsForNextBarrier = []
                barrierQueued = false
            }
            return readsForNextBarrier
        }
        for read in refused {
            read.connection.send(.reply(request: read.request, status: .notRunning, index: 0, payload: []))
        }
    }
}
