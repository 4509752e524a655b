#if canImport(Glibc)
import RingCastJSON
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import RingCastKeys

/// Runs one k-to-n experiment (§2.6.2): measures the raw link with ringperf, starts n `ringcast-node`
/// processes in a ring (k of them sending) on loopback or on the emulated LAN, waits for them within a
/// deadline, and computes the report. Every child is stopped, and a LAN it brought up taken down, on every
/// path out: success, failure, timeout and SIGINT/SIGTERM.
public struct BenchRunner {
    public let config: BenchConfiguration
    let progress: ProgressLine

    public init(config: BenchConfiguration, progress: ProgressLine = ProgressLine(enabled: false)) {
        self.config = config
        self.progress = progress
    }

    /// Where the nodes and the raw-link test run.
    struct Placement {
        var addresses: [String]
        var ports: [Int]
        var rawLinkPort: Int
        var lan: LANController?
        var description: String

        func endpoint(_ id: Int) -> String { "\(addresses[id]):\(ports[id])" }

        /// Node `id` runs in LAN host id+1 (hosts are numbered from 1), or directly on loopback.
        func command(node id: Int, _ executable: String, _ arguments: [String]) -> (String, [String]) {
            if let lan { return lan.exec(host: id + 1, [executable] + arguments) }
            return (executable, arguments)
        }
    }

    public func run() throws(BenchError) -> BenchResult {
        try config.validate()
        let started = Clock.now
        let nodeBinary = try Locator.binary("ringcast-node", override: config.nodeBinary, flag: "--node-binary")
        let ringperf = config.effectiveRawLinkSeconds > 0
            ? try Locator.binary("ringperf", override: config.ringperfBinary, flag: "--ringperf-binary") : nil
        let work = try makeWorkDirectory()
        let children = ChildGroup()
        let nodes = NodeSet()
        var lan: LANController?
        var succeeded = false
        defer {
            progress.update(phase: "cleaning up")
            children.stopAll()
            // A cut host is healed on every way out: a kept LAN (--lan-keep) must not stay partitioned.
            if let lan { healCuts(nodes, lan: lan) }
            // Down even if this run found the LAN already up: the run's promise is to leave nothing behind,
            // unless asked (--lan-keep) by a caller that owns the LAN's lifetime.
            if let lan, !config.lanKeep, let problem = lan.down() {
                FileHandle.standardError.write(Data("warning: \(problem)\n".utf8))
            }
            progress.finish()
            // A failed run keeps its children's output for a look; an interrupted one was wanted gone.
            // RINGCAST_BENCH_KEEP=1 keeps every run's children's output (diagnostics: each node logs its view changes to its stderr).
            let keep = ProcessInfo.processInfo.environment["RINGCAST_BENCH_KEEP"] == "1"
            if !keep && (succeeded || !config.keepWorkDirectoryOnFailure || StopSignals.pending != 0) {
                try? FileManager.default.removeItem(atPath: work)
            } else {
                FileHandle.standardError.write(Data("ringcast-bench: child outputs kept in \(work)\n".utf8))
            }
        }
        if config.isLAN {
            let controller = LANController(tool: try Locator.lanTool(override: config.lanTool), prefix: config.lanPrefix,
                                           workDirectory: work)
            lan = controller
            let hosts = config.totalNodeCount
            progress.update(phase: "bringing up the emulated LAN", detail: "(\(hosts) hosts, \(config.lanRate!))")
            _ = try controller.upOrReuse(hosts: hosts, rate: config.lanRate!)
            try checkStop()
        }
        let placement = try makePlacement(lan: lan)
        try prepareDeliveryLogs()

        var rawLink: JSONValue?
        if let ringperf {
            rawLink = try measureRawLink(ringperf: ringperf, placement: placement, work: work, children: children)
        }
        let qdisc = config.isLAN ? QdiscSampler(prefix: config.lanPrefix, workDirectory: work) : nil
        let (outputs, record) = try runNodes(nodeBinary: nodeBinary, placement: placement, work: work,
                                             children: children, nodes: nodes, qdisc: qdisc)
        progress.update(phase: "checking")
        var verdict: DeliveryLogCheck.Verdict?
        if let directory = config.deliveryLogDirectory {
            verdict = DeliveryLogCheck.check(directory: directory, nodeIDs: nodes.spawnedIDs,
                                             expectations: logExpectations(outputs: outputs, record: record))
        }
        succeeded = true
        return BenchResult(config: config, placementDescription: placement.description, nodes: outputs,
                           rawLink: rawLink, deliveryLog: verdict, elapsedSeconds: Clock.now - started, faults: record,
                           lanQueues: qdisc?.json(rateMbit: config.lanRate.flatMap(LinkRate.megabitsPerSecond)))
    }

