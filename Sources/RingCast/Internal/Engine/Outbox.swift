internal import CRingCast
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A member's broadcasts between `broadcast()` and their own delivery: the one producer of a ring's engine, for a
/// ``Node`` (one ring, attached at start) and for a ``Group`` (one ring per view, attached and detached by the view
/// change, the outbox outliving them).
///
/// `queue` holds messages accepted and not yet handed to an engine; `inFlight` those handed to the attached
/// engine and not yet delivered back (the engine sends from, and delivers own messages as views of,
/// the payload arrays retained here: a reference, not a copy of the bytes). When a view change freezes the ring,
/// the in-flight messages the engine had not stamped yet go back to the front of the queue, in order, for the next
/// view: a queued broadcast is never dropped while this member stays in the group.
///
/// One admission check (``admits``) against one limit: the engine's staging (`rc_engine_staging_bytes`, which
/// follows its byte window), or `queueBytesMax` while no engine is attached. The engine's own check at
/// `rc_engine_broadcast` is the window itself; nothing else re-checks.
final class Outbox: Sendable {
    struct Item {
        let token: UInt64
        let payload: [UInt8]
    }

    private struct Waiter {
        let id: UInt64
        let payload: [UInt8]
        let continuation: CheckedContinuation<Result<UInt64, RingCastError>, Never>
    }

    private struct State {
        var queue = FIFO<Item>()
        var queueBytes = 0
        var inFlight = FIFO<Item>()
        var waiters = FIFO<Waiter>()
        var nextToken: UInt64 = 1
        var nextWaiterID: UInt64 = 1
        var closed: RingCastError?
        var engine: EngineHandle?
        var waits: UInt64 = 0
    }

    let capacity: Int
    let payloadBytesMax: Int
    /// Payload bytes the queue admits in front of the engine (`Node.Limits.stagingBytes`; one message is always
    /// admitted). The engine checks its byte window where a message is handed over (`rc_engine_broadcast`), so a
    /// full window stops the pump and, once these bytes are queued, `broadcast()` waits: backpressure reaches the
    /// caller, and what waits here is a few milliseconds of the ring's rate (8 KiB is 2.6 ms at a 25 Mbit/s share),
    /// instead of `capacity` messages that add latency and no throughput.
    let queueBytesMax: Int
    private let state = Mutex(State())
    let wake: WakePipe

    init(capacity: Int, payloadBytesMax: Int, queueBytesMax: Int) throws(RingCastError) {
        precondition(capacity > 0 && queueBytesMax >= 0)
        self.capacity = capacity
        self.queueBytesMax = queueBytesMax
        self.payloadBytesMax = payloadBytesMax
        wake = try WakePipe()
    }

    var counts: (queued: Int, inFlight: Int) { state.withLock { ($0.queue.count, $0.inFlight.count) } }

