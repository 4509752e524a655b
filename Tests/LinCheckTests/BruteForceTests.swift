import Testing
@testable import RingCastLinCheck

/// The search against the definition itself: for small random histories, try every order of every allowed
/// subset of operations (Herlihy & Wing 1990, §3) and compare the verdicts.
@Suite struct BruteForceTests {
    typealias Operation = Linearizability.Operation<KVInput, KVOutput>
    static let key = k("a")

    /// Whether some order of all returned operations and some of the open ones respects real time and gives
    /// every recorded output.
    static func bruteForce(_ history: [Operation], from initialState: [UInt8]? = nil) -> Bool {
        let model = KVModel()
        var used = [Bool](repeating: false, count: history.count)
        func precedes(_ first: Operation, _ second: Operation) -> Bool {
            first.returnNanos.map { $0 < second.invokeNanos } ?? false
        }
        func extend(_ state: [UInt8]?) -> Bool {
            if history.indices.allSatisfy({ used[$0] || history[$0].returnNanos == nil }) { return true }
            for next in history.indices where !used[next] {
                // An unused returned operation that precedes `next` would have to come after it.
                if history.indices.contains(where: { !used[$0] && precedes(history[$0], history[next]) }) { continue }
                let (output, after) = model.step(state, history[next].input)
                if let recorded = history[next].output, recorded != output { continue }
                used[next] = true
                defer { used[next] = false }
                if extend(after) { return true }
            }
            return false
        }
        return extend(initialState)
    }

    /// The failing history of a violation, from one of its start configurations, as a history of its own.
    static func witness(_ violation: Linearizability.Violation<[UInt8]?>, start: Linearizability.Start<[UInt8]?>,
                        in history: [Operation]) -> [Operation] {
        violation.operations.filter { !start.applied.contains($0.index) }.map { operation in
            var witness = history[operation.index]
            switch operation.role {
            case .outputChecked: break
            case .outputIgnored: witness.output = nil
            case .inDoubt:
                witness.output = nil
                witness.returnNanos = nil
            }
            return witness
        }
    }

    /// A random history: random intervals, outputs from a random order that respects them, open operations
    /// that did or did not take effect, and sometimes one output changed.
    static func randomHistory(_ random: inout SplitMix64) -> [Operation] {
        let count = Int.random(in: 1...7, using: &random)
        let values: [[UInt8]] = [k("x"), k("y"), KVModel.bytes(1)]
        var history: [Operation] = []
        var points: [Double] = []
        for client in 0..<count {
            let invoke = UInt64.random(in: 0...20, using: &random)
            let returned = invoke + UInt64.random(in: 0...10, using: &random)
            let input: KVInput
            switch Int.random(in: 0..<5, using: &random) {
            case 0: input = .put(key: key, value: values.randomElement(using: &random)!)
            case 1: input = .get(key: key)
            case 2: input = .delete(key: key)
            case 3:
                let expected = Bool.random(using: &random) ? nil : values.randomElement(using: &random)!
                input = .cas(key: key, expected: expected, new: values.randomElement(using: &random)!)
            default: input = .incr(key: key, delta: Int64.random(in: -1...1, using: &random))
            }
            history.append(Operation(client: client, input: input, output: nil, invokeNanos: invoke,
                                     returnNanos: returned))
            points.append(Double(invoke) + Double.random(in: 0...1, using: &random) * Double(returned - invoke))
        }
        var state: [UInt8]? = nil
        for index in history.indices.sorted(by: { points[$0] < points[$1] }) {
            let open = Int.random(in: 0..<8, using: &random) == 0
            if open {
                history[index].returnNanos = nil
                if Bool.random(using: &random) { continue }  // Never took effect.
            }
            let (output, next) = KVModel().step(state, history[index].input)
            state = next
            if !open { history[index].output = output }
        }
        let answered = history.indices.filter { history[$0].output != nil }
        if Int.random(in: 0..<5, using: &random) < 2, let index = answered.randomElement(using: &random) {
            let outputs: [KVOutput] = [.ok, .value(nil), .value(k("x")), .value(k("y")), .deleted(existed: true),
                                       .deleted(existed: false), .swapped(true), .swapped(false), .counter(0),
                                       .counter(1), .counter(2), .notACounter]
            history[index].output = outputs.randomElement(using: &random)!
        }
        return history
    }

    @Test(arguments: [UInt64(1), 2, 3, 4])
    func verdictMatchesTheDefinition(seed: UInt64) throws {
        var random = SplitMix64(state: seed)
        var agreed = (linearizable: 0, not: 0)
        var witnessOperations = 0
        var prefixOperations = 0
        for _ in 0..<300 {
            let history = Self.randomHistory(&random)
            let expected = Self.bruteForce(history)
            let outcome = try Linearizability.check(KVModel(), history)
            #expect(outcome.verdict == (expected ? .linearizable : .notLinearizable), "\(history)")
            if expected { agreed.linearizable += 1 } else { agreed.not += 1 }
            if let violation = outcome.violation {
                // The culprit returned, its output is checked, and it is in the failing history.
                #expect(history[violation.culprit].output != nil)
                #expect(violation.operations.contains { $0.index == violation.culprit && $0.role == .outputChecked })
                // The explanation is evidence on its own: from every start configuration, its operations
                // cannot be linearized either.
                for start in violation.starts {
                    let witness = Self.witness(violation, start: start, in: history)
                    #expect(!Self.bruteForce(witness, from: start.state), "witness \(witness) from \(start)")
                }
                witnessOperations += violation.operations.count
                prefixOperations += violation.failingPrefixOperations
            }
        }
        // Both kinds occur, so the comparison means something.
        #expect(agreed.linearizable > 50 && agreed.not > 50, "\(agreed)")
        // Shrinking does shorten (a deterministic count for these seeds).
        #expect(witnessOperations < prefixOperations, "\(witnessOperations) \(prefixOperations)")
    }
}
