#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import RingCast

/// The state transfer to a joining replica, streamed over the client port in bounded chunks, while the ring keeps
/// delivering.
///
/// `Group.StateTransfer` carries only the *cut*: a small header (transfer id, the provider's client address, the
/// applied index). At the view boundary the provider registers the transfer and returns (the view change does not
/// wait for the state). From then on its state is *held* at the cut: deliveries are queued in the bounded
/// ``SuffixStore`` instead of applied, so the ring goes on while the joiner pulls. The joiner's restore also
/// returns at once: a thread connects to the provider, sends ``ClientFrame/snapshotRequest(transfer:)`` and
/// restores from the ``ClientFrame/snapshotChunk(_:)`` frames as they arrive, into a separate value (its own state
/// is empty), while the joiner queues its deliveries the same way. When the hold ends (every joiner pulled, or
/// none came within ``Replica/Options/snapshotPullTimeoutMillis``; the joiner's restore ended) a thread applies the
/// suffix in order, and deliveries are applied directly again once it is empty.
///
/// Memory on either side beyond the state: one chunk, the socket buffers, and the suffix (at most
/// ``Replica/Options/suffixBytesMax``; when it is full the delivery thread waits, so the ring slows to what apply
/// can take — backpressure, never loss). Never a serialized copy of the state.
///
/// Why the state may be read without `lock` while it is held: nothing modifies it then — apply only queues, session
/// expiry runs with apply, the joiner restores into a value of its own — and reads (queries, digests, other
/// streams) only read. Clients are affected as follows: writes still enter the ring and are answered once applied;
/// linearizable and sequential reads wait for the applied state (their barrier or index is in the suffix); stale
/// reads are answered from the state at the cut; a joiner refuses reads (``ReplyStatus/notRunning``, retryable at
/// another replica) until its state is restored.
extension ReplicaCore {
    /// Whether the state must not move (under `lock`): a provider's transfer is announced or streaming (unless it
    /// streams a copy, ``StateMachine/copyIsSnapshot``), or this joiner restores.
    var stateHeld: Bool { restoring || streamsActive > 0 || transfersPending.values.contains { !$0.byCopy } }

    /// Queues one delivery while the state is held (delivery thread, under `lock`); waits while the store is full.
    func enqueueSuffix(_ payload: [UInt8]) {
        var waited = false
        while !suffix.admits(payload.count) && !failed && !shuttingDown {
            // The hold ended and the drainer left while this thread was queueing: nobody else makes room.
            if !stateHeld && !draining {
                applySuffixHere()
                continue
            }
            if !waited {
                statistics.suffixFullWaits += 1
                waited = true
            }
            lock.wait()
        }
        // A failed joiner's state is not the group's, and a stopping replica applies nothing more: nothing to keep.
        guard !failed && !shuttingDown else { return }
        suffix.append(payload)
        statistics.suffixDeliveries += 1
        statistics.suffixBytesPeak = UInt64(suffix.peakBytes)
    }

    /// The delivery thread, after queueing (under `lock`): if the hold ended and no drainer is at work (it may
    /// have found the store empty and left between two deliveries of this thread), nobody else would apply what
    /// this thread just queued, so it applies the whole suffix itself, in order.
    func applyQueuedIfReleased() {
        if !stateHeld && !draining && !failed && !shuttingDown && !suffix.isEmpty { applySuffixHere() }
    }

    /// Applies everything queued, in order, on the calling thread (under `lock`; the state not held).
    private func applySuffixHere() {
        let started = threadCPUNanos()
        var taken: UInt64 = 0
        while let payload = suffix.popFirst() {
            applyRingBatch(payload, decodeStarted: threadCPUNanos())
            taken += 1
        }
        endOfDeliveries()
        CPUCounters.charge(cpu.deliveryNanos, since: started)
        statistics.suffixApplied += taken
    }

    /// Applies the queued suffix in order once nothing holds the state, a few deliveries per `lock` hold, so that
    /// clients and the delivery thread (which queues behind it) get the lock in between. One drainer at a time.
    func drainSuffix() {
        let claimed: Bool = lock.withLock {
            guard !draining else { return false }
            draining = true
            return true
        }
        guard claimed else { return }
        var more = true
        while more {
            more = lock.withLock {
                guard !stateHeld, !failed, !shuttingDown, !suffix.isEmpty else {
                    draining = false
                    lock.broadcast()
                    return false
                }
                let started = threadCPUNanos()
                var taken = 0
                while taken < 64, let payload = suffix.popFirst() {
                    applyRingBatch(payload, decodeStarted: threadCPUNanos())
                    taken += 1
                }
                endOfDeliveries()
                CPUCounters.charge(cpu.deliveryNanos, since: started)
                statistics.suffixApplied += UInt64(taken)
                lock.broadcast() // room in the suffix for a waiting delivery; a waiting next transfer
                return true
            }
        }
    }

