/// One partition's sub-history, with every call and return ranked in time order, and the explanation of a
/// violation in it.
struct PartitionHistory<Model: SequentialModel> {
    typealias Operation = SearchOperation<Model.Input, Model.Output>

    let model: Model
    /// Partition index → index in the checked history.
    let indices: [Int]
    /// The partition's operations with ranks, in partition order (`local` = position).
    let allOperations: [Operation]

    /// - Precondition: the history was validated (`Linearizability.validate`).
    init(model: Model, history: [Linearizability.Operation<Model.Input, Model.Output>], indices: [Int]) {
        self.model = model
        self.indices = indices
        // Calls before returns at equal times: an operation that returned at the instant another was
        // invoked is taken as overlapping it, not as preceding it (the recording cannot order them).
        var events: [(nanos: UInt64, isReturn: Bool, local: Int)] = []
        events.reserveCapacity(indices.count * 2)
        for (local, index) in indices.enumerated() {
            let operation = history[index]
            events.append((operation.invokeNanos, false, local))
            if let returnNanos = operation.returnNanos {
                events.append((returnNanos, true, local))
            }
        }
        events.sort { ($0.nanos, $0.isReturn ? 1 : 0, $0.local) < ($1.nanos, $1.isReturn ? 1 : 0, $1.local) }
        var callRank = [Int](repeating: 0, count: indices.count)
        var returnRank = [Int?](repeating: nil, count: indices.count)
        for (rank, event) in events.enumerated() {
            if event.isReturn { returnRank[event.local] = rank } else { callRank[event.local] = rank }
        }
        allOperations = indices.enumerated().map { local, index in
            let operation = history[index]
            return Operation(local: local, input: operation.input, output: operation.output,
                             callRank: callRank[local], returnRank: returnRank[local])
        }
    }

    func search(_ operations: [Operation], from initialStates: [Model.State], meter: inout StepMeter) -> SearchResult {
        JustInTimeSearch(model: model).run(operations, from: initialStates, meter: &meter)
    }

    /// The operations invoked before `cutRank`; those that had not returned by it become open.
    func prefix(endingAt cutRank: Int) -> [Operation] {
        allOperations.compactMap { operation in
            guard operation.callRank < cutRank else { return nil }
            var cut = operation
            if let returnRank = operation.returnRank, returnRank > cutRank {
                cut.returnRank = nil
                cut.output = nil
            }
            return cut
        }
    }

