import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import RingCast

/// A joining replica that catches up as a *learner* first, then joins the ring (etcd's learners, hashicorp/raft's
/// non-voters): the bulk of the state moves while the ring runs with its old members only, so their rate is that
/// of the old ring for the whole bulk transfer (on a CPU-bound ring every member handles every message: a fourth
/// member alone costs a quarter of the rate), and the joiner's suffix store only holds the short second phase.
///
/// Phase 1, outside the view (``Replica/Options/learnFrom``): the learner connects to a provider's client port
/// (the client plane's handshake), sends ``ClientFrame/learnRequestFeedApart``, gets its learner id, opens a second
/// connection for the feed (``ClientFrame/learnFeed(learner:)``), restores the copy the provider streams on the first
/// (at its applied index c0) into values of its own — at most ``Replica/Options/learnerBytesPerSecondMax`` when it
/// has a work directory — while a feed thread of normal priority keeps the feed's batches in a bounded ``FeedStash``
/// (memory, then a spill file), installs it, and applies the provider's feed (the stash first) — every ring batch the provider
/// applied after c0, in order, checked index by index — until its lag is at most
/// ``Replica/Options/learnerLagEntriesMax`` entries (or the feed is idle for ``feedIdleMillis``). A failed attempt
/// (the provider died, refused, dropped this learner for falling behind) tries the next provider, at most
/// ``Replica/Options/learnerAttemptsMax`` attempts in all; then the replica joins the ordinary way.
///
/// Phase 2: the learner starts its `Group`, which joins at the next view change. Meanwhile it reads the feed on
/// into a bounded backlog (a ``FeedStash`` like phase 1's: memory, then the work directory's file) without
/// applying it, since the cut is not known yet. At the view boundary the group's transfer header gives the cut c1 (``restoreFromTransfer(_:)``): the
/// learner applies the feed up to c1 exactly (its applied index must equal c1: asserted), closes the feed, tells
/// the transfer's provider it will not pull (``ClientFrame/snapshotDecline(transfer:)``), and applies its own ring
/// deliveries after c1 from its suffix store. If the feed breaks before c1, it pulls the transfer's snapshot as a
/// joiner without a learner phase does.
extension ReplicaCore {
    /// How long a feed may be silent before a learner takes its provider to be idle (lag 0) in phase 1.
    static var feedIdleMillis: Int32 { 200 }

    /// A paced learner's socket receive buffer, bytes (the kernel doubles it for its bookkeeping): a few chunks.
    static var pacedReceiveBufferBytes: Int32 { 1 << 20 }

    /// Whether this replica catches up as a learner before it joins.
    var learnsFirst: Bool { !options.learnFrom.isEmpty && !hasState && Machine.copyIsSnapshot }

    /// Starts the learner's thread (``Replica/start()``, instead of starting the group: the thread starts it).
    func startLearning(startGroup: @escaping @Sendable () throws(SMRError) -> Void) throws(SMRError) {
        try startTransferThread { [self] in learnThenJoin(startGroup: startGroup) }
    }

    private func learnThenJoin(startGroup: @Sendable () throws(SMRError) -> Void) {
        var link: FeedStream?
        var attempt = 0
        while link == nil && attempt < options.learnerAttemptsMax && !stopping {
            let provider = options.learnFrom[attempt % options.learnFrom.count]
            attempt += 1
            do {
                link = try learn(from: provider)
            } catch {
                lock.withLock { statistics.learnerAttemptsFailed += 1 }
                logger.warning("learning from a provider failed", metadata: ["provider": "\(provider)",
                                                                             "attempt": "\(attempt)", "error": "\(error.reason)"])
                #if canImport(Glibc)
                // The failed attempt's partial copy was restored on a thread of its own, and glibc keeps what that
                // thread freed in its arena: the next attempt's thread takes another arena, and the joiner's peak
                // was two copies (join-bench: 556 MiB beyond a 512 MiB state after a dropped attempt). Return it.
                _ = glibcMallocTrim(0)
                #endif
            }
        }
        if stopping {
            link?.close(core: self)
            return
        }
        if link == nil {
            lock.withLock { statistics.learnerFallbacks += 1 }
            logger.error("learning failed; joining without a learner phase (the state comes at the view change)",
                         metadata: ["attempts": "\(attempt)"])
        }
        // Phase 2: from now on the group's transfer header goes to this thread (`learning`), when there is a feed.
        lock.withLock { learning = link != nil }
        let started: Bool = pacing.withLock {
            // Under `pacing`: a shutdown that started does not see a group started after its own `group.shutdown()`.
            guard !transfersStopping else { return false }
            do {
                try startGroup()
                return true
            } catch {
                logger.error("the learner cannot start its group member", metadata: ["error": "\(error)"])
                return false
            }
        }
        if started && link != nil { lock.withLock { statistics.learnerJoins += 1 } }
        guard started, let feed = link else {
            link?.close(core: self)
            lock.withLock {
                learning = false
                lock.broadcast()
            }
            return
        }
        finishLearning(feed)
    }