    /// What the delivery logs are held to: without faults every log is a prefix of the others; with faults each
    /// node by its part (``DeliveryLogCheck/Role``).
    func logExpectations(outputs: [NodeOutput], record: FaultRecord) -> DeliveryLogCheck.Expectations {
        var totals: [Int: Int] = [:]
        for node in outputs { if let total = node.totalDelivered { totals[node.id] = total } }
        var expectations = DeliveryLogCheck.Expectations(messageSizeBytes: config.messageSizeBytes,
                                                         senderIDs: config.broadcastingIDs, totalDelivered: totals)
        guard config.hasFaults else { return expectations }
        var roles: [Int: DeliveryLogCheck.Role] = [:]
        for id in 0..<config.totalNodeCount {
            let output = outputs.first { $0.id == id }
            if record.killed.contains(id) {
                roles[id] = .crashed
            } else if record.partitioned.contains(id) {
                roles[id] = config.mode == .quorum ? .minority : .isolated
            } else if output?.excluded == true {
                roles[id] = .minority
            } else {
                roles[id] = .survivor
            }
            if let views = output?.views { expectations.installedViews[id] = views.map(\.viewID) }
        }
        expectations.roles = roles
        expectations.initialMembers = Set(0..<config.nodeCount)
        return expectations
    }

    // MARK: steps

    private func makeWorkDirectory() throws(BenchError) -> String {
        var template = Array((NSTemporaryDirectory() as NSString).appendingPathComponent("ringcast-bench.XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            throw .spawnFailed(name: "work directory", detail: String(cString: strerror(errno)))
        }
        return String(cString: made)
    }

    private func makePlacement(lan: LANController?) throws(BenchError) -> Placement {
        let n = config.totalNodeCount
        if let lan {
            var addresses: [String] = []
            for host in 1...n { addresses.append(try lan.address(host: host)) }
            // Every namespace has its own port space, so one port (and the next, for control) serves every node;
            // the raw-link test gets the one after.
            let port = config.basePort ?? 7400
            return Placement(addresses: addresses, ports: Array(repeating: port, count: n), rawLinkPort: port + 2,
                             lan: lan, description: "emulated LAN '\(config.lanPrefix)' at \(config.lanRate!) (tools/lan)")
        }
        let ports: [Int]
        let rawPort: Int
        if let base = config.basePort {
            ports = (0..<n).map { base + 2 * $0 }
            rawPort = base + 2 * n
            for port in ports { try Ports.checkFree(port); try Ports.checkFree(port + 1) }
            try Ports.checkFree(rawPort)
        } else {
            ports = try Ports.freePairs(count: n)
            rawPort = try Ports.free(count: 1)[0]
        }
        return Placement(addresses: Array(repeating: "127.0.0.1", count: n), ports: ports, rawLinkPort: rawPort,
                         lan: nil, description: "loopback 127.0.0.1")
    }

    /// Creates the directory and removes old `node-<id>.log` files, so that a stale log can never pass a check.
    private func prepareDeliveryLogs() throws(BenchError) {
        guard let directory = config.deliveryLogDirectory else { return }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for id in 0..<config.totalNodeCount {
                let path = (directory as NSString).appendingPathComponent("node-\(id).log")
                if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
            }
        } catch {
            throw .invalidConfiguration("--delivery-log \(directory): \(error.localizedDescription)")
        }
    }

    private func checkStop() throws(BenchError) {
        let signal = StopSignals.pending
        if signal != 0 { throw .interrupted(signal: signal) }
    }

    /// ringperf stream test from node 0's host to node 1's host (the ring's first link), 64 KiB sends.
    private func measureRawLink(ringperf: String, placement: Placement, work: String,
                                children: ChildGroup) throws(BenchError) -> JSONValue {
        let seconds = config.effectiveRawLinkSeconds
        let serverEndpoint = "\(placement.addresses[1]):\(placement.rawLinkPort)"
        progress.update(phase: "measuring the raw link", detail: "(ringperf stream to \(serverEndpoint), \(format(seconds)) s)")
        func on(_ node: Int) -> ([String]) -> (executable: String, arguments: [String]) {
            { command in placement.command(node: node, command[0], Array(command.dropFirst())) }
        }
        return try RawLinkTest.measure(
            ringperf: ringperf, serverEndpoint: serverEndpoint, seconds: seconds, congestion: config.congestion,
            work: work, children: children, serverCommand: on(1), clientCommand: on(0)
        ) { (elapsed: Double) throws(BenchError) in
            try checkStop()
            if elapsed > 0 {
                progress.update(phase: "measuring the raw link", detail: "\(Int(elapsed))/\(format(seconds)) s")
            }
        }
    }

