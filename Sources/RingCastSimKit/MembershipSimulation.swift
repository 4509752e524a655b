import ArgumentParser
import Foundation
import RingCastMembership

/// Randomized runs of the membership core (`RingCastMembership`) together with the real C LCR core:
/// each seed draws a group of 3...7 members, a mode (quorum or perfect), queue settings, delays and a
/// fault schedule — crashes (also of the coordinator, also mid-send), silent partitions of one member,
/// joins, leaves, rejoins as a new incarnation — runs it in virtual time through view changes, and
/// checks the properties of §2.4 across views (``MembershipSimulation/Property``). A seed replays exactly.
public enum MembershipSimulation {
    /// Bugs planted on purpose to prove the checkers can fail.
    public enum PlantedBug: String, Sendable, Codable, CaseIterable, ExpressibleByArgument {
        case none
        /// The coordinator skips the fill round: members install without the data up to the target.
        case installWithoutFill = "install-without-fill"
        /// The shell forgets Fig. 2.7 line 6: at install it delivers nothing of the view left.
        case skipForceDelivery = "skip-force-delivery"
    }

    /// What the checkers look at (thesis §2.4, extended across views).
    public enum Property: String, Sendable, Codable, CaseIterable {
        /// A correct member's accepted broadcast was not delivered by it.
        case validity
        /// A duplicate delivery, or one nobody broadcast.
        case integrity
        /// Some member delivered m (in view v), a member that went on from v did not, or delivered it
        /// in another view.
        case uniformAgreement = "uniform_agreement"
        /// Two members' deliveries of one view are not one a prefix of the other.
        case totalOrder = "total_order"
        /// Members that installed the same next view delivered different sets in the view they left.
        case viewSynchrony = "view_synchrony"
        /// Two members installed different views under one id.
        case viewAgreement = "view_agreement"
        /// A member delivered an origin's messages with a gap.
        case gapFree = "gap_free"
        /// After the last fault and a quiet period, the correct members are not in one view with
        /// everything delivered.
        case liveness
        /// A core or a shell saw something a correct peer cannot send (an LCR -EPROTO, a supplier
        /// lacking what the plan says it holds, an install without a freeze).
        case `protocol`
    }

    public struct Violation: Sendable, Codable, Equatable, CustomStringConvertible {
        public var property: Property
        public var detail: String

        public var description: String { "\(property.rawValue): \(detail)" }
    }

    /// What one seed drew and what happened.
    public struct SeedReport: Sendable, Codable, Equatable {
        public var seed: UInt64
        public var mode: String
        public var recovery: String
        public var members: Int
        public var broadcasts: Int
        public var deliveries: Int
        public var crashes: Int
        public var partitions: Int
        public var joins: Int
        public var leaves: Int
        public var rejoins: Int
        /// Installs over all members.
        public var installs: Int
        /// The id of the view the correct members ended in (0 if they did not converge).
        public var finalViewID: UInt64
        public var ticks: UInt64
        public var controlMessages: Int
        /// Quorum mode: false exclusions and crashes left the newest view without a live majority, so the
        /// group rightly stopped (no liveness is owed; every safety check still ran).
        public var quorumLost: Bool
        /// FNV-1a over every event: equal digests, equal runs.
        public var traceDigest: String
        public var violations: Int
        public var firstViolation: Violation?
        public var plantedBug: PlantedBug

        enum CodingKeys: String, CodingKey {
            case seed, mode, recovery, members, broadcasts, deliveries, crashes, partitions, joins, leaves, rejoins, installs
            case ticks, violations
            case finalViewID = "final_view_id", controlMessages = "control_messages", traceDigest = "trace_digest"
            case quorumLost = "quorum_lost"
            case firstViolation = "first_violation", plantedBug = "planted_bug"
        }
    }

    public struct Failure: Sendable, Codable, Equatable {
        public var seed: UInt64
        public var violation: Violation
        /// One line that replays the seed with its event trace.
        public var replay: String
    }

