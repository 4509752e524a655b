import Foundation
import Testing

/// Tests of `tools/link-compare` that need no ringperf and no namespaces: argument checks, and one
/// short iperf3-only run over loopback whose JSON must have the documented shape.
@Suite(
    "tools/link-compare",
    .serialized,
    // The loopback run needs iperf3; the script would install it with apt-get, which a test must not do.
    .enabled(if: LinkCompareHarness.iperf3Installed, "needs iperf3 (apt-get install -y iperf3)")
)
struct LinkCompareTests {
    @Test func rejectsUnknownLinksAndBadCounts() {
        for arguments in [["--links", "10gbit"], ["--runs", "0"], ["--duration", "0"], ["--links", ""]] {
            let result = LinkCompareHarness.run(arguments)
            #expect(result.status == 2, "\(arguments): status \(result.status)")
            #expect(result.stderr.contains("error"), "\(arguments): \(result.stderr)")
        }
    }

    @Test func loopbackIperf3Only_reportsMedianThroughputAndCPUPerGigabyte() throws {
        let result = LinkCompareHarness.run(["--iperf3-only", "--links", "loopback", "--runs", "1", "--duration", "1",
                                             "--congestion", LinkCompareHarness.systemCongestion, "--json"])
        try #require(result.status == 0, "link-compare failed: \(result.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(report["size_bytes"] as? Int == 65536)
        let links = try #require(report["links"] as? [[String: Any]])
        try #require(links.count == 1)
        #expect(links[0]["link"] as? String == "loopback")
        let throughput = try #require(links[0]["iperf3_mbit_s"] as? Double)
        #expect(throughput > 0)
        #expect(links[0]["ringperf_mbit_s"] is NSNull)
        #expect(links[0]["iperf3_cpu_sender_s_per_gb"] is Double)
        let runs = try #require(links[0]["runs"] as? [[String: Any]])
        #expect(runs.count == 1)
        #expect(runs[0]["tool"] as? String == "iperf3")
        #expect(runs[0]["error"] is NSNull)
    }
}

/// Runs `tools/link-compare` for the tests.
enum LinkCompareHarness {
    /// Whether iperf3 is installed (the script would otherwise install it).
    static let iperf3Installed: Bool = ["/usr/bin/iperf3", "/usr/local/bin/iperf3"]
        .contains { FileManager.default.isExecutableFile(atPath: $0) }

    /// The system's default TCP congestion control, which any user may set on a socket (tcp(7)).
    static let systemCongestion: String = (try? String(contentsOfFile: "/proc/sys/net/ipv4/tcp_congestion_control", encoding: .utf8))?
        .trimmingCharacters(in: .whitespacesAndNewlines) ?? "reno"

    /// Runs `tools/link-compare` with `arguments`, bounded by `timeout(1)` inside `LANHarness.run`.
    static func run(_ arguments: [String]) -> LANHarness.Outcome {
        LANHarness.run([LANHarness.repositoryRoot.appendingPathComponent("tools/link-compare").path] + arguments)
    }
}
