import Foundation
import Testing
@testable import RingCastBenchKit

/// The delivery-log checks of a run with faults (virtual synchrony, uniform agreement) on synthetic logs: a run
/// where node 2 of 5 is killed in view 1 and the others go on in view 2, and every way such logs can be wrong.
@Suite struct DeliveryLogFaultTests {
    typealias Role = DeliveryLogCheck.Role

    /// "<view> <origin> <seq> 100 <digest>", the digest a function of (origin, seq) as a real payload hash is.
    static func line(_ view: Int, _ origin: Int, _ seq: Int, digest: Int? = nil) -> String {
        "\(view) \(origin) \(seq) 100 \(String(digest ?? (origin * 1000 + seq), radix: 16))"
    }

    /// View 1: seq 1…3 from origins 0…4 round-robin (15 lines). View 2: seq 4…6 from 0, 1, 3, 4 (12 lines).
    static let view1 = (1...3).flatMap { seq in (0...4).map { line(1, $0, seq) } }
    static let view2 = (4...6).flatMap { seq in [0, 1, 3, 4].map { line(2, $0, seq) } }
    static let survivorLog = view1 + view2

    static func bytes(_ lines: [String], trailingNewline: Bool = true) -> [UInt8] {
        Array((lines.joined(separator: "\n") + (trailingNewline ? "\n" : "")).utf8)
    }

    static let roles: [Int: Role] = [0: .survivor, 1: .survivor, 2: .crashed, 3: .survivor, 4: .survivor]

    static func expectations(roles: [Int: Role] = roles, installed: [Int: [Int]] = [0: [1, 2], 1: [1, 2], 3: [1, 2], 4: [1, 2]],
                             initial: Set<Int> = [0, 1, 2, 3, 4]) -> DeliveryLogCheck.Expectations {
        DeliveryLogCheck.Expectations(messageSizeBytes: 100, senderIDs: [0, 1, 2, 3, 4], roles: roles,
                                      initialMembers: initial, installedViews: installed)
    }

    /// The survivors' logs as given (default: all identical), and node 2's: 10 lines of view 1 and a torn one.
    static func logs(_ overrides: [Int: [String]] = [:], crashed: [String]? = nil) -> [Int: [UInt8]] {
        var logs: [Int: [UInt8]] = [:]
        for id in [0, 1, 3, 4] { logs[id] = bytes(overrides[id] ?? survivorLog) }
        logs[2] = bytes(crashed ?? Array(view1.prefix(10)) + ["1 0 3 1"], trailingNewline: false)
        return logs
    }

    static func check(_ logs: [Int: [UInt8]], _ expectations: DeliveryLogCheck.Expectations = expectations()) -> DeliveryLogCheck.Verdict {
        DeliveryLogCheck.check(logs: logs, expectations: expectations)
    }

    @Test func figure2_7_killInViewOneAgreesAndTheTornLineOfTheKilledNodeIsTolerated() {
        let verdict = Self.check(Self.logs())
        #expect(verdict.ok, "\(verdict.problems)")
        #expect(verdict.commonPrefixLines == 27)
    }

    /// A survivor still draining its last view holds a prefix of it: not a violation.
    @Test func aSurvivorLaggingInTheLastViewPasses() {
        let verdict = Self.check(Self.logs([4: Self.view1 + Array(Self.view2.prefix(5))]))
        #expect(verdict.ok, "\(verdict.problems)")
        #expect(verdict.commonPrefixLines == 20)
    }

    @Test func aSurvivorThatMovedOnWithoutTheWholeOldViewIsCaught() {
        // View 1 ends with the killed node's last message, origin 2 seq 3; node 3 went on to view 2 without it
        // (its own log is gap-free, since origin 2 sends nothing later: only the views show the loss).
        let ordered = Self.view1.filter { $0 != Self.line(1, 2, 3) } + [Self.line(1, 2, 3)]
        let full = ordered + Self.view2
        let verdict = Self.check(Self.logs([0: full, 1: full, 3: ordered.dropLast() + Self.view2, 4: full]))
        #expect(!verdict.ok)
        #expect(verdict.problems == ["view 1: node 3 moved to a later view after 14 deliveries in view 1, but node 0 delivered 15 there (first missing: origin 2 seq 3)"])
    }

    /// Moved on by its views alone: no delivery in view 2 yet, but the node installed it.
    @Test func movingOnIsKnownFromInstalledViewsToo() {
        var short = Self.view1
        short.removeLast()
        let verdict = Self.check(Self.logs([3: short]))
        #expect(verdict.problems.contains { $0.hasPrefix("view 1: node 3 moved to a later view after 14 deliveries") })
    }