    /// A sweep over consecutive seeds; its JSON form follows the randomized-mode contract (§3.2).
    public struct SweepReport: Sendable, Codable, Equatable {
        public var firstSeed: UInt64
        public var seedsRun: Int
        public var violations: Int
        public var violationsByProperty: [String: Int]
        public var firstFailure: Failure?
        public var plantedBug: PlantedBug
        public var installs: Int
        public var deliveries: Int
        public var seedsByMode: [String: Int]
        /// Seeds whose group rightly stopped without a live majority (see ``SeedReport/quorumLost``).
        public var seedsQuorumLost: Int
        /// The first ``failingSeedsMax`` failing seeds.
        public var failingSeeds: [UInt64]

        public static let failingSeedsMax = 20

        enum CodingKeys: String, CodingKey {
            case violations, installs, deliveries
            case failingSeeds = "failing_seeds", seedsQuorumLost = "seeds_quorum_lost"
            case firstSeed = "first_seed", seedsRun = "seeds_run", violationsByProperty = "violations_by_property"
            case firstFailure = "first_failure", plantedBug = "planted_bug", seedsByMode = "seeds_by_mode"
        }
    }

    /// Runs one seed.
    /// - Parameter trace: prints one line per event on standard output.
    public static func run(seed: UInt64, plantedBug: PlantedBug = .none, trace: Bool = false) -> SeedReport {
        var world = MembershipSimWorld(seed: seed, plantedBug: plantedBug, trace: trace)
        world.run()
        return world.report()
    }

    /// Runs `count` consecutive seeds from `firstSeed`.
    public static func sweep(firstSeed: UInt64, count: Int, plantedBug: PlantedBug = .none) -> SweepReport {
        precondition(count >= 0, "a negative seed count")
        var sweep = SweepReport(firstSeed: firstSeed, seedsRun: 0, violations: 0, violationsByProperty: [:],
                                firstFailure: nil, plantedBug: plantedBug, installs: 0, deliveries: 0, seedsByMode: [:],
                                seedsQuorumLost: 0, failingSeeds: [])
        for offset in 0..<UInt64(count) {
            let seed = firstSeed &+ offset
            let report = run(seed: seed, plantedBug: plantedBug)
            sweep.seedsRun += 1
            sweep.installs += report.installs
            sweep.deliveries += report.deliveries
            sweep.seedsByMode[report.mode, default: 0] += 1
            if report.quorumLost { sweep.seedsQuorumLost += 1 }
            guard let violation = report.firstViolation else { continue }
            sweep.violations += 1
            if sweep.failingSeeds.count < SweepReport.failingSeedsMax { sweep.failingSeeds.append(seed) }
            sweep.violationsByProperty[violation.property.rawValue, default: 0] += 1
            if sweep.firstFailure == nil {
                sweep.firstFailure = Failure(seed: seed, violation: violation,
                                             replay: replayCommand(seed: seed, plantedBug: plantedBug))
            }
        }
        return sweep
    }

    public static func replayCommand(seed: UInt64, plantedBug: PlantedBug) -> String {
        let bug = plantedBug == .none ? "" : " --membership-bug \(plantedBug.rawValue)"
        return "ringcast-sim --membership --seed \(seed)\(bug) --trace"
    }
}

/// What one seed draws: the group, the settings and the fault schedule.
struct MembershipScenario {
    enum Fault {
        /// `coordinator`: the victim is the lowest member in a view change, if one is under way.
        /// `linkLost`: the victim's ring neighbours see their links break. `midSend`: the victim stops
        /// after a few of the sends of its next step.
        case crash(coordinator: Bool, linkLost: Bool, midSend: Bool)
        /// Everything to and from one member is dropped for `duration` ticks.
        case partition(duration: UInt64)
        case leave
        case join
    }

    enum Kind {
        case broadcast
        case fault(Fault)
    }

    struct Event {
        var time: UInt64
        var kind: Kind
    }

