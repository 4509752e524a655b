import Foundation
import Testing

/// `ringcast-bench chain --lan RATE`: option validation (clear errors before anything starts), the internal
/// `chain-replica` / `chain-driver` commands' own checks, and (where namespaces can be made) one short run on the
/// emulated LAN whose report must carry the raw link and an efficiency against it.
@Suite("ringcast-bench chain --lan", .serialized) struct ChainBenchLANTests {
    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func run(_ arguments: [String], timeoutSeconds: Double = 30) throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(ChainBenchTests.binary))
        process.arguments = arguments
        // Into files, not pipes: nothing has to drain them while the child runs.
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("chain-bench-lan-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        let outPath = base.path + ".out", errPath = base.path + ".err"
        FileManager.default.createFile(atPath: outPath, contents: nil)
        FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: outPath); try? FileManager.default.removeItem(atPath: errPath) }
        process.standardOutput = FileHandle(forWritingAtPath: outPath)
        process.standardError = FileHandle(forWritingAtPath: errPath)
        try process.run()
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            process.terminate()
            Issue.record("ringcast-bench \(arguments.joined(separator: " ")) did not finish within \(timeoutSeconds) s")
        }
        process.waitUntilExit()
        let out = FileManager.default.contents(atPath: outPath) ?? Data()
        let err = FileManager.default.contents(atPath: errPath) ?? Data()
        return Run(status: process.terminationStatus, stdout: String(decoding: out, as: UTF8.self),
                   stderr: String(decoding: err, as: UTF8.self))
    }

    static let badOptions: [([String], String)] = [
              (["chain", "--lan", "fast"], "--lan takes a tc rate"),
              (["chain", "--lan", "0mbit"], "--lan takes a tc rate"),
              (["chain", "--lan", "100mbit", "--lan-prefix", "rcl"], "--lan-prefix is 'chl'"),
              (["chain", "--lan", "100mbit", "--lan-prefix", "chlTOOLONG"], "--lan-prefix is 'chl'"),
              (["chain", "--lan", "100mbit", "--clients", "2", "--client-hosts", "3"], "--client-hosts is 1...--clients"),
              (["chain", "--lan", "1gbit", "--f", "4", "--clients", "8", "--client-hosts", "4"], "exceed tools/lan's 16 hosts"),
              (["chain", "--lan", "1gbit", "--raw-link-seconds", "0"], "--raw-link-seconds is 1...60"),
              (["chain-replica", "--position", "0", "--replicas", "127.0.0.1:1,127.0.0.1:2", "--keys", "/nonexistent",
                "--clients", "1", "--sample-at", "1", "--until", "2"], "--replicas needs 3f+1 = 4"),
              (["chain-replica", "--position", "4", "--replicas", "a:1,a:2,a:3,a:4", "--keys", "/nonexistent",
                "--clients", "1", "--sample-at", "1", "--until", "2"], "--position is 0...3"),
              (["chain-replica", "--position", "0", "--replicas", "a:1,a:2,a:3,a:4", "--keys", "/nonexistent",
                "--clients", "1", "--sample-at", "soon", "--until", "2"], "--sample-at"),
              (["chain-driver", "--replicas", "a:1,a:2,a:3,a:4", "--keys", "/nonexistent", "--start-at", "5",
                "--measure-from", "4", "--measure-until", "6"], "--start-at ≤ --measure-from < --measure-until"),
    ]

    @Test(.enabled(if: ChainBenchTests.binary != nil, "ringcast-bench is not built next to the test bundle"),
          arguments: Self.badOptions)
    func badOptionsAreRefusedClearly(arguments: [String], message: String) throws {
        let run = try Self.run(arguments)
        #expect(run.status != 0)
        #expect(run.stderr.contains(message), "stderr: \(run.stderr)")
        #expect(run.stdout.isEmpty)
    }

    @Test(.enabled(if: ChainBenchTests.binary != nil, "ringcast-bench is not built next to the test bundle"))
    func aReplicaWithoutItsKeyFileSaysSo() throws {
        let run = try Self.run(["chain-replica", "--position", "0", "--replicas", "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3,127.0.0.1:4",
                                "--keys", "/nonexistent-chain-keys", "--clients", "1", "--sample-at", "1", "--until", "2"])
        #expect(run.status != 0)
        #expect(run.stderr.contains("nonexistent-chain-keys"), "stderr: \(run.stderr)")
    }

    static var lanRunnable: Bool {
        guard ChainBenchTests.binary != nil, getuid() == 0, ProcessInfo.processInfo.environment["RINGCAST_CHAIN_LAN_TEST"] == "1" else {
            return false
        }
        let directory = URL(fileURLWithPath: ChainBenchTests.binary!).deletingLastPathComponent()
        return FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent("ringperf").path)
    }

    /// One short run on the emulated LAN (root, ringperf built, RINGCAST_CHAIN_LAN_TEST=1: it takes ~30 s and the
    /// namespaces of tools/lan). Asserts the shape of the result, not a throughput (the machine may be loaded).
    @Test(.enabled(if: lanRunnable, "needs root, ringperf and RINGCAST_CHAIN_LAN_TEST=1"))
    func aShortLANRunReportsTheRawLinkAndTheEfficiency() throws {
        let run = try Self.run(["chain", "--lan", "100mbit", "--lan-prefix", "chlt", "--clients", "2", "--client-hosts", "1",
                                "--depth", "4", "--request-size", "4096", "--warmup", "1", "--duration", "2",
                                "--raw-link-seconds", "2", "--json"], timeoutSeconds: 120)
        #expect(run.status == 0, "stderr: \(run.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any],
                                  "no JSON: \(run.stdout) \(run.stderr)")
        let raw = try #require(report["raw_link_mbit_s"] as? Double)
        #expect(raw > 50 && raw < 100, "raw link \(raw) Mbit/s at 100mbit")
        #expect(report["lan_rate_mbit_s"] as? Double == 100)
        #expect(report["raw_link_suspect"] as? Bool == (raw < 80))
        #expect((report["requests"] as? Int ?? 0) > 10)
        let efficiency = try #require(report["link_efficiency"] as? Double)
        let payload = try #require(report["payload_mbit_s"] as? Double)
        #expect(abs(efficiency - payload / raw) < 1e-4 * max(efficiency, 1e-6)) // the JSON prints ~6 significant digits
        #expect(efficiency > 0 && efficiency < 1)
        #expect(report["client_errors"] as? Int == 0)
        // The LAN is gone afterwards.
        #expect(!FileManager.default.fileExists(atPath: "/run/ringcast-lan/chlt"))
    }
}
