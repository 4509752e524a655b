import Foundation
import Testing

/// `ringcast-node --metrics-listen`, `ringcast-node status` and SIGTERM as a graceful leave, over real processes.
@Suite("ringcast-node: metrics endpoint, status, graceful shutdown", .serialized)
struct NodeObservabilityTests {
    /// Every metric the README documents, by name.
    static let documentedMetrics = [
        "ringcast_delivered_messages_total", "ringcast_delivered_bytes_total", "ringcast_view_changes_total",
        "ringcast_recovered_messages_total", "ringcast_recovery_payload_copies_total", "ringcast_control_frames_total",
        "ringcast_control_frames_ignored_total", "ringcast_broadcasts_total", "ringcast_lcr_messages_total",
        "ringcast_ring_frames_total", "ringcast_ring_bytes_total", "ringcast_payload_copies_total",
        "ringcast_window_full_total", "ringcast_link_starved_nanoseconds_total", "ringcast_receive_stalls_total",
        "ringcast_delivery_stalls_total", "ringcast_congestion_refused_total", "ringcast_broadcast_queue_depth",
        "ringcast_broadcasts_in_flight", "ringcast_view_id", "ringcast_view_members",
        "ringcast_view_change_duration_seconds_count",
    ]

    /// The samples of a Prometheus text answer: `name{labels}` → value.
    static func samples(_ text: String) -> [String: Double] {
        var result: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            result[String(line[..<space])] = value
        }
        return result
    }

    static func value(_ samples: [String: Double], _ name: String, _ labels: String = "") -> Double? {
        samples["\(name){group=\"ringcast\",member=\"0\"\(labels)}"]
    }

    @Test("scraping a running member: the documented metrics with plausible values; status answers; SIGTERM leaves")
    func scrapeStatusAndGracefulLeave() async throws {
        let ports = freeLoopbackPortPairs(3)
        let members = ports.map { "127.0.0.1:\($0)" }.joined(separator: ",")
        let metricsAddress = "127.0.0.1:\(freeLoopbackPorts(1)[0])"
        let started = try (0..<3).map { id in
            try NodeProcessTests.start(["--id", "\(id)", "--members", members, "--send", "--size", "1000",
                                        "--warmup", "0.3", "--duration", "3", "--cooldown", "3", "--json"]
                                       + (id == 0 ? ["--metrics-listen", metricsAddress] : []))
        }
        defer { for (process, _, _) in started where process.isRunning { process.terminate() } }

        // Under way: the ring runs and delivers.
        var status = "", statusError = ""
        for _ in 0..<100 {
            try await Task.sleep(for: .milliseconds(100))
            let result = try NodeProcessTests.run(["status", metricsAddress, "--timeout", "5"])
            status = result.stdout
            statusError = result.stderr
            if result.status == 0 && status.contains("Delivered") && !status.contains("Delivered         0 ") { break }
        }
        #expect(status.contains("Node ID           0"), "\(status)\(statusError)")
        #expect(status.contains("State             running"), "\(status)")
        #expect(status.contains("Members           0 1 2"), "\(status)")
        try await Task.sleep(for: .milliseconds(500))
        let scrape = try NodeProcessTests.run(["status", metricsAddress, "--metrics", "--timeout", "5"])
        #expect(scrape.status == 0, "\(scrape.stderr)")
        for name in Self.documentedMetrics {
            #expect(scrape.stdout.contains(name), "/metrics lacks \(name)")
        }
        let before = Self.samples(scrape.stdout)
        let delivered = Self.value(before, "ringcast_delivered_messages_total") ?? 0
        #expect(delivered > 100, "delivered \(delivered)")
        #expect(Self.value(before, "ringcast_delivered_bytes_total") == delivered * 1000)
        #expect(Self.value(before, "ringcast_view_members") == 3)
        #expect(Self.value(before, "ringcast_view_id") == 1)
        #expect(Self.value(before, "ringcast_view_changes_total") == 0)
        #expect(Self.value(before, "ringcast_payload_copies_total") == 0)
        #expect((Self.value(before, "ringcast_ring_bytes_total", ",direction=\"in\"") ?? 0) >= delivered * 1000 / 3)

        // SIGTERM: member 2 leaves; the others install a view without it, caused by the leave (not a suspicion).
        started[2].0.terminate()
        var afterLeave = ""
        for _ in 0..<50 {
            try await Task.sleep(for: .milliseconds(100))
            afterLeave = try NodeProcessTests.run(["status", metricsAddress]).stdout
            if afterLeave.contains("Members           0 1\n") { break }
        }
        #expect(afterLeave.contains("Members           0 1\n"), "\(afterLeave)")
        #expect(afterLeave.contains("Last change       left 2"), "\(afterLeave)")
        let after = Self.samples(try NodeProcessTests.run(["status", metricsAddress, "--metrics"]).stdout)
        #expect(Self.value(after, "ringcast_view_changes_total") == 1)
        #expect(Self.value(after, "ringcast_view_members") == 2)
        #expect((Self.value(after, "ringcast_delivered_messages_total") ?? 0) > delivered)

        let results = try started.map { try NodeProcessTests.finish($0, timeoutSeconds: 30) }
        for (id, result) in results.enumerated() {
            #expect(result.status == 0, "node \(id): \(result.stderr)")
        }
        let leaver = try NodeProcessTests.json(results[2].stdout)
        #expect(leaver["ended_by"] as? String == "sigterm")
        #expect(results[2].stderr.contains("left the group"), "\(results[2].stderr)")
    }

    @Test("status of an address where nothing listens: a clear error, exit 1")
    func statusUnreachable() throws {
        let address = "127.0.0.1:\(freeLoopbackPorts(1)[0])"
        let result = try NodeProcessTests.run(["status", address])
        #expect(result.status == 1)
        #expect(result.stderr.contains("cannot reach \(address)"), "\(result.stderr)")
    }
}
