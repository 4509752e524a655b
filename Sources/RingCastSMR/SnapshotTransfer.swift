#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import RingCast

/// The state transfer to a joining replica, streamed over the client port in bounded chunks.
///
/// `Group.StateTransfer` carries only the *cut*: a small header (transfer id, the provider's client address, the
/// applied index). At the view boundary the provider registers the transfer and returns at once (the view change
/// does not wait for the state); its apply thread then waits before the next view's first delivery, so its state
/// stays exactly at the cut. The joiner's restore also returns at once: a thread connects to the provider, sends
/// ``ClientFrame/snapshotRequest(transfer:)``, and restores from the ``ClientFrame/snapshotChunk(_:)`` frames as
/// they arrive, while the joiner's apply waits for it. Memory on either side: one chunk (and the socket buffers),
/// never a serialized copy of the state. What it does not do yet: keep the ring delivering during the transfer
/// (the provider's and the joiner's deliveries wait, so the ring stalls for the transfer's duration); see the DocC
/// article *Replicating a service*.
extension ReplicaCore {
    /// `Group.StateTransfer.snapshot` (provider, control thread, at the view boundary: every delivery of the old
    /// view was applied): registers a transfer and returns its header.
    func snapshotForTransfer(clientPort: UInt16) -> [UInt8] {
        lock.withLock {
            let transfer = nextTransfer
            nextTransfer += 1
            // `currentView` is still the old view here (the next one starts after this returns): the joiners are the
            // members of the next view that are not in it, counted once the next view is published.
            let old = group?.currentView
            transfersPending[transfer] = PendingTransfer(
                deadlineNanos: monotonicNanos() + UInt64(options.snapshotPullTimeoutMillis) * 1_000_000,
                oldViewID: old?.id, oldMembers: Set(old?.members ?? []))
            statistics.snapshotsSent += 1
            return TransferHeader(transfer: transfer, host: advertisedHost, port: clientPort, index: appliedIndex).encoded()
        }
    }

    /// Apply waits here (under `lock`) while a transfer keeps the state at the cut, or while this joiner restores.
    func waitForTransfers() {
        while restoring || !transfersPending.isEmpty {
            let now = monotonicNanos()
            for (transfer, pending) in transfersPending {
                if let expected = expectedPulls(pending), pending.served >= expected {
                    transfersPending[transfer] = nil
                } else if pending.deadlineNanos <= now {
                    transfersPending[transfer] = nil
                    logger.warning("a joiner did not pull the snapshot in time; applying again",
                                   metadata: ["transfer": "\(transfer)", "pulled": "\(pending.served)"])
                }
            }
            guard restoring || !transfersPending.isEmpty else { break }
            if restoring {
                lock.wait()
            } else {
                // Wakes when a pull ends (broadcast), and every 10 ms to see whether the next view was published.
                lock.wait(untilNanos: min(transfersPending.values.map(\.deadlineNanos).min()!, now + 10_000_000))
            }
        }
    }

    /// How many joiners will pull a transfer: the members of the view after the cut that were not in the one
    /// before; nil while that view is not published yet.
    func expectedPulls(_ pending: PendingTransfer) -> Int? {
        guard let view = group?.currentView, view.id != pending.oldViewID else { return nil }
        return view.members.filter { !pending.oldMembers.contains($0) }.count
    }

    /// Provider, on the joiner's connection thread: streams the state at the cut, chunk by chunk, under `lock` (so
    /// apply cannot move it), then lets apply go on.
    func serveSnapshot(_ transfer: UInt64, to connection: Connection) {
        let chunkBytes = min(options.snapshotChunkBytes, options.frameBytesMax - 16)
        let outcome: String? = lock.withLock {
            guard transfersPending[transfer] != nil else { return "transfer \(transfer) is unknown or expired" }
            defer {
                // Each joiner of the view change pulls once; apply goes on after the last (waitForTransfers).
                transfersPending[transfer]?.served += 1
                lock.broadcast()
            }
            nonisolated(unsafe) var sentBytes: UInt64 = 0
            var writer = SnapshotWriter(chunkBytesMax: chunkBytes) { chunk throws(SnapshotError) in
                guard Socket.sendAll(connection.fd, ClientFrame.snapshotChunk(Array(chunk)).encoded()) else {
                    throw SnapshotError("the joiner's connection broke")
                }
                sentBytes += UInt64(chunk.count)
            }
            do {
                try writeSnapshot(into: &writer)
            } catch {
                return "\(error)"
            }
            _ = Socket.sendAll(connection.fd, ClientFrame.snapshotEnd(bytes: sentBytes).encoded())
            statistics.snapshotBytesSent += sentBytes
            logger.info("snapshot streamed to a joiner", metadata: ["transfer": "\(transfer)", "bytes": "\(sentBytes)",
                                                                    "applied_index": "\(appliedIndex)"])
            return nil
        }
        if let outcome {
            logger.error("snapshot transfer failed", metadata: ["transfer": "\(transfer)", "error": "\(outcome)"])
            connection.fail(code: 6, message: outcome)
        }
    }

    /// `Group.StateTransfer.restore` (joiner, control thread, before its first delivery): starts pulling the
    /// snapshot and returns; apply waits until the state is restored.
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
            _ = try Thread { [self] in pullSnapshot(header) }
        } catch {
            lock.withLock {
                restoring = false
                failed = true
                lock.broadcast()
            }
            logger.error("cannot start the snapshot thread; this replica does not serve", metadata: ["error": "\(error)"])
        }
    }

    private func pullSnapshot(_ header: TransferHeader) {
        let result: Result<UInt64, SnapshotError> = lock.withLock {
            defer {
                restoring = false
                lock.broadcast()
            }
            do throws(SnapshotError) {
                let address: Address
                do { address = try Address(host: header.host, port: header.port) } catch {
                    throw SnapshotError("provider address: \(error)")
                }
                let fd: Int32
                do { fd = try Socket.connect(address, timeoutMillis: 5_000) } catch {
                    throw SnapshotError("connecting to the provider: \(error)")
                }
                defer { close(fd) }
                if let dialProvider {
                    do { try dialProvider(fd) } catch {
                        throw SnapshotError("the provider's client port refused the handshake: \(error)")
                    }
                }
                guard Socket.sendAll(fd, ClientFrame.snapshotRequest(transfer: header.transfer).encoded()) else {
                    throw SnapshotError("sending the request to the provider failed")
                }
                let stream = SnapshotStream(fd: fd, frameBytesMax: options.frameBytesMax)
                var reader = SnapshotReader { () throws(SnapshotError) -> [UInt8]? in try stream.next() }
                try readSnapshot(from: &reader)
                guard stream.ended else { throw SnapshotError("the provider sent more than the state") }
                guard appliedIndex == header.index else {
                    throw SnapshotError("the snapshot is at index \(appliedIndex), the cut at \(header.index)")
                }
                hasState = true
                statistics.snapshotsRestored += 1
                return .success(reader.bytesRead)
            } catch {
                failed = true
                return .failure(error)
            }
        }
        switch result {
        case let .success(bytes):
            logger.info("state restored from the group", metadata: ["applied_index": "\(header.index)", "bytes": "\(bytes)"])
        case let .failure(error):
            logger.error("the state transfer failed; this replica does not serve (restart it to join again)",
                         metadata: ["error": "\(error)"])
        }
    }
}

/// A transfer the provider announced: it keeps its state at the cut until every joiner pulled it, or the deadline.
struct PendingTransfer {
    var deadlineNanos: UInt64
    var oldViewID: UInt64?
    var oldMembers: Set<UInt32>
    var served = 0
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
