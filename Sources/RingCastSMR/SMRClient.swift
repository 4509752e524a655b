#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import RingCast

/// What a client call throws.
public enum SMRClientError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No reply within the timeout. For a command: **in doubt** — it may or may not have been applied (at most
    /// once: a later retry of the same session number is never applied again).
    case timeout
    /// The session expired or was evicted (ordered time, ``SessionTable``); the command was not applied by this
    /// attempt, but an earlier attempt of it may have been (in doubt). The client opens a new session.
    case sessionExpired
    /// The replica refused the request (`malformedCommand`, `outsideWindow`, …); not applied.
    case rejected(ReplyStatus)
    /// No replica could be reached.
    case unavailable(String)
    /// A reply did not decode, or the replica broke the protocol.
    case protocolError(String)
    /// ``SMRClient/close()`` was called.
    case closed
    /// A non-waiting call (``SMRClient/submit(_:completion:)``, ``SMRClient/read(_:consistency:completion:)``) found
    /// ``SMRClient/Options/windowMax`` requests in flight; nothing was sent.
    case windowFull
    /// Every replica refused this client's link handshake (no cluster key, another key, another cluster name or
    /// mode: ``SMRClient/Options/security``). A command sent on an earlier connection is in doubt, as after
    /// ``timeout``; otherwise it was not sent.
    case unauthenticated(String)

    public var description: String {
        switch self {
        case .timeout: "no reply within the timeout (a command is in doubt: applied at most once)"
        case .sessionExpired: "the session expired (a command is in doubt)"
        case let .rejected(status): "rejected by the replica: \(status)"
        case let .unavailable(reason): "no replica reachable: \(reason)"
        case let .protocolError(reason): "protocol error: \(reason)"
        case .closed: "the client is closed"
        case .windowFull: "windowMax requests are in flight (nothing sent)"
        case let .unauthenticated(reason): "the replicas refused this client's handshake: \(reason)"
        }
    }
}

/// What a client request asks for (``SMRClient``'s in-flight table).
enum SMRRequestKind {
    case open
    case command(sequence: UInt64, bytes: [UInt8])
    case read(consistency: ReadConsistency, bytes: [UInt8])
    case statistics
    case digest
}

/// A reply as the reader hands it to a waiting request.
typealias SMRRawReply = (status: ReplyStatus, index: UInt64, payload: [UInt8])

/// Who waits for a request of ``SMRClient``: an async caller (a continuation), or a completion that the reader
/// thread calls (the non-waiting API: no task resumption per request).
enum SMRWaiter {
    case continuation(CheckedContinuation<Result<SMRRawReply, SMRClientError>, Never>)
    case completion(@Sendable (Result<SMRRawReply, SMRClientError>) -> Void)

    /// Hands over the outcome (never under the client's monitor: a completion may call the client again).
    func finish(_ result: Result<SMRRawReply, SMRClientError>) {
        switch self {
        case let .continuation(continuation): continuation.resume(returning: result)
        case let .completion(completion): completion(result)
        }
    }
}

/// A request of ``SMRClient`` waiting for its reply.
struct SMRInflight {
    let kind: SMRRequestKind
    let deadlineNanos: UInt64
    var sentGeneration: UInt64 = 0
    let waiter: SMRWaiter
}

/// An output with the log index it was applied at (a token for ``ReadConsistency/sequential`` reads anywhere).
public struct Committed<Output> {
    public let output: Output
    public let index: UInt64
}

extension Committed: Sendable where Output: Sendable {}

