#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The provider's side of a *learner* (Learner.swift): a replica that will join catches up outside the view first,
/// as etcd's learners and hashicorp/raft's non-voters do, so that the ring runs with its old members (and their
/// rate) for the whole bulk transfer. On ``ClientFrame/learnRequest`` the provider takes a copy of its state at
/// its applied index c0 (only for machines whose copy is a snapshot, ``StateMachine/copyIsSnapshot``), streams it
/// paced like a transfer's snapshot, and from c0 on feeds the learner every ring batch it applies, as delivered.
///
/// The feed is a bounded queue per learner (at most ``Replica/Options/learnerFeedBytesMax``): apply appends to it
/// and never waits for it. A learner too slow to keep up fills it and is dropped with a clear error frame (it then
/// tries again, or joins the ordinary way): the provider never slows its own apply for a learner.
struct LearnerFeed {
    /// What one queued batch costs beyond its payload (array header, index, slot), for the bound.
    static let entryOverheadBytes = 64

    let bytesMax: Int
    private(set) var entries: [(index: UInt64, payload: [UInt8])] = []
    private(set) var bytes = 0
    private(set) var peakBytes = 0
    /// Why the learner was dropped (the queue overflowed); nil while it keeps up.
    private(set) var dropped: String?
    /// Whether the learner's feed connection is attached (``ClientFrame/learnFeed(learner:)``): from then on that
    /// connection's thread sends the feed and removes the learner when it ends.
    var attached = false
    /// Whether the learner asked for its feed apart (``ClientFrame/learnRequestFeedApart``): only then may a feed
    /// connection attach (an earlier learner's feed goes out on its one connection).
    var apart = false

    init(bytesMax: Int) {
        precondition(bytesMax >= 1, "a learner's feed needs a positive bound")
        self.bytesMax = bytesMax
    }

    /// Queues a batch the provider applied (`index`: its applied index after it). A batch that does not fit drops
    /// the learner (the queue is emptied: nothing more will be sent but the error).
    mutating func append(_ payload: [UInt8], index: UInt64) {
        guard dropped == nil else { return }
        let cost = payload.count + Self.entryOverheadBytes
        guard bytes == 0 || bytes + cost <= bytesMax else {
            dropped = "the learner fell behind: its feed queue at the provider exceeded \(bytesMax) bytes"
            entries = []
            bytes = 0
            return
        }
        entries.append((index, payload))
        bytes += cost
        peakBytes = max(peakBytes, bytes)
    }

    /// Drops the learner for `reason` (the provider can no longer feed it, e.g. the group excluded the provider).
    mutating func drop(_ reason: String) {
        guard dropped == nil else { return }
        dropped = reason
        entries = []
        bytes = 0
    }

    /// Everything queued, in order (the queue is empty afterwards).
    mutating func takeAll() -> [(index: UInt64, payload: [UInt8])] {
        defer {
            entries = []
            bytes = 0
        }
        return entries
    }
}

extension ReplicaCore {
    /// Queued feed bytes that wake the learner's sending thread at once. Below them, the first batch into an empty
    /// queue wakes it, and it sends ``feedFlushNanos`` later with what joined that batch meanwhile: at most one
    /// wake-up and one `send` per flush. Why not a wake-up per batch: under a latency-bound load the ring delivers
    /// thousands of small batches a second, and a thread switch plus a `send` for each, on a 2-core machine shared
    /// with the ring's threads, cost the others' rate more than the bulk copy did.
    static var feedWakeBytes: Int { 256 << 10 }
    /// The longest a fed batch waits at the provider before it is sent (when fewer than ``feedWakeBytes`` are queued).
    static var feedFlushNanos: UInt64 { 2_000_000 }
    /// Feed frames are sent in pieces of about this many bytes (one buffer, one `send` each).
    static var feedSendBytes: Int { 1 << 20 }

    /// The apply loop's hook (under `lock`, after a ring batch was applied or skipped): each learner's feed gets it.
    func feedLearners(_ payload: [UInt8]) {
        var wake = false
        for id in learners.keys {
            let before = learners[id]!.bytes
            learners[id]!.append(payload, index: appliedIndex)
            let after = learners[id]!
            statistics.learnerFeedBytesPeak = max(statistics.learnerFeedBytesPeak, UInt64(after.peakBytes))
            // The first batch of a flush, crossing the threshold, or dropped (its thread must end the connection).
            if after.dropped != nil || (before == 0 && after.bytes > 0)
                || (before < Self.feedWakeBytes && after.bytes >= Self.feedWakeBytes) { wake = true }
        }
        statistics.learnerBatchesFed += 1
        if wake { lock.broadcast() }
    }

