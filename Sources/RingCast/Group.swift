internal import CRingCast
import CoreMetrics
import Logging
import RingCastMembership
import ServiceLifecycle
import Synchronization

/// A member of a RingCast group: uniform total order broadcast that survives crashes, partitions, joins and
/// leaves (thesis §2.4.3, Fig. 2.7).
///
/// Each view runs one LCR ring (a C engine, exactly as ``Node``). When a member is suspected — its
/// connection broke, or it was silent for `suspectMillis` — the survivors freeze the ring, agree on the
/// next view, exchange what some of them lack of the old view's `pending`, deliver it in the same order
/// everywhere, and start the next ring. Every delivery carries its view id; ``views`` reports each view.
///
/// ```swift
/// let group = try Group(configuration: configuration) { batch in
///     batch.forEach { delivery in apply(delivery.payload) } // total order, on the engine thread
/// }
/// try group.start()
/// try await group.broadcast(Array("set x 1".utf8))
/// ```
///
/// Deliveries go to the synchronous handler: views of the engine's memory, valid during the call (copy what
/// you keep). The handler is called from one thread at a time, in total order, never concurrently.
public final class Group: Sendable {
    /// How the next view is agreed (see ``Membership/Mode``).
    public typealias Mode = Membership.Mode
    /// Which old-view messages a view change delivers (see ``Membership/RecoveryRule``).
    public typealias RecoveryRule = Membership.RecoveryRule

    public struct Configuration: Sendable {
        /// This member's node id.
        public var me: UInt32
        /// Bumped when a member that was excluded comes back: the group treats it as a new member.
        public var incarnation: UInt32 = 0
        /// The data address of every node id that may take part (founders and future joiners). The control
        /// plane of a member listens on the same host at `port + controlPortOffset`.
        public var addresses: [UInt32: Address]
        /// The founding view. A member not in it joins the running group through the members listed.
        public var initialView: [UInt32]
        public var mode: Mode = .quorum
        /// `commonPrefix` (default) moves no payload at a view change; `union` is Fig. 2.7 as written.
        public var recovery: RecoveryRule = .commonPrefix
        /// Every member sends a heartbeat this often on the control plane.
        public var heartbeatMillis = 20
        /// A member not heard from for this long is suspected (a silent partition is detected after this).
        public var suspectMillis = 200
        /// A view-change round ends after this long even if not everyone answered; the silent are suspected.
        public var roundTimeoutMillis = 200
        public var controlPortOffset: UInt16 = 1
        /// The engine limits of every view's ring.
        public var limits = Node.Limits()
        /// Longest wait for the application to release deliveries when a view change freezes the ring.
        public var freezeTimeoutMillis = 10_000
        /// The `group` dimension of every metric and the `group` metadata of every log line, to tell several
        /// groups in one process apart.
        public var name = "ringcast"
        /// Where view changes, suspicions, joins, leaves, refused connections, recoveries and configuration
        /// warnings go (metadata `group`, `member`, `view_id`, `cause`, …). Nothing is logged per message.
        /// `.debug` adds each step of a view change, `.trace` the ring's start-up and engine teardown.
        public var logger = Logger(label: "ringcast")
        /// The backend of this member's counters, gauges and timers (DocC article *Observability*); `nil` uses
        /// `MetricsSystem.factory`, the one the application bootstrapped (a no-op until it does).
        public var metricsFactory: (any MetricsFactory)?
        /// How often the statistics are turned into metrics, on the control thread (never per message).
        public var metricsIntervalMillis = 100
        /// The cluster key and the authentication mode of every link (``Security``); open links by default, with a
        /// warning at start. The handshake binds ``name`` as the cluster name: every member must use the same.
        public var security = Security()

        public init(me: UInt32, addresses: [UInt32: Address], initialView: [UInt32]) {
            self.me = me
            self.addresses = addresses
            self.initialView = initialView
        }

        var isJoiner: Bool { !initialView.contains(me) }

        func controlAddress(of node: UInt32) throws(RingCastError) -> Address {
            guard let data = addresses[node] else { throw .invalidConfiguration("no address for node \(node)") }
            let (port, overflow) = data.port.addingReportingOverflow(controlPortOffset)
            guard !overflow, port != 0 else {
                throw .invalidConfiguration("control port of node \(node) (\(data.port) + \(controlPortOffset)) is out of range")
            }
            return try Address(host: data.host, port: port)
        }

