internal import CRingCast
import CoreMetrics
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One member of a RingCast ring: broadcasts messages and delivers every member's messages in the same total order
/// (uniform total order broadcast, the LCR protocol of the thesis §2.4–2.6).
///
/// A `final class` made `Sendable` by internal locks rather than an actor: the calls are short, non-suspending
/// hand-overs to C rings (`broadcast` suspends only under backpressure), delivery happens on threads that are
/// not Swift tasks (the engine thread, the consumer thread), and shutdown must also work from `deinit`. An actor
/// would add a hop per broadcast and could not be entered from the engine thread.
///
/// Threads: the engine thread (C) owns the sockets and the LCR core; a *space waiter* thread retries broadcasts
/// that found the engine full, blocked in poll(2) on the engine's space eventfd (no core burnt, no sleeps to tune,
/// woken the moment space frees); in ``DeliveryBatches`` mode a *delivery consumer* thread empties the delivery ring.
///
/// Deliveries come one of two ways, chosen at construction:
/// - ``init(configuration:deliveryHandler:)``: a synchronous handler on the engine thread, with views into the
///   engine's memory (zero copies);
/// - ``init(configuration:)``: ``deliveries``, a bounded asynchronous sequence of copied batches.
public final class Node: Sendable {
    /// What this node was configured with.
    public let configuration: Configuration
    private let core: EngineCore

    /// A node whose deliveries are read from ``deliveries`` (copied into Swift storage).
    /// - Throws: ``RingCastError/invalidConfiguration(_:)`` when the engine refuses the settings,
    ///   ``RingCastError/system(call:errno:)`` when memory or descriptors cannot be had.
    public init(configuration: Configuration) throws(RingCastError) {
        self.configuration = configuration
        core = try EngineCore(configuration: configuration, handler: nil)
    }

    /// A node that calls `deliveryHandler` on its engine thread with every batch of deliveries, in total order.
    ///
    /// The batch and its payload views are valid during the call only (zero copies: received payloads are views of
    /// the receive buffer, own payloads the broadcaster's arrays). The handler runs on the hot path: a slow handler
    /// slows the ring (that is backpressure, not a bug). It must not call ``shutdown()``, and should not capture the
    /// node strongly (the node owns the handler: that would be a reference cycle and the node would never stop).
    /// - Throws: as ``init(configuration:)``.
    public init(configuration: Configuration,
                deliveryHandler: @escaping @Sendable (borrowing Deliveries) -> Void) throws(RingCastError) {
        self.configuration = configuration
        core = try EngineCore(configuration: configuration, handler: deliveryHandler)
    }

    deinit { core.shutdown() }

    /// Listens, and starts the engine thread, which connects the ring in the background (see ``waitUntilRunning(timeout:)``).
    /// - Throws: ``RingCastError/addressInUse(_:)``, ``RingCastError/alreadyStarted``, ``RingCastError/system(call:errno:)``,
    ///   ``RingCastError/engineFailed(code:message:)``.
    public func start() throws(RingCastError) { try core.start() }

