#if canImport(Glibc)
import RingCastJSON
import Glibc
#endif
import Foundation
import Testing
@testable import RingCastBenchKit

/// ringcast-bench against stub node and ringperf scripts: spawning, collecting JSON, deadlines that kill a
/// hanging node (and what it started), and clear errors. Each test has its own directory and free ports.
@Suite struct OrchestrationTests {
    /// A temporary directory with executable stub scripts.
    final class Stubs {
        let directory: String

        init() throws {
            var template = Array((NSTemporaryDirectory() + "bench-tests.XXXXXX").utf8CString)
            directory = String(cString: mkdtemp(&template)!)
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }

        func script(_ name: String, _ body: String) throws -> String {
            let path = directory + "/" + name
            try ("#!/usr/bin/env bash\n" + body).write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o755)
            return path
        }

        /// A node that follows the contract: parses its flags, writes a delivery log when asked, prints JSON.
        /// `digest` may use $id to make nodes disagree.
        func node(digest: String = "abc123", before: String = "") throws -> String {
            try script("node", """
            id=0; log=""; size=0
            while (($#)); do
              case "$1" in
                --id) id=$2; shift 2;; --delivery-log) log=$2; shift 2;; --size) size=$2; shift 2;;
                --send|--json) shift;; *) shift 2;;
              esac
            done
            \(before)
            if [[ -n "$log" ]]; then
              : > "$log"
              for seq in 1 2 3; do echo "1 0 $seq $size ff$seq" >> "$log"; done
            fi
            echo "node $id: done" >&2
            printf '{"id": %d, "delivered_messages": 3, "delivered_bytes": %d, "throughput_mbit_s": %d, "cpu_percent": 5, "sender_fractions": {"0": 1}, "total_delivered": 3, "order_digest": "%s"}\\n' "$id" $((3 * size)) $((90 + id)) "\(digest)"
            """)
        }

        func ringperf(mbit: Double = 94.5) throws -> String {
            try script("ringperf", """
            if [[ "$1" == server ]]; then echo "ringperf server listening on $3" >&2; sleep 0.3; exit 0; fi
            echo '{"test": "stream", "size_bytes": 65536, "throughput_mbit_s": \(mbit)}'
            """)
        }
    }

    static func config(nodes: Int = 3, node: String, ringperf: String? = nil) -> BenchConfiguration {
        var config = BenchConfiguration()
        config.nodeCount = nodes
        config.senderIDs = [0]
        config.messageSizeBytes = 100
        config.warmupSeconds = 0
        config.durationSeconds = 0.2
        config.cooldownSeconds = 0
        config.setupSeconds = 0.1
        config.graceSeconds = 1.5
        config.nodeBinary = node
        config.ringperfBinary = ringperf
        config.rawLinkSeconds = ringperf == nil ? 0 : 0.2
        config.keepWorkDirectoryOnFailure = false
        return config
    }

    @Test func collectsEveryNodesJSONAndTheRawLink() throws {
        let stubs = try Stubs()
        var config = Self.config(node: try stubs.node(), ringperf: try stubs.ringperf(mbit: 94.5))
        config.deliveryLogDirectory = stubs.directory + "/logs"
        let result = try BenchRunner(config: config).run()
        #expect(result.nodes.map(\.id) == [0, 1, 2])
        #expect(result.meanThroughputMbitPerSecond == 91)  // (90 + 91 + 92) / 3
        #expect(result.rawLinkMbitPerSecond == 94.5 && result.optimalMbitPerSecond == 94.5)  // 1 of 3 sends
        #expect(abs(result.efficiency! - 91 / 94.5) < 1e-12)
        #expect(result.orderAgreed && result.deliveryLog?.ok == true)
        let json = result.json
        for key in ["config", "nodes", "mean_throughput_mbit_s", "raw_link_mbit_s", "optimal_mbit_s", "efficiency",
                    "latency_us_p50", "latency_us_p99", "latency_us_max", "order_agreed"] {
            #expect(json[key] != nil, "missing \(key)")
        }
        // The output is one parseable JSON object.
        #expect(try JSONValue.parse(json.text)["order_agreed"] == .bool(true))
    }

    @Test func disagreeingNodesAreReported() throws {
        let stubs = try Stubs()
        let result = try BenchRunner(config: Self.config(node: try stubs.node(digest: "digest-of-$id"))).run()
        #expect(!result.orderAgreed)
        #expect(result.json["order_agreed"] == .bool(false))
    }

    @Test func aHangingNodeIsKilledAtTheDeadline() throws {
        let stubs = try Stubs()
        // The stub starts a grandchild too: killing the process group must take it down as well.
        let pids = stubs.directory + "/pids"
        let node = try stubs.script("node", "sleep 300 &\necho \"$$ $!\" >> \(pids)\nwait\n")
        let started = Date()
        #expect {
            _ = try BenchRunner(config: Self.config(node: node)).run()
        } throws: { error in
            guard case BenchError.timedOut(_, _, let running, _) = error else { return false }
            return running.count == 3
        }
        #expect(Date().timeIntervalSince(started) < 10)
        let recorded = try String(contentsOfFile: pids, encoding: .utf8).split(whereSeparator: \.isWhitespace)
        #expect(recorded.count == 6)
        for pid in recorded.compactMap({ pid_t(String($0)) }) {
            #expect(Self.ends(pid), "process \(pid) survived")
        }
    }

    /// Whether `pid` is gone or a zombie within 3 s (an orphaned grandchild is reaped by init, not by us).
    static func ends(_ pid: pid_t) -> Bool {
        for _ in 0..<150 {
            guard kill(pid, 0) == 0 else { return true }
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            if let close = stat.lastIndex(of: ")"), stat[close...].dropFirst(2).first == "Z" { return true }
            usleep(20_000)
        }
        return false
    }

    @Test func aFailingNodeGivesItsStderr() throws {
        let stubs = try Stubs()
        let node = try stubs.script("node", """
        for a in "$@"; do [[ "$prev" == --id ]] && id=$a; prev=$a; done
        if [[ "$id" == 1 ]]; then echo "fatal: cannot reach successor" >&2; exit 3; fi
        sleep 30
        """)
        let started = Date()
        #expect(throws: BenchError.nodeFailed(id: 1, status: "exit code 3", stderrTail: "fatal: cannot reach successor")) {
            _ = try BenchRunner(config: Self.config(node: node)).run()
        }
        #expect(Date().timeIntervalSince(started) < 10)  // the others (sleeping 30 s) were killed, not awaited
    }

    @Test func aBusyPortIsNamed() throws {
        let stubs = try Stubs()
        let node = try stubs.script("node", "echo 'listen 127.0.0.1:1: Address already in use' >&2\nexit 1\n")
        #expect {
            _ = try BenchRunner(config: Self.config(node: node)).run()
        } throws: { error in
            guard case BenchError.portBusy = error else { return false }
            return "\(error)".contains("busy")
        }
    }

    @Test func aMissingBinaryIsNamed() throws {
        #expect {
            _ = try BenchRunner(config: Self.config(node: "/nonexistent/ringcast-node")).run()
        } throws: { error in
            "\(error)".contains("/nonexistent/ringcast-node") && "\(error)".contains("--node-binary")
        }
    }

    @Test func nodeOutputWithoutJSONIsRefused() throws {
        let stubs = try Stubs()
        let node = try stubs.script("node", "echo 'hello'\n")
        #expect {
            _ = try BenchRunner(config: Self.config(node: node)).run()
        } throws: { error in
            guard case BenchError.nodeOutputInvalid(let id, _, _) = error else { return false }
            return id == 0
        }
    }

    @Test func aFailingRawLinkIsReported() throws {
        let stubs = try Stubs()
        let ringperf = try stubs.script("ringperf", "echo 'ringperf: cannot connect' >&2\nexit 1\n")
        #expect {
            _ = try BenchRunner(config: Self.config(node: try stubs.node(), ringperf: ringperf)).run()
        } throws: { error in
            guard case BenchError.rawLinkFailed = error else { return false }
            return true
        }
    }
}

