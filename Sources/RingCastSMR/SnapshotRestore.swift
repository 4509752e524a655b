#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import RingCast
/// The joiner's side of a state transfer (SnapshotTransfer.swift): pull the state from the provider named in the
/// group's transfer header, restore it into values of its own, install them, then apply the suffix.
extension ReplicaCore {
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
        let learnerTakesIt: Bool = lock.withLock {
            restoring = true
            // A learner in its second phase applies its feed up to this cut (Learner.swift).
            guard learning else { return false }
            learnerCut = header
            lock.broadcast()
            return true
        }
        if learnerTakesIt { return }
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
    func restoreFromProvider(_ header: TransferHeader) -> Bool {
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
            var reader = SnapshotReader(refill: { (chunk: inout [UInt8]) throws(SnapshotError) -> Bool in
                try stream.next(into: &chunk)
            })
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

    /// The next chunk into `chunk`, in place (its capacity reused: no array per chunk, see
    /// ``SnapshotReader/init(refill:)``); false at the end of the stream.
    func next(into chunk: inout [UInt8]) throws(SnapshotError) -> Bool {
        while true {
            let body: ArraySlice<UInt8>?
            do { body = try assembler.next() } catch { throw SnapshotError("\(error)") }
            if let body {
                if body.count >= 2 && body[body.startIndex] == ClientFrame.version
                    && body[body.startIndex + 1] == FeedStream.chunkKind {
                    chunk.removeAll(keepingCapacity: true)
                    chunk.append(contentsOf: body.dropFirst(2))
                    return true
                }
                let frame: ClientFrame
                do { frame = try ClientFrame.decode(body) } catch { throw SnapshotError("\(error)") }
                switch frame {
                case let .snapshotChunk(bytes):
                    chunk = bytes
                    return true
                case .snapshotEnd:
                    ended = true
                    return false
                case let .error(_, message): throw SnapshotError("the provider refused: \(message)")
                default: throw SnapshotError("unexpected frame in a snapshot stream")
                }
            }
            guard !ended else { return false }
            let received = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if received < 0 && errno == EINTR { continue }
            guard received > 0 else { throw SnapshotError("the provider closed the stream early") }
            buffer.withUnsafeBytes { assembler.append(UnsafeRawBufferPointer(rebasing: $0[0..<received])) }
        }
    }
}
