import CoreMetrics

/// A member's statistics as swift-metrics: counters advance by what the statistics gained since the last update,
/// gauges take the current value, a timer records each view change. The shell thread calls ``update`` every
/// `metricsIntervalMillis` and before a ring is retired; nothing here runs per message, so a backend costs the
/// hot path nothing. Names, units and dimensions are listed in the DocC article *Observability*.
final class GroupMetrics {
    private let deliveredMessages, deliveredBytes, viewChanges, recoveredMessages, recoveryCopies: Counter
    private let controlFramesIn, controlFramesOut, controlFramesIgnored: Counter
    private let controlRejected, controlAuthHandshakes, controlAuthRejected: Counter
    private let engine: EngineMetrics
    private let broadcastQueueDepth, broadcastsInFlight, viewID, viewMembers: Gauge
    private let viewChangeDuration: Timer
    /// The group-wide counters at the last update (they never go back).
    private var last = Group.Statistics()
    /// The view whose ring the engine's counters belong to at the last update: each view's ring counts from zero.
    private var lastEngineViewID: UInt64?

    /// - Parameters:
    ///   - factory: the backend; `nil` means `MetricsSystem.factory`.
    ///   - dimensions: added to every metric (`group`, `member`).
    init(factory: (any MetricsFactory)?, dimensions: [(String, String)]) {
        let factory = factory ?? MetricsSystem.factory
        func counter(_ label: String, _ extra: [(String, String)] = []) -> Counter {
            Counter(label: label, dimensions: dimensions + extra, factory: factory)
        }
        func gauge(_ label: String) -> Gauge { Gauge(label: label, dimensions: dimensions, factory: factory) }
        deliveredMessages = counter("ringcast_delivered_messages_total")
        deliveredBytes = counter("ringcast_delivered_bytes_total")
        viewChanges = counter("ringcast_view_changes_total")
        recoveredMessages = counter("ringcast_recovered_messages_total")
        recoveryCopies = counter("ringcast_recovery_payload_copies_total")
        controlFramesIn = counter("ringcast_control_frames_total", [("direction", "in")])
        controlFramesOut = counter("ringcast_control_frames_total", [("direction", "out")])
        controlFramesIgnored = counter("ringcast_control_frames_ignored_total")
        controlRejected = counter("ringcast_control_connections_rejected_total")
        controlAuthHandshakes = counter("ringcast_auth_handshakes_total", [("plane", "control")])
        controlAuthRejected = counter("ringcast_auth_rejected_total", [("plane", "control")])
        engine = EngineMetrics(factory: factory, dimensions: dimensions)
        broadcastQueueDepth = gauge("ringcast_broadcast_queue_depth")
        broadcastsInFlight = gauge("ringcast_broadcasts_in_flight")
        viewID = gauge("ringcast_view_id")
        viewMembers = gauge("ringcast_view_members")
        viewChangeDuration = Timer(label: "ringcast_view_change_duration_seconds", dimensions: dimensions, factory: factory)
    }

    /// Brings every metric up to `statistics`.
    /// - Parameters:
    ///   - engineViewID: the view whose ring `statistics.engine` describes, `nil` while no ring runs.
    ///   - view: the installed view, if any.
    func update(_ statistics: Group.Statistics, engineViewID: UInt64?, view: Group.View?) {
        advance(deliveredMessages, statistics.deliveredMessages, last.deliveredMessages)
        advance(deliveredBytes, statistics.deliveredBytes, last.deliveredBytes)
        advance(viewChanges, statistics.viewChanges, last.viewChanges)
        advance(recoveredMessages, statistics.recoveredMessages, last.recoveredMessages)
        advance(recoveryCopies, statistics.recoveryCopies, last.recoveryCopies)
        advance(controlFramesIn, statistics.controlFramesIn, last.controlFramesIn)
        advance(controlFramesOut, statistics.controlFramesOut, last.controlFramesOut)
        advance(controlFramesIgnored, statistics.membershipIgnored, last.membershipIgnored)
        advance(controlRejected, statistics.controlRejected, last.controlRejected)
        advance(controlAuthHandshakes, statistics.controlAuthHandshakes, last.controlAuthHandshakes)
        advance(controlAuthRejected, statistics.controlAuthRejected, last.controlAuthRejected)
        last = statistics
        broadcastQueueDepth.record(statistics.broadcastsQueued)
        broadcastsInFlight.record(statistics.broadcastsInFlight)
        if let view {
            viewID.record(Int64(truncatingIfNeeded: view.id))
            viewMembers.record(view.members.count)
        }
        guard let engineViewID else { return }
        if engineViewID != lastEngineViewID { engine.restart() }
        engine.update(statistics.engine)
        lastEngineViewID = engineViewID
    }

    /// One view change, from the first suspicion at this member to the installation of the next view.
    func recordViewChange(nanos: UInt64) {
        viewChangeDuration.recordNanoseconds(Int64(clamping: nanos))
    }

}