    /// A short failing history for a partition already found not linearizable (see
    /// ``Linearizability/Violation`` for the three steps and why each keeps the history failing).
    func explain(meter: inout StepMeter) -> Linearizability.Violation<Model.State> {
        let initial = [model.initialState]

        // (1) The shortest failing prefix, by bisection over returns. Failing is monotone in the cut: a
        // linearization of a longer prefix, cut before its first operation invoked after the shorter cut,
        // linearizes the shorter one (every operation that returned before the cut precedes those).
        let returns = allOperations.filter { $0.returnRank != nil }.sorted { $0.returnRank! < $1.returnRank! }
        precondition(!returns.isEmpty, "a partition without returns is linearizable")
        var low = 0
        var high = returns.count - 1  // Known to fail: it is the whole sub-history but for open operations
                                      // invoked after the last return, which need never take effect.
        var complete = true
        while low < high {
            let middle = (low + high) / 2
            switch search(prefix(endingAt: returns[middle].returnRank!), from: initial, meter: &meter) {
            case .notLinearizable: high = middle
            case .linearizable: low = middle + 1
            case .exhausted:
                complete = false
                low = high
            }
        }
        let culprit = returns[high]
        let prefixIsShortest = complete
        // In-doubt reads do nothing whether they take effect or not.
        let failingPrefix = prefix(endingAt: culprit.returnRank!)
        let relevant = failingPrefix.filter { $0.returnRank != nil || !model.isReadOnly($0.input) }

        // (2) A start point at or before the culprit's call with few operations in flight. Every
        // linearization of the prefix linearizes all operations that returned before that point, and some of
        // those in flight, before any operation invoked after it; so the former part can be replaced by the
        // (state, in-flight operations already applied) pairs it can end in.
        var cut = start(of: relevant, before: culprit.callRank)
        var configurations = [Start(state: model.initialState, applied: [])]
        if !cut.before.isEmpty {
            let optional = cut.inFlight.map { operation in
                var optional = operation
                optional.returnRank = nil  // May be applied before the start or after it (then in `after`).
                return optional
            }
            let ends = JustInTimeSearch(model: model).configurations(
                of: cut.before + optional, from: model.initialState, meter: &meter)
            if let ends, !ends.isEmpty {
                let inFlight = Set(optional.map(\.local))
                configurations = ends.map { end in
                    Start(state: end.state, applied: end.linearized.intersection(inFlight))
                }
            } else {
                complete = false
                cut = (before: [], inFlight: [], after: relevant)
            }
        }

        // (3) Drop outputs that are not needed: a history with fewer outputs checked allows more, so if it
        // still fails the original does too. Halving chunks, as in delta debugging (Zeller & Hildebrandt
        // 2002); an exhausted trial keeps the outputs. Operations in flight at the start keep theirs (they
        // were checked where they were applied before it).
        var after = cut.after
        let candidates = after.filter { $0.output != nil && $0.local != culprit.local }.map(\.local)
        var ignored = Set<Int>()
        var chunk = candidates.count
        trials: while chunk >= 1, complete {
            let left = candidates.filter { !ignored.contains($0) }
            for chunkStart in stride(from: 0, to: left.count, by: chunk) {
                let trial = ignored.union(left[chunkStart..<min(chunkStart + chunk, left.count)])
                switch search(ignoring(trial, in: after), inFlight: cut.inFlight, from: configurations, meter: &meter) {
                case .notLinearizable: ignored = trial
                case .linearizable: continue
                case .exhausted:
                    complete = false
                    break trials
                }
            }
            if chunk == 1 { break }
            chunk = (chunk + 1) / 2
        }
        after = ignoring(ignored, in: after)
        assert(search(after, inFlight: cut.inFlight, from: configurations, meter: &meter) != .linearizable,
               "the witness must fail")

        let operations = (cut.inFlight + after).sorted { $0.callRank < $1.callRank }.map { operation in
            let role: Linearizability.Role = operation.returnRank == nil ? .inDoubt
                : operation.output == nil ? .outputIgnored : .outputChecked
            return Linearizability.WitnessOperation(index: indices[operation.local], role: role)
        }
        let starts = configurations.map { start in
            Linearizability.Start(state: start.state, applied: start.applied.map { indices[$0] }.sorted())
        }
        return Linearizability.Violation(
            culprit: indices[culprit.local],
            partitionOperations: allOperations.count,
            failingPrefixOperations: failingPrefix.count,
            prefixIsShortest: prefixIsShortest,
            operationsBeforeStart: cut.before.count,
            starts: starts,
            operations: operations,
            shrinkComplete: complete
        )
    }

    /// A start configuration: a state, and the in-flight operations (by partition index) applied to reach it.
    struct Start {
        var state: Model.State
        var applied: Set<Int>
    }

    /// Whether `after` together with the in-flight operations not yet applied can be linearized from one of
    /// `starts`.
    private func search(
        _ after: [Operation], inFlight: [Operation], from starts: [Start], meter: inout StepMeter
    ) -> SearchResult {
        for start in starts {
            let operations = inFlight.filter { !start.applied.contains($0.local) } + after
            switch search(operations, from: [start.state], meter: &meter) {
            case .linearizable: return .linearizable
            case .exhausted: return .exhausted
            case .notLinearizable: continue
            }
        }
        return .notLinearizable
    }

    /// The most operations in flight at a start point: each doubles the start configurations at worst.
    static var inFlightMax: Int { 6 }

    /// Splits `operations` at the latest call, no later than `rank`, with at most ``inFlightMax`` operations
    /// in flight (invoked before it, returning after it or never): those that returned before it, those in
    /// flight, and those invoked from it on.
    private func start(of operations: [Operation], before rank: Int)
        -> (before: [Operation], inFlight: [Operation], after: [Operation])
    {
        var events: [(rank: Int, delta: Int)] = []
        for operation in operations {
            events.append((operation.callRank, 1))
            events.append((operation.returnRank ?? Int.max, -1))
        }
        events.sort { $0.rank < $1.rank }
        var inFlight = 0
        var startRank = 0
        for event in events where event.rank <= rank {
            if event.delta > 0, inFlight <= Self.inFlightMax { startRank = event.rank }
            inFlight += event.delta
        }
        return (operations.filter { ($0.returnRank ?? Int.max) < startRank },
                operations.filter { $0.callRank < startRank && ($0.returnRank ?? Int.max) > startRank },
                operations.filter { $0.callRank >= startRank })
    }

    /// `operations` with the outputs of `ignored` not checked; read-only operations among them are removed
    /// (they cannot change the state, and nothing is checked of them any more).
    private func ignoring(_ ignored: Set<Int>, in operations: [Operation]) -> [Operation] {
        operations.compactMap { operation in
            guard ignored.contains(operation.local) else { return operation }
            if model.isReadOnly(operation.input) { return nil }
            var weaker = operation
            weaker.output = nil
            return weaker
        }
    }
}
