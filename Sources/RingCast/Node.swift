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
/// A node is one ``Ring`` with a fixed view, fed by an ``Outbox`` — the same two components a ``Group`` runs, one ring
/// per view. Threads: the engine thread (C) owns the sockets and the LCR core; the outbox's *pump* thread hands
/// over broadcasts that found the engine full, blocked in poll(2) on the engine's space eventfd (no core burnt, no
/// sleeps to tune, woken the moment space frees), and reports the node's health every half second; in
/// ``DeliveryBatches`` mode the ring's *delivery consumer* thread empties the delivery ring.
///
/// Deliveries come one of two ways, chosen at construction:
/// - ``init(configuration:deliveryHandler:)``: a synchronous handler on the engine thread, with views into the
///   engine's memory (zero copies);
/// - ``init(configuration:)``: ``deliveries``, a bounded asynchronous sequence of copied batches.
public final class Node: Sendable {
    /// What this node was configured with.
    public let configuration: Configuration
    private let ring: Ring
    private let outbox: Outbox
    private let deliveryBuffer: DeliveryBuffer?
    private let lifecycle = Mutex(Lifecycle.created)
    /// `lifecycle` is `.started`: read by every broadcast without taking the lock (set under it).
    private let started = Atomic<Bool>(false)
    /// Level-triggered stop signal for the pump thread (written once, never drained).
    private let stopPipe: WakePipe
    private let health: NodeHealth

    /// A node whose deliveries are read from ``deliveries`` (copied into Swift storage).
    /// - Throws: ``RingCastError/invalidConfiguration(_:)`` when the engine refuses the settings,
    ///   ``RingCastError/system(call:errno:)`` when memory or descriptors cannot be had.
    public convenience init(configuration: Configuration) throws(RingCastError) {
        let buffer = try DeliveryBuffer(capacity: configuration.limits.deliveryBatchesBufferedMax)
        try self.init(configuration: configuration, target: .buffer(buffer), buffer: buffer)
    }

    /// A node that calls `deliveryHandler` on its engine thread with every batch of deliveries, in total order.
    ///
    /// The batch and its payload views are valid during the call only (zero copies: received payloads are views of
    /// the receive buffer, own payloads the broadcaster's arrays). The handler runs on the hot path: a slow handler
    /// slows the ring (that is backpressure, not a bug). It must not call ``shutdown()``, and should not capture the
    /// node strongly (the node owns the handler: that would be a reference cycle and the node would never stop).
    /// - Throws: as ``init(configuration:)``.
    public convenience init(configuration: Configuration,
                deliveryHandler: @escaping @Sendable (borrowing Deliveries) -> Void) throws(RingCastError) {
        try self.init(configuration: configuration, target: .handler(deliveryHandler), buffer: nil)
    }

    private init(configuration: Configuration, target: DeliverySink.Target, buffer: DeliveryBuffer?) throws(RingCastError) {
        self.configuration = configuration
        deliveryBuffer = buffer
        // The staging in front of the engine, as a group's: the engine's byte window is the backpressure.
        outbox = try Outbox(capacity: configuration.limits.broadcastRingMax,
                            payloadBytesMax: configuration.limits.batchBytesMax,
                            queueBytesMax: configuration.limits.stagingBytes)
        ring = try Ring(configuration: configuration, view: nil, originSeqBases: [],
                        sink: DeliverySink(target: target, outbox: outbox))
        stopPipe = try WakePipe()
        health = NodeHealth(configuration: configuration, ring: ring, outbox: outbox)
    }

    deinit {
        shutdown()
        stopPipe.close()
    }

    /// Listens, and starts the engine thread, which connects the ring in the background (see ``waitUntilRunning(timeout:)``).
    /// - Throws: ``RingCastError/addressInUse(_:)``, ``RingCastError/alreadyStarted``, ``RingCastError/system(call:errno:)``,
    ///   ``RingCastError/engineFailed(code:message:)``.
    public func start() throws(RingCastError) {
        try lifecycle.withLock { (state: inout Lifecycle) throws(RingCastError) in
            guard case .created = state else { throw .alreadyStarted }
            do throws(RingCastError) {
                try ring.start()
            } catch {
                state = .failedToStart
                throw error
            }
            let outbox = outbox, health = health, stopFD = stopPipe.readFD
            do throws(RingCastError) {
                let pump = try OSThread {
                    outbox.runPump(stopFD: stopFD, onWake: { health.check() }, onRefused: { health.refused($0) })
                }
                state = .started(threads: [pump])
                started.store(true, ordering: .releasing)
            } catch {
                ring.stop()
                state = .failedToStart
                throw error
            }
            outbox.attach(ring.engine)
        }
        health.logger.info("node started", metadata: ["listen": "\(configuration.listen)", "successor": "\(configuration.successor)",
                                                      "nodes": "\(configuration.nodeCount)"])
    }

