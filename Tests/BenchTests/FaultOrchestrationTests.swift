#if canImport(Glibc)
import RingCastJSON
import Glibc
#endif
import Foundation
import Testing
@testable import RingCastBenchKit

/// ringcast-bench injecting faults into stub nodes that follow the group-membership contract (`--members`,
/// `--view`, `views`, `timeline`, SIGTERM prints the report): SIGKILL, a loopback partition (SIGSTOP until the
/// others are done), a join, and a partition on the emulated LAN (tools/lan cut, healed at the end).
@Suite(.serialized) struct FaultOrchestrationTests {
    /// A stub node. It records its arguments and start time, ticks into `ticks-<id>` every 50 ms until the
    /// schedule's end (so a stop shows as a gap), writes a delivery log, and prints a report with view 1 (the
    /// initial one; a joiner has none) and view 2 = `view2` for `causes`, when given.
    static func node(_ stubs: OrchestrationTests.Stubs, view2: [Int], causes: [String], extra: String = "",
                     tick: String = "", beforeEnd: String = "") throws -> String {
        let members = view2.map(String.init).joined(separator: ",")
        let causesJSON = causes.map { "\\\"\($0)\\\"" }.joined(separator: ",")
        return try stubs.script("faultnode", """
        dir=\(stubs.directory)
        all="$*"
        id=0; log=""; size=0; view=""; start_at=0; warmup=0; duration=0; cooldown=0
        while (($#)); do
          case "$1" in
            --id) id=$2; shift 2;; --delivery-log) log=$2; shift 2;; --size) size=$2; shift 2;;
            --view) view=$2; shift 2;; --start-at) start_at=$2; shift 2;; --warmup) warmup=$2; shift 2;;
            --duration) duration=$2; shift 2;; --cooldown) cooldown=$2; shift 2;;
            --send|--json) shift;; *) shift 2;;
          esac
        done
        now() { date +%s%N; }
        echo "$(now) $all" > "$dir/started-$id"
        joiner=1; for m in ${view//,/ }; do [[ $m == "$id" ]] && joiner=0; done
        in_view2=0; for m in \(members.isEmpty ? "" : members.replacingOccurrences(of: ",", with: " ")); do [[ $m == "$id" ]] && in_view2=1; done
        : > "$log"
        if ((!joiner)); then for seq in 1 2 3; do echo "1 0 $seq $size $seq" >> "$log"; done; fi
        phase_ms=$(awk -v w="$warmup" -v d="$duration" -v c="$cooldown" 'BEGIN { printf "%d", (w + d + c) * 1000 }')
        end=$((start_at + phase_ms * 1000000))
        emit() {
          local t; t=$(now)
          ((in_view2)) && echo "2 0 4 $size 4" >> "$log"
          local lines; lines=$(wc -l < "$log")
          local views=""
          ((!joiner)) && views="{\\"view_id\\": 1, \\"members\\": [$view], \\"causes\\": [\\"initial\\"], \\"change_started_unix_ns\\": 0, \\"installed_unix_ns\\": $start_at}"
          if [[ -n "\(members)" ]]; then
            [[ -n "$views" ]] && views="$views, "
            views="$views{\\"view_id\\": 2, \\"members\\": [\(members)], \\"causes\\": [\(causesJSON)], \\"change_started_unix_ns\\": $((t - 100000000)), \\"installed_unix_ns\\": $((t - 50000000))}"
          fi
          local buckets; buckets=$(printf '1000,%.0s' $(seq $((phase_ms / 50))))
          \(extra)
          printf '{"id": %d, "delivered_messages": %d, "delivered_bytes": %d, "throughput_mbit_s": %d, "total_delivered": %d, "order_digest": "d%d", "views": [%s], "timeline": {"bucket_ms": 50, "start_unix_ns": %s, "delivered_bytes": [%s]}}\\n' \\
            "$id" "$lines" $((lines * size)) $((90 + id)) "$lines" "$lines" "$views" "$start_at" "${buckets%,}"
          echo "$(now)" > "$dir/exit-$id"
          exit 0
        }
        trap 'echo "$(now)" > "$dir/term-$id"; emit' TERM
        while (($(now) < end)); do echo "$(now)" >> "$dir/ticks-$id"; \(tick.isEmpty ? ":" : tick); sleep 0.05; done
        \(beforeEnd)
        emit
        """)
    }