    /// Provider, on the learner's connection thread: streams a copy of the state, then (`feedApart` false, the
    /// ``ClientFrame/learnRequest`` of earlier learners) the feed on the same connection, until the learner closes it,
    /// falls behind (dropped), or this replica stops. With `feedApart` (``ClientFrame/learnRequestFeedApart``) this
    /// connection carries the learner's id and the copy only: the feed goes to the learner's second connection
    /// (``serveLearnerFeed(_:to:)``), which from its attachment on owns the learner's entry.
    func serveLearner(to connection: Connection, feedApart: Bool) {
        guard Machine.copyIsSnapshot else {
            return connection.fail(code: ClientErrorCode.learnRefused.rawValue, message: "this service's state cannot be copied cheaply: join without learning")
        }
        let admitted: Result<(UInt64, FrozenCut), SnapshotError> = lock.withLock {
            guard hasState, !failed, !restoring, !shuttingDown else {
                return .failure(SnapshotError("this replica has no state to give (joining, failed or stopping)"))
            }
            guard learners.count < options.learnersMax else {
                return .failure(SnapshotError("already feeding \(learners.count) learners (learnersMax)"))
            }
            let id = nextLearner
            nextLearner += 1
            learners[id] = LearnerFeed(bytesMax: options.learnerFeedBytesMax)
            learners[id]!.apart = feedApart
            statistics.learnersServed += 1
            // A copy of values: O(1) now; apply's next change of each collection copies that collection once.
            return .success((id, FrozenCut(machine: machine, sessions: sessions, index: appliedIndex,
                                           orderedMillis: orderedMillis)))
        }
        let id: UInt64
        var cut: FrozenCut?
        switch admitted {
        case let .failure(refusal):
            logger.warning("learner refused", metadata: ["error": "\(refusal.reason)"])
            return connection.fail(code: ClientErrorCode.learnRefused.rawValue, message: refusal.reason)
        case let .success((admittedID, admittedCut)):
            id = admittedID
            cut = admittedCut
        }
        var outcome: String?
        if feedApart {
            setSocketTimeout(connection.fd, SO_SNDTIMEO, millis: options.snapshotStallTimeoutMillis)
            if !Socket.sendAll(connection.fd, ClientFrame.learnerAdmitted(learner: id).encoded()) {
                outcome = "the learner's connection broke before its id was sent"
            }
        }
        // Without `feedApart`, the feed's batches go out between the copy's chunks: they wait at the learner (its
        // phase-1 memory has room: it is not a ring member yet), not in this replica's queue, for the whole restore.
        // With it, the chunks only check that the learner was not dropped meanwhile (its feed connection sends).
        var sent: UInt64 = 0
        if outcome == nil {
            sent = streamCut(cut, to: connection, outcome: &outcome) { [self] in
                feedApart ? lock.withLock { learners[id].map { $0.dropped == nil } ?? false }
                    : sendFeed(id, to: connection) != false
            }
        }
        let cutIndex = cut?.index ?? 0
        cut = nil // the copy is not needed any more: apply stops copying what it changes
        if feedApart {
            return endCopy(of: id, on: connection, outcome: outcome, sent: sent, cutIndex: cutIndex)
        }
        if outcome == nil {
            logger.info("state streamed to a learner; feeding it", metadata: ["learner": "\(id)", "bytes": "\(sent)",
                                                                             "index": "\(cutIndex)"])
            outcome = feed(id, to: connection)
        }
        endFeed(of: id, on: connection, outcome: outcome)
    }

    /// The end of a learner's feed (on the connection that sends it): its entry goes; a drop or a failure is told.
    private func endFeed(of id: UInt64, on connection: Connection, outcome: String?) {
        let dropped: String? = lock.withLock {
            defer {
                learners[id] = nil
                lock.broadcast()
            }
            if let reason = learners[id]?.dropped {
                statistics.learnersDropped += 1
                return reason
            }
            return nil
        }
        if let reason = dropped ?? outcome {
            logger.warning("learner feed ended", metadata: ["learner": "\(id)", "reason": "\(reason)"])
            connection.fail(code: ClientErrorCode.learnerDropped.rawValue, message: reason)
        }
    }

    /// The end of a copy streamed apart from its feed. The copy failed: the learner is dropped (its feed connection,
    /// if attached, tells it and removes the entry). Done: the feed connection must be attached by now or soon
    /// (within ``Replica/Options/snapshotStallTimeoutMillis``: the learner opens it before it reads the copy), else
    /// the learner is dropped here — nobody would ever take its queued batches.
    private func endCopy(of id: UInt64, on connection: Connection, outcome: String?, sent: UInt64, cutIndex: UInt64) {
        let deadline = monotonicNanos() + UInt64(options.snapshotStallTimeoutMillis) * 1_000_000
        let failure: String? = lock.withLock {
            var failure = outcome
            while failure == nil, let entry = learners[id], !entry.attached, entry.dropped == nil {
                if shuttingDown { failure = "the replica is stopping"; break }
                if !lock.wait(untilNanos: deadline) && monotonicNanos() >= deadline {
                    failure = "the learner did not open its feed connection within \(options.snapshotStallTimeoutMillis) ms"
                }
            }
            guard let entry = learners[id] else { return failure ?? "the learner is gone" }
            guard let reason = entry.dropped ?? failure else { return nil }
            if entry.attached {
                learners[id]!.drop("the learner's copy failed: \(reason)") // its feed connection tells it
            } else {
                learners[id] = nil
                statistics.learnersDropped += 1
            }
            lock.broadcast()
            return reason
        }
        if let failure {
            logger.warning("learner's copy ended", metadata: ["learner": "\(id)", "reason": "\(failure)"])
            connection.fail(code: ClientErrorCode.learnerDropped.rawValue, message: failure)
        } else {
            logger.info("state streamed to a learner; its feed connection feeds it",
                        metadata: ["learner": "\(id)", "bytes": "\(sent)", "index": "\(cutIndex)"])
        }
    }

