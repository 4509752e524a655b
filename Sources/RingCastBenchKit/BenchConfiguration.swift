import Foundation

/// Everything one benchmark run needs, validated (``validate()``) before any process starts.
public struct BenchConfiguration: Sendable, Equatable {
    /// Bounds that keep a run honest and finite. The LAN tool carries 2…16 hosts; loopback has the same cap
    /// because more node processes than that on a small machine measure the scheduler, not the protocol.
    public static let nodeCountRange = 2...16
    public static let messageSizeBytesRange = 1...(16 << 20)
    public static let phaseSecondsMax = 3600.0

    public var nodeCount = 5
    /// Ring positions that broadcast, ascending and unique.
    public var senderIDs: [Int] = Array(0..<5)
    public var messageSizeBytes = 10_000
    public var warmupSeconds = 1.0
    public var durationSeconds = 5.0
    public var cooldownSeconds = 2.0
    public var fairness = true
    public var window: Int?
    public var windowBytes: Int?
    /// --window-adaptive for every node; nil leaves the node's default (on).
    public var windowAdaptive: Bool?
    /// --staging-bytes for every node; nil leaves the node's default.
    public var stagingBytes: Int?
    /// Open loop: payload Mbit/s each sender offers; nil = closed loop.
    public var rateMbitPerSecond: Double?
    public var batchCount: Int?
    public var batchBytes: Int?
    /// auto, on or off; nil leaves the node's default.
    public var zerocopy: String?
    /// TCP congestion control for the nodes and the raw-link test ("default" = the system's); nil leaves both defaults (cubic).
    public var congestion: String?
    /// Passed to every node: none, handshake or frames (``authModes``); nil leaves the nodes' default (none).
    public var auth: String?
    /// The cluster key file every node reads; nil with an auth mode makes one in the run's work directory.
    public var clusterKeyPath: String?
    /// Passed to every node: seal ring frames with AES-256-GCM (needs an auth mode other than none).
    public var encrypt = false
    public static let authModes = ["none", "handshake", "frames"]
    /// True when the nodes need a cluster key.
    var needsClusterKey: Bool { encrypt || (auth.map { $0 != "none" } ?? false) }
    public var deliveryLogDirectory: String?
    /// tc rate for `tools/lan up --rate` (e.g. 100mbit); nil runs on loopback.
    public var lanRate: String?
    public var lanPrefix = "rcb"
    /// Leave the LAN up at the end (the figures script runs many points on one LAN and takes it down itself).
    public var lanKeep = false
    public var lanTool: String?
    public var nodeBinary: String?
    public var ringperfBinary: String?
    /// Seconds of the raw-link stream test; nil means the measurement duration. 0 skips it (fields become null).
    public var rawLinkSeconds: Double?
    /// Seconds between spawning the nodes and `--start-at`: process start and ring connection happen here.
    public var setupSeconds: Double?
    /// Slack after the expected end of the nodes before the run is declared hung and the nodes are killed.
    public var graceSeconds = 15.0
    /// First port to use; nil picks free ephemeral ports (loopback) or 7400 (each LAN host has its own ports).
    public var basePort: Int?
    public var json = false
    /// Keep the children's stdout/stderr files after a failed run (and say where); tests turn it off.
    public var keepWorkDirectoryOnFailure = true

    /// Passed to every node (`--mode`): how a new view is agreed on.
    public var mode = MembershipMode.quorum
    /// Passed to every node (`--heartbeat-ms`): how often a silent link still carries a heartbeat.
    public var heartbeatMillis = 20
    /// Passed to every node (`--suspect-ms`): how long a silent peer is trusted before it is suspected.
    public var suspectMillis = 200
    /// Faults injected during the measurement, sorted by time (``FaultSchedule/sorted(_:)``); joiners have
    /// the ids after the initial nodes.
    public var faults: [Fault] = []
    /// Whether joiners broadcast too (`--join-send`); by default a joiner only delivers.
    public var joinersSend = false

    public init() {}