    /// Waits until the ring is connected (polling the state every millisecond; this happens once).
    /// - Throws: ``RingCastError/connectTimeout`` after `timeout`, the engine's error if it failed,
    ///   ``RingCastError/notStarted``, ``RingCastError/shutdown``, ``RingCastError/cancelled``.
    public func waitUntilRunning(timeout: Duration = .seconds(10)) async throws(RingCastError) {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            switch status {
            case .running: return
            case .created: if !isStarted { throw .notStarted } // else the engine thread is just starting
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
        guard payload.count <= configuration.limits.batchBytesMax else {
            throw .payloadTooLarge(bytes: payload.count, limit: configuration.limits.batchBytesMax)
        }
        // Before start the outbox would queue (a group's does, across views); a node's broadcast needs its ring.
        guard isStarted else { throw lifecycle.withLock { if case .shutDown = $0 { .shutdown } else { .notStarted } } }
        return try await outbox.broadcast(payload)
    }

    /// The deliveries, as a bounded asynchronous sequence of batches (payloads copied).
    ///
    /// - Precondition: the node was made with ``init(configuration:)`` (not with a delivery handler).
    public var deliveries: DeliveryBatches {
        guard let buffer = deliveryBuffer else {
            preconditionFailure("this node delivers to its synchronous handler; `deliveries` needs init(configuration:)")
        }
        return DeliveryBatches(buffer: buffer)
    }

    /// The engine's state.
    public var status: Status { ring.status }

    /// A snapshot of the counters. The engine publishes its counters at most every 100 µs while busy, and
    /// once more when it stops: after ``shutdown()`` they are exact.
    public var statistics: Statistics { health.statistics }

    /// Stops the engine and the threads, ends ``deliveries``, fails waiting broadcasts with
    /// ``RingCastError/shutdown``. Idempotent; blocks at most the engine's bounded stop time (about 2 s).
    /// A second concurrent call returns at once.
    public func shutdown() {
        let threads: [OSThread]? = lifecycle.withLock { state in
            switch state {
            case .shutDown: return nil
            case let .started(threads):
                state = .shutDown
                started.store(false, ordering: .releasing)
                return threads
            case .created, .failedToStart:
                state = .shutDown
                return []
            }
        }
        guard let threads else { return }
        let deliveringThread = ring.sink.deliveringThread.load(ordering: .relaxed)
        precondition(deliveringThread == 0 || deliveringThread != UInt(pthread_self()),
                     "shutdown() called from the delivery handler (the engine thread would wait for itself)")
        outbox.close(.shutdown)
        stopPipe.signal()
        ring.stop()
        for thread in threads { thread.join() }
        deliveryBuffer?.finish(nil)
        let stats = statistics
        health.metrics.update(stats)
        health.logger.info("node stopped", metadata: ["status": "\(status)", "delivered_messages": "\(stats.deliveredMessages)",
                                                      "delivered_bytes": "\(stats.deliveredBytes)"])
    }

    private var isStarted: Bool { started.load(ordering: .acquiring) }
}

enum Lifecycle {
    case created
    case started(threads: [OSThread])
    case failedToStart
    case shutDown
}

/// What a node reports of its own accord: its counters to the metrics backend, a failure of the ring, a refused
/// congestion control — from the pump thread, which wakes at least every half second, so it costs nothing per
/// message. And when the engine stops taking broadcasts, waiting and later ones fail with its error.
private final class NodeHealth: @unchecked Sendable {
    let configuration: Node.Configuration
    let ring: Ring
    let outbox: Outbox
    /// The configuration's logger with this node's `position` and `view_id`; at start, stop, and for health events.
    let logger: Logger
    /// The pump thread updates it; `shutdown()` too, after joining that thread.
    let metrics: EngineMetrics
    // Pump thread only.
    private var nextCheckNanos: UInt64 = 0
    private var failureLogged = false
    private var connectedLogged = false

    init(configuration: Node.Configuration, ring: Ring, outbox: Outbox) {
        self.configuration = configuration
        self.ring = ring
        self.outbox = outbox
        var logger = configuration.logger
        logger[metadataKey: "position"] = "\(configuration.position)"
        logger[metadataKey: "view_id"] = "\(configuration.viewId)"
        self.logger = logger
        metrics = EngineMetrics(factory: configuration.metricsFactory ?? MetricsSystem.factory,
                                dimensions: [("group", configuration.name), ("member", "\(configuration.position)")],
                                delivered: true)
    }

    var statistics: Node.Statistics {
        let stats = ring.statistics
        var result = Node.Statistics(engine: stats)
        result.payloadCopies = stats.payload_copies + ring.sink.copies.load(ordering: .relaxed)
        result.broadcastWaits = outbox.broadcastWaits
        result.broadcastsInFlight = outbox.counts.inFlight
        result.deliveryPeekHighWater = ring.sink.peekHighWater.load(ordering: .relaxed)
        if case let .buffer(buffer) = ring.sink.target { result.deliveryBatchesBufferedHighWater = buffer.bufferedHighWater }
        return result
    }

    /// The engine refused a broadcast for good (stopped or failed): broadcasting is over for this node.
    func refused(_ result: Int32) {
        if case let .failed(error) = ring.status {
            outbox.close(error)
        } else {
            outbox.close(result == -EPIPE ? .shutdown : .engine(code: result))
        }
    }

    func check() {
        let now = monotonicNanos()
        guard now >= nextCheckNanos else { return }
        nextCheckNanos = now + 500_000_000
        metrics.update(statistics)
        guard !failureLogged else { return }
        switch ring.status {
        case let .failed(error):
            failureLogged = true
            logger.error("ring failed", metadata: ["error": "\(error)"])
            // Broadcasts waiting for room would wait for ever: they fail with the ring's error.
            outbox.close(error)
        case .running where !connectedLogged:
            connectedLogged = true
            let refused = ring.statistics.congestion_refused
            logger.info("ring connected")
            if refused > 0 {
                logger.warning("the kernel refused the ring's congestion control; its sockets keep the system's",
                               metadata: ["congestion": "\(configuration.limits.congestionControl)", "sockets": "\(refused)"])
            }
        default:
            break
        }
    }
}

