import Foundation
import Histogram
import RingCast
import RingCastJSON

/// What a node run measured, printed as one JSON object (ARCHITECTURE §3.2 `nodes` entry, and more) or as text.
struct Outcome {
    let settings: RunSettings
    var error: String?
    var endedBy = "not_started"
    var windowStartNanos: UInt64 = 0
    var windowEndNanos: UInt64 = 0
    var cpuPercent: Double?
    var sentMessages: UInt64 = 0
    var recorded: DeliveryRecorder.State?
    var statistics: Node.Statistics?
    var logError: String?
    var excluded = false
    var groupStatistics: Group.Statistics?
    /// The counters as they were at the end of the measured window, before any member shut down. The counters at the
    /// end include the cooldown, in which a member that finished first is suspected by the others (its links close)
    /// and a new view's ring starts its engine counters from zero.
    var windowEndStatistics: Node.Statistics?
    var windowEndGroupStatistics: Group.Statistics?

    init(settings: RunSettings) { self.settings = settings }

    /// Takes the counters once the engine thread has ended (after shutdown), closes the log.
    mutating func finish(recorder: DeliveryRecorder, node: Member?) {
        if case let .group(group)? = node {
            excluded = group.state == .excluded
            let stats = group.statistics
            groupStatistics = stats
        }
        node?.shutdown()
        recorder.viewsTask.withLock { $0?.cancel() }
        var closeError: String?
        var state = recorder.state.withLock { state in
            if var log = state.log.take() { closeError = log.close() }
            return state
        }
        logError = closeError
        state.log = nil
        recorded = state
        statistics = node?.statistics
        if let logError, error == nil { error = "writing the delivery log failed: \(logError)" }
    }

    mutating func recordWindowEnd(_ node: Member) {
        windowEndStatistics = node.statistics
        if case let .group(group) = node { windowEndGroupStatistics = group.statistics }
    }

    /// A few counters at the end of the measured window (see ``windowEndStatistics``): what a check of the window
    /// (nobody suspected, ring links authenticated) reads.
    func windowEndJSON() -> JSONValue {
        guard let stats = windowEndStatistics else { return .null }
        var fields: [(String, JSONValue)] = [
            ("auth_handshakes", .integer(Int64(stats.authHandshakes))),
            ("auth_macs_in", .integer(Int64(stats.authMacsIn))),
            ("auth_mac_failures", .integer(Int64(stats.authMacFailures))),
            ("auth_cipher_bytes", .integer(Int64(stats.authCipherBytes))),
            ("auth_rejected", .integer(Int64(stats.authRejected))),
            ("connections_refused", .integer(Int64(stats.connectionsRefused + stats.acceptsRejected))),
        ]
        if let group = windowEndGroupStatistics {
            fields.append(("view_changes", .integer(Int64(group.viewChanges))))
            fields.append(("control_auth_rejected", .integer(Int64(group.controlAuthRejected))))
            fields.append(("control_rejected", .integer(Int64(group.controlRejected))))
        }
        return .object(fields)
    }

    var durationSeconds: Double { Double(windowEndNanos - windowStartNanos) / 1e9 }

    var throughputMbitPerSecond: Double {
        guard let recorded, durationSeconds > 0 else { return 0 }
        return Double(recorded.windowBytes) * 8 / durationSeconds / 1e6
    }

    var senderFractions: [(Int, Double)] {
        guard let recorded, recorded.windowMessages > 0 else { return [] }
        return recorded.windowPerOrigin.enumerated().compactMap { origin, count in
            count == 0 ? nil : (origin, Double(count) / Double(recorded.windowMessages))
        }
    }

    /// Where this node's own messages spent their time, in ms per message (means over the whole run): the
    /// engine's decomposition (`rc_engine_stats`), from the producer's hand-over to the local delivery.
    func ownLatencyMeans(_ stats: Node.Statistics) -> JSONValue {
        guard stats.ownLatencySamples > 0 else { return .null }
        let count = Double(stats.ownLatencySamples)
        func mean(_ nanos: UInt64) -> JSONValue { .number(Double(nanos) / count / 1e6) }
        return .object([
            ("samples", .integer(Int64(stats.ownLatencySamples))),
            ("admit_wait", mean(stats.ownAdmitWaitNanos)),
            ("send_wait", mean(stats.ownSendWaitNanos)),
            ("ring_trip", mean(stats.ownRingTripNanos)),
            ("deliver_wait", mean(stats.ownDeliverWaitNanos)),
        ])
    }

    func latency(_ percentile: Double) -> JSONValue {
        guard let histogram = recorded?.latency, histogram.totalCount > 0 else { return .null }
        return .number(Double(percentile >= 100 ? histogram.max : histogram.valueAtPercentile(percentile)))
    }

