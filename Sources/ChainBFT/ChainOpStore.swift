/// The bytes of the requests a replica's core names by `ref` (rc_chain.h: the caller keeps them until the request
/// was sent on and executed), without hashing.
///
/// The engine hands refs out in increasing order and the core holds each for a short while (its window of batches
/// and history), so a ring indexed by `ref mod capacity` finds them with one array access: the dictionary this
/// replaces cost ≈ 8 hash operations per request per replica (≈ 4 % of a replica's CPU, docs/chain-bft.md, third
/// pass). A ref still held when a newer ref needs its slot (a straggler: the core kept it unusually long) moves to a
/// small dictionary, so nothing is lost and the ring never grows; the store holds exactly what the dictionary did.
struct ChainOpStore {
    private var ring: [(ref: UInt64, stored: ChainStoredOp)?]
    private var stragglers: [UInt64: ChainStoredOp] = [:]
    private let mask: UInt64
    /// Requests held (ring and stragglers).
    private(set) var count = 0
    /// Refs moved out of the ring because a newer ref needed their slot.
    private(set) var stragglersMoved: UInt64 = 0

    /// - Parameter capacity: ring slots, a power of two (4096: above the core's largest history, 4 × CHK + batches).
    init(capacity: Int = 4096) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "the ring's capacity is a power of two")
        ring = Array(repeating: nil, count: capacity)
        mask = UInt64(capacity - 1)
    }

    private func slot(_ ref: UInt64) -> Int { Int(ref & mask) }

    /// Stores `stored` under `ref` (a new ref, or one held already: replaced).
    mutating func insert(_ ref: UInt64, _ stored: ChainStoredOp) {
        let i = slot(ref)
        if ring[i]?.ref == ref {
            ring[i]!.stored = stored
            return
        }
        if !stragglers.isEmpty, stragglers[ref] != nil {
            stragglers[ref] = stored
            return
        }
        if let held = ring[i] {
            stragglers[held.ref] = held.stored
            stragglersMoved += 1
        }
        ring[i] = (ref, stored)
        count += 1
    }

    /// The bytes under `ref`, nil when none are held.
    func op(_ ref: UInt64) -> [UInt8]? {
        if let held = ring[slot(ref)], held.ref == ref { return held.stored.op }
        return stragglers.isEmpty ? nil : stragglers[ref]?.op
    }

    /// The request was executed; forgotten when it was also sent on.
    mutating func markExecuted(_ ref: UInt64) { mark(ref) { $0.executed = true } }

    /// The request was sent on (in a batch, or the tail's replies); forgotten when it was also executed.
    mutating func markSent(_ ref: UInt64) { mark(ref) { $0.sent = true } }

    private mutating func mark(_ ref: UInt64, _ change: (inout ChainStoredOp) -> Void) {
        let i = slot(ref)
        if ring[i]?.ref == ref {
            change(&ring[i]!.stored)
            if ring[i]!.stored.sent && ring[i]!.stored.executed {
                ring[i] = nil
                count -= 1
            }
        } else if var stored = stragglers[ref] {
            change(&stored)
            if stored.sent && stored.executed {
                stragglers[ref] = nil
                count -= 1
            } else {
                stragglers[ref] = stored
            }
        }
    }

    mutating func removeAll() {
        for i in ring.indices { ring[i] = nil }
        stragglers.removeAll()
        count = 0
    }
}
