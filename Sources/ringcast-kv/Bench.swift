import RingCastJSON
import ArgumentParser
import Foundation
import Histogram
import RingCast
import RingCastSMR
import Synchronization

/// `ringcast-kv bench`: spawns the replicas on loopback, runs closed-loop clients, reports throughput and latency.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark a replicated key-value service: spawn replicas on loopback, run closed-loop clients.",
        discussion: """
        Spawns --replicas `ringcast-kv serve` processes on 127.0.0.1 (this executable), then runs --clients \
        client sessions in this process, each with --depth requests in flight (pipelining), for --duration seconds. \
        A request is a put (--writes percent) or a linearizable get of a uniformly chosen key among --keys. Prints \
        a progress line per second on stderr, then ops/s and latency p50/p99/max per kind (HdrHistogram, µs) and the \
        ring's delivery throughput underneath (bytes the replicas' groups delivered, per second, at replica 0). \
        --json prints the report as one JSON object instead.

        --check records every operation (invoke and return times, or no return for a timeout) and checks the \
        history for linearizability (RingCastLinCheck's checkKV, per key). --plant-bug stale-read makes the \
        replicas answer linearizable reads locally without the barrier; --check must catch it.
        --kill-after SECONDS kills (SIGKILL) the last replica then; the clients fail over.

        --lan RATE runs on the emulated LAN of tools/lan (as root; prefix --lan-prefix, default kvl): the replicas         on hosts 1…R, joiners after them, the clients on --client-hosts hosts of their own (one driver process each,         started through `tools/lan exec`); the raw link is measured first (ringperf stream, host 1 → host 2,         --raw-link-seconds). The report adds commands delivered × size against the raw link, each replica's ring         throughput and CPU per operation by stage, and the clients' CPU per operation. Faults on the measurement's         timeline: --kill ID@T (SIGKILL), --partition ID@T[+D] (tools/lan cut, healed after D), --join @T; the         faulted replicas are left out of the digest comparison. Exit codes: 2 not linearizable (or undecided),         3 exactly-once violated, 4 digests differ, 5 no digests. tools/kv-faults runs 20 such runs and summarises.
        """)

    @Option(help: "Replicas to spawn.")
    var replicas = 3
    @Option(help: "Client sessions.")
    var clients = 8
    @Option(help: "Requests in flight per client (pipelining).")
    var depth = 4
    @Option(help: ArgumentHelp("Percentage of requests that are writes (put).", valueName: "percent"))
    var writes = 50
    @Option(name: .customLong("value-size"), help: "Bytes per value.")
    var valueSize = 100
    @Option(help: "Distinct keys.")
    var keys = 1000
    @Option(help: ArgumentHelp("Measurement seconds.", valueName: "seconds"))
    var duration = 5.0
    @Flag(help: "Print the report as JSON.")
    var json = false
    @Flag(help: "Record the history and check it for linearizability.")
    var check = false
    @Option(name: .customLong("plant-bug"), help: ArgumentHelp("Passed to the replicas (stale-read).", valueName: "bug"))
    var plantBug: String?
    @Option(name: .customLong("kill-after"), help: ArgumentHelp("SIGKILL the last replica after this many seconds.", valueName: "seconds"))
    var killAfter: Double?
    @Option(name: .customLong("kill-replica"), help: ArgumentHelp("--protocol chain: the replica --kill-after kills (default: the last, the tail; 0 is the head and PBFT's first primary).", valueName: "id"))
    var killReplica: Int?
    @Option(name: .customLong("byzantine-at"), help: ArgumentHelp("--protocol chain: the head forges the ordering MACs of its instance-1 batches from this many seconds on (a transient Byzantine replica): the clients panic and switch to instance 2.", valueName: "seconds"))
    var byzantineAt: Double?
    @Option(name: .customLong("suspect-ms"), help: "Passed to the replicas: a member silent this long is suspected.")
    var suspectMillis = 200
    @Option(name: .customLong("timeout"), help: ArgumentHelp("Client request timeout.", valueName: "ms"))
    var timeoutMillis = 5_000
    @Option(help: ArgumentHelp("kv: puts and gets over --keys; incr: every request increments one counter, and the report checks it against the acknowledged and in-doubt increments (exactly once).", valueName: "kv|incr"))
    var workload = "kv"
    @Option(name: .customLong("protocol"), help: ArgumentHelp("lcr (default) or chain (Chain BFT; --replicas is 3f+1; ChainBench.swift).", valueName: "lcr|chain"))
    var protocolName = "lcr"
    @Option(help: ArgumentHelp("incr: counters the increments are spread over (uniformly); the report checks their sum. More than one keeps the checker's search small when many increments are in doubt (each counter is checked on its own).", valueName: "count"))
    var counters = 1
    @Option(name: .customLong("lan"), help: ArgumentHelp("Run on the emulated LAN (tools/lan) at this per-host rate (100mbit, 1gbit): replicas on hosts 1…R, joiners next, the clients on --client-hosts hosts of their own.", valueName: "rate"))
    var lan: String?
    @Option(name: .customLong("lan-prefix"), help: "The LAN's namespace prefix (tools/lan --prefix).")
    var lanPrefix = "kvl"
    @Option(name: .customLong("lan-tool"), help: ArgumentHelp("The tools/lan script (default: found upward from this executable).", valueName: "path"))
    var lanTool: String?
    @Flag(name: .customLong("lan-keep"), help: "Leave the LAN up after the run (a caller running many runs owns it).")
    var lanKeep = false
    @Option(name: .customLong("client-hosts"), help: "--lan: emulated hosts running the clients (one driver process each).")
    var clientHosts = 1
    @Option(name: .customLong("raw-link-seconds"), help: "--lan: seconds of the raw-link test (ringperf stream, host 1 to host 2) before the run; 0 skips it.")
    var rawLinkSeconds = 3.0
    @Option(name: .customLong("kill"), help: ArgumentHelp("--lan: SIGKILL replica ID SECONDS into the measurement (repeatable).", valueName: "ID@SECONDS"))
    var kill: [String] = []
    @Option(name: .customLong("partition"), help: ArgumentHelp("--lan: cut replica ID off the switch (tools/lan cut) SECONDS into the measurement, healed after DURATION if given (repeatable).", valueName: "ID@SECONDS[+DURATION]"))
    var partition: [String] = []
    @Option(name: .customLong("join"), help: ArgumentHelp("--lan: a new replica joins SECONDS into the measurement and receives the state (repeatable; ids R, R+1, …).", valueName: "@SECONDS"))
    var join: [String] = []
    @Option(name: .customLong("wait-ms"), help: "--lan: how long the drivers wait for the replicas before the measurement starts.")
    var waitMillis = 1_500
    @Option(name: .customLong("client-api"), help: ArgumentHelp("How the closed-loop workers call the client: completions (SMRClient.submit(_:completion:), no task per request) or async (one task per worker).", valueName: "completions|async"))
    var clientAPI = "completions"

    func validate() throws {
        guard (1...16).contains(replicas) else { throw ValidationError("--replicas is 1...16") }
        guard (1...1024).contains(clients) else { throw ValidationError("--clients is 1...1024") }
        guard (1...128).contains(depth) else { throw ValidationError("--depth is 1...128 (the session window)") }
        guard (0...100).contains(writes) else { throw ValidationError("--writes is a percentage") }
        guard (0...(60 << 10)).contains(valueSize) else { throw ValidationError("--value-size is 0...61440") }
        guard keys >= 1, duration > 0 else { throw ValidationError("--keys ≥ 1 and --duration > 0") }
        if let plantBug, plantBug != "stale-read" { throw ValidationError("--plant-bug knows only stale-read") }
        guard ["kv", "incr"].contains(workload) else { throw ValidationError("--workload is kv or incr") }
        guard ["completions", "async"].contains(clientAPI) else { throw ValidationError("--client-api is completions or async") }
        guard (1...1000).contains(counters) else { throw ValidationError("--counters is 1...1000") }
        guard ["lcr", "chain"].contains(protocolName) else { throw ValidationError("--protocol is lcr or chain") }
        if protocolName == "chain" {
            guard lan == nil else { throw ValidationError("--protocol chain runs on loopback only (no --lan yet)") }
        }
        guard (1...8).contains(clientHosts) else { throw ValidationError("--client-hosts is 1...8") }
        guard rawLinkSeconds >= 0, rawLinkSeconds <= 60 else { throw ValidationError("--raw-link-seconds is 0...60") }
        if lan == nil {
            guard kill.isEmpty, partition.isEmpty, join.isEmpty else {
                throw ValidationError("--kill, --partition and --join need --lan (on loopback: --kill-after)")
            }
        } else {
            guard killAfter == nil else { throw ValidationError("--kill-after is for loopback; with --lan use --kill ID@SECONDS") }
            let faults = try LANFaultPlan.parse(kill: kill, partition: partition, join: join, replicas: replicas)
            try faults.validate(replicas: replicas, duration: duration)
        }
    }

    func run() async throws {
        if protocolName == "chain" { return try await runChain() }
        if lan != nil {
            try await runLAN()
            return
        }
        let work = try WorkDirectory(prefix: "ringcast-kv-bench")
        // A planted bug's run fails by design: its logs are not worth keeping.
        var passed = plantBug != nil
        defer { work.finish(passed: passed) }
        let directory = work.path
        let cluster = try SpawnedCluster.start(replicas: replicas, directory: directory, plantBug: plantBug,
                                                suspectMillis: suspectMillis)
        defer { cluster.stop() }
        let clientAddresses = cluster.clientAddresses

        let statsClient = try await KVClient.connect(.init(replicas: [clientAddresses[0]]))
        defer { statsClient.close() }
        let ringBefore = try await statsClient.replicaStatistics()

        let progress = ProgressCounter()
        let startNanos = monotonicNow()
        let endNanos = startNanos + UInt64(duration * 1e9)
        let recording = check
        var settings = WorkerSettings(writesPercent: writes, valueSize: valueSize, keys: keys, endNanos: endNanos,
                                      record: recording, incrementOnly: workload == "incr", counters: counters)
        settings.completions = clientAPI == "completions"
        let progressTask = Task {
            var last = 0
            var second = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                second += 1
                let total = progress.count
                FileHandle.standardError.write(Data("[\(second) s] \(total - last) ops/s (\(total) total, \(progress.failures) failed)\n".utf8))
                last = total
            }
        }
        let killTask = killAfter.map { seconds in
            Task {
                try? await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
                if !Task.isCancelled { cluster.kill(replicas - 1) }
            }
        }
        let results = try await runSessions(addresses: clientAddresses, clients: clients, clientOffset: 0, depth: depth,
                                            timeoutMillis: timeoutMillis, settings: settings, progress: progress)
        let elapsed = Double(monotonicNow() - startNanos) / 1e9
        progressTask.cancel()
        killTask?.cancel()
        let ringAfter = (try? await statsClient.replicaStatistics()) ?? ringBefore

        var report = BenchReport(replicas: replicas, clients: clients, depth: depth, writesPercent: writes,
                                 valueSize: valueSize, keys: keys, seconds: elapsed)
        for result in results { report.add(result) }
        if ringAfter.count >= 10 && ringBefore.count >= 10 {
            report.ringMessagesPerSecond = Double(ringAfter[8] - ringBefore[8]) / elapsed
            report.ringBytesPerSecond = Double(ringAfter[9] - ringBefore[9]) / elapsed
            report.duplicatesAtReplica0 = ringAfter[2] - ringBefore[2]
        }
        if ringAfter.count >= 20 && ringBefore.count >= 20 && report.operations > 0 {
            let names = ["ingest", "broadcast", "decode", "apply", "reply", "delivery_thread", "writer", "process"]
            for (offset, name) in names.enumerated() {
                let nanos = ringAfter[12 + offset] &- ringBefore[12 + offset]
                report.cpuMicrosPerOperation.append((name, Double(nanos) / 1000 / Double(report.operations)))
            }
        }
        if workload == "incr" { report.counter = await readCounter(clientAddresses, counters: counters) }
        report.digests = await compareDigests(clientAddresses.enumerated().filter { index, _ in
            killAfter == nil || index != replicas - 1
        }.map(\.element))
        if check {
            let events = results.flatMap(\.events)
            report.check = checkHistory(events)
        }
        print(json ? report.json() : report.text())
        if report.exactlyOnce == false { throw ExitCode(3) }
        if report.digests?.equal == false { throw ExitCode(4) }
        if let check = report.check, !check.linearizable { throw ExitCode(2) }
        passed = true
    }
}

