/// How much work a linearizability check may do before it gives up with "undecided".
///
/// Deciding linearizability is NP-complete (Gibbons & Korach 1997), so every check is bounded. The unit is
/// the search step: one application of the sequential model to one state (one attempt to linearize one
/// operation next). Memory is bounded by the same figure, since the memo table gains at most one entry per
/// step. The check never reads a clock: a caller that wants a time limit passes `shouldStop`, which the search
/// polls every ``pollIntervalSteps`` steps (``deadline(_:stepsMax:)`` builds one from a `ContinuousClock`
/// instant).
public struct LinearizabilityBudget: Sendable {
    /// The most search steps the verdict may use, over all partitions (keys) together.
    public var stepsMax: Int
    /// The most search steps spent, after a violation is found, on shrinking it to a short explanation. When
    /// this runs out the explanation is still correct, only longer.
    public var explanationStepsMax: Int
    /// Polled every ``pollIntervalSteps`` steps; returning `true` stops the check with "undecided".
    public var shouldStop: (@Sendable () -> Bool)?

    /// How often `shouldStop` is polled, in search steps.
    public static let pollIntervalSteps = 4096

    /// Five million steps for the verdict (a step is about 8 µs in a debug build, under 1 µs optimised; the
    /// memo table then holds at most five million entries) and one million for the explanation.
    public static let `default` = LinearizabilityBudget()

    /// - Parameters:
    ///   - stepsMax: at least 1.
    ///   - explanationStepsMax: at least 0.
    ///   - shouldStop: an optional cancellation poll (a deadline, a user interrupt).
    public init(
        stepsMax: Int = 5_000_000,
        explanationStepsMax: Int = 1_000_000,
        shouldStop: (@Sendable () -> Bool)? = nil
    ) {
        precondition(stepsMax >= 1, "stepsMax must be at least 1")
        precondition(explanationStepsMax >= 0, "explanationStepsMax must not be negative")
        self.stepsMax = stepsMax
        self.explanationStepsMax = explanationStepsMax
        self.shouldStop = shouldStop
    }

    /// A budget that also stops at `deadline` (the clock is read by the poll, every ``pollIntervalSteps``
    /// steps, never by the search itself).
    public static func deadline(
        _ deadline: ContinuousClock.Instant,
        stepsMax: Int = LinearizabilityBudget.default.stepsMax
    ) -> LinearizabilityBudget {
        LinearizabilityBudget(stepsMax: stepsMax, shouldStop: { ContinuousClock.now >= deadline })
    }
}

/// The running count of steps against a budget, shared by the searches of one check.
struct StepMeter {
    private(set) var stepsUsed = 0
    let stepsMax: Int
    let shouldStop: (@Sendable () -> Bool)?
    private(set) var stopped = false

    init(stepsMax: Int, shouldStop: (@Sendable () -> Bool)?) {
        self.stepsMax = stepsMax
        self.shouldStop = shouldStop
    }

    /// Charges one step. Returns `false` once the budget is exhausted (and keeps returning `false`).
    mutating func charge() -> Bool {
        if stopped { return false }
        if stepsUsed >= stepsMax {
            stopped = true
            return false
        }
        stepsUsed += 1
        if let shouldStop, stepsUsed % LinearizabilityBudget.pollIntervalSteps == 0, shouldStop() {
            stopped = true
            return false
        }
        return true
    }
}
