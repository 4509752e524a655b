import RingCastChain

/// The properties the Chain simulator checks after each run (spec §2.2, §21).
public enum ChainProperty: String, Sendable, Codable, CaseIterable {
    /// No request twice in a correct replica's history; every logged request was invoked by its client (Validity).
    case validity
    /// Any two commit histories are prefix-related (Commit Order).
    case commitOrder = "commit_order"
    /// A correct client committed a reply (or history) that no correct replica computed.
    case replyNotComputed = "reply_not_computed"
    /// Every commit history is a prefix of every abort history of its instance and later ones (Abort Order).
    case abortOrder = "abort_order"
    /// Every init history a correct replica installed is P3 of a valid proof, and the longest common prefix of those
    /// of one instance is prefix-related to every commit and abort history of that instance (Init Order).
    case initOrder = "init_order"
    /// No failure and no Byzantine party (or only a crash, across switches), yet a client did not commit all its
    /// requests (Progress, spec §1; §21.10).
    case progress
    /// A correct client neither committed all its requests nor aborted (Termination).
    case termination
}

public struct ChainViolation: Sendable, Codable, Equatable, CustomStringConvertible {
    public var property: ChainProperty
    public var detail: String
    public var description: String { "\(property.rawValue): \(detail)" }
}

extension ChainSimWorld {
    var correctNodes: [ChainSimNode] { nodes.filter { !isByzantine($0.position) } }

    func check() -> [ChainViolation] {
        var violations: [ChainViolation] = []
        violations += checkValidity()
        violations += checkCommits()
        violations += checkAbortOrder()
        violations += checkInitOrder()
        violations += checkLiveness()
        return violations
    }

    /// H at `target` on the history whose H at `sn` is `digest`, walking back through what correct replicas executed
    /// (and the init and abort histories in `extra`); nil when the walk leaves what is known.
    func ancestor(_ digest: ChainDigest, at sn: UInt64, target: UInt64, extra: [ChainDigest: LedgerEntry] = [:]) -> ChainDigest? {
        var current = digest, position = sn
        while position > target {
            guard let entry = ledger[current] ?? extra[current] else { return nil }
            current = entry.parent
            position -= 1
        }
        return position == target ? current : nil
    }

    /// Whether the histories ending at (a, aSN) and (b, bSN) are prefix-related; nil when unknown.
    func prefixRelated(_ a: ChainDigest, _ aSN: UInt64, _ b: ChainDigest, _ bSN: UInt64,
                       extra: [ChainDigest: LedgerEntry] = [:]) -> Bool? {
        if aSN <= bSN { return ancestor(b, at: bSN, target: aSN, extra: extra).map { $0 == a } }
        return ancestor(a, at: aSN, target: bSN, extra: extra).map { $0 == b }
    }

    /// An init or abort history's entries as ledger entries, and its end (sn, H).
    func chain(_ history: ChainInitHistory) -> (entries: [ChainDigest: LedgerEntry], endSN: UInt64, end: ChainDigest) {
        var entries: [ChainDigest: LedgerEntry] = [:]
        var h = history.baseDigest
        for e in history.entries {
            let next = h.extended(sn: e.sn, request: e.requestDigest, keyRing: digestRing)
            entries[next] = LedgerEntry(sn: e.sn, parent: h, request: e.requestDigest, client: e.client, timestamp: e.timestamp)
            h = next
        }
        return (entries, history.base * chk + UInt64(history.entries.count), h)
    }

    func checkValidity() -> [ChainViolation] {
        if let mismatch = digestMismatches.first { return [ChainViolation(property: .validity, detail: mismatch)] }
        for node in correctNodes {
            var seen = Set<Key>()
            for (index, e) in node.log.enumerated() {
                let key = Key(client: e.client, timestamp: e.timestamp)
                if e.sn != UInt64(index + 1) {
                    return [ChainViolation(property: .validity, detail: "r\(node.position) executed sn \(e.sn) at place \(index + 1)")]
                }
                if !seen.insert(key).inserted {
                    return [ChainViolation(property: .validity, detail: "r\(node.position) logged c\(e.client) t\(e.timestamp) twice")]
                }
                if invoked[key] != e.op {
                    return [ChainViolation(property: .validity, detail: "r\(node.position) logged c\(e.client) t\(e.timestamp) at sn \(e.sn), never invoked with that content")]
                }
            }
        }
        return []
    }

    func checkCommits() -> [ChainViolation] {
        for commit in commits {
            guard computed.contains(ReplyKey(sn: commit.sn, history: commit.history, reply: commit.reply)),
                  let entry = ledger[commit.history] else {
                return [ChainViolation(property: .replyNotComputed,
                                       detail: "c\(commit.client) committed t\(commit.timestamp) at sn \(commit.sn) with a reply/history no correct replica computed")]
            }
            if entry.client != UInt32(commit.client) || entry.timestamp != commit.timestamp {
                return [ChainViolation(property: .replyNotComputed,
                                       detail: "c\(commit.client) committed t\(commit.timestamp) on the reply to another request (sn \(commit.sn))")]
            }
        }
        // Commit Order across instances too: H is chained over absolute positions (D2, D9).
        let sorted = commits.sorted { $0.sn < $1.sn }
        for (a, b) in zip(sorted, sorted.dropFirst()) where prefixRelated(a.history, a.sn, b.history, b.sn) == false {
            return [ChainViolation(property: .commitOrder,
                                   detail: "commit c\(a.client) t\(a.timestamp) at sn \(a.sn) (i\(a.instance)) is not a prefix of commit c\(b.client) t\(b.timestamp) at sn \(b.sn) (i\(b.instance))")]
        }
        return []
    }

