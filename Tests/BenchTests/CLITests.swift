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
        var config = try BenchCommand.parse(["--nodes", "3", "--senders", "1", "--window", "16"]).makeConfiguration()
        config.deliveryLogDirectory = "/tmp/logs"
        let placement = BenchRunner.Placement(addresses: ["127.0.0.1", "127.0.0.1", "127.0.0.1"], ports: [7001, 7002, 7003],
                                              rawLinkPort: 7004, lan: nil, description: "test")
        let runner = BenchRunner(config: config)
        let last = runner.nodeArguments(id: 2, placement: placement, startAtNanos: 42)
        let text = last.joined(separator: " ")
        #expect(text.contains("--id 2 --nodes 3 --listen 127.0.0.1:7003 --successor 127.0.0.1:7001"))
        #expect(text.contains("--start-at 42") && text.contains("--window 16") && text.contains("--fairness on"))
        #expect(text.contains("--delivery-log /tmp/logs/node-2.log") && text.contains("--json"))
        #expect(!last.contains("--send"))
        #expect(runner.nodeArguments(id: 0, placement: placement, startAtNanos: 42).contains("--send"))
    }

    @Test func lanStatusLineIsParsed() {
        let parsed = LANController.parseStatus("LAN rcb: 5 hosts, rate 100mbit (tbf burst 65536 B, limit 1 B up / 2 B down)")
        #expect(parsed?.hosts == 5 && parsed?.rate == "100mbit")
        #expect(LANController.parseStatus("garbage") == nil)
    }
}
