import Foundation

/// How the nodes decide on a new view (ARCHITECTURE §2): `quorum` (primary partition: a view needs a majority of
/// the previous one, so a false suspicion can never split the group) or `perfect` (the thesis' assumption of a
/// perfect failure detector: tolerates n−1 crashes, but a partition splits the group).
public enum MembershipMode: String, Sendable, CaseIterable {
    case quorum, perfect
}

/// One fault injected during the measurement (ARCHITECTURE §3.1: `--kill`, `--partition`, `--join`).
public struct Fault: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        /// SIGKILL of the node's process: its sockets close, so its peers see the connections end.
        case kill
        /// The node's links are cut silently (no FIN, no RST): its peers only see it fall silent.
        case partition
        /// A new node process starts and joins the group.
        case join
    }

    public var kind: Kind
    /// The node it targets; for a join, the id the new node gets.
    public var nodeID: Int
    /// Seconds after the measurement window starts (warm-up excluded).
    public var atSeconds: Double

    public init(kind: Kind, nodeID: Int, atSeconds: Double) {
        self.kind = kind
        self.nodeID = nodeID
        self.atSeconds = atSeconds
    }

    /// The command-line form: "kill 2@1.5", "partition 3@2", "join 5@2" (the join flag itself takes "@2").
    public var description: String { "\(kind.rawValue) \(nodeID)@\(format(atSeconds))" }
}

/// Parses, validates and explains a run's fault schedule. Pure functions, tested without processes.
public enum FaultSchedule {
    /// Faults closer together than this are treated as one burst by ``warnings(_:nodeCount:mode:)``: a view
    /// change takes a few hundred milliseconds (suspect timeout plus agreement), so faults within a second of
    /// each other can land in the same view change.
    public static let burstSeconds = 1.0

    /// Parses the values of `--kill ID@SECONDS`, `--partition ID@SECONDS` and `--join @SECONDS`. Joiners get ids
    /// `nodeCount`, `nodeCount + 1`, … in the order they join (ties in the order given). The result is sorted by
    /// time; faults at the same time keep the order kill, partition, join, then the order given.
    ///
    /// - Throws: ``BenchError/invalidConfiguration(_:)`` naming the flag and the bad value.
    public static func parse(kill: [String], partition: [String], join: [String],
                             nodeCount: Int) throws(BenchError) -> [Fault] {
        var faults: [Fault] = []
        for (kind, values) in [(Fault.Kind.kill, kill), (.partition, partition)] {
            for value in values {
                let (id, seconds) = try parseTarget(value, flag: "--\(kind.rawValue)")
                faults.append(Fault(kind: kind, nodeID: id, atSeconds: seconds))
            }
        }
        var joinTimes: [Double] = []
        for value in join {
            let trimmed = value.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix("@") else {
                throw .invalidConfiguration("--join '\(value)': expected @SECONDS (e.g. @2); the new node gets the next id, \(nodeCount) for the first")
            }
            joinTimes.append(try parseSeconds(String(trimmed.dropFirst()), flag: "--join", value: value))
        }
        // Stable: equal times keep the order given.
        let ordered = joinTimes.enumerated().sorted { ($0.element, $0.offset) < ($1.element, $1.offset) }
        for (index, entry) in ordered.enumerated() {
            faults.append(Fault(kind: .join, nodeID: nodeCount + index, atSeconds: entry.element))
        }
        return sorted(faults)
    }

    /// `faults` by time; at equal times kill, partition, join; otherwise as given.
    public static func sorted(_ faults: [Fault]) -> [Fault] {
        let rank: [Fault.Kind: Int] = [.kill: 0, .partition: 1, .join: 2]
        return faults.enumerated().sorted {
            ($0.element.atSeconds, rank[$0.element.kind]!, $0.offset) < ($1.element.atSeconds, rank[$1.element.kind]!, $1.offset)
        }.map(\.element)
    }

    static func parseTarget(_ value: String, flag: String) throws(BenchError) -> (Int, Double) {
        let parts = value.trimmingCharacters(in: .whitespaces).split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, let id = Int(parts[0]), id >= 0 else {
            throw .invalidConfiguration("\(flag) '\(value)': expected ID@SECONDS, e.g. 2@1.5 (node 2, 1.5 s into the measurement)")
        }
        return (id, try parseSeconds(String(parts[1]), flag: flag, value: value))
    }

