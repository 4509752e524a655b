/// Linearizability checking of recorded histories (Herlihy & Wing 1990) against a ``SequentialModel``.
///
/// The search is Wing & Gong's (1993) tree search with Lowe's just-in-time linearization and memoisation of
/// (linearized set, state) pairs (Lowe 2017, "Testing for linearizability", §3–4), the algorithm Porcupine
/// also uses. Histories are split into independent partitions first (Herlihy & Wing 1990, Theorem 1:
/// linearizability is local, so a history is linearizable iff each object's sub-history is).
public enum Linearizability {
    /// One operation of a history as a client saw it: when it was invoked, and when and what it returned.
    ///
    /// Times are any monotonic clock of the recording process. Two operations are ordered in real time only
    /// when one returned strictly before the other was invoked; equal times count as overlapping (the
    /// recording cannot tell which came first, so the checker does not assume an order).
    public struct Operation<Input: Sendable, Output: Sendable>: Sendable {
        /// Who issued the operation; used only in explanations (a client's own operations do not overlap,
        /// and the times already say so).
        public var client: Int
        public var input: Input
        /// What the operation returned; `nil` when its answer is unknown. With `returnNanos` set the operation
        /// did take effect, within its interval, with an output that is not checked; with `returnNanos` nil it
        /// is in doubt (see below).
        public var output: Output?
        public var invokeNanos: UInt64
        /// When the answer arrived; `nil` for an operation that never returned (timeout, lost connection).
        /// Such an operation is "open": it may take effect at any point after its invocation, or never.
        public var returnNanos: UInt64?

        public init(client: Int, input: Input, output: Output?, invokeNanos: UInt64, returnNanos: UInt64?) {
            self.client = client
            self.input = input
            self.output = output
            self.invokeNanos = invokeNanos
            self.returnNanos = returnNanos
        }
    }

    /// The answer of a check.
    public enum Verdict: Sendable, Hashable {
        case linearizable
        case notLinearizable
        /// The budget ran out (or `shouldStop` returned `true`) before the search could decide.
        case undecided
    }

    /// A history the checker refuses: it says nothing about linearizability.
    public struct HistoryError: Error, Sendable, Hashable, CustomStringConvertible {
        /// Index of the offending operation in the history.
        public var index: Int
        public var reason: String
        public var description: String { "operation #\(index): \(reason)" }
    }

    /// The result of ``check(_:_:partitionedBy:budget:)``.
    public struct Outcome<State: Sendable>: Sendable {
        public var verdict: Verdict
        /// Number of partitions (objects, keys) in the history.
        public var partitions: Int
        /// Partitions whose sub-history was decided (linearizable, or the violating one) before the check
        /// stopped.
        public var partitionsDecided: Int
        /// Search steps spent on the verdict (not counting the explanation).
        public var stepsUsed: Int
        /// For ``Verdict/notLinearizable``: the first violating partition and a short failing history in it.
        public var violation: Violation<State>?
    }

    /// How an operation takes part in a failing history.
    public enum Role: Sendable, Hashable {
        /// Its recorded output is checked.
        case outputChecked
        /// It returned, so it took effect within its interval, but its output is not needed to show the
        /// violation.
        case outputIgnored
        /// It had not returned (in the history, or at the end of the failing prefix): it may take effect at
        /// any point after its invocation, or never.
        case inDoubt
    }

    /// One operation of a failing history: its index in the checked history, and its role.
    public struct WitnessOperation: Sendable, Hashable {
        public var index: Int
        public var role: Role
    }

    /// A configuration the object can be in at the start of a failing history.
    public struct Start<State: Sendable>: Sendable {
        public var state: State
        /// Indices (in the checked history) of operations in flight at the start that were already applied.
        public var applied: [Int]
    }

    /// Evidence that a partition's sub-history is not linearizable.
    ///
    /// Built in three steps, each of which keeps "not linearizable" true (so the evidence can be checked by
    /// hand): (1) the shortest prefix of the sub-history, cut at a return, that is already not linearizable
    /// (operations still running at the cut become in doubt); its last return is the ``culprit``'s;
    /// (2) the latest invocation, no later than the culprit's, with few operations in flight: the operations
    /// that returned before it are replaced by the configurations they can leave the object in (``starts``:
    /// a state, and which of the operations in flight were already applied); the operations in flight stay;
    /// (3) outputs that are not needed are dropped (greedily, in halving chunks, as in delta debugging), and
    /// read-only operations whose outputs are dropped are removed (as are in-doubt read-only operations from
    /// the start: they change nothing whether they take effect or not). An operation that may change the
    /// state is never removed.
    public struct Violation<State: Sendable>: Sendable {
        /// Index (in the checked history) of the operation that cannot be linearized: the shortest failing
        /// prefix ends at its return.
        public var culprit: Int
        /// Operations of the partition.
        public var partitionOperations: Int
        /// Operations of the partition invoked before the end of the shortest failing prefix.
        public var failingPrefixOperations: Int
        /// Whether the prefix cut just before the culprit's return was checked linearizable (`false` when the
        /// explanation budget ran out during the bisection: the prefix fails, but a shorter one might too).
        public var prefixIsShortest: Bool
        /// Operations of the prefix that returned before the start point and are summarised by ``starts``.
        public var operationsBeforeStart: Int
        /// What the object can be at the start of ``operations``: a state, and which of the operations in
        /// flight at that point were already applied (the initial state, nothing applied, when the start is
        /// the beginning).
        public var starts: [Start<State>]
        /// The failing history, in invocation order.
        public var operations: [WitnessOperation]
        /// `false` when the explanation budget ran out before shrinking finished (the history is still a
        /// valid witness, only perhaps not the shortest this method finds).
        public var shrinkComplete: Bool
    }