    /// `Group.StateTransfer.snapshot` (provider, control thread, at the view boundary: every delivery of the old
    /// view was handed to ``apply(_:)``): registers a transfer and returns its header.
    func snapshotForTransfer(clientPort: UInt16) -> [UInt8] {
        let (header, transfer): ([UInt8], UInt64) = lock.withLock {
            // The cut is the state after every delivery so far. An earlier transfer (two view changes in a row) or
            // this replica's own restore may still hold the state or its suffix: wait until all of it is applied.
            // This blocks the control thread, but only for back-to-back joins (bounded by the pull deadline, the
            // stall timeout and the suffix bound).
            while (stateHeld || !suffix.isEmpty || draining) && !failed && !shuttingDown {
                expireTransfers()
                lock.wait(untilNanos: monotonicNanos() + 10_000_000)
            }
            let transfer = nextTransfer
            nextTransfer += 1
            // `currentView` is still the old view here (the next one starts after this returns): the joiners are the
            // members of the next view that are not in it, counted once the next view is published.
            let old = group?.currentView
            transfersPending[transfer] = PendingTransfer(
                deadlineNanos: monotonicNanos() + UInt64(options.snapshotPullTimeoutMillis) * 1_000_000,
                oldViewID: old?.id, oldMembers: Set(old?.members ?? []), byCopy: Machine.copyIsSnapshot)
            if Machine.copyIsSnapshot {
                // A copy of values: O(1) now; apply's next change of each collection copies that collection once
                // (copy-on-write), so apply never waits for the stream and the cut stays what it was.
                frozenCuts[transfer] = FrozenCut(machine: machine, sessions: sessions, index: appliedIndex,
                                                 orderedMillis: orderedMillis)
            }
            statistics.snapshotsSent += 1
            return (TransferHeader(transfer: transfer, host: advertisedHost, port: clientPort, index: appliedIndex).encoded(),
                    transfer)
        }
        do {
            try startTransferThread { [self] in releaseWhenPulled() }
        } catch {
            // Without the thread nobody would end the hold: do not hold (the joiner's pull is refused; it fails).
            lock.withLock {
                transfersPending[transfer] = nil
                frozenCuts[transfer] = nil
                lock.broadcast()
            }
            logger.error("cannot start the transfer thread; the joiner will not get the state", metadata: ["error": "\(error)"])
        }
        return header
    }

    /// Provider: waits (on its own thread) until every announced transfer was pulled or expired and no stream is
    /// open, then applies the suffix.
    private func releaseWhenPulled() {
        lock.withLock {
            while !shuttingDown {
                expireTransfers()
                if transfersPending.isEmpty && streamsActive == 0 { break }
                // Wakes when a stream ends (broadcast), and every 10 ms to see whether the next view was published.
                lock.wait(untilNanos: monotonicNanos() + 10_000_000)
            }
        }
        drainSuffix()
    }

    /// Drops the transfers every joiner has pulled, and those nobody started pulling before their deadline
    /// (under `lock`).
    func expireTransfers() {
        let now = monotonicNanos()
        for (transfer, pending) in transfersPending where pending.streaming == 0 {
            if let expected = expectedPulls(pending), pending.served >= expected {
                transfersPending[transfer] = nil
                frozenCuts[transfer] = nil
            } else if pending.deadlineNanos <= now {
                transfersPending[transfer] = nil
                frozenCuts[transfer] = nil
                statistics.transfersExpired += 1
                logger.warning("a joiner did not pull the snapshot in time; applying again",
                               metadata: ["transfer": "\(transfer)", "pulled": "\(pending.served)"])
            }
        }
    }

    /// How many joiners will pull a transfer: the members of the view after the cut that were not in the one
    /// before; nil while that view is not published yet.
    func expectedPulls(_ pending: PendingTransfer) -> Int? {
        guard let view = group?.currentView, view.id != pending.oldViewID else { return nil }
        return view.members.filter { !pending.oldMembers.contains($0) }.count
    }