        public func validate() throws(RingCastError) {
            guard addresses[me] != nil else { throw .invalidConfiguration("addresses has no entry for me (\(me))") }
            guard !initialView.isEmpty else { throw .invalidConfiguration("initialView is empty") }
            guard Set(initialView).count == initialView.count else {
                throw .invalidConfiguration("initialView lists a member twice")
            }
            for node in initialView where addresses[node] == nil {
                throw .invalidConfiguration("initialView member \(node) has no address")
            }
            guard addresses.count <= Node.Configuration.nodeCountMax else {
                throw .invalidConfiguration("at most \(Node.Configuration.nodeCountMax) members")
            }
            guard Set(addresses.values).count == addresses.count else {
                throw .invalidConfiguration("two members share an address")
            }
            for node in addresses.keys { _ = try controlAddress(of: node) }
            for (name, value) in [("heartbeatMillis", heartbeatMillis), ("suspectMillis", suspectMillis),
                                  ("roundTimeoutMillis", roundTimeoutMillis), ("freezeTimeoutMillis", freezeTimeoutMillis),
                                  ("metricsIntervalMillis", metricsIntervalMillis)] {
                guard (1...3_600_000).contains(value) else {
                    throw .invalidConfiguration("\(name) = \(value) is outside 1...3600000")
                }
            }
            try security.validate(clusterName: name)
            guard suspectMillis > heartbeatMillis else {
                throw .invalidConfiguration("suspectMillis (\(suspectMillis)) must exceed heartbeatMillis (\(heartbeatMillis))")
            }
            try limits.validate()
        }
    }

    /// One installed view, as the application sees it.
    public struct View: Sendable, Hashable {
        public let id: UInt64
        /// Member node ids in ring order.
        public let members: [UInt32]
        /// Why the view changed: "initial", "link_lost 3", "silent 3", "joined 5", "left 2", "round_timeout 1".
        public let causes: [String]
        /// When this member first suspected a change (0 for the initial view), CLOCK_REALTIME nanoseconds.
        public let changeStartedUnixNanos: UInt64
        /// When this member installed the view, CLOCK_REALTIME nanoseconds.
        public let installedUnixNanos: UInt64
    }

    /// Where this member stands.
    public enum State: Sendable, Hashable {
        case created, joining, running, changingView, excluded, left, stopped
    }

    /// Hands the application's state to a joining member at a view boundary.
    public struct StateTransfer: Sendable {
        /// Called on the member chosen as provider, after it delivered everything of the old view.
        public var snapshot: @Sendable () -> [UInt8]
        /// Called on the joiner before its first delivery.
        public var restore: @Sendable ([UInt8]) -> Void

        public init(snapshot: @escaping @Sendable () -> [UInt8], restore: @escaping @Sendable ([UInt8]) -> Void) {
            self.snapshot = snapshot
            self.restore = restore
        }
    }

    public struct Statistics: Sendable, Hashable {
        /// The current view's engine (see ``Node/Statistics``); counters restart with each view.
        public var engine = Node.Statistics()
        public var viewChanges: UInt64 = 0
        public var deliveredMessages: UInt64 = 0
        public var deliveredBytes: UInt64 = 0
        /// Messages delivered by view changes (Fig. 2.7's forceDeliver).
        public var recoveredMessages: UInt64 = 0
        /// Payload copies made by view changes (taking pending out of the engine, recovery transfers).
        public var recoveryCopies: UInt64 = 0
        public var broadcastsQueued: Int = 0
        public var broadcastsInFlight: Int = 0
        public var controlFramesIn: UInt64 = 0
        public var controlFramesOut: UInt64 = 0
        public var membershipIgnored: UInt64 = 0
        /// Failed starts of this member's ring for an installed view (its port taken, …): retried with backoff, and
        /// after 5 s of failures the member leaves the group. Local failures: no other member is suspected for them.
        public var ringStartFailures: UInt64 = 0
        /// Control-plane connections accepted and closed for breaking the protocol (bad hello, oversize frame, a
        /// failed handshake, none in time, too many), over the member's life.
        public var controlRejected: UInt64 = 0
        /// Control-plane connections (either way) whose peer proved the cluster key, and those closed because the
        /// handshake failed or did not finish (``Security``).
        public var controlAuthHandshakes: UInt64 = 0
        public var controlAuthRejected: UInt64 = 0
        /// Control-frame tags that did not verify (``Security/Authentication/frames``): the connection was closed.
        public var controlAuthMacFailures: UInt64 = 0

