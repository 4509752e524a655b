import RingCastJSON
import Testing
@testable import RingCastBenchKit

/// The numbers of thesis §2.6 computed from synthetic node outputs.
@Suite struct MetricsTests {
    static func node(_ id: Int, mbit: Double = 90, digest: String? = "d1", total: Int? = 1000,
                     fractions: [Int: Double] = [:], p50: Double? = nil, p99: Double? = nil, max: Double? = nil,
                     histogram: [NodeOutput.LatencyBucket]? = nil) -> NodeOutput {
        NodeOutput(id: id, deliveredMessages: 100, deliveredBytes: 1_000_000, throughputMbitPerSecond: mbit,
                   senderFractions: fractions, latencyMicrosP50: p50, latencyMicrosP99: p99, latencyMicrosMax: max,
                   latencyHistogram: histogram, totalDelivered: total, orderDigest: digest)
    }

    /// Fig. 2.13's optimal line is the raw link; Fig. 2.14's is n/(n−1) of it (93 Mbit/s in the thesis).
    @Test(arguments: [(5, 1, 93.0), (5, 3, 93.0), (5, 4, 93.0), (5, 5, 116.25), (3, 3, 139.5), (2, 2, 186.0)])
    func section2_6_2_optimalLine(nodes: Int, senders: Int, expected: Double) {
        let optimal = BenchMetrics.optimalMbitPerSecond(rawLinkMbitPerSecond: 93, nodeCount: nodes, senderCount: senders)
        #expect(abs(optimal - expected) < 1e-9)
    }

    @Test func section2_6_2_meanOverNodesAndEfficiency() {
        let nodes = [Self.node(0, mbit: 100), Self.node(1, mbit: 110), Self.node(2, mbit: 120)]
        let mean = BenchMetrics.meanThroughputMbitPerSecond(nodes)
        #expect(mean == 110)
        #expect(BenchMetrics.efficiency(meanMbitPerSecond: mean, optimalMbitPerSecond: 137.5) == 0.8)
        #expect(BenchMetrics.efficiency(meanMbitPerSecond: mean, optimalMbitPerSecond: nil) == nil)
        #expect(BenchMetrics.meanThroughputMbitPerSecond([]) == 0)
    }

    /// Fig. 2.17: 5 processes, 3 senders; fair means each node delivers 1/3 from each.
    @Test func figure2_17_fairnessDeviation() {
        let fair = (0..<5).map { Self.node($0, fractions: [0: 1.0 / 3, 1: 1.0 / 3, 2: 1.0 / 3]) }
        #expect(BenchMetrics.fairnessMaxDeviation(fair, senderIDs: [0, 1, 2])! < 1e-12)
        let unfair = fair + [Self.node(5, fractions: [0: 0.5, 1: 0.25, 2: 0.25])]
        #expect(abs(BenchMetrics.fairnessMaxDeviation(unfair, senderIDs: [0, 1, 2])! - (0.5 - 1.0 / 3)) < 1e-12)
        // A sender missing from a node's map counts as 0; a non-sender with deliveries counts against 0.
        let missing = [Self.node(0, fractions: [0: 1.0])]
        #expect(BenchMetrics.fairnessMaxDeviation(missing, senderIDs: [0, 1]) == 0.5)
    }

    @Test func orderAgreedWhenDigestsAndTotalsMatch() {
        let agreement = BenchMetrics.orderAgreement((0..<5).map { Self.node($0) })
        #expect(agreement.agreed && agreement.problems.isEmpty)
        #expect(agreement.totalDelivered == 1000 && agreement.orderDigest == "d1")
    }

    @Test func orderMismatchIsDetected() {
        let nodes = [Self.node(0), Self.node(1), Self.node(2, digest: "d2")]
        let agreement = BenchMetrics.orderAgreement(nodes)
        #expect(!agreement.agreed)
        #expect(agreement.problems.contains { $0.contains("order_digest differs") && $0.contains("node 2 d2") })
    }