    private var stopping: Bool { pacing.withLock { transfersStopping } }

    /// A learner's feed backlog (FeedStash.swift): a small memory part and the rest spilled to the work directory,
    /// or, without one, memory only up to the suffix bound.
    func makeFeedStash() -> FeedStash {
        if let directory = options.workDirectory {
            return FeedStash(memoryBytesMax: options.learnerStashMemoryBytes, directory: directory,
                             spillBytesMax: options.learnerSpillBytesMax)
        }
        return FeedStash(memoryBytesMax: options.suffixBytesMax, directory: nil, spillBytesMax: 0)
    }

    /// How long phase 2 waits for a silent feed to bring the batches up to the cut before it pulls the cut's
    /// snapshot instead: well inside the time the cut's provider keeps it (``Replica/Options/snapshotPullTimeoutMillis``).
    private var feedToCutWaitNanos: UInt64 { UInt64(max(Int(Self.feedIdleMillis), options.snapshotPullTimeoutMillis / 4)) * 1_000_000 }

    /// Phase 1 with one provider: restore its copy, apply its feed until the lag is small. Returns the open feed.
    ///
    /// Two connections (``ClientFrame/learnRequestFeedApart``): the copy comes on the first, read by the restore
    /// thread at its pace (idle-class with ``Replica/Options/snapshotThreadIdle``); the feed on the second, read by a
    /// thread of normal priority into the ``FeedStash`` as it comes. Why: on one connection a starved restore stopped
    /// reading the feed too, the feed filled the provider's queue (``Replica/Options/learnerFeedBytesMax``) and the
    /// provider dropped the learner (issue #12, join-bench at a saturating load). Now the provider's queue stays
    /// short whatever the restore's pace: the wait is the learner's, in its stash (memory, then the spill file).
    private func learn(from provider: Address) throws(SnapshotError) -> FeedStream {
        let copy = try FeedStream.open(provider, core: self)
        var feedStream: FeedStream?
        do throws(SnapshotError) {
            guard Socket.sendAll(copy.fd, ClientFrame.learnRequestFeedApart.encoded()) else {
                throw SnapshotError("sending the learn request failed")
            }
            guard case let .learnerAdmitted(id)? = try copy.next(timeoutMillis: nil) else {
                throw SnapshotError("the provider did not answer the learn request with the learner's id")
            }
            // The feed's connection: the client plane's handshake too; registered for shutdown once the copy's
            // connection is closed (until then its thread polls and checks `stopping`).
            let feed = try FeedStream.open(provider, core: self, register: false)
            feedStream = feed
            guard Socket.sendAll(feed.fd, ClientFrame.learnFeed(learner: id).encoded()) else {
                throw SnapshotError("sending the feed request failed")
            }
            // Restored into values of their own, installed at the end (nobody sees a half-restored state). The
            // restore runs on a thread of lower priority (bulk work: it takes the CPU the ring and the clients leave,
            // `lowerTransferThreadPriority`; a thread cannot raise its priority back); this one applies the feed.
            nonisolated(unsafe) var target: (machine: Machine, sessions: SessionTable)? =
                (lock.withLock { machine }, SessionTable(limits: options.sessions))
            nonisolated(unsafe) var outcome: Result<(index: UInt64, orderedMillis: UInt64), SnapshotError> =
                .failure(SnapshotError("the restore did not run"))
            // Feed batches wait here until the copy is installed (bounded: memory, then the work directory's spill
            // file; FeedStash.swift). The feed thread appends, this thread pops.
            let stash = makeFeedStash()
            defer {
                lock.withLock {
                    statistics.learnerStashBytesPeak = max(statistics.learnerStashBytesPeak, UInt64(stash.memoryBytesPeak))
                    statistics.learnerSpillBytesPeak = max(statistics.learnerSpillBytesPeak, UInt64(stash.fileBytesPeak))
                    statistics.learnerSpilledBatches += stash.spilledBatches
                }
                stash.close() // the spill file's space is freed now, whatever happened
            }
            let feedReader = FeedReader()
            let feedThread: Thread
            do {
                feedThread = try Thread { [self] in feedReader.run(feed, into: stash, stopping: { self.stopping }) }
            } catch {
                throw SnapshotError("cannot start the learner's feed thread: \(error)")
            }
            // Runs before the stash's `defer` above: the thread is joined before the stash closes, on every path.
            var feedThreadJoined = false
            defer {
                if !feedThreadJoined {
                    feedReader.stop()
                    feedThread.join()
                }
            }
            // The learner's pace (``Replica/Options/learnerBytesPerSecondMax``), with somewhere to spill the backlog
            // a longer restore builds up: the chunks are read no faster, and TCP's flow control holds the provider's
            // stream (its serialising and sending) to the same rate.
            let rate = options.workDirectory == nil ? 0 : options.learnerBytesPerSecondMax
            if rate > 0 {
                // A fixed receive buffer (autotuning off): loopback's grows to tcp_rmem's maximum (32 MiB here), which
                // would hold tens of MB of the copy ahead of the pace — the provider's stream would run unpaced
                // until it filled.
                var bytes: Int32 = Self.pacedReceiveBufferBytes
                setsockopt(copy.fd, SOL_SOCKET, SO_RCVBUF, &bytes, socklen_t(MemoryLayout<Int32>.size))
            }
            nonisolated(unsafe) var pacingWaits: UInt64 = 0
            nonisolated(unsafe) var raisedPriority = false
            // Idle-class only where a starved restore can be raised again (TransferPacing.swift).
            let idle = options.snapshotThreadIdle && idleClassCanBeLeft(nice: options.snapshotThreadNice)
            if options.snapshotThreadIdle && !idle {
                logger.info("""
                    the learner's restore runs SCHED_BATCH, not SCHED_IDLE: this process may not leave SCHED_IDLE \
                    again (it needs RLIMIT_NICE or CAP_SYS_NICE), and a starved idle-class restore would never end
                    """)
            }
            let body: @Sendable () -> Void = { [self] in
                lowerTransferThreadPriority(nice: options.snapshotThreadNice, idle: idle)
                var priority = idle
                    ? IdleTransferPriority(floorBytesPerSecond: UInt64(options.snapshotIdleFloorBytesPerSecond),
                                           nowNanos: monotonicNanos())
                    : nil
                // Made at the first chunk: its burst is one chunk of the provider's size (a larger burst would let
                // a small state through unpaced; a smaller one would under-count larger chunks).
                var bucket: TokenBucket?
                var reader = SnapshotReader(refill: { [self] (chunk: inout [UInt8]) throws(SnapshotError) -> Bool in
                    // The feed failed (the provider dropped this learner, the stash's bound): so does the attempt.
                    if let failure = feedReader.failure { throw failure }
                    let more = try copy.nextChunk(into: &chunk) { (_: ClientFrame) throws(SnapshotError) in
                        throw SnapshotError("unexpected frame in the learner's copy stream")
                    }
                    if more && rate > 0 {
                        if bucket == nil {
                            bucket = TokenBucket(bytesPerSecond: UInt64(rate), burstBytes: UInt64(max(chunk.count, 4096)),
                                                 nowNanos: monotonicNanos())
                        }
                        guard pace(&bucket!, bytes: UInt64(chunk.count)) else { throw SnapshotError("the replica is stopping") }
                    }
                    // Raised when starved, or when the feed backlog passes half its spill bound: an idle-class
                    // restore lasts longer, so more feed waits, and the attempt must not fail for that.
                    let backlogHigh = stash.spilledBytes > options.learnerSpillBytesMax / 2
                    if more, priority?.progressed(chunk.count, nowNanos: monotonicNanos(), backlogHigh: backlogHigh) == true {
                        raisedPriority = true
                        let failed = lowerTransferThreadPriority(nice: max(1, options.snapshotThreadNice))
                        if failed != 0 {
                            logger.warning("could not raise the learner's restore from SCHED_IDLE: it stays idle-class",
                                           metadata: ["errno": "\(-failed)"])
                        }
                    }
                    return more
                })
                var state = target!
                target = nil // `state` is the only reference while it is restored into
                do throws(SnapshotError) {
                    outcome = .success(try Self.readSnapshot(from: &reader, machine: &state.machine,
                                                             sessions: &state.sessions))
                } catch {
                    outcome = .failure(error)
                }
                pacingWaits = bucket?.waits ?? 0
                target = state
            }
            do { try Thread(body).join() } catch { body() }
            lock.withLock {
                statistics.learnerPacingWaits += pacingWaits
                if raisedPriority { statistics.learnerRestoresRaised += 1 }
            }
            let cut = try outcome.get()
            // The copy's connection is done (the provider sent its end); shutdown now cuts the feed's.
            copy.close(core: self)
            guard feed.register(core: self) else { throw SnapshotError("the replica is stopping") }
            lock.withLock {
                machine = target!.machine
                sessions = target!.sessions
                appliedIndex = cut.index
                orderedMillis = cut.orderedMillis
                statistics.learnerRestores += 1
            }
            target = nil // the installed state is the only reference: apply changes it in place
            logger.info("learner restored the provider's copy; applying its feed",
                        metadata: ["provider": "\(provider)", "index": "\(cut.index)"])
            // The backlog, oldest first, while the feed thread adds what the provider feeds meanwhile; then the feed
            // as it comes, until the lag is small (the provider's index in the latest frame) or the provider is idle.
            var fed: [(index: UInt64, payload: [UInt8])] = []
            fed.reserveCapacity(Self.offThreadGroupMax)
            while true {
                _ = try Self.popGroup(from: stash, into: &fed, upTo: nil)
                if !fed.isEmpty {
                    try applyFed(fed)
                    continue
                }
                if let failure = feedReader.failure { throw failure }
                if stopping { throw SnapshotError("the replica is stopping") }
                let applied = lock.withLock { appliedIndex }
                if let providerIndex = feedReader.providerIndex,
                   providerIndex <= applied || providerIndex - applied <= UInt64(options.learnerLagEntriesMax) { break }
                if !stash.waitForBatch(untilNanos: monotonicNanos() + UInt64(Self.feedIdleMillis) * 1_000_000) {
                    if let failure = feedReader.failure { throw failure }
                    if stash.isEmpty { break } // the provider is idle
                }
            }
            // Phase 2 reads the feed on this thread: stop the feed thread (within its poll, 50 ms), apply what it
            // stashed meanwhile.
            feedReader.stop()
            feedThread.join()
            feedThreadJoined = true
            if let failure = feedReader.failure { throw failure }
            while let entry = try stash.popFirst() { try applyFed([entry]) }
            return feed
        } catch {
            copy.close(core: self)
            feedStream?.close(core: self)
            throw error
        }
    }

