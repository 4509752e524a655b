import Dispatch
import Logging
import RingCast

/// A request waiting for its command (or session opening) to be delivered, at the replica that broadcast it.
struct PendingReply {
    let connection: Connection
    let request: UInt64
}

/// A read waiting for a barrier or for the applied index to reach `minIndex`.
struct PendingRead {
    let connection: Connection
    let request: UInt64
    let minIndex: UInt64
    let query: [UInt8]
}

struct SessionSequence: Hashable {
    let session: UInt64
    let sequence: UInt64
}

/// The replica's mutable state. `lock` guards the apply state (machine, sessions, indexes, pending replies);
/// `reads` guards the barrier bookkeeping; `ingress` the queue to the broadcaster. Order: lock → reads, and the
/// ingress is never pushed to while holding either (a full ingress blocks, and the broadcaster takes `reads`).
final class ReplicaCore<Machine: StateMachine>: @unchecked Sendable {
    let me: UInt32
    let options: Replica<Machine>.Options
    let logger: Logger
    let ringBatchBytesMax: Int
    nonisolated(unsafe) var group: Group?

    // MARK: Apply state (under `lock`)
    let lock = Monitor()
    var machine: Machine
    var sessions: SessionTable
    var appliedIndex: UInt64 = 0
    var orderedMillis: UInt64 = 0
    /// False on a joiner until the group's state was restored: reads are refused until then.
    var hasState: Bool
    var pendingCommands: [SessionSequence: PendingReply] = [:]
    var pendingOpens: [UInt64: PendingReply] = [:]
    var nextOpenTag: UInt64 = 1
    var waitingSequential: [PendingRead] = []
    var statistics = Replica<Machine>.Statistics()
    // Streamed state transfer (SnapshotTransfer.swift), under `lock`.
    /// Provider: transfers announced at a view boundary and not yet pulled (id → deadline, CLOCK_MONOTONIC ns).
    /// While one is pending or streaming, the state stays at the cut: deliveries go to `suffix` instead of apply.
    var transfersPending: [UInt64: PendingTransfer] = [:]
    var nextTransfer: UInt64 = 1
    /// Provider: snapshot streams in progress (they read the state without `lock`, so nothing may modify it).
    var streamsActive = 0
    /// Joiner: the snapshot is being pulled and restored (into a separate value); deliveries go to `suffix`.
    var restoring = false
    /// Deliveries waiting while the state is held (SuffixStore.swift); applied in order when the hold ends.
    var suffix: SuffixStore
    /// A thread is applying `suffix` (only one at a time, so the order holds).
    var draining = false
    /// Set by ``Replica/shutdown()``: a delivery thread waiting for room in `suffix` gives up.
    var shuttingDown = false
    /// Joiner: the transfer failed; this replica must not apply (its state is not the group's) nor serve.
    var failed = false
    /// The group excluded this member (Exclusion.swift): it applies nothing more, so it must not answer clients.
    var excluded = false
    /// Provider, for machines whose copy is a snapshot (``StateMachine/copyIsSnapshot``): the state at each announced
    /// transfer's cut, streamed while apply goes on; dropped when the transfer ends.
    var frozenCuts: [UInt64: FrozenCut] = [:]
    /// Provider: the learners it feeds (LearnerFeed.swift), by id.
    var learners: [UInt64: LearnerFeed] = [:]
    var nextLearner: UInt64 = 1
    /// Joiner in a learner's second phase (Learner.swift): the group's transfer header goes to the learner thread,
    /// which sets `learnerCut` aside for it.
    var learning = false
    var learnerCut: TransferHeader?
    /// Joiner: the socket of the snapshot pull in progress (-1: none; under `pacing`), shut down by ``stopTransfers()``.
    var pullSocket: Int32 = -1
    /// The transfer threads (a provider's release thread, a joiner's pull thread): handles by id, the ids that
    /// ended (joined at the next start or at shutdown), and how many run.
    var transferThreads: [Int: Thread] = [:]
    var transferThreadsEnded: [Int] = []
    var transferThreadsRunning = 0
    var nextTransferThread = 0
    /// Wakes a paced snapshot stream early at shutdown (``stopTransfers()``); `transfersStopping` under it.
    let pacing = Monitor()
    nonisolated(unsafe) var transfersStopping = false
    let advertisedHost: String
    /// The client plane's handshake on a connection this replica dials (a snapshot pull); nil on open links. Set
    /// once by ``Replica`` before the group starts.
    var dialProvider: ((Int32) throws(RingCastError) -> Void)?
    let cpu = CPUCounters()
    /// True while ``apply(_:)`` runs (under `lock`): replies are queued without waking the connections' writers
    /// and written once the delivered batch is applied (``Connection/flushDeferred()``).
    private var inDelivery = false
    /// The connections given replies during this ``apply(_:)`` (each once).
    private var touchedConnections: [Connection] = []
    private var batch = CommandBatch<Machine.Command>()
    private var batchKeys: [(key: SessionSequence, mine: Bool)] = []
    private var outputs: [Machine.Output] = []
    /// The entries of the ring batch being applied (``applyRingBatch(_:decodeStarted:)``; reused, under `lock`).
    private var ringEntries: [RingEntrySlice] = []
    /// A command's cached reply is encoded here first, then copied into an array of its exact size (one
    /// allocation per reply, none for growing).
    private var replyScratch = ByteWriter(capacity: 256)
    /// The delivery thread's 1-in-N timing (``CPUCounters``): which group of deliveries is timed.
    private var deliverySampler = CPUCounters.Sampler()
    /// The same 1-in-N timing for groups of ring batches applied off the delivery thread (under `lock`): a learner's
    /// feed, a state transfer's suffix (``applyGroupOffThread(_:)``).
    private var offThreadSampler = CPUCounters.Sampler()
    /// The weight the stages of the batch being applied are charged with (under `lock`): 0 while ``apply(_:)`` or
    /// ``applyGroupOffThread(_:)`` applies a group that is not timed, ``CPUCounters/sampleEvery`` while it applies
    /// one that is, 1 otherwise.
    private var cpuWeight: UInt64 = 1