    @Test func totalMismatchIsDetected() {
        let agreement = BenchMetrics.orderAgreement([Self.node(0), Self.node(1, total: 999)])
        #expect(!agreement.agreed)
        #expect(agreement.problems.contains { $0.contains("total_delivered differs") })
    }

    @Test func missingDigestOrEmptyRunIsNotAgreement() {
        #expect(!BenchMetrics.orderAgreement([Self.node(0), Self.node(1, digest: nil)]).agreed)
        #expect(!BenchMetrics.orderAgreement([Self.node(0, total: 0), Self.node(1, total: 0)]).agreed)
        #expect(!BenchMetrics.orderAgreement([]).agreed)
    }

    @Test func latencyMergesHistograms() {
        typealias B = NodeOutput.LatencyBucket
        // Node 0: 98 samples at 100 µs, 2 at 5000 µs. Node 1: 100 at 200 µs. Merged, 200 samples: 98 at
        // 100 µs, then 100 at 200 µs (cumulative 198), then 2 at 5000 µs.
        let a = Self.node(0, max: 5000, histogram: [B(valueMicros: 100, count: 98), B(valueMicros: 5000, count: 2)])
        let b = Self.node(1, max: 210, histogram: [B(valueMicros: 200, count: 100)])
        let merged = BenchMetrics.latency([a, b])
        #expect(merged.samples == 200)
        #expect(merged.p50Micros == 200)  // rank 100: past the 98 at 100 µs
        #expect(merged.p99Micros == 200)  // rank 198: the last 200 µs sample
        #expect(merged.maxMicros == 5000)
        #expect(merged.method.hasPrefix("merged histograms"))
    }

    @Test func latencyWithoutHistogramsIsAnUpperBound() {
        let nodes = [Self.node(0, p50: 100, p99: 900, max: 1500), Self.node(1, p50: 300, p99: 700, max: 2000),
                     Self.node(2)]  // a receiver that measured nothing
        let combined = BenchMetrics.latency(nodes)
        #expect(combined.p50Micros == 300 && combined.p99Micros == 900 && combined.maxMicros == 2000)
        #expect(combined.method.hasPrefix("upper bound"))
        #expect(BenchMetrics.latency([Self.node(0)]).p50Micros == nil)
    }

    @Test func nodeJSONOfTheContractIsRead() throws {
        let stdout = "ringcast-node 3: connected\n" + #"{"id": 3, "delivered_messages": 1200, "delivered_bytes": 12000000, "# +
            #""throughput_mbit_s": 91.5, "cpu_percent": 20, "sender_fractions": {"0": 0.2, "1": 0.8}, "# +
            #""latency_us_p50": 4000, "latency_us_p99": 7000, "latency_us_max": 9000, "# +
            #""latency_histogram": [[4000, 10], [7000, 1]], "total_delivered": 5000, "order_digest": "9f3a", "# +
            #""payload_copies": 0, "broadcasts": 250}"# + "\n"
        let node = try NodeOutput.parse(stdout: stdout)
        #expect(node.id == 3 && node.deliveredMessages == 1200 && node.deliveredBytes == 12_000_000)
        #expect(node.throughputMbitPerSecond == 91.5 && node.cpuPercent == 20)
        #expect(node.senderFractions == [0: 0.2, 1: 0.8])
        #expect(node.latencyHistogram == [.init(valueMicros: 4000, count: 10), .init(valueMicros: 7000, count: 1)])
        #expect(node.totalDelivered == 5000 && node.orderDigest == "9f3a")
        #expect(node.raw["broadcasts"]?.intValue == 250)
    }