    static func parseSeconds(_ text: String, flag: String, value: String) throws(BenchError) -> Double {
        guard let seconds = Double(text), seconds.isFinite else {
            throw .invalidConfiguration("\(flag) '\(value)': '\(text)' is not a number of seconds")
        }
        return seconds
    }

    /// Checks a schedule against the run: ids exist (the initial nodes `0..<nodeCount`, joiners after their
    /// join), every time lies inside the measurement `[0, durationSeconds)`, no node is the target of two
    /// faults, joiners are numbered in order, and at least one node is neither killed nor partitioned.
    ///
    /// - Throws: ``BenchError/invalidConfiguration(_:)`` describing the first problem.
    public static func validate(_ faults: [Fault], nodeCount: Int, durationSeconds: Double) throws(BenchError) {
        func fail(_ message: String) throws(BenchError) -> Never { throw .invalidConfiguration(message) }
        let joins = faults.filter { $0.kind == .join }
        let total = nodeCount + joins.count
        guard total <= BenchConfiguration.nodeCountRange.upperBound else {
            try fail("--nodes \(nodeCount) plus \(joins.count) --join make \(total) nodes; at most \(BenchConfiguration.nodeCountRange.upperBound)")
        }
        for (index, join) in joins.sorted(by: { $0.nodeID < $1.nodeID }).enumerated() where join.nodeID != nodeCount + index {
            try fail("join of node \(join.nodeID): joiners are numbered \(nodeCount), \(nodeCount + 1), … in the order they join")
        }
        var targeted: [Int: Fault] = [:]
        for fault in faults {
            let flag = fault.kind == .join ? "--join @\(format(fault.atSeconds))" : "--\(fault.kind.rawValue) \(fault.nodeID)@\(format(fault.atSeconds))"
            guard fault.atSeconds >= 0, fault.atSeconds < durationSeconds else {
                try fail("\(flag): \(format(fault.atSeconds)) s is outside the measurement (0 ≤ SECONDS < --duration \(format(durationSeconds)))")
            }
            if fault.kind == .join { continue }
            if fault.nodeID >= total {
                let joiners = joins.isEmpty ? "" : ", joiners \(nodeCount)…\(total - 1)"
                try fail("\(flag): there is no node \(fault.nodeID) (ids 0…\(nodeCount - 1)\(joiners))")
            }
            if let join = joins.first(where: { $0.nodeID == fault.nodeID }), !(join.atSeconds < fault.atSeconds) {
                try fail("\(flag): node \(fault.nodeID) only joins at \(format(join.atSeconds)) s")
            }
            if let earlier = targeted[fault.nodeID] {
                try fail("\(flag): node \(fault.nodeID) is already the target of '\(earlier)'; one fault per node")
            }
            targeted[fault.nodeID] = fault
        }
        guard targeted.count < total else {
            try fail("every node would be killed or partitioned; at least one must survive to report")
        }
    }

    /// What the report should warn about, in words. In quorum mode: a burst of faults (``burstSeconds``) that
    /// leaves no strict majority of the view before it, because the group then blocks by design. In perfect
    /// mode: a partition, because it breaks the perfect failure detector the mode assumes.
    public static func warnings(_ faults: [Fault], nodeCount: Int, mode: MembershipMode) -> [String] {
        var warnings: [String] = []
        switch mode {
        case .quorum:
            var viewSize = nodeCount
            var index = 0
            let ordered = sorted(faults)
            while index < ordered.count {
                let start = ordered[index].atSeconds
                var burst: [Fault] = []
                while index < ordered.count, ordered[index].atSeconds - start < burstSeconds {
                    burst.append(ordered[index])
                    index += 1
                }
                let lost = burst.filter { $0.kind != .join }
                let remaining = viewSize - lost.count
                if !lost.isEmpty, remaining * 2 <= viewSize {
                    warnings.append("quorum mode: \(lost.map(\.description).joined(separator: ", ")) leave \(remaining) of \(viewSize) members, " +
                                    "no majority of the view before: the group is expected to block (survivors stop delivering)")
                }
                viewSize = remaining + burst.count - lost.count
            }
        case .perfect:
            for fault in faults where fault.kind == .partition {
                warnings.append("perfect mode: \(fault) breaks the perfect failure detector the mode assumes; the partitioned " +
                                "node may form a group of its own, so its log is checked only on its own (no duplicates, gaps, integrity)")
            }
        }
        return warnings
    }
}