/// The sum of the incr workload's counters, read linearizably through any of `addresses` (an absent counter is
/// 0); nil if no replica answers or a counter is not one.
func readCounter(_ addresses: [Address], counters: Int) async -> Int64? {
    var options = KVClient.Options(replicas: addresses)
    options.timeoutMillis = 10_000
    guard let reader = try? await KVClient.connect(options) else { return nil }
    defer { reader.close() }
    var sum: Int64 = 0
    for index in 0..<counters {
        switch try? await reader.read(KVQuery(key: WorkerSettings.counterKey(index, of: counters))) {
        case let .value(bytes?)? where bytes.count == 8:
            sum &+= bytes.enumerated().reduce(Int64(0)) { $0 | Int64($1.element) << (8 * $1.offset) }
        case .value(nil)?: break
        default: return nil
        }
    }
    return sum
}

/// The outcome of `--check`.
struct CheckOutcome: Sendable {
    var linearizable: Bool
    var decided: Bool
    var operations: Int
    var keysChecked: Int
    var explanation: String?
}

struct BenchReport {
    let replicas: Int
    let clients: Int
    let depth: Int
    let writesPercent: Int
    let valueSize: Int
    let keys: Int
    let seconds: Double
    var puts = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var gets = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var incrs = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var failures = 0
    var incrementsAcknowledged = 0
    var incrementsInDoubt = 0
    /// The counter read (linearizable) after the run, with --workload incr.
    var counter: Int64?
    var ringMessagesPerSecond = 0.0
    var ringBytesPerSecond = 0.0
    var duplicatesAtReplica0: UInt64 = 0
    /// Replica 0's CPU per operation of the whole run (µs), by stage, and its whole process.
    var cpuMicrosPerOperation: [(String, Double)] = []
    /// The surviving replicas' state digests once they applied the same index.
    var digests: DigestComparison?
    var check: CheckOutcome?
    /// --lan: the link, the raw-link test and every replica's figures.
    var lan: LANFigures?
    /// --lan: from the start of the measurement until the last client returned.
    var elapsedSeconds: Double?

