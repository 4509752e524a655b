import ArgumentParser
import Foundation
import Logging
import RingCast

/// `ringcast-node`: one RingCast node as its own process (ARCHITECTURE §3.1), the unit `ringcast-bench` starts n of.
@main
struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ringcast-node",
        abstract: "Run one RingCast node: join the ring, optionally broadcast, measure what is delivered.",
        discussion: """
        Start n of these (ids 0..n-1), each listening where its predecessor connects and connecting to its \
        successor. The node waits for the ring to connect (bounded by --connect-timeout), then at --start-at \
        (CLOCK_REALTIME ns, default: as soon as connected) starts; a --send node broadcasts --size-byte messages \
        as fast as backpressure allows until warm-up + duration has elapsed. Every node then keeps delivering \
        until no delivery arrived for 500 ms (--quiet-ms) and its own messages all came back (bounded by \
        --cooldown), shuts down and reports.

        Measurement window: [start + warmup, start + warmup + duration]; delivered messages/bytes (all origins), \
        per-origin fractions, CPU (getrusage user+sys over the window / wall), Mbit/s and latency (µs, now − send \
        time, HdrHistogram) count only deliveries inside it.

        Payload: bytes 0..<24 = origin u32, reserved u32, origin app seq u64, send time u64 (CLOCK_REALTIME ns), \
        little-endian; the rest a deterministic pattern.

        Order digest: FNV-1a 64 over every delivered message, in order, of its 24-byte record (origin u32, \
        origin_seq u64, length u32, payload hash u64; little-endian); the payload hash is FNV-1a 64 of the payload \
        when --delivery-log or --digest-payloads on is given, else 0 (hashing every payload costs the engine \
        thread ~3 cycles per byte).

        --delivery-log FILE: one line per delivered message (ARCHITECTURE §3.3): \
        `<view_id> <origin_id> <origin_seq> <length> <fnv1a64_hex_of_payload>` (16 lowercase hex digits).

        --config FILE: the same options as `key=value` lines (`#` comments) or one JSON object, keys without \
        the leading dashes (e.g. `id=0`, `listen=10.0.0.1:7000`, `send=true`); flags on the command line win.

        Deliveries use the zero-copy synchronous handler: payload_copies stays 0. Exit status: 0 on success, \
        1 on a runtime failure (connect timeout, engine failure), 64 on bad flags.

        --metrics-listen HOST:PORT serves GET /metrics (Prometheus text format; every metric is listed in the \
        DocC article Observability of the RingCast module) and GET /status (what `ringcast-node status HOST:PORT` prints). Logs go \
        to stderr at --log-level (default info: view changes, suspicions, joins, leaves; never per message). \
        In group mode the member runs in a swift-service-lifecycle ServiceGroup: SIGTERM or SIGINT make it leave \
        the group (the others install a view without it at once), then it stops and reports.
        """,
        subcommands: [StatusCommand.self]
    )

    @Option(help: "This node's ring position, 0..<nodes.")
    var id: Int?
    @Option(help: "Number of nodes in the ring.")
    var nodes: Int?
    @Option(help: ArgumentHelp("Where the predecessor connects to this node.", valueName: "host:port"))
    var listen: String?
    @Option(help: ArgumentHelp("The successor's listen address.", valueName: "host:port"))
    var successor: String?
    @Option(name: .customLong("view-id"), help: "View id carried by every frame (default 1).")
    var viewId: UInt64?
    @Flag(inversion: .prefixedNo, help: "Broadcast messages (default: only deliver).")
    var send: Bool?
    @Option(help: ArgumentHelp("Message size in bytes, ≥ 24 (default 10000).", valueName: "bytes"))
    var size: Int?
    @Option(name: .customLong("start-at"), help: ArgumentHelp("Start time, CLOCK_REALTIME ns since the epoch (default: once connected).", valueName: "unix-ns"))
    var startAt: UInt64?
    @Option(help: ArgumentHelp("Warm-up seconds before the measurement window (default 1).", valueName: "seconds"))
    var warmup: Double?
    @Option(help: ArgumentHelp("Measurement window seconds (default 5).", valueName: "seconds"))
    var duration: Double?
    @Option(help: ArgumentHelp("Longest cool-down after the senders stop (default 2).", valueName: "seconds"))
    var cooldown: Double?
    @Option(help: "Own messages in flight (the LCR window; default: the engine's).")
    var window: Int?
    @Option(name: .customLong("window-bytes"), help: "Own payload bytes in flight (default: the engine's).")
    var windowBytes: Int?
    @Option(name: .customLong("window-adaptive"), help: ArgumentHelp("Size the byte window from the ring's round trip and rate, with --window-bytes as its maximum (default on).", valueName: "on|off"))
    var windowAdaptive: Switch?
    @Option(name: .customLong("staging-bytes"), help: ArgumentHelp("Payload bytes queued in front of the byte window, in the engine and the outbox each (default: the engine's, 16384).", valueName: "bytes"))
    var stagingBytes: Int?
    @Option(help: ArgumentHelp("Open loop: offer this many Mbit/s of payload (default: as fast as backpressure allows). Latency is counted from each message's scheduled time, so a queue in front of the ring counts.", valueName: "mbit"))
    var rate: Double?
    @Option(name: .customLong("batch-count"), help: "Application messages per LCR message (default: the engine's).")
    var batchCount: Int?
    @Option(name: .customLong("batch-bytes"), help: "Payload bytes per LCR message (default: the engine's, at least --size).")
    var batchBytes: Int?
    @Option(help: ArgumentHelp("The fairness mechanism of §2.5.2 (default on).", valueName: "on|off"))
    var fairness: Switch?
    @Option(help: ArgumentHelp("Zero-copy sends to the successor (default off).", valueName: "auto|on|off"))
    var zerocopy: ZeroCopyChoice?
    @Option(help: ArgumentHelp("TCP congestion control of the ring's sockets, e.g. cubic (default), bbr, reno; 'default' keeps the system's. If the kernel refuses it, the system's is used and the report counts congestion_refused.", valueName: "name"))
    var congestion: String?
    @Option(name: .customLong("delivery-log"), help: ArgumentHelp("Write the delivery log here (ARCHITECTURE §3.3).", valueName: "file"))
    var deliveryLog: String?
    @Option(name: .customLong("digest-payloads"), help: ArgumentHelp("Hash every payload into the order digest (default: on iff --delivery-log).", valueName: "on|off"))
    var digestPayloads: Switch?
    @Option(name: .customLong("connect-timeout"), help: ArgumentHelp("Give up connecting the ring after this long (default 10).", valueName: "seconds"))
    var connectTimeout: Double?
    @Option(name: .customLong("quiet-ms"), help: ArgumentHelp("The cool-down ends after this long without a delivery (default 500).", valueName: "ms"))
    var quietMillis: Int?
    @Flag(inversion: .prefixedNo, help: "Print one JSON object at exit instead of text.")
    var json: Bool?
    @Option(help: ArgumentHelp("Group mode: the data address of every node id, in id order; the control plane listens at port + 1. Replaces --nodes/--listen/--successor; the node survives crashes, partitions and joins.", valueName: "host:port,..."))
    var members: String?
    @Option(help: ArgumentHelp("Group mode: the founding view's ids (default: all of --members). A node not in it joins the running group.", valueName: "id,..."))
    var view: String?
    @Option(help: ArgumentHelp("Group mode: quorum (default; a view needs a majority of the previous one, no split brain) or perfect (the thesis' perfect failure detector: down to one survivor).", valueName: "quorum|perfect"))
    var mode: String?
    @Option(name: .customLong("heartbeat-ms"), help: "Group mode: control-plane heartbeat interval (default 20).")
    var heartbeatMillis: Int?
    @Option(name: .customLong("suspect-ms"), help: "Group mode: suspect a member silent this long (default 200).")
    var suspectMillis: Int?
    @Option(name: .customLong("metrics-listen"), help: ArgumentHelp("Serve GET /metrics (Prometheus) and GET /status here.", valueName: "host:port"))
    var metricsListen: String?
    @Option(name: .customLong("log-level"), help: ArgumentHelp("Log to stderr from this level on (default info).", valueName: "trace|debug|info|notice|warning|error|critical"))
    var logLevel: String?
    @Option(name: .customLong("cluster-key"), help: ArgumentHelp("The cluster key file (ringcast-keys cluster --out FILE; mode 0600). Every connection then proves it (default --auth handshake).", valueName: "file"))
    var clusterKey: String?
    @Option(help: ArgumentHelp("What the links prove: none (open links, a warning), handshake (every connection proves the cluster key) or frames (also a MAC on every ring frame).", valueName: "none|handshake|frames"))
    var auth: String?
    @Flag(inversion: .prefixedNo, help: "Seal every ring frame with AES-256-GCM under the handshake's keys (needs --cluster-key).")
    var encrypt: Bool?
    @Option(help: ArgumentHelp("Read options from a key=value or JSON file (command-line flags win).", valueName: "file"))
    var config: String?

    // The options are checked in run(), not validate(): ArgumentParser validates the parent of a subcommand too, and
    // `ringcast-node status` has none of them. A ValidationError from run() still exits 64 with the usage.
    func run() async throws {
        let settings = try resolve()
        if settings.members == nil && !settings.security.isAuthenticated {
            // A group warns by itself (Group's init); a static ring says it here.
            settings.logger.warning("ring links are not authenticated: any process that reaches the ports can connect; see --cluster-key and --auth")
        }
        // In group mode the ServiceGroup owns SIGTERM/SIGINT (graceful shutdown); a static ring keeps its own handler.
        if settings.members == nil { Termination.install() }
        let outcome = await NodeRun(settings: settings).run()
        if settings.json {
            print(outcome.json())
        } else {
            print(outcome.text())
        }
        if let error = outcome.error {
            FileHandle.standardError.write(Data("ringcast-node \(settings.id): \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

enum Switch: String, ExpressibleByArgument, CaseIterable {
    case on, off
    var isOn: Bool { self == .on }
}

enum ZeroCopyChoice: String, ExpressibleByArgument, CaseIterable {
    case auto, on, off
    var mode: ZeroCopyMode {
        switch self {
        case .auto: .auto
        case .on: .on
        case .off: .off
        }
    }
}
