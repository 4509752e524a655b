import RingCastJSON
import Foundation

/// What happened to the fault schedule in one run (filled by ``BenchRunner``; empty without faults).
public struct FaultRecord: Sendable, Equatable {
    /// Faults that took effect, in order.
    public var injected: [InjectedFault] = []
    /// Scheduled but never injected (every node had already exited); each also gives a warning.
    public var notInjected: [Fault] = []
    /// The measurement window on the benchmark's clock (CLOCK_REALTIME ns), shared by every node.
    public var measurementStartUnixNanos: Int64 = 0
    public var measurementEndUnixNanos: Int64 = 0
    /// Things the reader should know that did not fail the run (a node that exited non-zero but reported).
    public var warnings: [String] = []

    public init(injected: [InjectedFault] = [], notInjected: [Fault] = [], measurementStartUnixNanos: Int64 = 0,
                measurementEndUnixNanos: Int64 = 0, warnings: [String] = []) {
        self.injected = injected
        self.notInjected = notInjected
        self.measurementStartUnixNanos = measurementStartUnixNanos
        self.measurementEndUnixNanos = measurementEndUnixNanos
        self.warnings = warnings
    }

    public var killed: [Int] { injected.filter { $0.fault.kind == .kill }.map(\.fault.nodeID).sorted() }
    public var partitioned: [Int] { injected.filter { $0.fault.kind == .partition }.map(\.fault.nodeID).sorted() }
}

/// The outcome of one run: the nodes' outputs, the raw link, and the metrics of §2.6 derived from them.
public struct BenchResult: Sendable {
    public let config: BenchConfiguration
    public let placementDescription: String
    /// Every node that reported (killed nodes cannot), in id order.
    public let nodes: [NodeOutput]
    /// ringperf's JSON object for the raw-link stream test, nil if skipped.
    public let rawLink: JSONValue?
    public let deliveryLog: DeliveryLogCheck.Verdict?
    public let elapsedSeconds: Double
    public let faults: FaultRecord

    /// Nodes neither killed, partitioned nor excluded: the ones the metrics are computed over.
    public let survivors: [NodeOutput]
    public let meanThroughputMbitPerSecond: Double
    public let rawLinkMbitPerSecond: Double?
    public let optimalMbitPerSecond: Double?
    public let efficiency: Double?
    public let latency: BenchMetrics.Latency
    public let order: BenchMetrics.OrderAgreement
    public let fairnessMaxDeviation: Double?
    public let views: ViewChanges.Merged
    /// From the first fault until the survivors' throughput is back (``Recovery``).
    public let recovery: Recovery.Result
    /// The same for each fault on its own (baseline: the second before it), in the order of `faults.injected`.
    public let recoveryPerFault: [Recovery.Result]
    /// The emulated LAN's queues sampled during the measurement (``QdiscSampler``), nil on loopback.
    public let lanQueues: JSONValue?
    /// Where the senders' own messages spent their time (``LatencyDecomposition``), nil if no node reported it.
    public let decomposition: LatencyDecomposition?