    /// Commands delivered per second × their size (the values the puts carried), in Mbit/s: what the issue's
    /// link-bound target compares with the raw link.
    var payloadMbit: Double { Double(puts.totalCount) * Double(valueSize) * 8 / seconds / 1e6 }

    init(replicas: Int, clients: Int, depth: Int, writesPercent: Int, valueSize: Int, keys: Int, seconds: Double) {
        self.replicas = replicas
        self.clients = clients
        self.depth = depth
        self.writesPercent = writesPercent
        self.valueSize = valueSize
        self.keys = keys
        self.seconds = seconds
    }

    mutating func add(_ result: WorkerResult) {
        puts.add(result.puts)
        gets.add(result.gets)
        incrs.add(result.incrs)
        failures += result.failures
        incrementsAcknowledged += result.incrementsAcknowledged
        incrementsInDoubt += result.incrementsInDoubt
    }

    var operations: UInt64 { puts.totalCount + gets.totalCount + incrs.totalCount }

    /// acknowledged ≤ counter ≤ acknowledged + in doubt: nothing acknowledged lost, nothing applied twice.
    var exactlyOnce: Bool? {
        counter.map { Int64(incrementsAcknowledged) <= $0 && $0 <= Int64(incrementsAcknowledged + incrementsInDoubt) }
    }