    /// The arguments of node `id` (the `ringcast-node` contract): every node gets the whole `--members` list
    /// (joiners included) and the initial `--view`; a node outside the view starts as a joiner.
    func nodeArguments(id: Int, placement: Placement, startAtNanos: UInt64, clusterKey: String? = nil) -> [String] {
        let members = (0..<config.totalNodeCount).map(placement.endpoint).joined(separator: ",")
        let view = (0..<config.nodeCount).map(String.init).joined(separator: ",")
        var arguments = [
            "--id", String(id), "--members", members, "--view", view,
            "--mode", config.mode.rawValue, "--heartbeat-ms", String(config.heartbeatMillis),
            "--suspect-ms", String(config.suspectMillis),
            "--size", String(config.messageSizeBytes), "--start-at", String(startAtNanos),
            "--warmup", format(config.warmupSeconds), "--duration", format(config.durationSeconds),
            "--cooldown", format(config.cooldownSeconds), "--fairness", config.fairness ? "on" : "off", "--json",
        ]
        if config.broadcastingIDs.contains(id) { arguments.append("--send") }
        if let window = config.window { arguments += ["--window", String(window)] }
        if let bytes = config.windowBytes { arguments += ["--window-bytes", String(bytes)] }
        if let adaptive = config.windowAdaptive { arguments += ["--window-adaptive", adaptive ? "on" : "off"] }
        if let bytes = config.stagingBytes { arguments += ["--staging-bytes", String(bytes)] }
        if let rate = config.rateMbitPerSecond { arguments += ["--rate", format(rate)] }
        if let count = config.batchCount { arguments += ["--batch-count", String(count)] }
        if let bytes = config.batchBytes { arguments += ["--batch-bytes", String(bytes)] }
        if let zerocopy = config.zerocopy { arguments += ["--zerocopy", zerocopy] }
        if let congestion = config.congestion { arguments += ["--congestion", congestion] }
        if let auth = config.auth { arguments += ["--auth", auth] }
        if config.encrypt { arguments.append("--encrypt") }
        if config.needsClusterKey, let key = clusterKey ?? config.clusterKeyPath { arguments += ["--cluster-key", key] }
        if let directory = config.deliveryLogDirectory {
            arguments += ["--delivery-log", (Locator.absolute(directory) as NSString).appendingPathComponent("node-\(id).log")]
        }
        return arguments
    }

    /// The key file the nodes read with --auth: the one given, or a fresh one (mode 0600) in the work directory,
    /// which every node reaches (loopback, or the emulated LAN's namespaces on the same file system).
    func clusterKeyFile(work: String) throws(BenchError) -> String? {
        guard config.needsClusterKey else { return nil }
        if let path = config.clusterKeyPath { return path }
        let path = (work as NSString).appendingPathComponent("cluster.key")
        do {
            try ClusterKey.generate().write(to: path)
        } catch {
            throw .invalidConfiguration("cannot make a cluster key for --auth: \(error)")
        }
        return path
    }

    /// Seconds after the nodes' own end at which a partitioned node is released (healed or continued, and asked to
    /// stop with SIGTERM) if the other nodes have not all exited by then.
    static let partitionReleaseSlackSeconds = 2.0