    // MARK: Barriers (under `reads`)
    let reads = Monitor()
    var readsForNextBarrier: [PendingRead] = []
    var barrierQueued = false
    var nextBarrier: UInt64 = 1
    var barriersInFlight: [UInt64: [PendingRead]] = [:]
    var readsWaiting = 0

    // MARK: Ingress (under `ingressMonitor`)
    let ingressMonitor = Monitor()
    var ingress: [RingEntry] = []
    var ingressHead = 0
    var ingressBytes = 0
    var stopped = false
    /// The broadcaster waiting for entries (it runs as one task: a ring message costs no thread hop of its own).
    var consumer: CheckedContinuation<Void, Never>?
    var producersWaiting = 0
    /// Signalled when the broadcaster's task ends (``joinBroadcaster()`` waits for it).
    let broadcasterDone = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var broadcasterStarted = false

    init(machine: consuming Machine, me: UInt32, options: Replica<Machine>.Options, ringBatchBytesMax: Int,
         hasState: Bool, advertisedHost: String) {
        self.advertisedHost = advertisedHost
        self.machine = machine
        self.me = me
        self.options = options
        logger = options.logger
        self.ringBatchBytesMax = ringBatchBytesMax
        self.hasState = hasState
        sessions = SessionTable(limits: options.sessions)
        suffix = SuffixStore(bytesMax: options.suffixBytesMax)
    }

    // MARK: Client requests (connection reader threads)