    /// Waits until the ring is connected (polling the state every millisecond; this happens once).
    /// - Throws: ``RingCastError/connectTimeout`` after `timeout`, the engine's error if it failed,
    ///   ``RingCastError/notStarted``, ``RingCastError/shutdown``, ``RingCastError/cancelled``.
    public func waitUntilRunning(timeout: Duration = .seconds(10)) async throws(RingCastError) {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            switch status {
            case .running: return
            case .created: if !core.isStarted { throw .notStarted } // else the engine thread is just starting
            case .stopped: throw .shutdown
            case let .failed(error): throw error
            case .connecting: break
            }
            guard clock.now < deadline else { throw .connectTimeout }
            do { try await Task.sleep(for: .milliseconds(1)) } catch { throw .cancelled }
        }
    }

    /// Broadcasts `payload` to every member (itself included), in total order.
    ///
    /// Returns once the engine took the message; suspends while the engine is full (window, broadcast ring) —
    /// that is the backpressure. The array is retained, not copied, until its own delivery comes back: the engine
    /// sends from it and delivers it as a view of it. Concurrent callers are served in arrival order.
    /// - Returns: the token the own delivery carries (``Delivery/token``, ``UnsafeDelivery/token``): 1, 2, 3, …
    /// - Throws: ``RingCastError/payloadTooLarge(bytes:limit:)``, ``RingCastError/shutdown``, the engine's
    ///   failure, ``RingCastError/notStarted``, ``RingCastError/cancelled`` (then it was not broadcast).
    @discardableResult
    public func broadcast(_ payload: [UInt8]) async throws(RingCastError) -> UInt64 {
        try await core.broadcast(payload)
    }

    /// The deliveries, as a bounded asynchronous sequence of batches (payloads copied).
    ///
    /// - Precondition: the node was made with ``init(configuration:)`` (not with a delivery handler).
    public var deliveries: DeliveryBatches {
        guard let buffer = core.deliveryBuffer else {
            preconditionFailure("this node delivers to its synchronous handler; `deliveries` needs init(configuration:)")
        }
        return DeliveryBatches(buffer: buffer)
    }

    /// The engine's state.
    public var status: Status { core.status }

    /// A snapshot of the counters. The engine publishes its counters at most every 100 µs while busy, and
    /// once more when it stops: after ``shutdown()`` they are exact.
    public var statistics: Statistics { core.statistics }

    /// Stops the engine and the threads, ends ``deliveries``, fails waiting broadcasts with
    /// ``RingCastError/shutdown``. Idempotent; blocks at most the engine's bounded stop time (about 2 s).
    /// A second concurrent call returns at once.
    public func shutdown() { core.shutdown() }
}

/// Everything behind a ``Node``: owned by the node and by its threads while they run.
final class EngineCore: Sendable {
    let configuration: Node.Configuration
    let engine: EngineHandle
    let inFlight = InFlight()
    let handlerContext: HandlerContext?
    let deliveryBuffer: DeliveryBuffer?
    let producer = Mutex(ProducerState())
    let lifecycle = Mutex(Lifecycle.created)
    /// Level-triggered stop signal for the internal threads (written once, never drained).
    let stopPipe: WakePipe
    /// Wakes the space waiter when a broadcast starts waiting.
    let producerWake: WakePipe
    /// Set once `rc_engine_start` succeeded: the engine would accept broadcasts before it (it queues them), and
    /// the broadcast fast path should not take the lifecycle lock.
    let started = Atomic<Bool>(false)
    let deliveryCopies = Atomic<UInt64>(0)
    let deliveryPeekHighWater = Atomic<Int>(0)
    /// The configuration's logger with this node's `position` and `view_id`; used at start, stop and by the space
    /// waiter's periodic health check, never per message.
    let logger: Logger
    /// Only the space waiter thread updates it (and `shutdown()`, after joining that thread).
    nonisolated(unsafe) let metrics: EngineMetrics

    init(configuration: Node.Configuration,
         handler: (@Sendable (borrowing Deliveries) -> Void)?) throws(RingCastError) {
        self.configuration = configuration
        var logger = configuration.logger
        logger[metadataKey: "position"] = "\(configuration.position)"
        logger[metadataKey: "view_id"] = "\(configuration.viewId)"
        self.logger = logger
        metrics = EngineMetrics(factory: configuration.metricsFactory ?? MetricsSystem.factory,
                                dimensions: [("group", configuration.name), ("member", "\(configuration.position)")],
                                delivered: true)
        var settings = configuration.engineSettings
        if let handler {
            let context = HandlerContext(handler: handler, inFlight: inFlight)
            handlerContext = context
            deliveryBuffer = nil
            settings.deliver = HandlerContext.callback
            settings.deliver_context = Unmanaged.passUnretained(context).toOpaque()
        } else {
            handlerContext = nil
            deliveryBuffer = try DeliveryBuffer(capacity: configuration.limits.deliveryBatchesBufferedMax)
        }
        stopPipe = try WakePipe()
        do {
            producerWake = try WakePipe()
        } catch {
            stopPipe.close()
            throw error
        }
        var pointer: OpaquePointer?
        let result = rc_engine_create(&pointer, &settings)
        guard result == 0, let pointer else {
            stopPipe.close()
            producerWake.close()
            if result == -EINVAL {
                throw .invalidConfiguration("the engine refused the settings (\(RingCastError.describe(code: result)))")
            }
            throw .system(call: "rc_engine_create", errno: -result)
        }
        engine = EngineHandle(pointer: pointer)
    }