    /// Starts the initial nodes, injects the faults on schedule (and starts joiners), waits for every node within
    /// the deadline, and collects the reports of every node not killed.
    private func runNodes(nodeBinary: String, placement: Placement, work: String, children: ChildGroup,
                          nodes: NodeSet, qdisc: QdiscSampler?) throws(BenchError) -> ([NodeOutput], FaultRecord) {
        let setup = config.effectiveSetupSeconds
        let startAtNanos = Clock.unixNanos + UInt64(setup * 1e9)
        let startAt = Clock.now + setup
        let measurementStart = startAt + config.warmupSeconds
        let deadline = startAt + config.nodePhaseSeconds + config.graceSeconds
        let releaseAt = startAt + config.nodePhaseSeconds + Self.partitionReleaseSlackSeconds
        let measurementStartUnix = Int64(startAtNanos) + Int64((config.warmupSeconds * 1e9).rounded())
        var record = FaultRecord(measurementStartUnixNanos: measurementStartUnix,
                                 measurementEndUnixNanos: measurementStartUnix + Int64((config.durationSeconds * 1e9).rounded()))
        let clusterKey = try clusterKeyFile(work: work)
        func spawn(_ id: Int) throws(BenchError) {
            let (executable, arguments) = placement.command(node: id, nodeBinary,
                                                            nodeArguments(id: id, placement: placement, startAtNanos: startAtNanos,
                                                                          clusterKey: clusterKey))
            let node = try ChildProcess.spawn(name: "node \(id)", executable: executable, arguments: arguments,
                                              stdoutPath: work + "/node-\(id).out", stderrPath: work + "/node-\(id).err")
            children.add(node)
            nodes.processes[id] = node
        }
        progress.update(phase: "spawning \(config.nodeCount) nodes")
        for id in 0..<config.nodeCount { try spawn(id) }
        var pending = config.faults[...]
        var accepted: Set<Int> = []  // nodes that exited non-zero but reported (fault runs only)
        while true {
            while let next = pending.first, Clock.now >= measurementStart + next.atSeconds {
                pending.removeFirst()
                try inject(next, scheduled: measurementStart + next.atSeconds, nodes: nodes, placement: placement,
                           record: &record, spawn: spawn)
            }
            let all = nodes.processes.sorted { $0.key < $1.key }
            for (id, node) in all where !node.poll() && !node.exitedCleanly && !nodes.killed.contains(id) && !accepted.contains(id) {
                // With faults a node may end badly and still report (its JSON `error` says why); without, or
                // without a report, the run has failed.
                if config.hasFaults, (try? NodeOutput.parse(stdout: node.stdoutText())) != nil {
                    accepted.insert(id)
                    record.warnings.append("node \(id) \(node.exitDescription ?? "?") but reported; its report is used")
                    continue
                }
                let running = all.map(\.value).filter { $0.poll() }
                ChildGroup.stop(running)
                throw nodeFailure(node, index: id, placement: placement)
            }
            let running = all.filter { $0.value.poll() }
            if !nodes.partitioned.isEmpty, !nodes.released,
               Clock.now >= releaseAt || running.allSatisfy({ nodes.partitioned.contains($0.key) }) {
                releasePartitioned(nodes, lan: placement.lan)
            }
            if running.isEmpty { break }
            if StopSignals.pending != 0 {
                ChildGroup.stop(running.map(\.value))
                try checkStop()
            }
            let now = Clock.now
            if now > deadline {
                let tails = running.map { _, child -> String in
                    let tail = ChildProcess.tail(child.stderrText(), lines: 8)
                    return "--- stderr of \(child.name) (last lines) ---\n" + (tail.isEmpty ? "(empty)" : tail)
                }
                ChildGroup.stop(running.map(\.value))
                throw .timedOut(phase: phase(at: now, startAt: startAt).0, seconds: now - (startAt - setup),
                                stillRunning: running.map(\.value.name), stderrTails: tails.joined(separator: "\n"))
            }
            let (name, detail) = phase(at: now, startAt: startAt)
            let done = all.count - running.count
            let faultsDone = config.faults.count - pending.count
            progress.update(phase: name, detail: detail + (done > 0 ? " (\(done)/\(all.count) nodes done)" : "") +
                            (config.hasFaults ? " [faults \(faultsDone)/\(config.faults.count)]" : ""))
            if let qdisc, now >= measurementStart, now < measurementStart + config.durationSeconds {
                qdisc.sampleIfDue(now: now)
            }
            // Poll every 50 ms, but wake for a fault on time.
            let untilFault = pending.first.map { measurementStart + $0.atSeconds - Clock.now } ?? 0.05
            usleep(UInt32(max(0.001, min(0.05, untilFault)) * 1e6))
        }
        record.notInjected = Array(pending)
        if let lan = placement.lan { healCuts(nodes, lan: lan) }  // normally done at the release already
        var outputs: [NodeOutput] = []
        for (id, node) in nodes.processes.sorted(by: { $0.key < $1.key }) where !nodes.killed.contains(id) {
            let stdout = node.stdoutText()
            do throws(NodeOutputError) {
                let output = try NodeOutput.parse(stdout: stdout)
                guard output.id == id else { throw NodeOutputError("it reports id \(output.id), expected \(id)") }
                outputs.append(output)
            } catch {
                throw .nodeOutputInvalid(id: id, detail: error.description, stdoutTail: ChildProcess.tail(stdout, lines: 5))
            }
        }
        return (outputs, record)
    }

