import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import RingCast

/// The learner's connection to a provider: frames in, one at a time, with an optional wait limit.
final class FeedStream: @unchecked Sendable {
    let fd: Int32
    private var assembler: FrameAssembler
    private var buffer = [UInt8](repeating: 0, count: 64 << 10)
    private var closed = false

    private init(fd: Int32, frameBytesMax: Int) {
        self.fd = fd
        assembler = FrameAssembler(frameBytesMax: frameBytesMax)
    }

    /// Connects, registers the socket for shutdown (``ReplicaCore/stopTransfers()``), and runs the handshake.
    /// `register` false: not registered (its reader must poll and check for a shutdown) until ``register(core:)``.
    static func open<Machine>(_ provider: Address, core: ReplicaCore<Machine>,
                              register: Bool = true) throws(SnapshotError) -> FeedStream {
        let fd: Int32
        do { fd = try Socket.connect(provider, timeoutMillis: 5_000) } catch {
            throw SnapshotError("connecting to the provider: \(error)")
        }
        let registered: Bool = core.pacing.withLock {
            guard !core.transfersStopping else { return false }
            if register { core.pullSocket = fd }
            return true
        }
        let stream = FeedStream(fd: fd, frameBytesMax: core.options.frameBytesMax)
        guard registered else {
            Glibc.close(fd)
            stream.closed = true
            throw SnapshotError("the replica is stopping")
        }
        if let dial = core.dialProvider {
            do { try dial(fd) } catch {
                stream.close(core: core)
                throw SnapshotError("the provider's client port refused the handshake: \(error)")
            }
        }
        // A provider that stops sending mid-frame fails the learner instead of keeping it waiting forever.
        setSocketTimeout(fd, SO_RCVTIMEO, millis: core.options.snapshotStallTimeoutMillis)
        return stream
    }

    /// Registers the socket for shutdown (the replica's one transfer socket); false when the replica is stopping.
    func register<Machine>(core: ReplicaCore<Machine>) -> Bool {
        core.pacing.withLock {
            guard !core.transfersStopping else { return false }
            core.pullSocket = fd
            return true
        }
    }

    /// Unregisters and closes the socket (once).
    func close<Machine>(core: ReplicaCore<Machine>) {
        guard !closed else { return }
        closed = true
        core.pacing.withLock { if core.pullSocket == fd { core.pullSocket = -1 } }
        Glibc.close(fd)
    }

    /// The next frame; nil when none arrived within `timeoutMillis` (nil: wait for one, up to the stall timeout).
    /// An error frame from the provider, a closed connection or a malformed frame throw.
    func next(timeoutMillis: Int32?) throws(SnapshotError) -> ClientFrame? {
        guard let body = try nextBody(timeoutMillis: timeoutMillis) else { return nil }
        return try Self.decode(body)
    }

    private static func decode(_ body: ArraySlice<UInt8>) throws(SnapshotError) -> ClientFrame {
        let frame: ClientFrame
        do { frame = try ClientFrame.decode(body) } catch { throw SnapshotError("\(error)") }
        if case let .error(_, message) = frame { throw SnapshotError("the provider refused: \(message)") }
        return frame
    }

    /// The restore's source: the next chunk of the copy into `chunk`, in place (its capacity reused: no array per
    /// chunk, see ``SnapshotReader/init(refill:)``); false at the copy's end. Other frames in between (the feed's
    /// batches) go to `other`.
    func nextChunk(into chunk: inout [UInt8], other: (ClientFrame) throws(SnapshotError) -> Void) throws(SnapshotError) -> Bool {
        while true {
            guard let body = try nextBody(timeoutMillis: nil) else { continue }
            if body.count >= 2 && body[body.startIndex] == ClientFrame.version && body[body.startIndex + 1] == Self.chunkKind {
                chunk.removeAll(keepingCapacity: true)
                chunk.append(contentsOf: body.dropFirst(2))
                return true
            }
            let frame = try Self.decode(body)
            if case .snapshotEnd = frame { return false }
            try other(frame)
        }
    }

    /// ``ClientFrame/snapshotChunk(_:)``'s kind byte (ClientWire.swift).
    static let chunkKind: UInt8 = 0x84

    /// The next frame's body (valid until the next call); nil when none arrived within `timeoutMillis`.
    private func nextBody(timeoutMillis: Int32?) throws(SnapshotError) -> ArraySlice<UInt8>? {
        while true {
            let body: ArraySlice<UInt8>?
            do { body = try assembler.next() } catch { throw SnapshotError("\(error)") }
            if let body { return body }
            if let timeoutMillis {
                var probe = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&probe, 1, timeoutMillis)
                if ready < 0 && errno == EINTR { continue }
                if ready == 0 { return nil }
            }
            let received = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if received < 0 && errno == EINTR { continue }
            guard received > 0 else { throw SnapshotError("the provider closed the connection or stalled") }
            buffer.withUnsafeBytes { assembler.append(UnsafeRawBufferPointer(rebasing: $0[0..<received])) }
        }
    }
}

/// A learner's feed thread in phase 1 (Learner.swift): reads the feed's connection into the ``FeedStash`` as it
/// comes, at normal priority, whatever the restore's pace, until stopped, the replica stops, or the feed fails.
final class FeedReader: @unchecked Sendable {
    private let lock = Monitor()
    private var stopRequested = false
    private var failed: SnapshotError?
    /// Whether `failed` is set, read without the lock: the restore asks once per chunk at `SCHED_IDLE`, and an
    /// idle-class thread preempted inside ``lock`` would hold up this thread's frames.
    private let hasFailed = Atomic<Bool>(false)
    private var latestProviderIndex: UInt64?

    /// Why the feed ended early (the provider refused or dropped the learner, the connection broke, the stash's bound).
    var failure: SnapshotError? { hasFailed.load(ordering: .acquiring) ? lock.withLock { failed } : nil }
    /// The provider's applied index in the latest frame (nil: none yet).
    var providerIndex: UInt64? { lock.withLock { latestProviderIndex } }

    /// Ends ``run(_:into:stopping:)`` within one poll (50 ms).
    func stop() { lock.withLock { stopRequested = true } }

    func run(_ stream: FeedStream, into stash: FeedStash, stopping: () -> Bool) {
        defer { stash.wake() } // the applying thread's wait ends with the thread
        while !lock.withLock({ stopRequested }) {
            if stopping() { return fail(SnapshotError("the replica is stopping")) }
            do throws(SnapshotError) {
                guard let frame = try stream.next(timeoutMillis: 50) else { continue }
                guard case let .learnerEntry(index, providerIndex, payload) = frame else {
                    throw SnapshotError("unexpected frame in the learner's feed")
                }
                try stash.append(index: index, payload: payload)
                lock.withLock { latestProviderIndex = providerIndex }
            } catch {
                return fail(error)
            }
        }
    }

    private func fail(_ error: SnapshotError) {
        lock.withLock { failed = error }
        hasFailed.store(true, ordering: .releasing)
    }
}
