#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

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
        var lan: LANController?
        var succeeded = false
        defer {
            progress.update(phase: "cleaning up")
            children.stopAll()
            // Down even if this run found the LAN already up: the run's promise is to leave nothing behind,
            // unless asked (--lan-keep) by a caller that owns the LAN's lifetime.
            if let lan, !config.lanKeep, let problem = lan.down() {
                FileHandle.standardError.write(Data("warning: \(problem)\n".utf8))
            }
            progress.finish()
            // A failed run keeps its children's output for a look; an interrupted one was wanted gone.
            if succeeded || !config.keepWorkDirectoryOnFailure || StopSignals.pending != 0 {
                try? FileManager.default.removeItem(atPath: work)
            } else {
                FileHandle.standardError.write(Data("ringcast-bench: child outputs kept in \(work)\n".utf8))
            }
        }
        if config.isLAN {
            let controller = LANController(tool: try Locator.lanTool(override: config.lanTool), prefix: config.lanPrefix,
                                           workDirectory: work)
            lan = controller
            progress.update(phase: "bringing up the emulated LAN", detail: "(\(config.nodeCount) hosts, \(config.lanRate!))")
            _ = try controller.upOrReuse(hosts: config.nodeCount, rate: config.lanRate!)
            try checkStop()
        }
        let placement = try makePlacement(lan: lan)
        try prepareDeliveryLogs()

        var rawLink: JSONValue?
        if let ringperf {
            rawLink = try measureRawLink(ringperf: ringperf, placement: placement, work: work, children: children)
        }
        let outputs = try runNodes(nodeBinary: nodeBinary, placement: placement, work: work, children: children)
        progress.update(phase: "checking")
        var verdict: DeliveryLogCheck.Verdict?
        if let directory = config.deliveryLogDirectory {
            var totals: [Int: Int] = [:]
            for node in outputs { if let total = node.totalDelivered { totals[node.id] = total } }
            verdict = DeliveryLogCheck.check(
                directory: directory, nodeIDs: Array(0..<config.nodeCount),
                expectations: .init(messageSizeBytes: config.messageSizeBytes, senderIDs: config.senderIDs,
                                    totalDelivered: totals))
        }
        succeeded = true
        return BenchResult(config: config, placementDescription: placement.description, nodes: outputs,
                           rawLink: rawLink, deliveryLog: verdict, elapsedSeconds: Clock.now - started)
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
        let n = config.nodeCount
        if let lan {
            var addresses: [String] = []
            for host in 1...n { addresses.append(try lan.address(host: host)) }
            // Every namespace has its own port space, so one port serves every node.
            let port = config.basePort ?? 7400
            return Placement(addresses: addresses, ports: Array(repeating: port, count: n), rawLinkPort: port + 1,
                             lan: lan, description: "emulated LAN '\(config.lanPrefix)' at \(config.lanRate!) (tools/lan)")
        }
        var ports: [Int]
        if let base = config.basePort {
            ports = Array(base...(base + n))
            for port in ports { try Ports.checkFree(port) }
        } else {
            ports = try Ports.free(count: n + 1)
        }
        let rawPort = ports.removeLast()
        return Placement(addresses: Array(repeating: "127.0.0.1", count: n), ports: ports, rawLinkPort: rawPort,
                         lan: nil, description: "loopback 127.0.0.1")
    }

    /// Creates the directory and removes old `node-<id>.log` files, so that a stale log can never pass a check.
    private func prepareDeliveryLogs() throws(BenchError) {
        guard let directory = config.deliveryLogDirectory else { return }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for id in 0..<config.nodeCount {
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
        let (serverExecutable, serverArguments) = placement.command(node: 1, ringperf, [
            "server", "--listen", serverEndpoint, "--once", "--timeout", format(seconds + 20),
        ])
        let server = try ChildProcess.spawn(name: "ringperf server", executable: serverExecutable,
                                            arguments: serverArguments,
                                            stdoutPath: work + "/ringperf-server.out", stderrPath: work + "/ringperf-server.err")
        children.add(server)
        defer { ChildGroup.stop([server], graceSeconds: 1) }
        let readyDeadline = Clock.now + 10
        while !server.stderrText().contains("listening") {
            try checkStop()
            guard server.poll() else {
                throw .rawLinkFailed("ringperf server exited (\(server.exitDescription ?? "?")) before listening:\n" +
                                     ChildProcess.tail(server.stderrText()))
            }
            guard Clock.now < readyDeadline else { throw .rawLinkFailed("ringperf server did not listen within 10 s") }
            usleep(20_000)
        }
        let (clientExecutable, clientArguments) = placement.command(node: 0, ringperf, [
            "client", "--connect", serverEndpoint, "--test", "stream", "--size", "65536", "--duration", format(seconds), "--json",
        ])
        let client = try ChildProcess.spawn(name: "ringperf client", executable: clientExecutable,
                                            arguments: clientArguments,
                                            stdoutPath: work + "/ringperf-client.out", stderrPath: work + "/ringperf-client.err")
        children.add(client)
        let started = Clock.now
        let deadline = started + seconds + 20
        while client.poll() {
            try checkStop()
            progress.update(phase: "measuring the raw link", detail: "\(Int(Clock.now - started))/\(format(seconds)) s")
            guard Clock.now < deadline else {
                ChildGroup.stop([client])
                throw .rawLinkFailed("ringperf client still running after \(Int(seconds + 20)) s; killed")
            }
            usleep(50_000)
        }
        guard client.exitedCleanly else {
            throw .rawLinkFailed("ringperf client \(client.exitDescription ?? "?"):\n" + ChildProcess.tail(client.stderrText()))
        }
        let text = client.stdoutText().trimmingCharacters(in: .whitespacesAndNewlines)
        guard let line = text.split(separator: "\n").last, let value = try? JSONValue.parse(String(line)),
              value["throughput_mbit_s"]?.doubleValue != nil else {
            throw .rawLinkFailed("no throughput_mbit_s in ringperf client output: \(ChildProcess.tail(text, lines: 3))")
        }
        return value
    }

    /// The arguments of node `id` (the `ringcast-node` contract).
    func nodeArguments(id: Int, placement: Placement, startAtNanos: UInt64) -> [String] {
        let n = config.nodeCount
        var arguments = [
            "--id", String(id), "--nodes", String(n), "--listen", placement.endpoint(id),
            "--successor", placement.endpoint((id + 1) % n), "--view-id", "1",
            "--size", String(config.messageSizeBytes), "--start-at", String(startAtNanos),
            "--warmup", format(config.warmupSeconds), "--duration", format(config.durationSeconds),
            "--cooldown", format(config.cooldownSeconds), "--fairness", config.fairness ? "on" : "off", "--json",
        ]
        if config.senderIDs.contains(id) { arguments.append("--send") }
        if let window = config.window { arguments += ["--window", String(window)] }
        if let bytes = config.windowBytes { arguments += ["--window-bytes", String(bytes)] }
        if let count = config.batchCount { arguments += ["--batch-count", String(count)] }
        if let bytes = config.batchBytes { arguments += ["--batch-bytes", String(bytes)] }
        if let zerocopy = config.zerocopy { arguments += ["--zerocopy", zerocopy] }
        if let directory = config.deliveryLogDirectory {
            arguments += ["--delivery-log", (Locator.absolute(directory) as NSString).appendingPathComponent("node-\(id).log")]
        }
        return arguments
    }

    private func runNodes(nodeBinary: String, placement: Placement, work: String,
                          children: ChildGroup) throws(BenchError) -> [NodeOutput] {
        let setup = config.effectiveSetupSeconds
        let startAtNanos = Clock.unixNanos + UInt64(setup * 1e9)
        let startAt = Clock.now + setup
        let deadline = startAt + config.nodePhaseSeconds + config.graceSeconds
        progress.update(phase: "spawning \(config.nodeCount) nodes")
        var nodes: [ChildProcess] = []
        for id in 0..<config.nodeCount {
            let (executable, arguments) = placement.command(node: id, nodeBinary,
                                                            nodeArguments(id: id, placement: placement, startAtNanos: startAtNanos))
            let node = try ChildProcess.spawn(name: "node \(id)", executable: executable, arguments: arguments,
                                              stdoutPath: work + "/node-\(id).out", stderrPath: work + "/node-\(id).err")
            children.add(node)
            nodes.append(node)
        }
        while true {
            let running = nodes.filter { $0.poll() }
            if let failed = nodes.first(where: { !$0.isRunning && !$0.exitedCleanly }) {
                ChildGroup.stop(running)
                throw nodeFailure(failed, index: nodes.firstIndex { $0 === failed }!, placement: placement)
            }
            if running.isEmpty { break }
            if StopSignals.pending != 0 {
                ChildGroup.stop(running)
                try checkStop()
            }
            let now = Clock.now
            if now > deadline {
                let tails = running.map { child -> String in
                    let tail = ChildProcess.tail(child.stderrText(), lines: 8)
                    return "--- stderr of \(child.name) (last lines) ---\n" + (tail.isEmpty ? "(empty)" : tail)
                }
                ChildGroup.stop(running)
                throw .timedOut(phase: phase(at: now, startAt: startAt).0, seconds: now - (startAt - setup),
                                stillRunning: running.map(\.name), stderrTails: tails.joined(separator: "\n"))
            }
            let (name, detail) = phase(at: now, startAt: startAt)
            progress.update(phase: name, detail: detail + (running.count < nodes.count ? " (\(nodes.count - running.count)/\(nodes.count) nodes done)" : ""))
            usleep(50_000)
        }
        var outputs: [NodeOutput] = []
        for (id, node) in nodes.enumerated() {
            let stdout = node.stdoutText()
            do throws(NodeOutputError) {
                let output = try NodeOutput.parse(stdout: stdout)
                guard output.id == id else { throw NodeOutputError("it reports id \(output.id), expected \(id)") }
                outputs.append(output)
            } catch {
                throw .nodeOutputInvalid(id: id, detail: error.description, stdoutTail: ChildProcess.tail(stdout, lines: 5))
            }
        }
        return outputs
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

/// Seconds as a short decimal ("5", "0.5").
func format(_ seconds: Double) -> String {
    seconds == seconds.rounded() && abs(seconds) < 1e9 ? String(Int(seconds)) : String(seconds)
}