    /// Provider, on the joiner's connection thread: streams the state at the cut, chunk by chunk, paced by
    /// ``Replica/Options/snapshotBytesPerSecondMax`` and at a lower scheduling priority
    /// (``Replica/Options/snapshotThreadNice``). A machine whose copy is a snapshot streams the copy taken at the
    /// cut while apply goes on; otherwise the state is held (`streamsActive`) and read without `lock` while apply
    /// queues the suffix.
    func serveSnapshot(_ transfer: UInt64, to connection: Connection) {
        let chunkBytes = min(options.snapshotChunkBytes, options.frameBytesMax - 16)
        let admitted: Result<FrozenCut?, SnapshotError> = lock.withLock {
            guard !failed else { return .failure(SnapshotError("this replica's own state transfer failed")) }
            guard let pending = transfersPending[transfer] else {
                return .failure(SnapshotError("transfer \(transfer) is unknown or expired"))
            }
            transfersPending[transfer]!.streaming += 1
            if pending.byCopy {
                guard let cut = frozenCuts[transfer] else { preconditionFailure("a transfer by copy without its cut") }
                return .success(cut)
            }
            streamsActive += 1
            return .success(nil)
        }
        let cut: FrozenCut?
        switch admitted {
        case let .failure(refusal):
            logger.error("snapshot transfer refused", metadata: ["transfer": "\(transfer)", "error": "\(refusal.reason)"])
            return connection.fail(code: 6, message: refusal.reason)
        case let .success(admittedCut):
            cut = admittedCut
        }
        // This connection serves the pull only (the joiner closes it after the end frame), so its thread may stay at
        // the lower priority for the rest of its life.
        lowerTransferThreadPriority(nice: options.snapshotThreadNice)
        // A joiner that stops reading fails the stream instead of holding the state forever.
        setSocketTimeout(connection.fd, SO_SNDTIMEO, millis: options.snapshotStallTimeoutMillis)
        nonisolated(unsafe) var sentBytes: UInt64 = 0
        nonisolated(unsafe) var bucket = options.snapshotBytesPerSecondMax > 0
            ? TokenBucket(bytesPerSecond: UInt64(options.snapshotBytesPerSecondMax), burstBytes: UInt64(chunkBytes),
                          nowNanos: monotonicNanos())
            : nil
        var writer = SnapshotWriter(chunkBytesMax: chunkBytes) { [self] chunk throws(SnapshotError) in
            if bucket != nil {
                // Paced before the send: the stream is never ahead of rate × elapsed + one chunk.
                guard pace(&bucket!, bytes: UInt64(chunk.count)) else { throw SnapshotError("the replica is stopping") }
            }
            guard Socket.sendAll(connection.fd, ClientFrame.snapshotChunk(Array(chunk)).encoded()) else {
                throw SnapshotError("the joiner's connection broke or stalled")
            }
            sentBytes += UInt64(chunk.count)
        }
        var outcome: String?
        do {
            if let cut { try Self.writeSnapshot(cut, into: &writer) } else { try writeSnapshot(into: &writer) }
            _ = Socket.sendAll(connection.fd, ClientFrame.snapshotEnd(bytes: sentBytes).encoded())
        } catch {
            outcome = "\(error)"
        }
        let index: UInt64 = lock.withLock {
            // Each joiner of the view change pulls once; apply goes on after the last (releaseWhenPulled).
            transfersPending[transfer]?.streaming -= 1
            transfersPending[transfer]?.served += 1
            if cut == nil { streamsActive -= 1 }
            statistics.snapshotBytesSent += sentBytes
            if let bucket {
                statistics.snapshotPacingWaits += bucket.waits
                statistics.snapshotBytesPerRefillMax = max(statistics.snapshotBytesPerRefillMax, bucket.takenSinceRefillMax)
            }
            lock.broadcast()
            return appliedIndex
        }
        if let outcome {
            logger.error("snapshot transfer failed", metadata: ["transfer": "\(transfer)", "error": "\(outcome)"])
            connection.fail(code: 6, message: outcome)
        } else {
            logger.info("snapshot streamed to a joiner", metadata: ["transfer": "\(transfer)", "bytes": "\(sentBytes)",
                                                                    "applied_index": "\(index)",
                                                                    "by_copy": "\(cut != nil)"])
        }
    }