    /// At most ``offThreadGroupMax`` batches and ``fedGroupBytesMax`` bytes (one batch at least) from the front of
    /// `stash` into `fed` (emptied first), oldest first, none with an index past `cut`. Returns whether it found one
    /// past the cut (dropped: the ring delivers it to the member).
    static func popGroup(from stash: FeedStash, into fed: inout [(index: UInt64, payload: [UInt8])],
                         upTo cut: UInt64?) throws(SnapshotError) -> Bool {
        fed.removeAll(keepingCapacity: true)
        var bytes = 0
        while fed.count < offThreadGroupMax && bytes < fedGroupBytesMax, let entry = try stash.popFirst() {
            if let cut, entry.index > cut { return true }
            bytes += entry.payload.count
            fed.append(entry)
        }
        return false
    }

    /// The bytes of fed batches popped from a stash ahead of their apply: they are out of the stash's memory bound.
    static var fedGroupBytesMax: Int { 1 << 20 }

    /// Applies fed ring batches in order as the ring would have delivered them, as one group under one `lock` hold
    /// (``applyGroupOffThread(_:)``); each one's index must be the provider's after it, checked before the next.
    private func applyFed(_ fed: [(index: UInt64, payload: [UInt8])]) throws(SnapshotError) {
        let outOfStep: (applied: UInt64, index: UInt64)? = lock.withLock {
            var position = 0
            var mismatch: (applied: UInt64, index: UInt64)?
            applyGroupOffThread {
                if position > 0 && appliedIndex != fed[position - 1].index {
                    mismatch = (appliedIndex, fed[position - 1].index)
                    return nil
                }
                guard position < fed.count else { return nil }
                position += 1
                return fed[position - 1].payload
            }
            statistics.learnerBatchesApplied += UInt64(position)
            return mismatch
        }
        if let outOfStep {
            throw SnapshotError("the feed is out of step: applied index \(outOfStep.applied), the provider's \(outOfStep.index)")
        }
    }