    /// The frames of one receive from `connection` (its reader thread), in order. The commands among them are
    /// registered under one lock and queued for the broadcaster under one lock (per receive, not per request:
    /// the reader otherwise waits for the apply lock once per command while the delivery thread holds it).
    func handle(_ frames: [ClientFrame], from connection: Connection) {
        if frames.count == 1 || lock.withLock({ failed || excluded }) {
            for frame in frames { handle(frame, from: connection) }
            return
        }
        var requests: [UInt64] = []
        var entries: [RingEntry] = []
        for frame in frames {
            guard case let .command(request, session, sequence, firstUnacknowledged, command) = frame else {
                submitCommands(requests: &requests, entries: &entries, connection: connection)
                if case .snapshotRequest = frame { handle(frame, from: connection) } else { dispatch(frame, from: connection) }
                continue
            }
            guard command.count + 64 <= ringBatchBytesMax else {
                submitCommands(requests: &requests, entries: &entries, connection: connection)
                connection.fail(code: ClientErrorCode.commandTooLarge.rawValue, message: "command of \(command.count) bytes exceeds the ring's batchBytesMax")
                return countMalformedFrame()
            }
            requests.append(request)
            entries.append(.command(session: session, sequence: sequence, firstUnacknowledged: firstUnacknowledged,
                                    command: command))
        }
        submitCommands(requests: &requests, entries: &entries, connection: connection)
    }

    /// Registers commands awaiting their replies and queues them for the broadcaster; once the replica stops, those
    /// not queued are answered `notRunning`.
    private func submitCommands(requests: inout [UInt64], entries: inout [RingEntry], connection: Connection) {
        guard !entries.isEmpty else { return }
        defer {
            requests.removeAll(keepingCapacity: true)
            entries.removeAll(keepingCapacity: true)
        }
        lock.withLock {
            for (request, entry) in zip(requests, entries) {
                guard case let .command(session, sequence, _, _) = entry else { continue }
                pendingCommands[SessionSequence(session: session, sequence: sequence)] =
                    PendingReply(connection: connection, request: request)
            }
        }
        let queued = push(entries)
        guard queued < entries.count else { return }
        lock.withLock {
            for entry in entries[queued...] {
                guard case let .command(session, sequence, _, _) = entry else { continue }
                pendingCommands[SessionSequence(session: session, sequence: sequence)] = nil
            }
        }
        for request in requests[queued...] {
            connection.send(.reply(request: request, status: .notRunning, index: 0, payload: []))
        }
    }

    func handle(_ frame: ClientFrame, from connection: Connection) {
        if let refusal = lock.withLock({ refusal(of: frame) }) {
            return connection.fail(code: refusal.code, message: refusal.message)
        }
        dispatch(frame, from: connection)
    }

