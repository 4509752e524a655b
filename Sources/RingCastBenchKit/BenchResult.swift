import Foundation

/// The outcome of one run: the nodes' outputs, the raw link, and the metrics of §2.6 derived from them.
public struct BenchResult: Sendable {
    public let config: BenchConfiguration
    public let placementDescription: String
    public let nodes: [NodeOutput]
    /// ringperf's JSON object for the raw-link stream test, nil if skipped.
    public let rawLink: JSONValue?
    public let deliveryLog: DeliveryLogCheck.Verdict?
    public let elapsedSeconds: Double

    public let meanThroughputMbitPerSecond: Double
    public let rawLinkMbitPerSecond: Double?
    public let optimalMbitPerSecond: Double?
    public let efficiency: Double?
    public let latency: BenchMetrics.Latency
    public let order: BenchMetrics.OrderAgreement
    public let fairnessMaxDeviation: Double?

    public init(config: BenchConfiguration, placementDescription: String, nodes: [NodeOutput], rawLink: JSONValue?,
                deliveryLog: DeliveryLogCheck.Verdict?, elapsedSeconds: Double) {
        self.config = config
        self.placementDescription = placementDescription
        self.nodes = nodes
        self.rawLink = rawLink
        self.deliveryLog = deliveryLog
        self.elapsedSeconds = elapsedSeconds
        meanThroughputMbitPerSecond = BenchMetrics.meanThroughputMbitPerSecond(nodes)
        rawLinkMbitPerSecond = rawLink?["throughput_mbit_s"]?.doubleValue
        optimalMbitPerSecond = rawLinkMbitPerSecond.map {
            BenchMetrics.optimalMbitPerSecond(rawLinkMbitPerSecond: $0, nodeCount: config.nodeCount,
                                              senderCount: config.senderCount)
        }
        efficiency = BenchMetrics.efficiency(meanMbitPerSecond: meanThroughputMbitPerSecond,
                                             optimalMbitPerSecond: optimalMbitPerSecond)
        latency = BenchMetrics.latency(nodes)
        order = BenchMetrics.orderAgreement(nodes)
        fairnessMaxDeviation = BenchMetrics.fairnessMaxDeviation(nodes, senderIDs: config.senderIDs)
    }

    /// Total order held: the digests agree, and the delivery logs (when written) passed every check.
    public var orderAgreed: Bool { order.agreed && (deliveryLog?.ok ?? true) }

    /// Every node delivered the same number of messages by the end of the cool-down.
    public var drained: Bool { Set(nodes.compactMap(\.totalDelivered)).count <= 1 }

    /// When the nodes' totals differ, which fell short and by how much; a hint for the reader, since an
    /// undrained tail (the cool-down too short) is not the same failure as a different order.
    var drainHint: String? {
        guard !drained, let most = nodes.compactMap(\.totalDelivered).max() else { return nil }
        let short = nodes.filter { ($0.totalDelivered ?? 0) < most }
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
            ("order_agreed", .bool(orderAgreed)),
            ("order_digest", order.orderDigest.map(JSONValue.string) ?? .null),
            ("total_delivered", order.totalDelivered.map { .integer(Int64($0)) } ?? .null),
            ("order_problems", .array(order.problems.map(JSONValue.string))),
            ("drained", .bool(drained)),
            ("delivery_log", deliveryLogJSON),
            ("fairness_max_deviation", optional(fairnessMaxDeviation)),
            ("raw_link", rawLink ?? .null),
            // Fault injection (ARCHITECTURE §3.1 --kill/--partition/--join) fills these; none is injected yet.
            ("view_changes", .array([])),
            ("recovery_ms", .null),
            ("elapsed_s", .number(elapsedSeconds)),
        ]
        fields.append(("placement", .string(placementDescription)))
        return .object(fields)
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
            ("network", .string(config.isLAN ? "lan" : "loopback")),
            ("lan_rate", config.lanRate.map(JSONValue.string) ?? .null),
            ("lan_rate_mbit_s", config.lanRate.flatMap(LinkRate.megabitsPerSecond).map(JSONValue.number) ?? .null),
            ("raw_link_duration_s", .number(config.effectiveRawLinkSeconds)),
            ("setup_s", .number(config.effectiveSetupSeconds)),
            ("deadline_s", .number(config.effectiveSetupSeconds + config.nodePhaseSeconds + config.graceSeconds)),
            ("delivery_log_dir", config.deliveryLogDirectory.map(JSONValue.string) ?? .null),
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
            ("sender", .bool(config.senderIDs.contains(node.id))),
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
        lines.append(pad(["node", "role", "delivered", "Mbit/s", "CPU %", "sender fractions"], [5, 9, 11, 10, 8, 0]))
        for node in nodes {
            let fractions = node.senderFractions.sorted { $0.key < $1.key }
                .map { "\($0.key):\(String(format: "%.3f", $0.value))" }.joined(separator: " ")
            lines.append(pad([String(node.id), config.senderIDs.contains(node.id) ? "sender" : "receiver",
                              String(node.deliveredMessages), f(node.throughputMbitPerSecond), f(node.cpuPercent),
                              fractions], [5, 9, 11, 10, 8, 0]))
        }
        lines.append("")
        let n = config.nodeCount
        lines.append("mean throughput    \(f(meanThroughputMbitPerSecond)) Mbit/s")
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
        if let deviation = fairnessMaxDeviation {
            lines.append("fairness           largest distance of a sender's share from 1/k: \(String(format: "%.3f", deviation))")
        }
        if order.agreed {
            lines.append("order agreed       yes: \(nodes.count) nodes delivered \(order.totalDelivered ?? 0) messages, digest \(order.orderDigest ?? "-")")
        } else {
            lines.append("order agreed       NO: " + order.problems.joined(separator: "; "))
            if let drainHint { lines.append("                   " + drainHint) }
        }
        if let log = deliveryLog {
            let counts = log.linesPerNode.sorted { $0.key < $1.key }.map { "\($0.value)" }.joined(separator: "/")
            lines.append("delivery logs      " + (log.ok ? "ok: identical over \(log.commonPrefixLines) lines (\(counts)), per-origin sequences gap-free, no duplicates"
                                                      : "FAILED (\(log.problemCount) problems): " + log.problems.prefix(5).joined(separator: "; ")))
        }
        if !config.isLAN {
            let cores = ProcessInfo.processInfo.activeProcessorCount
            lines.append("note               on loopback the \(n) nodes share this machine's \(cores) cores and the raw link is one " +
                         "ringperf stream: efficiency here measures CPU more than links (use --lan RATE for §2.6's setting)")
        }
        lines.append("elapsed            \(f(elapsedSeconds)) s")
        return lines.joined(separator: "\n")
    }

    private func pad(_ cells: [String], _ widths: [Int]) -> String {
        zip(cells, widths).map { cell, width in
            width == 0 ? "  " + cell : String(repeating: " ", count: max(1, width - cell.count)) + cell
        }.joined()
    }
}