    public var senderCount: Int { senderIDs.count }
    public var joinCount: Int { faults.filter { $0.kind == .join }.count }
    /// Every node process the run may start: the initial view and the joiners (the ids of `--members`).
    public var totalNodeCount: Int { nodeCount + joinCount }
    public var hasFaults: Bool { !faults.isEmpty }
    /// Nodes that broadcast over the run: the configured senders, and the joiners with `--join-send`.
    public var broadcastingIDs: [Int] { senderIDs + (joinersSend ? Array(nodeCount..<totalNodeCount) : []) }
    public var isLAN: Bool { lanRate != nil }
    public var allSend: Bool { senderIDs.count == nodeCount }
    public var effectiveRawLinkSeconds: Double { rawLinkSeconds ?? durationSeconds }
    public var effectiveSetupSeconds: Double { setupSeconds ?? (isLAN ? 3 : 2) }
    /// What every node runs for after `--start-at`.
    public var nodePhaseSeconds: Double { warmupSeconds + durationSeconds + cooldownSeconds }

    /// Throws ``BenchError/invalidConfiguration(_:)`` naming the first bad setting.
    public func validate() throws(BenchError) {
        func fail(_ message: String) throws(BenchError) -> Never { throw .invalidConfiguration(message) }
        guard Self.nodeCountRange.contains(nodeCount) else {
            try fail("--nodes must be in \(Self.nodeCountRange.lowerBound)…\(Self.nodeCountRange.upperBound), got \(nodeCount)")
        }
        guard !senderIDs.isEmpty else { try fail("at least one sender is needed (--senders ≥ 1)") }
        guard senderIDs.count <= nodeCount else {
            try fail("--senders \(senderIDs.count) exceeds --nodes \(nodeCount)")
        }
        guard senderIDs == Array(Set(senderIDs)).sorted() else { try fail("sender ids must be unique (ascending)") }
        if let bad = senderIDs.first(where: { !(0..<nodeCount).contains($0) }) {
            try fail("sender id \(bad) is not a ring position 0…\(nodeCount - 1)")
        }
        guard Self.messageSizeBytesRange.contains(messageSizeBytes) else {
            try fail("--size must be in 1…\(Self.messageSizeBytesRange.upperBound) bytes, got \(messageSizeBytes)")
        }
        for (name, value, mayBeZero) in [("--warmup", warmupSeconds, true), ("--duration", durationSeconds, false),
                                         ("--cooldown", cooldownSeconds, true)] {
            guard value.isFinite, value <= Self.phaseSecondsMax, mayBeZero ? value >= 0 : value > 0 else {
                try fail("\(name) must be \(mayBeZero ? "≥ 0" : "> 0") and ≤ \(Int(Self.phaseSecondsMax)) seconds, got \(value)")
            }
        }
        for (name, value) in [("--window", window), ("--window-bytes", windowBytes), ("--batch-count", batchCount), ("--batch-bytes", batchBytes)] {
            if let value, value < 1 { try fail("\(name) must be ≥ 1, got \(value)") }
        }
        if let zerocopy, !["auto", "on", "off"].contains(zerocopy) {
            try fail("--zerocopy must be auto, on or off, got '\(zerocopy)'")
        }
        if let auth, !Self.authModes.contains(auth) {
            try fail("--auth must be none, handshake or frames, got '\(auth)'")
        }
        if encrypt && auth == "none" { try fail("--encrypt needs --auth handshake or frames") }
        if let congestion, congestion.isEmpty || congestion.utf8.count > 15
            || !congestion.utf8.allSatisfy({ (0x61...0x7a).contains($0) || (0x30...0x39).contains($0) || $0 == 0x5f || $0 == 0x2d }) {
            try fail("--congestion: '\(congestion)' is not a congestion control name such as cubic, bbr, reno or default")
        }
        if let lanRate, LinkRate.megabitsPerSecond(lanRate) == nil, lanRate != "none" {
            try fail("--lan: '\(lanRate)' is not a rate such as 100mbit, 1gbit, 500kbit or none")
        }
        guard lanPrefix.range(of: "^[a-z][a-z0-9]{0,7}$", options: .regularExpression) != nil else {
            try fail("--lan-prefix must match [a-z][a-z0-9]{0,7}")
        }
        if let rawLinkSeconds, !(rawLinkSeconds >= 0 && rawLinkSeconds <= 60) {
            try fail("--raw-link-duration must be in 0…60 seconds")
        }
        if let setupSeconds, !(setupSeconds > 0 && setupSeconds <= 60) { try fail("--setup must be in (0, 60] seconds") }
        guard graceSeconds > 0, graceSeconds <= 600 else { try fail("--grace must be in (0, 600] seconds") }
        // Each node uses its data port and the next one (its control plane), and the raw link one more.
        let portsNeeded = 2 * totalNodeCount + 1
        if let basePort, !(1024...(65536 - portsNeeded)).contains(basePort) {
            try fail("--base-port must leave room for \(portsNeeded) ports in 1024…65535")
        }
        guard (1...10_000).contains(heartbeatMillis) else { try fail("--heartbeat-ms must be in 1…10000, got \(heartbeatMillis)") }
        guard suspectMillis > heartbeatMillis, suspectMillis <= 60_000 else {
            try fail("--suspect-ms must exceed --heartbeat-ms (\(heartbeatMillis)) and be ≤ 60000, got \(suspectMillis)")
        }
        try FaultSchedule.validate(faults, nodeCount: nodeCount, durationSeconds: durationSeconds)
        guard faults == FaultSchedule.sorted(faults) else { try fail("faults must be sorted by time (FaultSchedule.sorted)") }
    }