    /// Phase 2: reads the feed into a bounded backlog until the group's transfer header gives the cut, applies it up
    /// to the cut, then the suffix of ring deliveries. Falls back to pulling the transfer's snapshot when the feed
    /// breaks before the cut.
    private func finishLearning(_ stream: FeedStream) {
        let backlog = makeFeedStash()
        defer {
            lock.withLock {
                statistics.learnerSpillBytesPeak = max(statistics.learnerSpillBytesPeak, UInt64(backlog.fileBytesPeak))
                statistics.learnerSpilledBatches += backlog.spilledBatches
            }
            backlog.close()
        }
        var header: TransferHeader?
        var failure: String?
        while failure == nil {
            let known: TransferHeader? = lock.withLock {
                if header == nil, let cut = learnerCut { return cut }
                return header
            }
            if stopping || lock.withLock({ shuttingDown }) { failure = "the replica is stopping"; break }
            if let cut = known {
                header = cut
                do throws(SnapshotError) {
                    // The backlog first, then the feed as it comes, up to the cut exactly.
                    var fed: [(index: UInt64, payload: [UInt8])] = []
                    fed.reserveCapacity(Self.offThreadGroupMax)
                    var pastCut = false
                    while !pastCut {
                        pastCut = try Self.popGroup(from: backlog, into: &fed, upTo: cut.index)
                        if fed.isEmpty { break }
                        try applyFed(fed)
                    }
                    backlog.close()
                    var applied = lock.withLock { appliedIndex }
                    var lastFrameNanos = monotonicNanos()
                    while applied < cut.index {
                        if stopping { throw SnapshotError("the replica is stopping") }
                        guard let frame = try stream.next(timeoutMillis: Self.feedIdleMillis) else {
                            // The feed's provider stopped short of the cut (excluded, or a member that left): pull
                            // the cut's snapshot instead, while the cut's provider still keeps it for this joiner.
                            if monotonicNanos() - lastFrameNanos > feedToCutWaitNanos {
                                throw SnapshotError("the feed stopped at index \(applied), before the cut \(cut.index)")
                            }
                            continue
                        }
                        lastFrameNanos = monotonicNanos()
                        guard case let .learnerEntry(index, _, payload) = frame else {
                            throw SnapshotError("unexpected frame in the learner's feed")
                        }
                        try applyFed([(index, payload)])
                        applied = index
                    }
                    guard applied == cut.index else {
                        throw SnapshotError("the learner applied up to \(applied), past the cut \(cut.index)")
                    }
                } catch {
                    failure = error.reason
                    break
                }
                break
            }
            // The cut is not known yet: queue what the feed brings (bounded), without applying it.
            do throws(SnapshotError) {
                guard let frame = try stream.next(timeoutMillis: 50) else { continue }
                guard case let .learnerEntry(index, _, payload) = frame else {
                    throw SnapshotError("unexpected frame in the learner's feed")
                }
                do throws(SnapshotError) {
                    try backlog.append(index: index, payload: payload)
                } catch {
                    throw SnapshotError("the view change did not come before the learner's backlog filled: \(error.reason)")
                }
            } catch {
                failure = error.reason
            }
        }
        stream.close(core: self)
        // A shutdown cuts the feed's socket: the read fails, but the reason is the shutdown.
        if failure != nil && stopping { failure = "the replica is stopping" }
        if let failure, failure != "the replica is stopping" {
            // The cut may come later: the ordinary path takes it from here.
            let pull: TransferHeader? = lock.withLock {
                learning = false
                statistics.learnerFallbacks += 1
                return learnerCut
            }
            logger.error("the learner's feed ended before the cut; pulling the state as an ordinary joiner",
                         metadata: ["error": "\(failure)"])
            if let pull {
                if restoreFromProvider(pull) { drainSuffix() }
            }
            return
        }
        guard failure == nil, let header else {
            lock.withLock {
                learning = false
                restoring = false
                failed = true
                suffix.removeAll()
                lock.broadcast()
            }
            return
        }
        lock.withLock {
            precondition(appliedIndex == header.index, "a learner hands over at the cut exactly")
            learning = false
            learnerCut = nil
            restoring = false
            hasState = true
            statistics.snapshotsRestored += 1
            lock.broadcast()
        }
        logger.info("learner caught up at the cut; applying the suffix", metadata: ["applied_index": "\(header.index)"])
        declinePull(header)
        drainSuffix()
    }

    /// Tells the transfer's provider that this joiner will not pull its snapshot (best effort: otherwise the
    /// provider keeps the copy until ``Replica/Options/snapshotPullTimeoutMillis``).
    private func declinePull(_ header: TransferHeader) {
        guard let address = try? Address(host: header.host, port: header.port),
              let fd = try? Socket.connect(address, timeoutMillis: 2_000) else { return }
        defer { close(fd) }
        if let dialProvider {
            do { try dialProvider(fd) } catch { return }
        }
        _ = Socket.sendAll(fd, ClientFrame.snapshotDecline(transfer: header.transfer).encoded())
    }
}

#if canImport(Glibc)
/// glibc's `malloc_trim(3)` (declared in <malloc.h>, which the Glibc module does not export): returns the free memory
/// of every arena to the system.
@_silgen_name("malloc_trim")
private func glibcMallocTrim(_ pad: Int) -> Int32
#endif