    func kind(_ histogram: Histogram<UInt64>) -> JSONValue {
        .object([("ops", .integer(Int64(histogram.totalCount))),
                 ("ops_per_second", .number(Double(histogram.totalCount) / seconds)),
                 ("p50_us", .integer(Int64(histogram.valueAtPercentile(50)))),
                 ("p99_us", .integer(Int64(histogram.valueAtPercentile(99)))),
                 ("max_us", .integer(Int64(histogram.max)))])
    }

    /// One JSON object, keys in reading order (the package's one writer, RingCastJSON).
    func json() -> String {
        var fields: [(String, JSONValue)] = [
            ("replicas", .integer(Int64(replicas))), ("clients", .integer(Int64(clients))), ("depth", .integer(Int64(depth))),
            ("in_flight", .integer(Int64(clients * depth))), ("writes_percent", .integer(Int64(writesPercent))),
            ("value_size", .integer(Int64(valueSize))), ("keys", .integer(Int64(keys))), ("seconds", .number(seconds)),
            ("ops", .integer(Int64(operations))), ("ops_per_second", .number(Double(operations) / seconds)),
            ("failures", .integer(Int64(failures))),
            ("put", kind(puts)), ("get", kind(gets)), ("incr", kind(incrs)),
            ("ring_delivered_messages_per_second", .number(ringMessagesPerSecond)),
            ("ring_delivered_mbit_per_second", .number(ringBytesPerSecond * 8 / 1e6)),
            ("duplicates_at_replica0", .integer(Int64(duplicatesAtReplica0))),
        ]
        if let digests {
            fields.append(("replica_digests", .object([
                ("equal", .bool(digests.equal)), ("index", .integer(Int64(digests.index))),
                ("replicas", .integer(Int64(digests.replicas))),
                ("digests", .array(digests.digests.map { .string(String(format: "%016llx", $0)) })),
            ])))
        }
        if !cpuMicrosPerOperation.isEmpty {
            fields.append(("cpu_us_per_op_replica0", .object(cpuMicrosPerOperation.map { ($0.0, .number($0.1)) })))
        }
        if let counter, let exactlyOnce {
            fields.append(("increments", .object([
                ("acknowledged", .integer(Int64(incrementsAcknowledged))), ("in_doubt", .integer(Int64(incrementsInDoubt))),
                ("counter", .integer(counter)), ("exactly_once", .bool(exactlyOnce)),
            ])))
        }
        if let lan {
            var figures: [(String, JSONValue)] = [
                ("rate", .string(lan.rate)), ("prefix", .string(lan.prefix)), ("client_hosts", .integer(Int64(lan.clientHosts))),
                ("faults", .array(lan.faults.map { .string($0) })),
                ("payload_mbit_per_second", .number(payloadMbit)),
            ]
            if let raw = lan.rawLinkMbit {
                figures.append(("raw_link_mbit_per_second", .number(raw)))
                figures.append(("payload_efficiency", .number(payloadMbit / raw)))
                figures.append(("ring_efficiency", .number(ringBytesPerSecond * 8 / 1e6 / raw)))
            }
            if let elapsedSeconds { figures.append(("elapsed_seconds", .number(elapsedSeconds))) }
            if let client = lan.clientCPUMicrosPerOperation { figures.append(("client_cpu_us_per_op", .number(client))) }
            figures.append(("replicas", .array(lan.replicas.map { replica in
                var fields: [(String, JSONValue)] = [("replica", .integer(Int64(replica.replica)))]
                if let messages = replica.ringMessagesPerSecond, let bytes = replica.ringBytesPerSecond {
                    fields.append(("ring_delivered_messages_per_second", .number(messages)))
                    fields.append(("ring_delivered_mbit_per_second", .number(bytes * 8 / 1e6)))
                }
                if !replica.cpuMicrosPerOperation.isEmpty {
                    fields.append(("cpu_us_per_op", .object(replica.cpuMicrosPerOperation.map { ($0.0, .number($0.1)) })))
                }
                return .object(fields)
            })))
            fields.append(("lan", .object(figures)))
        }
        if let check {
            var checked: [(String, JSONValue)] = [
                ("linearizable", .bool(check.linearizable)), ("decided", .bool(check.decided)),
                ("operations", .integer(Int64(check.operations))), ("keys", .integer(Int64(check.keysChecked))),
            ]
            if let explanation = check.explanation { checked.append(("explanation", .string(explanation))) }
            fields.append(("check", .object(checked)))
        }
        return JSONValue.object(fields).text
    }

