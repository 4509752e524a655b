import Foundation
import Testing
@testable import RingCastLinCheck

@Suite struct KVTests {
    let a = k("a")
    let b = k("b")

    @Test func casRaceOnAnAbsentKey() {
        let bothWin = [
            event(1, .cas(key: a, expected: nil, new: k("x")), .swapped(true), 0, 10),
            event(2, .cas(key: a, expected: nil, new: k("y")), .swapped(true), 5, 15),
        ]
        #expect(!checkKV(bothWin).isLinearizable)
        let bothLose = [
            event(1, .cas(key: a, expected: nil, new: k("x")), .swapped(false), 0, 10),
            event(2, .cas(key: a, expected: nil, new: k("y")), .swapped(false), 5, 15),
        ]
        #expect(!checkKV(bothLose).isLinearizable)
        let oneWins = [
            event(1, .cas(key: a, expected: nil, new: k("x")), .swapped(false), 0, 10),
            event(2, .cas(key: a, expected: nil, new: k("y")), .swapped(true), 5, 15),
            event(3, .get(key: a), .value(k("y")), 20, 30),
        ]
        let report = checkKV(oneWins)
        #expect(report.isLinearizable && report.decided)
        var loserRead = oneWins
        loserRead[2].output = .value(k("x"))
        #expect(!checkKV(loserRead).isLinearizable)
    }

    @Test func casSeesTheValueOfAConcurrentPut() {
        let history = [
            event(1, .put(key: a, value: k("x")), .ok, 0, 100),
            event(2, .cas(key: a, expected: k("x"), new: k("y")), .swapped(true), 10, 20),
            event(3, .get(key: a), .value(k("y")), 200, 210),
        ]
        #expect(checkKV(history).isLinearizable)
    }

    @Test func inDoubtIncrementCountsZeroOrOneTimesNeverTwice() {
        let open = event(1, .incr(key: a, delta: 1), nil, 0, nil)
        for (seen, linearizable) in [(KVOutput.counter(1), true), (.counter(2), true), (.counter(3), false)] {
            let history = [open, event(2, .incr(key: a, delta: 1), seen, 10, 20)]
            let report = checkKV(history)
            #expect(report.isLinearizable == linearizable, "incr after an in-doubt incr returned \(seen)")
            #expect(report.decided)
        }
        for (seen, linearizable) in [([UInt8]?.none, true), (KVModel.bytes(1), true), (KVModel.bytes(2), false)] {
            let report = checkKV([open, event(2, .get(key: a), .value(seen), 10, 20)])
            #expect(report.isLinearizable == linearizable)
        }
        // Took effect, then un-took: a later read of the absent key is a violation.
        let flickering = [
            open,
            event(2, .get(key: a), .value(KVModel.bytes(1)), 10, 20),
            event(2, .get(key: a), .value(nil), 30, 40),
        ]
        #expect(!checkKV(flickering).isLinearizable)
    }

    @Test func doubleAppliedIncrementIsCaught() {
        let history = [
            event(1, .incr(key: a, delta: 5), .counter(5), 0, 10),
            event(2, .incr(key: a, delta: 1), .counter(11), 20, 30),
        ]
        let report = checkKV(history)
        #expect(!report.isLinearizable)
        #expect(report.decided)
        let explanation = report.explanation ?? ""
        #expect(explanation.contains("key \"a\""))
        #expect(explanation.contains("#1 client 2 incr(\"a\", 1) -> counter(11)"))
    }

    @Test func deleteAndNotACounter() {
        let history = [
            event(1, .put(key: a, value: k("abc")), .ok, 0, 10),
            event(1, .incr(key: a, delta: 1), .notACounter, 20, 30),
            event(2, .get(key: a), .value(k("abc")), 40, 50),
            event(1, .delete(key: a), .deleted(existed: true), 60, 70),
            event(2, .delete(key: a), .deleted(existed: false), 80, 90),
            event(1, .incr(key: a, delta: 5), .counter(5), 100, 110),
            event(2, .incr(key: a, delta: -7), .counter(-2), 120, 130),
            event(2, .get(key: a), .value(KVModel.bytes(-2)), 140, 150),
        ]
        #expect(checkKV(history).isLinearizable)
        var countedString = history
        countedString[1].output = .counter(1)
        #expect(!checkKV(countedString).isLinearizable)
        var deletedTwice = history
        deletedTwice[4].output = .deleted(existed: true)
        #expect(!checkKV(deletedTwice).isLinearizable)
        var notACounterAfterDelete = history
        notACounterAfterDelete[5].output = .notACounter
        #expect(!checkKV(notACounterAfterDelete).isLinearizable)
    }

    @Test func incrementWrapsAround() {
        let history = [
            event(1, .put(key: a, value: KVModel.bytes(.max)), .ok, 0, 10),
            event(1, .incr(key: a, delta: 1), .counter(.min), 20, 30),
        ]
        #expect(checkKV(history).isLinearizable)
    }

