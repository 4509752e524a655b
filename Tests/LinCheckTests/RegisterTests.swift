import Testing
@testable import RingCastLinCheck

/// The register examples of Herlihy & Wing (1990, §2) and their usual variants.
@Suite struct RegisterTests {
    let register = IntRegister(initialValue: 0)

    @Test func staleReadAfterCompletedWriteIsRejected() throws {
        let history = [
            registerOperation(1, .write(1), .ok, 0, 10),
            registerOperation(1, .write(2), .ok, 20, 30),
            registerOperation(2, .read, .value(1), 40, 50),
        ]
        let outcome = try Linearizability.check(register, history)
        #expect(outcome.verdict == .notLinearizable)
        let violation = try #require(outcome.violation)
        #expect(violation.culprit == 2)
        // The quiescent point before the read summarises both writes as "the register holds 2".
        #expect(violation.starts.map(\.state) == [2])
        #expect(violation.starts.map(\.applied) == [[]])
        #expect(violation.operations == [.init(index: 2, role: .outputChecked)])
        #expect(violation.shrinkComplete)
    }

    @Test func readsOverlappingAWriteMaySeeOldThenNew() throws {
        let history = [
            registerOperation(1, .write(1), .ok, 0, 100),
            registerOperation(2, .read, .value(0), 10, 20),
            registerOperation(3, .read, .value(1), 30, 40),
        ]
        #expect(try Linearizability.check(register, history).verdict == .linearizable)
    }

    @Test func readsOverlappingAWriteMayNotSeeNewThenOld() throws {
        let history = [
            registerOperation(1, .write(1), .ok, 0, 100),
            registerOperation(2, .read, .value(1), 10, 20),
            registerOperation(3, .read, .value(0), 30, 40),
        ]
        let outcome = try Linearizability.check(register, history)
        #expect(outcome.verdict == .notLinearizable)
        #expect(outcome.violation?.culprit == 2)
    }

    @Test func concurrentWritesAreSeenInOneOrderByEveryone() throws {
        let agreeing = [
            registerOperation(1, .write(1), .ok, 0, 10),
            registerOperation(2, .write(2), .ok, 0, 10),
            registerOperation(3, .read, .value(1), 20, 30),
            registerOperation(4, .read, .value(1), 40, 50),
        ]
        #expect(try Linearizability.check(register, agreeing).verdict == .linearizable)
        var disagreeing = agreeing
        disagreeing[3].output = .value(2)
        #expect(try Linearizability.check(register, disagreeing).verdict == .notLinearizable)
    }

    @Test func equalTimesCountAsOverlapping() throws {
        // The write returned at the instant the read was invoked: the recording cannot order them.
        let history = [
            registerOperation(1, .write(1), .ok, 0, 10),
            registerOperation(2, .read, .value(0), 10, 20),
        ]
        #expect(try Linearizability.check(register, history).verdict == .linearizable)
    }

    @Test func openWriteTakesEffectOnceOrNever() throws {
        let seenThenGone = [
            registerOperation(1, .write(1), nil, 0, nil),
            registerOperation(2, .read, .value(1), 10, 20),
            registerOperation(2, .read, .value(0), 30, 40),
        ]
        #expect(try Linearizability.check(register, seenThenGone).verdict == .notLinearizable)
        let lateEffect = [
            registerOperation(1, .write(1), nil, 0, nil),
            registerOperation(2, .read, .value(0), 10, 20),
            registerOperation(2, .read, .value(1), 1_000, 1_010),
        ]
        #expect(try Linearizability.check(register, lateEffect).verdict == .linearizable)
        let never = [
            registerOperation(1, .write(1), nil, 0, nil),
            registerOperation(2, .read, .value(0), 10, 20),
        ]
        #expect(try Linearizability.check(register, never).verdict == .linearizable)
    }

    @Test func returnedWithUnknownOutputMustTakeEffectInItsInterval() throws {
        // Unlike an open operation, one that returned did take effect before it returned.
        let history = [
            registerOperation(1, .write(1), nil, 0, 10),
            registerOperation(2, .read, .value(0), 20, 30),
        ]
        #expect(try Linearizability.check(register, history).verdict == .notLinearizable)
    }

    @Test func compareAndSwapRace() throws {
        let bothWin = [
            registerOperation(1, .compareAndSwap(expected: 0, new: 1), .swapped(true), 0, 10),
            registerOperation(2, .compareAndSwap(expected: 0, new: 2), .swapped(true), 0, 10),
        ]
        #expect(try Linearizability.check(register, bothWin).verdict == .notLinearizable)
        let oneWins = [
            registerOperation(1, .compareAndSwap(expected: 0, new: 1), .swapped(false), 0, 10),
            registerOperation(2, .compareAndSwap(expected: 0, new: 2), .swapped(true), 0, 10),
            registerOperation(3, .read, .value(2), 20, 30),
        ]
        #expect(try Linearizability.check(register, oneWins).verdict == .linearizable)
    }

    @Test func malformedHistoriesAreRefused() {
        #expect(throws: Linearizability.HistoryError(index: 0, reason: "has an output but no return time")) {
            try Linearizability.check(register, [registerOperation(1, .read, .value(0), 5, nil)])
        }
        #expect(throws: Linearizability.HistoryError.self) {
            try Linearizability.check(register, [registerOperation(1, .read, .value(0), 5, 4)])
        }
    }

    @Test func configurationsEnumerateEveryOrderOfConcurrentWrites() throws {
        // Three overlapping writes that all returned, and an open one: each write can be last, and the open
        // one may have been applied or not.
        var operations = (1...3).map { value in
            SearchOperation<IntRegister.Input, IntRegister.Output>(
                local: value - 1, input: .write(value), output: .ok, callRank: value - 1, returnRank: 3 + value)
        }
        operations.append(.init(local: 3, input: .write(4), output: nil, callRank: 3, returnRank: nil))
        var meter = StepMeter(stepsMax: 1_000, shouldStop: nil)
        let ends = try #require(JustInTimeSearch(model: register).configurations(of: operations, from: 0, meter: &meter))
        let found = Set(ends.map { "\($0.state) \($0.linearized.sorted())" })
        #expect(found == ["1 [0, 1, 2]", "2 [0, 1, 2]", "3 [0, 1, 2]", "1 [0, 1, 2, 3]", "2 [0, 1, 2, 3]", "3 [0, 1, 2, 3]"])
    }

    @Test func budgetWithoutStepsTraps() async {
        await #expect(processExitsWith: .failure) {
            _ = LinearizabilityBudget(stepsMax: 0)
        }
    }

    @Test func linearizingAnOperationTwiceTraps() async {
        await #expect(processExitsWith: .failure) {
            var set = LinearizedSet(capacity: 4)
            set.insert(2)
            set.insert(2)
        }
    }
}
