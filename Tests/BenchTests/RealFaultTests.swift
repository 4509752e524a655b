import RingCastJSON
import Foundation
import RingCastBenchKit
import Testing

/// Fault scenarios with real `ringcast-node` processes on loopback (ARCHITECTURE §4, level 4 without the
/// namespaces): kill -9, a silent partition (SIGSTOP), a join at load. The delivery logs are checked from
/// outside by ringcast-bench (agreement, order, integrity, gap-free per origin among survivors).
@Suite("Real processes: crashes, partitions and joins on loopback (§2.4.3)", .serialized)
struct RealFaultTests {
    static let bench = SignalTests.benchBinary

    struct Run {
        let exitCode: Int32
        let json: JSONValue
        let stderr: String
    }

    /// One bounded ringcast-bench run; its JSON result.
    static func run(_ arguments: [String]) throws -> Run {
        let directory = NSTemporaryDirectory() + "ringcast-realfault-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let base = ["--nodes", "5", "--size", "2000", "--warmup", "0.5", "--duration", "3", "--cooldown", "3",
                    "--raw-link-duration", "0", "--json", "--delivery-log", directory + "/logs"]
        let process = Process()
        process.executableURL = URL(fileURLWithPath: bench!)
        process.arguments = base + arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: stdout, as: UTF8.self)
        let json = (try? JSONValue.parse(text)) ?? .null
        return Run(exitCode: process.terminationStatus, json: json, stderr: String(decoding: stderr, as: UTF8.self))
    }

    static func members(_ change: JSONValue) -> [Int] {
        guard case let .array(items)? = change["members"] else { return [] }
        return items.compactMap { if case let .integer(value) = $0 { Int(value) } else { nil } }
    }

    /// The view changes during the measurement (at the end, nodes stop at different times: more changes).
    static func changes(_ run: Run) -> [JSONValue] {
        guard case let .array(items)? = run.json["view_changes"] else { return [] }
        return items.filter { $0["during_measurement"] == .bool(true) }
    }

    static func expectAgreed(_ run: Run, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(run.exitCode == 0, "exit \(run.exitCode): \(run.stderr.suffix(2000))", sourceLocation: sourceLocation)
        #expect(run.json["order_agreed"] == .bool(true), "\(run.stderr.suffix(2000))", sourceLocation: sourceLocation)
        #expect(run.json["views_agreed"] == .bool(true), sourceLocation: sourceLocation)
    }

    @Test(.enabled(if: bench != nil, "ringcast-bench is not built beside the tests"))
    func figure2_7_killMinusNineOfOneOfFive() throws {
        let run = try Self.run(["--kill", "2@1"])
        Self.expectAgreed(run)
        let change = try #require(Self.changes(run).first, "no view change after the kill")
        #expect(Self.members(change) == [0, 1, 3, 4])
    }

    @Test(.enabled(if: bench != nil, "ringcast-bench is not built beside the tests"))
    func killOfTwoOfFiveKeepsAMajority() throws {
        let run = try Self.run(["--kill", "1@1", "--kill", "3@1"])
        Self.expectAgreed(run)
        let last = try #require(Self.changes(run).last)
        #expect(Self.members(last) == [0, 2, 4])
    }

    @Test(.enabled(if: bench != nil, "ringcast-bench is not built beside the tests"))
    func aSilentPartitionIsExcludedAndDeliversOnlyWhatTheMajorityDid() throws {
        let run = try Self.run(["--partition", "2@1"])
        Self.expectAgreed(run) // the bench checks the excluded node's log against the majority's
        let change = try #require(Self.changes(run).first)
        #expect(Self.members(change) == [0, 1, 3, 4])
        #expect(change["cause"] == .string("silent 2"))
    }

    @Test(.enabled(if: bench != nil, "ringcast-bench is not built beside the tests"))
    func aJoinAtLoadDeliversAGapFreeSuffix() throws {
        let run = try Self.run(["--join", "@1"])
        Self.expectAgreed(run) // gap-free suffix per origin and integrity are checked on the joiner's log
        let change = try #require(Self.changes(run).first)
        #expect(Self.members(change) == [0, 1, 2, 3, 4, 5])
    }

    @Test(.enabled(if: bench != nil, "ringcast-bench is not built beside the tests"))
    func perfectModeGoesDownToTwoSurvivorsOfFive() throws {
        let run = try Self.run(["--mode", "perfect", "--kill", "1@1", "--kill", "2@1", "--kill", "3@1"])
        Self.expectAgreed(run)
        let last = try #require(Self.changes(run).last)
        #expect(Self.members(last) == [0, 4])
    }
}