    /// Abort Order: each commit of instance ≤ i is a prefix of each abort history of i (and, through init histories,
    /// of every later one). P3 is also recomputed with the independent Swift extraction.
    func checkAbortOrder() -> [ChainViolation] {
        for client in clients where !client.byzantine {
            for original in client.abortHistories {
                let aborted = original.instance - 1
                let swift = ChainAbortHistory.extract(original.proof, f: f, checkpointInterval: chk)
                if swift.base != original.base || swift.baseDigest != original.baseDigest
                    || swift.entries.map(\.requestDigest) != original.entries.map(\.requestDigest) {
                    return [ChainViolation(property: .abortOrder, detail: "c\(client.id): the C and Swift P3 disagree on i\(aborted)'s ABORTs")]
                }
                var ah = original
                if plantedBug == .abortHistorySkip && !ah.entries.isEmpty { ah.entries.removeFirst() }
                let (extra, endSN, end) = chain(ah)
                for commit in commits where commit.instance <= aborted {
                    let related = commit.sn <= endSN ? ancestor(end, at: endSN, target: commit.sn, extra: extra).map { $0 == commit.history } : false
                    if related == false {
                        return [ChainViolation(property: .abortOrder,
                                               detail: "commit c\(commit.client) t\(commit.timestamp) at sn \(commit.sn) (i\(commit.instance)) is not a prefix of c\(client.id)'s abort history of i\(aborted) (checkpoint \(ah.base), \(ah.entries.count) entries)")]
                    }
                }
            }
        }
        return []
    }

    /// Init Order (§2.2.4) and init validity: what correct replicas installed.
    func checkInitOrder() -> [ChainViolation] {
        var byInstance: [UInt64: [ChainInitHistory]] = [:]
        for node in correctNodes {
            for (instance, ih) in node.installed {
                let swift = ChainAbortHistory.extract(ih.proof, f: f, checkpointInterval: chk)
                let signed = ih.proof.allSatisfy { $0.verify(with: digestRing) && $0.nextInstance == instance }
                    && Set(ih.proof.map(\.replica)).count == 2 * f + 1
                if !signed || swift.base != ih.base || swift.baseDigest != ih.baseDigest
                    || swift.entries.map(\.requestDigest) != ih.entries.map(\.requestDigest) {
                    return [ChainViolation(property: .initOrder, detail: "r\(node.position) installed an init history of i\(instance) that is not P3 of a valid proof")]
                }
                byInstance[instance, default: []].append(ih)
            }
        }
        for (instance, histories) in byInstance {
            var extra: [ChainDigest: LedgerEntry] = [:]
            var ends: [(UInt64, ChainDigest)] = []
            for ih in histories {
                let (entries, endSN, end) = chain(ih)
                extra.merge(entries) { a, _ in a }
                ends.append((endSN, end))
            }
            // The longest common prefix: the highest position where every installed history has the same H.
            var s = ends.map(\.0).min() ?? 0
            var common: ChainDigest?
            while true {
                let at = ends.map { ancestor($0.1, at: $0.0, target: s, extra: extra) }
                if let first = at.first ?? nil, at.allSatisfy({ $0 == first }) { common = first; break }
                if s == 0 { break }
                s -= 1
            }
            guard let common else { continue } // the walk left what is known: nothing to compare against
            for commit in commits where commit.instance == instance {
                if prefixRelated(common, s, commit.history, commit.sn, extra: extra) == false {
                    return [ChainViolation(property: .initOrder, detail: "commit c\(commit.client) t\(commit.timestamp) at sn \(commit.sn) in i\(instance) is not prefix-related to the common prefix of its init histories (sn \(s))")]
                }
            }
            for client in clients where !client.byzantine {
                for ah in client.abortHistories where ah.instance == instance + 1 {
                    let (entries, endSN, end) = chain(ah)
                    let all = extra.merging(entries) { a, _ in a }
                    if prefixRelated(common, s, end, endSN, extra: all) == false {
                        return [ChainViolation(property: .initOrder, detail: "c\(client.id)'s abort history of i\(instance) is not prefix-related to the common prefix of its init histories")]
                    }
                }
            }
        }
        return []
    }

    func checkLiveness() -> [ChainViolation] {
        for client in clients where !client.byzantine && !client.finished {
            return [ChainViolation(property: .termination,
                                   detail: "c\(client.id) neither committed its \(scenario.requestsPerClient) requests nor aborted (\(client.commits) committed, in i\(client.instance), panicking \(client.panicking))")]
        }
        if scenario.behaviour == .none && plantedBug == .none {
            if let client = clients.first(where: { $0.commits != scenario.requestsPerClient }) {
                return [ChainViolation(property: .progress, detail: "c\(client.id) committed \(client.commits) of \(scenario.requestsPerClient) with no fault")]
            }
            if let node = nodes.first(where: { $0.core.stopped }) {
                return [ChainViolation(property: .progress, detail: "r\(node.position) stopped (reason \(node.core.stopReason.rawValue)) with no fault")]
            }
        }
        // §21.10: a crash lasting longer than a switch, with next(i) a new Chain instance: every request stays live.
        if scenario.behaviour == .crash, let client = clients.first(where: { $0.commits != scenario.requestsPerClient }) {
            return [ChainViolation(property: .progress, detail: "c\(client.id) committed \(client.commits) of \(scenario.requestsPerClient) across a crash of r\(scenario.byzantine) (\(client.switches) switch(es))")]
        }
        return []
    }
}
