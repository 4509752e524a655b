import ArgumentParser

/// `ringcast-sim --chain`: randomized runs of n = 3f+1 real Chain cores (rc_chain.h) and their clients, with
/// Byzantine behaviour injected by the simulator around correct cores (never by flags inside a core).
public enum ChainSimulation {
    /// The Byzantine behaviour of one seed (spec §21 tests 2–6).
    public enum Behaviour: String, Sendable, Codable, CaseIterable, ExpressibleByArgument {
        case none
        /// A replica sends its batches straight to the replica after its successor (Lemma A.2, §21.2).
        case bypass
        /// A replica drops a MAC from the chain authenticator (§21.2).
        case dropMAC = "drop-mac"
        /// A replica alters one MAC of the window, possibly one addressed further down the chain (§21.2).
        case forgeMAC = "forge-mac"
        /// A replica alters a request's content and re-authenticates it with its own keys (§21.3).
        case tamperContent = "tamper-content"
        /// A replica swaps two requests of a batch (or bumps a timestamp), re-authenticated (§21.3).
        case tamperOrder = "tamper-order"
        /// A replica shifts a batch's sequence numbers, re-authenticated (§21.3).
        case tamperSequence = "tamper-sequence"
        /// The tail sends a wrong reply or history digest to the client (§21.4).
        case lyingTail = "lying-tail"
        /// A member of Σlast other than the tail computes its ρ over a wrong reply, or forges it (§21.5).
        case lyingSigmaLast = "lying-sigma-last"
        /// A Byzantine client whose MACs are valid only for the head (§21.6).
        case headOnlyClient = "head-only-client"
        /// A correct replica crashes (pauses) for longer than a switch, then recovers (§21.10 with a new Chain
        /// instance standing in for Backup): every request stays live across the switches.
        case crash
        /// A Byzantine replica drops a MAC in instance 1 (forcing a switch), then forwards a forged init history in
        /// instance 2 (§21.8): its successor refuses it and enters through a client's PANIC instead.
        case forgedInit = "forged-init"
        /// A Byzantine replica drops a MAC in instance 1, then answers every FETCH with another request's body
        /// (§21.9): the fetching replica refuses it and gets the body elsewhere.
        case lyingFetch = "lying-fetch"

        /// Whether a replica is Byzantine (at most f = one here) under this behaviour.
        var byzantineReplica: Bool { self != .none && self != .headOnlyClient && self != .crash }
    }

    /// A bug planted into the simulated client, to prove the checkers can fail.
    public enum PlantedBug: String, Sendable, Codable, CaseIterable, ExpressibleByArgument {
        case none
        /// The client commits on the tail's word, without checking the f+1 ρ of Σlast (C4 broken). Forces a lying tail.
        case clientTrustsTail = "client-trusts-tail"
        /// P3 drops the first position after the checkpoint base (Abort Order broken). Forces a lying member
        /// of Σlast, so clients panic after some commits.
        case abortHistorySkip = "abort-history-skip"
    }

    /// What one seed draws.
    public struct Scenario: Sendable, Codable, Equatable {
        public var f: UInt32
        public var clients: Int
        public var requestsPerClient: Int
        public var batchCount: UInt32
        public var checkpointInterval: UInt32
        public var historyMax: UInt32
        public var outBatches: UInt32
        public var delayMaxTicks: UInt64
        public var linkCapacity: Int
        public var behaviour: Behaviour
        /// The Byzantine replica's position (when behaviour.byzantineReplica).
        public var byzantine: Int
        /// The Byzantine replica misbehaves from its trigger-th outgoing batch on (0: from the first).
        public var trigger: Int
        /// A variant of the behaviour (which MAC, which field), drawn per seed.
        public var variant: Int
        public var clientTimeoutTicks: UInt64
        /// Per cent of CHECKPOINT messages lost (0 in most seeds); the cores retransmit after 20 ticks (§14 step 2).
        public var checkpointLossPercent: UInt32
        /// How many instances a run may enter (1: a panic ends the client, as before switching existed).
        public var instancesMax: UInt64
        /// Per cent chance that a replica forgets its request bodies when it enters an instance, so it must FETCH.
        public var bodyLossPercent: UInt32
        /// `.crash`: the replica `byzantine` pauses at crashAt for crashTicks (longer than a client timeout).
        public var crashAt: UInt64
        public var crashTicks: UInt64

        var nodes: Int { Int(3 * f + 1) }

        static func draw(seed: UInt64, behaviour forced: Behaviour?, f forcedF: UInt32?) -> Scenario {
            var prng = MembershipPrng(seed: seed)
            let f: UInt32 = forcedF ?? (prng.chance(25) ? 2 : 1)
            let n = Int(3 * f + 1)
            let behaviour = forced ?? (prng.chance(30) ? .none : prng.pick(Behaviour.allCases.filter { $0 != .none })!)
            let batchCount = UInt32(prng.int(1...8))
            let checkpointInterval = UInt32(prng.int(3...16))
            var byzantine = 0
            switch behaviour {
            case .bypass: byzantine = prng.int(0...(n - 3))
            case .dropMAC, .forgeMAC, .tamperContent, .tamperOrder, .tamperSequence: byzantine = prng.int(0...(n - 2))
            case .lyingTail: byzantine = n - 1
            case .lyingSigmaLast: byzantine = prng.int(Int(2 * f)...(n - 2))
            case .forgedInit, .lyingFetch: byzantine = prng.int(0...(n - 2))
            case .crash: byzantine = prng.int(0...(n - 1))
            case .none, .headOnlyClient: byzantine = -1
            }
            let delayMax = UInt64(prng.int(1...5))
            let timeout = 600 + UInt64(n) * delayMax * 40
            // Byzantine replicas misbehave again in every instance, so switching is bounded; a crash needs one switch
            // per client timeout it lasts, and a few more while the recovered replica catches up.
            let crashTicks = timeout * UInt64(prng.int(12...30)) / 10
            let instancesMax: UInt64
            switch behaviour {
            case .crash: instancesMax = 4 + crashTicks / timeout * 2
            case .forgedInit, .lyingFetch: instancesMax = 4
            default: instancesMax = UInt64(prng.int(1...3))
            }
            return Scenario(
                f: f, clients: prng.int(1...6), requestsPerClient: prng.int(2...20), batchCount: batchCount,
                checkpointInterval: checkpointInterval,
                historyMax: 2 * checkpointInterval + batchCount + UInt32(prng.int(0...8)),
                outBatches: UInt32(prng.int(2...4)), delayMaxTicks: delayMax, linkCapacity: prng.int(1...3),
                behaviour: behaviour, byzantine: byzantine, trigger: prng.int(0...6), variant: prng.int(0...7),
                clientTimeoutTicks: timeout,
                checkpointLossPercent: prng.chance(30) ? UInt32(prng.int(5...40)) : 0,
                instancesMax: instancesMax, bodyLossPercent: prng.chance(50) ? UInt32(prng.int(10...60)) : 0,
                crashAt: UInt64(prng.int(50...400)), crashTicks: crashTicks)
        }
    }
}