/// The engine's counters (`rc_engine_stats`) as swift-metrics counters, for a ``Group`` (every view's ring in turn)
/// and for a ``Node`` (its one ring). A static ring has no group-wide counters, so here the delivered counts come
/// from the engine too (`delivered`: true for a Node).
final class EngineMetrics {
    private let broadcasts, lcrMessagesSent, lcrMessagesForwarded, ringFramesIn, ringFramesOut, ringBytesIn, ringBytesOut: Counter
    private let payloadCopies, windowFull, linkStarvedNanos, receiveStalls, deliveryStalls, congestionRefused: Counter
    private let authHandshakes, authRejected, authMacsOut, authMacsIn, authMacFailures, connectionsRefused: Counter
    private let deliveredMessages, deliveredBytes: Counter?
    private let broadcastsInFlight: Gauge?
    /// The engine's counters at the last update; zero for a ring that just started.
    private var last = Node.Statistics()

    init(factory: any MetricsFactory, dimensions: [(String, String)], delivered: Bool = false) {
        func counter(_ label: String, _ extra: [(String, String)] = []) -> Counter {
            Counter(label: label, dimensions: dimensions + extra, factory: factory)
        }
        broadcasts = counter("ringcast_broadcasts_total")
        lcrMessagesSent = counter("ringcast_lcr_messages_total", [("kind", "own")])
        lcrMessagesForwarded = counter("ringcast_lcr_messages_total", [("kind", "forwarded")])
        ringFramesIn = counter("ringcast_ring_frames_total", [("direction", "in")])
        ringFramesOut = counter("ringcast_ring_frames_total", [("direction", "out")])
        ringBytesIn = counter("ringcast_ring_bytes_total", [("direction", "in")])
        ringBytesOut = counter("ringcast_ring_bytes_total", [("direction", "out")])
        payloadCopies = counter("ringcast_payload_copies_total")
        windowFull = counter("ringcast_window_full_total")
        linkStarvedNanos = counter("ringcast_link_starved_nanoseconds_total")
        receiveStalls = counter("ringcast_receive_stalls_total")
        deliveryStalls = counter("ringcast_delivery_stalls_total")
        congestionRefused = counter("ringcast_congestion_refused_total")
        authHandshakes = counter("ringcast_auth_handshakes_total", [("plane", "ring")])
        authRejected = counter("ringcast_auth_rejected_total", [("plane", "ring")])
        authMacsOut = counter("ringcast_auth_frame_tags_total", [("direction", "out")])
        authMacsIn = counter("ringcast_auth_frame_tags_total", [("direction", "in")])
        authMacFailures = counter("ringcast_auth_frame_tag_failures_total")
        connectionsRefused = counter("ringcast_ring_connections_refused_total")
        deliveredMessages = delivered ? counter("ringcast_delivered_messages_total") : nil
        deliveredBytes = delivered ? counter("ringcast_delivered_bytes_total") : nil
        broadcastsInFlight = delivered ? Gauge(label: "ringcast_broadcasts_in_flight", dimensions: dimensions, factory: factory) : nil
    }

    /// A new ring counts from zero.
    func restart() { last = Node.Statistics() }

    func update(_ now: Node.Statistics) {
        advance(broadcasts, now.broadcasts, last.broadcasts)
        advance(lcrMessagesSent, now.lcrMessagesSent, last.lcrMessagesSent)
        advance(lcrMessagesForwarded, now.forwarded, last.forwarded)
        advance(ringFramesIn, now.framesIn, last.framesIn)
        advance(ringFramesOut, now.framesOut, last.framesOut)
        advance(ringBytesIn, now.bytesIn, last.bytesIn)
        advance(ringBytesOut, now.bytesOut, last.bytesOut)
        advance(payloadCopies, now.payloadCopies, last.payloadCopies)
        advance(windowFull, now.windowFull, last.windowFull)
        advance(linkStarvedNanos, now.linkStarvedNanos, last.linkStarvedNanos)
        advance(receiveStalls, now.receiveStalls, last.receiveStalls)
        advance(deliveryStalls, now.deliveryStalls, last.deliveryStalls)
        advance(congestionRefused, now.congestionRefused, last.congestionRefused)
        advance(authHandshakes, now.authHandshakes, last.authHandshakes)
        advance(authRejected, now.authRejected, last.authRejected)
        advance(authMacsOut, now.authMacsOut, last.authMacsOut)
        advance(authMacsIn, now.authMacsIn, last.authMacsIn)
        advance(authMacFailures, now.authMacFailures, last.authMacFailures)
        advance(connectionsRefused, now.connectionsRefused + now.acceptsRejected, last.connectionsRefused + last.acceptsRejected)
        if let deliveredMessages, let deliveredBytes {
            advance(deliveredMessages, now.deliveredMessages, last.deliveredMessages)
            advance(deliveredBytes, now.deliveredBytes, last.deliveredBytes)
        }
        broadcastsInFlight?.record(now.broadcastsInFlight)
        last = now
    }
}

/// Counters only grow: add what a statistic gained since the last update.
private func advance(_ counter: Counter, _ now: UInt64, _ before: UInt64) {
    guard now > before else { return }
    counter.increment(by: Int64(clamping: now - before))
}