    /// One frame, once the caller checked that this replica serves.
    private func dispatch(_ frame: ClientFrame, from connection: Connection) {
        switch frame {
        case .hello:
            let index = lock.withLock { appliedIndex }
            connection.send(.welcome(replica: me, windowMax: UInt32(options.sessions.windowMax), appliedIndex: index))
        case let .openSession(request):
            let tag = lock.withLock {
                defer { nextOpenTag += 1 }
                pendingOpens[nextOpenTag] = PendingReply(connection: connection, request: request)
                return nextOpenTag
            }
            submit(.openSession(tag: tag), connection: connection, request: request)
        case let .command(request, session, sequence, firstUnacknowledged, command):
            guard command.count + 64 <= ringBatchBytesMax else {
                connection.fail(code: ClientErrorCode.commandTooLarge.rawValue, message: "command of \(command.count) bytes exceeds the ring's batchBytesMax")
                return countMalformedFrame()
            }
            lock.withLock {
                pendingCommands[SessionSequence(session: session, sequence: sequence)] =
                    PendingReply(connection: connection, request: request)
            }
            submit(.command(session: session, sequence: sequence, firstUnacknowledged: firstUnacknowledged,
                            command: command), connection: connection, request: request)
        case let .read(request, consistency, minIndex, query):
            read(PendingRead(connection: connection, request: request, minIndex: minIndex, query: query), consistency)
        case let .statistics(request):
            let statistics = statisticsSnapshot()
            var writer = ByteWriter()
            let ring = group?.statistics
            for value in [statistics.appliedIndex, statistics.commandsApplied, statistics.duplicates,
                          statistics.barriersDelivered, statistics.readsLinearizable, statistics.readsSequential,
                          statistics.readsStale, statistics.ringBatchesBroadcast, ring?.deliveredMessages ?? 0,
                          ring?.deliveredBytes ?? 0, statistics.clientFramesMalformed, UInt64(statistics.sessionsOpen),
                          cpu.ingestNanos.load(ordering: .relaxed), cpu.broadcastNanos.load(ordering: .relaxed),
                          cpu.decodeNanos.load(ordering: .relaxed), cpu.applyNanos.load(ordering: .relaxed),
                          cpu.replyNanos.load(ordering: .relaxed), cpu.deliveryNanos.load(ordering: .relaxed),
                          cpu.writerNanos.load(ordering: .relaxed), processCPUNanos()] {
                writer.uint64(value)
            }
            for value in transferCounters() { writer.uint64(value) }
            connection.send(.reply(request: request, status: .ok, index: statistics.appliedIndex, payload: writer.bytes))
        case let .closeSession(request, session):
            if submit(.closeSession(session: session), connection: connection, request: request) {
                connection.send(.reply(request: request, status: .ok, index: 0, payload: []))
            }
        case let .snapshotRequest(transfer):
            serveSnapshot(transfer, to: connection)
        case .learnRequest:
            serveLearner(to: connection, feedApart: false)
        case .learnRequestFeedApart:
            serveLearner(to: connection, feedApart: true)
        case let .learnFeed(learner):
            serveLearnerFeed(learner, to: connection)
        case let .snapshotDecline(transfer):
            declineTransfer(transfer)
        case let .digest(request):
            var writer = ByteWriter()
            if let (index, digest) = try? digest() {
                writer.uint64(index)
                writer.uint64(digest)
                connection.send(.reply(request: request, status: .ok, index: index, payload: writer.bytes))
            } else {
                connection.send(.reply(request: request, status: .notRunning, index: 0, payload: []))
            }
        case .welcome, .reply, .error, .snapshotChunk, .snapshotEnd, .learnerEntry, .learnerAdmitted:
            connection.fail(code: ClientErrorCode.malformedFrame.rawValue, message: "a replica-to-client frame was sent to the replica")
            countMalformedFrame()
        }
    }

    private func read(_ read: PendingRead, _ consistency: ReadConsistency) {
        let consistency = options.plantStaleReadBug && consistency == .linearizable ? .stale : consistency
        switch consistency {
        case .stale:
            lock.withLock {
                guard hasState else { return reply(read, status: .notRunning, output: []) }
                statistics.readsStale += 1
                answer(read)
            }
        case .sequential:
            lock.withLock {
                guard hasState else { return reply(read, status: .notRunning, output: []) }
                statistics.readsSequential += 1
                if appliedIndex >= read.minIndex { return answer(read) }
                guard waitingSequential.count < options.readsWaitingMax else {
                    statistics.busyReplies += 1
                    return reply(read, status: .busy, output: [])
                }
                waitingSequential.append(read)
            }
        case .linearizable:
            let queueBarrier: Bool? = reads.withLock {
                guard readsWaiting < options.readsWaitingMax else { return nil }
                readsWaiting += 1
                readsForNextBarrier.append(read)
                guard !barrierQueued else { return false }
                barrierQueued = true
                return true
            }
            switch queueBarrier {
            case nil:
                lock.withLock {
                    statistics.busyReplies += 1
                    reply(read, status: .busy, output: [])
                }
            case true?:
                // The number is assigned when the broadcaster packs it (after every read queued so far).
                if !push(.barrier(number: 0)) { refuseReadsWithoutBarrier() }
            case false?:
                break
            }
        }
    }

    /// Queues an entry for the broadcaster; answers `notRunning` (and returns false) when the replica is stopping.
    @discardableResult
    private func submit(_ entry: RingEntry, connection: Connection, request: UInt64) -> Bool {
        guard push(entry) else {
            lock.withLock {
                if case let .command(session, sequence, _, _) = entry {
                    pendingCommands[SessionSequence(session: session, sequence: sequence)] = nil
                }
            }
            connection.send(.reply(request: request, status: .notRunning, index: 0, payload: []))
            return false
        }
        return true
    }

    // MARK: Apply (the group's delivery thread)