    /// Injects one fault now; records when it took effect.
    private func inject(_ fault: Fault, scheduled: Double, nodes: NodeSet, placement: Placement, record: inout FaultRecord,
                        spawn: (Int) throws(BenchError) -> Void) throws(BenchError) {
        let id = fault.nodeID
        var effective: Int64
        switch fault.kind {
        case .join:
            progress.update(phase: "starting joiner \(id)")
            effective = Int64(Clock.unixNanos)
            try spawn(id)
        case .kill, .partition:
            guard let node = nodes.processes[id], node.poll() else {
                record.notInjected.append(fault)
                record.warnings.append("\(fault): node \(id) had already exited")
                return
            }
            if fault.kind == .kill {
                effective = Int64(Clock.unixNanos)
                node.signalGroup(SIGKILL)
                nodes.killed.insert(id)
            } else if let lan = placement.lan {
                // Recorded after the cut returned: the port is down by then (tools/lan cut checks it).
                nodes.partitioned.insert(id)
                nodes.cut.insert(id)
                try lan.cut(host: id + 1)
                effective = Int64(Clock.unixNanos)
            } else {
                effective = Int64(Clock.unixNanos)
                node.signalGroup(SIGSTOP)
                nodes.partitioned.insert(id)
                nodes.stopped.insert(id)
            }
        }
        record.injected.append(InjectedFault(fault: fault, unixNanos: effective, lateMillis: (Clock.now - scheduled) * 1000))
    }

    /// Partitioned nodes are released once the other nodes are done (or the schedule's end has passed by
    /// ``partitionReleaseSlackSeconds``): a cut host is healed first (LAN), and every partitioned node is asked to
    /// stop with SIGTERM, which makes it report. A node left cut off may wait on the network for ever, and one
    /// left stopped cannot run at all. A stopped node gets SIGTERM before SIGCONT, so that the signal is pending
    /// when it resumes and it reports at once instead of running on (signal(7)).
    private func releasePartitioned(_ nodes: NodeSet, lan: LANController?) {
        if let lan { healCuts(nodes, lan: lan) }
        for id in nodes.partitioned.sorted() {
            nodes.processes[id]?.signalGroup(SIGTERM)
            if nodes.stopped.contains(id) { nodes.processes[id]?.signalGroup(SIGCONT) }
        }
        nodes.released = true
    }

    private func healCuts(_ nodes: NodeSet, lan: LANController) {
        for id in nodes.cut.sorted() {
            if let problem = lan.heal(host: id + 1) {
                FileHandle.standardError.write(Data("warning: \(problem)\n".utf8))
            } else {
                nodes.cut.remove(id)
            }
        }
    }

    /// The phase of the nodes' schedule at monotonic time `now`, and the seconds into it.
    private func phase(at now: Double, startAt: Double) -> (String, String) {
        let t = now - startAt
        let warm = config.warmupSeconds, measure = config.durationSeconds, cool = config.cooldownSeconds
        if t < 0 { return ("starting nodes", "(start in \(String(format: "%.1f", -t)) s)") }
        if t < warm { return ("warm-up", "\(Int(t))/\(format(warm)) s") }
        if t < warm + measure { return ("measuring", "\(Int(t - warm))/\(format(measure)) s") }
        if t < warm + measure + cool { return ("cool-down", "\(Int(t - warm - measure))/\(format(cool)) s") }
        return ("waiting for nodes to exit", "")
    }

    private func nodeFailure(_ node: ChildProcess, index: Int, placement: Placement) -> BenchError {
        let stderr = node.stderrText()
        let lower = stderr.lowercased()
        if lower.contains("address already in use") || lower.contains("eaddrinuse") {
            return .portBusy(port: placement.ports[index],
                             detail: "node \(index) could not listen on \(placement.endpoint(index)): " +
                                 ChildProcess.tail(stderr, lines: 2))
        }
        return .nodeFailed(id: index, status: node.exitDescription ?? "?", stderrTail: ChildProcess.tail(stderr))
    }
}

/// The node processes of one run and what the faults did to them. Shared with the cleanup path, which must
/// heal cut hosts however the run ends.
final class NodeSet {
    /// Node id → its process; joiners appear when they are started.
    var processes: [Int: ChildProcess] = [:]
    var killed: Set<Int> = []
    /// Every partitioned node, and how: stopped with SIGSTOP (loopback) or cut off (LAN, while still cut).
    var partitioned: Set<Int> = []
    var stopped: Set<Int> = []
    var cut: Set<Int> = []
    /// Partitioned nodes have been healed or continued, and asked to stop.
    var released = false

    var spawnedIDs: [Int] { processes.keys.sorted() }
}

/// Seconds as a short decimal ("5", "0.5").
func format(_ seconds: Double) -> String {
    seconds == seconds.rounded() && abs(seconds) < 1e9 ? String(Int(seconds)) : String(seconds)
}