    static func config(nodes: Int = 3, node: String, faults: [Fault], stubs: OrchestrationTests.Stubs) -> BenchConfiguration {
        var config = OrchestrationTests.config(nodes: nodes, node: node)
        config.warmupSeconds = 0.6  // with the fault at 0.1 s, 0.7 s of timeline before it: enough for a baseline
        config.durationSeconds = 1
        config.setupSeconds = 0.5
        config.graceSeconds = 8
        config.faults = FaultSchedule.sorted(faults)
        config.deliveryLogDirectory = stubs.directory + "/logs"
        return config
    }

    static func nanos(_ stubs: OrchestrationTests.Stubs, _ file: String) throws -> [Int64] {
        try String(contentsOfFile: stubs.directory + "/" + file, encoding: .utf8)
            .split(whereSeparator: \.isWhitespace).compactMap { Int64(String($0)) }
    }

    @Test func killAndJoinAreInjectedOnScheduleAndReported() throws {
        let stubs = try OrchestrationTests.Stubs()
        let node = try Self.node(stubs, view2: [0, 1, 3], causes: ["link_lost 2", "joined 3"])
        let kill = Fault(kind: .kill, nodeID: 2, atSeconds: 0.1), join = Fault(kind: .join, nodeID: 3, atSeconds: 0.3)
        let config = Self.config(node: node, faults: [join, kill], stubs: stubs)
        let result = try BenchRunner(config: config).run()

        #expect(result.faults.injected.map(\.fault) == [kill, join])
        #expect(result.faults.killed == [2] && result.nodes.map(\.id) == [0, 1, 3] && result.survivors.map(\.id) == [0, 1, 3])
        #expect(result.viewsAgreed, "\(result.views.problems)")
        #expect(result.orderAgreed, "\(result.order.problems) \(result.deliveryLog?.problems ?? [])")
        #expect(result.deliveryLog?.ok == true)
        // On time: the run loop wakes for a fault, so each lands within a few poll periods of its schedule.
        let start = result.faults.measurementStartUnixNanos
        for (injected, seconds) in zip(result.faults.injected, [0.1, 0.3]) {
            let offset = Double(injected.unixNanos - start) / 1e9
            #expect(offset >= seconds - 0.001 && offset < seconds + 0.2, "\(injected.fault) at \(offset) s")
        }
        // The killed stub stopped ticking at the kill; the joiner started at its join, as a joiner.
        let lastTick = try #require(try Self.nanos(stubs, "ticks-2").last)
        #expect(lastTick <= result.faults.injected[0].unixNanos)
        let joiner = try String(contentsOfFile: stubs.directory + "/started-3", encoding: .utf8)
        let joinerStart = try #require(Int64(joiner.split(separator: " ")[0]))
        #expect(joinerStart >= result.faults.injected[1].unixNanos)
        #expect(joiner.contains("--id 3 --members ") && joiner.contains(" --view 0,1,2 "))
        #expect(joiner.components(separatedBy: "127.0.0.1:").count - 1 == 4)

        let change = try #require(result.views.changes.first)
        #expect(change.viewID == 2 && change.fault == kill && change.attribution == "cause")
        #expect((change.faultToViewMillis ?? -1) > 0 && change.detectToViewMillis == 50)
        #expect(result.recovery.status == .recovered && result.recovery.millis == 0)
        let json = try JSONValue.parse(result.json.text)
        #expect(json["killed"] == .array([.integer(2)]) && json["survivors"] == .array([.integer(0), .integer(1), .integer(3)]))
    }

