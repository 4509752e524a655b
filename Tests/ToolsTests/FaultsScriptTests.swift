import Foundation
import Testing

/// Tests of `tools/faults`, the fault scenarios on the emulated LAN: its arguments and dry run, the summary
/// from recorded runs, and (with root) a whole run and a Ctrl-C against a stub ringcast-bench, under the
/// LAN prefix `rcft`.
@Suite("tools/faults", .serialized)
struct FaultsScriptTests {
    static var toolPath: String { LANHarness.repositoryRoot.appendingPathComponent("tools/faults").path }

    static func run(_ arguments: [String]) -> LANHarness.Outcome { LANHarness.run([toolPath] + arguments) }

    @Test func help_describesTheScenariosWithoutRoot() {
        let help = Self.run(["--help"])
        #expect(help.status == 0)
        for word in ["kill1", "kill2", "partition1", "join", "--runs", "--out", "--summarize", "Exit status"] {
            #expect(help.stdout.contains(word), "help lacks \(word)")
        }
    }

    @Test(arguments: [
        (["--runs", "0"], "--runs must be a whole number"),
        (["--runs", "ten"], "--runs must be a whole number"),
        (["--extra-runs", "-1"], "--extra-runs must be a whole number"),
        (["--scenarios", "kill1,crash"], "unknown scenario 'crash'"),
        (["--fault-at", "6"], "must lie inside the measurement"),
        (["--duration", "abc"], "--duration must be a number of seconds"),
        (["--mode", "majority"], "--mode must be quorum or perfect"),
        (["--prefix", "Bad-Prefix"], "--prefix must match"),
        (["--rate", "fast"], "--rate must be a tc rate"),
        (["--frobnicate"], "unknown argument '--frobnicate'"),
        (["--summarize", "/nonexistent-ringcast"], "is not a directory"),
    ])
    func refusesBadArguments(arguments: [String], message: String) {
        let result = Self.run(arguments + ["--dry-run"])
        #expect(result.status == 2, "\(arguments): status \(result.status)")
        #expect(result.stderr.contains("error: ") && result.stderr.contains(message), "\(arguments): \(result.stderr)")
    }