/// A client of a replicated service: connects to one replica (TCP), pipelines up to ``Options/windowMax``
/// requests, and fails over to the next replica with the same session when the connection breaks, a request times
/// out or the replica is not serving. Commands carry (session, number): a retry after failover is applied once.
///
/// ```swift
/// let client = try await SMRClient<KVCommand, KVQuery, KVOutput>.connect(.init(replicas: addresses))
/// let output = try await client.submit(.put(key: k, value: v))
/// let value = try await client.read(.get(key: k))            // linearizable by default
/// ```
public final class SMRClient<Command: SMRCodable, Query: SMRCodable, Output: SMRCodable>: @unchecked Sendable {
    public struct Options: Sendable {
        /// The replicas' client addresses; the client starts with ``preferred`` and moves on round-robin.
        public var replicas: [Address]
        public var preferred = 0
        /// Requests in flight at most (pipelining); further calls wait. ≤ the replicas' session window.
        public var windowMax = 32
        /// A request without a reply after this long fails with ``SMRClientError/timeout``.
        public var timeoutMillis = 5_000
        public var connectTimeoutMillis = 1_000
        public var frameBytesMax = 1 << 20
        /// The replicas' link security (the group's ``Security``: its cluster key and mode). With a key, every
        /// connection opens with the client plane's handshake
        /// (``Security/authenticateClientLink(socket:role:clusterName:selfID:)``) before any request.
        public var security = Security()
        /// The group's ``Group/Configuration/name``, bound into the handshake.
        public var clusterName = "ringcast"

        public init(replicas: [Address]) { self.replicas = replicas }
    }

    /// Counters of this client.
    public struct Statistics: Sendable, Hashable {
        public var failovers: UInt64 = 0
        public var resent: UInt64 = 0
        /// Sends the reader thread made because the send task had not run within a receive timeout (20 ms): the
        /// cooperative pool was busy (an application that blocks its threads delays requests by at most that).
        public var sendsByReader: UInt64 = 0
        /// Receive timeouts of the reader thread (20 ms without a frame): how often it woke up idle to check
        /// deadlines and whether queued requests wait for a sender.
        public var readerIdleWakeUps: UInt64 = 0
        public var timeouts: UInt64 = 0
        public var sessionsOpened: UInt64 = 0
        /// Connections whose handshake the replica refused (or that failed during it).
        public var handshakesFailed: UInt64 = 0
    }

    enum SessionStep { case have(UInt64), wait, open }

    // Declared outside the class: nested in it they would be generic too, and every dictionary access in the
    // client's hot path would then look up their type metadata at run time (profiled: ~9 % of a loaded client).
    typealias Kind = SMRRequestKind
    typealias Inflight = SMRInflight

    public let options: Options
    let monitor = Monitor()
    let sendMonitor = Monitor()
    // Under `monitor`:
    var fd: Int32 = -1
    var generation: UInt64 = 0
    var replica: Int
    var session: UInt64?
    var opening = false
    var sessionWaiters: [CheckedContinuation<Result<UInt64, SMRClientError>, Never>] = []
    var nextSequence: UInt64 = 1
    var nextRequest: UInt64 = 1
    var seenIndex: UInt64 = 0
    var inflight: [UInt64: Inflight] = [:]
    /// The numbers of the commands in `inflight`, ascending (a multiset: a new session numbers from 1 again while
    /// the old one's may still be in flight). Its first is the `firstUnacknowledged` a command frame carries, read
    /// in O(1) instead of walking the window per request (profiled: the walk, copying every in-flight request, was
    /// a tenth of a loaded client's CPU). Bounded by the window, like `inflight`.
    var commandNumbers: [UInt64] = []
    var slots: Int
    var slotWaiters: [CheckedContinuation<Bool, Never>] = []
    var closed = false
    var stats = Statistics()
    var reader: Thread?
    /// Why the last connection's handshake failed (nil after a connection that got through it, or that failed
    /// before it), and how many in a row did.
    var handshakeFailure: String?
    var handshakeFailuresInARow = 0
    /// Requests queued for sending (``sendQueued()``), whether a thread is sending, whether a send is scheduled.
    var outgoing: [UInt64] = []
    var sending = false
    var sendScheduled = false
    /// Every unsent in-flight request is to be sent (after a reconnection).
    var resendAll = false
    /// The reader thread is handing out the replies of one receive; it sends what they queued once done.
    var dispatching = false
    /// Tests only: the send task is never started, as when the application blocks every thread of the cooperative
    /// pool, so the reader thread's fallback (``runReader()``) is what sends.
    var sendTaskWithheld = false
    /// The frames of one `send` (``sendQueued()``, under `sendMonitor`): one buffer reused, no array per frame.
    var sendBuffer = ByteWriter(capacity: 4096)
    /// When the reader last looked for requests past their deadline (CLOCK_MONOTONIC ns, reader thread only).
    var lastExpiryScan: UInt64 = 0
    /// The deadline scan runs at most this often: it walks the whole window, and the reader wakes once per batch
    /// of replies (profiled: scanning on every wake-up was an eighth of a loaded client's CPU). Timeouts fire at
    /// most this much late.
    static var expiryScanIntervalNanos: UInt64 { 10_000_000 }
    /// The longest the reader waits in one `recv` (then it looks for requests past their deadline).
    static var receiveTimeout: timeval { timeval(tv_sec: 0, tv_usec: 20_000) }
    /// The reader thread's frames of one receive and the waiters they finish (reused: no arrays per receive).
    var frames: [ClientFrame] = []
    var finished: [(SMRWaiter, SMRRawReply)] = []