/// The built `ringcast-bench` executable under SIGINT/SIGTERM: it kills its nodes and exits 130.
@Suite struct SignalTests {
    /// `ringcast-bench` beside the test bundle (swift build puts every product in one directory).
    static let benchBinary: String? = {
        let path = (Locator.executableDirectory as NSString).appendingPathComponent("ringcast-bench")
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }()

    @Test(.enabled(if: benchBinary != nil, "ringcast-bench is not built beside the tests"),
          arguments: [SIGINT, SIGTERM])
    func ctrlCKillsEveryNode(signal: Int32) throws {
        let stubs = try OrchestrationTests.Stubs()
        let pids = stubs.directory + "/pids"
        let node = try stubs.script("node", "sleep 300 &\necho \"$$ $!\" >> \(pids)\nwait\n")
        let bench = try ChildProcess.spawn(
            name: "ringcast-bench", executable: Self.benchBinary!,
            arguments: ["--nodes", "3", "--node-binary", node, "--raw-link-duration", "0", "--duration", "60"],
            stdoutPath: stubs.directory + "/out", stderrPath: stubs.directory + "/err")
        defer { ChildGroup.stop([bench]) }
        let started = Date()
        while ((try? String(contentsOfFile: pids, encoding: .utf8)) ?? "").split(separator: "\n").count < 3 {
            try #require(Date().timeIntervalSince(started) < 10, "the stub nodes did not start")
            usleep(20_000)
        }
        kill(bench.pid, signal)
        while bench.poll() {
            try #require(Date().timeIntervalSince(started) < 20, "ringcast-bench did not exit after the signal")
            usleep(20_000)
        }
        #expect(bench.exitDescription == "exit code 130")
        #expect(bench.stderrText().contains("interrupted by signal \(signal)"))
        let recorded = try String(contentsOfFile: pids, encoding: .utf8).split(whereSeparator: \.isWhitespace)
        for pid in recorded.compactMap({ pid_t(String($0)) }) {
            #expect(OrchestrationTests.ends(pid), "process \(pid) survived")
        }
    }
}