    deinit {
        // Threads hold the core while they run, so no thread is left; the engine goes before the handler context.
        rc_engine_destroy(engine.pointer)
        inFlight.removeAll()
        stopPipe.close()
        producerWake.close()
    }

    // MARK: Lifecycle

    func start() throws(RingCastError) {
        try lifecycle.withLock { (state: inout Lifecycle) throws(RingCastError) in
            guard case .created = state else { throw .alreadyStarted }
            let result = rc_engine_start(engine.pointer)
            guard result == 0 else {
                state = .failedToStart
                if result == -EADDRINUSE { throw .addressInUse(configuration.listen) }
                throw .engine(code: result)
            }
            var threads: [OSThread] = []
            do throws(RingCastError) {
                threads.append(try OSThread { [self] in runSpaceWaiter() })
                if let deliveryBuffer {
                    threads.append(try OSThread { [self] in runDeliveryConsumer(deliveryBuffer) })
                }
            } catch {
                stopPipe.signal()
                rc_engine_stop(engine.pointer)
                for thread in threads { thread.join() }
                state = .failedToStart
                throw error
            }
            state = .started(threads: threads)
            started.store(true, ordering: .releasing)
        }
        logger.info("node started", metadata: ["listen": "\(configuration.listen)", "successor": "\(configuration.successor)",
                                               "nodes": "\(configuration.nodeCount)"])
    }

    func shutdown() {
        let threads: [OSThread]? = lifecycle.withLock { state in
            switch state {
            case .shutDown: return nil
            case let .started(threads):
                state = .shutDown
                return threads
            case .created, .failedToStart:
                state = .shutDown
                return []
            }
        }
        guard let threads else { return }
        if let handlerContext {
            let engineThread = handlerContext.engineThread.load(ordering: .relaxed)
            precondition(engineThread == 0 || engineThread != UInt(pthread_self()),
                         "shutdown() called from the delivery handler (the engine thread would wait for itself)")
        }
        producer.withLock { $0.stopping = true }
        stopPipe.signal()
        rc_engine_stop(engine.pointer)
        for thread in threads { thread.join() }
        failWaiters(with: .shutdown)
        deliveryBuffer?.finish(nil)
        let stats = statistics
        metrics.update(stats)
        logger.info("node stopped", metadata: ["status": "\(status)", "delivered_messages": "\(stats.deliveredMessages)",
                                               "delivered_bytes": "\(stats.deliveredBytes)"])
    }

    var status: Node.Status {
        var error: Int32 = 0
        let state = rc_engine_status(engine.pointer, &error)
        switch state {
        case RC_ENGINE_CREATED: return .created
        case RC_ENGINE_CONNECTING: return .connecting
        case RC_ENGINE_RUNNING: return .running
        case RC_ENGINE_STOPPED: return .stopped
        default: return .failed(.engine(code: error))
        }
    }

    var statistics: Node.Statistics {
        let stats = rc_engine_stats_get(engine.pointer)
        var result = Node.Statistics(engine: stats)
        result.payloadCopies = stats.payload_copies + deliveryCopies.load(ordering: .relaxed)
        result.broadcastWaits = producer.withLock { $0.broadcastWaits }
        result.broadcastsInFlight = inFlight.count
        result.deliveryPeekHighWater = deliveryPeekHighWater.load(ordering: .relaxed)
        result.deliveryBatchesBufferedHighWater = deliveryBuffer?.bufferedHighWater ?? 0
        return result
    }