    private init(options: Options) {
        self.options = options
        replica = options.preferred % max(1, options.replicas.count)
        slots = options.windowMax
    }

    /// Connects (to the first replica that answers) and opens a session.
    /// - Throws: ``SMRClientError/unavailable(_:)`` when no replica answers within the timeout.
    public static func connect(_ options: Options) async throws(SMRClientError) -> SMRClient {
        guard !options.replicas.isEmpty, options.windowMax >= 1, options.timeoutMillis >= 1 else {
            throw .unavailable("no replicas, or windowMax / timeoutMillis < 1")
        }
        let client = SMRClient(options: options)
        do {
            let thread = try Thread { client.runReader() }
            client.monitor.withLock { client.reader = thread }
        } catch {
            throw .unavailable("\(error)")
        }
        do {
            _ = try await client.ensureSession()
        } catch {
            client.close()
            throw error
        }
        return client
    }

    deinit { close() }

    /// Closes the session (best effort: the replicas remove it from the session table in the total order, instead
    /// of keeping it until it expires) and the connection; calls in flight fail with ``SMRClientError/closed``.
    /// Call it when done: the client's reader thread keeps the client alive until then.
    public func close() {
        sendMonitor.withLock {
            let (target, frame): (Int32, [UInt8]?) = monitor.withLock {
                guard !closed, fd >= 0, let session, inflight.isEmpty else { return (-1, nil) }
                defer { nextRequest += 1 }
                return (fd, ClientFrame.closeSession(request: nextRequest, session: session).encoded())
            }
            if let frame, target >= 0 { _ = Socket.sendAll(target, frame) }
        }
        let (thread, failed, waiters, slotWaiting): (Thread?, [Inflight], [CheckedContinuation<Result<UInt64, SMRClientError>, Never>], [CheckedContinuation<Bool, Never>]) = monitor.withLock {
            guard !closed else { return (nil, [], [], []) }
            closed = true
            if fd >= 0 { shutdown(fd, Int32(SHUT_RDWR)) }
            defer {
                inflight = [:]
                commandNumbers = []
                sessionWaiters = []
                slotWaiters = []
                reader = nil
            }
            return (reader, Array(inflight.values), sessionWaiters, slotWaiters)
        }
        for request in failed { request.waiter.finish(.failure(.closed)) }
        for waiter in waiters { waiter.resume(returning: .failure(.closed)) }
        for waiter in slotWaiting { waiter.resume(returning: false) }
        thread?.join()
        monitor.withLock {
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }
    }

    public var statistics: Statistics { monitor.withLock { stats } }
    /// The session id (the log index that opened it).
    public var sessionID: UInt64? { monitor.withLock { session } }
    /// The highest log index this client has seen (its writes and reads).
    public var index: UInt64 { monitor.withLock { seenIndex } }

    // MARK: Calls

    /// Submits a command; returns its output once applied (exactly once per call that returns).
    public func submit(_ command: Command) async throws(SMRClientError) -> Output {
        try await submitCommitted(command).output
    }

