import Foundation

/// The numbers of §2.6 computed from the nodes' outputs. Pure functions: tested on synthetic outputs.
public enum BenchMetrics {
    /// The best a broadcast can do over links of `rawLinkMbitPerSecond` (§2.5.1, Fig. 2.14's optimal line):
    /// one link's worth when some processes only receive, n/(n−1) of it when all n send (each process then
    /// receives n−1 shares of its incoming link and contributes its own without receiving it).
    public static func optimalMbitPerSecond(rawLinkMbitPerSecond: Double, nodeCount: Int, senderCount: Int) -> Double {
        precondition(nodeCount >= 2 && (1...nodeCount).contains(senderCount), "k-to-n needs 1 ≤ k ≤ n, n ≥ 2")
        return senderCount == nodeCount ? rawLinkMbitPerSecond * Double(nodeCount) / Double(nodeCount - 1)
                                        : rawLinkMbitPerSecond
    }

    /// The plotted throughput of §2.6.2: the average over processes of each one's delivery throughput.
    public static func meanThroughputMbitPerSecond(_ nodes: [NodeOutput]) -> Double {
        nodes.isEmpty ? 0 : nodes.reduce(0) { $0 + $1.throughputMbitPerSecond } / Double(nodes.count)
    }

    /// mean / optimal; nil without an optimal (no raw link measured).
    public static func efficiency(meanMbitPerSecond: Double, optimalMbitPerSecond: Double?) -> Double? {
        guard let optimal = optimalMbitPerSecond, optimal > 0 else { return nil }
        return meanMbitPerSecond / optimal
    }

    /// §2.6.4: with fairness every node delivers 1/k of its messages from each of the k senders. The largest
    /// distance from 1/k over every node and sender (a sender missing from a node's map counts as 0).
    public static func fairnessMaxDeviation(_ nodes: [NodeOutput], senderIDs: [Int]) -> Double? {
        guard !senderIDs.isEmpty, !nodes.isEmpty else { return nil }
        let fair = 1 / Double(senderIDs.count)
        var worst = 0.0
        for node in nodes where node.deliveredMessages > 0 {
            for sender in Set(senderIDs).union(node.senderFractions.keys) {
                let expected = senderIDs.contains(sender) ? fair : 0
                worst = max(worst, abs((node.senderFractions[sender] ?? 0) - expected))
            }
        }
        return worst
    }

    public struct OrderAgreement: Sendable, Equatable {
        public var agreed: Bool
        public var totalDelivered: Int?
        public var orderDigest: String?
        public var problems: [String]
    }

    /// Agreement and total order from the outside: every node delivered the same number of messages with the
    /// same order digest (senders stop after the measurement and the cool-down drains the ring, so equal
    /// digests mean the same sequence). Nothing delivered is not agreement: it is a broken run.
    public static func orderAgreement(_ nodes: [NodeOutput]) -> OrderAgreement {
        var problems: [String] = []
        for node in nodes {
            if node.totalDelivered == nil { problems.append("node \(node.id) reported no total_delivered") }
            if node.orderDigest == nil { problems.append("node \(node.id) reported no order_digest") }
        }
        let totals = Set(nodes.compactMap(\.totalDelivered))
        let digests = Set(nodes.compactMap(\.orderDigest))
        if totals.count > 1 {
            problems.append("total_delivered differs: " + nodes.map { "node \($0.id) \($0.totalDelivered.map(String.init) ?? "-")" }.joined(separator: ", "))
        }
        if digests.count > 1 {
            problems.append("order_digest differs: " + nodes.map { "node \($0.id) \($0.orderDigest ?? "-")" }.joined(separator: ", "))
        }
        if nodes.isEmpty { problems.append("no node output") }
        if totals == [0] { problems.append("no node delivered anything") }
        return OrderAgreement(agreed: problems.isEmpty, totalDelivered: totals.count == 1 ? totals.first : nil,
                              orderDigest: digests.count == 1 ? digests.first : nil, problems: problems)
    }

    public struct Latency: Sendable, Equatable {
        public var p50Micros: Double?
        public var p99Micros: Double?
        public var maxMicros: Double?
        /// How the nodes' latencies were combined, said in the report.
        public var method: String
        public var samples: UInt64?
    }

    /// Cluster-wide broadcast-to-delivery latency. With every reporting node's histogram: the percentiles of
    /// the merged histogram. Otherwise an upper bound: the largest of the nodes' own p50 (p99, max). That is
    /// conservative because if each node has at least 99 % of its samples at or below its p99, then at least
    /// 99 % of all samples are at or below the largest of those p99s.
    public static func latency(_ nodes: [NodeOutput]) -> Latency {
        let reporting = nodes.filter { $0.latencyMicrosP50 != nil || $0.latencyMicrosMax != nil || $0.latencyHistogram?.isEmpty == false }
        guard !reporting.isEmpty else { return Latency(method: "none reported", samples: nil) }
        let ids = reporting.map { String($0.id) }.joined(separator: ",")
        let maxReported = reporting.compactMap(\.latencyMicrosMax).max()
        if reporting.allSatisfy({ $0.latencyHistogram?.isEmpty == false }) {
            var merged: [Double: UInt64] = [:]
            for node in reporting { for bucket in node.latencyHistogram! { merged[bucket.valueMicros, default: 0] += bucket.count } }
            let buckets = merged.sorted { $0.key < $1.key }
            let total = buckets.reduce(0) { $0 + $1.value }
            func percentile(_ p: Double) -> Double? {
                guard total > 0 else { return nil }
                let rank = UInt64((p * Double(total) / 100).rounded(.up))  // p·N/100 is exact for whole p and N
                var seen: UInt64 = 0
                for (value, count) in buckets {
                    seen += count
                    if seen >= max(rank, 1) { return value }
                }
                return buckets.last?.key
            }
            let histogramMax = buckets.last(where: { $0.value > 0 })?.key
            return Latency(p50Micros: percentile(50), p99Micros: percentile(99),
                           maxMicros: [histogramMax, maxReported].compactMap { $0 }.max(),
                           method: "merged histograms of nodes \(ids)", samples: total)
        }
        return Latency(p50Micros: reporting.compactMap(\.latencyMicrosP50).max(),
                       p99Micros: reporting.compactMap(\.latencyMicrosP99).max(),
                       maxMicros: maxReported,
                       method: "upper bound: largest per-node percentile of nodes \(ids) (no histograms to merge)",
                       samples: nil)
    }
}
