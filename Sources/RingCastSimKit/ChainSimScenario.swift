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

        /// Whether a replica is Byzantine (at most f = one here) under this behaviour.
        var byzantineReplica: Bool { self != .none && self != .headOnlyClient }
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
            case .none, .headOnlyClient: byzantine = -1
            }
            let delayMax = UInt64(prng.int(1...5))
            return Scenario(
                f: f, clients: prng.int(1...6), requestsPerClient: prng.int(2...20), batchCount: batchCount,
                checkpointInterval: checkpointInterval,
                historyMax: 2 * checkpointInterval + batchCount + UInt32(prng.int(0...8)),
                outBatches: UInt32(prng.int(2...4)), delayMaxTicks: delayMax, linkCapacity: prng.int(1...3),
                behaviour: behaviour, byzantine: byzantine, trigger: prng.int(0...6), variant: prng.int(0...7),
                clientTimeoutTicks: 600 + UInt64(n) * delayMax * 40,
                checkpointLossPercent: prng.chance(30) ? UInt32(prng.int(5...40)) : 0)
        }
    }
}