    func text() -> String {
        func line(_ name: String, _ histogram: Histogram<UInt64>) -> String {
            String(format: "%@ %9.0f ops/s  p50 %6llu µs  p99 %6llu µs  max %7llu µs  (%llu ops)", name,
                   Double(histogram.totalCount) / seconds, histogram.valueAtPercentile(50),
                   histogram.valueAtPercentile(99), histogram.max, histogram.totalCount)
        }
        var lines = [
            "ringcast-kv bench: \(replicas) replicas, \(clients) clients × depth \(depth) = \(clients * depth) in flight, "
                + "\(writesPercent) % writes, \(valueSize) B values, \(keys) keys, \(String(format: "%.1f", seconds)) s",
            String(format: "all %9.0f ops/s  (%d failed)", Double(operations) / seconds, failures),
        ] + [("put", puts), ("get", gets), ("incr", incrs)].filter { $0.1.totalCount > 0 }.map { line($0.0, $0.1) } + [
            String(format: "ring underneath: %.0f messages/s, %.1f Mbit/s delivered (replica 0); %llu duplicates answered from sessions",
                   ringMessagesPerSecond, ringBytesPerSecond * 8 / 1e6, duplicatesAtReplica0),
        ]
        if let digests {
            lines.append("state digests of \(digests.replicas) replicas at index \(digests.index): "
                + (digests.equal ? "equal" : "DIFFERENT \(digests.digests.map { String(format: "%016llx", $0) })"))
        }
        if !cpuMicrosPerOperation.isEmpty {
            lines.append("CPU per operation at replica 0 (µs): " + cpuMicrosPerOperation.map {
                "\($0.0) \(String(format: "%.2f", $0.1))"
            }.joined(separator: ", ") + " (delivery_thread includes decode, apply, reply; the stages are sampled, one "
                + "batch or loop round in 16 timed; process is every thread, exact: the ring's engine and control "
                + "threads are the rest)")
        }
        if let counter, let exactlyOnce {
            lines.append("increments: \(incrementsAcknowledged) acknowledged, \(incrementsInDoubt) in doubt, counter \(counter): "
                + (exactlyOnce ? "exactly once" : "VIOLATED (lost or applied twice)"))
        }
        if let lan {
            var link = "LAN '\(lan.prefix)' at \(lan.rate), clients on \(lan.clientHosts) host(s)"
                + (lan.faults.isEmpty ? "" : "; faults: " + lan.faults.joined(separator: ", "))
            if let elapsedSeconds { link += String(format: "; last client returned %.1f s after the start", elapsedSeconds) }
            lines.append(link)
            if let raw = lan.rawLinkMbit {
                lines.append(String(format: "raw link %.1f Mbit/s; commands delivered × size %.1f Mbit/s = %.1f %% of it "
                    + "(the ring delivered %.1f Mbit/s with headers = %.1f %%)", raw, payloadMbit, 100 * payloadMbit / raw,
                    ringBytesPerSecond * 8 / 1e6, 100 * ringBytesPerSecond * 8 / 1e6 / raw))
            } else {
                lines.append(String(format: "commands delivered × size %.1f Mbit/s (no raw-link test)", payloadMbit))
            }
            if let client = lan.clientCPUMicrosPerOperation {
                lines.append(String(format: "clients: %.2f µs CPU per op (all driver processes)", client))
            }
            for replica in lan.replicas {
                var line = "replica \(replica.replica): "
                if let messages = replica.ringMessagesPerSecond, let bytes = replica.ringBytesPerSecond {
                    line += String(format: "ring delivered %.0f messages/s, %.1f Mbit/s", messages, bytes * 8 / 1e6)
                } else {
                    line += "no statistics (not answering at the start or the end)"
                }
                if !replica.cpuMicrosPerOperation.isEmpty {
                    line += "; CPU µs per op: " + replica.cpuMicrosPerOperation.map { "\($0.0) \(String(format: "%.2f", $0.1))" }
                        .joined(separator: ", ")
                }
                lines.append(line)
            }
        }
        if let check {
            lines.append("check: \(check.linearizable ? "linearizable" : check.decided ? "NOT linearizable" : "undecided (budget)") "
                + "(\(check.operations) operations, \(check.keysChecked) keys)")
            if let explanation = check.explanation { lines.append(explanation) }
        }
        return lines.joined(separator: "\n")
    }
}