    /// Submits a command; returns its output and log index.
    public func submitCommitted(_ command: Command) async throws(SMRClientError) -> Committed<Output> {
        let bytes = Self.requestBytes(command)
        guard await acquireSlot() else { throw .closed }
        defer { releaseSlot() }
        _ = try await ensureSession()
        // The number is taken where the request enters `inflight` (one lock): a request numbered and not yet in
        // flight would otherwise fall below the `firstUnacknowledged` another request carries, and not be applied.
        let reply = try await call(.command(sequence: 0, bytes: bytes))
        return try commandOutcome(.success(reply)).get()
    }

    /// A command's reply as the caller sees it: its output, or why not (an expired session is forgotten here).
    func commandOutcome(_ reply: Result<SMRRawReply, SMRClientError>) -> Result<Committed<Output>, SMRClientError> {
        let raw: SMRRawReply
        switch reply {
        case let .failure(error): return .failure(error)
        case let .success(value): raw = value
        }
        switch raw.status {
        case .ok: break
        case .unknownSession:
            monitor.withLock { session = nil }
            return .failure(.sessionExpired)
        default: return .failure(.rejected(raw.status))
        }
        do {
            return .success(Committed(output: try Output.decode(raw.payload[...]), index: raw.index))
        } catch {
            return .failure(.protocolError("\(error)"))
        }
    }

    /// A read's reply as the caller sees it.
    static func readOutcome(_ reply: Result<SMRRawReply, SMRClientError>) -> Result<Output, SMRClientError> {
        switch reply {
        case let .failure(error): return .failure(error)
        case let .success(reply):
            guard reply.status == .ok else { return .failure(.rejected(reply.status)) }
            do {
                return .success(try Output.decode(reply.payload[...]))
            } catch {
                return .failure(.protocolError("\(error)"))
            }
        }
    }

    // MARK: Calls without waiting

    /// Submits a command without waiting for it: `completion` is called exactly once, with the output and log index
    /// or the error (the outcomes of ``submitCommitted(_:)``, exactly once the same way). It runs on the client's
    /// reader thread with the other replies of the same receive: keep it short and never block in it. It may call
    /// this method again (a closed loop): the requests the completions of one batch of replies make leave together
    /// in one `send`, and no task is resumed per request (what a loaded client spent most of its CPU on).
    /// - Throws: ``SMRClientError/windowFull`` when ``Options/windowMax`` requests are in flight (callers waiting in
    ///   the async calls get a freed slot first), ``SMRClientError/closed``; `completion` is then never called.
    public func submit(_ command: Command,
                       completion: @escaping @Sendable (Result<Committed<Output>, SMRClientError>) -> Void)
        throws(SMRClientError) {
        let hasSession = try takeSlotNow()
        let bytes = Self.requestBytes(command)
        guard hasSession else {
            // No session (expired, or being opened): the waiting path opens one. Rare, so a task is fine here.
            Task { [self] in
                let reply: Result<SMRRawReply, SMRClientError>
                do throws(SMRClientError) {
                    _ = try await ensureSession()
                    reply = .success(try await call(.command(sequence: 0, bytes: bytes)))
                } catch {
                    reply = .failure(error)
                }
                let outcome = commandOutcome(reply)
                releaseSlot()
                completion(outcome)
            }
            return
        }
        enqueue(.command(sequence: 0, bytes: bytes), waiter: .completion { [self] reply in
            let outcome = commandOutcome(reply)
            // The slot is free before the completion runs, so that it can submit the next request.
            releaseSlot()
            completion(outcome)
        })
    }

    /// Reads without waiting (``read(_:consistency:)``'s outcomes); `completion` as in ``submit(_:completion:)``.
    /// - Throws: ``SMRClientError/windowFull``, ``SMRClientError/closed``; `completion` is then never called.
    public func read(_ query: Query, consistency: ReadConsistency = .linearizable,
                     completion: @escaping @Sendable (Result<Output, SMRClientError>) -> Void) throws(SMRClientError) {
        try takeSlotNow()
        enqueue(.read(consistency: consistency, bytes: Self.requestBytes(query)), waiter: .completion { [self] reply in
            let outcome = Self.readOutcome(reply)
            releaseSlot()
            completion(outcome)
        })
    }

