/// The sequential specification of an object: what one operation does to the object's state when operations
/// run one at a time.
///
/// Linearizability (Herlihy & Wing 1990, §3) is defined relative to such a specification: a concurrent
/// history is linearizable when its operations can be put in one sequence that respects real time and that
/// this model accepts. The model is deterministic — one input in one state has one output and one next
/// state — which is what the replicated state machines checked here are (a state machine replica must be
/// deterministic for state machine replication to work at all). Nondeterministic specifications would need
/// `step` to return a set of outcomes; none is needed yet.
///
/// `State` is `Hashable` because the search memoises (linearized set, state) pairs (Lowe 2017, §4): two
/// partial linearizations that linearized the same operations and reached the same state have the same
/// futures, so the second is pruned.
public protocol SequentialModel: Sendable {
    associatedtype State: Hashable & Sendable
    associatedtype Input: Sendable
    associatedtype Output: Equatable & Sendable

    /// The state before any operation.
    var initialState: State { get }

    /// Applies `input` to `state`.
    /// - Returns: the output the sequential object gives and the state after the operation.
    func step(_ state: State, _ input: Input) -> (output: Output, next: State)

    /// Whether `input` leaves every state unchanged (a pure read). Used only to shorten explanations: an
    /// operation whose output is not needed to show a violation and that cannot change the state can be
    /// dropped from the failing history without changing which sequences are legal. The default is `false`,
    /// which is always sound.
    func isReadOnly(_ input: Input) -> Bool
}

extension SequentialModel {
    public func isReadOnly(_ input: Input) -> Bool { false }
}