    // MARK: Broadcast

    /// One attempt to hand `payload` to the engine; call with the producer lock held.
    private func submit(_ payload: [UInt8], _ state: inout ProducerState) -> SubmitOutcome {
        if state.stopping { return .failed(.shutdown) }
        let token = state.nextToken
        inFlight.append(token: token, payload: payload)
        // The pointer outlives the closure on purpose: the array is retained in `inFlight` (and never mutated
        // there), so its heap storage stays at this address until the own delivery is released.
        let result = payload.withUnsafeBytes { bytes in
            rc_engine_broadcast(engine.pointer, bytes.baseAddress ?? UnsafeRawPointer(("" as StaticString).utf8Start),
                                UInt32(bytes.count), token)
        }
        if result == 0 {
            state.nextToken += 1
            return .submitted(token)
        }
        inFlight.removeLast(token: token)
        switch result {
        case -EAGAIN: return .full
        case -EMSGSIZE: return .failed(.payloadTooLarge(bytes: payload.count, limit: configuration.limits.batchBytesMax))
        default:
            if case let .failed(error) = status { return .failed(error) }
            return .failed(result == -EPIPE ? .shutdown : .engine(code: result))
        }
    }

    func broadcast(_ payload: [UInt8]) async throws(RingCastError) -> UInt64 {
        guard payload.count <= configuration.limits.batchBytesMax else {
            throw .payloadTooLarge(bytes: payload.count, limit: configuration.limits.batchBytesMax)
        }
        guard started.load(ordering: .acquiring) else {
            throw lifecycle.withLock { state in
                if case .shutDown = state { return RingCastError.shutdown }
                return RingCastError.notStarted
            }
        }
        // Fast path: nobody is waiting and the engine has room.
        let first: SubmitOutcome = producer.withLock { state in
            state.waiters.isEmpty ? submit(payload, &state) : .full
        }
        switch first {
        case let .submitted(token): return token
        case let .failed(error): throw error
        case .full: break
        }
        let id = producer.withLock { state in
            defer { state.nextWaiterID += 1 }
            return state.nextWaiterID
        }
        let outcome = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<UInt64, RingCastError>, Never>) in
                let immediate: Result<UInt64, RingCastError>? = producer.withLock { state in
                    if state.waiters.isEmpty {
                        switch submit(payload, &state) {
                        case let .submitted(token): return .success(token)
                        case let .failed(error): return .failure(error)
                        case .full: break
                        }
                    }
                    if Task.isCancelled { return .failure(.cancelled) }
                    state.broadcastWaits += 1
                    state.waiters.append(.init(id: id, payload: payload, continuation: continuation))
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) } else { producerWake.signal() }
            }
        } onCancel: {
            let waiter = producer.withLock { $0.waiters.remove(where: { $0.id == id }) }
            waiter?.continuation.resume(returning: .failure(.cancelled))
        }
        return try outcome.get()
    }

    var isStarted: Bool {
        lifecycle.withLock { state in
            if case .created = state { return false }
            return true
        }
    }

    private func failWaiters(with error: RingCastError) {
        let waiters = producer.withLock { $0.waiters.removeAll() }
        for waiter in waiters { waiter.continuation.resume(returning: .failure(error)) }
    }

    /// The space waiter thread: retries waiting broadcasts, in order, whenever the engine signals space.
    private func runSpaceWaiter() {
        let spaceFD = rc_engine_space_fd(engine.pointer)
        var health = HealthReport()
        while true {
            health.check(self)
            let (waiting, stopping) = producer.withLock { (!$0.waiters.isEmpty, $0.stopping) }
            if stopping { break }
            // Watch the space eventfd only while someone waits: it fires on every freed slot while traffic flows.
            // The timeout bounds how long a waiter can miss an engine failure that does not signal space.
            let fds = waiting ? [stopPipe.readFD, producerWake.readFD, spaceFD] : [stopPipe.readFD, producerWake.readFD]
            let ready = waitReadable(fds, timeoutMillis: waiting ? 50 : 500)
            if ready[0] { break }
            if ready[1] { producerWake.drain() }
            if waiting && ready[2] { clearEventFD(spaceFD) }
            var resumed: [(CheckedContinuation<Result<UInt64, RingCastError>, Never>, Result<UInt64, RingCastError>)] = []
            producer.withLock { state in
                while let head = state.waiters.first {
                    let outcome = submit(head.payload, &state)
                    if case .full = outcome { break }
                    _ = state.waiters.popFirst()
                    switch outcome {
                    case let .submitted(token): resumed.append((head.continuation, .success(token)))
                    case let .failed(error): resumed.append((head.continuation, .failure(error)))
                    case .full: break
                    }
                }
            }
            for (continuation, result) in resumed { continuation.resume(returning: result) }
        }
        failWaiters(with: .shutdown)
    }

    /// What the node reports of its own accord: its counters to the metrics backend, a failure of the ring, a refused
    /// congestion control. The space waiter checks at most every half second (it wakes at least that often), so the
    /// check costs nothing per message.
    private struct HealthReport {
        var nextCheckNanos: UInt64 = 0
        var failureLogged = false
        var connectedLogged = false

        mutating func check(_ core: EngineCore) {
            let now = monotonicNanos()
            guard now >= nextCheckNanos else { return }
            nextCheckNanos = now + 500_000_000
            core.metrics.update(core.statistics)
            guard !failureLogged else { return }
            switch core.status {
            case let .failed(error):
                failureLogged = true
                core.logger.error("ring failed", metadata: ["error": "\(error)"])
            case .running where !connectedLogged:
                connectedLogged = true
                let refused = rc_engine_stats_get(core.engine.pointer).congestion_refused
                core.logger.info("ring connected")
                if refused > 0 {
                    core.logger.warning("the kernel refused the ring's congestion control; its sockets keep the system's",
                                        metadata: ["congestion": "\(core.configuration.limits.congestionControl)",
                                                   "sockets": "\(refused)"])
                }
            default:
                break
            }
        }
    }

    // MARK: Deliveries (sequence mode)

    /// The delivery consumer thread: peeks the delivery ring, copies, releases, hands batches to the buffer.
    private func runDeliveryConsumer(_ buffer: DeliveryBuffer) {
        let deliveryFD = rc_engine_delivery_fd(engine.pointer)
        let capacity = configuration.limits.deliveryBatchCountMax
        let scratch = UnsafeMutablePointer<rc_engine_delivery>.allocate(capacity: capacity)
        defer { scratch.deallocate() }
        var failure: RingCastError?
        consuming: while true {
            let count = Int(rc_engine_deliveries_peek(engine.pointer, scratch, UInt32(capacity)))
            if count == 0 {
                switch status {
                case let .failed(error):
                    failure = error
                    break consuming
                case .stopped: break consuming
                default: break
                }
                let ready = waitReadable([deliveryFD, stopPipe.readFD], timeoutMillis: 100)
                if ready[1] { break consuming }
                if ready[0] { clearEventFD(deliveryFD) }
                continue
            }
            if count > deliveryPeekHighWater.load(ordering: .relaxed) {
                deliveryPeekHighWater.store(count, ordering: .relaxed)
            }
            var batch: [Delivery] = []
            batch.reserveCapacity(count)
            for index in 0..<count {
                // The one user-space copy of this path, by design (counted below).
                batch.append(UnsafeDelivery(scratch[index]).copied())
            }
            deliveryCopies.add(UInt64(count), ordering: .relaxed)
            rc_engine_deliveries_release(engine.pointer, UInt32(count))
            inFlight.release(batch: scratch, count: count)
            if !buffer.push(batch, stopFD: stopPipe.readFD) { break }
        }
        buffer.finish(failure)
    }
}
