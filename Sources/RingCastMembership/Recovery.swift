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
    /// The shell builds it at `.freeze` from the core's clock and pending list (add the pending entries
    /// first), serves `.supply` from it, adds what arrives, and at `.install` force-delivers
    /// ``forceDeliveryOrder(target:)``.
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

        /// received[o]: o's messages 1...received[o] were all accepted at some point (held, or delivered).
        public private(set) var received: [UInt64]
        /// held[o][seq]: the entries kept, per origin.
        private var held: [[UInt64: Entry]]
        /// Entries refused by ``add(_:)`` as malformed.
        public private(set) var refused = 0

        /// - Parameter received: the frozen clock of the LCR core.
        /// - Precondition: `received.count == nodes`, 1...64 nodes.
        public init(nodes: Int, received: [UInt64]) {
            precondition((1...Membership.membersMax).contains(nodes) && received.count == nodes, "one clock entry per node")
            self.received = received
            self.held = Array(repeating: [:], count: nodes)
        }

        /// Entries held now.
        public var count: Int { held.reduce(0) { $0 + $1.count } }

        /// Keeps `entry` unless it is held already. An entry at received[origin] + 1 extends `received`,
        /// also over out-of-order entries kept earlier that are now contiguous.
        /// - Returns: false for a duplicate or a malformed entry (origin out of range, a stamp whose own
        ///   entry is not its seq, a seq of 0), which is also counted in ``refused``.
        @discardableResult
        public mutating func add(_ entry: Entry) -> Bool {
            let origin = Int(entry.origin)
            guard origin < held.count, entry.clock.count == held.count, entry.seq >= 1,
                  entry.clock[origin] == entry.seq
            else {
                refused += 1
                return false
            }
            guard held[origin][entry.seq] == nil else { return false }
            held[origin][entry.seq] = entry
            while held[origin][received[origin] + 1] != nil { received[origin] += 1 }
            return true
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