    /// Provider, on a learner's second connection (``ClientFrame/learnFeed(learner:)``): sends learner `id`'s feed
    /// until the learner closes it, falls behind (dropped), or this replica stops; then removes the learner.
    func serveLearnerFeed(_ id: UInt64, to connection: Connection) {
        let attached: String? = lock.withLock {
            guard let entry = learners[id], entry.apart else {
                return "unknown learner \(id) (never admitted, already gone, or fed on its one connection)"
            }
            guard !entry.attached else { return "learner \(id) has a feed connection already" }
            learners[id]!.attached = true
            lock.broadcast()
            return nil
        }
        if let refusal = attached {
            logger.warning("learner feed refused", metadata: ["error": "\(refusal)"])
            return connection.fail(code: ClientErrorCode.learnRefused.rawValue, message: refusal)
        }
        // The learner reads this connection on a thread of normal priority: a stalled one is a broken one.
        setSocketTimeout(connection.fd, SO_SNDTIMEO, millis: options.snapshotStallTimeoutMillis)
        // What was queued before the attachment goes first, then the feed as apply queues it.
        let outcome = sendFeed(id, to: connection) == false ? "the learner's feed connection broke or stalled"
            : feed(id, to: connection)
        endFeed(of: id, on: connection, outcome: outcome)
    }

    /// Sends the feed's batches as apply queues them. Returns why it ended (nil: the learner closed the connection).
    private func feed(_ id: UInt64, to connection: Connection) -> String? {
        while true {
            let stop: String? = lock.withLock {
                // Every 100 ms at least: whether the learner hung up (it closes the connection once it caught up).
                var deadline = monotonicNanos() + 100_000_000
                var flushing = false
                while true {
                    guard let queued = learners[id] else { return "the learner is gone" }
                    if queued.dropped != nil { return "dropped" }
                    if shuttingDown { return "the replica is stopping" }
                    if queued.bytes >= Self.feedWakeBytes { return nil }
                    if !queued.entries.isEmpty && !flushing {
                        // The first batch queued waits at most feedFlushNanos, with what joins it meanwhile.
                        flushing = true
                        deadline = min(deadline, monotonicNanos() + Self.feedFlushNanos)
                    }
                    if !lock.wait(untilNanos: deadline) { return nil }
                }
            }
            if let stop { return stop == "dropped" ? nil : stop }
            if Self.peerHungUp(connection.fd) { return nil }
            guard sendFeed(id, to: connection) != false else { return "the learner's connection broke or stalled" }
        }
    }

    /// Sends what the learner's queue holds, with this replica's applied index. Nil: the learner is gone or was
    /// dropped (nothing sent); false: the connection failed.
    private func sendFeed(_ id: UInt64, to connection: Connection) -> Bool? {
        let taken: (batches: [(index: UInt64, payload: [UInt8])], index: UInt64)? = lock.withLock {
            guard let queued = learners[id], queued.dropped == nil else { return nil }
            return (learners[id]!.takeAll(), appliedIndex)
        }
        guard let taken else { return nil }
        // Many frames per buffer and `send` (pieces of about feedSendBytes: the queue's bytes are not doubled).
        // A frame is its payload and 22 bytes (length, version, kind, two indexes).
        var unsent = taken.batches.reduce(0) { $0 + $1.payload.count + 22 }
        var writer = ByteWriter(capacity: min(unsent, Self.feedSendBytes + 64 << 10))
        for (entryIndex, payload) in taken.batches {
            unsent -= payload.count + 22
            ClientFrame.learnerEntry(index: entryIndex, providerIndex: taken.index, payload: payload).encode(into: &writer)
            if writer.count >= Self.feedSendBytes {
                guard Socket.sendAll(connection.fd, writer.bytes) else { return false }
                writer = ByteWriter(capacity: min(unsent, Self.feedSendBytes + 64 << 10))
            }
        }
        return writer.count == 0 || Socket.sendAll(connection.fd, writer.bytes)
    }

    /// Whether the learner closed (or reset) the connection: it sends nothing after its request, so the socket being
    /// readable (end of stream), hung up or in error means it is done.
    static func peerHungUp(_ fd: Int32) -> Bool {
        var probe = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&probe, 1, 0) > 0
    }

    /// Provider: the joiner of `transfer` caught up through its feed and will not pull it: counted as pulled.
    func declineTransfer(_ transfer: UInt64) {
        lock.withLock {
            guard transfersPending[transfer] != nil else { return }
            transfersPending[transfer]!.served += 1
            statistics.transfersDeclined += 1
            expireTransfers()
            lock.broadcast()
        }
    }
}
