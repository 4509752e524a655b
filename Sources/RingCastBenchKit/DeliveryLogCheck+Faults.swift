import Foundation

/// The delivery-log checks of a run with faults: the properties of uniform total order broadcast under view
/// changes (thesis §2.2.1; virtual synchrony), checked from outside.
///
/// - Every log on its own: no message twice, per origin `origin_seq` without gaps from the first one delivered
///   (1 for a node of the initial view; a joiner starts at a suffix), view ids never decreasing and only those
///   the node installed, lengths of the configured size, origins among the broadcasters.
/// - Integrity across logs: one (origin, seq) has one length and one payload digest everywhere.
/// - Survivors, per view: their sequences in the view are prefixes of one another, and those that moved on to a
///   later view delivered the same, complete sequence in it (a survivor still in the view may lag: undrained).
/// - Minority (excluded, or partitioned in quorum mode) and crashed nodes: uniform agreement and order, i.e.
///   every message they delivered was delivered by a survivor, and in the survivors' relative order. A crashed
///   node's last line may be torn by the kill.
/// - Isolated nodes (partitioned in perfect mode): only the checks of a log on its own and integrity.
extension DeliveryLogCheck {
    struct ParsedLog {
        var entries: [Entry] = []
        /// 1-based line number of each entry, for messages.
        var lineNumbers: [Int] = []
    }

    /// Runs every check above; returns the common prefix, in lines, of the survivors of the initial view.
    static func checkWithFaults(logs: [Int: [UInt8]], lines: [Int: [Range<Int>]], roles: [Int: Role],
                                expectations: Expectations, problems: inout Problems) -> Int {
        var parsed: [Int: ParsedLog] = [:]
        for (id, bytes) in logs.sorted(by: { $0.key < $1.key }) {
            let role = roles[id] ?? .survivor
            parsed[id] = parse(id: id, bytes: bytes, lines: lines[id]!, role: role, problems: &problems)
            if let expected = expectations.totalDelivered[id], expected != lines[id]!.count {
                problems.add("node \(id): log has \(lines[id]!.count) lines but the node reported total_delivered \(expected)")
            }
            checkAlone(id: id, log: parsed[id]!, expectations: expectations, problems: &problems)
        }
        checkIntegrity(parsed, problems: &problems)
        let survivors = parsed.keys.filter { (roles[$0] ?? .survivor) == .survivor }.sorted()
        checkViews(parsed, survivors: survivors, installedViews: expectations.installedViews, problems: &problems)
        let others = parsed.keys.filter { [.minority, .crashed].contains(roles[$0] ?? .survivor) }.sorted()
        checkUniform(parsed, survivors: survivors, others: others, roles: roles, problems: &problems)
        let initial = survivors.filter { expectations.initialMembers.contains($0) }
        return commonPrefix(initial.map { parsed[$0]!.entries })
    }

    /// Parses a log; a malformed line is a problem, except the last line of a crashed node (torn by SIGKILL).
    static func parse(id: Int, bytes: [UInt8], lines: [Range<Int>], role: Role, problems: inout Problems) -> ParsedLog {
        var log = ParsedLog()
        for (number, range) in lines.enumerated() {
            guard let entry = parse(bytes[range]) else {
                let tornByKill = role == .crashed && number == lines.count - 1
                if !tornByKill { problems.add("node \(id) line \(number + 1): malformed '\(text(bytes[range]))'") }
                continue
            }
            log.entries.append(entry)
            log.lineNumbers.append(number + 1)
        }
        return log
    }

    static func checkAlone(id: Int, log: ParsedLog, expectations: Expectations, problems: inout Problems) {
        var seen: Set<MessageKey> = []
        var lastSeq: [Int: UInt64] = [:]
        var lastView: UInt64 = 0
        let installed = expectations.installedViews[id].map { Set($0.map(UInt64.init)) }
        let startsAtOne = expectations.initialMembers.contains(id)
        for (entry, line) in zip(log.entries, log.lineNumbers) {
            let at = "node \(id) line \(line)"
            if let senders = expectations.senderIDs, !senders.contains(entry.origin) {
                problems.add("\(at): origin \(entry.origin) is not a sender")
            }
            if let size = expectations.messageSizeBytes, entry.length != size {
                problems.add("\(at): length \(entry.length), expected \(size)")
            }
            if entry.viewID < lastView {
                problems.add("\(at): delivered in view \(entry.viewID) after a delivery in view \(lastView)")
            }
            if let installed, !installed.isEmpty, !installed.contains(entry.viewID) {
                problems.add("\(at): delivered in view \(entry.viewID), which the node never installed (its views: \(installed.sorted()))")
            }
            lastView = max(lastView, entry.viewID)
            guard seen.insert(entry.key).inserted else {
                problems.add("\(at): duplicate \(entry.key)")
                continue
            }
            if let previous = lastSeq[entry.origin] {
                if entry.originSeq < previous {
                    problems.add("\(at): origin \(entry.origin) seq \(entry.originSeq) after seq \(previous) (reordered)")
                } else if entry.originSeq != previous + 1 {
                    problems.add("\(at): gap in origin \(entry.origin): seq \(entry.originSeq) after \(previous)")
                }
            } else if startsAtOne, entry.originSeq != 1 {
                problems.add("\(at): gap in origin \(entry.origin): the node was in the initial view but its first delivery from it is seq \(entry.originSeq)")
            }
            lastSeq[entry.origin] = max(lastSeq[entry.origin] ?? 0, entry.originSeq)
        }
    }

