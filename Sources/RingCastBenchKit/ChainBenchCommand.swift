import ArgumentParser
import ChainBFT
import Dispatch
import Foundation
import Histogram
import RingCastChain
import RingCastJSON
import RingCastLocalPorts
import RingCastSMR
import Synchronization

/// `ringcast-bench chain`: Chain BFT throughput, latency and MAC cost per request at each chain position, beside the
/// model of chain-bft-spec.md §16.2 (1 + (2f+1)/b at the bottleneck, b the measured mean batch size).
public struct ChainBenchCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "chain",
        abstract: "Benchmark Chain BFT (n = 3f+1 replicas, closed-loop clients) on loopback or the emulated LAN.",
        discussion: """
        Runs the 3f+1 replicas as ChainBFT replicas in this process, each on its own engine thread with its own \
        io_uring and TCP links over 127.0.0.1 (data to the successor, control to every replica), and --clients \
        closed-loop clients, each with --depth requests in flight (one ChainClient per client, its own engine \
        thread). Requests are --request-size bytes, replies --reply-size bytes. After --warmup seconds the counters \
        are read, again after --duration seconds; the report is the difference: requests committed per second, \
        request payload Mbit/s, latency p50/p99/max (µs), the head's mean batch size b, and per chain position the \
        MAC generations + verifications per executed request, beside the model of spec §16.2 evaluated at the \
        measured b. The model counts the ordering path only; CHECKPOINTs add about 6f/CHK per request \
        (model_mac_ops_per_request_with_checkpoints).

        With --lan RATE every replica is its own process on its own host of tools/lan (position p on host p+1), \
        the clients run in --client-hosts processes on hosts of their own, and the raw link is measured first in \
        the same run (ringperf stream from the first client host to the head's host: the link every request \
        crosses); the report adds link_efficiency = request payload bits/s ÷ raw link. Key files are written to a \
        temporary directory (mode 0700, files 0600) and removed with it; the LAN is taken down at the end unless \
        --lan-keep.
        """)

    @Option(help: "Faults tolerated: n = 3f+1 replicas.") var f: UInt32 = 1
    @Option(help: "Closed-loop clients.") var clients = 4
    @Option(help: "Requests in flight per client.") var depth = 16
    @Option(name: .customLong("request-size"), help: "Request payload bytes.") var requestSize = 8
    @Option(name: .customLong("reply-size"), help: "Reply payload bytes.") var replySize = 8
    @Option(name: .customLong("batch-count"), help: "b_max: requests per batch at the head (1: no batching).") var batchCount: UInt32 = 64
    @Option(name: .customLong("batch-bytes"), help: "Request bytes per batch at the head at most.") var batchBytes: UInt32 = 256 << 10
    @Option(name: .customLong("checkpoint-interval"), help: "CHK: requests per checkpoint.") var checkpointInterval: UInt32 = 128
    @Option(help: "Warm-up seconds (not measured).") var warmup = 1.0
    @Option(help: "Measurement seconds.") var duration = 5.0
    @Flag(help: "Print one JSON object.") var json = false
    @Option(name: .long, help: ArgumentHelp("Run on the emulated LAN (tools/lan) at this rate, e.g. 100mbit, 1gbit.", valueName: "rate"))
    var lan: String?
    @Option(name: .customLong("lan-prefix"), help: "Namespace prefix of the LAN (chl…).") var lanPrefix = "chl"
    @Flag(name: .customLong("lan-keep"), help: "Leave the LAN up after the run.") var lanKeep = false
    @Option(name: .customLong("lan-tool"), help: ArgumentHelp("Path of tools/lan (default: found upward).", valueName: "path"))
    var lanTool: String?
    @Option(name: .customLong("client-hosts"), help: "With --lan: hosts (one driver process each) the clients are spread over.")
    var clientHosts = 2
    @Option(name: .customLong("driver-submit"),
            help: "With --lan: how the drivers' closed loops submit: 'callback' (ChainClient.submit(_:completion:)) or 'async' (one Task per loop, await submit).")
    var driverSubmit = "callback"
    @Option(name: .customLong("raw-link-seconds"), help: "With --lan: seconds of the raw-link test (ringperf stream).")
    var rawLinkSeconds = 5.0

    public init() {}

    public func validate() throws {
        guard (1...4).contains(f) else { throw ValidationError("--f is 1...4 here") }
        guard (1...256).contains(clients), (1...1024).contains(depth) else { throw ValidationError("--clients 1...256, --depth 1...1024") }
        guard (0...(1 << 20)).contains(requestSize), (0...(1 << 20)).contains(replySize) else {
            throw ValidationError("--request-size and --reply-size are 0...1048576")
        }
        guard (1...4096).contains(batchCount) else { throw ValidationError("--batch-count is 1...4096") }
        guard checkpointInterval >= 1, warmup >= 0, duration > 0 else { throw ValidationError("--checkpoint-interval ≥ 1, --duration > 0") }
        if let lan {
            guard Self.validRate(lan) else { throw ValidationError("--lan takes a tc rate such as 100mbit or 1gbit, not '\(lan)'") }
            guard ["callback", "async"].contains(driverSubmit) else { throw ValidationError("--driver-submit is callback or async") }
            guard Self.validPrefix(lanPrefix) else {
                throw ValidationError("--lan-prefix is 'chl' followed by at most 5 of [a-z0-9] (the chain bench's own LANs), not '\(lanPrefix)'")
            }
            guard (1...Int(clients)).contains(clientHosts) else { throw ValidationError("--client-hosts is 1...--clients") }
            guard Int(3 * f + 1) + clientHosts <= 16 else { throw ValidationError("3f+1 replicas + --client-hosts exceed tools/lan's 16 hosts") }
            guard rawLinkSeconds >= 1, rawLinkSeconds <= 60 else { throw ValidationError("--raw-link-seconds is 1...60") }
            guard warmup + duration <= 600 else { throw ValidationError("--warmup + --duration ≤ 600 s on the LAN") }
        }
    }

    /// tc's rate syntax as tools/lan accepts it: digits and a unit (kbit, mbit, gbit; bit, bps…).
    static func validRate(_ text: String) -> Bool {
        let digits = text.prefix { $0.isNumber }
        let unit = text.dropFirst(digits.count)
        return !digits.isEmpty && digits.first != "0" && ["kbit", "mbit", "gbit", "bit", "kbps", "mbps", "gbps"].contains(unit.lowercased())
    }

    /// The nominal rate in Mbit/s of a tc rate (100mbit → 100, 1gbit → 1000), nil if it is not one ``validRate(_:)`` takes.
    static func nominalMbit(_ text: String) -> Double? {
        guard validRate(text) else { return nil }
        let digits = text.prefix { $0.isNumber }
        guard let value = Double(digits) else { return nil }
        switch text.dropFirst(digits.count).lowercased() {
        case "bit": return value / 1e6
        case "kbit": return value / 1e3
        case "mbit": return value
        case "gbit": return value * 1e3
        case "bps": return value * 8 / 1e6
        case "kbps": return value * 8 / 1e3
        case "mbps": return value * 8
        case "gbps": return value * 8e3
        default: return nil
        }
    }

    /// The chain bench's LANs are `chl…` (other benches own rcl, kvl, …): tools/lan's [a-z][a-z0-9]{0,7}, chl first.
    static func validPrefix(_ text: String) -> Bool {
        text.hasPrefix("chl") && text.count <= 8 && text.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) }
    }

    /// A replica's settings, the same in-process and as a `chain-replica` process: frames and receive buffers sized to
    /// a full batch of these requests.
    static func replicaSettings(f: UInt32, position: UInt32, endpoints: [ChainEndpoint], clients: Int, batchCount: UInt32,
                                batchBytes: UInt32, checkpointInterval: UInt32, requestSize: Int) -> ChainReplica<ChainBenchMachine>.Settings {
        var settings = ChainReplica<ChainBenchMachine>.Settings(f: f, position: position, replicas: endpoints)
        settings.clientsMax = UInt32(clients)
        settings.batchCountMax = batchCount
        settings.batchBytesMax = batchBytes
        settings.checkpointInterval = checkpointInterval
        settings.limits.frameBytesMax = max(settings.limits.frameBytesMax, Int(batchBytes) + 64 * Int(batchCount) + (1 << 17) + 2 * requestSize)
        settings.receiveBufferBytes = UInt32(max(Int(settings.receiveBufferBytes), (settings.limits.frameBytesMax * 2 + 4095) / 4096 * 4096))
        return settings
    }

    public func run() throws {
        final class Outcome: @unchecked Sendable {
            var result: Result<String, any Error>?
            let command: ChainBenchCommand
            let done = DispatchSemaphore(value: 0)
            init(_ command: ChainBenchCommand) { self.command = command }
        }
        if lan != nil {
            print(try measureLAN())
            return
        }
        let outcome = Outcome(self)
        Task {
            do { outcome.result = .success(try await outcome.command.measure()) } catch { outcome.result = .failure(error) }
            outcome.done.signal()
        }
        outcome.done.wait()
        print(try outcome.result!.get())
    }

    struct Sample {
        var executed: [UInt64]
        var macOps: [UInt64]
        var headBatches: UInt64
        var headRequests: UInt64
        var checkpointsStable: [UInt64]
        var nanos: UInt64
        /// Per position: user-space payload copies on the forwarding path, and requests logged.
        var copies: [UInt64] = []
        var logged: [UInt64] = []
    }

    private func sample(_ replicas: [ChainReplica<ChainBenchMachine>]) -> Sample {
        let stats = replicas.map(\.statistics)
        return Sample(executed: stats.map(\.executed), macOps: stats.map { $0.macGenerations + $0.macVerifications },
                      headBatches: stats[0].batchesOut, headRequests: stats[0].requestsLogged,
                      checkpointsStable: stats.map(\.stableCheckpoint), nanos: chainBenchNow(),
                      copies: stats.map(\.payloadCopies), logged: stats.map(\.requestsLogged))
    }

    func measure() async throws -> String {
        let n = Int(3 * f + 1)
        let keys = try RingCastChain.ChainKeys.generate(f: f, clients: UInt32(clients))
        let endpoints = try chainBenchPorts(n).map { ChainEndpoint(host: "127.0.0.1", port: $0) }
        var replicas: [ChainReplica<ChainBenchMachine>] = []
        defer { for replica in replicas { replica.stop() } }
        for position in 0..<n {
            let settings = Self.replicaSettings(f: f, position: UInt32(position), endpoints: endpoints, clients: clients,
                                                batchCount: batchCount, batchBytes: batchBytes,
                                                checkpointInterval: checkpointInterval, requestSize: requestSize)
            let replica = try ChainReplica(settings: settings, keyRing: try keys.keyRing(for: .replica(UInt32(position))),
                                           machine: ChainBenchMachine(replyBytes: replySize))
            try replica.start()
            replicas.append(replica)
        }
        for replica in replicas where !replica.waitForLinks() { throw ValidationError("replica \(replica.settings.position) did not link up") }
        var sessions: [ChainClient] = []
        defer { for session in sessions { session.close() } }
        for c in 0..<clients {
            var settings = ChainClient.Settings(f: f, client: UInt32(c), replicas: endpoints)
            settings.windowMax = depth
            settings.checkpointInterval = checkpointInterval
            settings.timeoutNanos = 10_000_000_000
            let session = try ChainClient(settings: settings, keyRing: try keys.keyRing(for: .client(UInt32(c))))
            try session.start()
            sessions.append(session)
        }
        final class Flags: Sendable {
            let measuring = Atomic<Bool>(false)
            let stopAt = Atomic<UInt64>(UInt64.max)
        }
        let flags = Flags()
        let op = ChainOperation.command(ChainBenchMachine.Payload(bytes: [UInt8](repeating: 0xa5, count: requestSize)))
        let histograms = try await withThrowingTaskGroup(of: Histogram<UInt64>.self) { group -> ([Histogram<UInt64>], Sample, Sample) in
            for session in sessions {
                for _ in 0..<depth {
                    group.addTask {
                        var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000,
                                                          numberOfSignificantValueDigits: .three)
                        while chainBenchNow() < flags.stopAt.load(ordering: .relaxed) {
                            let start = chainBenchNow()
                            _ = try await session.submit(op)
                            if flags.measuring.load(ordering: .relaxed) { _ = histogram.record((chainBenchNow() - start) / 1000) }
                        }
                        return histogram
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(Int(warmup * 1000)))
            let first = sample(replicas)
            flags.measuring.store(true, ordering: .relaxed)
            try await Task.sleep(for: .milliseconds(Int(duration * 1000)))
            flags.measuring.store(false, ordering: .relaxed)
            let last = sample(replicas)
            flags.stopAt.store(0, ordering: .relaxed)
            var all: [Histogram<UInt64>] = []
            for try await histogram in group { all.append(histogram) }
            return (all, first, last)
        }
        return report(histograms: histograms.0, first: histograms.1, last: histograms.2)
    }

    func report(histograms: [Histogram<UInt64>], first: Sample, last: Sample, transport: String = "loopback, in-process replicas (one engine thread and io_uring each)",
                extraFields: [(String, JSONValue)] = [], extraLines: [String] = []) -> String {
        var latency = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        for h in histograms { latency.add(h) }
        let seconds = Double(last.nanos - first.nanos) / 1e9
        let n = Int(3 * f + 1)
        let committed = last.executed[n - 1] - first.executed[n - 1]
        let requestsPerSecond = Double(committed) / seconds
        let batches = last.headBatches - first.headBatches
        let b = batches == 0 ? 0 : Double(last.headRequests - first.headRequests) / Double(batches)
        var perPosition: [(String, JSONValue)] = []
        var modelPerPosition: [(String, JSONValue)] = []
        var bottleneck = 0.0
        for p in 0..<n {
            let executed = last.executed[p] - first.executed[p]
            let ops = executed == 0 ? 0 : Double(last.macOps[p] - first.macOps[p]) / Double(executed)
            bottleneck = max(bottleneck, ops)
            perPosition.append(("\(p)", .number(ops)))
            modelPerPosition.append(("\(p)", .number(Self.model(f: Int(f), position: p, b: b))))
        }
        var copiesPerPosition: [(String, JSONValue)] = []
        if last.copies.count == n, first.copies.count == n, last.logged.count == n, first.logged.count == n {
            for p in 0..<n {
                let logged = last.logged[p] - first.logged[p]
                copiesPerPosition.append(("\(p)", .number(logged == 0 ? 0 : Double(last.copies[p] - first.copies[p]) / Double(logged))))
            }
        }
        let model = b == 0 ? 0 : 1 + Double(2 * f + 1) / b
        let checkpointTerm = Double(6 * f) / Double(checkpointInterval)
        let fields: [(String, JSONValue)] = [
            ("protocol", .string("chain")), ("f", .integer(Int64(f))), ("replicas", .integer(Int64(n))),
            ("clients", .integer(Int64(clients))), ("depth", .integer(Int64(depth))),
            ("request_size_bytes", .integer(Int64(requestSize))), ("reply_size_bytes", .integer(Int64(replySize))),
            ("batch_count_max", .integer(Int64(batchCount))), ("batch_bytes_max", .integer(Int64(batchBytes))),
            ("checkpoint_interval", .integer(Int64(checkpointInterval))), ("duration_s", .number(seconds)),
            ("transport", .string(transport)),
            ("requests", .integer(Int64(committed))), ("requests_per_s", .number(requestsPerSecond)),
            ("payload_mbit_s", .number(requestsPerSecond * Double(requestSize) * 8 / 1e6)),
            ("latency_us_p50", .integer(Int64(latency.valueAtPercentile(50)))),
            ("latency_us_p99", .integer(Int64(latency.valueAtPercentile(99)))),
            ("latency_us_max", .integer(Int64(latency.max))),
            ("mean_batch_size", .number(b)),
            ("mac_ops_per_request", .object(perPosition)),
            ("mac_ops_per_request_bottleneck", .number(bottleneck)),
            ("model_mac_ops_per_request", .object(modelPerPosition)),
            ("model_mac_ops_per_request_bottleneck", .number(model)),
            ("model_mac_ops_per_request_with_checkpoints", .number(model + checkpointTerm)),
            ("checkpoints_stable_during_run", .integer(Int64(last.checkpointsStable[0] - first.checkpointsStable[0]))),
            ("payload_copies_per_request", .object(copiesPerPosition)),
        ] + extraFields
        if json { return JSONValue.object(fields).text }
        var lines = [
            "ringcast-bench chain: f = \(f) (\(n) replicas), \(clients) clients × depth \(depth), request \(requestSize) B, reply \(replySize) B, b_max \(batchCount), CHK \(checkpointInterval)",
            String(format: "%.0f requests/s, %.2f Mbit/s request payload, latency p50 %llu µs p99 %llu µs max %llu µs, mean batch b = %.2f",
                   requestsPerSecond, requestsPerSecond * Double(requestSize) * 8 / 1e6, latency.valueAtPercentile(50),
                   latency.valueAtPercentile(99), latency.max, b),
            "MAC ops per request by position (measured | §16.2 model at b):",
        ]
        for p in 0..<n {
            if case .number(let measured) = perPosition[p].1, case .number(let modelled) = modelPerPosition[p].1 {
                lines.append(String(format: "  r%d  %.3f | %.3f", p + 1, measured, modelled))
            }
        }
        lines.append(String(format: "bottleneck %.3f, model 1 + (2f+1)/b = %.3f (+ checkpoints 6f/CHK = %.3f)", bottleneck, model, model + checkpointTerm))
        lines.append("user-space payload copies per request by position: " + copiesPerPosition.map { position, value in
            if case .number(let copies) = value { return String(format: "r%d %.2f", (Int(position) ?? 0) + 1, copies) }
            return ""
        }.joined(separator: ", "))
        lines += extraLines
        return lines.joined(separator: "\n")
    }

    /// Spec §16.2, 0-indexed positions: MAC generations + verifications per request at `position` for batch size b.
    static func model(f: Int, position p: Int, b: Double) -> Double {
        guard b > 0 else { return 0 }
        let j = p + 1, n = 3 * f + 1
        switch j {
        case 1: return 1 + Double(f + 1) / b
        case 2...(f + 1): return 1 + Double(f + j) / b
        case n: return 1 + Double(f + 1) / b
        case (2 * f + 1)...(3 * f): return 1 + Double(4 * f + 2 - j) / b
        default: return Double(2 * (f + 1)) / b
        }
    }
}

func chainBenchNow() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// Loopback ports for the replicas, from `LocalPorts`' pool for tools (outside the kernel's ephemeral range).
func chainBenchPorts(_ count: Int) throws(BenchError) -> [UInt16] {
    guard let ports = LocalPorts.free(count: count, pool: .tools) else {
        throw .portBusy(port: 0, detail: "found fewer than \(count) free loopback ports in \(LocalPorts.Pool.tools.range)")
    }
    return ports
}
