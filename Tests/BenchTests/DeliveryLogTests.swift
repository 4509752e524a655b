import Testing
@testable import RingCastBenchKit

/// The delivery-log checks of ARCHITECTURE §3.3 on synthetic logs: agreement on the common prefix, per-origin
/// sequences without gaps or duplicates, sizes, senders and counts.
@Suite struct DeliveryLogTests {
    /// Round-robin deliveries from `origins`, `perOrigin` each: "1 <origin> <seq> 100 <hash>".
    static func lines(origins: [Int] = [0, 1, 2], perOrigin: Int = 4) -> [String] {
        (1...perOrigin).flatMap { seq in origins.map { "1 \($0) \(seq) 100 \(String(seq * 31 + $0, radix: 16))" } }
    }

    static func bytes(_ lines: [String]) -> [UInt8] { Array((lines.joined(separator: "\n") + "\n").utf8) }

    static let expectations = DeliveryLogCheck.Expectations(messageSizeBytes: 100, senderIDs: [0, 1, 2])

    @Test func identicalGapFreeLogsPass() {
        let log = Self.bytes(Self.lines())
        let verdict = DeliveryLogCheck.check(logs: [0: log, 1: log, 2: log], expectations: Self.expectations)
        #expect(verdict.ok, "\(verdict.problems)")
        #expect(verdict.commonPrefixLines == 12 && verdict.linesPerNode == [0: 12, 1: 12, 2: 12])
    }

    /// Uniform agreement allows a node to hold a prefix of the others' sequence.
    @Test func aShorterPrefixPasses() {
        let full = Self.lines()
        let verdict = DeliveryLogCheck.check(logs: [0: Self.bytes(full), 1: Self.bytes(Array(full.prefix(7)))],
                                             expectations: Self.expectations)
        #expect(verdict.ok && verdict.commonPrefixLines == 7)
    }

    @Test func aGapIsDetected() {
        var broken = Self.lines()
        broken.remove(at: 4)  // origin 1, seq 2: origin 1 then jumps from 1 to 3
        let verdict = DeliveryLogCheck.check(logs: [0: Self.bytes(broken)], expectations: Self.expectations)
        #expect(!verdict.ok)
        #expect(verdict.problems.contains { $0.contains("gap in origin 1: seq 3 after 1") })
    }

    @Test func aDuplicateIsDetected() {
        var broken = Self.lines()
        broken.insert(broken[3], at: 5)  // origin 0 seq 2 delivered twice
        let verdict = DeliveryLogCheck.check(logs: [0: Self.bytes(broken)], expectations: Self.expectations)
        #expect(!verdict.ok)
        #expect(verdict.problems.contains { $0.contains("duplicate or reordered origin 0 seq 2") })
    }

    @Test func aDifferentOrderIsDetected() {
        var swapped = Self.lines()
        swapped.swapAt(6, 7)  // node 1 delivers origin 1 before origin 0 in round 3: total order broken
        let verdict = DeliveryLogCheck.check(logs: [0: Self.bytes(Self.lines()), 1: Self.bytes(swapped)],
                                             expectations: Self.expectations)
        #expect(!verdict.ok)
        #expect(verdict.problems.contains { $0.contains("node 1 differs from node 0 at line 7") })
    }

    @Test func malformedLinesWrongSizeForeignOriginAndCountMismatchAreDetected() {
        var lines = Self.lines(perOrigin: 1)
        lines.append("1 0 2 99 abc")      // wrong length
        lines.append("1 7 1 100 abc")     // origin 7 is not a sender
        lines.append("1 1 two 100 abc")   // malformed
        let expectations = DeliveryLogCheck.Expectations(messageSizeBytes: 100, senderIDs: [0, 1, 2], totalDelivered: [0: 99])
        let verdict = DeliveryLogCheck.check(logs: [0: Self.bytes(lines)], expectations: expectations)
        #expect(verdict.problemCount == 4)
        #expect(verdict.problems.contains { $0.contains("length 99") })
        #expect(verdict.problems.contains { $0.contains("origin 7 is not a sender") })
        #expect(verdict.problems.contains { $0.contains("malformed") })
        #expect(verdict.problems.contains { $0.contains("total_delivered 99") })
    }

    @Test func problemsAreCappedButCounted() {
        let lines = (1...100).map { "1 0 \($0 * 2) 100 ff" }  // a gap at every line
        let verdict = DeliveryLogCheck.check(logs: [0: Self.bytes(lines)], expectations: Self.expectations)
        #expect(verdict.problemCount == 100 && verdict.problems.count == DeliveryLogCheck.problemsMax)
    }

    @Test func missingFilesAreReported() throws {
        let verdict = DeliveryLogCheck.check(directory: "/nonexistent-ringcast-bench", nodeIDs: [0, 1],
                                             expectations: Self.expectations)
        #expect(!verdict.ok && verdict.problems[0].contains("missing log file"))
    }
}