    var mode: Membership.Mode
    /// Which old-view messages a view change delivers (``Membership/RecoveryRule``).
    var recovery: Membership.RecoveryRule
    var members: Int
    var sendQueueMax: Int
    var forwardExtra: Int
    var batchCountMax: Int
    var fairness: Bool
    var linkCapacityFrames: Int
    var controlDelayMaxTicks: UInt64
    var frameDelayMaxTicks: UInt64
    /// Excluded (alive) members join again as a new incarnation.
    var rejoin: Bool
    /// Quorum mode: this share (percent) of control messages sent during the fault window is late by
    /// `spikeTicks` — and so is everything behind it on that link (FIFO). Late messages make false
    /// suspicions, rival coordinators and stale answers: what quorum mode must survive.
    var spikePercent: UInt32
    var spikeTicks: ClosedRange<UInt64>
    var events: [Event]

    /// Heartbeat every 8 ticks, suspicion after 32, rounds of 32: delays (≤ 3 ticks) stay far below
    /// the timeouts, so in perfect mode no suspicion is false.
    static let heartbeatIntervalTicks: UInt64 = 8
    static let suspectTimeoutTicks: UInt64 = 32
    static let roundTimeoutTicks: UInt64 = 32
    /// Faults happen in 10...fault window; broadcasts in 0...broadcast window.
    static let faultWindowTicks: UInt64 = 160
    static let broadcastWindowTicks: UInt64 = 180

    static func draw(_ prng: inout MembershipPrng) -> MembershipScenario {
        let mode: Membership.Mode = prng.chance(30) ? .perfect : .quorum
        let members = prng.int(3...7)
        var scenario = MembershipScenario(
            mode: mode, recovery: prng.chance(50) ? .union : .commonPrefix, members: members, sendQueueMax: prng.int(2...5), forwardExtra: prng.int(1...3),
            batchCountMax: prng.int(1...3), fairness: prng.chance(50), linkCapacityFrames: prng.int(1...3),
            controlDelayMaxTicks: prng.ticks(1...3), frameDelayMaxTicks: prng.ticks(1...2),
            rejoin: mode == .quorum && prng.chance(50),
            spikePercent: mode == .quorum && prng.chance(40) ? UInt32(prng.int(1...6)) : 0,
            spikeTicks: 10...UInt64(prng.int(20...70)), events: [])
        for _ in 0..<prng.int(5...25) {
            scenario.events.append(Event(time: prng.ticks(0...broadcastWindowTicks), kind: .broadcast))
        }
        for fault in drawFaults(mode: mode, members: members, &prng) {
            scenario.events.append(Event(time: prng.ticks(10...faultWindowTicks), kind: .fault(fault)))
        }
        for _ in 0..<prng.int(0...2) {
            scenario.events.append(Event(time: prng.ticks(10...faultWindowTicks), kind: .fault(.join)))
        }
        // Stable by time: events drawn first happen first among equal times.
        scenario.events = scenario.events.enumerated().sorted {
            $0.element.time != $1.element.time ? $0.element.time < $1.element.time : $0.offset < $1.offset
        }.map(\.element)
        return scenario
    }

    /// Quorum mode: fewer than half of the group may fail or leave, so a majority always survives.
    /// Perfect mode (§2.2.1): up to n − 1 crashes, no partitions (a partition is a false suspicion).
    private static func drawFaults(mode: Membership.Mode, members: Int, _ prng: inout MembershipPrng) -> [Fault] {
        let budget = mode == .quorum ? (members - 1) / 2 : members - 1
        return (0..<prng.int(1...budget)).map { _ in
            let roll = prng.int(0...99)
            if mode == .quorum && roll >= 50 && roll < 80 { return .partition(duration: prng.ticks(40...90)) }
            if roll >= 80 { return .leave }
            return .crash(coordinator: prng.chance(35), linkLost: prng.chance(50), midSend: prng.chance(30))
        }
    }
}
