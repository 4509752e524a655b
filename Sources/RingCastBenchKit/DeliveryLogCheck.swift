import Foundation

/// Checks the delivery logs of ARCHITECTURE §3.3 from outside the processes:
/// `<view_id> <origin_id> <origin_seq> <length> <fnv1a64_hex_of_payload>` per line, in delivery order.
///
/// - Total order and agreement (§2.2.1): every node's log is identical to every other's over their common
///   prefix (uniform agreement lets a node that stopped early hold a prefix).
/// - Integrity and no duplication: per origin, `origin_seq` runs 1, 2, 3, … without a gap or a repeat,
///   every length is the configured message size, every origin is a configured sender.
/// - Each log holds as many lines as its node said it delivered (`total_delivered`).
///
/// With faults (``Expectations/roles`` set) the checks are those of virtual synchrony instead, per view: see
/// ``checkWithFaults(logs:lines:roles:expectations:problems:)``.
public enum DeliveryLogCheck {
    public struct Verdict: Sendable, Equatable {
        public var ok: Bool { problems.isEmpty }
        public var linesPerNode: [Int: Int]
        public var commonPrefixLines: Int
        /// First problems found (at most ``problemsMax`` listed) and how many there were in all.
        public var problems: [String]
        public var problemCount: Int
    }

    public static let problemsMax = 20

    public struct Expectations: Sendable {
        public var messageSizeBytes: Int?
        public var senderIDs: [Int]?
        /// Node id → the node's `total_delivered`.
        public var totalDelivered: [Int: Int]
        /// Node id → its part in a run with faults; nil for a run without: every log is then a prefix of the others.
        public var roles: [Int: Role]?
        /// Nodes of the initial view: every origin's sequence in their logs starts at 1 (a joiner's at any seq).
        public var initialMembers: Set<Int>
        /// Node id → the ids of the views it installed (its JSON `views`), which tell who was in a view and who
        /// moved past it even without a delivery there.
        public var installedViews: [Int: [Int]]

        public init(messageSizeBytes: Int? = nil, senderIDs: [Int]? = nil, totalDelivered: [Int: Int] = [:],
                    roles: [Int: Role]? = nil, initialMembers: Set<Int> = [], installedViews: [Int: [Int]] = [:]) {
            self.messageSizeBytes = messageSizeBytes
            self.senderIDs = senderIDs
            self.totalDelivered = totalDelivered
            self.roles = roles
            self.initialMembers = initialMembers
            self.installedViews = installedViews
        }
    }

    /// What a node's log is held to in a run with faults.
    public enum Role: String, Sendable {
        /// Not killed, partitioned or excluded: agrees with the other survivors view by view.
        case survivor
        /// Excluded, or partitioned in quorum mode: may only hold messages the survivors delivered, in their order.
        case minority
        /// Killed: like a minority node (uniform agreement), and its last line may be torn.
        case crashed
        /// Partitioned in perfect mode, which may split the group: checked only on its own.
        case isolated
    }

    /// Reads `directory/node-<id>.log` for every id and checks them.
    public static func check(directory: String, nodeIDs: [Int], expectations: Expectations) -> Verdict {
        var logs: [Int: [UInt8]] = [:]
        var missing: [String] = []
        for id in nodeIDs {
            let path = (directory as NSString).appendingPathComponent("node-\(id).log")
            if let data = FileManager.default.contents(atPath: path) {
                logs[id] = [UInt8](data)
            } else if expectations.roles?[id] != .crashed {  // killed before it opened its log: nothing to check
                missing.append(path)
            }
        }
        var verdict = check(logs: logs, expectations: expectations)
        if !missing.isEmpty {
            verdict.problems.insert("missing log file(s): " + missing.joined(separator: ", "), at: 0)
            verdict.problemCount += 1
        }
        return verdict
    }

    /// Checks logs given as bytes (node id → file contents).
    public static func check(logs: [Int: [UInt8]], expectations: Expectations) -> Verdict {
        var problems = Problems()
        var lines: [Int: [Range<Int>]] = [:]
        for (id, bytes) in logs { lines[id] = lineRanges(bytes) }
        if let roles = expectations.roles {
            let common = checkWithFaults(logs: logs, lines: lines, roles: roles, expectations: expectations, problems: &problems)
            return Verdict(linesPerNode: lines.mapValues(\.count), commonPrefixLines: common,
                           problems: problems.listed, problemCount: problems.count)
        }
        for (id, bytes) in logs.sorted(by: { $0.key < $1.key }) {
            checkOne(id: id, bytes: bytes, lines: lines[id]!, expectations: expectations, problems: &problems)
        }
        let common = compareCommonPrefix(logs: logs, lines: lines, problems: &problems)
        return Verdict(linesPerNode: lines.mapValues(\.count), commonPrefixLines: common,
                       problems: problems.listed, problemCount: problems.count)
    }

    struct Problems {
        var listed: [String] = []
        var count = 0
        mutating func add(_ problem: @autoclosure () -> String) {
            count += 1
            if listed.count < problemsMax { listed.append(problem()) }
        }
    }