    /// Waits until the bucket lets `bytes` go; false if the replica stops meanwhile.
    private func pace(_ bucket: inout TokenBucket, bytes: UInt64) -> Bool {
        while true {
            let wait = bucket.take(bytes, nowNanos: monotonicNanos())
            if wait == 0 { return true }
            let stopping: Bool = pacing.withLock {
                if !transfersStopping { _ = pacing.wait(untilNanos: monotonicNanos() + wait) }
                return transfersStopping
            }
            if stopping { return false }
        }
    }

    /// `Group.StateTransfer.restore` (joiner, control thread, before its first delivery): starts pulling the
    /// snapshot and returns; deliveries are queued until the state is restored.
    func restoreFromTransfer(_ bytes: [UInt8]) {
        let header: TransferHeader
        do {
            header = try TransferHeader.decode(bytes)
        } catch {
            lock.withLock { failed = true }
            logger.error("the provider's transfer header does not decode; this replica does not serve",
                         metadata: ["error": "\(error)"])
            return
        }
        lock.withLock { restoring = true }
        do {
            try startTransferThread { [self] in pullSnapshot(header) }
        } catch {
            lock.withLock {
                restoring = false
                failed = true
                suffix.removeAll()
                lock.broadcast()
            }
            logger.error("cannot start the snapshot thread; this replica does not serve", metadata: ["error": "\(error)"])
        }
    }

    /// The joiner's transfer thread: pulls and restores on a thread of lower priority (bulk work: it takes the CPU
    /// the ring and the clients leave, see `lowerTransferThreadPriority`), then applies the suffix on this one, at
    /// normal priority — the suffix competes with the ring's deliveries, which queue behind it until it is empty.
    private func pullSnapshot(_ header: TransferHeader) {
        nonisolated(unsafe) var restored = false
        do {
            let restorer = try Thread { [self] in
                lowerTransferThreadPriority(nice: options.snapshotThreadNice)
                restored = restoreFromProvider(header)
            }
            restorer.join()
        } catch {
            // No thread for it: restore here (the suffix then drains at the lower priority too).
            restored = restoreFromProvider(header)
        }
        if restored { drainSuffix() }
    }

    /// A delivery reached a joiner that has no state and restores none (under `lock`): the group started a ring
    /// here without handing it the state first. Applying it would build a state that is not the group's, answered
    /// to clients as if it were: this replica fails instead (it applies and serves nothing; restart it to join).
    func deliveredWithoutState() -> [Connection] {
        if !failed {
            logger.error("a delivery arrived before this joiner received the group's state; it does not apply nor serve (restart it to join again)")
        }
        failed = true
        suffix.removeAll()
        lock.broadcast()
        return []
    }

    /// Pulls the state from the provider and installs it; false if the transfer failed (this replica then does not
    /// serve).
    private func restoreFromProvider(_ header: TransferHeader) -> Bool {
        // Restored into values of their own (the replica's are empty: a joiner applied nothing yet), installed under
        // `lock` at the end, so that nobody sees a half-restored state and the lock is free meanwhile.
        var restored: Machine = lock.withLock { machine }
        var restoredSessions = SessionTable(limits: options.sessions)
        let result: Result<UInt64, SnapshotError>
        do throws(SnapshotError) {
            let address: Address
            do { address = try Address(host: header.host, port: header.port) } catch {
                throw SnapshotError("provider address: \(error)")
            }
            let fd: Int32
            do { fd = try Socket.connect(address, timeoutMillis: 5_000) } catch {
                throw SnapshotError("connecting to the provider: \(error)")
            }
            // Registered so that shutdown can cut the pull short (stopTransfers); closed only after it is unregistered.
            let registered: Bool = pacing.withLock {
                guard !transfersStopping else { return false }
                pullSocket = fd
                return true
            }
            defer {
                pacing.withLock { pullSocket = -1 }
                close(fd)
            }
            guard registered else { throw SnapshotError("the replica is stopping") }
            if let dialProvider {
                do { try dialProvider(fd) } catch {
                    throw SnapshotError("the provider's client port refused the handshake: \(error)")
                }
            }
            // A provider that stops sending fails the transfer instead of keeping this replica waiting forever.
            setSocketTimeout(fd, SO_RCVTIMEO, millis: options.snapshotStallTimeoutMillis)
            guard Socket.sendAll(fd, ClientFrame.snapshotRequest(transfer: header.transfer).encoded()) else {
                throw SnapshotError("sending the request to the provider failed")
            }
            let stream = SnapshotStream(fd: fd, frameBytesMax: options.frameBytesMax)
            var reader = SnapshotReader { () throws(SnapshotError) -> [UInt8]? in try stream.next() }
            let cut = try Self.readSnapshot(from: &reader, machine: &restored, sessions: &restoredSessions)
            guard stream.ended else { throw SnapshotError("the provider sent more than the state") }
            guard cut.index == header.index else {
                throw SnapshotError("the snapshot is at index \(cut.index), the cut at \(header.index)")
            }
            lock.withLock {
                machine = restored
                sessions = restoredSessions
                appliedIndex = cut.index
                orderedMillis = cut.orderedMillis
                hasState = true
                restoring = false
                statistics.snapshotsRestored += 1
                lock.broadcast()
            }
            result = .success(reader.bytesRead)
        } catch {
            lock.withLock {
                failed = true
                restoring = false
                suffix.removeAll()
                lock.broadcast()
            }
            result = .failure(error)
        }
        switch result {
        case let .success(bytes):
            logger.info("state restored from the group; applying the suffix",
                        metadata: ["applied_index": "\(header.index)", "bytes": "\(bytes)"])
            return true
        case let .failure(error):
            logger.error("the state transfer failed; this replica does not serve (restart it to join again)",
                         metadata: ["error": "\(error)"])
            return false
        }
    }

