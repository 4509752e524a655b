public import RingCastChain
internal import CRingCastCore
import Glibc
import Synchronization

/// What the client does once an instance aborted (spec §2.3, P3): the one seam where switching to the next
/// instance plugs in. It receives the abort history extracted from 2f+1 verified ABORTs (``ChainAbortHistory``)
/// and next(i); it returns true when it took the pending requests over (invoking next(i) with the history as its
/// init history), false when no next instance is available, in which case every pending request fails with
/// ``ChainBFTError/aborted(instance:inAbortHistory:)``.
public protocol ChainInstanceSwitch: Sendable {
    func switchInstance(from instance: UInt64, to next: UInt64, abortHistory: ChainAbortHistory) -> Bool
}

/// A Chain BFT client (spec C1, C4, P1, P3): sends requests to the head with its f+1 client MACs, commits a reply
/// from the tail only when the f+1 reply MACs of Σlast authenticate the same request, reply and history digest
/// (C4), and on a timeout or a failed check PANICs to every replica and collects 2f+1 signed ABORTs.
///
/// Pipelining: at most ``Settings/windowMax`` requests in flight; more ``submit(_:)`` calls wait in a bounded queue
/// (``Settings/waitingMax``; beyond it `submit` fails at once). One engine thread owns the transport and the key
/// ring; `submit` talks to it through that queue.
public final class ChainClient: @unchecked Sendable {
    public struct Settings: Sendable {
        public var f: UInt32
        public var client: UInt32
        public var instance: UInt64 = 1
        public var replicas: [ChainEndpoint]
        public var windowMax = 16
        public var waitingMax = 4096
        /// No committed reply this long after sending: PANIC (spec P1, the client's timer).
        public var timeoutNanos: UInt64 = 2_000_000_000
        /// After a PANIC, how long to wait for 2f+1 ABORTs before failing the pending requests with `.timedOut`.
        public var abortWaitNanos: UInt64 = 3_000_000_000
        /// CHK of the replicas (P3 aligns ABORTs on checkpoint boundaries).
        public var checkpointInterval: UInt32 = 128
        public var limits = ChainWireLimits()
        public var receiveBufferBytes: UInt32 = 4 << 20
        public var switchInstance: (any ChainInstanceSwitch)?

        public init(f: UInt32, client: UInt32, replicas: [ChainEndpoint]) {
            self.f = f; self.client = client; self.replicas = replicas
        }
    }

    public struct Statistics: Sendable, Hashable {
        public var submitted: UInt64 = 0
        public var commits: UInt64 = 0
        /// Replies whose reply MACs did not authenticate (C4 failed): each leads to a PANIC.
        public var replyChecksFailed: UInt64 = 0
        public var panics: UInt64 = 0
        public var abortsValid: UInt64 = 0
        public var abortsInvalid: UInt64 = 0
        public var instancesAborted: UInt64 = 0
        public var macGenerations: UInt64 = 0
        public var macVerifications: UInt64 = 0
        public var malformedFrames: UInt64 = 0
    }

    typealias Completion = CheckedContinuation<Result<[UInt8], ChainBFTError>, Never>

    struct Inbox: ~Copyable {
        var waiting: [(op: [UInt8], completion: Completion)] = []
        var closed = false
    }

    public let settings: Settings
    private let keyRing: UncheckedBox<ChainKeyRing>
    private let inbox = Mutex(Inbox())
    private let shared = Mutex<(statistics: Statistics, connected: Int, error: ChainBFTError?, running: Bool)>(
        (Statistics(), 0, nil, false))
    private let wakeBox = Mutex<(@Sendable () -> Void)?>(nil)
    private var thread: ChainThread?

    public init(settings: Settings, keyRing: ChainKeyRing) throws(ChainBFTError) {
        guard settings.f >= 1, settings.replicas.count == Int(3 * settings.f + 1) else {
            throw .invalidSettings("\(settings.replicas.count) replica endpoints for f = \(settings.f)")
        }
        guard settings.windowMax >= 1, settings.waitingMax >= 1 else { throw .invalidSettings("windowMax and waitingMax ≥ 1") }
        self.settings = settings
        self.keyRing = UncheckedBox(keyRing)
    }

