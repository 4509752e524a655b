/// The replicated table of client sessions that makes every command apply at most once (exactly once for the
/// client that gets its reply), however often the client retries it and through whichever replica.
///
/// Every replica changes the table only while applying the total order, with values taken from it, so the table
/// is identical everywhere and travels in every snapshot (unlike a per-server retry cache, which forgets a request
/// on failover: Ratis' RetryCache, RATIS-1873). The design follows Ongaro's dissertation §6.3:
/// - A session is opened by an ordered command; its id is that command's log index (unique, no randomness).
/// - Each request carries its session, its number `seq` (1, 2, …) and `firstUnacknowledged`: the client has the
///   replies of every request below it, so the table may forget them. Replies of requests at or above it stay
///   cached; a client has at most ``Limits/windowMax`` of them (requests beyond are refused, never applied), so a
///   session holds at most `windowMax` replies.
/// - A request below `firstUnacknowledged` is not applied (the client gave it up or has its reply).
/// - Expiry is decided by the ordered clock (stamps the replicas put on the ring, the largest so far), never by a
///   replica's own clock: a session not used for ``Limits/timeoutMillis`` of ordered time is removed at the next
///   scan, and when ``Limits/sessionsMax`` are open, opening one more evicts the least recently used. A request of
///   a removed session gets ``Admission/unknownSession`` and is not applied: the client must open a new session
///   and treat the request as in doubt. Choose `timeoutMillis` well above the clients' retry horizon
///   (complaint 4 of the research: a retry cache expiring before the client stops retrying applies twice).
public struct SessionTable: Sendable, Hashable {
    public struct Limits: Sendable, Hashable {
        /// Open sessions at most (opening one more evicts the least recently used).
        public var sessionsMax: Int
        /// Requests per session at or above `firstUnacknowledged` (the client's pipelining window).
        public var windowMax: Int
        /// A session unused for this long (ordered time) expires.
        public var timeoutMillis: UInt64

        public init(sessionsMax: Int = 4096, windowMax: Int = 128, timeoutMillis: UInt64 = 10 * 60 * 1000) {
            precondition(sessionsMax >= 1 && windowMax >= 1 && timeoutMillis >= 1)
            self.sessionsMax = sessionsMax
            self.windowMax = windowMax
            self.timeoutMillis = timeoutMillis
        }
    }

    /// What to do with one request.
    public enum Admission: Sendable, Hashable {
        /// New: apply it, then ``record(session:sequence:reply:)`` its reply.
        case apply
        /// Applied before: here is the reply it got.
        case duplicate(reply: [UInt8])
        /// Admitted earlier in the batch being applied and not recorded yet — this request, or one below the
        /// `firstUnacknowledged` it carries (whose cached reply it would drop): apply the batch, then ask again.
        case duplicateInFlight
        /// Below the session's `firstUnacknowledged`: not applied (the client has the reply or gave up on it).
        case alreadyAcknowledged
        /// The session expired or never existed: not applied.
        case unknownSession
        /// `seq` is `windowMax` or more above `firstUnacknowledged`: not applied (a client breaking its window).
        case outsideWindow
    }

    struct Session: Sendable, Hashable {
        var firstUnacknowledged: UInt64 = 1
        /// seq → encoded reply; nil while admitted and not yet recorded.
        var replies: [UInt64: [UInt8]?] = [:]
        var lastActiveMillis: UInt64
    }

    public let limits: Limits
    private(set) var sessions: [UInt64: Session] = [:]
    private var nextScanMillis: UInt64 = 0
    /// Counters (not replicated state, but identical on replicas that applied the same log from the start).
    public private(set) var expired: UInt64 = 0
    public private(set) var evicted: UInt64 = 0

    public init(limits: Limits = Limits()) { self.limits = limits }

    public var count: Int { sessions.count }
    public func contains(_ session: UInt64) -> Bool { sessions[session] != nil }
    /// Cached replies held (bounded by sessionsMax × windowMax).
    public var cachedReplies: Int { sessions.values.reduce(0) { $0 + $1.replies.count } }

    /// Opens session `id` (the log index of the opening command). Evicts the least recently used session when full.
    public mutating func open(id: UInt64, nowMillis: UInt64) {
        precondition(sessions[id] == nil, "session \(id) opened twice (ids are log indexes)")
        if sessions.count >= limits.sessionsMax {
            // Deterministic victim: least recently active, then lowest id (never the dictionary's iteration order).
            let victim = sessions.min { lhs, rhs in
                (lhs.value.lastActiveMillis, lhs.key) < (rhs.value.lastActiveMillis, rhs.key)
            }!.key
            sessions[victim] = nil
            evicted += 1
        }
        sessions[id] = Session(lastActiveMillis: nowMillis)
    }

    /// Removes a session (the client closed it).
    public mutating func close(id: UInt64) { sessions[id] = nil }