    /// Transfer counters appended to the statistics frame after a marker (so that tools find them whatever other
    /// counters come before): snapshots sent, bytes sent, restored, suffix deliveries, suffix peak bytes, suffix
    /// bytes now, waits for room, held now (1/0), has state (1/0), transfers expired, excluded (1/0).
    func transferCounters() -> [UInt64] {
        lock.withLock {
            [Self.transferCountersMarker, statistics.snapshotsSent, statistics.snapshotBytesSent,
             statistics.snapshotsRestored, statistics.suffixDeliveries, statistics.suffixBytesPeak, UInt64(suffix.bytes),
             statistics.suffixFullWaits, stateHeld || !suffix.isEmpty ? 1 : 0, hasState ? 1 : 0,
             statistics.transfersExpired, excluded ? 1 : 0]
        }
    }

    /// Shutdown: a delivery waiting for room in the suffix store, and the transfer threads, give up.
    func stopApplying() {
        lock.withLock {
            shuttingDown = true
            lock.broadcast()
        }
    }

    /// Shutdown, first step: a paced stream stops waiting, a joiner's pull stops reading (its socket is shut down),
    /// so that neither keeps the transfer threads or a connection thread alive.
    func stopTransfers() {
        pacing.withLock {
            transfersStopping = true
            if pullSocket >= 0 { shutdown(pullSocket, Int32(SHUT_RDWR)) }
            pacing.broadcast()
        }
    }

    /// Starts a transfer thread (tracked, joined by ``joinTransferThreads()``); joins those that ended before.
    func startTransferThread(_ body: @escaping @Sendable () -> Void) throws(SMRError) {
        let (ended, id): ([Thread], Int) = lock.withLock {
            var handles: [Thread] = []
            transferThreadsEnded.removeAll { id in
                guard let handle = transferThreads.removeValue(forKey: id) else { return false }
                handles.append(handle)
                return true
            }
            nextTransferThread += 1
            transferThreadsRunning += 1
            return (handles, nextTransferThread)
        }
        for handle in ended { handle.join() } // they ended: returns at once
        do {
            let thread = try Thread { [self] in
                body()
                lock.withLock {
                    transferThreadsEnded.append(id)
                    transferThreadsRunning -= 1
                    lock.broadcast()
                }
            }
            lock.withLock { transferThreads[id] = thread }
        } catch {
            lock.withLock { transferThreadsRunning -= 1 }
            throw error
        }
    }

    /// Shutdown, last step (after the group stopped): waits at most `timeoutMillis` for the transfer threads, then
    /// joins those that ended. Why bounded: shutdown may run on a thread of Swift's cooperative pool (two on this
    /// machine); the transfer threads are threads of their own and need none of it, but a pull stuck in `connect`
    /// (at most 5 s) must not hold the caller longer than the broadcaster's wait does (``joinBroadcaster()``).
    /// - Returns: the transfer threads still running (not joined).
    @discardableResult
    func joinTransferThreads(timeoutMillis: Int = 2_000) -> Int {
        let (handles, running): ([Thread], Int) = lock.withLock {
            let deadline = monotonicNanos() + UInt64(timeoutMillis) * 1_000_000
            while transferThreadsRunning > 0 && monotonicNanos() < deadline { _ = lock.wait(untilNanos: deadline) }
            var handles: [Thread] = []
            for id in transferThreadsEnded {
                if let handle = transferThreads.removeValue(forKey: id) { handles.append(handle) }
            }
            transferThreadsEnded.removeAll { transferThreads[$0] == nil }
            return (handles, transferThreadsRunning)
        }
        for handle in handles { handle.join() }
        if running > 0 {
            logger.notice("state-transfer threads had not ended in time after shutdown; not waiting",
                          metadata: ["running": "\(running)", "waited_ms": "\(timeoutMillis)"])
        }
        return running
    }

