import RingCastChain

/// What a replica keeps so that, on entering the next instance, it can put its application state at the init
/// history's checkpoint base (spec §12, D10): the state machine's snapshot at each of the last few checkpoint
/// boundaries it executed (its own tentative checkpoints), and every request it executed since the oldest of them.
///
/// IH starts at base·CHK and the new instance executes IH's entries from there, so a replica whose state went beyond
/// base·CHK (it executed requests IH may not hold, or holds at other positions) must go back first. Bounded: at most
/// ``anchorsMax`` snapshots and the requests after the oldest (≤ anchorsMax·CHK of them).
///
/// Not here: checkpoint state transfer. A replica whose own log does not reach base·CHK, or whose oldest snapshot is
/// beyond it, cannot enter (the engine counts it and stays in the instance it is in; see the catalogue).
struct ChainRollbackLog {
    struct Executed {
        var sn: UInt64
        var client: UInt32
        var timestamp: UInt64
        var op: [UInt8]
        var reply: [UInt8]
        var requestDigest: ChainDigest
        var historyDigest: ChainDigest
    }

    /// A client's last executed request (D7: Σlast answers it from its own state after a switch).
    struct LastReply {
        var sn: UInt64
        var timestamp: UInt64
        var reply: [UInt8]
        var requestDigest: ChainDigest
        var historyDigest: ChainDigest
    }

    struct Anchor {
        var sn: UInt64
        var snapshot: [UInt8]
        var historyDigest: ChainDigest
        var last: [UInt32: LastReply]
    }

    let anchorsMax: Int
    let checkpointInterval: UInt64
    private(set) var anchors: [Anchor] = []
    /// Requests executed after anchors[0], in sn order without gaps.
    private(set) var log: [Executed] = []
    /// Per client, as of the last executed request.
    private(set) var last: [UInt32: LastReply] = [:]

    init(anchorsMax: Int, checkpointInterval: UInt64, initialSnapshot: [UInt8]) {
        precondition(anchorsMax >= 2 && checkpointInterval >= 1, "anchors ≥ 2, CHK ≥ 1")
        self.anchorsMax = anchorsMax
        self.checkpointInterval = checkpointInterval
        anchors = [Anchor(sn: 0, snapshot: initialSnapshot, historyDigest: .zero, last: [:])]
    }

    var lastSN: UInt64 { log.last?.sn ?? anchors.last!.sn }
    /// H at ``lastSN``.
    var lastHistoryDigest: ChainDigest { log.last?.historyDigest ?? anchors.last!.historyDigest }

    /// Records an execution; `snapshot` is asked for at each checkpoint boundary.
    mutating func record(_ e: Executed, snapshot: () -> [UInt8]?) {
        precondition(e.sn == lastSN + 1, "executions are recorded in sn order without gaps")
        log.append(e)
        last[e.client] = LastReply(sn: e.sn, timestamp: e.timestamp, reply: e.reply, requestDigest: e.requestDigest,
                                   historyDigest: e.historyDigest)
        guard e.sn % checkpointInterval == 0 else { return }
        guard let bytes = snapshot() else {
            // The machine could not write its state: no anchor here; rollback reaches only earlier ones.
            return
        }
        anchors.append(Anchor(sn: e.sn, snapshot: bytes, historyDigest: e.historyDigest, last: last))
        if anchors.count > anchorsMax {
            anchors.removeFirst(anchors.count - anchorsMax)
            // The log is in sn order without gaps, so what anchors[0] covers is a prefix: removed with one move of
            // the rest, not a predicate over every entry (which copied each entry, retaining its arrays: ≈ 8 % of a
            // replica's CPU in the profile of docs/chain-bft.md, third pass).
            let oldest = anchors[0].sn
            if let first = log.first?.sn, first <= oldest {
                log.removeFirst(min(log.count, Int(oldest - first) + 1))
            }
        }
    }

    enum Unreachable: Error, Equatable, CustomStringConvertible {
        /// This replica did not execute that far (needs checkpoint state transfer, not implemented).
        case ahead(boundary: UInt64, executed: UInt64)
        /// The boundary is before the oldest snapshot kept.
        case behind(boundary: UInt64, oldest: UInt64)
        /// This replica's H at the boundary is not the base digest (its history differs from the f+1 that vouched).
        case digest(boundary: UInt64)

        var description: String {
            switch self {
            case let .ahead(b, x): "the checkpoint base sn \(b) is beyond what this replica executed (\(x)): state transfer needed"
            case let .behind(b, o): "the checkpoint base sn \(b) is older than the oldest snapshot kept (sn \(o))"
            case let .digest(b): "this replica's history digest at sn \(b) is not the base digest"
            }
        }
    }

    /// How to reach `boundary`: the anchor to restore and the requests to replay after it. Checks only; changes nothing.
    func plan(to boundary: UInt64, baseDigest: ChainDigest) throws(Unreachable) -> (anchor: Anchor, replay: [Executed]) {
        guard boundary <= lastSN else { throw .ahead(boundary: boundary, executed: lastSN) }
        guard let anchor = anchors.last(where: { $0.sn <= boundary }) else {
            throw .behind(boundary: boundary, oldest: anchors[0].sn)
        }
        let replay = log.filter { $0.sn > anchor.sn && $0.sn <= boundary }
        precondition(replay.count == Int(boundary - anchor.sn), "the log is contiguous after the oldest anchor")
        let h = replay.last?.historyDigest ?? anchor.historyDigest
        guard boundary == 0 || h == baseDigest else { throw .digest(boundary: boundary) }
        return (anchor, replay)
    }

    /// After the state was restored to `boundary`: forgets what came after it.
    mutating func truncate(to boundary: UInt64, last restored: [UInt32: LastReply]) {
        log.removeAll { $0.sn > boundary }
        anchors.removeAll { $0.sn > boundary }
        precondition(!anchors.isEmpty, "plan(to:) found an anchor at or before the boundary")
        last = restored
    }

    /// The reply of (client, timestamp) when this replica's log still holds its execution.
    func reply(client: UInt32, timestamp: UInt64) -> [UInt8]? {
        log.last(where: { $0.client == client && $0.timestamp == timestamp })?.reply
    }

    /// The body of (client, timestamp) when this replica executed it (for IH entries and FETCH answers).
    func body(client: UInt32, timestamp: UInt64) -> (op: [UInt8], requestDigest: ChainDigest)? {
        guard let e = log.last(where: { $0.client == client && $0.timestamp == timestamp }) else { return nil }
        return (e.op, e.requestDigest)
    }
}