    /// Checks that `history` is linearizable with respect to `model`, one partition at a time.
    ///
    /// Partitions are checked smallest first (a small violating partition is found even when a large one
    /// would exhaust the budget); the check stops at the first violation.
    ///
    /// Complexity: exponential in the worst case (the problem is NP-complete); with the memo table, the
    /// search visits at most (number of distinct linearized sets reachable) × (distinct states) nodes per
    /// partition, which for histories with few concurrent operations per partition is close to linear.
    ///
    /// - Parameters:
    ///   - model: the sequential specification of one partition.
    ///   - history: the operations, in any order.
    ///   - partitionKey: the object an operation acts on; operations of different objects are checked
    ///     separately. Use a constant to check the whole history as one object.
    ///   - budget: bounds the work (never reads a clock itself).
    /// - Throws: ``HistoryError`` for an operation with an output but no return time, or that returns before
    ///   it is invoked.
    public static func check<Model: SequentialModel, Key: Hashable>(
        _ model: Model,
        _ history: [Operation<Model.Input, Model.Output>],
        partitionedBy partitionKey: (Model.Input) -> Key,
        budget: LinearizabilityBudget = .default
    ) throws(HistoryError) -> Outcome<Model.State> {
        try validate(history)
        var partitionIndex: [Key: Int] = [:]
        var partitions: [[Int]] = []
        for (index, operation) in history.enumerated() {
            let key = partitionKey(operation.input)
            if let existing = partitionIndex[key] {
                partitions[existing].append(index)
            } else {
                partitionIndex[key] = partitions.count
                partitions.append([index])
            }
        }
        // Smallest first; ties in order of first appearance, so the result is deterministic.
        let order = partitions.indices.sorted { (partitions[$0].count, $0) < (partitions[$1].count, $1) }
        var meter = StepMeter(stepsMax: budget.stepsMax, shouldStop: budget.shouldStop)
        var decided = 0
        for partition in order {
            let sub = PartitionHistory(model: model, history: history, indices: partitions[partition])
            let result = sub.search(sub.allOperations, from: [model.initialState], meter: &meter)
            switch result {
            case .linearizable:
                decided += 1
            case .exhausted:
                return Outcome(verdict: .undecided, partitions: partitions.count, partitionsDecided: decided,
                               stepsUsed: meter.stepsUsed, violation: nil)
            case .notLinearizable:
                var explanationMeter = StepMeter(stepsMax: budget.explanationStepsMax, shouldStop: budget.shouldStop)
                let violation = sub.explain(meter: &explanationMeter)
                return Outcome(verdict: .notLinearizable, partitions: partitions.count,
                               partitionsDecided: decided + 1, stepsUsed: meter.stepsUsed, violation: violation)
            }
        }
        return Outcome(verdict: .linearizable, partitions: partitions.count, partitionsDecided: decided,
                       stepsUsed: meter.stepsUsed, violation: nil)
    }

    /// Checks `history` as the history of one object (no partitioning).
    public static func check<Model: SequentialModel>(
        _ model: Model,
        _ history: [Operation<Model.Input, Model.Output>],
        budget: LinearizabilityBudget = .default
    ) throws(HistoryError) -> Outcome<Model.State> {
        try check(model, history, partitionedBy: { _ in 0 }, budget: budget)
    }

    static func validate<Input, Output>(_ history: [Operation<Input, Output>]) throws(HistoryError) {
        for (index, operation) in history.enumerated() {
            if let returnNanos = operation.returnNanos {
                if returnNanos < operation.invokeNanos {
                    throw HistoryError(
                        index: index,
                        reason: "returns (\(returnNanos) ns) before it is invoked (\(operation.invokeNanos) ns)")
                }
            } else if operation.output != nil {
                throw HistoryError(index: index, reason: "has an output but no return time")
            }
        }
    }
}