    public init(config: BenchConfiguration, placementDescription: String, nodes: [NodeOutput], rawLink: JSONValue?,
                deliveryLog: DeliveryLogCheck.Verdict?, elapsedSeconds: Double, faults: FaultRecord = FaultRecord(),
                lanQueues: JSONValue? = nil) {
        self.config = config
        self.lanQueues = lanQueues
        self.placementDescription = placementDescription
        self.nodes = nodes
        self.rawLink = rawLink
        self.deliveryLog = deliveryLog
        self.elapsedSeconds = elapsedSeconds
        self.faults = faults
        let gone = Set(faults.killed + faults.partitioned)
        survivors = nodes.filter { !gone.contains($0.id) && !$0.excluded }
        meanThroughputMbitPerSecond = BenchMetrics.meanThroughputMbitPerSecond(survivors)
        rawLinkMbitPerSecond = rawLink?["throughput_mbit_s"]?.doubleValue
        optimalMbitPerSecond = rawLinkMbitPerSecond.map {
            BenchMetrics.optimalMbitPerSecond(rawLinkMbitPerSecond: $0, nodeCount: config.nodeCount,
                                              senderCount: config.senderCount)
        }
        efficiency = BenchMetrics.efficiency(meanMbitPerSecond: meanThroughputMbitPerSecond,
                                             optimalMbitPerSecond: optimalMbitPerSecond)
        latency = BenchMetrics.latency(survivors)
        decomposition = LatencyDecomposition(survivors.filter { config.broadcastingIDs.contains($0.id) })
        if config.hasFaults {
            // A joiner delivers a suffix, so totals and digests are compared among survivors of the initial view;
            // the delivery logs (--delivery-log) check joiners per view.
            let initial = survivors.filter { $0.id < config.nodeCount }
            order = initial.isEmpty
                ? BenchMetrics.OrderAgreement(agreed: false, totalDelivered: nil, orderDigest: nil,
                                              problems: ["no node of the initial view survived to compare"])
                : BenchMetrics.orderAgreement(initial)
            // Shares of 1/k assume every sender sends the whole window, which a fault breaks.
            fairnessMaxDeviation = nil
        } else {
            order = BenchMetrics.orderAgreement(nodes)
            fairnessMaxDeviation = BenchMetrics.fairnessMaxDeviation(nodes, senderIDs: config.senderIDs)
        }
        views = ViewChanges.merge(survivors: survivors, faults: faults.injected, requireViews: config.hasFaults,
                                  measurementEndUnixNanos: faults.measurementEndUnixNanos == 0 ? nil : faults.measurementEndUnixNanos)
        (recovery, recoveryPerFault) = Self.recoveries(survivors: survivors, faults: faults)
    }

    static func recoveries(survivors: [NodeOutput], faults: FaultRecord) -> (Recovery.Result, [Recovery.Result]) {
        guard let first = faults.injected.first, let last = faults.injected.last else { return (.noFaults, []) }
        let missing = survivors.filter { $0.timeline == nil }.map(\.id)
        let series = missing.isEmpty ? Recovery.sum(survivors.compactMap(\.timeline)) : nil
        guard let series else {
            let why = survivors.isEmpty ? "no survivors" :
                !missing.isEmpty ? "no timeline from node(s) \(missing.map(String.init).joined(separator: ", "))" :
                "the survivors' timelines have different bucket widths"
            let unknown = Recovery.Result(status: .unknown, millis: nil, baselineMbitPerSecond: nil, detail: why)
            return (unknown, faults.injected.map { _ in unknown })
        }
        // Never past any survivor's last bucket: a recorder that runs out of buckets adds later deliveries to its
        // last one, and that spike would look like a recovery.
        let covered = survivors.compactMap(\.timeline).map {
            $0.startUnixNanos + Int64($0.bucketMillis) * 1_000_000 * Int64(max(0, $0.deliveredBytes.count - 1))
        }.min() ?? faults.measurementEndUnixNanos
        let end = min(faults.measurementEndUnixNanos, covered)
        let overall = Recovery.compute(series: series, firstFaultUnixNanos: first.unixNanos,
                                       lastFaultUnixNanos: last.unixNanos, measurementEndUnixNanos: end)
        let each = faults.injected.map {
            Recovery.compute(series: series, firstFaultUnixNanos: $0.unixNanos, lastFaultUnixNanos: $0.unixNanos,
                             measurementEndUnixNanos: end)
        }
        return (overall, each)
    }

    /// Nodes that found themselves excluded (and were not partitioned on purpose).
    public var excludedIDs: [Int] { nodes.filter { $0.excluded && !faults.partitioned.contains($0.id) }.map(\.id) }

    /// Warnings of the schedule (majority lost in quorum mode, …) and of the run.
    public var warnings: [String] {
        config.warnings + faults.warnings + faults.notInjected.map { "\($0) was not injected: every node had already exited" }
    }

