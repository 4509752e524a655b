import Foundation
import RingCast
import Synchronization
import Testing

/// `ringcast-node` as a process (ARCHITECTURE §3.1): flags, --config, and a real 3-process ring on loopback.
@Suite("ringcast-node process", .serialized)
struct NodeProcessTests {
    /// The binary next to this test bundle (swift build puts every product in one directory).
    static var binary: String? {
        let candidates = [CommandLine.arguments.first, Bundle.main.executablePath].compactMap { $0 }.map {
            URL(fileURLWithPath: $0).deletingLastPathComponent().appendingPathComponent("ringcast-node").path
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    struct Finished {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    /// Runs the binary with `arguments`, killing it after `timeoutSeconds`.
    static func run(_ arguments: [String], timeoutSeconds: Double = 20) throws -> Finished {
        let process = try start(arguments)
        return try finish(process, timeoutSeconds: timeoutSeconds)
    }

    static func start(_ arguments: [String]) throws -> (Process, Pipe, Pipe) {
        guard let binary else { throw ProcessTestError("ringcast-node is not built next to the test bundle") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        return (process, out, err)
    }

    static func finish(_ started: (Process, Pipe, Pipe), timeoutSeconds: Double) throws -> Finished {
        let (process, out, err) = started
        // Read while it runs (a full pipe would block the child), bounded by the timeout.
        let outData = Mutexed(Data())
        let errData = Mutexed(Data())
        let readers = DispatchGroup()
        for (pipe, sink) in [(out, outData), (err, errData)] {
            readers.enter()
            DispatchQueue.global().async {
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                sink.set(data)
                readers.leave()
            }
        }
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
            throw ProcessTestError("ringcast-node did not exit within \(timeoutSeconds) s")
        }
        process.waitUntilExit()
        _ = readers.wait(timeout: .now() + 5)
        return Finished(status: process.terminationStatus,
                        stdout: String(decoding: outData.get(), as: UTF8.self),
                        stderr: String(decoding: errData.get(), as: UTF8.self))
    }

    @Test func helpDescribesTheContract() throws {
        let result = try Self.run(["--help"])
        #expect(result.status == 0)
        for option in ["--id", "--nodes", "--listen", "--successor", "--view-id", "--send", "--size", "--start-at",
                       "--warmup", "--duration", "--cooldown", "--window", "--batch-count", "--batch-bytes",
                       "--fairness", "--zerocopy", "--delivery-log", "--json", "--config"] {
            #expect(result.stdout.contains(option), "--help does not mention \(option)")
        }
    }

    @Test(arguments: [
        (["--nodes", "3", "--listen", "127.0.0.1:7000", "--successor", "127.0.0.1:7001"], "--id is required"),
        (["--id", "3", "--nodes", "3", "--listen", "127.0.0.1:7000", "--successor", "127.0.0.1:7001"], "--id must be in"),
        (["--id", "0", "--nodes", "3", "--listen", "nohost:7000", "--successor", "127.0.0.1:7001"], "--listen: invalid address"),
        (["--id", "0", "--nodes", "3", "--listen", "127.0.0.1:7000", "--successor", "127.0.0.1:7001", "--size", "10"], "--size must be at least 24"),
        (["--id", "0", "--nodes", "3", "--listen", "127.0.0.1:7000", "--successor", "127.0.0.1:7001", "--fairness", "maybe"], "fairness"),
        (["--id", "0", "--nodes", "3", "--listen", "127.0.0.1:7000", "--successor", "127.0.0.1:7001", "--window", "0"], "window"),
        (["--id", "0", "--nodes", "3", "--listen", "127.0.0.1:7000", "--successor", "127.0.0.1:7001", "--bogus"], "bogus"),
    ])
    func badFlagsExitWithUsageError(arguments: [String], message: String) throws {
        let result = try Self.run(arguments)
        #expect(result.status == 64, "exit status \(result.status) for \(arguments)")
        #expect(result.stderr.contains(message), "stderr: \(result.stderr)")
    }

    @Test func configFileGivesTheOptions() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rc-node-config-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let bad = directory.appendingPathComponent("bad.conf")
        try "id = 0\nnodes = 3\nlisten = 127.0.0.1:7000\nsuccessor = 127.0.0.1:7001\ncolour = blue\n"
            .write(to: bad, atomically: true, encoding: .utf8)
        let unknown = try Self.run(["--config", bad.path])
        #expect(unknown.status == 64 && unknown.stderr.contains("unknown key 'colour'"), "\(unknown.stderr)")

        // A one-node ring from a key=value file, and the same from JSON, run for real (short).
        let port = freeLoopbackPorts(1)[0]
        let text = directory.appendingPathComponent("node.conf")
        try """
        # one node, its own successor
        id = 0
        nodes = 1
        listen = 127.0.0.1:\(port)
        successor = 127.0.0.1:\(port)
        send = true
        size = 1000
        warmup = 0.1
        duration = 0.3
        cooldown = 1
        json = true
        """.write(to: text, atomically: true, encoding: .utf8)
        let result = try Self.run(["--config", text.path])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try Self.json(result.stdout)
        #expect(object["id"] as? Int == 0)
        #expect(object["size_bytes"] as? Int == 1000)
        #expect((object["total_delivered"] as? Int ?? 0) > 0)

        let json = directory.appendingPathComponent("node.json")
        try """
        {"id": 0, "nodes": 1, "listen": "127.0.0.1:\(port)", "successor": "127.0.0.1:\(port)", "send": false,
         "warmup": 0, "duration": 0.2, "cooldown": 0.5}
        """.write(to: json, atomically: true, encoding: .utf8)
        let quiet = try Self.run(["--config", json.path, "--json"]) // a flag on top of the file
        #expect(quiet.status == 0, "\(quiet.stderr)")
        #expect(try Self.json(quiet.stdout)["total_delivered"] as? Int == 0)
    }

    @Test func connectTimeoutExitsNonZeroWithAMessage() throws {
        let ports = freeLoopbackPorts(2)
        let result = try Self.run(["--id", "0", "--nodes", "2", "--listen", "127.0.0.1:\(ports[0])",
                                   "--successor", "127.0.0.1:\(ports[1])", "--connect-timeout", "0.3", "--json"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("could not join the ring"), "\(result.stderr)")
        #expect(try Self.json(result.stdout)["error"] is String)
    }

    /// Three node processes, all sending: the same order digest and delivery log everywhere, zero payload copies,
    /// and the §3.2 fields present.
    @Test func threeProcessesAgreeOnTheOrder() throws {
        let run = try Self.runRing(size: 4096, duration: 0.6)
        defer { run.cleanUp() }
        for (id, object) in run.objects.enumerated() {
            #expect(object["id"] as? Int == id)
            for key in ["delivered_messages", "delivered_bytes", "throughput_mbit_s", "cpu_percent", "sender_fractions",
                        "latency_us_p50", "latency_us_p99", "latency_us_max", "latency_histogram", "total_delivered",
                        "order_digest", "payload_copies", "broadcasts", "engine"] {
                #expect(object[key] != nil, "node \(id) JSON lacks \(key)")
            }
            #expect(object["payload_copies"] as? Int == 0)
            #expect((object["delivered_messages"] as? Int ?? 0) > 0)
        }
        run.expectAgreement()
        if let line = run.logs.first?.split(separator: "\n").first {
            let fields = line.split(separator: " ")
            #expect(fields.count == 5 && fields[0] == "1" && fields[3] == "4096" && fields[4].count == 16, "\(line)")
        }
    }

    /// Engine liveness reproducer (opt-in: `RC_ENGINE_REPRO=1`, ~40 s): eight 3-process rings like the one above.
    /// It reproduced a link that stopped carrying bytes under CPU load (docs/tuning.md, "Engine liveness under
    /// load"): every run must keep its nodes in agreement.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["RC_ENGINE_REPRO"] != nil))
    func engineLivenessRepeatedRings() throws {
        for _ in 0..<8 {
            let run = try Self.runRing(size: 4096, duration: 1)
            run.expectAgreement()
            run.cleanUp()
        }
    }

    struct RingRun {
        let directory: URL
        let objects: [[String: Any]]
        let logs: [String]
        let keep: Bool

        func cleanUp() {
            if !keep { try? FileManager.default.removeItem(at: directory) }
        }

        /// One order, one total, identical logs. On failure the message also says, per link, how many bytes the
        /// sender queued that its successor never received (a few dozen are a heartbeat queued as the successor
        /// shut down; kilobytes are a stalled link).
        func expectAgreement() {
            let summary = objects.map { object in
                ["id", "total_delivered", "sent_messages", "delivery_gap_max_ms", "ended_by", "error"]
                    .map { "\($0)=\(object[$0] ?? "-")" }.joined(separator: " ")
            }.joined(separator: "; ")
            let links = objects.indices.map { id in
                let successor = (id + 1) % objects.count
                let sent = (objects[id]["engine"] as? [String: Any])?["bytes_out"] as? Int ?? 0
                let received = (objects[successor]["engine"] as? [String: Any])?["bytes_in"] as? Int ?? 0
                return "link \(id)→\(successor) missing \(sent - received) bytes"
            }.joined(separator: ", ")
            let digests = Set(objects.map { $0["order_digest"] as? String ?? "" })
            let totals = Set(objects.map { $0["total_delivered"] as? Int ?? -1 })
            #expect(digests.count == 1, "order digests differ (logs kept in \(directory.path)): \(summary); \(links)")
            #expect(totals.count == 1 && (totals.first ?? 0) > 0, "totals: \(totals); \(links)")
            #expect(logs.allSatisfy { $0 == logs[0] }, "delivery logs differ")
            #expect(logs[0].split(separator: "\n").count == totals.first)
        }
    }

    /// Runs three `ringcast-node --send` processes on loopback with delivery logs.
    static func runRing(size: Int, duration: Double) throws -> RingRun {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rc-node-ring-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let members = loopbackMembers(3)
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let startAt = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec) + 700_000_000
        let started = try (0..<3).map { id in
            try Self.start(["--id", "\(id)", "--nodes", "3", "--listen", members[id], "--successor", members[(id + 1) % 3],
                            "--send", "--size", "\(size)", "--start-at", "\(startAt)", "--warmup", "0.2",
                            "--duration", "\(duration)", "--cooldown", "5", "--quiet-ms", "1500", "--json",
                            "--delivery-log", directory.appendingPathComponent("node-\(id).log").path])
        }
        let results = try started.map { try Self.finish($0, timeoutSeconds: 30) }
        let objects = try results.map { result in
            #expect(result.status == 0, "\(result.stderr)")
            return try Self.json(result.stdout)
        }
        let logs = try (0..<3).map {
            try String(contentsOf: directory.appendingPathComponent("node-\($0).log"), encoding: .utf8)
        }
        let agreed = Set(objects.map { $0["order_digest"] as? String ?? "" }).count == 1 && logs.allSatisfy { $0 == logs[0] }
        return RingRun(directory: directory, objects: objects, logs: logs, keep: !agreed)
    }

    static func json(_ text: String) throws -> [String: Any] {
        guard let line = text.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
              let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw ProcessTestError("no JSON object in: \(text.prefix(300))")
        }
        return object
    }
}

struct ProcessTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A value shared with a reader thread.
final class Mutexed<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
    func set(_ newValue: Value) { value.withLock { $0 = newValue } }
    func get() -> Value { value.withLock { $0 } }
}