    /// Decides whether request (`session`, `sequence`) is applied; with `.apply` it is marked admitted.
    public mutating func admit(session id: UInt64, sequence: UInt64, firstUnacknowledged: UInt64,
                               nowMillis: UInt64) -> Admission {
        // In place (`values[index]`): a copy of the session taken out and written back would make the first
        // change to its `replies` copy the whole dictionary (profiled: a copy per command at a loaded replica).
        guard let index = sessions.index(forKey: id) else { return .unknownSession }
        let first = sessions.values[index].firstUnacknowledged
        // The client saw the replies below `firstUnacknowledged`, so it can carry a higher one than requests of
        // the same batch that are not recorded yet (a replica applying a long run of deliveries at once: one that
        // lags, or a state transfer's suffix). Dropping their slots now would make `record` fail, and make the
        // table depend on where batches end: apply the batch first, then the outcome is the one-by-one outcome.
        if firstUnacknowledged > first,
           Self.anyInFlight(sessions.values[index].replies, below: firstUnacknowledged, from: first,
                            windowMax: limits.windowMax) {
            return .duplicateInFlight
        }
        sessions.values[index].lastActiveMillis = max(sessions.values[index].lastActiveMillis, nowMillis)
        if firstUnacknowledged > first {
            sessions.values[index].firstUnacknowledged = firstUnacknowledged
            Self.dropReplies(&sessions.values[index].replies, below: firstUnacknowledged, from: first,
                             windowMax: limits.windowMax)
        }
        let current = sessions.values[index].firstUnacknowledged
        if sequence < current { return .alreadyAcknowledged }
        if let cached = sessions.values[index].replies[sequence] {
            guard let reply = cached else { return .duplicateInFlight }
            return .duplicate(reply: reply)
        }
        guard sequence - current < UInt64(limits.windowMax) else { return .outsideWindow }
        precondition(sessions.values[index].replies.count < limits.windowMax,
                     "a session caches more replies than its window")
        sessions.values[index].replies[sequence] = .some(nil)
        return .apply
    }

    /// Whether a reply below `bound` is admitted and not recorded yet. The keys are in `first ..< first + windowMax`
    /// (admitted only inside the window, dropped once below `firstUnacknowledged`), so when the advance is shorter
    /// than the window only its numbers are looked up (no walk over the whole cache per command); the same answer
    /// as looking at every key.
    static func anyInFlight(_ replies: [UInt64: [UInt8]?], below bound: UInt64, from first: UInt64,
                            windowMax: Int) -> Bool {
        if bound - first >= UInt64(windowMax) || bound - first >= UInt64(replies.count) {
            return replies.contains { $0.key < bound && $0.value == nil }
        }
        for sequence in first..<bound {
            if let cached = replies[sequence], cached == nil { return true }
        }
        return false
    }

    /// Removes the replies below `bound` (in place; the same keys as filtering every one, see ``anyInFlight``).
    /// Filtering builds a new dictionary (profiled: an allocation per acknowledgement), so it is left for an
    /// advance past the whole window.
    static func dropReplies(_ replies: inout [UInt64: [UInt8]?], below bound: UInt64, from first: UInt64,
                            windowMax: Int) {
        if bound - first >= UInt64(windowMax) {
            replies = replies.filter { $0.key >= bound }
            return
        }
        for sequence in first..<bound { replies.removeValue(forKey: sequence) }
    }

    /// Caches the reply of a request admitted with `.apply`.
    public mutating func record(session id: UInt64, sequence: UInt64, reply: [UInt8]) {
        guard let index = sessions.index(forKey: id), let slot = sessions.values[index].replies.index(forKey: sequence),
              sessions.values[index].replies.values[slot] == nil else {
            preconditionFailure("recording a reply that was not admitted")
        }
        sessions.values[index].replies.values[slot] = .some(reply)
    }

    /// Whether ``expire(nowMillis:)`` would scan now. The replica asks at every ring batch (each carries the ordered
    /// clock), so that scans fall at the same log positions on every replica, whatever its delivery batches.
    public func scanDue(nowMillis: UInt64) -> Bool { nowMillis >= nextScanMillis }

    /// Expires sessions idle for `timeoutMillis` of ordered time. Scans at most every `timeoutMillis / 8` of
    /// ordered time (all replicas scan at the same points, since `nowMillis` comes from the log).
    public mutating func expire(nowMillis: UInt64) {
        guard nowMillis >= nextScanMillis else { return }
        nextScanMillis = nowMillis + max(1, limits.timeoutMillis / 8)
        let before = sessions.count
        sessions = sessions.filter { nowMillis < $0.value.lastActiveMillis || nowMillis - $0.value.lastActiveMillis < limits.timeoutMillis }
        expired += UInt64(before - sessions.count)
    }

    // MARK: Snapshot (sorted by session id and seq: canonical bytes)

    func snapshot(into writer: inout SnapshotWriter) throws(SnapshotError) {
        try writer.uint64(nextScanMillis)
        try writer.uint64(UInt64(sessions.count))
        for id in sessions.keys.sorted() {
            let session = sessions[id]!
            try writer.uint64(id)
            try writer.uint64(session.firstUnacknowledged)
            try writer.uint64(session.lastActiveMillis)
            let recorded = session.replies.filter { $0.value != nil }
            precondition(recorded.count == session.replies.count, "a snapshot is taken between batches only")
            try writer.uint64(UInt64(recorded.count))
            for seq in recorded.keys.sorted() {
                try writer.uint64(seq)
                try writer.lengthPrefixed(recorded[seq]!!)
            }
        }
    }

    mutating func restore(from reader: inout SnapshotReader) throws(SnapshotError) {
        nextScanMillis = try reader.uint64()
        let count = try reader.uint64()
        guard count <= UInt64(limits.sessionsMax) else {
            throw SnapshotError("\(count) sessions exceed sessionsMax \(limits.sessionsMax)")
        }
        sessions = [:]
        for _ in 0..<count {
            let id = try reader.uint64()
            var session = Session(lastActiveMillis: 0)
            session.firstUnacknowledged = try reader.uint64()
            session.lastActiveMillis = try reader.uint64()
            let replies = try reader.uint64()
            guard replies <= UInt64(limits.windowMax) else {
                throw SnapshotError("session \(id) caches \(replies) replies, more than windowMax \(limits.windowMax)")
            }
            for _ in 0..<replies {
                let seq = try reader.uint64()
                session.replies[seq] = .some(try reader.lengthPrefixed())
            }
            sessions[id] = session
        }
    }
}
