import Foundation
import RingCastKeys
import Testing

/// Issue 14's acceptance scenario with real `ringcast-node` processes on loopback: three members sharing a cluster
/// key run a group and broadcast; a fourth process with another key tries to join meanwhile. The failure detector
/// is set slow (1.5 s) so that a loaded test machine does not cause a suspicion the stranger did not.
@Suite("Authenticated links with ringcast-node processes", .serialized)
struct AuthProcessTests {
    @Test("a process without the cluster key cannot join, inject a delivered message or cause a suspicion",
          arguments: ["frames", "encrypt"])
    func strangerCannotJoin(mode: String) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rc-auth-\(getpid())-\(mode)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let key = directory.appendingPathComponent("cluster.key").path
        let otherKey = directory.appendingPathComponent("other.key").path
        try ClusterKey.generate().write(to: key)
        try ClusterKey.generate().write(to: otherKey)
        let members = freeLoopbackPortPairs(4).map { "127.0.0.1:\($0)" }.joined(separator: ",")
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let startAt = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec) + 800_000_000
        let auth = mode == "encrypt" ? ["--auth", "frames", "--encrypt"] : ["--auth", "frames"]
        func arguments(_ id: Int, key: String) -> [String] {
            ["--id", "\(id)", "--members", members, "--view", "0,1,2", "--size", "2000", "--start-at", "\(startAt)",
             "--warmup", "0.3", "--duration", "1.5", "--cooldown", "2", "--quiet-ms", "800", "--json",
             "--connect-timeout", "3", "--cluster-key", key, "--heartbeat-ms", "50", "--suspect-ms", "1500",
             "--delivery-log", directory.appendingPathComponent("node-\(id).log").path] + auth + (id < 3 ? ["--send"] : [])
        }
        let founders = try (0..<3).map { try NodeProcessTests.start(arguments($0, key: key)) }
        usleep(300_000)
        let stranger = try NodeProcessTests.start(arguments(3, key: otherKey))
        let results = try founders.map { try NodeProcessTests.finish($0, timeoutSeconds: 40) }
        let strangerResult = try NodeProcessTests.finish(stranger, timeoutSeconds: 40)

        var refused = 0
        for result in results {
            #expect(result.status == 0, "\(result.stderr.suffix(600))")
            let object = try NodeProcessTests.json(result.stdout)
            let group = try #require(object["group"] as? [String: Any])
            // The counters at the measured window's end: at exit they also hold the cooldown, where the member that
            // finished first is suspected by the others when its links close (a normal end, not the stranger's doing),
            // and a view installed then starts a new ring whose engine counters begin at zero.
            let window = try #require(object["at_window_end"] as? [String: Any])
            #expect(window["view_changes"] as? Int == 0, "nobody was suspected, nobody joined")
            let windowEnd = (object["window_start_unix_ns"] as? Int ?? 0) + Int((object["duration_s"] as? Double ?? 0) * 1e9)
            let views = (object["views"] as? [[String: Any]] ?? []).filter { ($0["installed_unix_ns"] as? Int ?? 0) <= windowEnd }
            #expect(views.allSatisfy { ($0["members"] as? [Int]) == [0, 1, 2] }, "views: \(views.map { ($0["members"] as? [Int]) ?? [] }) causes: \(views.map { $0["causes"] ?? "" })")
            refused += group["control_auth_rejected"] as? Int ?? 0
            #expect(window["auth_handshakes"] as? Int == 2 && window["auth_mac_failures"] as? Int == 0)
            if mode == "encrypt" { #expect((window["auth_cipher_bytes"] as? Int ?? 0) > 0) }
            #expect((object["delivered_messages"] as? Int ?? 0) > 0)
        }
        #expect(refused >= 1, "the stranger's control connections were refused and counted")
        let logs = try (0..<3).map { try String(contentsOf: directory.appendingPathComponent("node-\($0).log"), encoding: .utf8) }
        #expect(logs[0] == logs[1] && logs[1] == logs[2], "the members delivered the same sequence")
        let origins = Set(logs[0].split(separator: "\n").compactMap { $0.split(separator: " ").dropFirst().first })
        #expect(origins.isSubset(of: ["0", "1", "2"]) && !origins.isEmpty, "only members' messages: \(origins)")
        // The stranger never ran: it delivered nothing.
        let strangerLog = (try? String(contentsOf: directory.appendingPathComponent("node-3.log"), encoding: .utf8)) ?? ""
        #expect(strangerLog.isEmpty, "the stranger delivered \(strangerLog.split(separator: "\n").count) messages")
        let strangerDelivered = (try? NodeProcessTests.json(strangerResult.stdout))?["delivered_messages"] as? Int ?? 0
        #expect(strangerDelivered == 0, "\(strangerResult.stderr.suffix(400))")
    }
}
