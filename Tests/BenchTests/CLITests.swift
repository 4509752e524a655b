import Foundation
import Testing
@testable import RingCastBenchKit

/// The command line of ringcast-bench (ARCHITECTURE §3.1): defaults of the §2.6 experiment and every refusal.
@Suite struct CLITests {
    @Test func plainRunIsFiveNodesAllSendingTenKilobytes() throws {
        let config = try BenchCommand.parse([]).makeConfiguration()
        #expect(config.nodeCount == 5)
        #expect(config.senderIDs == [0, 1, 2, 3, 4])
        #expect(config.messageSizeBytes == 10_000)
        #expect(config.warmupSeconds == 1 && config.durationSeconds == 5 && config.cooldownSeconds == 2)
        #expect(config.fairness)
        #expect(!config.isLAN)
        #expect(config.effectiveRawLinkSeconds == 5)
        // Bounded: the whole plain run (raw link + setup + phases + grace) stays under a minute.
        #expect(config.effectiveRawLinkSeconds + config.effectiveSetupSeconds + config.nodePhaseSeconds + config.graceSeconds < 60)
    }

    @Test func sendersAreTheFirstKRingPositions() throws {
        let config = try BenchCommand.parse(["--nodes", "4", "--senders", "2"]).makeConfiguration()
        #expect(config.senderIDs == [0, 1])
        #expect(!config.allSend)
    }

    @Test func senderSetPicksPositions() throws {
        let config = try BenchCommand.parse(["--nodes", "5", "--sender-set", "4,0,2"]).makeConfiguration()
        #expect(config.senderIDs == [0, 2, 4])
    }

    @Test func optionsReachTheConfiguration() throws {
        let config = try BenchCommand.parse([
            "--nodes", "3", "--size", "100", "--warmup", "0", "--duration", "0.5", "--cooldown", "0",
            "--fairness", "off", "--window", "8", "--batch-count", "4", "--batch-bytes", "65536",
            "--zerocopy", "off", "--lan", "100mbit", "--json",
        ]).makeConfiguration()
        #expect(config.messageSizeBytes == 100 && !config.fairness && config.window == 8)
        #expect(config.batchCount == 4 && config.batchBytes == 65536 && config.zerocopy == "off")
        #expect(config.lanRate == "100mbit" && config.isLAN && config.json)
    }

    @Test(arguments: [
        ["--nodes", "1"],
        ["--nodes", "17"],
        ["--nodes", "5", "--senders", "6"],
        ["--senders", "0"],
        ["--size", "0"],
        ["--size", "-5"],
        ["--nodes", "5", "--sender-set", "0,5"],
        ["--sender-set", "1,1"],
        ["--sender-set", "a,b"],
        ["--senders", "2", "--sender-set", "0,1,2"],
        ["--duration", "0"],
        ["--warmup", "-1"],
        ["--cooldown", "nan"],
        ["--zerocopy", "maybe"],
        ["--lan", "fast"],
        ["--window", "0"],
        ["--fairness", "maybe"],
        ["--base-port", "80"],
        ["--lan-prefix", "Bad-Prefix"],
    ])
    func refusesBadSettings(arguments: [String]) {
        #expect(throws: (any Error).self) { _ = try BenchCommand.parse(arguments) }
    }

