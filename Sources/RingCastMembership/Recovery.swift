extension Membership {
    /// m_a ≺ m_b, the total order of LCR (thesis §2.4.1), over ring positions of one view:
    /// C_a[a] ≤ C_b[a] when a < b; C_a[a] < C_b[a] when a = b; and, when a > b, m_a ≺ m_b iff not
    /// m_b ≺ m_a, that is C_a[b] < C_b[b]. The same function as `rc_lcr_precedes` in C.
    ///
    /// - Precondition: both origins are positions of the clocks.
    public static func precedes(originA: UInt32, clockA: [UInt64], originB: UInt32, clockB: [UInt64]) -> Bool {
        let a = Int(originA), b = Int(originB)
        precondition(a < clockA.count && b < clockA.count && clockA.count == clockB.count, "origins inside the clocks")
        if a < b { return clockA[a] <= clockB[a] }
        if a == b { return clockA[a] < clockB[a] }
        return clockA[b] < clockB[b]
    }

    /// The data side of a view change (Fig. 2.7), kept by the shell from the freeze to the install: the
    /// member's undelivered LCR messages of the view being left plus what fills bring, and its
    /// per-origin received clock.
    ///
    /// The shell builds it at `.freeze` from the core's clock and pending list
    /// (``init(nodes:frozen:pending:)``), serves `.supply` from it, adds what arrives, and at `.install`
    /// force-delivers ``forceDeliveryOrder(target:)``.
    public struct Recovery<Payload> {
        /// One LCR message: its origin (ring position of the view left), seq (= clock[origin]), stamp and
        /// the shell's payload (its application messages).
        public struct Entry {
            public var origin: UInt32
            public var seq: UInt64
            public var clock: [UInt64]
            public var payload: Payload

            public init(origin: UInt32, seq: UInt64, clock: [UInt64], payload: Payload) {
                self.origin = origin
                self.seq = seq
                self.clock = clock
                self.payload = payload
            }
        }

        /// Why ``add(_:)`` refused an entry; one count per reason in ``refusals``.
        public enum Refusal: Sendable, Hashable, CaseIterable {
            /// An origin outside the view, a stamp whose own entry is not its seq, or a seq of 0.
            case malformed
            /// Held already (a second copy from another supplier, or a pending entry of the freeze).
            case duplicate
            /// seq ≤ the frozen clock and not held: this member accepted it in the view and has
            /// delivered it already (Fig. 2.7 line 10, `if C_m[l] > C[l]`).
            case deliveredBeforeFreeze
        }

        /// received[o]: o's messages 1...received[o] were all accepted at some point (held, or delivered).
        public private(set) var received: [UInt64]
        /// The LCR core's clock C at the freeze (Fig. 2.7 line 1): every message of origin o with
        /// seq ≤ frozen[o] was received in the view, so it is either held or delivered.
        public let frozen: [UInt64]
        /// held[o][seq]: the entries kept, per origin.
        private var held: [[UInt64: Entry]]
        /// How many entries ``add(_:)`` refused, per reason.
        public private(set) var refusals: [Refusal: Int] = [:]
        /// Entries refused by ``add(_:)`` as malformed.
        public var refused: Int { refusals[.malformed, default: 0] }

        /// The recovery set of a member at the freeze (Fig. 2.7 lines 1–2): its LCR core's clock and its
        /// pending entries (the undelivered messages it received).
        /// - Parameters:
        ///   - frozen: the frozen clock C of the LCR core.
        ///   - pending: the core's pending list; each entry's seq is ≤ frozen[origin].
        /// - Precondition: `frozen.count == nodes`, 1...64 nodes; every pending entry is well formed, at most
        ///   the frozen clock, and held once.
        public init(nodes: Int, frozen: [UInt64], pending: [Entry]) {
            precondition((1...Membership.membersMax).contains(nodes) && frozen.count == nodes, "one clock entry per node")
            self.received = frozen
            self.frozen = frozen
            self.held = Array(repeating: [:], count: nodes)
            for entry in pending {
                precondition(Self.malformed(entry, nodes: nodes) == false, "a pending entry is well formed")
                precondition(entry.seq <= frozen[Int(entry.origin)], "pending holds only received messages")
                precondition(held[Int(entry.origin)][entry.seq] == nil, "pending holds each message once")
                held[Int(entry.origin)][entry.seq] = entry
            }
        }

        /// Entries held now.
        public var count: Int { held.reduce(0) { $0 + $1.count } }

        /// Fig. 2.7 lines 8–11 at a member that receives recovery data (§2.4.3):
        /// > Upon receiving this list, every process adds to its pending list the messages it did not yet
        /// > receive.
        ///
        /// Line 10 is the test `if C_m[l] > C[l]`, with C the clock frozen at the view change.
        ///
        /// Keeps `entry` unless ``ignoreAdd(_:)`` names a reason to refuse it. An entry at
        /// received[origin] + 1 extends `received`, also over out-of-order entries kept earlier that are
        /// now contiguous.
        /// - Returns: false for a refused entry, counted in ``refusals``.
        @discardableResult
        public mutating func add(_ entry: Entry) -> Bool {
            if let refusal = ignoreAdd(entry) {
                refusals[refusal, default: 0] += 1
                return false
            }
            let origin = Int(entry.origin)
            precondition(entry.seq > frozen[origin] && held[origin][entry.seq] == nil, "ignoreAdd let through only new entries")
            held[origin][entry.seq] = entry
            while held[origin][received[origin] + 1] != nil { received[origin] += 1 }
            return true
        }

        /// Why ``add(_:)`` would refuse `entry`, or nil to keep it.
        public func ignoreAdd(_ entry: Entry) -> Refusal? {
            if Self.malformed(entry, nodes: held.count) { return .malformed }
            let origin = Int(entry.origin)
            if held[origin][entry.seq] != nil { return .duplicate }
            // Reference: Fig. 2.7 line 10. Integrity (Lemma 2.4.2) rests on this test: a message at or
            // below the frozen clock that is not held was delivered in the view.
            if entry.seq <= frozen[origin] { return .deliveredBeforeFreeze }
            return nil
        }

        private static func malformed(_ entry: Entry, nodes: Int) -> Bool {
            let origin = Int(entry.origin)
            return !(origin < nodes && entry.clock.count == nodes && entry.seq >= 1 && entry.clock[origin] == entry.seq)
        }

        /// The held entries of `origin` with seq in `seqs`, in seq order (for a `.supply`).
        public func entries(origin: UInt32, seqs: ClosedRange<UInt64>) -> [Entry] {
            guard Int(origin) < held.count else { return [] }
            let byOrigin = held[Int(origin)]
            if UInt64(byOrigin.count) < seqs.upperBound - seqs.lowerBound {
                return byOrigin.values.filter { seqs.contains($0.seq) }.sorted { $0.seq < $1.seq }
            }
            return seqs.compactMap { byOrigin[$0] }
        }

        /// Fig. 2.7 `forceDeliver`, made deterministic: the held entries with seq ≤ target[origin],
        /// in ≺ order. Each origin's entries are already in ≺ order (by seq), so this merges the
        /// per-origin lists, taking each time the head no other head precedes.
        /// - Precondition: one target entry per node.
        public func forceDeliveryOrder(target: [UInt64]) -> [Entry] {
            precondition(target.count == held.count, "one target entry per node")
            let lists = held.indices.map { origin in
                held[origin].values.filter { $0.seq <= target[origin] }.sorted { $0.seq < $1.seq }
            }
            var next = Array(repeating: 0, count: lists.count)
            var order: [Entry] = []
            order.reserveCapacity(lists.reduce(0) { $0 + $1.count })
            while let first = lists.indices.first(where: { next[$0] < lists[$0].count }) {
                var best = first
                for origin in lists.indices where origin != best && next[origin] < lists[origin].count {
                    let head = lists[origin][next[origin]], current = lists[best][next[best]]
                    if Membership.precedes(originA: head.origin, clockA: head.clock, originB: current.origin, clockB: current.clock) {
                        best = origin
                    }
                }
                order.append(lists[best][next[best]])
                next[best] += 1
            }
            return order
        }
    }
}

extension Membership.Recovery: Sendable where Payload: Sendable {}
extension Membership.Recovery.Entry: Sendable where Payload: Sendable {}
extension Membership.Recovery.Entry: Equatable where Payload: Equatable {}