        public init() {}
    }

    public let configuration: Configuration
    public let views: AsyncStream<View>
    let shell: GroupShell

    /// - Parameters:
    ///   - stateTransfer: needed when members may join; without it a joiner starts from an empty state.
    ///   - deliveryHandler: called on an internal thread with each batch, in total order.
    /// - Throws: `RingCastError.invalidConfiguration`, `.addressInUse`, `.system`.
    public init(configuration: Configuration, stateTransfer: StateTransfer? = nil,
                deliveryHandler: @escaping @Sendable (borrowing Deliveries) -> Void) throws(RingCastError) {
        try configuration.validate()
        self.configuration = configuration
        configuration.security.warnIfOpen(configuration.logger, group: configuration.name, member: configuration.me)
        let (stream, continuation) = AsyncStream<View>.makeStream(bufferingPolicy: .bufferingNewest(64))
        views = stream
        shell = try GroupShell(configuration: configuration, stateTransfer: stateTransfer,
                               handler: deliveryHandler, views: continuation)
    }

    deinit { shell.shutdown() }

    /// Starts the control plane and, for founders, the first ring.
    public func start() throws(RingCastError) { try shell.start() }

    /// Queues one message for total order broadcast; waits while the bounded queue is full.
    /// Returns the message's token (own deliveries carry it). A queued message survives view changes.
    /// - Throws: `.payloadTooLarge`, `.shutdown`, `.excluded`, `.cancelled`.
    @discardableResult
    public func broadcast(_ payload: [UInt8]) async throws(RingCastError) -> UInt64 {
        try await shell.outbox.broadcast(payload)
    }

    /// Waits until this member is in a running view.
    public func waitUntilRunning(timeout: Duration = .seconds(10)) async throws(RingCastError) {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            switch state {
            case .running: return
            case .excluded: throw .excluded
            case .left, .stopped: throw .shutdown
            default: break
            }
            guard clock.now < deadline else { throw .connectTimeout }
            do { try await Task.sleep(for: .milliseconds(2)) } catch { throw .cancelled }
        }
    }

    public var state: State { shell.publicState }
    public var currentView: View? { shell.currentView }
    public var statistics: Statistics { shell.statistics }

    /// Leaves the group gracefully: the others install a view without this member; then it stops.
    public func leave(timeout: Duration = .seconds(5)) async throws(RingCastError) {
        shell.requestLeave()
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while state != .left && state != .stopped && state != .excluded {
            guard clock.now < deadline else { throw .connectTimeout }
            do { try await Task.sleep(for: .milliseconds(2)) } catch { throw .cancelled }
        }
        shell.shutdown()
    }

    /// Stops everything (idempotent). Not from the delivery handler.
    public func shutdown() { shell.shutdown() }
}

/// A member as a service of a swift-service-lifecycle `ServiceGroup`, next to the application's other services.
///
/// ```swift
/// let group = try Group(configuration: configuration) { batch in … }
/// let services = ServiceGroup(configuration: .init(services: [group, httpServer],
///                                                  gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
/// try await services.run()
/// ```
extension Group: Service {
    /// Starts the member (unless started already) and runs until graceful shutdown, then leaves the group — the
    /// others install a view without this member at once instead of suspecting it after `suspectMillis` — and
    /// stops. It leaves only from a running view: in the middle of a view change, or cut off from a majority, a leave
    /// could not complete, so it stops at once and the others treat it as a crash. On cancellation it stops without
    /// leaving.
    /// - Throws: ``RingCastError/excluded`` when the group excluded this member (the service cannot go on), or
    ///   what ``start()`` throws.
    public func run() async throws {
        if state == .created { try start() }
        // The shell publishes its state without a continuation to wait on; 20 ms bounds how late an exclusion is seen.
        try? await cancelWhenGracefulShutdown { [self] in
            while !Self.hasEnded(state) { try await Task.sleep(for: .milliseconds(20)) }
        }
        if state == .excluded {
            shutdown()
            throw RingCastError.excluded
        }
        if !Task.isCancelled && state == .running {
            do {
                try await leave()
            } catch {
                shell.logger.warning("leaving the group did not finish; stopping anyway", metadata: ["error": "\(error)"])
            }
        }
        shutdown()
    }

    private static func hasEnded(_ state: State) -> Bool {
        state == .excluded || state == .left || state == .stopped
    }
}
