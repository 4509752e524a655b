import RingCastChain

/// The properties the Chain simulator checks after each run (spec §2.2, §21).
public enum ChainProperty: String, Sendable, Codable, CaseIterable {
    /// No request twice in a correct replica's history; every logged request was invoked by its client (Validity).
    case validity
    /// Any two commit histories are prefix-related (Commit Order).
    case commitOrder = "commit_order"
    /// A correct client committed a reply (or history) that no correct replica of Σlast computed.
    case replyNotComputed = "reply_not_computed"
    /// Every commit history is a prefix of every abort history (Abort Order).
    case abortOrder = "abort_order"
    /// No failure and no Byzantine party, yet a client did not commit all its requests (Progress, spec §1).
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
        violations += checkLiveness()
        return violations
    }

    func checkValidity() -> [ChainViolation] {
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

    /// The correct Σlast log whose history at `sn` is `history` and whose reply there is `reply`, if any.
    func vouchingLog(sn: UInt64, history: ChainDigest, reply: [UInt8]) -> ChainSimNode? {
        correctNodes.first { node in
            node.position >= 2 * f && sn >= 1 && Int(sn) <= node.log.count
                && node.log[Int(sn) - 1].historyDigest == history && node.replies[sn] == reply
        }
    }

    func checkCommits() -> [ChainViolation] {
        var sources: [(ChainSimCommit, ChainSimNode)] = []
        for commit in commits {
            guard let node = vouchingLog(sn: commit.sn, history: commit.history, reply: commit.reply) else {
                return [ChainViolation(property: .replyNotComputed,
                                       detail: "c\(commit.client) committed t\(commit.timestamp) at sn \(commit.sn) with a reply/history no correct Σlast replica computed")]
            }
            let e = node.log[Int(commit.sn) - 1]
            if e.client != UInt32(commit.client) || e.timestamp != commit.timestamp {
                return [ChainViolation(property: .replyNotComputed,
                                       detail: "c\(commit.client) committed t\(commit.timestamp) on the reply to another request (sn \(commit.sn))")]
            }
            sources.append((commit, node))
        }
        // Commit Order: with H chained, two histories are prefix-related iff the longer one's H at the shorter one's
        // length equals the shorter one's H.
        let sorted = sources.sorted { $0.0.sn < $1.0.sn }
        for (a, b) in zip(sorted, sorted.dropFirst()) {
            let bLog = b.1.log
            if bLog[Int(a.0.sn) - 1].historyDigest != a.0.history {
                return [ChainViolation(property: .commitOrder,
                                       detail: "commit c\(a.0.client) t\(a.0.timestamp) at sn \(a.0.sn) is not a prefix of commit c\(b.0.client) t\(b.0.timestamp) at sn \(b.0.sn)")]
            }
        }
        return []
    }

    /// Abort Order: each commit history is a prefix of each abort history `base ++ entries`. A correct log that
    /// passes through the base checkpoint (H at base·CHK) and through the commit (H at sn) witnesses the prefix up
    /// to the base; positions after it must hold the same requests as that log.
    func checkAbortOrder() -> [ChainViolation] {
        let chk = UInt64(scenario.checkpointInterval)
        for client in clients where client.aborted && !client.byzantine {
            var ah = ChainAbortHistory.extract(client.aborts, f: f, checkpointInterval: chk)
            if plantedBug == .abortHistorySkip && !ah.entries.isEmpty { ah.entries.removeFirst() }
            let boundary = ah.base * chk
            for commit in commits {
                let witness = correctNodes.first { node in
                    let log = node.log
                    guard Int(max(boundary, commit.sn)) <= log.count, log[Int(commit.sn) - 1].historyDigest == commit.history else { return false }
                    guard boundary == 0 || log[Int(boundary) - 1].historyDigest == ah.baseDigest else { return false }
                    guard commit.sn > boundary else { return true }
                    return (boundary + 1...commit.sn).allSatisfy { sn in
                        let index = Int(sn - boundary) - 1
                        return index < ah.entries.count && ah.entries[index].requestDigest == log[Int(sn) - 1].requestDigest
                    }
                }
                if witness == nil {
                    return [ChainViolation(property: .abortOrder,
                                           detail: "commit c\(commit.client) t\(commit.timestamp) at sn \(commit.sn) is not a prefix of c\(client.id)'s abort history (checkpoint \(ah.base), \(ah.entries.count) entries)")]
                }
            }
        }
        return []
    }

    func checkLiveness() -> [ChainViolation] {
        for client in clients where !client.byzantine && !client.finished {
            return [ChainViolation(property: .termination,
                                   detail: "c\(client.id) neither committed its \(scenario.requestsPerClient) requests nor aborted (\(client.commits) committed, panicking \(client.panicking))")]
        }
        if scenario.behaviour == .none && plantedBug == .none {
            if let client = clients.first(where: { $0.commits != scenario.requestsPerClient }) {
                return [ChainViolation(property: .progress, detail: "c\(client.id) committed \(client.commits) of \(scenario.requestsPerClient) with no fault")]
            }
            if let node = nodes.first(where: { $0.core.stopped }) {
                return [ChainViolation(property: .progress, detail: "r\(node.position) stopped (reason \(node.core.stopReason.rawValue)) with no fault")]
            }
        }
        return []
    }
}