    func apply(_ deliveries: borrowing Deliveries) {
        // Timed one group in CPUCounters.sampleEvery (the delivery thread only calls this: no lock needed).
        let weight = deliverySampler.next()
        let started = weight > 0 ? threadCPUNanos() : 0
        let touched: [Connection] = lock.withLock {
            guard !failed else { return [] }
            guard hasState || restoring else { return deliveredWithoutState() }
            // While a state transfer holds the state (or its suffix is not applied yet), deliveries are queued in
            // order instead of applied: the ring keeps delivering (SnapshotTransfer.swift, SuffixStore.swift).
            if stateHeld || !suffix.isEmpty {
                deliveries.forEach { delivery in enqueueSuffix(Array(delivery.payload)) }
                applyQueuedIfReleased()
                return []
            }
            inDelivery = true
            cpuWeight = weight
            defer {
                inDelivery = false
                cpuWeight = 1
                touchedConnections.removeAll(keepingCapacity: true)
            }
            deliveries.forEach { delivery in
                let decodeStarted = weight > 0 ? threadCPUNanos() : 0
                let bytes = Array(delivery.payload)
                applyRingBatch(bytes, decodeStarted: decodeStarted)
            }
            endOfDeliveries()
            return touchedConnections
        }
        // The replies of the whole batch, one write per connection, outside the lock (readers need it).
        if !touched.isEmpty {
            let replyStarted = weight > 0 ? threadCPUNanos() : 0
            for connection in touched { connection.flushDeferred() }
            if weight > 0 { CPUCounters.charge(cpu.replyNanos, since: replyStarted, weight: weight) }
        }
        if weight > 0 { CPUCounters.charge(cpu.deliveryNanos, since: started, weight: weight) }
    }

    /// Sends a frame to a client: during ``apply(_:)`` deferred to the end of the batch, otherwise at once.
    private func send(_ frame: ClientFrame, to connection: Connection) {
        if inDelivery {
            if connection.send(frame, wake: false) { touchedConnections.append(connection) }
        } else {
            connection.send(frame)
        }
    }

    /// Ring batches applied per `lock` hold off the delivery thread: clients and the delivery thread (which queues
    /// behind a suffix) get the lock in between.
    static var offThreadGroupMax: Int { 64 }

    /// Applies ring batches that reach this replica off the delivery thread — a learner's feed, a state transfer's
    /// suffix — in order as one group of deliveries (under `lock`, the state not held): `next` gives the next batch,
    /// nil at the end. Returns how many it applied.
    ///
    /// Timed one group in ``CPUCounters/sampleEvery``, like the delivery thread's groups. A learner's backlog is
    /// hundreds of thousands of batches, and timing every one (three thread-clock reads, each a system call) took
    /// over a third of the learner's CPU for applying it (perf, join-bench at 512 MiB).
    @discardableResult
    func applyGroupOffThread(_ next: () -> [UInt8]?) -> Int {
        let weight = offThreadSampler.next()
        let started = weight > 0 ? threadCPUNanos() : 0
        cpuWeight = weight
        defer { cpuWeight = 1 }
        var count = 0
        while let bytes = next() {
            applyRingBatch(bytes, decodeStarted: weight > 0 ? threadCPUNanos() : 0)
            count += 1
        }
        endOfDeliveries()
        if weight > 0 { CPUCounters.charge(cpu.deliveryNanos, since: started, weight: weight) }
        return count
    }