    @Test func sendersBeyondNodesSaysSo() {
        #expect(throws: BenchError.invalidConfiguration("--senders 6 exceeds --nodes 5")) {
            _ = try BenchConfiguration.senderIDs(count: 6, set: nil, nodeCount: 5)
        }
    }

    @Test func tcRatesInMegabits() {
        #expect(LinkRate.megabitsPerSecond("100mbit") == 100)
        #expect(LinkRate.megabitsPerSecond("1gbit") == 1000)
        #expect(LinkRate.megabitsPerSecond("500kbit") == 0.5)
        #expect(LinkRate.megabitsPerSecond("10mbps") == 80)  // tc: bps is bytes per second
        #expect(LinkRate.megabitsPerSecond("fast") == nil)
        #expect(LinkRate.megabitsPerSecond("0mbit") == nil)
    }

    @Test func nodeArgumentsFollowTheContract() throws {
        var config = try BenchCommand.parse(["--nodes", "3", "--senders", "1", "--window", "16", "--join", "@1"]).makeConfiguration()
        config.deliveryLogDirectory = "/tmp/logs"
        let placement = BenchRunner.Placement(addresses: Array(repeating: "127.0.0.1", count: 4), ports: [7001, 7003, 7005, 7007],
                                              rawLinkPort: 7009, lan: nil, description: "test")
        let runner = BenchRunner(config: config)
        let last = runner.nodeArguments(id: 2, placement: placement, startAtNanos: 42)
        let text = last.joined(separator: " ")
        // Every address (the joiner's too) in id order, and the initial view without the joiner.
        #expect(text.contains("--id 2 --members 127.0.0.1:7001,127.0.0.1:7003,127.0.0.1:7005,127.0.0.1:7007 --view 0,1,2"))
        #expect(text.contains("--mode quorum --heartbeat-ms 20 --suspect-ms 200"))
        #expect(text.contains("--start-at 42") && text.contains("--window 16") && text.contains("--fairness on"))
        #expect(text.contains("--delivery-log /tmp/logs/node-2.log") && text.contains("--json"))
        for retired in ["--nodes", "--successor", "--listen", "--view-id"] { #expect(!last.contains(retired)) }
        #expect(!last.contains("--send"))
        #expect(runner.nodeArguments(id: 0, placement: placement, startAtNanos: 42).contains("--send"))
        // The joiner gets the same list and view (it is not in it, so it joins), and only delivers by default.
        let joiner = runner.nodeArguments(id: 3, placement: placement, startAtNanos: 42)
        #expect(joiner.joined(separator: " ").contains("--id 3 --members 127.0.0.1:7001,127.0.0.1:7003,127.0.0.1:7005,127.0.0.1:7007 --view 0,1,2"))
        #expect(!joiner.contains("--send"))
        config.joinersSend = true
        #expect(BenchRunner(config: config).nodeArguments(id: 3, placement: placement, startAtNanos: 42).contains("--send"))
    }

    @Test func membershipOptionsPassThrough() throws {
        let config = try BenchCommand.parse(["--mode", "perfect", "--heartbeat-ms", "10", "--suspect-ms", "150"]).makeConfiguration()
        #expect(config.mode == .perfect && config.heartbeatMillis == 10 && config.suspectMillis == 150)
        let placement = BenchRunner.Placement(addresses: Array(repeating: "127.0.0.1", count: 5), ports: [1, 3, 5, 7, 9],
                                              rawLinkPort: 11, lan: nil, description: "test")
        let text = BenchRunner(config: config).nodeArguments(id: 0, placement: placement, startAtNanos: 1).joined(separator: " ")
        #expect(text.contains("--mode perfect --heartbeat-ms 10 --suspect-ms 150"))
        #expect(text.contains("--view 0,1,2,3,4"))
    }

    @Test func authPassesThroughWithAKeyFile() throws {
        let placement = BenchRunner.Placement(addresses: Array(repeating: "127.0.0.1", count: 3), ports: [1, 3, 5],
                                              rawLinkPort: 7, lan: nil, description: "test")
        let open = try BenchCommand.parse(["--nodes", "3"]).makeConfiguration()
        #expect(!BenchRunner(config: open).nodeArguments(id: 0, placement: placement, startAtNanos: 1).contains("--auth"))
        let frames = try BenchCommand.parse(["--nodes", "3", "--auth", "frames"]).makeConfiguration()
        let text = BenchRunner(config: frames).nodeArguments(id: 1, placement: placement, startAtNanos: 1,
                                                             clusterKey: "/w/cluster.key").joined(separator: " ")
        #expect(text.contains("--auth frames --cluster-key /w/cluster.key"))
        // Without --cluster-key the run makes one (mode 0600) in its work directory.
        let directory = "/tmp/ringcast-bench-keytest-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let made = try #require(try BenchRunner(config: frames).clusterKeyFile(work: directory))
        let attributes = try FileManager.default.attributesOfItem(atPath: made)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(throws: (any Error).self) { try BenchCommand.parse(["--auth", "maybe"]).makeConfiguration().validate() }
    }

    @Test func faultOptionsBecomeASortedSchedule() throws {
        let config = try BenchCommand.parse([
            "--nodes", "5", "--duration", "6", "--kill", "2@3", "--partition", "4@1.5", "--join", "@2", "--join", "@0.5",
            "--kill", "0@1.5",
        ]).makeConfiguration()
        #expect(config.faults == [
            Fault(kind: .join, nodeID: 5, atSeconds: 0.5),
            Fault(kind: .kill, nodeID: 0, atSeconds: 1.5),
            Fault(kind: .partition, nodeID: 4, atSeconds: 1.5),
            Fault(kind: .join, nodeID: 6, atSeconds: 2),
            Fault(kind: .kill, nodeID: 2, atSeconds: 3),
        ])
        #expect(config.totalNodeCount == 7 && config.joinCount == 2)
        #expect(config.broadcastingIDs == [0, 1, 2, 3, 4])
    }

    @Test(arguments: [
        (["--kill", "5@1"], "there is no node 5 (ids 0…4)"),
        (["--kill", "2"], "expected ID@SECONDS"),
        (["--kill", "x@1"], "expected ID@SECONDS"),
        (["--kill", "2@soon"], "'soon' is not a number of seconds"),
        (["--kill", "2@5"], "outside the measurement (0 ≤ SECONDS < --duration 5)"),
        (["--partition", "1@-1"], "outside the measurement"),
        (["--join", "2"], "expected @SECONDS"),
        (["--join", "@9"], "outside the measurement"),
        (["--kill", "2@1", "--partition", "2@2"], "node 2 is already the target of 'kill 2@1'"),
        (["--kill", "5@1", "--join", "@2"], "node 5 only joins at 2 s"),
        (["--nodes", "2", "--kill", "0@1", "--kill", "1@1"], "every node would be killed or partitioned"),
        (["--nodes", "16", "--join", "@1"], "make 17 nodes; at most 16"),
        (["--heartbeat-ms", "0"], "--heartbeat-ms must be in 1…10000"),
        (["--suspect-ms", "20"], "--suspect-ms must exceed --heartbeat-ms"),
        (["--mode", "majority"], ""),
    ])
    func faultOptionsAreRefusedClearly(arguments: [String], message: String) {
        #expect {
            _ = try BenchCommand.parse(arguments)
        } throws: { error in
            message.isEmpty || BenchCommand.message(for: error).contains(message)
        }
    }

    @Test func killingAMajorityInQuorumModeIsAllowedButWarned() throws {
        let config = try BenchCommand.parse(["--nodes", "5", "--kill", "0@1", "--kill", "1@1", "--kill", "2@1.5"]).makeConfiguration()
        #expect(config.warnings.count == 1)
        #expect(config.warnings[0].contains("leave 2 of 5 members"))
        let perfect = try BenchCommand.parse(["--nodes", "5", "--mode", "perfect", "--kill", "0@1", "--kill", "1@1", "--kill", "2@1"]).makeConfiguration()
        #expect(perfect.warnings.isEmpty)
    }

    @Test func portsLeaveRoomForControlPlanes() {
        // 5 nodes + 1 joiner: 12 ports for data and control, 1 for the raw link.
        #expect(throws: (any Error).self) { _ = try BenchCommand.parse(["--base-port", "65524", "--join", "@1"]) }
        #expect(throws: Never.self) { _ = try BenchCommand.parse(["--base-port", "65524"]) }
    }

    @Test func lanStatusLineIsParsed() {
        let parsed = LANController.parseStatus("LAN rcb: 5 hosts, rate 100mbit (tbf burst 65536 B, limit 1 B up / 2 B down)")
        #expect(parsed?.hosts == 5 && parsed?.rate == "100mbit")
        #expect(LANController.parseStatus("garbage") == nil)
    }
}
