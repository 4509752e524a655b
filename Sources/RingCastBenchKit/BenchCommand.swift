import RingCastJSON
import ArgumentParser
import Foundation

/// `ringcast-bench`: the k-to-n throughput experiment of thesis §2.6.2 over `ringcast-node` processes
/// (ARCHITECTURE §3.1; JSON fields §3.2; delivery logs §3.3).
public struct BenchCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "ringcast-bench",
        abstract: "Measure RingCast's k-to-n broadcast throughput over a ring of node processes (thesis §2.6).",
        discussion: """
        Plain `ringcast-bench` runs 5 nodes on loopback, all 5 sending 10 kB messages, with a 1 s warm-up, \
        5 s measurement and 2 s cool-down, after measuring the raw link with ringperf for as long. \
        With --lan RATE the nodes run on the emulated LAN of tools/lan (node I in host I+1), and the raw \
        link is measured there between hosts 1 and 2. Every run is bounded by a deadline and leaves no \
        process (and no LAN) behind, also on Ctrl-C.

        Throughput is that of §2.6.2: delivered bytes per second of each node over the measurement window, \
        averaged over nodes; optimal is the raw link × 1, or × n/(n−1) when all n nodes send.

        Nodes always run as a group (--members: every node's address in id order, --view: the initial \
        view), so faults can be injected during the measurement, at SECONDS after it starts: --kill ID@SECONDS \
        (SIGKILL), --partition ID@SECONDS (the node's links go silent: on the LAN its switch port goes down \
        (tools/lan cut), on loopback the process is stopped with SIGSTOP) and --join @SECONDS (a node with the \
        next id starts and joins; it only delivers unless --join-send). All repeatable. Survivors are the \
        nodes neither killed, partitioned nor excluded; throughput, latency and order are computed over them. \
        The report adds the view changes (merged over survivors: detect→view is the median of installed − \
        change started, fault→view is installed − the fault, both in ms) and recovery_ms: from the first \
        fault until the survivors' summed delivery throughput (50 ms timelines, read as a trailing 500 ms mean) \
        is back to ≥ 95 % of its mean over the second before the fault and stays there for 1 s, counted from \
        the last fault at the earliest. With faults, a partitioned node is healed (LAN) or continued (loopback) \
        and sent SIGTERM once the other nodes are done, so that it reports.

        --plot FILE.svg draws every node's delivered throughput over time (its 50 ms timeline) with the optimal \
        line, the warm-up and cool-down shaded and every injected fault and installed view marked. \
        `ringcast-bench plot SPEC.json OUT.svg` draws any chart described in JSON with the same writer \
        (tools/figures uses it).

        Exit status: 0 success, 1 the run failed (the error says why), 3 the run completed but the nodes \
        did not agree on the order or on the views (or a delivery log check failed), 130 interrupted.
        """,
        subcommands: [PlotCommand.self, ChainBenchCommand.self]
    )

    @Option(name: .long, help: "Processes in the ring (2…16).")
    var nodes = 5

    @Option(name: .long, help: "How many send: the first K ring positions. Default: all nodes.")
    var senders: Int?

    @Option(name: .long, help: ArgumentHelp("Which ring positions send, e.g. 0,2,4.", valueName: "ids"))
    var senderSet: String?

    @Option(name: .long, help: "Message size in bytes.")
    var size = 10_000

    @Option(name: .long, help: "Warm-up seconds (not measured).")
    var warmup = 1.0

    @Option(name: .long, help: "Measurement seconds.")
    var duration = 5.0

    @Option(name: .long, help: "Cool-down seconds: senders stop, the ring drains, nothing is measured.")
    var cooldown = 2.0

    @Option(name: .long, help: "The fairness mechanism of §2.5.2: on or off.")
    var fairness: Switch = .on

    @Option(name: .long, help: "Passed to every node: its window (messages in flight).")
    var window: Int?

    @Option(name: .long, help: "Passed to every node: its byte window (payload bytes in flight).")
    var windowBytes: Int?

    @Option(name: .long, help: ArgumentHelp("Passed to every node: size the byte window from the ring's round trip and rate, with --window-bytes as its maximum (default on).", valueName: "on|off"))
    var windowAdaptive: Switch?

    @Option(name: .long, help: ArgumentHelp("Passed to every node: payload bytes queued in front of the byte window (default: the node's).", valueName: "bytes"))
    var stagingBytes: Int?

    @Option(name: .long, help: ArgumentHelp("Open loop: each sender offers this many Mbit/s of payload (default: closed loop, as fast as backpressure allows). Latency counts from each message's scheduled time.", valueName: "mbit"))
    var rate: Double?

    @Option(name: .long, help: "Passed to every node: messages per batch at most.")
    var batchCount: Int?

    @Option(name: .long, help: "Passed to every node: bytes per batch at most.")
    var batchBytes: Int?

    @Option(name: .long, help: "Passed to every node: zero-copy sends auto, on or off.")
    var zerocopy: String?

    @Option(name: .long, help: ArgumentHelp("TCP congestion control of every node's ring sockets and of the raw-link test, e.g. cubic, bbr, reno; 'default' = the system's (default: cubic for both).", valueName: "name"))
    var congestion: String?

    @Option(name: .long, help: ArgumentHelp("Passed to every node: what the links prove (none, handshake: every connection proves the cluster key, frames: also a MAC per ring frame).", valueName: "none|handshake|frames"))
    var auth: String?

    @Option(name: .customLong("cluster-key"), help: ArgumentHelp("The cluster key file for --auth (default: a fresh one in the run's work directory).", valueName: "file"))
    var clusterKey: String?

    @Flag(name: .long, help: "Passed to every node: seal every ring frame with AES-256-GCM (implies --auth handshake unless given).")
    var encrypt = false

    @Flag(name: .long, help: "Print exactly one JSON object on stdout (ARCHITECTURE §3.2).")
    var json = false

    @Option(name: .long, help: ArgumentHelp("Each node writes DIR/node-<id>.log (§3.3); the logs are checked.", valueName: "dir"))
    var deliveryLog: String?

    @Option(name: .long, help: ArgumentHelp("Run on the emulated LAN (tools/lan) at this rate, e.g. 100mbit, 1gbit.", valueName: "rate"))
    var lan: String?

    @Option(name: .long, help: "Namespace prefix of the LAN.")
    var lanPrefix = "rcb"

    @Flag(name: .long, help: "Leave the LAN up at the end (a matching one is reused either way).")
    var lanKeep = false

    @Option(name: .long, help: ArgumentHelp("Path of tools/lan (default: found upward from this executable).", valueName: "path"))
    var lanTool: String?

    @Option(name: .long, help: ArgumentHelp("ringcast-node to run (default: beside this executable).", valueName: "path"))
    var nodeBinary: String?

    @Option(name: .long, help: ArgumentHelp("ringperf for the raw link (default: beside this executable).", valueName: "path"))
    var ringperfBinary: String?

    @Option(name: .long, help: "Seconds of the raw-link test (default: --duration; 0 skips it).")
    var rawLinkDuration: Double?

    @Option(name: .long, help: "Seconds from starting the nodes to their common start time (default 2, LAN 3).")
    var setup: Double?

    @Option(name: .long, help: "Seconds past the nodes' expected end before they are declared hung and killed.")
    var grace = 15.0

    @Option(name: .long, help: "First port; each node uses two (data, control), the raw link one more (default: free loopback ports; 7400 on the LAN).")
    var basePort: Int?

    @Option(name: .long, help: "Passed to every node: views need a majority of the previous view (quorum) or not (perfect).")
    var mode: MembershipMode = .quorum

    @Option(name: .long, help: ArgumentHelp("Passed to every node: heartbeat interval on a quiet link.", valueName: "ms"))
    var heartbeatMs = 20

    @Option(name: .long, help: ArgumentHelp("Passed to every node: silence after which a peer is suspected.", valueName: "ms"))
    var suspectMs = 200

    @Option(name: .long, help: ArgumentHelp("SIGKILL node ID at SECONDS into the measurement (repeatable).", valueName: "id@seconds"))
    var kill: [String] = []

    @Option(name: .long, help: ArgumentHelp("Cut node ID's links silently at SECONDS into the measurement (repeatable).", valueName: "id@seconds"))
    var partition: [String] = []

    @Option(name: .long, help: ArgumentHelp("Start a node with the next id at SECONDS into the measurement; it joins (repeatable).", valueName: "@seconds"))
    var join: [String] = []

    @Flag(name: .long, help: "Joiners broadcast too (default: they only deliver).")
    var joinSend = false

    @Option(name: .long, help: ArgumentHelp("Draw the nodes' throughput over time, faults and views marked, as SVG here.", valueName: "file.svg"))
    var plot: String?

    public init() {}

    public enum Switch: String, ExpressibleByArgument, Sendable { case on, off }

    /// The validated configuration these options describe.
    public func makeConfiguration() throws(BenchError) -> BenchConfiguration {
        var config = BenchConfiguration()
        config.nodeCount = nodes
        guard BenchConfiguration.nodeCountRange.contains(nodes) else {
            throw .invalidConfiguration("--nodes must be in 2…16, got \(nodes)")
        }
        config.senderIDs = try BenchConfiguration.senderIDs(count: senders, set: senderSet, nodeCount: nodes)
        config.messageSizeBytes = size
        config.warmupSeconds = warmup
        config.durationSeconds = duration
        config.cooldownSeconds = cooldown
        config.fairness = fairness == .on
        config.window = window
        config.windowBytes = windowBytes
        config.windowAdaptive = windowAdaptive.map { $0 == .on }
        config.stagingBytes = stagingBytes
        if let rate, !(rate.isFinite && rate > 0 && rate <= 1_000_000) {
            throw .invalidConfiguration("--rate must be a number of Mbit/s in (0, 1000000], got \(rate)")
        }
        config.rateMbitPerSecond = rate
        config.batchCount = batchCount
        config.batchBytes = batchBytes
        config.zerocopy = zerocopy
        config.congestion = congestion
        config.auth = auth ?? (encrypt ? "handshake" : nil)
        config.encrypt = encrypt
        config.clusterKeyPath = clusterKey.map(Locator.absolute)
        config.deliveryLogDirectory = deliveryLog.map(Locator.absolute)
        config.lanRate = lan
        config.lanPrefix = lanPrefix
        config.lanKeep = lanKeep
        config.lanTool = lanTool
        config.nodeBinary = nodeBinary
        config.ringperfBinary = ringperfBinary
        config.rawLinkSeconds = rawLinkDuration
        config.setupSeconds = setup
        config.graceSeconds = grace
        config.basePort = basePort
        config.json = json
        config.mode = mode
        config.heartbeatMillis = heartbeatMs
        config.suspectMillis = suspectMs
        config.faults = try FaultSchedule.parse(kill: kill, partition: partition, join: join, nodeCount: nodes)
        config.joinersSend = joinSend
        try config.validate()
        return config
    }

    public func validate() throws {
        do { _ = try makeConfiguration() } catch { throw ValidationError(error.description) }
        if let plot {
            let directory = (Locator.absolute(plot) as NSString).deletingLastPathComponent
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("--plot: no directory \(directory)")
            }
        }
    }

    public func run() throws {
        let config = try makeConfiguration()
        StopSignals.install()
        for warning in config.warnings {
            FileHandle.standardError.write(Data("ringcast-bench: warning: \(warning)\n".utf8))
        }
        let result: BenchResult
        do {
            result = try BenchRunner(config: config, progress: ProgressLine(enabled: true)).run()
        } catch {
            FileHandle.standardError.write(Data("ringcast-bench: error: \(error.description)\n".utf8))
            // --json promises one object on stdout: a failed run says why there, too.
            if config.json { print(JSONValue.object([("error", .string(error.description))]).text) }
            if case .interrupted = error { throw ExitCode(130) }
            throw ExitCode(1)
        }
        print(config.json ? result.json.text : result.table)
        if let plot {
            do {
                try ThroughputPlot.make(result).render().write(toFile: plot, atomically: true, encoding: .utf8)
            } catch {
                FileHandle.standardError.write(Data("ringcast-bench: error: --plot \(plot): \(error.localizedDescription)\n".utf8))
                throw ExitCode(1)
            }
        }
        if !result.orderAgreed {
            FileHandle.standardError.write(Data("ringcast-bench: order NOT agreed: \(result.order.problems + (result.deliveryLog?.problems ?? []))\n".utf8))
            throw ExitCode(3)
        }
        if !result.viewsAgreed {
            FileHandle.standardError.write(Data("ringcast-bench: views NOT agreed: \(result.views.problems)\n".utf8))
            throw ExitCode(3)
        }
    }
}