    /// The survivors agreed on every view's members (and reported their views when faults were injected).
    public var viewsAgreed: Bool { views.agreed }

    /// Total order held: the digests agree, and the delivery logs (when written) passed every check.
    public var orderAgreed: Bool { order.agreed && (deliveryLog?.ok ?? true) }

    /// The nodes whose totals must match: every node, or with faults the survivors of the initial view.
    var comparedNodes: [NodeOutput] { config.hasFaults ? survivors.filter { $0.id < config.nodeCount } : nodes }

    /// Every compared node delivered the same number of messages by the end of the cool-down.
    public var drained: Bool { Set(comparedNodes.compactMap(\.totalDelivered)).count <= 1 }

    /// When the nodes' totals differ, which fell short and by how much; a hint for the reader, since an
    /// undrained tail (the cool-down too short) is not the same failure as a different order.
    var drainHint: String? {
        guard !drained, let most = comparedNodes.compactMap(\.totalDelivered).max() else { return nil }
        let short = comparedNodes.filter { ($0.totalDelivered ?? 0) < most }
            .map { "node \($0.id) \(most - ($0.totalDelivered ?? 0)) short" }.joined(separator: ", ")
        let logs: String = switch deliveryLog {
        case .some(let log) where log.ok: "the delivery logs agree over their common prefix (\(log.commonPrefixLines) lines), so order held and the ring did not drain in time"
        case .some: "the delivery logs show a real disagreement (below)"
        case .none: "rerun with --delivery-log DIR to tell an undrained tail from a different order"
        }
        return "not every node drained in the cool-down (\(short)): lengthen --cooldown; \(logs)"
    }

    // MARK: JSON (ARCHITECTURE §3.2, a fixed contract: add fields, never rename)

    public var json: JSONValue {
        func optional(_ value: Double?) -> JSONValue { value.map(JSONValue.number) ?? .null }
        var fields: [(String, JSONValue)] = [
            ("config", configJSON),
            ("nodes", .array(nodes.map(nodeJSON))),
            ("mean_throughput_mbit_s", .number(meanThroughputMbitPerSecond)),
            ("raw_link_mbit_s", optional(rawLinkMbitPerSecond)),
            ("optimal_mbit_s", optional(optimalMbitPerSecond)),
            ("efficiency", optional(efficiency)),
            ("latency_us_p50", optional(latency.p50Micros)),
            ("latency_us_p99", optional(latency.p99Micros)),
            ("latency_us_max", optional(latency.maxMicros)),
            ("latency_method", .string(latency.method)),
            ("latency_samples", latency.samples.map { .integer(Int64($0)) } ?? .null),
            ("latency_decomposition", decompositionJSON),
            ("order_agreed", .bool(orderAgreed)),
            ("order_digest", order.orderDigest.map(JSONValue.string) ?? .null),
            ("total_delivered", order.totalDelivered.map { .integer(Int64($0)) } ?? .null),
            ("order_problems", .array(order.problems.map(JSONValue.string))),
            ("drained", .bool(drained)),
            ("delivery_log", deliveryLogJSON),
            ("fairness_max_deviation", optional(fairnessMaxDeviation)),
            ("raw_link", rawLink ?? .null),
            // Fault injection (ARCHITECTURE §3.1 --kill/--partition/--join); [] and null without faults.
            ("view_changes", .array(views.changes.map(viewChangeJSON))),
            ("recovery_ms", optional(recovery.millis)),
            ("recovery_status", .string(recovery.status.rawValue)),
            ("recovery_detail", .string(recovery.detail)),
            ("recovery_baseline_mbit_s", optional(recovery.baselineMbitPerSecond)),
            ("recovery_window_ms", .integer(Int64(Recovery.windowMillis))),
            ("recovery_hold_ms", .integer(Int64(Recovery.holdMillis))),
            ("views_agreed", .bool(viewsAgreed)),
            ("view_problems", .array(views.problems.map(JSONValue.string))),
            ("view_notes", .array(views.notes.map(JSONValue.string))),
            ("faults", .array(faultsJSON)),
            ("survivors", ids(survivors.map(\.id))),
            ("killed", ids(faults.killed)),
            ("partitioned", ids(faults.partitioned)),
            ("excluded", ids(excludedIDs)),
            ("warnings", .array(warnings.map(JSONValue.string))),
            ("elapsed_s", .number(elapsedSeconds)),
        ]
        fields.append(("placement", .string(placementDescription)))
        return .object(fields)
    }