    func json() -> String {
        let stats = statistics ?? Node.Statistics()
        let recorded = recorded
        var buckets: [JSONValue] = []
        if let histogram = recorded?.latency {
            for bucket in histogram.recordedValues() {
                buckets.append(.array([.integer(Int64(bucket.value)), .integer(Int64(bucket.count))]))
            }
        }
        var fields: [(String, JSONValue)] = []
        fields.append(("id", .integer(Int64(settings.id))))
        fields.append(("nodes", .integer(Int64(settings.nodes))))
        fields.append(("view_id", .integer(Int64(settings.viewId))))
        fields.append(("sender", .bool(settings.send)))
        fields.append(("size_bytes", .integer(Int64(settings.sizeBytes))))
        fields.append(("window_start_unix_ns", .integer(Int64(windowStartNanos))))
        fields.append(("duration_s", .number(durationSeconds)))
        fields.append(("delivered_messages", .integer(Int64(recorded?.windowMessages ?? 0))))
        fields.append(("delivered_bytes", .integer(Int64(recorded?.windowBytes ?? 0))))
        fields.append(("throughput_mbit_s", .number(throughputMbitPerSecond)))
        fields.append(("cpu_percent", cpuPercent.map(JSONValue.number) ?? .null))
        fields.append(("sender_fractions", .object(senderFractions.map { (String($0.0), .number($0.1)) })))
        fields.append(("latency_us_p50", latency(50)))
        fields.append(("latency_us_p99", latency(99)))
        fields.append(("latency_us_max", latency(100)))
        fields.append(("latency_samples", .integer(Int64(recorded?.latency.totalCount ?? 0))))
        fields.append(("latency_histogram", .object([("unit", .string("us")), ("buckets", .array(buckets))])))
        fields.append(("total_delivered", .integer(Int64(recorded?.totalMessages ?? 0))))
        fields.append(("total_delivered_bytes", .integer(Int64(recorded?.totalBytes ?? 0))))
        fields.append(("order_digest", .string(hex16(recorded?.orderDigest ?? FNV1a64.basis))))
        fields.append(("order_digest_covers_payload", .bool(settings.digestPayloads)))
        fields.append(("sent_messages", .integer(Int64(sentMessages))))
        fields.append(("broadcasts", .integer(Int64(stats.broadcasts))))
        fields.append(("payload_copies", .integer(Int64(stats.payloadCopies))))
        fields.append(("headerless_messages", .integer(Int64(recorded?.headerlessMessages ?? 0))))
        fields.append(("send_times_ahead", .integer(Int64(recorded?.sendTimesAhead ?? 0))))
        fields.append(("delivery_gap_max_ms", .number(Double(recorded?.deliveryGapMaxNanos ?? 0) / 1e6)))
        fields.append(("ended_by", .string(endedBy)))
        fields.append(("limits", .object([
                ("window", .integer(Int64(settings.limits.window))),
                ("window_bytes", .integer(Int64(settings.limits.windowBytes))),
                ("window_adaptive", .bool(settings.limits.windowAdaptive)),
                ("staging_bytes", .integer(Int64(settings.limits.stagingBytes))),
                ("rate_mbit_s", settings.rateBitsPerSecond.map { .number($0 / 1e6) } ?? .null),
                ("batch_count_max", .integer(Int64(settings.limits.batchCountMax))),
                ("batch_bytes_max", .integer(Int64(settings.limits.batchBytesMax))),
                ("fairness", .bool(settings.limits.fairness)),
                ("zerocopy_mode", .string(settings.limits.zeroCopy.rawValue)),
                ("congestion", .string(settings.limits.congestionControl.isEmpty ? "default" : settings.limits.congestionControl)),
            ])))
        fields.append(("engine", .object([
                ("broadcasts", .integer(Int64(stats.broadcasts))),
                ("delivered_messages", .integer(Int64(stats.deliveredMessages))),
                ("delivered_bytes", .integer(Int64(stats.deliveredBytes))),
                ("lcr_messages_sent", .integer(Int64(stats.lcrMessagesSent))),
                ("forwarded", .integer(Int64(stats.forwarded))),
                ("frames_in", .integer(Int64(stats.framesIn))),
                ("frames_out", .integer(Int64(stats.framesOut))),
                ("heartbeats_out", .integer(Int64(stats.heartbeatsOut))),
                ("payload_copies", .integer(Int64(stats.enginePayloadCopies))),
                ("recv_stalls", .integer(Int64(stats.receiveStalls))),
                ("delivery_stalls", .integer(Int64(stats.deliveryStalls))),
                ("bytes_in", .integer(Int64(stats.bytesIn))),
                ("bytes_out", .integer(Int64(stats.bytesOut))),
                ("zerocopy_fraction", .number(stats.zeroCopyFraction)),
                ("broadcast_waits", .integer(Int64(stats.broadcastWaits))),
                ("link_starved_ms", .number(Double(stats.linkStarvedNanos) / 1e6)),
                ("link_starved_window_ms", .number(Double(stats.linkStarvedWindowNanos) / 1e6)),
                ("window_full", .integer(Int64(stats.windowFull))),
                ("own_held", .integer(Int64(stats.ownHeld))),
                ("ack_only_frames", .integer(Int64(stats.ackOnlyFrames))),
                ("congestion_refused", .integer(Int64(stats.congestionRefused))),
                ("window_bytes_now", .integer(Int64(stats.windowBytesNow))),
                ("ring_rtt_min_ms", .number(Double(stats.ringRoundTripMinNanos) / 1e6)),
                ("auth_handshakes", .integer(Int64(stats.authHandshakes))),
                ("auth_rejected", .integer(Int64(stats.authRejected))),
                ("auth_macs_out", .integer(Int64(stats.authMacsOut))),
                ("auth_macs_in", .integer(Int64(stats.authMacsIn))),
                ("auth_mac_failures", .integer(Int64(stats.authMacFailures))),
                ("auth_cipher_bytes", .integer(Int64(stats.authCipherBytes))),
                ("connections_refused", .integer(Int64(stats.connectionsRefused + stats.acceptsRejected))),
            ])))
        fields.append(("own_latency_ms_mean", ownLatencyMeans(stats)))
        fields.append(("at_window_end", windowEndJSON()))
        if settings.members != nil, let recorded {
            var views: [JSONValue] = []
            for view in recorded.views {
                let members: [JSONValue] = view.members.map { JSONValue.integer(Int64($0)) }
                let causes: [JSONValue] = view.causes.map { JSONValue.string($0) }
                let entry: [(String, JSONValue)] = [
                    ("view_id", .integer(Int64(view.id))),
                    ("members", .array(members)),
                    ("causes", .array(causes)),
                    ("change_started_unix_ns", .integer(Int64(view.changeStartedUnixNanos))),
                    ("installed_unix_ns", .integer(Int64(view.installedUnixNanos))),
                ]
                views.append(.object(entry))
            }
            fields.append(("views", .array(views)))
            fields.append(("excluded", .bool(excluded)))
            let group = groupStatistics ?? Group.Statistics()
            fields.append(("group", .object([
                ("view_changes", .integer(Int64(group.viewChanges))),
                ("recovered_messages", .integer(Int64(group.recoveredMessages))),
                ("recovery_copies", .integer(Int64(group.recoveryCopies))),
                ("control_frames_in", .integer(Int64(group.controlFramesIn))),
                ("control_frames_out", .integer(Int64(group.controlFramesOut))),
                ("control_rejected", .integer(Int64(group.controlRejected))),
                ("control_auth_handshakes", .integer(Int64(group.controlAuthHandshakes))),
                ("control_auth_rejected", .integer(Int64(group.controlAuthRejected))),
                ("control_auth_mac_failures", .integer(Int64(group.controlAuthMacFailures))),
            ])))
        }
        if let recorded {
            fields.append(("timeline", .object([
                ("bucket_ms", .integer(Int64(DeliveryRecorder.timelineBucketNanos / 1_000_000))),
                ("start_unix_ns", .integer(Int64(recorded.timelineStart))),
                ("delivered_bytes", .array(recorded.timeline.prefix(recorded.timelineUsed).map { JSONValue.integer(Int64($0)) })),
            ])))
        }
        fields.append(("error", error.map(JSONValue.string) ?? .null))
        let object: JSONValue = .object(fields)
        return object.text
    }