    @Test func dryRun_listsEveryRunWithItsFaultsBoundsAndPassThroughArguments() throws {
        let out = try LANHarness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: out) }
        let result = Self.run(["--dry-run", "--runs", "3", "--extra-runs", "2", "--out", out + "/new", "--fault-at", "1.5",
                               "--", "--suspect-ms", "100"])
        try #require(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.contains("tools/lan up --hosts 6 --rate 100mbit --prefix rcf --force") == true)
        #expect(lines.last?.contains("tools/lan down --prefix rcf") == true)
        let runs = lines.filter { $0.contains("ringcast-bench") }
        #expect(runs.count == 3 + 2 + 3 + 2)
        #expect(runs.filter { $0.contains("--kill 2@1.5 ") }.count == 3)
        #expect(runs.filter { $0.contains("--kill 1@1.5 --kill 3@1.5 ") }.count == 2)
        #expect(runs.filter { $0.contains("--partition 2@1.5 ") }.count == 3)
        #expect(runs.filter { $0.contains("--join @1.5 ") }.count == 2)
        for run in runs {
            #expect(run.hasPrefix("timeout --kill-after=10 73 "), "unbounded: \(run)")
            #expect(run.contains("--lan 100mbit --lan-prefix rcf --lan-keep") && run.contains("--nodes 5 --size 10000"))
            #expect(run.contains("--delivery-log \(out)/new/") && run.hasSuffix(".json") && run.contains("--suspect-ms 100"))
        }
        #expect(!FileManager.default.fileExists(atPath: out + "/new"), "a dry run creates nothing")
        // Without the join scenario the LAN needs only 5 hosts.
        let noJoin = Self.run(["--dry-run", "--scenarios", "kill1", "--runs", "1"])
        #expect(noJoin.stdout.contains("up --hosts 5 "))
    }

    @Test func summarize_takesMediansAndCountsBrokenRuns() throws {
        let out = try LANHarness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: out) }
        func write(_ name: String, _ json: String) throws { try json.write(toFile: "\(out)/\(name).json", atomically: true, encoding: .utf8) }
        func change(_ faultToView: Int?, _ detect: Int, fault: String? = "kill 2@2") -> String {
            #"{"view_id": 2, "fault": \#(fault.map { "\"\($0)\"" } ?? "null"), "fault_to_view_ms": \#(faultToView.map(String.init) ?? "null"), "detect_to_view_ms": \#(detect)}"#
        }
        try write("kill1-01", #"{"view_changes": [\#(change(300, 40))], "recovery_ms": 500, "recovery_status": "recovered", "order_agreed": true, "views_agreed": true}"#)
        try write("kill1-02", #"{"view_changes": [\#(change(200, 60)), \#(change(nil, 70, fault: nil))], "recovery_ms": 700, "recovery_status": "recovered", "order_agreed": true, "views_agreed": true}"#)
        // A change after the measurement (a node finishing its cool-down) counts neither as slowest nor unexplained.
        let late = #"{"view_id": 3, "fault": null, "fault_to_view_ms": null, "detect_to_view_ms": 900, "during_measurement": false}"#
        try write("kill1-03", #"{"view_changes": [\#(change(400, 50)), \#(late)], "recovery_ms": null, "recovery_status": "not recovered", "order_agreed": true, "views_agreed": true}"#)
        // Two view changes for two kills: the run's fault→view is the slower one.
        try write("kill2-01", #"{"view_changes": [\#(change(250, 30)), \#(change(450, 35))], "recovery_ms": 800, "recovery_status": "recovered", "order_agreed": true, "views_agreed": true}"#)
        try write("partition1-01", #"{"view_changes": [\#(change(260, 210))], "recovery_ms": 600, "order_agreed": false, "views_agreed": true, "delivery_log": {"problems": ["view 2: node 3 differs from node 0"]}}"#)
        try write("join-01", #"{"error": "node 5 failed (exit code 1)"}"#)
        try "not json".write(toFile: "\(out)/join-02.json", atomically: true, encoding: .utf8)

        let result = Self.run(["--summarize", out])
        try #require(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("fault→view ms") && result.stdout.contains("partition1-01: order NOT agreed: view 2: node 3 differs"))
        #expect(result.stdout.contains("join-01: failed: node 5 failed (exit code 1)"))
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/summary.json"))) as? [String: Any])
        let rows = try #require(summary["scenarios"] as? [[String: Any]])
        #expect(rows.map { $0["scenario"] as? String } == ["kill1", "kill2", "partition1", "join"])
        func number(_ value: Any?) -> Double? { (value as? NSNumber)?.doubleValue }
        let kill1 = rows[0]
        #expect(kill1["runs"] as? Int == 3 && kill1["finished"] as? Int == 3)
        #expect(number(kill1["fault_to_view_ms_median"]) == 300)  // 300, 200 (the unexplained change does not count), 400
        #expect(number(kill1["detect_to_view_ms_median"]) == 50)   // per run the slowest: 40, 70, 50
        #expect(number(kill1["recovery_ms_median"]) == 600)        // 500, 700; the third did not recover
        #expect(kill1["not_recovered"] as? Int == 1 && kill1["unexplained_view_changes"] as? Int == 1)
        #expect(number(rows[1]["fault_to_view_ms_median"]) == 450)
        #expect(rows[2]["order_agreed_false"] as? Int == 1 && rows[2]["views_agreed_false"] as? Int == 0)
        #expect(rows[3]["runs"] as? Int == 2 && rows[3]["failed"] as? Int == 2)
        #expect(FileManager.default.fileExists(atPath: out + "/summary.txt"))
    }

    /// A stub ringcast-bench: records its arguments, whether the LAN was up while it ran, and answers like the
    /// real one (exit 3 and order_agreed false for partitions, so that the exit status is tested too).
    static func stubBench(in directory: String, body: String? = nil) throws -> String {
        let path = directory + "/ringcast-bench"
        try ("""
        #!/usr/bin/env bash
        dir=\(directory)
        echo "$*" >> "$dir/calls"
        prefix=""; logs=""
        while (($#)); do case "$1" in --lan-prefix) prefix=$2; shift 2;; --delivery-log) logs=$2; shift 2;; *) shift;; esac; done
        mkdir -p "$logs" && echo "1 0 1 10000 ff" > "$logs/node-0.log"
        if ip netns list | grep -q "^$prefix-h6"; then echo up >> "$dir/lan-seen"; else echo down >> "$dir/lan-seen"; fi
        \(body ?? "")
        case "$(cat "$dir/calls" | tail -n 1)" in
          *--partition*) echo '{"view_changes": [{"view_id": 2, "fault": "partition 2@2", "fault_to_view_ms": 260, "detect_to_view_ms": 210}], "recovery_ms": 600, "recovery_status": "recovered", "order_agreed": false, "views_agreed": true}'; exit 3;;
          *) echo '{"view_changes": [{"view_id": 2, "fault": "kill 2@2", "fault_to_view_ms": 250, "detect_to_view_ms": 40}], "recovery_ms": 400, "recovery_status": "recovered", "order_agreed": true, "views_agreed": true}';;
        esac
        """).write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        try "#!/bin/sh\nexit 0\n".write(toFile: directory + "/ringcast-node", atomically: true, encoding: .utf8)
        chmod(directory + "/ringcast-node", 0o755)
        return path
    }

    @Test(.enabled(if: LANHarness.canBuildNamespaces, "needs root and a working `ip netns` (iproute2)"))
    func wholeRun_keepsEveryRunTheLogsOfBrokenOnesAndTakesTheLANDown() throws {
        let work = try LANHarness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let bench = try Self.stubBench(in: work)
        let result = Self.run(["--runs", "2", "--extra-runs", "1", "--prefix", "rcft", "--rate", "none", "--bench", bench,
                               "--out", work + "/out", "--budget", "600"])
        #expect(result.status == 3, "order broken in the partition runs: exit 3, got \(result.status): \(result.stderr)")
        let calls = try String(contentsOfFile: work + "/calls", encoding: .utf8).split(separator: "\n")
        #expect(calls.count == 6)
        #expect(try String(contentsOfFile: work + "/lan-seen", encoding: .utf8) == String(repeating: "up\n", count: 6))
        for name in ["kill1-01", "kill1-02", "kill2-01", "partition1-01", "partition1-02", "join-01"] {
            #expect(FileManager.default.fileExists(atPath: "\(work)/out/\(name).json"), "\(name).json missing")
        }
        #expect(!FileManager.default.fileExists(atPath: work + "/out/kill1-01-logs"), "logs of a good run are deleted")
        #expect(FileManager.default.fileExists(atPath: work + "/out/partition1-01-logs/node-0.log"), "logs of a broken run are kept")
        #expect(result.stdout.contains("partition1") && FileManager.default.fileExists(atPath: work + "/out/summary.json"))
        #expect(LANHarness(prefix: "rcft").namespacesOfPrefix().isEmpty, "the LAN was left up")
    }

    @Test(.enabled(if: LANHarness.canBuildNamespaces, "needs root and a working `ip netns` (iproute2)"),
          arguments: [SIGINT, SIGTERM])
    func ctrlC_stopsTheRunningBenchmarkAndTakesTheLANDown(signal: Int32) throws {
        let work = try LANHarness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: work) }
        // This stub hangs (like a benchmark mid-run) and records its pid.
        let bench = try Self.stubBench(in: work, body: "echo $$ > \"$dir/pid\"; sleep 300 & wait")
        let script = try Self.spawnWithDefaultSignals([Self.toolPath, "--runs", "1", "--scenarios", "kill1", "--prefix", "rcft",
                                                       "--rate", "none", "--bench", bench, "--out", work + "/out"],
                                                      output: work + "/faults.out")
        var status: Int32 = 0
        var reaped = false
        defer {
            if !reaped {
                kill(script, SIGKILL)
                waitpid(script, &status, 0)
                _ = LANHarness(prefix: "rcft").tool(["down", "--prefix", "rcft"])
            }
        }
        try LANHarness.waitFor(seconds: 30) { FileManager.default.fileExists(atPath: work + "/pid") }
        let pid = try #require(Int32(try String(contentsOfFile: work + "/pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        kill(script, signal)
        try LANHarness.waitFor(seconds: 30) { waitpid(script, &status, WNOHANG) == script }
        reaped = true
        #expect(status & 0x7f == 0 && (status >> 8) & 0xff == 128 + signal, "wait status \(status)")
        try LANHarness.waitFor(seconds: 5) { kill(pid, 0) != 0 }
        #expect(LANHarness(prefix: "rcft").namespacesOfPrefix().isEmpty, "the LAN was left up")
        let said = (try? String(contentsOfFile: work + "/faults.out", encoding: .utf8)) ?? ""
        #expect(said.contains("stopping the current run and taking the LAN down"), "\(said)")
    }

    /// posix_spawn with SIGINT and SIGTERM reset to their defaults: a test runner started in the background
    /// inherits SIGINT ignored, and a non-interactive bash cannot trap a signal ignored on entry (bash(1),
    /// SIGNALS), which would make the Ctrl-C test meaningless.
    static func spawnWithDefaultSignals(_ arguments: [String], output: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGINT)
        sigaddset(&defaults, SIGTERM)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let path = "PATH=/usr/sbin:/usr/bin:/sbin:/bin:" + (ProcessInfo.processInfo.environment["PATH"] ?? "")
        let environment = ProcessInfo.processInfo.environment.filter { $0.key != "PATH" }.map { "\($0.key)=\($0.value)" } + [path]
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, envp)
        try #require(result == 0, "posix_spawn \(arguments[0]): \(String(cString: strerror(result)))")
        return pid
    }
}