    func broadcast(_ payload: [UInt8]) async throws(RingCastError) -> UInt64 {
        guard payload.count <= payloadBytesMax else {
            throw .payloadTooLarge(bytes: payload.count, limit: payloadBytesMax)
        }
        let id: UInt64
        var handedOver = false
        let fast: Result<UInt64, RingCastError>? = state.withLock { state in
            if let closed = state.closed { return .failure(closed) }
            guard state.waiters.isEmpty, admits(payload.count, state) else { return nil }
            let token = Self.enqueue(payload, &state)
            // Nothing queued before it: hand it to the engine on the caller's thread, under the lock that makes
            // every rc_engine_broadcast call come from one thread at a time (the ring's single producer). The pump
            // thread is woken only for what the engine refused: a thread hop per message left the window
            // unrefilled long enough, on a loaded host, that the links idled.
            if state.queue.count == 1, let engine = state.engine, Self.handOver(engine, &state) { handedOver = true }
            return .success(token)
        }
        if let fast {
            if !handedOver { wake.signal() }
            return try fast.get()
        }
        id = state.withLock { state in
            defer { state.nextWaiterID += 1 }
            return state.nextWaiterID
        }
        let outcome = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<UInt64, RingCastError>, Never>) in
                let immediate: Result<UInt64, RingCastError>? = state.withLock { state in
                    if let closed = state.closed { return .failure(closed) }
                    if state.waiters.isEmpty && admits(payload.count, state) {
                        return .success(Self.enqueue(payload, &state))
                    }
                    if Task.isCancelled { return .failure(.cancelled) }
                    state.waits += 1
                    state.waiters.append(Waiter(id: id, payload: payload, continuation: continuation))
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
                wake.signal()
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.remove(where: { $0.id == id }) }
            waiter?.continuation.resume(returning: .failure(.cancelled))
        }
        return try outcome.get()
    }

    /// The engine's staging grows with its window (`rc_engine_staging_bytes`: an eighth of it), so that a fast ring's
    /// producer runs ahead in batches; this queue follows it, and holds `queueBytesMax` while no engine is attached.
    private func admits(_ bytes: Int, _ state: State) -> Bool {
        let limit = state.engine.map { max(queueBytesMax, Int(clamping: rc_engine_staging_bytes($0.pointer))) } ?? queueBytesMax
        return state.queue.isEmpty || (state.queue.count < capacity && state.queueBytes + bytes <= limit)
    }

    private static func enqueue(_ payload: [UInt8], _ state: inout State) -> UInt64 {
        let token = state.nextToken
        state.nextToken += 1
        state.queue.append(Item(token: token, payload: payload))
        state.queueBytes += payload.count
        return token
    }

    /// Lets waiting `broadcast()` calls into the queue as room frees; returns the continuations to resume.
    private func admitWaiters(_ state: inout State) -> [(CheckedContinuation<Result<UInt64, RingCastError>, Never>, UInt64)] {
        var admitted: [(CheckedContinuation<Result<UInt64, RingCastError>, Never>, UInt64)] = []
        while let waiter = state.waiters.first, admits(waiter.payload.count, state) {
            _ = state.waiters.popFirst()
            admitted.append((waiter.continuation, Self.enqueue(waiter.payload, &state)))
        }
        return admitted
    }

    // MARK: The engine side

    /// Hands queued messages to the attached engine until it is full. Returns what to wait for next
    /// (`engineFull` carries the engine's space eventfd, readable once it took broadcasts; `refused` the engine's
    /// answer when it stopped taking broadcasts: stopped or failed).
    enum Progress { case idle, engineFull(spaceFD: Int32), noEngine, refused(Int32), closed }

    /// Hands the head of the queue to `engine` (under the lock). Returns false, leaving it queued, when the engine
    /// refused it; `result` gets rc_engine_broadcast's answer.
    private static func handOver(_ engine: EngineHandle, _ state: inout State, result: inout Int32) -> Bool {
        guard let head = state.queue.first else { return false }
        // The pointer outlives the closure on purpose: the array stays retained in `inFlight` until its own
        // delivery, so its storage does not move (rc_engine.h, "Memory").
        result = head.payload.withUnsafeBytes { bytes in
            rc_engine_broadcast(engine.pointer, bytes.baseAddress ?? UnsafeRawPointer(("" as StaticString).utf8Start),
                                UInt32(bytes.count), head.token)
        }
        guard result == 0 else { return false }
        let item = state.queue.popFirst()!
        state.queueBytes -= item.payload.count
        state.inFlight.append(item)
        return true
    }

    private static func handOver(_ engine: EngineHandle, _ state: inout State) -> Bool {
        var result: Int32 = 0
        return handOver(engine, &state, result: &result)
    }

    func pump() -> Progress {
        var resumed: [(CheckedContinuation<Result<UInt64, RingCastError>, Never>, UInt64)] = []
        let progress: Progress = state.withLock { state in
            if state.closed != nil { return .closed }
            guard let engine = state.engine else { return .noEngine }
            var result: Int32 = 0
            while true {
                while !state.queue.isEmpty {
                    guard Self.handOver(engine, &state, result: &result) else {
                        resumed += admitWaiters(&state)
                        return result == -EAGAIN ? .engineFull(spaceFD: rc_engine_space_fd(engine.pointer)) : .refused(result)
                    }
                }
                // The queue emptied: let waiting broadcasts in, and hand them over too. Returning idle with what was
                // just admitted still queued left it there until the next wake-up (up to the idle timeout, 500 ms).
                let admitted = admitWaiters(&state)
                if admitted.isEmpty { return .idle }
                resumed += admitted
            }
        }
        for (continuation, token) in resumed { continuation.resume(returning: .success(token)) }
        return progress
    }

    /// The pump thread's loop: hands queued messages over whenever the engine has room or a broadcast arrives,
    /// blocked in poll(2) in between (on the outbox's wake pipe, the engine's space eventfd, `stopFD`). `onWake`
    /// runs on every wake-up (at least every 500 ms): the owner's periodic duties. `onRefused` gets the engine's
    /// answer when it stopped taking broadcasts (a Node fails its waiters then; a Group waits for the next view).
    /// Returns when `stopFD` is readable or the outbox is closed.
    func runPump(stopFD: Int32, onWake: () -> Void, onRefused: (Int32) -> Void) {
        while true {
            onWake()
            switch pump() {
            case .closed: return
            case .idle, .noEngine:
                let ready = waitReadable([wake.readFD, stopFD], timeoutMillis: 500)
                if ready[1] { return }
                if ready[0] { wake.drain() }
            case let .refused(result):
                onRefused(result)
                let ready = waitReadable([wake.readFD, stopFD], timeoutMillis: 50)
                if ready[1] { return }
                if ready[0] { wake.drain() }
            case let .engineFull(spaceFD):
                // The engine may be replaced while we wait (its eventfd closed): the timeout bounds that case,
                // and a view change wakes us through the outbox anyway.
                let ready = waitReadable([wake.readFD, stopFD, spaceFD], timeoutMillis: 20)
                if ready[1] { return }
                if ready[0] { wake.drain() }
                if ready[2] { clearSpace(spaceFD) }
            }
        }
    }

    /// Clears the space eventfd `fd` if it still belongs to the attached engine (under the lock, so the
    /// engine cannot be detached and destroyed in between, and a reused descriptor number is never read).
    func clearSpace(_ fd: Int32) {
        state.withLock { state in
            guard let engine = state.engine, rc_engine_space_fd(engine.pointer) == fd else { return }
            clearEventFD(fd)
        }
    }

    func attach(_ engine: EngineHandle) {
        state.withLock { $0.engine = engine }
        wake.signal()
    }

    /// Stops handing messages to the current engine (before it is frozen or destroyed).
    func detach() { state.withLock { $0.engine = nil } }

    /// Drops the payloads of own deliveries, which come back in token order.
    func releaseOwn(tokens: some Sequence<UInt64>) {
        state.withLock { state in
            for token in tokens {
                let item = state.inFlight.popFirst()
                precondition(item?.token == token, "own delivery \(token) is not the oldest in flight (\(item?.token ?? 0))")
            }
        }
    }

    func releaseOwn(batch: UnsafePointer<rc_engine_delivery>, count: Int) {
        var own = false
        for index in 0..<count where batch[index].own { own = true; break }
        guard own else { return }
        releaseOwn(tokens: (0..<count).lazy.filter { batch[$0].own }.map { batch[$0].token })
    }

    /// After a freeze: the in-flight messages the frozen engine did not export (never stamped) go back to
    /// the front of the queue; the exported ones stay in flight until the view change delivers them.
    func requeueUnstamped(exported: Set<UInt64>) {
        state.withLock { state in
            var kept = FIFO<Item>()
            var back: [Item] = []
            while let item = state.inFlight.popFirst() {
                if exported.contains(item.token) {
                    precondition(back.isEmpty, "an exported own message follows an unstamped one")
                    kept.append(item)
                } else {
                    back.append(item)
                }
            }
            state.inFlight = kept
            while let item = state.queue.popFirst() { back.append(item) }
            for item in back { state.queue.append(item) }
            state.queueBytes = back.reduce(0) { $0 + $1.payload.count }
        }
    }

    /// After a view change delivered what it delivers: own messages still in flight were stamped in the old
    /// view but left out of its delivery (`commonPrefix` recovery: not every survivor had them, so nobody
    /// delivered them). They go back to the front of the queue, in order, and leave again in the new view.
    func requeueInFlight() {
        state.withLock { state in
            var back: [Item] = []
            while let item = state.inFlight.popFirst() { back.append(item) }
            while let item = state.queue.popFirst() { back.append(item) }
            for item in back { state.queue.append(item) }
            state.queueBytes = back.reduce(0) { $0 + $1.payload.count }
        }
    }

    /// Ends broadcasting: waiting and later calls fail with `error`.
    func close(_ error: RingCastError) {
        let waiters: [Waiter] = state.withLock { state in
            if state.closed == nil { state.closed = error }
            state.engine = nil
            var all: [Waiter] = []
            while let waiter = state.waiters.popFirst() { all.append(waiter) }
            return all
        }
        for waiter in waiters { waiter.continuation.resume(returning: .failure(error)) }
        wake.signal()
    }

    var broadcastWaits: UInt64 { state.withLock { $0.waits } }
}