    @Test func aLoopbackPartitionStopsTheNodeUntilTheOthersAreDone() throws {
        let stubs = try OrchestrationTests.Stubs()
        let node = try Self.node(stubs, view2: [0, 2], causes: ["silent 1"])
        let partition = Fault(kind: .partition, nodeID: 1, atSeconds: 0.1)
        let result = try BenchRunner(config: Self.config(node: node, faults: [partition], stubs: stubs)).run()

        #expect(result.faults.partitioned == [1])
        #expect(result.nodes.map(\.id) == [0, 1, 2], "the partitioned node still reports")
        #expect(result.survivors.map(\.id) == [0, 2])
        #expect(result.orderAgreed, "\(result.order.problems) \(result.deliveryLog?.problems ?? [])")
        // Stopped at the partition: its last tick is within a tick of it (the others tick on for ~0.9 s more).
        // Released (SIGTERM, then SIGCONT) only after the others exited; it then reports without ticking again.
        let lastTick = try #require(try Self.nanos(stubs, "ticks-1").last)
        let partitionedAt = result.faults.injected[0].unixNanos
        #expect(lastTick <= partitionedAt + 100_000_000, "node 1 ticked \(Double(lastTick - partitionedAt) / 1e9) s after the partition")
        #expect(try Self.nanos(stubs, "ticks-0").last! > partitionedAt + 700_000_000)  // 0.9 s of schedule left
        let term = try #require(try Self.nanos(stubs, "term-1").first)
        for other in [0, 2] { #expect(try Self.nanos(stubs, "exit-\(other)")[0] <= term) }
    }

    @Test func aNodeThatEndsBadlyButReportsIsAcceptedInAFaultRun() throws {
        let stubs = try OrchestrationTests.Stubs()
        // Node 1 prints its report and exits 1, as a node that lost its quorum might.
        let node = try Self.node(stubs, view2: [0, 1], causes: ["link_lost 2"],
                                 extra: "trap 'exit 1' EXIT; [[ $id == 1 ]] || trap - EXIT")
        let result = try BenchRunner(config: Self.config(node: node, faults: [Fault(kind: .kill, nodeID: 2, atSeconds: 0.1)],
                                                         stubs: stubs)).run()
        #expect(result.nodes.map(\.id) == [0, 1])
        #expect(result.warnings.contains("node 1 exit code 1 but reported; its report is used"))
    }

    /// Whether the emulated LAN can be built here: root, and a working `ip netns` (as tools/lan's own tests decide).
    static let canBuildNamespaces: Bool = getuid() == 0 && run(["ip", "netns", "list"]).status == 0

    @Test(.enabled(if: canBuildNamespaces, "needs root and a working `ip netns` (iproute2) for the emulated LAN"))
    func aLANPartitionCutsTheHostAndHealsItAtTheEnd() throws {
        let stubs = try OrchestrationTests.Stubs()
        let lanTool = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("tools/lan").path
        let prefix = "rcbt"
        defer { _ = Self.run([lanTool, "down", "--prefix", prefix]) }
        // Every stub samples its own link on each tick (so the cut is seen whenever it lands, however loaded the
        // machine), and once more when it reports. The partitioned one lingers after its schedule, as a node
        // cut off from its group may: it must be healed and sent SIGTERM once the others are done.
        let look = "PATH=/usr/sbin:/sbin:$PATH ip -o link show dev eth0"
        let node = try Self.node(stubs, view2: [0, 2], causes: ["silent 1"], extra: "\(look) > \"$dir/link-$id\" 2>&1",
                                 tick: "\(look) >> \"$dir/links-$id\" 2>&1",
                                 beforeEnd: "if [[ $id == 1 ]]; then sleep 30 & wait $!; fi")
        var config = Self.config(node: node, faults: [Fault(kind: .partition, nodeID: 1, atSeconds: 0.1)], stubs: stubs)
        config.durationSeconds = 2
        config.lanRate = "none"
        config.lanPrefix = prefix
        config.lanTool = lanTool
        config.lanKeep = true
        config.setupSeconds = 1
        let result = try BenchRunner(config: config).run()

        #expect(result.faults.partitioned == [1] && result.survivors.map(\.id) == [0, 2])
        #expect(result.placementDescription.contains("emulated LAN 'rcbt'"))
        let late = result.faults.injected[0].lateMillis
        let samples = try String(contentsOfFile: stubs.directory + "/links-1", encoding: .utf8)
        #expect(samples.contains("NO-CARRIER"), "host 2's eth0 never lost carrier (cut took effect \(late) ms late)")
        // Released: healed first, then SIGTERM (after the others exited), so it reported with its link back.
        let atEnd = try String(contentsOfFile: stubs.directory + "/link-1", encoding: .utf8)
        #expect(atEnd.contains("LOWER_UP") && !atEnd.contains("NO-CARRIER"), "not healed before SIGTERM: \(atEnd)")
        let term = try #require(try Self.nanos(stubs, "term-1").first)
        for other in [0, 2] { #expect(try Self.nanos(stubs, "exit-\(other)")[0] <= term) }
        #expect(!(try String(contentsOfFile: stubs.directory + "/links-0", encoding: .utf8)).contains("NO-CARRIER"), "host 1 was cut too")
        // Healed after the run: the kept LAN is whole again.
        let status = Self.run([lanTool, "status", "--prefix", prefix])
        #expect(status.status == 0, "\(status.output)")
    }

    static func run(_ arguments: [String]) -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["timeout", "--kill-after=5", "60"] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin:" + (environment["PATH"] ?? "")
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        guard (try? process.run()) != nil else { return (-1, "could not start \(arguments)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