    /// Line ranges without the newline; a final line without a newline counts (a node killed mid-write
    /// leaves one, and the parse check then reports it if it is torn).
    static func lineRanges(_ bytes: [UInt8]) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        ranges.reserveCapacity(bytes.count / 40)
        var start = 0
        for index in bytes.indices where bytes[index] == UInt8(ascii: "\n") {
            ranges.append(start..<index)
            start = index + 1
        }
        if start < bytes.count { ranges.append(start..<bytes.count) }
        return ranges
    }

    struct Entry: Equatable {
        var viewID: UInt64
        var origin: Int
        var originSeq: UInt64
        var length: Int
        /// FNV-1a 64 of the payload, as logged (hex, any case).
        var digest: UInt64 = 0

        var key: MessageKey { MessageKey(origin: origin, originSeq: originSeq) }
    }

    /// A message's identity: its origin and the origin's sequence number (unique across views, §3.3).
    struct MessageKey: Hashable, CustomStringConvertible {
        var origin: Int
        var originSeq: UInt64
        var description: String { "origin \(origin) seq \(originSeq)" }
    }

    /// Parses one line; nil if it is not five space-separated fields of the right kinds.
    static func parse(_ line: ArraySlice<UInt8>) -> Entry? {
        var fields: [ArraySlice<UInt8>] = []
        fields.reserveCapacity(5)
        var start = line.startIndex
        for index in line.indices where line[index] == UInt8(ascii: " ") {
            fields.append(line[start..<index])
            start = index + 1
        }
        fields.append(line[start..<line.endIndex])
        guard fields.count == 5,
              let view = decimal(fields[0]), let origin = decimal(fields[1]), let seq = decimal(fields[2]),
              let length = decimal(fields[3]), isHex(fields[4]), origin <= UInt64(Int.max), length <= UInt64(Int.max)
        else { return nil }
        return Entry(viewID: view, origin: Int(origin), originSeq: seq, length: Int(length),
                     digest: UInt64(String(decoding: fields[4], as: UTF8.self), radix: 16) ?? 0)
    }

    static func decimal(_ field: ArraySlice<UInt8>) -> UInt64? {
        guard !field.isEmpty, field.count <= 19 else { return nil }
        var value: UInt64 = 0
        for byte in field {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + UInt64(byte - UInt8(ascii: "0"))
        }
        return value
    }

    static func isHex(_ field: ArraySlice<UInt8>) -> Bool {
        !field.isEmpty && field.count <= 16 && field.allSatisfy {
            ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "f")) ||
                ($0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "F"))
        }
    }

    static func text(_ line: ArraySlice<UInt8>) -> String { String(decoding: line.prefix(120), as: UTF8.self) }

    static func checkOne(id: Int, bytes: [UInt8], lines: [Range<Int>], expectations: Expectations,
                         problems: inout Problems) {
        if let expected = expectations.totalDelivered[id], expected != lines.count {
            problems.add("node \(id): log has \(lines.count) lines but the node reported total_delivered \(expected)")
        }
        var lastSeq: [Int: UInt64] = [:]
        for (number, range) in lines.enumerated() {
            let line = bytes[range]
            guard let entry = parse(line) else {
                problems.add("node \(id) line \(number + 1): malformed '\(text(line))'")
                continue
            }
            if let senders = expectations.senderIDs, !senders.contains(entry.origin) {
                problems.add("node \(id) line \(number + 1): origin \(entry.origin) is not a sender")
            }
            if let size = expectations.messageSizeBytes, entry.length != size {
                problems.add("node \(id) line \(number + 1): length \(entry.length), expected \(size)")
            }
            let previous = lastSeq[entry.origin] ?? 0
            if entry.originSeq <= previous {
                problems.add("node \(id) line \(number + 1): duplicate or reordered origin \(entry.origin) seq \(entry.originSeq) (after \(previous))")
            } else if entry.originSeq != previous + 1 {
                problems.add("node \(id) line \(number + 1): gap in origin \(entry.origin): seq \(entry.originSeq) after \(previous)")
            }
            lastSeq[entry.origin] = max(previous, entry.originSeq)
        }
    }

    /// Compares every log with the lowest-numbered one over their common prefix; returns its length in lines.
    static func compareCommonPrefix(logs: [Int: [UInt8]], lines: [Int: [Range<Int>]], problems: inout Problems) -> Int {
        let ids = logs.keys.sorted()
        guard let reference = ids.first else { return 0 }
        let common = ids.map { lines[$0]!.count }.min() ?? 0
        let referenceBytes = logs[reference]!
        let referenceLines = lines[reference]!
        for id in ids.dropFirst() {
            let bytes = logs[id]!
            let own = lines[id]!
            for index in 0..<common where referenceBytes[referenceLines[index]] != bytes[own[index]] {
                problems.add("node \(id) differs from node \(reference) at line \(index + 1): '\(text(bytes[own[index]]))' vs '\(text(referenceBytes[referenceLines[index]]))'")
                break
            }
        }
        return common
    }
}