    /// Applies one delivered ring batch (under `lock`, the state not held).
    func applyRingBatch(_ bytes: [UInt8], decodeStarted: UInt64) {
        // The learners' feed (LearnerFeed.swift): every batch applied or skipped, with the index after it.
        defer { if !learners.isEmpty { feedLearners(bytes) } }
        let decoded = try? RingBatch.decode(bytes, into: &ringEntries)
        if cpuWeight > 0 { CPUCounters.charge(cpu.decodeNanos, since: decodeStarted, weight: cpuWeight) }
        guard let ringBatch = decoded else {
            // Only replicas broadcast; a batch that does not decode is skipped by every replica alike.
            statistics.ringBatchesMalformed += 1
            return
        }
        orderedMillis = max(orderedMillis, ringBatch.stampMillis)
        // Session expiry at ring-batch positions of the log, never where this replica's delivery batches end (they
        // differ between replicas, and a suffix is applied in other groupings): otherwise the session tables —
        // their next scan time, which sessions expire before which command — would differ between replicas.
        if sessions.scanDue(nowMillis: orderedMillis) {
            flush()
            sessions.expire(nowMillis: orderedMillis)
        }
        let mine = ringBatch.replica == me
        // Taken out while applied (applyEntry never decodes another batch), then put back for its capacity; the
        // slices into `bytes` are gone once it is emptied.
        var entries = ringEntries
        ringEntries = []
        defer {
            entries.removeAll(keepingCapacity: true)
            ringEntries = entries
        }
        for entry in entries { applyEntry(entry, mine: mine) }
    }

    /// After a group of deliveries: applies the batch collected, serves the sequential reads.
    func endOfDeliveries() {
        flush()
        statistics.sessionsExpired = sessions.expired
        statistics.sessionsEvicted = sessions.evicted
        statistics.sessionsOpen = sessions.count
        serveSequentialReads()
    }

    private func applyEntry(_ entry: RingEntrySlice, mine: Bool) {
        appliedIndex += 1
        switch entry {
        case let .command(session, sequence, firstUnacknowledged, command):
            let key = SessionSequence(session: session, sequence: sequence)
            var admission = sessions.admit(session: session, sequence: sequence,
                                           firstUnacknowledged: firstUnacknowledged, nowMillis: orderedMillis)
            if admission == .duplicateInFlight {
                flush()
                admission = sessions.admit(session: session, sequence: sequence,
                                           firstUnacknowledged: firstUnacknowledged, nowMillis: orderedMillis)
            }
            switch admission {
            case .apply:
                // do/catch rather than `try?`: no optional of the generic command (a metadata lookup per command).
                let decoded: Machine.Command
                do {
                    decoded = try Machine.Command.decode(command)
                } catch {
                    let cached = Self.cachedReply(.malformedCommand, index: appliedIndex, output: [])
                    sessions.record(session: session, sequence: sequence, reply: cached)
                    if mine { replyCommand(key, cached) }
                    return
                }
                batch.append(decoded, ApplyContext(index: appliedIndex, orderedTimeMillis: orderedMillis,
                                                   session: session, sequence: sequence))
                batchKeys.append((key, mine))
            case let .duplicate(cached):
                statistics.duplicates += 1
                if mine { replyCommand(key, cached) }
            case .alreadyAcknowledged, .unknownSession, .outsideWindow:
                statistics.notApplied += 1
                let status: ReplyStatus = switch admission {
                case .unknownSession: .unknownSession
                case .outsideWindow: .outsideWindow
                default: .alreadyAcknowledged
                }
                if mine { replyCommand(key, Self.cachedReply(status, index: appliedIndex, output: [])) }
            case .duplicateInFlight:
                preconditionFailure("a command is still in flight after its batch was applied")
            }
        case let .openSession(tag):
            flush()
            sessions.open(id: appliedIndex, nowMillis: orderedMillis)
            if mine, let pending = pendingOpens.removeValue(forKey: tag) {
                var writer = ByteWriter()
                writer.uint64(appliedIndex)
                send(.reply(request: pending.request, status: .ok, index: appliedIndex, payload: writer.bytes),
                     to: pending.connection)
            }
        case let .barrier(number):
            flush()
            statistics.barriersDelivered += 1
            if mine {
                let served = reads.withLock {
                    let served = barriersInFlight.removeValue(forKey: number) ?? []
                    readsWaiting -= served.count
                    return served
                }
                statistics.readsLinearizable += UInt64(served.count)
                for read in served { answer(read) }
            }
        case let .closeSession(session):
            flush()
            sessions.close(id: session)
        }
    }