    var decompositionJSON: JSONValue {
        guard let d = decomposition else { return lanQueues.map { .object([("lan_queues", $0)]) } ?? .null }
        var fields: [(String, JSONValue)] = [
            ("method", .string("engine timestamps of own messages (rc_engine_stats), means over the \(d.senders) senders' whole runs")),
            ("admit_wait_ms", .number(d.admitWaitMillis)),
            ("send_wait_ms", .number(d.sendWaitMillis)),
            ("ring_trip_ms", .number(d.ringTripMillis)),
            ("deliver_wait_ms", .number(d.deliverWaitMillis)),
            ("window_bytes_mean", .number(d.windowBytesMean)),
            ("ring_rtt_min_ms", .number(d.ringRoundTripMinMillis)),
        ]
        if let lanQueues { fields.append(("lan_queues", lanQueues)) }
        return .object(fields)
    }

    private func ids(_ list: [Int]) -> JSONValue { .array(list.map { .integer(Int64($0)) }) }

    func viewChangeJSON(_ change: ViewChange) -> JSONValue {
        func optional(_ value: Double?) -> JSONValue { value.map(JSONValue.number) ?? .null }
        return .object([
            ("view_id", .integer(Int64(change.viewID))),
            ("members", ids(change.members)),
            ("cause", .string(change.cause)),
            ("causes", .array(change.causes.map(JSONValue.string))),
            ("detect_to_view_ms", optional(change.detectToViewMillis)),
            ("fault_to_view_ms", optional(change.faultToViewMillis)),
            ("fault", change.fault.map { .string($0.description) } ?? .null),
            ("attribution", change.attribution.map(JSONValue.string) ?? .null),
            ("during_measurement", .bool(change.duringMeasurement)),
            ("installed_by", ids(change.installedBy)),
            ("install_spread_ms", .number(change.installSpreadMillis)),
        ])
    }

    var faultsJSON: [JSONValue] {
        func optional(_ value: Double?) -> JSONValue { value.map(JSONValue.number) ?? .null }
        return faults.injected.enumerated().map { index, injected in
            let first = views.changes.first { $0.fault == injected.fault }
            let recovered = index < recoveryPerFault.count ? recoveryPerFault[index] : Recovery.Result.noFaults
            return .object([
                ("kind", .string(injected.fault.kind.rawValue)),
                ("node", .integer(Int64(injected.fault.nodeID))),
                ("at_s", .number(injected.fault.atSeconds)),
                ("injected_unix_ns", .integer(injected.unixNanos)),
                ("late_ms", .number(injected.lateMillis)),
                ("view_id", first.map { .integer(Int64($0.viewID)) } ?? .null),
                ("fault_to_view_ms", optional(first?.faultToViewMillis)),
                ("detect_to_view_ms", optional(first?.detectToViewMillis)),
                ("recovery_ms", optional(recovered.millis)),
                ("recovery_status", .string(recovered.status.rawValue)),
            ])
        }
    }

