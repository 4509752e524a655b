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

/// `ringcast-kv serve --cluster-key` and the client commands' `--cluster-key`: the client plane's handshake between
/// processes (#14).
@Suite("ringcast-kv with a cluster key", .serialized) struct KVKeyedProcessTests {
    @Test(.enabled(if: KVProcessTests.binary != nil, "ringcast-kv is not built next to the test bundle"))
    func keyedReplica_servesKeyedClients_refusesOthers() throws {
        let binary = KVProcessTests.binary!
        let keys = URL(fileURLWithPath: binary).deletingLastPathComponent().appendingPathComponent("ringcast-keys").path
        try #require(FileManager.default.isExecutableFile(atPath: keys), "ringcast-keys is not built")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kv-keyed-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let key = directory.appendingPathComponent("cluster.key").path
        let other = directory.appendingPathComponent("other.key").path
        #expect(run(keys, ["cluster", "--out", key]).status == 0)
        #expect(run(keys, ["cluster", "--out", other]).status == 0)

        let port = freePortPairs(1)[0]
        let serve = Process()
        serve.executableURL = URL(fileURLWithPath: binary)
        serve.arguments = ["serve", "--id", "0", "--members", "127.0.0.1:\(port)", "--client-port", "0",
                           "--cluster-key", key, "--auth", "frames", "--cluster-name", "keyed-test", "--log-level", "error"]
        let output = Pipe()
        serve.standardOutput = output
        serve.standardError = FileHandle.nullDevice
        try serve.run()
        defer {
            serve.terminate()
            serve.waitUntilExit()
        }
        // "ready client_port=PORT id=0"
        var line = ""
        let deadline = Date().addingTimeInterval(20)
        while !line.contains("\n") && Date() < deadline && serve.isRunning {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { usleep(20_000) }
            line += String(decoding: chunk, as: UTF8.self)
        }
        let clientPort = try #require(line.split(separator: " ").first { $0.hasPrefix("client_port=") }?
            .dropFirst("client_port=".count), "no ready line: \(line)")
        let replicas = ["--replicas", "127.0.0.1:\(clientPort)", "--cluster-name", "keyed-test"]

        let put = run(binary, ["put"] + replicas + ["--cluster-key", key, "greeting", "hello"])
        #expect(put.status == 0 && put.output == "OK\n", "\(put)")
        let get = run(binary, ["get"] + replicas + ["--cluster-key", key, "greeting"])
        #expect(get.status == 0 && get.output == "hello\n", "\(get)")
        let wrongKey = run(binary, ["get"] + replicas + ["--cluster-key", other, "greeting"])
        #expect(wrongKey.status != 0 && wrongKey.error.contains("refused this client's handshake"), "\(wrongKey)")
        let noKey = run(binary, ["put", "--timeout", "800"] + replicas + ["greeting", "stranger"])
        #expect(noKey.status != 0, "\(noKey)")
        let after = run(binary, ["get"] + replicas + ["--cluster-key", key, "greeting"])
        #expect(after.output == "hello\n", "a client without the key changed the store: \(after)")
    }

    private func run(_ path: String, _ arguments: [String]) -> (status: Int32, output: String, error: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let output = Pipe(), error = Pipe()
        process.standardOutput = output
        process.standardError = error
        do { try process.run() } catch { return (-1, "", "\(error)") }
        let out = output.fileHandleForReading.readDataToEndOfFile()
        let err = error.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
    }
}
