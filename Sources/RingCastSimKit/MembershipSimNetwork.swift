internal import CRingCast
import RingCastMembership

/// The seeded generator of the simulators (rc_sim_prng: splitmix64 → xoshiro256**), so a seed replays
/// the same on every platform.
struct MembershipPrng {
    private var state = rc_sim_prng()

    init(seed: UInt64) { rc_sim_prng_seed(&state, seed) }

    /// Uniform in `range`.
    mutating func int(_ range: ClosedRange<Int>) -> Int {
        Int(rc_sim_prng_range(&state, UInt64(range.lowerBound), UInt64(range.upperBound)))
    }

    mutating func ticks(_ range: ClosedRange<UInt64>) -> UInt64 {
        rc_sim_prng_range(&state, range.lowerBound, range.upperBound)
    }

    mutating func chance(_ percent: UInt32) -> Bool { rc_sim_prng_chance(&state, percent) }

    mutating func pick<Element>(_ elements: [Element]) -> Element? {
        elements.isEmpty ? nil : elements[int(0...(elements.count - 1))]
    }
}

/// One application message: its origin incarnation and the origin's count, from 1.
struct MembershipAppID: Hashable, Comparable, CustomStringConvertible {
    var origin: Membership.MemberID
    var counter: UInt32

    static func < (lhs: Self, rhs: Self) -> Bool {
        lhs.origin != rhs.origin ? lhs.origin < rhs.origin : lhs.counter < rhs.counter
    }

    var description: String { "\(origin)#\(counter)" }
}

/// What travels between members outside the ring: control messages (as bytes, through the real
/// codec) and recovery entries for a `.supply`.
enum MembershipPacket {
    case control([UInt8])
    case data(viewID: UInt64, entries: [Membership.Recovery<[MembershipAppID]>.Entry])
}

/// Per-pair FIFO links with random delays, as a queue ordered by (due, sequence number). A pair's due
/// times never decrease, so a pair never reorders.
struct MembershipSimNetwork {
    struct Envelope {
        var due: UInt64
        var sequence: UInt64
        var from: Membership.MemberID
        var to: Membership.MemberID
        var packet: MembershipPacket
    }

    struct Pair: Hashable {
        var from: Membership.MemberID
        var to: Membership.MemberID
    }

    /// Messages in flight at most; more means a message storm, which is a bug.
    static let inFlightMax = 100_000

    private var heap: [Envelope] = []
    private var lastDue: [Pair: UInt64] = [:]
    private var sequence: UInt64 = 0

    var isEmpty: Bool { heap.isEmpty }
    var count: Int { heap.count }

    mutating func send(_ packet: MembershipPacket, from: Membership.MemberID, to: Membership.MemberID, due: UInt64) {
        precondition(heap.count < Self.inFlightMax, "more than \(Self.inFlightMax) messages in flight")
        let pair = Pair(from: from, to: to)
        let fifoDue = max(due, lastDue[pair] ?? 0)
        lastDue[pair] = fifoDue
        sequence += 1
        heap.append(Envelope(due: fifoDue, sequence: sequence, from: from, to: to, packet: packet))
        siftUp(heap.count - 1)
    }

    /// The next message due at or before `now`, if any.
    mutating func next(dueBy now: UInt64) -> Envelope? {
        guard let first = heap.first, first.due <= now else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            siftDown(0)
        }
        return first
    }

    private func before(_ a: Int, _ b: Int) -> Bool {
        heap[a].due != heap[b].due ? heap[a].due < heap[b].due : heap[a].sequence < heap[b].sequence
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard before(child, parent) else { return }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            var smallest = parent
            let left = 2 * parent + 1, right = left + 1
            if left < heap.count && before(left, smallest) { smallest = left }
            if right < heap.count && before(right, smallest) { smallest = right }
            guard smallest != parent else { return }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