    var configJSON: JSONValue {
        func optionalInt(_ value: Int?) -> JSONValue { value.map { .integer(Int64($0)) } ?? .null }
        return .object([
            ("nodes", .integer(Int64(config.nodeCount))),
            ("senders", .integer(Int64(config.senderCount))),
            ("sender_ids", .array(config.senderIDs.map { .integer(Int64($0)) })),
            ("size_bytes", .integer(Int64(config.messageSizeBytes))),
            ("warmup_s", .number(config.warmupSeconds)),
            ("duration_s", .number(config.durationSeconds)),
            ("cooldown_s", .number(config.cooldownSeconds)),
            ("fairness", .string(config.fairness ? "on" : "off")),
            ("window", optionalInt(config.window)),
            ("window_bytes", optionalInt(config.windowBytes)),
            ("batch_count", optionalInt(config.batchCount)),
            ("batch_bytes", optionalInt(config.batchBytes)),
            ("zerocopy", config.zerocopy.map(JSONValue.string) ?? .null),
            ("congestion", .string(config.congestion ?? "cubic")),
            ("auth", .string(config.auth ?? "none")),
            ("encrypt", .bool(config.encrypt)),
            ("network", .string(config.isLAN ? "lan" : "loopback")),
            ("lan_rate", config.lanRate.map(JSONValue.string) ?? .null),
            ("lan_rate_mbit_s", config.lanRate.flatMap(LinkRate.megabitsPerSecond).map(JSONValue.number) ?? .null),
            ("raw_link_duration_s", .number(config.effectiveRawLinkSeconds)),
            ("setup_s", .number(config.effectiveSetupSeconds)),
            ("deadline_s", .number(config.effectiveSetupSeconds + config.nodePhaseSeconds + config.graceSeconds)),
            ("delivery_log_dir", config.deliveryLogDirectory.map(JSONValue.string) ?? .null),
            ("mode", .string(config.mode.rawValue)),
            ("heartbeat_ms", .integer(Int64(config.heartbeatMillis))),
            ("suspect_ms", .integer(Int64(config.suspectMillis))),
            ("faults", .array(config.faults.map { .string($0.description) })),
            ("joins", .integer(Int64(config.joinCount))),
            ("join_send", .bool(config.joinersSend)),
            ("total_nodes", .integer(Int64(config.totalNodeCount))),
        ])
    }

    /// The contract's six fields first, then whatever else the node printed (its histogram excepted).
    func nodeJSON(_ node: NodeOutput) -> JSONValue {
        var fields: [(String, JSONValue)] = [
            ("id", .integer(Int64(node.id))),
            ("delivered_messages", .integer(Int64(node.deliveredMessages))),
            ("delivered_bytes", .integer(Int64(node.deliveredBytes))),
            ("throughput_mbit_s", .number(node.throughputMbitPerSecond)),
            ("cpu_percent", node.cpuPercent.map(JSONValue.number) ?? .null),
            ("sender_fractions", .object(node.senderFractions.sorted { $0.key < $1.key }.map { (String($0.key), .number($0.value)) })),
            ("sender", .bool(config.broadcastingIDs.contains(node.id))),
            ("survivor", .bool(survivors.contains { $0.id == node.id })),
        ]
        let known = Set(fields.map(\.0) + ["latency_histogram"])
        if case .object(let raw) = node.raw {
            fields += raw.filter { !known.contains($0.0) }
        }
        return .object(fields)
    }

    var deliveryLogJSON: JSONValue {
        guard let log = deliveryLog else { return .null }
        return .object([
            ("ok", .bool(log.ok)),
            ("lines_per_node", .object(log.linesPerNode.sorted { $0.key < $1.key }.map { (String($0.key), .integer(Int64($0.value))) })),
            ("common_prefix_lines", .integer(Int64(log.commonPrefixLines))),
            ("problem_count", .integer(Int64(log.problemCount))),
            ("problems", .array(log.problems.map(JSONValue.string))),
        ])
    }

    // MARK: text for people

