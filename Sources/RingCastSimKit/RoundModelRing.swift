internal import CRingCast

extension RoundModel {
    /// One entry of a process's `pending` list (Fig. 2.6 draws these), read through rc_lcr_pending_at.
    public struct PendingEntry: Sendable, Equatable, CustomStringConvertible {
        /// Ring position of the broadcaster.
        public var origin: Int
        /// The origin's LCR sequence number, C_m[origin].
        public var sequence: Int
        public var stable: Bool
        /// The message's vector clock stamp C_m.
        public var clock: [UInt64]

        public var description: String { "m(\(origin),\(sequence))\(stable ? " stable" : "")" }
    }

    /// A ring of real LCR cores advanced one synchronous round at a time (§2.2.2): each round every
    /// process sends at most one frame to its successor and receives at most the one its predecessor
    /// sent; a frame refused with backpressure stays on its link.
    ///
    /// Not thread-safe: one ring belongs to one task.
    public final class Ring {
        private let ring: OpaquePointer
        /// Processes in the ring.
        public let nodes: Int

        /// Builds a ring of `nodes` cores.
        /// - Parameters:
        ///   - nodes: ring size, 2...RC_SIM_NODES_MAX.
        ///   - fairness: §2.5.2's throttling on or off.
        ///   - queues: queue maxima; `nil` picks the round model's defaults.
        /// - Throws: `SimError.invalidSettings` for settings the core refuses.
        public init(nodes: Int, fairness: Bool, queues: QueueSettings? = nil) throws(SimError) {
            try RoundModel.validate(nodes: nodes)
            var settings = rc_sim_ring_settings_default(UInt32(nodes), fairness)
            if let queues { try queues.apply(to: &settings, nodes: nodes) }
            var created: OpaquePointer?
            let result = rc_sim_ring_create(&created, &settings)
            guard result == 0, let created else {
                throw .invalidSettings("the LCR core refused these settings (errno \(-result))")
            }
            self.ring = created
            self.nodes = nodes
        }

        deinit { rc_sim_ring_destroy(ring) }

        /// Rounds completed so far.
        public var round: Int { Int(rc_sim_ring_round(ring)) }

        /// utoBroadcast of one new application message at `process`, sent from the next round on.
        /// - Returns: false when the process's send queue is full (backpressure).
        @discardableResult
        public func broadcast(at process: Int) -> Bool {
            precondition((0..<nodes).contains(process), "process out of range")
            return rc_sim_ring_broadcast(ring, UInt32(process)) == 0
        }

        /// Runs one round.
        /// - Throws: `SimError.simulatorFailed` if a core answered what a correct ring never should.
        public func step() throws(SimError) {
            let result = rc_sim_ring_step(ring)
            guard result == 0 else { throw .simulatorFailed(operation: "round \(round)", errno: result) }
        }

        /// The `pending` list of `process`, first (next to deliver) first.
        public func pending(at process: Int) -> [PendingEntry] {
            precondition((0..<nodes).contains(process), "process out of range")
            let core = rc_sim_ring_core(ring, UInt32(process))
            var entries: [PendingEntry] = []
            var view = rc_lcr_pending_view()
            while rc_lcr_pending_at(core, UInt32(entries.count), &view) == 0 {
                let clock = (0..<nodes).map { view.clock[$0] }
                entries.append(PendingEntry(origin: Int(view.origin), sequence: Int(view.seq),
                                            stable: view.stable, clock: clock))
            }
            return entries
        }

        /// What `process` delivered so far, in order, with the round at whose end each was delivered.
        public func deliveries(at process: Int) -> [(message: MessageID, round: Int)] {
            precondition((0..<nodes).contains(process), "process out of range")
            let count = rc_sim_ring_delivered_count(ring, UInt32(process))
            return (0..<count).map { index in
                let packed = rc_sim_ring_delivered_at(ring, UInt32(process), index)
                let round = rc_sim_ring_delivered_round(ring, UInt32(process), index)
                guard let message = MessageID(packed: packed) else { preconditionFailure("the log holds no id 0") }
                return (message, Int(round))
            }
        }

        /// Runs the property checkers on the logs so far (`quiescent`: nothing is in flight).
        public func check(quiescent: Bool) throws(SimError) -> PropertyChecker.Verdict {
            var first = rc_sim_violation()
            let result = rc_sim_ring_check(ring, quiescent, &first)
            guard result >= 0 else { throw .simulatorFailed(operation: "rc_sim_ring_check", errno: result) }
            return PropertyChecker.Verdict(violatedPropertyCount: Int(result),
                                           firstViolation: result > 0 ? Violation(first) : nil)
        }
    }
}