/// What the surviving replicas' digests say after the run.
struct DigestComparison: Sendable {
    var equal: Bool
    var index: UInt64
    var replicas: Int
    var digests: [UInt64]
}

/// Asks each replica for its state digest until all report the same applied index (the sessions closing at the end
/// of the run are still being applied for a moment), at most 10 s; nil if a replica does not answer.
func compareDigests(_ addresses: [Address]) async -> DigestComparison? {
    var clients: [KVClient] = []
    defer { for client in clients { client.close() } }
    for address in addresses {
        var options = KVClient.Options(replicas: [address])
        options.timeoutMillis = 10_000
        guard let client = try? await KVClient.connect(options) else { return nil }
        clients.append(client)
    }
    let deadline = monotonicNow() + 10_000_000_000
    while true {
        var answers: [(index: UInt64, digest: UInt64)] = []
        for client in clients {
            guard let answer = try? await client.replicaDigest() else { return nil }
            answers.append(answer)
        }
        let sameIndex = Set(answers.map(\.index)).count == 1
        if sameIndex || monotonicNow() > deadline {
            return DigestComparison(equal: sameIndex && Set(answers.map(\.digest)).count == 1,
                                    index: answers.map(\.index).max() ?? 0, replicas: answers.count,
                                    digests: answers.map(\.digest))
        }
        try? await Task.sleep(for: .milliseconds(50))
    }
}