    /// Starts the engine thread and connects to every replica; returns once connected to all of them, or throws
    /// after `connectTimeoutNanos` (the connections keep being retried by then: a crashed replica is allowed).
    public func start(connectTimeoutNanos: UInt64 = 5_000_000_000, requireAll: Bool = true) throws(ChainBFTError) {
        precondition(thread == nil, "a client starts once")
        shared.withLock { $0.running = true }
        thread = try ChainThread { [self] in runEngine() }
        let deadline = monotonicNanos() + connectTimeoutNanos
        let needed = requireAll ? settings.replicas.count : 1
        while true {
            let (connected, error) = shared.withLock { ($0.connected, $0.error) }
            if let error { throw error }
            if connected >= needed { return }
            if monotonicNanos() > deadline { throw .transport("connect to the replicas", -ETIMEDOUT) }
            usleep(1000)
        }
    }

    /// Stops the engine; requests still pending fail with ``ChainBFTError/stopped``.
    public func close() {
        inbox.withLock { $0.closed = true }
        wakeBox.withLock { $0?() }
        thread?.join()
        thread = nil
        let left = inbox.withLock { inbox -> [Completion] in
            defer { inbox.waiting.removeAll() }
            return inbox.waiting.map(\.completion)
        }
        for completion in left { completion.resume(returning: .failure(.stopped)) }
    }

    deinit { close() }

    public var statistics: Statistics { shared.withLock { $0.statistics } }

    /// Submits the operation bytes `o`; returns the reply once it commits (C4).
    /// - Throws: ``ChainBFTError/aborted(instance:inAbortHistory:)`` when the instance aborted and no next instance
    ///   took over; ``ChainBFTError/timedOut`` when neither a reply nor 2f+1 ABORTs came; ``ChainBFTError/stopped``.
    public func submit(_ op: [UInt8]) async throws(ChainBFTError) -> [UInt8] {
        let result = await withCheckedContinuation { (completion: Completion) in
            let refused: ChainBFTError? = inbox.withLock { inbox in
                if inbox.closed { return .stopped }
                if inbox.waiting.count >= settings.waitingMax { return .invalidSettings("more than waitingMax requests waiting") }
                inbox.waiting.append((op, completion))
                return nil
            }
            if let refused { completion.resume(returning: .failure(refused)) } else { wakeBox.withLock { $0?() } }
        }
        return try result.get()
    }

    private func runEngine() {
        do throws(ChainBFTError) {
            let engine = try ChainClientEngine(settings: settings, keyRing: keyRing.value)
            let transport = UncheckedBox(engine.transport)
            wakeBox.withLock { $0 = { transport.value.wake() } }
            while true {
                let (taken, closed) = inbox.withLock { inbox -> ([(op: [UInt8], completion: Completion)], Bool) in
                    let room = max(0, settings.windowMax - engine.inFlight)
                    let take = Array(inbox.waiting.prefix(room))
                    inbox.waiting.removeFirst(take.count)
                    return (take, inbox.closed)
                }
                if closed { break }
                engine.admit(taken)
                try engine.round()
                let (statistics, connected) = (engine.statistics, engine.connected)
                shared.withLock { $0.statistics = statistics; $0.connected = connected }
                // Outcomes are handed over after the statistics, so a caller that saw its reply sees it counted.
                for (completion, result) in engine.takeOutcomes() { completion.resume(returning: result) }
            }
            wakeBox.withLock { $0 = nil }
            engine.failAll(.stopped)
            for (completion, result) in engine.takeOutcomes() { completion.resume(returning: result) }
        } catch {
            shared.withLock { $0.error = error }
            let left = inbox.withLock { inbox -> [Completion] in
                inbox.closed = true
                defer { inbox.waiting.removeAll() }
                return inbox.waiting.map(\.completion)
            }
            for completion in left { completion.resume(returning: .failure(error)) }
        }
    }
}

/// The client's engine thread: transport, key ring, the requests in flight, the PANIC in progress.
final class ChainClientEngine {
    let settings: ChainClient.Settings
    let transport: ChainTransport
    private(set) var auth: ChainClientAuthenticator
    let keyRing: ChainKeyRing

