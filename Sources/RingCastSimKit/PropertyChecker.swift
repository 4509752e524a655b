internal import CRingCast

/// The property checkers of the simulator (thesis §2.4: validity, integrity, uniform agreement,
/// total order), over per-process delivery logs. The C implementation (`rc_sim_check`) is what the
/// simulators run after every seed; this is its Swift face, for tests and external logs.
public enum PropertyChecker {
    /// What the checkers read.
    public struct Logs: Sendable {
        /// `deliveries[p]`: what process p delivered, in order.
        public var deliveries: [[MessageID]]
        /// `broadcastCounts[o]`: broadcasts of origin o (sequences 1...count exist).
        public var broadcastCounts: [Int]
        /// Processes that never crashed; only they owe validity and agreement.
        public var correctProcesses: Set<Int>
        /// True when nothing is in flight any more, so validity and agreement must hold now.
        public var quiescent: Bool

        /// - Precondition: one log and one broadcast count per process, 1...RC_SIM_NODES_MAX processes.
        public init(deliveries: [[MessageID]], broadcastCounts: [Int], correctProcesses: Set<Int>? = nil,
                    quiescent: Bool = true) {
            precondition(deliveries.count == broadcastCounts.count, "one log and one count per process")
            precondition((1...Int(RC_SIM_NODES_MAX)).contains(deliveries.count), "1...\(RC_SIM_NODES_MAX) processes")
            self.deliveries = deliveries
            self.broadcastCounts = broadcastCounts
            self.correctProcesses = correctProcesses ?? Set(deliveries.indices)
            self.quiescent = quiescent
        }
    }

    /// The checkers' answer.
    public struct Verdict: Sendable, Equatable {
        /// How many properties are violated (0 = all hold).
        public var violatedPropertyCount: Int
        /// The first violation found, if any.
        public var firstViolation: Violation?

        public var holds: Bool { violatedPropertyCount == 0 }
    }

    /// Checks `logs`.
    /// - Throws: `SimError.simulatorFailed` if the checker ran out of memory.
    public static func check(_ logs: Logs) throws(SimError) -> Verdict {
        let packedLogs = logs.deliveries.map { $0.map(\.packed) }
        let lengths = packedLogs.map { UInt64($0.count) }
        let counts = logs.broadcastCounts.map { UInt64($0) }
        let mask = logs.correctProcesses.reduce(UInt32(0)) { $0 | (UInt32(1) << UInt32($1)) }
        var first = rc_sim_violation()
        let result = withPointers(to: packedLogs) { pointers in
            lengths.withUnsafeBufferPointer { lengths in
                counts.withUnsafeBufferPointer { counts in
                    pointers.withUnsafeBufferPointer { pointers in
                        var view = rc_sim_logs()
                        view.nodes = UInt32(packedLogs.count)
                        view.log = pointers.baseAddress
                        view.log_length = lengths.baseAddress
                        view.broadcast_count = counts.baseAddress
                        view.correct_mask = mask
                        view.quiescent = logs.quiescent
                        return rc_sim_check(&view, &first)
                    }
                }
            }
        }
        guard result >= 0 else { throw .simulatorFailed(operation: "rc_sim_check", errno: result) }
        return Verdict(violatedPropertyCount: Int(result), firstViolation: result > 0 ? Violation(first) : nil)
    }

    /// Lends stable pointers to every log at once (nested closures, one per log).
    private static func withPointers<Result>(
        to logs: [[UInt64]], _ body: ([UnsafePointer<UInt64>?]) -> Result
    ) -> Result {
        func lend(_ index: Int, _ collected: [UnsafePointer<UInt64>?]) -> Result {
            guard index < logs.count else { return body(collected) }
            return logs[index].withUnsafeBufferPointer { buffer in
                lend(index + 1, collected + [buffer.baseAddress])
            }
        }
        return lend(0, [])
    }
}
