/// One client operation on the key-value store as `ringcast-kv bench --check` records it.
public struct KVEvent: Sendable, Hashable {
    public var client: Int
    public var input: KVInput
    /// `nil`: no answer (timeout, lost connection); the operation may or may not have taken effect.
    public var output: KVOutput?
    /// Monotonic clock of the recording process.
    public var invokeNanos: UInt64
    /// `nil` iff `output` is `nil` (the operation is then open until +infinity). An event without an output
    /// is treated as open whatever this says.
    public var returnNanos: UInt64?

    public init(client: Int, input: KVInput, output: KVOutput?, invokeNanos: UInt64, returnNanos: UInt64?) {
        self.client = client
        self.input = input
        self.output = output
        self.invokeNanos = invokeNanos
        self.returnNanos = returnNanos
    }
}

/// The verdict of ``checkKV(_:budget:)``.
public struct LinearizabilityReport: Sendable {
    public var isLinearizable: Bool
    /// `false` when the search hit its budget (then `isLinearizable` is `false` too), or when the history is
    /// malformed (see `explanation`).
    public var decided: Bool
    /// Keys whose sub-history was decided (including the violating key) before the check stopped.
    public var keysChecked: Int
    /// Events in the checked history.
    public var operations: Int
    /// For a violation: the key, the smallest failing set of operations found, and why; for an undecided
    /// check: why. `nil` when linearizable.
    public var explanation: String?

    public init(isLinearizable: Bool, decided: Bool, keysChecked: Int, operations: Int, explanation: String?) {
        self.isLinearizable = isLinearizable
        self.decided = decided
        self.keysChecked = keysChecked
        self.operations = operations
        self.explanation = explanation
    }
}

/// A violation in a JSON-friendly form (every byte string rendered as text; see ``KVFormat``).
public struct KVViolation: Sendable, Codable, Hashable {
    public struct Start: Sendable, Codable, Hashable {
        public var value: String
        /// Indices of operations in flight at the start that were already applied.
        public var applied: [Int]
    }

    public struct Operation: Sendable, Codable, Hashable {
        /// Index in the checked events.
        public var index: Int
        public var client: Int
        public var input: String
        /// The recorded output; `nil` when there was none.
        public var output: String?
        /// `outputChecked`, `outputIgnored` or `inDoubt` (see ``Linearizability/Role``).
        public var role: String
        public var invokeNanos: UInt64
        public var returnNanos: UInt64?
    }

    public var key: String
    public var keyHex: String
    /// Index of the operation that cannot be linearized.
    public var culprit: Int
    public var keyOperations: Int
    public var failingPrefixOperations: Int
    /// Whether the key's history cut just before the culprit's return is linearizable (checked).
    public var prefixIsShortest: Bool
    public var operationsBeforeStart: Int
    /// What the key may be when ``operations`` start: its value, and which of the operations in flight at
    /// that point were already applied.
    public var starts: [Start]
    /// The failing history, in invocation order.
    public var operations: [Operation]
    public var shrinkComplete: Bool
}

/// The report and, for a violation, its structured form.
public struct KVCheckResult: Sendable {
    public var report: LinearizabilityReport
    public var violation: KVViolation?
}

/// Checks that a key-value history is linearizable, key by key (Herlihy & Wing 1990, Theorem 1).
///
/// - Parameters:
///   - events: the operations, in any order.
///   - budget: bounds the search; when exceeded the report says `decided == false`.
public func checkKV(_ events: [KVEvent], budget: LinearizabilityBudget = .default) -> LinearizabilityReport {
    checkKVDetailed(events, budget: budget).report
}

/// ``checkKV(_:budget:)`` with the violation also in structured (`Codable`) form.
public func checkKVDetailed(_ events: [KVEvent], budget: LinearizabilityBudget = .default) -> KVCheckResult {
    let history = events.map { event in
        Linearizability.Operation<KVInput, KVOutput>(
            client: event.client, input: event.input, output: event.output, invokeNanos: event.invokeNanos,
            returnNanos: event.output == nil ? nil : event.returnNanos)
    }
    let outcome: Linearizability.Outcome<[UInt8]?>
    do {
        outcome = try Linearizability.check(KVModel(), history, partitionedBy: \.key, budget: budget)
    } catch {
        let report = LinearizabilityReport(isLinearizable: false, decided: false, keysChecked: 0,
                                           operations: events.count, explanation: "malformed history: \(error)")
        return KVCheckResult(report: report, violation: nil)
    }
    switch outcome.verdict {
    case .linearizable:
        let report = LinearizabilityReport(isLinearizable: true, decided: true,
                                           keysChecked: outcome.partitionsDecided, operations: events.count,
                                           explanation: nil)
        return KVCheckResult(report: report, violation: nil)
    case .undecided:
        let explanation = "undecided: the budget ran out after \(outcome.stepsUsed) search steps "
            + "(stepsMax \(budget.stepsMax)), with \(outcome.partitionsDecided) of \(outcome.partitions) keys "
            + "checked (all linearizable so far)"
        let report = LinearizabilityReport(isLinearizable: false, decided: false,
                                           keysChecked: outcome.partitionsDecided, operations: events.count,
                                           explanation: explanation)
        return KVCheckResult(report: report, violation: nil)
    case .notLinearizable:
        let violation = KVFormat.violation(outcome.violation!, events: events)
        let report = LinearizabilityReport(isLinearizable: false, decided: true, keysChecked: outcome.partitionsDecided,
                                           operations: events.count,
                                           explanation: KVFormat.explanation(violation, events: events))
        return KVCheckResult(report: report, violation: violation)
    }
}

