import ArgumentParser
import Foundation
import RingCastBenchKit
import RingCastJSON

/// `ringcast-kv bench --lan RATE`: the replicas on emulated hosts 1…R of `tools/lan` (joiners on the hosts after
/// them), the clients on hosts of their own (one `bench-driver` process per client host), the raw link measured
/// first in the same run (ringperf stream, host 1 to host 2), faults injected on the measurement's timeline. This
/// process stays in the root namespace and only orchestrates: every replica and client runs through `tools/lan
/// exec`, so all traffic stays on the emulated LAN. Every child is stopped, a cut host healed and the LAN taken
/// down (unless --lan-keep) on every way out, and every wait is bounded.
extension Bench {
    /// Ports on every emulated host (each host has its own address, so they do not collide).
    static let lanDataPort = 7000
    static let lanClientPort = 7100
    static let lanRawLinkPort = 7200

    func runLAN() async throws {
        let rate = lan!
        let plan = try LANFaultPlan.parse(kill: kill, partition: partition, join: join, replicas: replicas)
        let totalReplicas = replicas + plan.joiners
        let hosts = max(2, totalReplicas + clientHosts)
        let workDirectory = try WorkDirectory(prefix: "ringcast-kv-lan")
        let work = workDirectory.path
        let executable = try Locator.binary("ringcast-kv", override: nil, flag: "")
        let controller = LANController(tool: try Locator.lanTool(override: lanTool), prefix: lanPrefix, workDirectory: work)
        let children = ChildGroup()
        var cut: Set<Int> = []
        func note(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }
        // The work directory (logs, the drivers' histories) is removed after a run that passed every check, and
        // kept, with its path on stderr, otherwise.
        var passed = false
        defer {
            children.stopAll()
            for replica in cut { if let problem = controller.heal(host: replica + 1) { note(problem) } }
            if !lanKeep, let problem = controller.down() { note(problem) }
            workDirectory.finish(passed: passed)
        }

        note("bringing up the LAN '\(lanPrefix)': \(hosts) hosts at \(rate)")
        _ = try controller.upOrReuse(hosts: hosts, rate: rate)
        var addresses: [String] = []
        for host in 1...hosts { addresses.append(try controller.address(host: host)) }
        let clientHost = { (index: Int) in totalReplicas + 1 + index }

        var rawLink: JSONValue?
        if rawLinkSeconds > 0 {
            let ringperf = try Locator.binary("ringperf", override: nil, flag: "")
            note("measuring the raw link: ringperf stream \(addresses[0]) → \(addresses[1]), \(rawLinkSeconds) s")
            rawLink = try RawLinkTest.measure(
                ringperf: ringperf, serverEndpoint: "\(addresses[1]):\(Self.lanRawLinkPort)", seconds: rawLinkSeconds,
                congestion: nil, work: work, children: children,
                serverCommand: { controller.exec(host: 2, $0) }, clientCommand: { controller.exec(host: 1, $0) }
            ) { (_: Double) throws(BenchError) in }
        }

        // The replicas: every one knows every member (joiners included) and the founding view.
        let members = (0..<totalReplicas).map { "\(addresses[$0]):\(Self.lanDataPort)" }.joined(separator: ",")
        let view = (0..<replicas).map(String.init).joined(separator: ",")
        var replicaProcesses: [Int: ChildProcess] = [:]
        func startReplica(_ id: Int) throws {
            var arguments = [executable, "serve", "--id", "\(id)", "--members", members, "--view", view,
                             "--client-host", addresses[id], "--client-port", "\(Self.lanClientPort)",
                             "--log-level", "warning", "--suspect-ms", "\(suspectMillis)"]
            if let plantBug { arguments += ["--plant-bug", plantBug] }
            let (tool, toolArguments) = controller.exec(host: id + 1, arguments)
            let child = try ChildProcess.spawn(name: "replica \(id)", executable: tool, arguments: toolArguments,
                                               stdoutPath: "\(work)/replica\(id).out", stderrPath: "\(work)/replica\(id).err")
            children.add(child)
            replicaProcesses[id] = child
        }
        func waitReady(_ id: Int, seconds: Double) throws {
            let child = replicaProcesses[id]!
            let deadline = Clock.now + seconds
            while !child.stdoutText().contains("ready client_port=") {
                guard child.poll() else {
                    throw ValidationError("replica \(id) exited (\(child.exitDescription ?? "?")) before it was ready:\n"
                        + ChildProcess.tail(child.stderrText()))
                }
                guard Clock.now < deadline else { throw ValidationError("replica \(id) was not ready within \(seconds) s") }
                usleep(20_000)
            }
        }
        note("starting \(replicas) replicas on hosts 1…\(replicas)")
        for id in 0..<replicas { try startReplica(id) }
        for id in 0..<replicas { try waitReady(id, seconds: 30) }

        // The drivers: --clients sessions spread over the client hosts, one measurement window for all.
        let clientAddresses = (0..<replicas).map { "\(addresses[$0]):\(Self.lanClientPort)" }.joined(separator: ",")
        let startAt = monotonicNow() + UInt64(waitMillis) * 1_000_000
        var drivers: [ChildProcess] = []
        var offset = 0
        for index in 0..<clientHosts {
            let count = clients / clientHosts + (index < clients % clientHosts ? 1 : 0)
            guard count > 0 else { continue }
            var arguments = [executable, "bench-driver", "--replicas", clientAddresses, "--clients", "\(count)",
                             "--client-offset", "\(offset)", "--depth", "\(depth)", "--writes", "\(writes)",
                             "--value-size", "\(valueSize)", "--keys", "\(keys)", "--workload", workload, "--counters", "\(counters)",
                             "--start-at", "\(startAt)", "--duration", "\(duration)", "--timeout", "\(timeoutMillis)",
                             "--out", "\(work)/driver\(index).bin", "--client-api", clientAPI]
            if check { arguments.append("--record") }
            if index == 0 { arguments.append("--lead") }
            let (tool, toolArguments) = controller.exec(host: clientHost(index), arguments)
            let child = try ChildProcess.spawn(name: "driver \(index)", executable: tool, arguments: toolArguments,
                                               stdoutPath: "\(work)/driver\(index).out", stderrPath: "\(work)/driver\(index).err")
            children.add(child)
            drivers.append(child)
            offset += count
        }
        note("\(clients) client sessions × depth \(depth) on \(drivers.count) client host(s); faults: "
            + (plan.faults.isEmpty ? "none" : plan.faults.map(\.description).joined(separator: ", ")))

        // The measurement: faults on the timeline, a progress line a second, until every driver is done.
        var pending = plan.faults
        var heals: [(at: Double, replica: Int)] = []
        var lastProgress = 0.0
        var lastTotal = 0
        let hardDeadline = Double(startAt) / 1e9 + duration + Double(timeoutMillis) / 1000 + 30
        while drivers.contains(where: { $0.poll() }) {
            let now = Double(monotonicNow()) / 1e9
            let elapsed = now - Double(startAt) / 1e9
            while let fault = pending.first, fault.atSeconds <= elapsed {
                pending.removeFirst()
                switch fault.kind {
                case .kill:
                    replicaProcesses[fault.replica]?.signalGroup(SIGKILL)
                case .partition:
                    try controller.cut(host: fault.replica + 1)
                    cut.insert(fault.replica)
                    if let after = fault.healAfterSeconds { heals.append((fault.atSeconds + after, fault.replica)) }
                case .join:
                    try startReplica(fault.replica)
                }
                note(String(format: "[%.1f s] %@", elapsed, fault.description))
            }
            for heal in heals where heal.at <= elapsed {
                if let problem = controller.heal(host: heal.replica + 1) { note(problem) }
                cut.remove(heal.replica)
                note(String(format: "[%.1f s] healed %d", elapsed, heal.replica))
            }
            heals.removeAll { $0.at <= elapsed }
            if elapsed >= 0, elapsed - lastProgress >= 1 {
                lastProgress = elapsed
                let total = drivers.map { Self.lastProgress($0.stderrText()) }.reduce(0, +)
                note(String(format: "[%.0f s] %d ops/s (%d total)", elapsed, total - lastTotal, total))
                lastTotal = total
            }
            guard Double(monotonicNow()) / 1e9 < hardDeadline else {
                throw ValidationError("the clients were still running \(Int(hardDeadline - Double(startAt) / 1e9)) s after the start; stopped")
            }
            usleep(20_000)
        }
        for (index, driver) in drivers.enumerated() where !driver.exitedCleanly {
            throw ValidationError("client driver \(index) \(driver.exitDescription ?? "?"):\n" + ChildProcess.tail(driver.stderrText()))
        }
        // A partitioned replica still cut is healed before the digests are read (it is left out of them anyway).
        for replica in cut { if let problem = controller.heal(host: replica + 1) { note(problem) } }
        cut = []

        // Results: merge the drivers, then digests of the replicas never faulted (joiners included) and the counter.
        var outputs: [DriverOutput] = []
        var events: [RecordedOperation] = []
        for index in drivers.indices {
            let (output, recorded) = try DriverOutput.read(from: "\(work)/driver\(index).bin")
            outputs.append(output)
            events += recorded
        }
        let seconds = outputs.map(\.seconds).max() ?? duration
        var report = BenchReport(replicas: replicas, clients: clients, depth: depth, writesPercent: writes,
                                 valueSize: valueSize, keys: keys, seconds: duration)
        for output in outputs { report.add(output.workerResult(events: [])) }
        report.elapsedSeconds = seconds
        let survivors = (0..<totalReplicas).filter { !plan.faulted.contains($0) }
        let probeArguments = [executable, "bench-probe", "--replicas",
                              survivors.map { "\(addresses[$0]):\(Self.lanClientPort)" }.joined(separator: ",")]
            + (workload == "incr" ? ["--counters", "\(counters)"] : [])
        let (probeTool, probeToolArguments) = controller.exec(host: clientHost(0), probeArguments)
        let probe = try ChildProcess.spawn(name: "probe", executable: probeTool, arguments: probeToolArguments,
                                           stdoutPath: "\(work)/probe.out", stderrPath: "\(work)/probe.err")
        children.add(probe)
        let probeDeadline = Clock.now + 40
        while probe.poll(), Clock.now < probeDeadline { usleep(20_000) }
        if let line = probe.stdoutText().split(separator: "\n").last, let answer = try? JSONValue.parse(String(line)) {
            if let equal = answer["digests_equal"], case let .bool(isEqual) = equal,
               let index = answer["digests_index"]?.doubleValue, case let .array(values)? = answer["digests"] {
                let digests = values.compactMap { value -> UInt64? in
                    if case let .string(text) = value { return UInt64(text, radix: 16) }
                    return nil
                }
                report.digests = DigestComparison(equal: isEqual, index: UInt64(index), replicas: digests.count, digests: digests)
            }
            if let counter = answer["counter"]?.doubleValue { report.counter = Int64(counter) }
        } else {
            note("the probe gave no answer (\(probe.exitDescription ?? "still running")): " + ChildProcess.tail(probe.stderrText(), lines: 3))
        }

        var figures = LANFigures(rate: rate, prefix: lanPrefix, clientHosts: drivers.count,
                                 faults: plan.faults.map(\.description))
        figures.rawLinkMbit = rawLink?["throughput_mbit_s"]?.doubleValue
        if report.operations > 0 {
            figures.clientCPUMicrosPerOperation = Double(outputs.map(\.cpuNanos).reduce(0, +)) / 1000 / Double(report.operations)
        }
        if let lead = outputs.first {
            for replica in 0..<min(lead.statsBefore.count, lead.statsAfter.count) {
                figures.replicas.append(ReplicaFigures(replica: replica, before: lead.statsBefore[replica],
                                                       after: lead.statsAfter[replica], seconds: duration,
                                                       operations: report.operations))
            }
            // The headline figure from a replica that was never faulted (a cut one delivers less).
            if let first = figures.replicas.first(where: { $0.ringBytesPerSecond != nil && !plan.faulted.contains($0.replica) }) {
                report.ringMessagesPerSecond = first.ringMessagesPerSecond ?? 0
                report.ringBytesPerSecond = first.ringBytesPerSecond ?? 0
            }
        }
        report.lan = figures
        if check { report.check = checkHistory(events) }
        print(json ? report.json() : report.text())
        if report.exactlyOnce == false { throw ExitCode(3) }
        if report.digests?.equal == false { throw ExitCode(4) }
        if report.digests == nil { throw ExitCode(5) }
        if let check = report.check, !check.linearizable { throw ExitCode(2) }
        passed = true
    }

