internal import CRingCast

/// The round model of §2.2.2 (thesis 001_…) over the real LCR core: throughput against
/// Theorem 2.5.1, per-sender shares (§2.5.2) and the latency of a lone broadcast (§2.5.3).
public enum RoundModel {
    /// Largest ring the simulator builds.
    public static let nodesMax = Int(RC_SIM_NODES_MAX)

    /// Queue maxima of every core. `nil` fields are derived: the window from the round model's
    /// default (8n), the others from rc_lcr.h's sizing rules.
    public struct QueueSettings: Sendable, Equatable, Codable {
        public var sendQueueMax: Int?
        public var forwardQueueMax: Int?
        public var pendingMax: Int?

        public init(sendQueueMax: Int? = nil, forwardQueueMax: Int? = nil, pendingMax: Int? = nil) {
            self.sendQueueMax = sendQueueMax
            self.forwardQueueMax = forwardQueueMax
            self.pendingMax = pendingMax
        }

        /// Checks rc_lcr.h's sizing rules, which keep a ring of bounded queues free of deadlock.
        /// - Precondition: `sendQueueMax` is set.
        func check(nodes: Int) throws(SimError) {
            guard let send = sendQueueMax else { preconditionFailure("resolve the window first") }
            let forward = forwardQueueMax ?? send + 1
            let pending = pendingMax ?? nodes * (send + forward)
            let queueMax = Int(RC_LCR_QUEUE_MAX)
            for (name, value) in [("send-queue-max", send), ("forward-queue-max", forward), ("pending-max", pending)]
            where !(1...queueMax).contains(value) {
                throw .invalidSettings("--\(name) must be in 1...\(queueMax), got \(value)")
            }
            guard forward > send else {
                throw .invalidSettings("--forward-queue-max (\(forward)) must exceed --send-queue-max (\(send)) (rc_lcr.h sizing rule 1)")
            }
            guard pending >= nodes * (send + forward) else {
                throw .invalidSettings("--pending-max (\(pending)) must be at least nodes × (send + forward) = \(nodes * (send + forward)) (rc_lcr.h sizing rule 2)")
            }
        }

        /// Checks the sizing rules and writes the values (defaults filled in) into `settings`.
        func apply(to settings: inout rc_sim_ring_settings, nodes: Int) throws(SimError) {
            var resolved = self
            resolved.sendQueueMax = sendQueueMax ?? Int(settings.send_queue_max)
            try resolved.check(nodes: nodes)
            let send = resolved.sendQueueMax ?? 0
            let forward = forwardQueueMax ?? send + 1
            settings.send_queue_max = UInt32(send)
            settings.forward_queue_max = UInt32(forward)
            settings.pending_max = UInt32(pendingMax ?? nodes * (send + forward))
        }
    }

    /// One throughput experiment.
    public struct Settings: Sendable, Equatable {
        public var nodes: Int
        /// Ring positions that broadcast continuously.
        public var senders: [Int]
        /// Rounds in total, warm-up included.
        public var rounds: Int
        /// Rounds not measured; `nil` = max(rounds / 10, 4n).
        public var warmupRounds: Int?
        public var fairness: Bool
        public var queues: QueueSettings
        /// Plants `RC_LCR_FAULT_DELIVER_UNSTABLE` into every core (checker self-test).
        public var plantedBug: PlantedBug

        /// The default senders are the first `senderCount` ring positions.
        public init(nodes: Int, senders: [Int], rounds: Int, warmupRounds: Int? = nil, fairness: Bool = true,
                    queues: QueueSettings = QueueSettings(), plantedBug: PlantedBug = .none) {
            self.nodes = nodes
            self.senders = senders
            self.rounds = rounds
            self.warmupRounds = warmupRounds
            self.fairness = fairness
            self.queues = queues
            self.plantedBug = plantedBug
        }
    }

    static func validate(nodes: Int) throws(SimError) {
        guard (2...nodesMax).contains(nodes) else {
            throw .invalidSettings("--nodes must be in 2...\(nodesMax), got \(nodes)")
        }
    }

    static func validate(_ settings: Settings) throws(SimError) {
        try validate(nodes: settings.nodes)
        guard !settings.senders.isEmpty else { throw .invalidSettings("at least one sender is needed") }
        guard Set(settings.senders).count == settings.senders.count else {
            throw .invalidSettings("a sender is listed twice in \(settings.senders)")
        }
        if let bad = settings.senders.first(where: { !(0..<settings.nodes).contains($0) }) {
            throw .invalidSettings("sender \(bad) is not a ring position 0...\(settings.nodes - 1)")
        }
        guard settings.rounds >= 1 else { throw .invalidSettings("--rounds must be at least 1") }
        if let warmup = settings.warmupRounds, !(0..<settings.rounds).contains(warmup) {
            throw .invalidSettings("--warmup-rounds must be in 0..<rounds (\(settings.rounds)), got \(warmup)")
        }
    }
}