    /// Applies the commands collected so far as one batch and answers the local clients among them.
    private func flush() {
        guard !batch.isEmpty else { return }
        outputs.removeAll(keepingCapacity: true)
        let weight = cpuWeight
        let applyStarted = weight > 0 ? threadCPUNanos() : 0
        machine.apply(batch, into: &outputs)
        let replyStarted = weight > 0 ? CPUCounters.charge(cpu.applyNanos, since: applyStarted, weight: weight) : 0
        defer { if weight > 0 { CPUCounters.charge(cpu.replyNanos, since: replyStarted, weight: weight) } }
        precondition(outputs.count == batch.count,
                     "apply returned \(outputs.count) outputs for \(batch.count) commands (one each is required)")
        for (position, (key, mine)) in batchKeys.enumerated() {
            replyScratch.removeAll(keepingCapacity: true)
            replyScratch.uint8(ReplyStatus.ok.rawValue)
            replyScratch.uint64(batch.contexts[position].index)
            outputs[position].encode(into: &replyScratch)
            // A copy of its own, of the exact size (the scratch keeps its capacity for the next reply).
            let cached = replyScratch.bytes.withUnsafeBufferPointer { [UInt8]($0) }
            sessions.record(session: key.session, sequence: key.sequence, reply: cached)
            if mine { replyCommand(key, cached) }
        }
        statistics.commandsApplied += UInt64(batch.count)
        batch.removeAll()
        batchKeys.removeAll(keepingCapacity: true)
    }

    /// A cached reply: status, index, encoded output.
    static func cachedReply(_ status: ReplyStatus, index: UInt64, output: [UInt8]) -> [UInt8] {
        var writer = ByteWriter(capacity: 9 + output.count)
        writer.uint8(status.rawValue)
        writer.uint64(index)
        writer.raw(output)
        return writer.bytes
    }

    private func replyCommand(_ key: SessionSequence, _ cached: [UInt8]) {
        guard let pending = pendingCommands.removeValue(forKey: key) else { return }
        sendTail(cached, request: pending.request, to: pending.connection)
    }

    /// Queues a reply frame whose tail (status, index, output) is `tail`, appended as it is: during ``apply(_:)``
    /// deferred to the end of the batch, otherwise at once.
    private func sendTail(_ tail: [UInt8], request: UInt64, to connection: Connection) {
        if inDelivery {
            if connection.sendReply(request: request, cached: tail, wake: false) { touchedConnections.append(connection) }
        } else {
            connection.sendReply(request: request, cached: tail, wake: true)
        }
    }

    /// Answers a read from the current state (under `lock`). The output is encoded straight after the reply's
    /// status and index in the scratch writer and appended to the connection's buffer from there: no array of its
    /// own, no frame value.
    private func answer(_ read: PendingRead) {
        guard let query = try? Machine.Query.decode(read.query[...]) else {
            return reply(read, status: .malformedCommand, output: [])
        }
        replyScratch.removeAll(keepingCapacity: true)
        replyScratch.uint8(ReplyStatus.ok.rawValue)
        replyScratch.uint64(appliedIndex)
        machine.query(query).encode(into: &replyScratch)
        sendTail(replyScratch.bytes, request: read.request, to: read.connection)
    }

    private func reply(_ read: PendingRead, status: ReplyStatus, output: [UInt8]) {
        send(.reply(request: read.request, status: status, index: appliedIndex, payload: output), to: read.connection)
    }

    private func serveSequentialReads() {
        guard !waitingSequential.isEmpty else { return }
        var still: [PendingRead] = []
        for read in waitingSequential {
            if appliedIndex >= read.minIndex { answer(read) } else { still.append(read) }
        }
        waitingSequential = still
    }

    // MARK: Counters

    func countMalformedFrame() { lock.withLock { statistics.clientFramesMalformed += 1 } }
    func countRefused() { lock.withLock { statistics.clientsRefused += 1 } }
    func countHandshake(accepted: Bool) {
        lock.withLock {
            if accepted { statistics.clientHandshakes += 1 } else { statistics.clientHandshakesFailed += 1 }
        }
    }

    func statisticsSnapshot() -> Replica<Machine>.Statistics {
        lock.withLock {
            var result = statistics
            result.appliedIndex = appliedIndex
            return result
        }
    }
}