    @Test func keysAreCheckedIndependently() {
        // As one register this is not linearizable (the get would have to see "x"); per key it is
        // (Herlihy & Wing 1990, Theorem 1).
        let history = [
            event(1, .put(key: a, value: k("x")), .ok, 0, 10),
            event(2, .get(key: b), .value(nil), 20, 30),
        ]
        let report = checkKV(history)
        #expect(report.isLinearizable && report.decided)
        #expect(report.keysChecked == 2)
        #expect(report.operations == 2)
    }

    @Test func violationNamesItsKeyOnly() throws {
        let history = [
            event(1, .put(key: a, value: k("x")), .ok, 0, 10),
            event(2, .get(key: a), .value(k("x")), 20, 30),
            event(1, .put(key: b, value: k("y")), .ok, 40, 50),
            event(2, .get(key: b), .value(k("x")), 60, 70),
            event(3, .get(key: a), .value(k("x")), 60, 70),
        ]
        let result = checkKVDetailed(history)
        #expect(!result.report.isLinearizable && result.report.decided)
        let violation = try #require(result.violation)
        #expect(violation.key == "\"b\"")
        #expect(violation.keyHex == "0x62")
        #expect(violation.culprit == 3)
        #expect(violation.starts == [KVViolation.Start(value: "\"y\"", applied: [])])
        #expect(violation.operations.map(\.index) == [3])
        // JSON-friendly: it encodes and decodes unchanged.
        let json = try JSONEncoder().encode(violation)
        #expect(try JSONDecoder().decode(KVViolation.self, from: json) == violation)
    }

    @Test func explanationKeepsTheNeededOperationsOnly() throws {
        // Two puts and a get that reads a value neither wrote. The read that came before carries no weight
        // and is dropped; the puts, still running when the get returned, stay as in doubt (dropping an
        // operation that may take effect would not keep the evidence sound).
        let history = [
            event(1, .put(key: a, value: k("x")), .ok, 0, 100),
            event(2, .get(key: a), .value(nil), 10, 20),
            event(3, .put(key: a, value: k("y")), .ok, 30, 140),
            event(2, .get(key: a), .value(k("z")), 50, 60),
        ]
        let result = checkKVDetailed(history)
        let violation = try #require(result.violation)
        #expect(violation.culprit == 3)
        #expect(violation.operations.map(\.index) == [0, 2, 3])
        #expect(violation.operations.map(\.role) == ["inDoubt", "inDoubt", "outputChecked"])
        #expect(violation.starts == [KVViolation.Start(value: "absent", applied: [])])
        #expect(result.report.explanation?.contains("still running when #3 returned (in doubt)") == true)
    }

    @Test func explanationStartsAfterAnInDoubtDeleteThatMustHaveTakenEffect() throws {
        let history = [
            event(1, .put(key: a, value: k("x")), .ok, 0, 10),
            event(2, .delete(key: a), nil, 20, nil),
            event(3, .get(key: a), .value(k("x")), 30, 40),  // The delete not yet applied.
            event(3, .get(key: a), .value(nil), 50, 60),  // Applied now...
            event(3, .get(key: a), .value(k("x")), 70, 80),  // ...and cannot be undone.
        ]
        let result = checkKVDetailed(history)
        #expect(result.report.decided && !result.report.isLinearizable)
        let violation = try #require(result.violation)
        #expect(violation.culprit == 4)
        #expect(violation.operationsBeforeStart == 3)
        #expect(violation.starts == [KVViolation.Start(value: "absent", applied: [1])])
        #expect(violation.operations.map(\.index) == [1, 4])
        #expect(violation.operations.map(\.role) == ["inDoubt", "outputChecked"])
        let explanation = try #require(result.report.explanation)
        #expect(explanation.contains("the key may be: absent with #1 applied"))
        #expect(explanation.contains("#1 client 2 delete(\"a\") -> no answer (in doubt) [20, -]"))
    }

    @Test func malformedEventIsAClearError() {
        let history = [KVEvent(client: 1, input: .get(key: a), output: .value(nil), invokeNanos: 10, returnNanos: nil)]
        let report = checkKV(history)
        #expect(!report.isLinearizable)
        #expect(!report.decided)
        #expect(report.explanation == "malformed history: operation #0: has an output but no return time")
    }

    @Test func eventWithoutOutputIsOpenWhateverItsReturnTime() {
        let history = [
            KVEvent(client: 1, input: .put(key: a, value: k("x")), output: nil, invokeNanos: 0, returnNanos: 10),
            event(2, .get(key: a), .value(nil), 20, 30),
        ]
        #expect(checkKV(history).isLinearizable)
    }

    @Test func emptyHistoryIsLinearizable() {
        let report = checkKV([])
        #expect(report.isLinearizable && report.decided && report.keysChecked == 0 && report.operations == 0)
    }
}
