internal import CRingCast

/// Randomized runs over the real LCR core (ARCHITECTURE §4, level 2): each seed draws the ring size,
/// the core settings, the broadcast pattern, link delays and the schedule, runs until every broadcast
/// was delivered everywhere, and checks validity, integrity, uniform agreement, total order,
/// uniformity and liveness. A seed replays exactly.
public enum RandomSimulation {
    /// What one seed drew and what happened.
    public struct SeedReport: Sendable, Codable, Equatable {
        public var seed: UInt64
        public var nodes: Int
        public var fairness: Bool
        public var sendQueueMax: Int
        public var forwardQueueMax: Int
        public var pendingMax: Int
        public var batchCountMax: Int
        public var batchBytesMax: Int
        public var linkCapacityFrames: Int
        public var linkDelayMaxTicks: Int
        public var messagesPlanned: Int
        public var broadcasts: Int
        public var deliveries: Int
        public var steps: Int
        public var broadcastsRefused: Int
        public var framesRefused: Int
        /// FNV-1a over every event: two runs with equal digests did the same thing.
        public var traceDigest: String
        /// Properties violated (0 = pass).
        public var violations: Int
        public var firstViolation: Violation?
        public var plantedBug: PlantedBug

        enum CodingKeys: String, CodingKey {
            case seed, nodes, fairness, broadcasts, deliveries, steps, violations
            case sendQueueMax = "send_queue_max", forwardQueueMax = "forward_queue_max", pendingMax = "pending_max"
            case batchCountMax = "batch_count_max", batchBytesMax = "batch_bytes_max"
            case linkCapacityFrames = "link_capacity_frames", linkDelayMaxTicks = "link_delay_max_ticks"
            case messagesPlanned = "messages_planned", broadcastsRefused = "broadcasts_refused"
            case framesRefused = "frames_refused", traceDigest = "trace_digest"
            case firstViolation = "first_violation", plantedBug = "planted_bug"
        }
    }

    /// The first failing seed of a sweep.
    public struct Failure: Sendable, Codable, Equatable {
        public var seed: UInt64
        public var property: Property
        public var violation: Violation
        /// One line that replays the seed with its event trace.
        public var replay: String
    }

    /// A sweep over consecutive seeds; its JSON form is the randomized-mode contract (§3.2).
    public struct SweepReport: Sendable, Codable, Equatable {
        public var firstSeed: UInt64
        public var seedsRun: Int
        /// Seeds with at least one violated property.
        public var violations: Int
        /// Property name → seeds whose first violation it was.
        public var violationsByProperty: [String: Int]
        public var firstFailure: Failure?
        public var plantedBug: PlantedBug
        public var deliveries: Int
        public var steps: Int

        enum CodingKeys: String, CodingKey {
            case violations, deliveries, steps
            case firstSeed = "first_seed", seedsRun = "seeds_run", violationsByProperty = "violations_by_property"
            case firstFailure = "first_failure", plantedBug = "planted_bug"
        }
    }

    /// Runs one seed.
    /// - Parameters:
    ///   - trace: print one line per event on standard output.
    ///   - stepMax: the step bound; running into it is a liveness violation (nil: the default bound).
    /// - Throws: `SimError.simulatorFailed` if the simulator itself failed (out of memory).
    public static func run(seed: UInt64, plantedBug: PlantedBug = .none, trace: Bool = false,
                           stepMax: Int? = nil) throws(SimError) -> SeedReport {
        precondition(stepMax.map { $0 >= 1 } ?? true, "the step bound must be positive")
        var settings = rc_sim_random_settings()
        settings.seed = seed
        settings.step_max = UInt64(stepMax ?? 0)
        settings.test_fault = plantedBug.testFault
        settings.trace = trace ? rc_sim_stdout() : nil
        var result = rc_sim_random_result()
        let status = rc_sim_random_run(&settings, &result)
        guard status == 0 else { throw .simulatorFailed(operation: "seed \(seed)", errno: status) }
        return SeedReport(
            seed: seed, nodes: Int(result.nodes), fairness: result.lcr.fairness,
            sendQueueMax: Int(result.lcr.send_queue_max), forwardQueueMax: Int(result.lcr.forward_queue_max),
            pendingMax: Int(result.lcr.pending_max), batchCountMax: Int(result.lcr.batch_count_max),
            batchBytesMax: Int(result.lcr.batch_bytes_max), linkCapacityFrames: Int(result.link_capacity_frames),
            linkDelayMaxTicks: Int(result.link_delay_max_ticks), messagesPlanned: Int(result.messages_planned),
            broadcasts: Int(result.broadcasts), deliveries: Int(result.deliveries), steps: Int(result.steps),
            broadcastsRefused: Int(result.broadcasts_refused), framesRefused: Int(result.frames_refused),
            traceDigest: hex(result.trace_digest), violations: Int(result.violations),
            firstViolation: result.violations > 0 ? Violation(result.first_violation) : nil,
            plantedBug: plantedBug)
    }

    /// Runs `count` consecutive seeds from `firstSeed`.
    public static func sweep(firstSeed: UInt64, count: Int, plantedBug: PlantedBug = .none) throws(SimError) -> SweepReport {
        precondition(count >= 0, "a negative seed count")
        var sweep = SweepReport(firstSeed: firstSeed, seedsRun: 0, violations: 0, violationsByProperty: [:],
                                firstFailure: nil, plantedBug: plantedBug, deliveries: 0, steps: 0)
        for offset in 0..<UInt64(count) {
            let seed = firstSeed &+ offset
            let report = try run(seed: seed, plantedBug: plantedBug)
            sweep.seedsRun += 1
            sweep.deliveries += report.deliveries
            sweep.steps += report.steps
            guard let violation = report.firstViolation else { continue }
            sweep.violations += 1
            sweep.violationsByProperty[violation.property.rawValue, default: 0] += 1
            if sweep.firstFailure == nil {
                sweep.firstFailure = Failure(seed: seed, property: violation.property, violation: violation,
                                             replay: replayCommand(seed: seed, plantedBug: plantedBug))
            }
        }
        return sweep
    }

    /// The command line that replays `seed` with its trace.
    public static func replayCommand(seed: UInt64, plantedBug: PlantedBug) -> String {
        let bug = plantedBug == .none ? "" : " --plant-bug \(plantedBug.rawValue)"
        return "ringcast-sim --random --seed \(seed)\(bug) --trace"
    }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