    /// A command's or query's encoding, kept for resending: one allocation for the usual small request (the
    /// codec's default start of 64 bytes grows, and copies, for a command carrying a 100-byte value).
    static func requestBytes(_ value: some SMRCodable) -> [UInt8] {
        var writer = ByteWriter(capacity: 256)
        value.encode(into: &writer)
        return writer.bytes
    }

    /// Takes a window slot now, or throws why not; returns whether a session is open (read under the same lock).
    @discardableResult
    func takeSlotNow() throws(SMRClientError) -> Bool {
        let outcome: Result<Bool, SMRClientError> = monitor.withLock {
            if closed { return .failure(.closed) }
            guard slots > 0 else { return .failure(.windowFull) }
            slots -= 1
            return .success(session != nil)
        }
        return try outcome.get()
    }

    /// Reads with the given consistency (linearizable by default).
    public func read(_ query: Query, consistency: ReadConsistency = .linearizable) async throws(SMRClientError) -> Output {
        let bytes = Self.requestBytes(query)
        guard await acquireSlot() else { throw .closed }
        defer { releaseSlot() }
        let reply = try await call(.read(consistency: consistency, bytes: bytes))
        return try Self.readOutcome(.success(reply)).get()
    }

    /// The connected replica's counters (applied index, commands applied, duplicates, barriers, reads by kind, ring
    /// batches broadcast, ring messages and bytes delivered, malformed client frames, sessions open), in that order.
    public func replicaStatistics() async throws(SMRClientError) -> [UInt64] {
        guard await acquireSlot() else { throw .closed }
        defer { releaseSlot() }
        let reply = try await call(.statistics)
        var reader = ByteReader(reply.payload)
        var values: [UInt64] = []
        while reader.remaining >= 8, let value = try? reader.uint64() { values.append(value) }
        return values
    }

    /// The connected replica's ``Replica/stateDigest()``: its applied index and the FNV-1a 64 of its canonical
    /// snapshot (replicas that applied the same log agree). Streams the state through the hash at the replica.
    public func replicaDigest() async throws(SMRClientError) -> (index: UInt64, digest: UInt64) {
        guard await acquireSlot() else { throw .closed }
        defer { releaseSlot() }
        let reply = try await call(.digest)
        guard reply.status == .ok else { throw .rejected(reply.status) }
        var reader = ByteReader(reply.payload)
        do {
            return (try reader.uint64(), try reader.uint64())
        } catch {
            throw .protocolError("\(error)")
        }
    }

    func ensureSession() async throws(SMRClientError) -> UInt64 {
        let step: SessionStep = monitor.withLock {
            if let session { return .have(session) }
            if opening { return .wait }
            opening = true
            return .open
        }
        switch step {
        case let .have(session):
            return session
        case .wait:
            let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<UInt64, SMRClientError>, Never>) in
                let immediate: Result<UInt64, SMRClientError>? = monitor.withLock {
                    if closed { return .failure(.closed) }
                    if let session { return .success(session) }
                    sessionWaiters.append(continuation)
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
            return try result.get()
        case .open:
            let result: Result<UInt64, SMRClientError>
            do {
                let reply = try await call(.open)
                var reader = ByteReader(reply.payload)
                if reply.status == .ok, let id = try? reader.uint64() {
                    result = .success(id)
                } else {
                    result = .failure(.rejected(reply.status))
                }
            } catch {
                result = .failure(error)
            }
            let waiters = monitor.withLock {
                opening = false
                if case let .success(id) = result {
                    session = id
                    stats.sessionsOpened += 1
                    // A new session numbers from 1 again.
                    nextSequence = 1
                }
                defer { sessionWaiters = [] }
                return sessionWaiters
            }
            for waiter in waiters { waiter.resume(returning: result) }
            return try result.get()
        }
    }
}