    @Test func aDifferentOrderInAViewIsCaught() {
        var swapped = Self.survivorLog
        swapped.swapAt(15, 16)  // view 2: origin 1 seq 4 before origin 0 seq 4
        let verdict = Self.check(Self.logs([3: swapped]))
        #expect(!verdict.ok)
        #expect(verdict.problems.first?.hasPrefix("view 2: node 3 differs from node 0 at delivery 1 of the view: origin 1 seq 4 (line 16)") == true,
                "\(verdict.problems)")
    }

    @Test func aDuplicateAcrossViewsIsCaught() {
        let verdict = Self.check(Self.logs([1: Self.view1 + [Self.line(2, 0, 3)] + Self.view2]))
        #expect(verdict.problems.first == "node 1 line 16: duplicate origin 0 seq 3")
    }

    @Test func aGapIsCaught() {
        var gap = Self.survivorLog
        gap.removeAll { $0 == Self.line(2, 1, 5) }
        let verdict = Self.check(Self.logs([0: gap]))
        #expect(verdict.problems.first == "node 0 line 24: gap in origin 1: seq 6 after 4")
    }

    @Test func anInitialMemberMustStartAtSeqOneButAJoinerStartsAtASuffix() {
        // Node 5 joined in view 2: its first deliveries from each origin are at seq 4, which is fine.
        var installed: [Int: [Int]] = [0: [1, 2], 1: [1, 2], 3: [1, 2], 4: [1, 2], 5: [2]]
        var roles = Self.roles
        roles[5] = .survivor
        var logs = Self.logs()
        logs[5] = Self.bytes(Self.view2)
        #expect(Self.check(logs, Self.expectations(roles: roles, installed: installed)).ok)
        // The same log from a node of the initial view misses seq 1…3 of every origin.
        installed[5] = [1, 2]
        let verdict = Self.check(logs, Self.expectations(roles: roles, installed: installed, initial: [0, 1, 2, 3, 4, 5]))
        #expect(verdict.problems.contains("node 5 line 1: gap in origin 0: the node was in the initial view but its first delivery from it is seq 4"))
        // And it was in view 1, where it delivered nothing although it moved on.
        #expect(verdict.problems.contains { $0.hasPrefix("view 1: node 5 moved to a later view after 0 deliveries") })
    }

    @Test func integrityAcrossNodesIsChecked() {
        var forged = Self.survivorLog
        forged[7] = Self.line(1, 2, 2, digest: 0xbad)
        let verdict = Self.check(Self.logs([4: forged]))
        #expect(!verdict.ok)
        #expect(verdict.problems.first == "integrity: origin 2 seq 2 has length 100 digest 0000000000000bad at node 4 line 8 but length 100 digest 00000000000007d2 at node 0 line 8")
    }

    /// Uniform agreement: what a killed node delivered, the survivors delivered.
    @Test func aKilledNodeDeliveringWhatNoSurvivorDidIsCaught() {
        let verdict = Self.check(Self.logs(crashed: Self.view1 + [Self.line(1, 2, 4)]))
        #expect(verdict.problems == ["node 2 (killed) line 16: delivered origin 2 seq 4, which no survivor delivered"])
    }

    /// An excluded node (quorum mode) holds only what the majority delivered, in the majority's order.
    @Test func anExcludedNodeOutOfOrderIsCaught() {
        var roles = Self.roles
        roles[2] = .minority
        var excluded = Array(Self.view1.prefix(8))
        excluded.swapAt(5, 6)
        let verdict = Self.check(Self.logs(crashed: excluded), Self.expectations(roles: roles))
        #expect(verdict.problems == ["node 2 (excluded) line 7: delivered origin 0 seq 2 after origin 1 seq 2 (line 6); node 0 delivered them the other way round"])
        // And a malformed last line is only forgiven to a killed node.
        let torn = Self.check(Self.logs(), Self.expectations(roles: roles))
        #expect(torn.problems == ["node 2 line 11: malformed '1 0 3 1'"])
    }

    /// Perfect mode, partitioned node: it may form its own view 2 and deliver its own messages there.
    @Test func anIsolatedNodeIsCheckedOnlyOnItsOwn() {
        var roles = Self.roles
        roles[2] = .isolated
        let own = Self.view1 + (4...6).map { Self.line(2, 2, $0) }
        #expect(Self.check(Self.logs(crashed: own), Self.expectations(roles: roles)).ok)
        let duplicate = Self.check(Self.logs(crashed: own + [Self.line(2, 2, 6)]), Self.expectations(roles: roles))
        #expect(duplicate.problems == ["node 2 line 19: duplicate origin 2 seq 6"])
    }

    @Test func viewsGoingBackwardsOrNeverInstalledAreCaught() {
        var backwards = Self.survivorLog
        backwards[20] = Self.line(1, 0, 5)
        let verdict = Self.check(Self.logs([1: backwards]))
        #expect(verdict.problems.contains("node 1 line 21: delivered in view 1 after a delivery in view 2"))
        let never = Self.check(Self.logs([0: Self.view1 + Self.view2.map { "3" + $0.dropFirst() }]))
        #expect(never.problems.first == "node 0 line 16: delivered in view 3, which the node never installed (its views: [1, 2])")
    }

    @Test func aKilledNodeWithoutALogIsNotAProblemButASurvivorWithoutOneIs() throws {
        let directory = NSTemporaryDirectory() + "ringcast-log-fault-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for id in [0, 1, 3] {
            try Data(Self.bytes(Self.survivorLog)).write(to: URL(fileURLWithPath: directory + "/node-\(id).log"))
        }
        let verdict = DeliveryLogCheck.check(directory: directory, nodeIDs: [0, 1, 2, 3, 4], expectations: Self.expectations())
        #expect(verdict.problems.count == 1)
        #expect(verdict.problems[0].contains("missing log file(s): \(directory)/node-4.log"))
        #expect(!verdict.problems[0].contains("node-2.log"))
    }
}
