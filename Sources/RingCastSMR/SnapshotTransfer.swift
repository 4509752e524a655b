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
            return connection.fail(code: ClientErrorCode.snapshotRefused.rawValue, message: refusal.reason)
        case let .success(admittedCut):
            cut = admittedCut
        }
        var outcome: String?
        let sentBytes = streamCut(cut, to: connection, outcome: &outcome)
        let index: UInt64 = lock.withLock {
            // Each joiner of the view change pulls once; apply goes on after the last (releaseWhenPulled).
            transfersPending[transfer]?.streaming -= 1
            transfersPending[transfer]?.served += 1
            if cut == nil { streamsActive -= 1 }
            lock.broadcast()
            return appliedIndex
        }
        if let outcome {
            logger.error("snapshot transfer failed", metadata: ["transfer": "\(transfer)", "error": "\(outcome)"])
            connection.fail(code: ClientErrorCode.snapshotRefused.rawValue, message: outcome)
        } else {
            logger.info("snapshot streamed to a joiner", metadata: ["transfer": "\(transfer)", "bytes": "\(sentBytes)",
                                                                    "applied_index": "\(index)",
                                                                    "by_copy": "\(cut != nil)"])
        }
    }

    /// Streams the state at a cut to `connection` (a joiner's pull, a learner): `cut` is the copy taken at the cut, or
    /// nil for the replica's own state held at the cut. Chunk by chunk, paced by
    /// ``Replica/Options/snapshotBytesPerSecondMax``, at a lower scheduling priority
    /// (``Replica/Options/snapshotThreadNice``), then the end frame. Returns the bytes sent; `outcome` is set when
    /// the stream failed.
    /// `afterChunk` (a learner's stream) runs after each chunk: false fails the stream.
    func streamCut(_ cut: FrozenCut?, to connection: Connection, outcome: inout String?,
                   afterChunk: (@Sendable () -> Bool)? = nil) -> UInt64 {
        let chunkBytes = min(options.snapshotChunkBytes, options.frameBytesMax - 16)
        // This connection serves the transfer only (the other side closes it when done), so its thread may stay at
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
            guard Self.sendChunkFrame(connection.fd, chunk) else {
                throw SnapshotError("the joiner's connection broke or stalled")
            }
            sentBytes += UInt64(chunk.count)
            if let afterChunk, !afterChunk() { throw SnapshotError("the learner's connection broke or stalled") }
        }
        do {
            switch cut {
            case let cut?: try Self.writeSnapshot(cut, into: &writer)
            case nil: try writeSnapshot(into: &writer)
            }
            _ = Socket.sendAll(connection.fd, ClientFrame.snapshotEnd(bytes: sentBytes).encoded())
        } catch {
            outcome = "\(error)"
        }
        lock.withLock {
            statistics.snapshotBytesSent += sentBytes
            if let bucket {
                statistics.snapshotPacingWaits += bucket.waits
                statistics.snapshotBytesPerRefillMax = max(statistics.snapshotBytesPerRefillMax, bucket.takenSinceRefillMax)
            }
        }
        return sentBytes
    }

    /// Sends `chunk` as a ``ClientFrame/snapshotChunk(_:)`` frame straight from the writer's buffer: the frame's
    /// 6-byte head (length, version, kind, as `ClientFrame.encode` writes them), then the chunk itself. Why not
    /// `ClientFrame.snapshotChunk(Array(chunk)).encoded()`: that copies every chunk twice (the array, the frame) —
    /// two memcpy of the whole state per transfer and two chunk-sized buffers at the provider, for bytes that go to
    /// the socket unchanged. `MSG_MORE` keeps the head and the chunk in the same segments.
    static func sendChunkFrame(_ fd: Int32, _ chunk: ArraySlice<UInt8>) -> Bool {
        var head: [UInt8] = []
        head.reserveCapacity(6)
        withUnsafeBytes(of: UInt32(2 + chunk.count).littleEndian) { head.append(contentsOf: $0) }
        head.append(ClientFrame.version)
        head.append(0x84) // ClientFrame.snapshotChunk's kind (ClientWire.swift)
        return sendAll(fd, head[...], flags: Int32(MSG_NOSIGNAL | MSG_MORE)) && sendAll(fd, chunk, flags: Int32(MSG_NOSIGNAL))
    }

    private static func sendAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>, flags: Int32) -> Bool {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let sent = send(fd, raw.baseAddress! + offset, raw.count - offset, flags)
                if sent < 0 && errno == EINTR { continue }
                guard sent > 0 else { return false }
                offset += sent
            }
            return true
        }
    }

    /// Waits until the bucket lets `bytes` go; false if the replica stops meanwhile.
    func pace(_ bucket: inout TokenBucket, bytes: UInt64) -> Bool {
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
