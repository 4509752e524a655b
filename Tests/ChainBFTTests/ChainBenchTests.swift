import Foundation
import Testing

/// `ringcast-bench chain`: the measured MAC operations per request at the bottleneck position match the cost model
/// of spec §16.2, 1 + (2f+1)/b at the measured mean batch size b, plus the CHECKPOINT term 6f/CHK (counters, not
/// wall-clock figures: the assertion holds on a loaded machine too).
@Suite("ringcast-bench chain", .serialized) struct ChainBenchTests {
    static var binary: String? {
        let candidates = [CommandLine.arguments.first, Bundle.main.executablePath].compactMap { $0 }.map {
            URL(fileURLWithPath: $0).deletingLastPathComponent().appendingPathComponent("ringcast-bench").path
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test(.enabled(if: binary != nil, "ringcast-bench is not built next to the test bundle"), arguments: [1, 2])
    func section16_2_bottleneckMACsPerRequestMatchTheModel(f: Int) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary!)
        process.arguments = ["chain", "--f", "\(f)", "--clients", "3", "--depth", "8", "--warmup", "0.5", "--duration", "1.5", "--json"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(60)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning {
            process.terminate()
            Issue.record("ringcast-bench chain did not finish within 60 s")
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        #expect(process.terminationStatus == 0)
        let report = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any],
                                  "no JSON report: \(String(decoding: data, as: UTF8.self))")
        #expect((report["requests"] as? Int ?? 0) > 100)
        let b = try #require(report["mean_batch_size"] as? Double)
        #expect(b >= 1)
        let measured = try #require(report["mac_ops_per_request_bottleneck"] as? Double)
        let model = try #require(report["model_mac_ops_per_request_with_checkpoints"] as? Double)
        #expect(abs(measured - model) / model < 0.02, "measured \(measured), model \(model) at b = \(b)")
        let perPosition = try #require(report["mac_ops_per_request"] as? [String: Double])
        #expect(perPosition.count == 3 * f + 1)
    }
}
