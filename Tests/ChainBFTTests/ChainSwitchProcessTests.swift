import Foundation
import Testing

/// Switching between real processes: `ringcast-kv bench --protocol chain --byzantine-at` makes the head of four
/// `ringcast-kv serve --protocol chain` processes forge its instance-1 batch MACs (a harness-level fault around a
/// correct core); the clients panic, switch to instance 2, and the whole history stays linearizable.
@Suite("ringcast-kv --protocol chain switching", .serialized) struct ChainSwitchProcessTests {
    static var binary: String? {
        let candidates = [CommandLine.arguments.first, Bundle.main.executablePath].compactMap { $0 }.map {
            URL(fileURLWithPath: $0).deletingLastPathComponent().appendingPathComponent("ringcast-kv").path
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test(.enabled(if: binary != nil, "ringcast-kv is not built next to the test bundle"))
    func byzantineHead_switchToInstance2_linearizable() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary!)
        process.arguments = ["bench", "--protocol", "chain", "--replicas", "4", "--json", "--check", "--clients", "3",
                             "--depth", "2", "--duration", "3", "--byzantine-at", "1", "--timeout", "2000"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(90)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning {
            process.terminate()
            Issue.record("ringcast-kv bench did not finish within 90 s")
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let report = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any],
                                  "no JSON report: \(String(decoding: data, as: UTF8.self))")
        #expect(process.terminationStatus == 0)
        let check = try #require(report["check"] as? [String: Any])
        #expect(check["linearizable"] as? Bool == true)
        #expect(report["failures"] as? Int == 0, "an operation failed across the switch")
        let digests = try #require(report["replica_digests"] as? [String: Any])
        #expect(digests["equal"] as? Bool == true && digests["replicas"] as? Int == 4, "\(digests)")
    }
}