    struct Pending {
        var op: [UInt8]
        var completion: ChainClient.Completion
        var deadline: UInt64
    }
    /// In flight, by timestamp t_c (ascending = the order sent to the head).
    private var pending: [UInt64: Pending] = [:]
    private var conns: [UInt32?]
    private var up: [Bool]
    private var lastTimestamp: UInt64 = 0
    private var instance: UInt64
    /// The PANIC in progress: its timestamp, deadline, and the valid ABORTs by replica.
    private var panicking: (timestamp: UInt64, deadline: UInt64, aborts: [UInt32: ChainAbort])?
    private var dead: ChainBFTError?
    private(set) var statistics = ChainClient.Statistics()
    /// Outcomes decided in this round, resumed by the caller once it published the statistics.
    private var outcomes: [(ChainClient.Completion, Result<[UInt8], ChainBFTError>)] = []

    func takeOutcomes() -> [(ChainClient.Completion, Result<[UInt8], ChainBFTError>)] {
        defer { outcomes.removeAll() }
        return outcomes
    }

    init(settings: ChainClient.Settings, keyRing: ChainKeyRing) throws(ChainBFTError) {
        self.settings = settings
        self.keyRing = keyRing
        instance = settings.instance
        auth = ChainClientAuthenticator(keyRing: keyRing, f: settings.f, client: settings.client, instance: settings.instance)
        var transportSettings = ChainTransport.Settings()
        transportSettings.connectionsMax = UInt32(settings.replicas.count + 2)
        transportSettings.receiveBufferBytes = settings.receiveBufferBytes
        transportSettings.limits = settings.limits
        transport = try ChainTransport(transportSettings)
        conns = Array(repeating: nil, count: settings.replicas.count)
        up = Array(repeating: false, count: settings.replicas.count)
        for (r, endpoint) in settings.replicas.enumerated() {
            conns[r] = try transport.connect(host: endpoint.host, port: endpoint.port)
        }
    }

    var inFlight: Int { pending.count }
    var connected: Int { up.filter { $0 }.count }
    private var f: Int { Int(settings.f) }