    /// What the report warns about before anything runs (``FaultSchedule/warnings(_:nodeCount:mode:)``).
    public var warnings: [String] {
        var warnings = FaultSchedule.warnings(faults, nodeCount: nodeCount, mode: mode)
        let needed = Double(Recovery.windowMillis + Recovery.holdMillis) / 1000
        if let last = faults.last, durationSeconds - last.atSeconds < needed {
            warnings.append("the measurement ends \(format(durationSeconds - last.atSeconds)) s after the last fault; recovery_ms " +
                            "needs \(format(needed)) s there (a \(Recovery.windowMillis) ms window held for \(Recovery.holdMillis) ms): lengthen --duration")
        }
        return warnings
    }

    /// Senders from `--senders K` (the first K ring positions) or `--sender-set 0,2,4`.
    public static func senderIDs(count: Int?, set: String?, nodeCount: Int) throws(BenchError) -> [Int] {
        if let set {
            var ids: [Int] = []
            for part in set.split(separator: ",", omittingEmptySubsequences: false) {
                guard let id = Int(part.trimmingCharacters(in: .whitespaces)) else {
                    throw .invalidConfiguration("--sender-set: '\(part)' is not a ring position (expected e.g. 0,2,4)")
                }
                guard !ids.contains(id) else { throw .invalidConfiguration("--sender-set: \(id) is listed twice") }
                ids.append(id)
            }
            if let count, count != ids.count {
                throw .invalidConfiguration("--senders \(count) disagrees with --sender-set (\(ids.count) ids)")
            }
            return ids.sorted()
        }
        let k = count ?? nodeCount
        guard k >= 1 else { throw .invalidConfiguration("--senders must be ≥ 1, got \(k)") }
        guard k <= nodeCount else { throw .invalidConfiguration("--senders \(k) exceeds --nodes \(nodeCount)") }
        return Array(0..<k)
    }
}

/// tc rate strings (tc(8), "RATES"): bit, kbit, mbit, gbit, tbit are bits per second; bps, kbps, mbps, gbps are
/// BYTES per second. Decimal prefixes, like tc.
public enum LinkRate {
    public static func megabitsPerSecond(_ rate: String) -> Double? {
        let units: [(String, Double)] = [
            ("tbit", 1e6), ("gbit", 1e3), ("mbit", 1), ("kbit", 1e-3), ("bit", 1e-6),
            ("gbps", 8e3), ("mbps", 8), ("kbps", 8e-3), ("bps", 8e-6),
        ]
        let lower = rate.lowercased()
        for (suffix, scale) in units where lower.hasSuffix(suffix) {
            guard let value = Double(lower.dropLast(suffix.count)), value > 0, value.isFinite else { return nil }
            return value * scale
        }
        return nil
    }
}