    func text() -> String {
        let recorded = recorded
        let stats = statistics ?? Node.Statistics()
        func show(_ value: JSONValue) -> String { if case let .number(n) = value { String(format: "%.0f", n) } else { "-" } }
        var lines: [String] = []
        let role = settings.send ? ", sending \(settings.sizeBytes)-byte messages" : ", not sending"
        lines.append("ringcast-node \(settings.id)/\(settings.nodes) (listen \(settings.listen), successor \(settings.successor))" + role)
        let cpu = cpuPercent.map { String(format: "%.1f", $0) } ?? "-"
        let window = String(format: "%.2f", durationSeconds)
        let mbit = String(format: "%.1f", throughputMbitPerSecond)
        lines.append("  window \(window) s: \(recorded?.windowMessages ?? 0) messages, \(recorded?.windowBytes ?? 0) bytes, \(mbit) Mbit/s, CPU \(cpu) %")
        let fractions = senderFractions.map { "\($0.0): " + String(format: "%.3f", $0.1) }
        lines.append("  senders: " + (fractions.isEmpty ? "-" : fractions.joined(separator: ", ")))
        let samples = recorded?.latency.totalCount ?? 0
        lines.append("  latency µs: p50 \(show(latency(50))), p99 \(show(latency(99))), max \(show(latency(100))) (\(samples) samples)")
        let digestText = hex16(recorded?.orderDigest ?? FNV1a64.basis) + (settings.digestPayloads ? " (with payloads)" : "")
        lines.append("  whole run: \(recorded?.totalMessages ?? 0) delivered, \(sentMessages) sent, order digest \(digestText)")
        lines.append("  engine: \(stats.lcrMessagesSent) LCR messages sent, \(stats.forwarded) forwarded, payload copies \(stats.payloadCopies), receive stalls \(stats.receiveStalls), broadcast waits \(stats.broadcastWaits)")
        lines.append("  ended by: \(endedBy)")
        if let error { lines.append("  error: \(error)") }
        return lines.joined(separator: "\n")
    }
}

func hex16(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}