    /// Timestamps increase across runs of a client id too (the head ignores t_c ≤ t_1[c], C2 step 2): the wall clock
    /// in nanoseconds, or the last one + 1.
    private func nextTimestamp() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        lastTimestamp = max(lastTimestamp + 1, UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec))
        return lastTimestamp
    }

    /// C1: each admitted request goes to the head with its f+1 client MACs.
    func admit(_ requests: [(op: [UInt8], completion: ChainClient.Completion)]) {
        for (op, completion) in requests {
            if let dead {
                outcomes.append((completion, .failure(dead)))
                continue
            }
            let timestamp = nextTimestamp()
            let macs: [ChainMAC]
            do { macs = try auth.authenticate(timestamp: timestamp, op: op) } catch {
                outcomes.append((completion, .failure(.core("client MACs", -5))))
                continue
            }
            statistics.submitted += 1
            pending[timestamp] = Pending(op: op, completion: completion, deadline: monotonicNanos() + settings.timeoutNanos)
            if let head = conns[0], up[0] {
                _ = transport.send(head, .request(ChainRequest(client: settings.client, timestamp: timestamp, op: op), clientMACs: macs))
            }
            // Not sent (the head is down or its link full): the timer expires and the client panics.
        }
    }

    func round() throws(ChainBFTError) {
        try transport.poll(timeoutNanos: 5_000_000) { event in
            handle(event)
            return .next
        }
        let now = monotonicNanos()
        if let p = panicking {
            if now > p.deadline {
                panicking = nil
                dead = .timedOut
                failAll(.timedOut)
            }
        } else if let oldest = pending.min(by: { $0.key < $1.key }), now > oldest.value.deadline {
            panic(oldest.key)
        }
        let s = keyRing.stats
        statistics.macGenerations = s.macGenerations
        statistics.macVerifications = s.macVerifications
        statistics.malformedFrames = transport.malformedFrames
    }

    func failAll(_ error: ChainBFTError) {
        for (_, p) in pending { outcomes.append((p.completion, .failure(error))) }
        pending.removeAll()
    }

    private func handle(_ event: ChainTransport.Event) {
        switch event {
        case .connected(let conn):
            guard let r = conns.firstIndex(of: conn) else { return }
            up[r] = true
            _ = transport.send(conn, .hello(.client(settings.client), instance: instance))
        case .connectFailed(let conn, _), .closed(let conn, _), .malformed(let conn, _):
            guard let r = conns.firstIndex(of: conn) else { return }
            up[r] = false
            conns[r] = nil
        case .frame(_, .reply(let reply)): receive(reply)
        case .frame(_, .abort(let abort)): receive(abort)
        case .frame(let conn, _):
            // Replicas send clients replies and ABORTs only.
            statistics.malformedFrames += 1
            transport.close(conn)
            if let r = conns.firstIndex(of: conn) { up[r] = false; conns[r] = nil }
        case .accepted, .wake: break
        }
    }

    /// C4: commit only when the f+1 reply MACs of Σlast authenticate this request, reply and history digest.
    private func receive(_ reply: ChainReply) {
        guard panicking == nil, reply.client == settings.client, let p = pending[reply.timestamp] else { return }
        let commits = auth.commits(timestamp: reply.timestamp, op: p.op, sn: reply.sn, reply: reply.reply,
                                   historyDigest: reply.historyDigest, replyMACs: reply.replyMACs)
        guard commits else {
            statistics.replyChecksFailed += 1
            panic(reply.timestamp)
            return
        }
        pending[reply.timestamp] = nil
        statistics.commits += 1
        outcomes.append((p.completion, .success(reply.reply)))
    }

    /// P1: PANIC to every replica for the request `timestamp`.
    private func panic(_ timestamp: UInt64) {
        guard panicking == nil else { return }
        statistics.panics += 1
        panicking = (timestamp, monotonicNanos() + settings.abortWaitNanos, [:])
        for r in 0..<settings.replicas.count {
            guard let conn = conns[r], up[r] else { continue }
            guard let frame = try? auth.panic(timestamp: timestamp, replica: UInt32(r)) else { continue }
            _ = transport.send(conn, .panic(ChainPanicFrame(frame)))
        }
    }

    /// P3: 2f+1 valid ABORTs of distinct replicas for the PANIC in progress end the instance.
    private func receive(_ abort: ChainAbort) {
        guard abort.client == settings.client, abort.instance == instance, abort.nextInstance == instance + 1,
              abort.replica < UInt32(settings.replicas.count), abort.verify(with: keyRing) else {
            statistics.abortsInvalid += 1
            return
        }
        if panicking == nil {
            // D13: a stopped replica answered a request with its ABORT: the instance is over, collect 2f+1.
            guard pending[abort.timestamp] != nil else { return }
            panic(abort.timestamp)
        }
        guard var p = panicking, abort.timestamp == p.timestamp else { return }
        statistics.abortsValid += 1
        p.aborts[abort.replica] = abort
        panicking = p
        guard p.aborts.count >= 2 * f + 1 else { return }
        let history = ChainAbortHistory.extract(Array(p.aborts.values), f: f,
                                                checkpointInterval: UInt64(settings.checkpointInterval))
        statistics.instancesAborted += 1
        panicking = nil
        let aborted = instance
        if let next = settings.switchInstance,
           next.switchInstance(from: aborted, to: aborted + 1, abortHistory: history) {
            // The composer invoked next(i) with the history as its init history; this client's requests go there from
            // now on, the pending ones again (the next instance ignores those its init history already holds).
            instance = aborted + 1
            auth = ChainClientAuthenticator(keyRing: keyRing, f: settings.f, client: settings.client, instance: instance)
            let again = pending.sorted { $0.key < $1.key }.map { (op: $0.value.op, completion: $0.value.completion) }
            pending.removeAll()
            admit(again)
            return
        }
        let ordered = Set(history.entries.filter { $0.client == settings.client }.map(\.timestamp))
        for (timestamp, request) in pending {
            outcomes.append((request.completion, .failure(.aborted(instance: aborted, inAbortHistory: ordered.contains(timestamp)))))
        }
        pending.removeAll()
        dead = .aborted(instance: aborted, inAbortHistory: false)
    }
}
