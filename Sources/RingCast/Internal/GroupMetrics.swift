import CoreMetrics

/// A member's statistics as swift-metrics: counters advance by what the statistics gained since the last update,
/// gauges take the current value, a timer records each view change. The shell thread calls ``update`` every
/// `metricsIntervalMillis` and before a ring is retired; nothing here runs per message, so a backend costs the
/// hot path nothing. Names, units and dimensions are listed in the DocC article *Observability*.
final class GroupMetrics {
    private struct Counters {
        let deliveredMessages, deliveredBytes, viewChanges, recoveredMessages, recoveryCopies: Counter
        let controlFramesIn, controlFramesOut, controlFramesIgnored: Counter
        let broadcasts, lcrMessagesSent, lcrMessagesForwarded, ringFramesIn, ringFramesOut, ringBytesIn, ringBytesOut: Counter
        let payloadCopies, windowFull, linkStarvedNanos, receiveStalls, deliveryStalls, congestionRefused: Counter
    }

    private let counters: Counters
    private let broadcastQueueDepth, broadcastsInFlight, viewID, viewMembers: Gauge
    private let viewChangeDuration: Timer
    /// The group-wide counters at the last update (they never go back).
    private var last = Group.Statistics()
    /// The engine's counters at the last update and the view whose ring they belong to: each view's ring counts
    /// from zero, so a new view id means a new baseline of zero.
    private var lastEngine = Node.Statistics()
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
        counters = Counters(
            deliveredMessages: counter("ringcast_delivered_messages_total"),
            deliveredBytes: counter("ringcast_delivered_bytes_total"),
            viewChanges: counter("ringcast_view_changes_total"),
            recoveredMessages: counter("ringcast_recovered_messages_total"),
            recoveryCopies: counter("ringcast_recovery_payload_copies_total"),
            controlFramesIn: counter("ringcast_control_frames_total", [("direction", "in")]),
            controlFramesOut: counter("ringcast_control_frames_total", [("direction", "out")]),
            controlFramesIgnored: counter("ringcast_control_frames_ignored_total"),
            broadcasts: counter("ringcast_broadcasts_total"),
            lcrMessagesSent: counter("ringcast_lcr_messages_total", [("kind", "own")]),
            lcrMessagesForwarded: counter("ringcast_lcr_messages_total", [("kind", "forwarded")]),
            ringFramesIn: counter("ringcast_ring_frames_total", [("direction", "in")]),
            ringFramesOut: counter("ringcast_ring_frames_total", [("direction", "out")]),
            ringBytesIn: counter("ringcast_ring_bytes_total", [("direction", "in")]),
            ringBytesOut: counter("ringcast_ring_bytes_total", [("direction", "out")]),
            payloadCopies: counter("ringcast_payload_copies_total"),
            windowFull: counter("ringcast_window_full_total"),
            linkStarvedNanos: counter("ringcast_link_starved_nanoseconds_total"),
            receiveStalls: counter("ringcast_receive_stalls_total"),
            deliveryStalls: counter("ringcast_delivery_stalls_total"),
            congestionRefused: counter("ringcast_congestion_refused_total"))
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
        Self.advance(counters.deliveredMessages, statistics.deliveredMessages, last.deliveredMessages)
        Self.advance(counters.deliveredBytes, statistics.deliveredBytes, last.deliveredBytes)
        Self.advance(counters.viewChanges, statistics.viewChanges, last.viewChanges)
        Self.advance(counters.recoveredMessages, statistics.recoveredMessages, last.recoveredMessages)
        Self.advance(counters.recoveryCopies, statistics.recoveryCopies, last.recoveryCopies)
        Self.advance(counters.controlFramesIn, statistics.controlFramesIn, last.controlFramesIn)
        Self.advance(counters.controlFramesOut, statistics.controlFramesOut, last.controlFramesOut)
        Self.advance(counters.controlFramesIgnored, statistics.membershipIgnored, last.membershipIgnored)
        last = statistics
        broadcastQueueDepth.record(statistics.broadcastsQueued)
        broadcastsInFlight.record(statistics.broadcastsInFlight)
        if let view {
            viewID.record(Int64(truncatingIfNeeded: view.id))
            viewMembers.record(view.members.count)
        }
        guard let engineViewID else { return }
        let before = engineViewID == lastEngineViewID ? lastEngine : Node.Statistics()
        let now = statistics.engine
        Self.advance(counters.broadcasts, now.broadcasts, before.broadcasts)
        Self.advance(counters.lcrMessagesSent, now.lcrMessagesSent, before.lcrMessagesSent)
        Self.advance(counters.lcrMessagesForwarded, now.forwarded, before.forwarded)
        Self.advance(counters.ringFramesIn, now.framesIn, before.framesIn)
        Self.advance(counters.ringFramesOut, now.framesOut, before.framesOut)
        Self.advance(counters.ringBytesIn, now.bytesIn, before.bytesIn)
        Self.advance(counters.ringBytesOut, now.bytesOut, before.bytesOut)
        Self.advance(counters.payloadCopies, now.payloadCopies, before.payloadCopies)
        Self.advance(counters.windowFull, now.windowFull, before.windowFull)
        Self.advance(counters.linkStarvedNanos, now.linkStarvedNanos, before.linkStarvedNanos)
        Self.advance(counters.receiveStalls, now.receiveStalls, before.receiveStalls)
        Self.advance(counters.deliveryStalls, now.deliveryStalls, before.deliveryStalls)
        Self.advance(counters.congestionRefused, now.congestionRefused, before.congestionRefused)
        lastEngine = now
        lastEngineViewID = engineViewID
    }

    /// One view change, from the first suspicion at this member to the installation of the next view.
    func recordViewChange(nanos: UInt64) {
        viewChangeDuration.recordNanoseconds(Int64(clamping: nanos))
    }

    private static func advance(_ counter: Counter, _ now: UInt64, _ before: UInt64) {
        guard now > before else { return }
        counter.increment(by: Int64(clamping: now - before))
    }
}
