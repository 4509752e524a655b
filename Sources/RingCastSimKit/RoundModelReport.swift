internal import CRingCast

extension RoundModel {
    /// The result of one throughput experiment; its JSON form is the `ringcast-sim --json` contract
    /// (ARCHITECTURE §3.2) plus diagnostics.
    public struct Report: Sendable, Codable, Equatable {
        public var nodes: Int
        /// K: how many processes broadcast.
        public var senders: Int
        public var senderSet: [Int]
        public var rounds: Int
        public var warmupRounds: Int
        public var measuredRounds: Int
        public var fairness: Bool
        /// Complete broadcasts (delivered by all n) in the measured rounds.
        public var completedBroadcasts: Int
        public var throughputPerRound: Double
        /// Theorem 2.5.1: 1 for K < n, n/(n−1) for K = n.
        public var boundPerRound: Double
        public var efficiency: Double
        /// Sender (ring position, as a string key) → share of the complete broadcasts.
        public var senderShares: [String: Double]
        /// Max over senders of |share − 1/K|.
        public var shareDeviationMax: Double
        /// Rounds until the last process delivered a lone broadcast from p0 on an idle ring.
        public var loneLatencyRounds: Int
        /// §2.5.3: 2n − 2.
        public var loneLatencyBoundRounds: Int
        public var sendQueueMax: Int
        public var forwardQueueMax: Int
        public var pendingMax: Int
        public var batchCountMax: Int
        public var ackOnlyFrames: Int
        public var framesRefused: Int
        /// Safety properties violated on the final logs (integrity, total order, uniformity).
        public var violations: Int
        public var firstViolation: Violation?
        public var plantedBug: PlantedBug

        enum CodingKeys: String, CodingKey {
            case nodes, senders, rounds, fairness, efficiency, violations
            case senderSet = "sender_set", warmupRounds = "warmup_rounds", measuredRounds = "measured_rounds"
            case completedBroadcasts = "completed_broadcasts", throughputPerRound = "throughput_per_round"
            case boundPerRound = "bound_per_round", senderShares = "sender_shares"
            case shareDeviationMax = "share_deviation_max", loneLatencyRounds = "lone_latency_rounds"
            case loneLatencyBoundRounds = "lone_latency_bound_rounds", sendQueueMax = "send_queue_max"
            case forwardQueueMax = "forward_queue_max", pendingMax = "pending_max"
            case batchCountMax = "batch_count_max", ackOnlyFrames = "ack_only_frames"
            case framesRefused = "frames_refused", firstViolation = "first_violation", plantedBug = "planted_bug"
        }
    }

    /// Runs the Theorem 2.5.1 experiment: the senders keep their send queues full (continuous
    /// broadcasting, §2.2.3), one application message per LCR message (batch_count_max = 1), and
    /// complete broadcasts are counted after the warm-up.
    /// - Throws: `SimError.invalidSettings` for settings out of range or refused by the core.
    public static func run(_ settings: Settings) throws(SimError) -> Report {
        try validate(settings)
        var c = rc_sim_throughput_settings()
        c.ring = rc_sim_ring_settings_default(UInt32(settings.nodes), settings.fairness)
        try settings.queues.apply(to: &c.ring, nodes: settings.nodes)
        c.ring.test_fault = settings.plantedBug.testFault
        c.sender_mask = settings.senders.reduce(0) { $0 | (UInt32(1) << UInt32($1)) }
        c.rounds = UInt64(settings.rounds)
        c.warmup_rounds = settings.warmupRounds.map { UInt64($0) } ?? UInt64.max
        var result = rc_sim_throughput_result()
        let status = rc_sim_throughput_run(&c, &result)
        guard status == 0 else {
            if status == -EINVAL_VALUE { throw .invalidSettings("the round model refused these settings") }
            throw .simulatorFailed(operation: "rc_sim_throughput_run", errno: status)
        }
        let latency = try loneLatencyRounds(nodes: settings.nodes, fairness: settings.fairness)
        return report(settings, result, latency)
    }

    private static func report(_ settings: Settings, _ result: rc_sim_throughput_result, _ latency: Int) -> Report {
        let shares = tupleElements(result.share, as: Double.self, count: settings.nodes)
        let used = result.settings_used
        return Report(
            nodes: settings.nodes, senders: settings.senders.count, senderSet: settings.senders.sorted(),
            rounds: settings.rounds, warmupRounds: Int(result.warmup_rounds),
            measuredRounds: Int(result.measured_rounds), fairness: settings.fairness,
            completedBroadcasts: Int(result.completed), throughputPerRound: result.throughput_per_round,
            boundPerRound: result.bound_per_round, efficiency: result.efficiency,
            senderShares: Dictionary(uniqueKeysWithValues: settings.senders.map { (String($0), shares[$0]) }),
            shareDeviationMax: result.share_deviation_max, loneLatencyRounds: latency,
            loneLatencyBoundRounds: 2 * settings.nodes - 2, sendQueueMax: Int(used.send_queue_max),
            forwardQueueMax: Int(used.forward_queue_max), pendingMax: Int(used.pending_max),
            batchCountMax: Int(used.batch_count_max), ackOnlyFrames: Int(result.ack_only_frames),
            framesRefused: Int(result.frames_refused), violations: Int(result.violations),
            firstViolation: result.violations > 0 ? Violation(result.first_violation) : nil,
            plantedBug: settings.plantedBug)
    }

    /// §2.5.3: rounds from the broadcast of one message by `origin` on an idle ring until the last
    /// process delivered it (the broadcast happens at the start of round 1).
    /// - Throws: `SimError` if the message was not delivered everywhere within 8n rounds.
    public static func loneLatencyRounds(nodes: Int, origin: Int = 0, fairness: Bool = true) throws(SimError) -> Int {
        try validate(nodes: nodes)
        precondition((0..<nodes).contains(origin), "origin out of range")
        var rounds: UInt64 = 0
        let status = rc_sim_lone_latency(UInt32(nodes), UInt32(origin), fairness, &rounds)
        guard status == 0 else { throw .simulatorFailed(operation: "rc_sim_lone_latency", errno: status) }
        return Int(rounds)
    }
}

/// -EINVAL without importing Glibc into every file.
private let EINVAL_VALUE: Int32 = 22