    @Test func histogramShapes() throws {
        let keyed = try NodeOutput.histogram(JSONValue.parse(#"{"100": 3, "50.5": 1}"#))
        #expect(keyed == [.init(valueMicros: 50.5, count: 1), .init(valueMicros: 100, count: 3)])
        let nanos = try NodeOutput.histogram(JSONValue.parse(#"{"unit": "ns", "buckets": [[2000, 4]]}"#))
        #expect(nanos == [.init(valueMicros: 2, count: 4)])
        #expect(throws: NodeOutputError.self) { _ = try NodeOutput.histogram(JSONValue.parse(#""nope""#)) }
    }

    @Test func nodeJSONMissingAFieldIsRefused() {
        #expect(throws: NodeOutputError.self) {
            _ = try NodeOutput.parse(stdout: #"{"id": 0, "delivered_messages": 1, "throughput_mbit_s": 1}"#)
        }
        #expect(throws: NodeOutputError.self) { _ = try NodeOutput.parse(stdout: "no json here\n") }
    }

    @Test func jsonTextIsStable() {
        let value = JSONValue.object([("b", .integer(1)), ("a", .array([.number(0.5), .null, .bool(true)])),
                                      ("s", .string("q\"\\\n")), ("n", .number(.nan)), ("w", .number(3))])
        #expect(value.text == #"{"b": 1, "a": [0.5, null, true], "s": "q\"\\\n", "n": null, "w": 3}"#)
    }
}

/// The report built from node outputs: the JSON contract of ARCHITECTURE §3.2 and the words for people.
@Suite struct ResultTests {
    static func config(nodes: Int, senders: [Int]) -> BenchConfiguration {
        var config = BenchConfiguration()
        config.nodeCount = nodes
        config.senderIDs = senders
        return config
    }

    @Test func jsonCarriesTheContractFields() throws {
        let nodes = (0..<3).map { MetricsTests.node($0, mbit: 100, fractions: [0: 0.5, 1: 0.5]) }
        let result = BenchResult(config: Self.config(nodes: 3, senders: [0, 1]), placementDescription: "test", nodes: nodes,
                                 rawLink: .object([("throughput_mbit_s", .number(125))]), deliveryLog: nil, elapsedSeconds: 1)
        let json = try JSONValue.parse(result.json.text)
        #expect(json["mean_throughput_mbit_s"]?.doubleValue == 100)
        #expect(json["raw_link_mbit_s"]?.doubleValue == 125)
        #expect(json["optimal_mbit_s"]?.doubleValue == 125)  // 2 of 3 send: raw × 1
        #expect(json["efficiency"]?.doubleValue == 0.8)
        #expect(json["order_agreed"] == .bool(true) && json["drained"] == .bool(true))
        #expect(json["view_changes"] == .array([]) && json["recovery_ms"] == .null)
        guard case .array(let entries)? = json["nodes"], let first = entries.first else { Issue.record("no nodes"); return }
        for key in ["id", "delivered_messages", "delivered_bytes", "throughput_mbit_s", "cpu_percent", "sender_fractions"] {
            #expect(first[key] != nil, "node field \(key)")
        }
        #expect(json["config"]?["senders"]?.intValue == 2 && json["config"]?["nodes"]?.intValue == 3)
    }

    @Test func anUndrainedTailIsToldApartFromADifferentOrder() {
        let nodes = [MetricsTests.node(0, total: 100), MetricsTests.node(1, digest: "d2", total: 90)]
        let logOK = DeliveryLogCheck.Verdict(linesPerNode: [0: 100, 1: 90], commonPrefixLines: 90, problems: [], problemCount: 0)
        let result = BenchResult(config: Self.config(nodes: 2, senders: [0]), placementDescription: "test", nodes: nodes,
                                 rawLink: nil, deliveryLog: logOK, elapsedSeconds: 1)
        #expect(!result.orderAgreed && !result.drained)
        #expect(result.table.contains("node 1 10 short") && result.table.contains("order held"))
        #expect(result.json["raw_link_mbit_s"] == .null && result.json["efficiency"] == .null)
    }
}
