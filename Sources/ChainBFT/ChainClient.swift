public import RingCastChain
import RingCastBackup
internal import CRingCastCore
import Glibc
import Synchronization

/// What the client does once an instance aborted (spec §2.3, P3): the one seam where switching to the next
/// instance plugs in. It receives the abort history extracted from 2f+1 verified ABORTs (``ChainAbortHistory``)
/// and next(i); it returns true when the client is to invoke next(i) with that history as its init history (it then
/// sends ⟨IH, Proof_IH⟩ to every replica and resubmits there the pending requests IH does not hold), false when no
/// next instance is available, in which case every pending request fails with
/// ``ChainBFTError/aborted(instance:inAbortHistory:)``.
public protocol ChainInstanceSwitch: Sendable {
    func switchInstance(from instance: UInt64, to next: UInt64, abortHistory: ChainAbortHistory) -> Bool
}

/// next(i) = i+1 up to `instancesMax`, in Aliph's order (spec §13.1): odd instances are Chain, even ones Backup, which
/// is what survives a crashed replica (every Chain instance needs all 3f+1 to make progress; ChainClientBackup.swift).
/// The client ends with ``ChainBFTError/instancesExhausted(instance:inAbortHistory:)`` after
/// ``ChainClient/Settings/switchesWithoutCommitMax`` switches in a row with no commit, or at `instancesMax`.
public struct ChainNextInstance: ChainInstanceSwitch {
    public var instancesMax: UInt64
    public init(instancesMax: UInt64 = .max) { self.instancesMax = instancesMax }
    public func switchInstance(from instance: UInt64, to next: UInt64, abortHistory: ChainAbortHistory) -> Bool {
        next <= instancesMax
    }
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
        /// The timer in a Chain instance entered from a Backup, until this client's first commit there (then
        /// ``timeoutNanos`` again, counted from each request's send); at most ``timeoutNanos``.
        ///
        /// Why shorter: Abstract leaves a Backup after its k commits whether or not the fault that ended the Chain
        /// instance before it is over (spec §13.1). Under a lasting fault, such as a crashed replica, every Chain
        /// instance after a Backup aborts again, and each one costs the clients a full timer before Backup's next k
        /// (larger each time) runs. With `ringcast-kv`'s 5 s timer and k = 1, 2, 4, … that was ≈ 3 ops/s for the first
        /// 30 s after a crash. A probe that finds the chain working (one commit) ends at once; a probe too short for
        /// a healthy but slow chain costs one more Backup instance, never a lost or repeated request.
        public var probeTimeoutNanos: UInt64 = 500_000_000
        /// After a PANIC, how long to wait for 2f+1 ABORTs before failing the pending requests with `.timedOut`.
        public var abortWaitNanos: UInt64 = 3_000_000_000
        /// CHK of the replicas (P3 aligns ABORTs on checkpoint boundaries).
        public var checkpointInterval: UInt32 = 128
        public var limits = ChainWireLimits()
        public var receiveBufferBytes: UInt32 = 4 << 20
        public var switchInstance: (any ChainInstanceSwitch)?
        /// Bounded retries: after this many switches in a row with no commit in between, the next abort ends the
        /// pending requests with ``ChainBFTError/instancesExhausted(instance:inAbortHistory:)``. A transient fault is
        /// over after one switch; under a crashed replica a commit comes in each Backup instance, but with several
        /// clients sharing Backup's k one client may see more switches in a row (`ringcast-kv` allows 32).
        public var switchesWithoutCommitMax = 3
        /// Backup: sends of one request to every replica (the first and the retransmissions, one per `timeoutNanos`)
        /// before it fails with ``ChainBFTError/timedOut``.
        public var backupSendsMax = 8

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
        /// PANICs on the probe's timer: in a Chain instance entered from a Backup, before any commit there
        /// (``Settings/probeTimeoutNanos``).
        public var probeTimeouts: UInt64 = 0
        public var abortsValid: UInt64 = 0
        public var abortsInvalid: UInt64 = 0
        public var instancesAborted: UInt64 = 0
        public var macGenerations: UInt64 = 0
        public var macVerifications: UInt64 = 0
        /// SHA-256 computations: D(req) once per request (kept for C1, C4 and resubmissions) and D(reply) per reply checked.
        public var digests: UInt64 = 0
        public var malformedFrames: UInt64 = 0
        /// Switches to a next instance (spec §2.3), requests resubmitted there, pending requests IH held, and commits
        /// from Σlast's direct replies (IH requests, D7).
        public var switches: UInt64 = 0
        public var resubmitted: UInt64 = 0
        public var inInitHistory: UInt64 = 0
        public var initCommits: UInt64 = 0
        /// Later instances this client joined from an init history a replica sent it (it had slept through switches).
        public var instancesJoined: UInt64 = 0
        /// Requests committed in Backup instances (f+1 matching replies), and retransmissions to every replica there.
        public var backupCommits: UInt64 = 0
        public var backupRetransmits: UInt64 = 0
    }

    /// Who learns a request's outcome: an awaiting `submit` (its continuation) or a callback run on the engine thread.
    enum Completion: Sendable {
        case continuation(CheckedContinuation<Result<[UInt8], ChainBFTError>, Never>)
        case callback(@Sendable (Result<[UInt8], ChainBFTError>) -> Void)

        func resume(returning result: Result<[UInt8], ChainBFTError>) {
            switch self {
            case .continuation(let continuation): continuation.resume(returning: result)
            case .callback(let body): body(result)
            }
        }
    }

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
    /// Set by the first submit that wakes the engine (and by the engine itself while it hands out outcomes, when it
    /// is about to take the inbox anyway), cleared by the engine just before it takes the inbox: one wake-up (an
    /// eventfd write and a return from io_uring_enter) per engine round, not one per request.
    private let wakePending = Atomic<Bool>(false)
    /// Wake-ups written (the counter test of ChainClientWakeTests reads it).
    private let wakesWritten = Atomic<UInt64>(0)
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

    /// Wake-ups of the engine thread written by submits so far.
    public var wakeUps: UInt64 { wakesWritten.load(ordering: .relaxed) }

    /// Submits the operation bytes `o`; returns the reply once it commits (C4).
    /// - Throws: ``ChainBFTError/aborted(instance:inAbortHistory:)`` when the instance aborted and no next instance
    ///   took over; ``ChainBFTError/timedOut`` when neither a reply nor 2f+1 ABORTs came; ``ChainBFTError/stopped``.
    public func submit(_ op: [UInt8]) async throws(ChainBFTError) -> [UInt8] {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<[UInt8], ChainBFTError>, Never>) in
            enqueue(op, .continuation(continuation))
        }
        return try result.get()
    }

    /// Submits the operation bytes `o` and calls `completion` with the committed reply or the error (the same outcomes
    /// as ``submit(_:)``), on the client's engine thread, without a Task or a continuation per request: a closed loop
    /// that submits again from `completion` costs no thread switch. `completion` must not block (it holds up the
    /// engine); a request it submits goes out in the engine's next round. A refused request (stopped, or more than
    /// ``Settings/waitingMax`` waiting) completes at once on the caller's thread.
    public func submit(_ op: [UInt8], completion: @escaping @Sendable (Result<[UInt8], ChainBFTError>) -> Void) {
        enqueue(op, .callback(completion))
    }

    private func enqueue(_ op: [UInt8], _ completion: Completion) {
        let refused: ChainBFTError? = inbox.withLock { inbox in
            if inbox.closed { return .stopped }
            if inbox.waiting.count >= settings.waitingMax { return .invalidSettings("more than waitingMax requests waiting") }
            inbox.waiting.append((op, completion))
            return nil
        }
        if let refused {
            completion.resume(returning: .failure(refused))
        } else if !wakePending.exchange(true, ordering: .acquiringAndReleasing) {
            wakesWritten.add(1, ordering: .relaxed)
            wakeBox.withLock { $0?() }
        }
    }

    private func runEngine() {
        do throws(ChainBFTError) {
            let engine = try ChainClientEngine(settings: settings, keyRing: keyRing.value)
            let transport = UncheckedBox(engine.transport)
            wakeBox.withLock { $0 = { transport.value.wake() } }
            while true {
                // Cleared before the inbox is taken: a submit after this point wakes the engine (or finds its
                // request taken here); one before it is in the inbox already.
                wakePending.store(false, ordering: .sequentiallyConsistent)
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
                // Requests submitted meanwhile need no wake-up: the loop takes the inbox next, before it waits again.
                let outcomes = engine.takeOutcomes()
                if !outcomes.isEmpty { wakePending.store(true, ordering: .sequentiallyConsistent) }
                for (completion, result) in outcomes { completion.resume(returning: result) }
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
    var auth: ChainClientAuthenticator
    let keyRing: ChainKeyRing

    struct Pending {
        var op: [UInt8]
        /// D(req), computed once at submission: C1, C4 and every resubmission use it (the payload is hashed once).
        var digest: ChainDigest
        var completion: ChainClient.Completion
        var deadline: UInt64
        /// Backup: times sent to every replica in the current Backup instance, and whether it carries IH there.
        var sends: Int = 0
        var carriesInitHistory = false
    }
    /// Backup (ChainClientBackup.swift): replies by timestamp and replica, abort histories by timestamp, and whether
    /// requests still carry IH (until one commits: then IH is installed). Bounded by the window.
    var backupReplies: [UInt64: [UInt32: PBFT.Reply]] = [:]
    var backupCollectors: [UInt64: Backup.AbortCollector] = [:]
    var backupCarryInitHistory = false
    /// In flight, by timestamp t_c (ascending = the order sent to the head).
    var pending: [UInt64: Pending] = [:]
    /// The authenticator of the instance just left: a tail reply of it that arrives after the switch is still C4's
    /// evidence there (committed in i, so in IH by Abort Order), not a reason to panic in i+1.
    var previousAuth: ChainClientAuthenticator?
    /// Σlast's direct replies (IH requests, D7) by timestamp, then (instance, sn), then replica; only for pending
    /// requests, at most ``initReplySlotsMax`` slots each.
    var initReplies: [UInt64: [InitSlot: [UInt32: ChainInitReply]]] = [:]
    struct InitSlot: Hashable { var instance: UInt64; var sn: UInt64 }
    private static var initReplySlotsMax: Int { 4 }
    var collector: AbstractAbortCollector
    /// The init history this client entered its instance with (nil in its first instance).
    var enteredWith: ChainInitHistory?
    /// Switches since the last commit (bounded by ``ChainClient/Settings/switchesWithoutCommitMax``).
    var switchesWithoutCommit = 0
    /// In a Chain instance entered from a Backup, until this client's first commit there: the timer is
    /// ``ChainClient/Settings/probeTimeoutNanos`` (set in `switchInstance`, cleared in `commit`).
    var probing = false
    /// The client's timer for a request sent now (P1).
    var timerNanos: UInt64 { probing ? min(settings.probeTimeoutNanos, settings.timeoutNanos) : settings.timeoutNanos }
    var conns: [UInt32?]
    var up: [Bool]
    private var lastTimestamp: UInt64 = 0
    var instance: UInt64
    /// The PANIC in progress: its timestamp, deadline, and the valid ABORTs by replica.
    var panicking: (timestamp: UInt64, deadline: UInt64)?
    var dead: ChainBFTError?
    var statistics = ChainClient.Statistics()
    /// Outcomes decided in this round, resumed by the caller once it published the statistics.
    var outcomes: [(ChainClient.Completion, Result<[UInt8], ChainBFTError>)] = []
    /// The request frames of the round being admitted (nil outside ``admit(_:)``).
    var admitted: [ChainFrame]?

    func takeOutcomes() -> [(ChainClient.Completion, Result<[UInt8], ChainBFTError>)] {
        defer { outcomes.removeAll() }
        return outcomes
    }

    init(settings: ChainClient.Settings, keyRing: ChainKeyRing) throws(ChainBFTError) {
        self.settings = settings
        self.keyRing = keyRing
        instance = settings.instance
        auth = ChainClientAuthenticator(keyRing: keyRing, f: settings.f, client: settings.client, instance: settings.instance)
        collector = AbstractAbortCollector(f: settings.f, checkpointInterval: settings.checkpointInterval, instance: settings.instance)
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
    var f: Int { Int(settings.f) }

    /// Timestamps increase across runs of a client id too (the head ignores t_c ≤ t_1[c], C2 step 2): the wall clock
    /// in nanoseconds, or the last one + 1.
    func nextTimestamp() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        lastTimestamp = max(lastTimestamp + 1, UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec))
        return lastTimestamp
    }

    /// C1: each admitted request goes to the head with its f+1 client MACs.
    func admit(_ requests: [(op: [UInt8], completion: ChainClient.Completion)]) {
        // The round's requests go to the head in one send (one submission, one buffer), each its own frame.
        var frames: [ChainFrame] = []
        frames.reserveCapacity(requests.count)
        admitted = frames
        defer {
            if let head = conns[0], up[0], let frames = admitted, !frames.isEmpty { _ = transport.send(head, frames: frames) }
            admitted = nil
        }
        for (op, completion) in requests {
            if let dead {
                outcomes.append((completion, .failure(dead)))
                continue
            }
            let timestamp = nextTimestamp()
            statistics.submitted += 1
            let digest = auth.digest(ChainRequest(client: settings.client, timestamp: timestamp, op: op))
            pending[timestamp] = Pending(op: op, digest: digest, completion: completion,
                                         deadline: monotonicNanos() + timerNanos)
            send(timestamp, op, digest)
        }
    }

    /// C1 for one request of `pending` (a first send, or a resubmission in the next instance with its t_c unchanged:
    /// exactly-once per timestamp). Not sent (the head is down or its link full): the timer expires and the client panics.
    func send(_ timestamp: UInt64, _ op: [UInt8], _ digest: ChainDigest) {
        if Backup.Order.isBackup(instance) { return sendBackup(timestamp) }
        let macs: [ChainMAC]
        do { macs = try auth.authenticate(request: digest) } catch {
            if let p = pending.removeValue(forKey: timestamp) { outcomes.append((p.completion, .failure(.core("client MACs", -5)))) }
            return
        }
        if let head = conns[0], up[0] {
            let frame = ChainFrame.request(ChainRequest(client: settings.client, timestamp: timestamp, op: op), clientMACs: macs)
            if admitted != nil { admitted!.append(frame) } else { _ = transport.send(head, frame) }
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
        } else if Backup.Order.isBackup(instance) {
            backupTimers(now: now) // PBFT's client: retransmit to every replica; no PANIC in Backup
        } else if let oldest = pending.min(by: { $0.key < $1.key }), now > oldest.value.deadline {
            if probing { statistics.probeTimeouts += 1 }
            panic(oldest.key)
        }
        let s = keyRing.stats
        statistics.macGenerations = s.macGenerations
        statistics.macVerifications = s.macVerifications
        statistics.digests = s.digests
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
        case .frame(_, .initReply(let reply)): receive(reply)
        case .frame(_, .initHistory(let ih)): adopt(ih)
        case .frame(_, .backupReply(let instance, let reply)): receive(backupReply: reply, instance: instance)
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
        func commits(_ a: ChainClientAuthenticator) -> Bool {
            a.commits(request: p.digest, sn: reply.sn, reply: reply.reply,
                      historyDigest: reply.historyDigest, replyMACs: reply.replyMACs)
        }
        guard commits(auth) || previousAuth.map(commits) == true else {
            statistics.replyChecksFailed += 1
            panic(reply.timestamp)
            return
        }
        commit(reply.timestamp, reply.reply)
    }

    func commit(_ timestamp: UInt64, _ reply: [UInt8]) {
        guard let p = pending.removeValue(forKey: timestamp) else { return }
        switchesWithoutCommit = 0
        if probing {
            // The chain answers: the requests sent on the probe's timer get the rest of the ordinary one.
            let rest = settings.timeoutNanos - timerNanos
            probing = false
            for other in pending.keys { pending[other]!.deadline += rest }
        }
        initReplies[timestamp] = nil
        statistics.commits += 1
        outcomes.append((p.completion, .success(reply)))
    }

    /// A member of Σlast's direct reply for a request of IH or of the checkpoint base (spec §12, D7): the request
    /// commits when all f+1 members of Σlast of one instance sent the same reply and H at one sn, each ρ valid for
    /// that instance (C4's evidence without the tail). Such evidence commits whatever the client is doing.
    private func receive(_ reply: ChainInitReply) {
        let n = UInt32(settings.replicas.count), sigmaLast = 2 * settings.f
        guard reply.client == settings.client, reply.replica >= sigmaLast, reply.replica < n,
              let p = pending[reply.timestamp] else { return }
        let slot = InitSlot(instance: reply.instance, sn: reply.sn)
        var slots = initReplies[reply.timestamp] ?? [:]
        guard slots[slot] != nil || slots.count < Self.initReplySlotsMax else { return }
        slots[slot, default: [:]][reply.replica] = reply
        initReplies[reply.timestamp] = slots
        guard let received = slots[slot], received.count == f + 1 else { return }
        let members = (sigmaLast..<n).compactMap { received[$0] }
        let agreed = members.allSatisfy { $0.reply == members[0].reply && $0.historyDigest == members[0].historyDigest }
        guard members.count == f + 1, agreed,
              auth.switched(to: reply.instance).commits(request: p.digest, sn: reply.sn,
                                                        reply: members[0].reply, historyDigest: members[0].historyDigest,
                                                        replyMACs: members.map(\.mac)) else {
            statistics.replyChecksFailed += 1
            return
        }
        statistics.initCommits += 1
        if panicking?.timestamp == reply.timestamp {
            panicking = nil
            collector.reset()
        }
        commit(reply.timestamp, members[0].reply)
    }
}