    /// The ops count of a driver's last `progress` line.
    static func lastProgress(_ stderr: String) -> Int {
        guard let line = stderr.split(separator: "\n").last(where: { $0.hasPrefix("progress ") }),
              let field = line.split(separator: " ").first(where: { $0.hasPrefix("ops=") }) else { return 0 }
        return Int(field.dropFirst(4)) ?? 0
    }
}

/// What a `--lan` run adds to the report: the link, the raw-link test, and each replica's figures.
struct LANFigures {
    var rate: String
    var prefix: String
    var clientHosts: Int
    var faults: [String]
    var rawLinkMbit: Double?
    /// The client drivers' process CPU per operation (µs), all drivers together: they share the machine too.
    var clientCPUMicrosPerOperation: Double?
    var replicas: [ReplicaFigures] = []
}

/// One replica's statistics over the measurement (the lead driver reads them at its start and its end).
struct ReplicaFigures {
    static let stages = ["ingest", "broadcast", "decode", "apply", "reply", "delivery_thread", "writer", "process"]
    var replica: Int
    var ringMessagesPerSecond: Double?
    var ringBytesPerSecond: Double?
    /// CPU of this replica per operation of the whole system (µs): every replica applies every write, so this is
    /// what one operation costs each replica; by stage, and the whole process.
    var cpuMicrosPerOperation: [(String, Double)] = []

    init(replica: Int, before: [UInt64], after: [UInt64], seconds: Double, operations: UInt64) {
        self.replica = replica
        guard before.count >= 10, after.count >= 10 else { return }
        ringMessagesPerSecond = Double(after[8] &- before[8]) / seconds
        ringBytesPerSecond = Double(after[9] &- before[9]) / seconds
        guard before.count >= 20, after.count >= 20, operations > 0 else { return }
        for (offset, name) in Self.stages.enumerated() {
            cpuMicrosPerOperation.append((name, Double(after[12 + offset] &- before[12 + offset]) / 1000 / Double(operations)))
        }
    }
}