/// Human-readable renderings of key-value histories.
public enum KVFormat {
    /// Printable ASCII in quotes (`"k7"`), `""` for empty, otherwise hex (`0x0500000000000000`), with the
    /// counter for 8 bytes (`0x0500000000000000 (=5)`).
    public static func bytes(_ bytes: [UInt8]) -> String {
        if bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) {
            var text = "\""
            for byte in bytes {
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { text.append("\\") }
                text.append(Character(Unicode.Scalar(byte)))
            }
            return text + "\""
        }
        let hex = "0x" + bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        if bytes.count == 8, let counter = KVModel.counter(bytes) { return "\(hex) (=\(counter))" }
        return hex
    }

    public static func value(_ value: [UInt8]?) -> String {
        value.map(bytes) ?? "absent"
    }

    public static func input(_ input: KVInput) -> String {
        switch input {
        case .put(let key, let value): return "put(\(bytes(key)), \(bytes(value)))"
        case .get(let key): return "get(\(bytes(key)))"
        case .delete(let key): return "delete(\(bytes(key)))"
        case .cas(let key, let expected, let new):
            return "cas(\(bytes(key)), expected: \(value(expected)), new: \(bytes(new)))"
        case .incr(let key, let delta): return "incr(\(bytes(key)), \(delta))"
        }
    }

    public static func output(_ output: KVOutput) -> String {
        switch output {
        case .ok: return "ok"
        case .value(let current): return "value(\(value(current)))"
        case .deleted(let existed): return "deleted(existed: \(existed))"
        case .swapped(let swapped): return "swapped(\(swapped))"
        case .counter(let counter): return "counter(\(counter))"
        case .notACounter: return "notACounter"
        }
    }

    static func violation(_ violation: Linearizability.Violation<[UInt8]?>, events: [KVEvent]) -> KVViolation {
        let key = events[violation.culprit].input.key
        let operations = violation.operations.map { operation in
            let event = events[operation.index]
            let role: String
            switch operation.role {
            case .outputChecked: role = "outputChecked"
            case .outputIgnored: role = "outputIgnored"
            case .inDoubt: role = "inDoubt"
            }
            return KVViolation.Operation(
                index: operation.index, client: event.client, input: input(event.input),
                output: event.output.map(output), role: role, invokeNanos: event.invokeNanos,
                returnNanos: event.output == nil ? nil : event.returnNanos)
        }
        return KVViolation(
            key: bytes(key),
            keyHex: "0x" + key.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(),
            culprit: violation.culprit,
            keyOperations: violation.partitionOperations,
            failingPrefixOperations: violation.failingPrefixOperations,
            prefixIsShortest: violation.prefixIsShortest,
            operationsBeforeStart: violation.operationsBeforeStart,
            starts: violation.starts.map { KVViolation.Start(value: value($0.state), applied: $0.applied) }
                .sorted { $0.value != $1.value ? $0.value < $1.value : $0.applied.lexicographicallyPrecedes($1.applied) },
            operations: operations,
            shrinkComplete: violation.shrinkComplete)
    }

    static func explanation(_ violation: KVViolation, events: [KVEvent]) -> String {
        let origin = events.map(\.invokeNanos).min() ?? 0
        func line(_ operation: KVViolation.Operation) -> String {
            let result: String
            switch operation.role {
            case "outputChecked": result = operation.output ?? "?"
            case "outputIgnored": result = "\(operation.output ?? "?") (output not needed)"
            default:
                result = operation.output == nil
                    ? "no answer (in doubt)"
                    : "still running when #\(violation.culprit) returned (in doubt)"
            }
            let returned = operation.returnNanos.map { String($0 - origin) } ?? "-"
            let mark = operation.index == violation.culprit ? "  <- cannot be placed" : ""
            return "  #\(operation.index) client \(operation.client) \(operation.input) -> \(result) "
                + "[\(operation.invokeNanos - origin), \(returned)]\(mark)"
        }
        func describe(_ start: KVViolation.Start) -> String {
            start.applied.isEmpty
                ? start.value
                : start.value + " with " + start.applied.map { "#\($0)" }.joined(separator: ", ") + " applied"
        }

        let culprit = events[violation.culprit]
        let fromScratch = violation.operationsBeforeStart == 0 && violation.starts.count == 1
            && violation.starts[0].applied.isEmpty
        let start: String
        if fromScratch {
            start = "starting from \(violation.starts[0].value == "absent" ? "an absent key" : violation.starts[0].value)"
        } else {
            let shown = violation.starts.prefix(8).map(describe).joined(separator: "; ")
            let more = violation.starts.count > 8 ? "; … (\(violation.starts.count) in all)" : ""
            start = "after the key's first \(violation.operationsBeforeStart) operations, which returned before these "
                + "were invoked, the key may be: \(shown)\(more)"
        }
        let count = violation.operations.count == 1 ? "1 operation" : "\(violation.operations.count) operations"
        var lines = [
            "not linearizable: key \(violation.key) "
                + "(#n: index in the checked events; times in ns since the first invocation)",
            "operation #\(violation.culprit) (client \(culprit.client) \(input(culprit.input)) -> "
                + "\(culprit.output.map(output) ?? "?")) cannot be placed: the key's history cut at its return is not "
                + "linearizable (\(violation.failingPrefixOperations) of the key's \(violation.keyOperations) "
                + "operations invoked by then)" + (violation.prefixIsShortest ? ", cut just before it, it is" : ""),
            "smallest failing history found (\(count); \(start)):",
        ]
        lines += violation.operations.map(line)
        lines.append("why: no order of these operations that respects real time (one that returned before another "
                     + "was invoked comes first), in which each in-doubt one takes effect once or never, gives every "
                     + "output shown" + (violation.shrinkComplete ? "" : " (explanation budget ran out: perhaps not the shortest)"))
        return lines.joined(separator: "\n")
    }
}