    /// One (origin, seq) is one message: the same length and digest in every log.
    static func checkIntegrity(_ parsed: [Int: ParsedLog], problems: inout Problems) {
        var first: [MessageKey: (length: Int, digest: UInt64, node: Int, line: Int)] = [:]
        for (id, log) in parsed.sorted(by: { $0.key < $1.key }) {
            for (entry, line) in zip(log.entries, log.lineNumbers) {
                guard let known = first[entry.key] else {
                    first[entry.key] = (entry.length, entry.digest, id, line)
                    continue
                }
                if known.length != entry.length || known.digest != entry.digest {
                    problems.add("integrity: \(entry.key) has length \(entry.length) digest \(hex(entry.digest)) at node \(id) line \(line) " +
                                 "but length \(known.length) digest \(hex(known.digest)) at node \(known.node) line \(known.line)")
                }
            }
        }
    }

    /// Per view: survivors' sequences are prefixes of the longest one, and those that moved on hold all of it.
    static func checkViews(_ parsed: [Int: ParsedLog], survivors: [Int], installedViews: [Int: [Int]],
                           problems: inout Problems) {
        var views: Set<UInt64> = []
        for id in survivors {
            views.formUnion(parsed[id]!.entries.map(\.viewID))
            views.formUnion((installedViews[id] ?? []).map(UInt64.init))
        }
        for view in views.sorted() {
            var sequences: [(id: Int, entries: [Entry], lines: [Int], movedOn: Bool)] = []
            for id in survivors {
                let log = parsed[id]!
                let installed = (installedViews[id] ?? []).map(UInt64.init)
                let indices = log.entries.indices.filter { log.entries[$0].viewID == view }
                guard !indices.isEmpty || installed.contains(view) else { continue }
                let movedOn = log.entries.contains { $0.viewID > view } || installed.contains { $0 > view }
                sequences.append((id, indices.map { log.entries[$0] }, indices.map { log.lineNumbers[$0] }, movedOn))
            }
            guard let reference = sequences.max(by: { ($0.entries.count, -$0.id) < ($1.entries.count, -$1.id) }) else { continue }
            for other in sequences where other.id != reference.id {
                let shared = min(other.entries.count, reference.entries.count)
                if let index = (0..<shared).first(where: { other.entries[$0].key != reference.entries[$0].key }) {
                    problems.add("view \(view): node \(other.id) differs from node \(reference.id) at delivery \(index + 1) of the view: " +
                                 "\(other.entries[index].key) (line \(other.lines[index])) vs \(reference.entries[index].key) (line \(reference.lines[index]))")
                } else if other.movedOn, other.entries.count < reference.entries.count {
                    problems.add("view \(view): node \(other.id) moved to a later view after \(other.entries.count) deliveries in view \(view), " +
                                 "but node \(reference.id) delivered \(reference.entries.count) there (first missing: \(reference.entries[other.entries.count].key))")
                }
            }
        }
    }

    /// Minority and crashed nodes delivered only what survivors delivered, in the survivors' relative order.
    static func checkUniform(_ parsed: [Int: ParsedLog], survivors: [Int], others: [Int], roles: [Int: Role],
                             problems: inout Problems) {
        guard !others.isEmpty else { return }
        var delivered: Set<MessageKey> = []
        for id in survivors { delivered.formUnion(parsed[id]!.entries.map(\.key)) }
        // Ranks from the survivor that delivered most: its order is the order (survivors agree, checked above).
        let reference = survivors.max { (parsed[$0]!.entries.count, -$0) < (parsed[$1]!.entries.count, -$1) }
        var rank: [MessageKey: Int] = [:]
        if let reference { for (index, entry) in parsed[reference]!.entries.enumerated() { rank[entry.key] = index } }
        for id in others {
            let log = parsed[id]!
            let what = roles[id] == .crashed ? "killed" : "excluded"
            var previous: (key: MessageKey, rank: Int, line: Int)?
            for (entry, line) in zip(log.entries, log.lineNumbers) {
                guard delivered.contains(entry.key) else {
                    problems.add("node \(id) (\(what)) line \(line): delivered \(entry.key), which no survivor delivered")
                    continue
                }
                guard let position = rank[entry.key] else { continue }
                if let before = previous, position < before.rank {
                    problems.add("node \(id) (\(what)) line \(line): delivered \(entry.key) after \(before.key) (line \(before.line)); " +
                                 "node \(reference!) delivered them the other way round")
                }
                previous = (entry.key, position, line)
            }
        }
    }

    /// How many leading entries (view and message) every log shares.
    static func commonPrefix(_ logs: [[Entry]]) -> Int {
        guard let first = logs.first else { return 0 }
        var count = logs.map(\.count).min() ?? 0
        for other in logs.dropFirst() {
            if let index = (0..<count).first(where: { first[$0].viewID != other[$0].viewID || first[$0].key != other[$0].key }) {
                count = index
            }
        }
        return count
    }

    static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, 16 - digits.count)) + digits
    }
}
