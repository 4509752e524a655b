import Foundation
import Testing

/// `ringcast-kv` as processes: three `serve` replicas spawned by `bench`, one of them killed with SIGKILL under load.
@Suite("ringcast-kv processes", .serialized) struct KVProcessTests {
    /// The binary next to this test bundle (swift build puts every product in one directory).
    static var binary: String? {
        let candidates = [CommandLine.arguments.first, Bundle.main.executablePath].compactMap { $0 }.map {
            URL(fileURLWithPath: $0).deletingLastPathComponent().appendingPathComponent("ringcast-kv").path
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test(.enabled(if: binary != nil, "ringcast-kv is not built next to the test bundle"))
    func kill9_ofAReplicaUnderIncrements_counterIsAcknowledgedPlusAtMostInDoubt() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary!)
        process.arguments = ["bench", "--workload", "incr", "--replicas", "3", "--clients", "4", "--depth", "4",
                             "--duration", "3", "--kill-after", "1", "--timeout", "5000", "--json",
                             // A loaded test machine must not exclude a live replica; the kill is seen at once anyway.
                             "--suspect-ms", "1500"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(60)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning {
            process.terminate()
            Issue.record("ringcast-kv bench did not finish within 60 s")
            return
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        #expect(process.terminationStatus == 0, "exit status \(process.terminationStatus)")
        let report = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any],
                                  "no JSON report: \(String(decoding: data, as: UTF8.self))")
        let increments = try #require(report["increments"] as? [String: Any])
        let acknowledged = try #require(increments["acknowledged"] as? Int)
        let inDoubt = try #require(increments["in_doubt"] as? Int)
        let counter = try #require(increments["counter"] as? Int)
        #expect(increments["exactly_once"] as? Bool == true)
        #expect(counter >= acknowledged, "an acknowledged increment was lost")
        #expect(counter <= acknowledged + inDoubt, "an increment was applied twice")
        #expect(acknowledged > 100)
        let digests = try #require(report["replica_digests"] as? [String: Any])
        #expect(digests["equal"] as? Bool == true, "the surviving replicas diverged: \(digests)")
        #expect(digests["replicas"] as? Int == 2)
    }
}