    public var table: String {
        func f(_ value: Double?, _ digits: Int = 1) -> String { value.map { String(format: "%.\(digits)f", $0) } ?? "-" }
        var lines: [String] = []
        let senders = config.allSend ? "all \(config.nodeCount) send" :
            "\(config.senderCount) send (\(config.senderIDs.map(String.init).joined(separator: ",")))"
        lines.append("RingCast k-to-n benchmark (thesis §2.6.2): \(config.nodeCount) nodes, \(senders), " +
                     "\(config.messageSizeBytes) B messages, fairness \(config.fairness ? "on" : "off")")
        lines.append("on \(placementDescription); warm-up \(format(config.warmupSeconds)) s, measurement " +
                     "\(format(config.durationSeconds)) s, cool-down \(format(config.cooldownSeconds)) s")
        lines.append("")
        let widths = [5, 9, 11, 10, 8, 0]
        lines.append(pad(["node", "role", "delivered", "Mbit/s", "CPU %", "sender fractions"], widths))
        for id in 0..<config.totalNodeCount {
            let role = config.broadcastingIDs.contains(id) ? "sender" : "receiver"
            guard let node = nodes.first(where: { $0.id == id }) else {
                let fate = faults.killed.contains(id) ? "killed: no report" : "no report"
                lines.append(pad([String(id), role, "-", "-", "-", fate], widths))
                continue
            }
            var fractions = node.senderFractions.sorted { $0.key < $1.key }
                .map { "\($0.key):\(String(format: "%.3f", $0.value))" }.joined(separator: " ")
            if faults.partitioned.contains(id) { fractions += "  (partitioned: not counted)" }
            else if node.excluded { fractions += "  (excluded: not counted)" }
            else if id >= config.nodeCount { fractions += "  (joiner)" }
            lines.append(pad([String(node.id), role, String(node.deliveredMessages), f(node.throughputMbitPerSecond),
                              f(node.cpuPercent), fractions], widths))
        }
        lines.append("")
        let n = config.nodeCount
        lines.append("mean throughput    \(f(meanThroughputMbitPerSecond)) Mbit/s" +
                     (config.hasFaults ? " (over the \(survivors.count) survivors)" : ""))
        if let raw = rawLinkMbitPerSecond {
            lines.append("raw link           \(f(raw)) Mbit/s (ringperf stream, 64 KiB sends, \(format(config.effectiveRawLinkSeconds)) s, node 0 → node 1)")
            lines.append("optimal            \(f(optimalMbitPerSecond)) Mbit/s " +
                         (config.allSend ? "(raw × n/(n−1) = \(n)/\(n - 1): all nodes send)" : "(raw × 1: not all nodes send)"))
            lines.append("efficiency         \(f(efficiency.map { $0 * 100 })) % of optimal")
        } else {
            lines.append("raw link           not measured (--raw-link-duration 0)")
        }
        lines.append("latency            p50 \(f(latency.p50Micros, 0)) µs, p99 \(f(latency.p99Micros, 0)) µs, " +
                     "max \(f(latency.maxMicros, 0)) µs (\(latency.method))")
        if let d = decomposition {
            lines.append("own messages (ms)  " + String(format: "queued for the window %.1f, send queue %.1f, round the ring %.1f, stable → delivered %.1f (means over %d senders)",
                                                        d.admitWaitMillis, d.sendWaitMillis, d.ringTripMillis, d.deliverWaitMillis, d.senders))
            lines.append("byte window        " + String(format: "%.0f KiB mean at the end, unloaded round trip ≥ %.2f ms", d.windowBytesMean / 1024, d.ringRoundTripMinMillis))
        }
        if let deviation = fairnessMaxDeviation {
            lines.append("fairness           largest distance of a sender's share from 1/k: \(String(format: "%.3f", deviation))")
        }
        if config.hasFaults { lines += faultLines() }
        if order.agreed {
            lines.append("order agreed       yes: \(comparedNodes.count) nodes delivered \(order.totalDelivered ?? 0) messages, digest \(order.orderDigest ?? "-")")
        } else {
            lines.append("order agreed       NO: " + order.problems.joined(separator: "; "))
            if let drainHint { lines.append("                   " + drainHint) }
        }
        if let log = deliveryLog {
            let counts = log.linesPerNode.sorted { $0.key < $1.key }.map { "\($0.value)" }.joined(separator: "/")
            let agreement = config.hasFaults ? "survivors agree view by view, excluded and killed nodes hold only what survivors delivered, in their order; "
                                             + "initial survivors identical over \(log.commonPrefixLines) lines (\(counts))"
                                             : "identical over \(log.commonPrefixLines) lines (\(counts))"
            lines.append("delivery logs      " + (log.ok ? "ok: \(agreement), per-origin sequences gap-free, no duplicates"
                                                      : "FAILED (\(log.problemCount) problems): " + log.problems.prefix(5).joined(separator: "; ")))
        }
        if !config.isLAN {
            let cores = ProcessInfo.processInfo.activeProcessorCount
            lines.append("note               on loopback the \(n) nodes share this machine's \(cores) cores and the raw link is one " +
                         "ringperf stream: efficiency here measures CPU more than links (use --lan RATE for §2.6's setting)")
        }
        for warning in warnings { lines.append("warning            " + warning) }
        lines.append("elapsed            \(f(elapsedSeconds)) s")
        return lines.joined(separator: "\n")
    }

