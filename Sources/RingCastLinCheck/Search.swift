/// One operation as the search sees it: times replaced by ranks in the partition's event order.
struct SearchOperation<Input: Sendable, Output: Sendable> {
    /// Index in the partition.
    var local: Int
    var input: Input
    /// `nil`: not checked.
    var output: Output?
    var callRank: Int
    /// `nil`: open (may be linearized after its call, or never).
    var returnRank: Int?
}

enum SearchResult: Equatable {
    case linearizable
    case notLinearizable
    case exhausted
}

/// The just-in-time linearization search over one partition's sub-history (Lowe 2017, §3, after Wing &
/// Gong 1993; the list manipulation follows the usual "dancing links" form).
///
/// The events (calls and returns) sit in a doubly linked list in time order. Walking from the head, the
/// search may linearize any operation whose call it meets (it is then removed from the list with its
/// return) as long as the model gives the recorded output; meeting a return whose operation is not yet
/// linearized means the current partial linearization cannot be extended (that operation had to take effect
/// before it returned), so the search backtracks to the last choice and tries the next call. A (linearized
/// set, state) pair already seen is not explored again (§4). The history is linearizable once every
/// operation that returned has been linearized; open operations left over simply never took effect.
struct JustInTimeSearch<Model: SequentialModel> {
    typealias Operation = SearchOperation<Model.Input, Model.Output>
    let model: Model

    /// Whether `operations` can be linearized from one of `initialStates`.
    func run(_ operations: [Operation], from initialStates: [Model.State], meter: inout StepMeter) -> SearchResult {
        let ordered = inCallOrder(operations)
        for initialState in initialStates {
            var unused: Set<MemoKey<Model.State>>? = nil
            switch run(ordered, from: initialState, meter: &meter, ends: &unused) {
            case .linearizable: return .linearizable
            case .exhausted: return .exhausted
            case .notLinearizable: continue
            }
        }
        return .notLinearizable
    }

    /// Every (state, operations linearized, by `local`) a linearization of all the returned operations
    /// among `operations` can end in, optional (open) operations taking effect on the way or not; `nil` when
    /// the budget ran out, empty when there is no linearization. Optional operations left out are not
    /// linearized after the last returned one: the caller keeps them available for what follows.
    func configurations(
        of operations: [Operation],
        from initialState: Model.State,
        meter: inout StepMeter
    ) -> [(state: Model.State, linearized: Set<Int>)]? {
        let ordered = inCallOrder(operations)
        var ends: Set<MemoKey<Model.State>>? = []
        if run(ordered, from: initialState, meter: &meter, ends: &ends) == .exhausted { return nil }
        return ends!.map { end in
            (end.state, Set(ordered.indices.filter { end.contains($0) }.map { ordered[$0].local }))
        }
    }

    /// The search numbers operations by position; in call order, linearized sets are nearly prefixes, which
    /// the memo table stores compactly (``MemoKey``).
    private func inCallOrder(_ operations: [Operation]) -> [Operation] {
        operations.sorted { $0.callRank < $1.callRank }
    }

    /// The search over `operations` (in call order). With `ends` non-nil it does not stop at the first
    /// linearization but records its linearized set and final state and backtracks, so that it enumerates
    /// them all.
    private func run(
        _ operations: [Operation],
        from initialState: Model.State,
        meter: inout StepMeter,
        ends: inout Set<MemoKey<Model.State>>?
    ) -> SearchResult {
        // Entries in time order; ranks are distinct, so the order is total and deterministic.
        var events: [(rank: Int, operation: Int, isCall: Bool)] = []
        events.reserveCapacity(operations.count * 2)
        for (position, operation) in operations.enumerated() {
            events.append((operation.callRank, position, true))
            if let returnRank = operation.returnRank {
                precondition(returnRank > operation.callRank, "a return ranks after its call")
                events.append((returnRank, position, false))
            }
        }
        events.sort { $0.rank < $1.rank }
        let count = events.count
        let head = count
        let tail = count + 1
        var next = [Int](repeating: tail, count: count + 2)
        var previous = [Int](repeating: head, count: count + 2)
        for entry in 0..<count {
            previous[entry] = entry == 0 ? head : entry - 1
            next[entry] = entry == count - 1 ? tail : entry + 1
        }
        next[head] = count == 0 ? tail : 0
        previous[tail] = count == 0 ? head : count - 1
        var returnEntry = [Int](repeating: -1, count: operations.count)
        for (entry, event) in events.enumerated() where !event.isCall {
            returnEntry[event.operation] = entry
        }

        func lift(_ entry: Int) {
            next[previous[entry]] = next[entry]
            previous[next[entry]] = previous[entry]
            let match = returnEntry[events[entry].operation]
            if match >= 0 {
                next[previous[match]] = next[match]
                previous[next[match]] = previous[match]
            }
        }
        // Exactly undoes the matching `lift` when lifts and unlifts nest like a stack.
        func unlift(_ entry: Int) {
            let match = returnEntry[events[entry].operation]
            if match >= 0 {
                next[previous[match]] = match
                previous[next[match]] = match
            }
            next[previous[entry]] = entry
            previous[next[entry]] = entry
        }

        var unlinearizedReturned = operations.reduce(0) { $0 + ($1.returnRank == nil ? 0 : 1) }
        var linearized = LinearizedSet(capacity: operations.count)
        var memo = Set<MemoKey<Model.State>>()
        var stack: [(entry: Int, state: Model.State)] = []
        var state = initialState
        var entry = next[head]

        while true {
            var backtrack = false
            if unlinearizedReturned == 0 {
                guard ends != nil else { return .linearizable }
                ends!.insert(MemoKey(linearized: linearized, state: state))
                backtrack = true
            } else if entry == tail || !events[entry].isCall {
                // A return whose operation is not linearized: this partial linearization is stuck.
                backtrack = true
            }
            if backtrack {
                guard let top = stack.popLast() else {
                    if let ends { return ends.isEmpty ? .notLinearizable : .linearizable }
                    return .notLinearizable
                }
                let position = events[top.entry].operation
                linearized.remove(position)
                unlift(top.entry)
                if returnEntry[position] >= 0 { unlinearizedReturned += 1 }
                state = top.state
                entry = next[top.entry]
                continue
            }

            let position = events[entry].operation
            guard meter.charge() else { return .exhausted }
            let (output, nextState) = model.step(state, operations[position].input)
            let matches = operations[position].output.map { $0 == output } ?? true
            if matches {
                linearized.insert(position)
                if memo.insert(MemoKey(linearized: linearized, state: nextState)).inserted {
                    stack.append((entry, state))
                    lift(entry)
                    if returnEntry[position] >= 0 { unlinearizedReturned -= 1 }
                    state = nextState
                    entry = next[head]
                    continue
                }
                linearized.remove(position)
            }
            entry = next[entry]
        }
    }
}