extension MembershipMode: ExpressibleByArgument {}

/// `ringcast-bench plot SPEC.json OUT.svg`: draws a chart described in JSON (``SVGPlot``'s fields, snake_case) with
/// the writer of `--plot`, so that scripts (tools/figures) draw with it too.
public struct PlotCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "plot",
        abstract: "Draw a chart described in JSON as SVG (the writer of --plot; tools/figures uses it).",
        discussion: """
        SPEC is one JSON object: title, x_label, y_label (required); subtitle, series [{name, color, dashed, dots, \
        points: [[x, y], ...]}], markers [{x, label, color, dashed}], bands [{from, to, label, color}], bar_groups \
        [{label, bars: [{value, color, title}]}], x_ticks [{x, label}], log_x, x_min, x_max, y_max, legend [{name, color, \
        style: line|dashed|box}], caption [lines], width, height. '-' reads it from stdin.
        """)

    @Argument(help: ArgumentHelp("The chart as JSON ('-' for stdin).", valueName: "spec.json"))
    var spec: String
    @Argument(help: ArgumentHelp("Where to write the SVG.", valueName: "out.svg"))
    var output: String

    public init() {}

    public func run() throws {
        let data: Data
        if spec == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard let contents = FileManager.default.contents(atPath: spec) else { throw ValidationError("cannot read \(spec)") }
            data = contents
        }
        let plot: SVGPlot
        do {
            plot = try JSONDecoder().decode(SVGPlot.self, from: data)
        } catch {
            throw ValidationError("\(spec) is not a chart: \(error)")
        }
        do {
            try plot.render().write(toFile: output, atomically: true, encoding: .utf8)
        } catch {
            FileHandle.standardError.write(Data("ringcast-bench plot: \(output): \(error.localizedDescription)\n".utf8))
            throw ExitCode(1)
        }
    }
}