    /// "TRANSFER" in ASCII.
    static var transferCountersMarker: UInt64 { 0x5452_414E_5346_4552 }
}

/// SO_SNDTIMEO / SO_RCVTIMEO on a blocking socket: a send or receive that makes no progress this long fails.
func setSocketTimeout(_ fd: Int32, _ option: Int32, millis: Int) {
    var value = timeval(tv_sec: millis / 1000, tv_usec: (millis % 1000) * 1000)
    setsockopt(fd, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<timeval>.size))
}

/// A transfer the provider announced: it keeps its state at the cut until every joiner pulled it, or nobody started
/// before the deadline.
struct PendingTransfer {
    var deadlineNanos: UInt64
    var oldViewID: UInt64?
    var oldMembers: Set<UInt32>
    var served = 0
    /// Streams of this transfer in progress (the deadline does not cut a stream that started).
    var streaming = 0
    /// The stream reads a copy taken at the cut (``StateMachine/copyIsSnapshot``): the state is not held.
    var byCopy = false
}

extension ReplicaCore {
    /// The replicated state at one point of the log: what a snapshot stream writes.
    struct FrozenCut {
        var machine: Machine
        var sessions: SessionTable
        var index: UInt64
        var orderedMillis: UInt64
    }
}

/// What `Group.StateTransfer` carries: the cut, and where to pull the state from.
struct TransferHeader: Hashable {
    static let version: UInt8 = 2
    var transfer: UInt64
    var host: String
    var port: UInt16
    var index: UInt64

    func encoded() -> [UInt8] {
        var writer = ByteWriter()
        writer.uint8(Self.version)
        writer.uint64(transfer)
        writer.lengthPrefixed(Array(host.utf8))
        writer.uint16(port)
        writer.uint64(index)
        return writer.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(SMRCodecError) -> TransferHeader {
        var reader = ByteReader(bytes)
        let version = try reader.uint8()
        guard version == Self.version else { throw SMRCodecError("transfer header version \(version)") }
        let transfer = try reader.uint64()
        let host = String(decoding: try reader.lengthPrefixed(), as: UTF8.self)
        let header = TransferHeader(transfer: transfer, host: host, port: try reader.uint16(), index: try reader.uint64())
        try reader.expectEnd()
        return header
    }
}

/// The joiner's side of a snapshot stream: frames from the provider, one chunk at a time.
final class SnapshotStream {
    let fd: Int32
    private var assembler: FrameAssembler
    private var buffer = [UInt8](repeating: 0, count: 64 << 10)
    private(set) var ended = false

    init(fd: Int32, frameBytesMax: Int) {
        self.fd = fd
        assembler = FrameAssembler(frameBytesMax: frameBytesMax)
    }

    /// The next chunk; nil at the end of the stream.
    func next() throws(SnapshotError) -> [UInt8]? {
        while true {
            let body: ArraySlice<UInt8>?
            do { body = try assembler.next() } catch { throw SnapshotError("\(error)") }
            if let body {
                let frame: ClientFrame
                do { frame = try ClientFrame.decode(body) } catch { throw SnapshotError("\(error)") }
                switch frame {
                case let .snapshotChunk(bytes): return bytes
                case .snapshotEnd:
                    ended = true
                    return nil
                case let .error(_, message): throw SnapshotError("the provider refused: \(message)")
                default: throw SnapshotError("unexpected frame in a snapshot stream")
                }
            }
            guard !ended else { return nil }
            let received = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if received < 0 && errno == EINTR { continue }
            guard received > 0 else { throw SnapshotError("the provider closed the stream early") }
            buffer.withUnsafeBytes { assembler.append(UnsafeRawBufferPointer(rebasing: $0[0..<received])) }
        }
    }
}