    /// The fault section of the readable report.
    func faultLines() -> [String] {
        func f(_ value: Double?) -> String { value.map { String(format: "%.0f", $0) } ?? "-" }
        func list(_ ids: [Int]) -> String { ids.isEmpty ? "none" : ids.map(String.init).joined(separator: " ") }
        var lines: [String] = []
        let injected = faults.injected.map { "\($0.fault) s (\(String(format: "+%.0f", $0.lateMillis)) ms late)" }
        lines.append("faults             " + (injected.isEmpty ? "none injected" : injected.joined(separator: "; ")) +
                     ", \(config.mode.rawValue) mode, heartbeat \(config.heartbeatMillis) ms, suspect \(config.suspectMillis) ms")
        lines.append("survivors          \(list(survivors.map(\.id))) (killed \(list(faults.killed)); partitioned \(list(faults.partitioned)); excluded \(list(excludedIDs)))")
        if views.changes.isEmpty { lines.append("view changes       none reported by the survivors") }
        for (index, change) in views.changes.enumerated() {
            lines.append((index == 0 ? "view changes       " : "                   ") +
                         "view \(change.viewID) \(change.members) (\(change.cause)): detect→view \(f(change.detectToViewMillis)) ms, " +
                         "fault→view \(f(change.faultToViewMillis)) ms" + (change.fault.map { " after \($0)" } ??
                            (change.duringMeasurement ? " (no injected fault explains it)" : " (after the measurement: nodes finishing)")))
        }
        lines.append("views agreed       " + (viewsAgreed ? "yes" : "NO: " + views.problems.prefix(3).joined(separator: "; ")))
        for note in views.notes { lines.append("                   note: " + note) }
        switch recovery.status {
        case .recovered:
            lines.append("recovery           \(f(recovery.millis)) ms after the first fault (survivors' summed throughput back to ≥ 95 % of " +
                         "\(String(format: "%.1f", recovery.baselineMbitPerSecond ?? 0)) Mbit/s, its mean over the second before; \(recovery.detail))")
        case .notRecovered:
            lines.append("recovery           NOT RECOVERED: \(recovery.detail) (baseline \(String(format: "%.1f", recovery.baselineMbitPerSecond ?? 0)) Mbit/s)")
        case .noFaults, .unknown:
            lines.append("recovery           unknown: \(recovery.detail)")
        }
        return lines
    }

    private func pad(_ cells: [String], _ widths: [Int]) -> String {
        zip(cells, widths).map { cell, width in
            width == 0 ? "  " + cell : String(repeating: " ", count: max(1, width - cell.count)) + cell
        }.joined()
    }
}
