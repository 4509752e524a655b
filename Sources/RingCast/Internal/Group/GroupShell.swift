internal import CRingCast
import Logging
import RingCastMembership
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The shell around `Membership.Instance` (SWIM's instance/shell split, STYLE.md): it feeds the core with
/// events — control frames, lost links, ticks — and carries out its directives: send, freeze the ring and
/// take pending out, supply recovery data, install a view (force-deliver, then start the next ring).
///
/// One thread (the shell thread) owns the instance, the current view's engine and the recovery state, so
/// none of them needs a lock; the control channel's thread and the API only queue events for it.
final class GroupShell: @unchecked Sendable {
    enum Event {
        case frame(from: ControlPeer, bytes: [UInt8])
        case lost(ControlPeer)
        case leave
    }

    struct Published {
        var state: Group.State = .created
        var view: Group.View?
        var viewChanges: UInt64 = 0
        var recoveredMessages: UInt64 = 0
        var recoveryCopies: UInt64 = 0
        var malformedFrames: UInt64 = 0
        var ringStartFailures: UInt64 = 0
        var engine = Node.Statistics()
    }

    /// The installed view whose ring did not start here, retried from the shell loop (GroupShell+ViewChange
    /// `startView`): after 50 ms, then twice as long each time up to 1 s; given up after 5 s.
    struct RingStartRetry {
        static let giveUpTicks: UInt64 = 5_000
        let view: Membership.View
        let attempts: Int
        let firstFailureTicks: UInt64
        let nextTicks: UInt64

        init(view: Membership.View, attempts: Int, firstFailureTicks: UInt64, now: UInt64) {
            self.view = view
            self.attempts = attempts
            self.firstFailureTicks = firstFailureTicks
            nextTicks = now + min(1_000, 50 << UInt64(min(attempts - 1, 5)))
        }
    }

    let configuration: Group.Configuration
    let me: Membership.MemberID
    let outbox: Outbox
    let sink: DeliverySink
    let stateTransfer: Group.StateTransfer?
    let viewsContinuation: AsyncStream<Group.View>.Continuation
    /// Events from other threads (the control channel, the API), for the shell thread.
    final class EventQueue: Sendable {
        let pending = Mutex<[Event]>([])
    }

    let events = EventQueue()
    let published = Mutex(Published())
    let wake: WakePipe
    let stopPipe: WakePipe
    let stopping = Atomic<Bool>(false)
    let threads = Mutex<[OSThread]>([])
    let startNanos = monotonicNanos()
    var channel: ControlChannel!

    // Shell thread only.
    var instance: Membership.Instance
    /// The current view's ring.
    var engine: Ring?
    var engineLossReported = false
    var engineRunningLogged = false
    var ringStartRetry: RingStartRetry?
    /// When the ring of a view replaced while its retries went on first failed (set at the freeze, taken by the next
    /// view's start).
    var ringStartRetryCarried: UInt64?
    /// Tests only: fails the start of the ring of the views it returns an error for, as a port another process took
    /// between two views would (``GroupShell/startEngine(for:)``).
    let ringStartFault = Mutex<(@Sendable (_ viewID: UInt64) -> RingCastError?)?>(nil)
    var recovery: Membership.Recovery<RecoveredPayload>?
    var frozenView: Membership.View?
    var frozenDelivered: [UInt64] = []
    var seqBases: [UInt32: UInt64] = [:]
    var waitingForState: Membership.Installation?
    /// A joiner whose state never came before the next view change withdrew (GroupShell+ViewChange `install`): the
    /// shell thread stops, so that it neither votes in view changes nor heartbeats, and the others exclude it.
    var withdrawn = false
    var receivedState: (viewID: UInt64, seqBases: [UInt32: UInt64], snapshot: [UInt8])?
    var changeStartedUnixNanos: UInt64 = 0
    /// Control peers heard from at least once: a refused connection to a peer that never spoke is a peer
    /// still starting, not a crash (the founding view's start-up grace covers its silence).
    var heardFrom = Set<ControlPeer>()
    var registeredPeers = Set<ControlPeer>()
    struct Reaper {
        final class Flag: Sendable { let value = Atomic<Bool>(false) }
        /// Holds the last reference to a retired engine until the reaper thread drops it.
        final class Box: @unchecked Sendable {
            private var engine: Ring?
            init(_ engine: Ring) { self.engine = engine }
            func drop() { engine = nil }
        }
        let thread: OSThread
        let done: Flag
    }
    var reapers: [Reaper] = []
    /// The application's logger with this member's `group` and `member` metadata. Used on the shell and control
    /// threads only, for rare events (view changes, suspicions, links): never per message.
    let logger: Logger
    let metrics: GroupMetrics
    var metricsDueTicks: UInt64 = 0
    /// The ring of the current view was refused its congestion control (warned once per view).
    var congestionWarned = false

    init(configuration: Group.Configuration, stateTransfer: Group.StateTransfer?,
         handler: @escaping @Sendable (borrowing Deliveries) -> Void,
         views: AsyncStream<Group.View>.Continuation) throws(RingCastError) {
        self.configuration = configuration
        self.stateTransfer = stateTransfer
        viewsContinuation = views
        me = Membership.MemberID(node: configuration.me, incarnation: configuration.incarnation)
        var logger = configuration.logger
        logger[metadataKey: "group"] = "\(configuration.name)"
        logger[metadataKey: "member"] = "\(configuration.me)"
        self.logger = logger
        metrics = GroupMetrics(factory: configuration.metricsFactory,
                               dimensions: [("group", configuration.name), ("member", "\(configuration.me)")])
        Self.warnAboutSettings(configuration, logger: logger)
        // A staging area as small as the engine's broadcast ring: the engine's windows are the backpressure, and
        // a bigger queue here would only add latency (and cool-down time) in front of them.
        outbox = try Outbox(capacity: configuration.limits.broadcastRingMax,
                            payloadBytesMax: configuration.limits.batchBytesMax,
                            queueBytesMax: configuration.limits.stagingBytes)
        sink = DeliverySink(target: .handler(handler), outbox: outbox)
        wake = try WakePipe()
        stopPipe = try WakePipe()
        var settings = Membership.Settings(me: me)
        settings.mode = configuration.mode
        settings.heartbeatIntervalTicks = UInt64(configuration.heartbeatMillis)
        settings.suspectTimeoutTicks = UInt64(configuration.suspectMillis)
        settings.roundTimeoutTicks = UInt64(configuration.roundTimeoutMillis)
        // A neighbour's `change` goes out as its ring closes (Instance.startChange); half the suspicion timeout (100 ms
        // by default, at least two heartbeats) leaves room for a loaded machine, and only a ring break between two
        // live members waits it out (a crash closes the control link too, which is a suspicion at once).
        settings.ringLossGraceTicks = max(2 * UInt64(configuration.heartbeatMillis), UInt64(configuration.suspectMillis) / 2)
        settings.startupGraceTicks = UInt64(configuration.limits.connectTimeoutMillis)
        settings.recovery = configuration.recovery
        do {
            if configuration.isJoiner {
                let contacts = configuration.initialView.sorted().map { Membership.MemberID(node: $0) }
                instance = try Membership.Instance(settings: settings, joiningVia: contacts, nowTicks: 0)
            } else {
                let members = configuration.initialView.sorted().map { Membership.MemberID(node: $0) }
                instance = try Membership.Instance(settings: settings, view: Membership.View(id: 1, members: members),
                                                   nowTicks: 0)
            }
        } catch {
            throw .invalidConfiguration("membership: \(error)")
        }
        for node in configuration.addresses.keys { seqBases[node] = 0 }
        let shellWake = wake
        let queue = events
        let channelLogger = logger
        channel = try ControlChannel(
            me: ControlPeer(node: me.node, incarnation: me.incarnation),
            listen: try configuration.controlAddress(of: configuration.me),
            auth: configuration.security.isAuthenticated
                ? configuration.security.authConfig(clusterName: configuration.name, node: me.node, incarnation: me.incarnation)
                : nil
        ) { event in
            queue.pending.withLock { pending in
                switch event {
                case let .received(from, bytes): pending.append(.frame(from: from, bytes: bytes))
                case let .lost(peer, reason):
                    channelLogger.debug("control channel lost a peer", metadata: ["peer": "\(peer.node)", "reason": "\(reason)"])
                    pending.append(.lost(peer))
                }
            }
            shellWake.signal()
        }
        for node in configuration.addresses.keys where node != configuration.me {
            let peer = ControlPeer(node: node, incarnation: 0)
            channel.setPeer(peer, address: try configuration.controlAddress(of: node))
            registeredPeers.insert(peer)
        }
    }

    // MARK: API side

    func start() throws(RingCastError) {
        guard published.withLock({ $0.state }) == .created else { throw .alreadyStarted }
        try channel.start()
        if !configuration.isJoiner {
            let members = configuration.initialView.sorted().map { Membership.MemberID(node: $0) }
            let view = Membership.View(id: 1, members: members)
            try startEngine(for: view)
            publish(view: view, causes: ["initial"], changeStarted: 0)
        } else {
            published.withLock { $0.state = .joining }
        }
        var started: [OSThread] = []
        started.append(try OSThread { [self] in runShell() })
        // The outbox's pump: a refused hand-over means this view's ring stopped; the view change attaches the next.
        let outbox = outbox, stopFD = stopPipe.readFD
        started.append(try OSThread { outbox.runPump(stopFD: stopFD, onWake: {}, onRefused: { _ in }) })
        threads.withLock { $0 = started }
    }

    func requestLeave() {
        events.pending.withLock { $0.append(.leave) }
        wake.signal()
    }

    func shutdown() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        stopPipe.signal()
        wake.signal()
        for thread in threads.withLock({ $0 }) { thread.join() }
        for reaper in reapers { reaper.thread.join() }
        reapers.removeAll()
        channel?.shutdown()
        outbox.close(.shutdown)
        engine = nil
        published.withLock { if $0.state != .excluded && $0.state != .left { $0.state = .stopped } }
        viewsContinuation.finish()
    }

    var publicState: Group.State { published.withLock { $0.state } }
    var currentView: Group.View? { published.withLock { $0.view } }

    var statistics: Group.Statistics {
        let snapshot = published.withLock { $0 }
        var result = Group.Statistics()
        result.engine = snapshot.engine
        result.viewChanges = snapshot.viewChanges
        result.recoveredMessages = snapshot.recoveredMessages
        result.recoveryCopies = snapshot.recoveryCopies
        result.deliveredMessages = sink.deliveredMessages.load(ordering: .relaxed)
        result.deliveredBytes = sink.deliveredBytes.load(ordering: .relaxed)
        let counts = outbox.counts
        result.broadcastsQueued = counts.queued
        result.broadcastsInFlight = counts.inFlight
        let channelStats = channel.statistics
        result.controlFramesIn = channelStats.framesIn
        result.controlFramesOut = channelStats.framesOut
        result.membershipIgnored = snapshot.malformedFrames
        result.ringStartFailures = snapshot.ringStartFailures
        result.controlRejected = channelStats.rejected
        result.controlAuthHandshakes = channelStats.authHandshakes
        result.controlAuthRejected = channelStats.authRejected
        result.controlAuthMacFailures = channelStats.authMacFailures
        return result
    }

    // MARK: Threads

    var nowTicks: UInt64 { (monotonicNanos() - startNanos) / 1_000_000 }

    func runShell() {
        let pollMillis = Int32(max(1, configuration.heartbeatMillis / 2))
        while !stopping.load(ordering: .acquiring) && !withdrawn {
            let ready = waitReadable([wake.readFD, stopPipe.readFD], timeoutMillis: pollMillis)
            if ready[1] { break }
            if ready[0] { wake.drain() }
            let pending = events.pending.withLock { queue in
                defer { queue.removeAll() }
                return queue
            }
            for event in pending { handle(event) }
            checkEngine()
            retryRingStartIfDue()
            apply(instance.onTick(nowTicks: nowTicks))
            if nowTicks >= metricsDueTicks { updateMetrics() } else { publishEngineStatistics() }
        }
    }

    // MARK: Events → core

    func handle(_ event: Event) {
        switch event {
        case let .frame(from, bytes):
            heardFrom.insert(from)
            handleFrame(from: Membership.MemberID(node: from.node, incarnation: from.incarnation), bytes)
        case let .lost(peer):
            guard heardFrom.contains(peer) else {
                // Usually a member still starting; its silence is covered by the start-up grace.
                return logger.debug("control connection refused by a member that never spoke", metadata: ["peer": "\(peer.node)"])
            }
            logger.info("control link lost", metadata: ["peer": "\(peer.node)"])
            apply(instance.onLinkLost(Membership.MemberID(node: peer.node, incarnation: peer.incarnation),
                                      nowTicks: nowTicks))
        case .leave:
            apply(instance.leave(nowTicks: nowTicks))
        }
    }

    func handleFrame(from: Membership.MemberID, _ bytes: [UInt8]) {
        switch GroupFrame.decode(bytes) {
        case let .membership(encoded)?:
            guard let message = try? Membership.Message.decode(encoded) else { return countMalformed() }
            apply(instance.onMessage(message, from: from, nowTicks: nowTicks))
        case let .recovery(fromViewID, entry)?:
            guard var recovery, fromViewID == frozenView?.id, entry.clock.count == recovery.received.count else { return }
            recovery.add(entry)
            self.recovery = recovery
            published.withLock { $0.recoveryCopies += UInt64(entry.payload.lengths.count) }
            apply(instance.onRecoveryReceived(received: recovery.received, nowTicks: nowTicks))
        case let .state(viewID, bases, snapshot)?:
            stateReceived(viewID: viewID, seqBases: bases, snapshot: snapshot)
        case nil:
            countMalformed()
        }
    }

    /// The control peer of `member`, registered with its address on first use: the channel knows peers by
    /// (node, incarnation), and a new incarnation of a node lives at the node's address.
    func peer(_ member: Membership.MemberID) -> ControlPeer {
        let peer = ControlPeer(node: member.node, incarnation: member.incarnation)
        if !registeredPeers.contains(peer), let address = try? configuration.controlAddress(of: member.node) {
            channel.setPeer(peer, address: address)
            registeredPeers.insert(peer)
        }
        return peer
    }

    func countMalformed() { published.withLock { $0.malformedFrames += 1 } }

    /// A broken ring link is a suspicion of the neighbour at its other end (the control channel usually
    /// reports the same crash too; the core handles the duplicate).
    func checkEngine() {
        if logger.logLevel <= .trace, let engine, !engineRunningLogged, engine.status == .running {
            engineRunningLogged = true
            logger.trace("ring connected", metadata: ["view_id": "\(engine.configuration.viewId)"])
        }
        guard let engine, let view = engine.view, !engineLossReported, let neighbour = engine.lostNeighbour else { return }
        engineLossReported = true
        logger.info("ring link lost", metadata: ["view_id": "\(view.id)", "peer": "\(view.members[neighbour].node)"])
        apply(instance.onRingLinkLost(view.members[neighbour], nowTicks: nowTicks))
    }

    func publish(view: Membership.View, causes: [String], changeStarted: UInt64, ringRunning: Bool = true) {
        let event = Group.View(id: view.id, members: view.members.map(\.node), causes: causes,
                               changeStartedUnixNanos: changeStarted, installedUnixNanos: realtimeNanos())
        published.withLock { state in
            if state.view != nil { state.viewChanges += 1 }
            state.view = event
            // Installed, but with its ring down here it cannot deliver: not running until a retry starts it.
            state.state = ringRunning ? .running : .changingView
        }
        var metadata: Logger.Metadata = ["view_id": "\(event.id)", "members": "\(event.members)",
                                         "cause": "\(causes.joined(separator: ", "))"]
        if changeStarted != 0 {
            let nanos = event.installedUnixNanos > changeStarted ? event.installedUnixNanos - changeStarted : 0
            metadata["detect_to_view_ms"] = "\(Double(nanos / 1000) / 1000)"
            metrics.recordViewChange(nanos: nanos)
        }
        logger.info("view installed", metadata: metadata)
        viewsContinuation.yield(event)
        updateMetrics()
    }

    func publishEngineStatistics() {
        guard let engine else { return }
        let stats = Node.Statistics(engine: engine.statistics)
        published.withLock { $0.engine = stats }
        if stats.congestionRefused > 0 && !congestionWarned {
            congestionWarned = true
            logger.warning("the kernel refused the ring's congestion control; its sockets keep the system's",
                           metadata: ["view_id": "\(engine.configuration.viewId)", "congestion": "\(configuration.limits.congestionControl)",
                                      "sockets": "\(stats.congestionRefused)"])
        }
    }

    /// The statistics into the metrics backend; the engine's counters are taken fresh so that they belong to
    /// the ring that runs now.
    func updateMetrics() {
        publishEngineStatistics()
        metrics.update(statistics, engineViewID: engine?.configuration.viewId, view: currentView)
        metricsDueTicks = nowTicks + UInt64(configuration.metricsIntervalMillis)
    }

    /// Settings that work but are likely to hurt, said once at construction.
    static func warnAboutSettings(_ configuration: Group.Configuration, logger: Logger) {
        if configuration.suspectMillis < 3 * configuration.heartbeatMillis {
            logger.warning("suspectMillis is under three heartbeats: one late heartbeat will be taken for a crash",
                           metadata: ["suspect_ms": "\(configuration.suspectMillis)",
                                      "heartbeat_ms": "\(configuration.heartbeatMillis)"])
        }
        if configuration.mode == .perfect {
            logger.notice("perfect mode: a false suspicion can split the group (quorum mode cannot)")
        }
    }

    static func describe(_ cause: Membership.Cause) -> String {
        switch cause {
        case let .linkLost(member): "link_lost \(member.node)"
        case let .silent(member): "silent \(member.node)"
        case let .joined(member): "joined \(member.node)"
        case let .left(member): "left \(member.node)"
        case let .roundTimeout(member): "round_timeout \(member.node)"
        }
    }
}
