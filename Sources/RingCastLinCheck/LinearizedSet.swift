/// The set of operations a partial linearization has linearized, as a bitset with an incremental hash.
///
/// The memo table of the search is keyed by (this set, model state) (Lowe 2017, §4). Hashing the whole
/// bitset on every probe would cost O(n/64) per step; instead the set keeps an XOR of a fixed 64-bit mix of
/// each member (Zobrist hashing), updated in O(1) on insert and remove. Equality still compares the words.
struct LinearizedSet: Hashable {
    private(set) var words: [UInt64]
    private(set) var setHash: UInt64 = 0

    init(capacity: Int) {
        precondition(capacity >= 0)
        words = [UInt64](repeating: 0, count: (capacity + 63) / 64)
    }

    func contains(_ member: Int) -> Bool {
        words[member >> 6] & (1 << UInt64(member & 63)) != 0
    }

    mutating func insert(_ member: Int) {
        precondition(!contains(member), "operation linearized twice")
        words[member >> 6] |= 1 << UInt64(member & 63)
        setHash ^= Self.mix(member)
    }

    mutating func remove(_ member: Int) {
        precondition(contains(member), "removing an operation that is not linearized")
        words[member >> 6] &= ~(1 << UInt64(member & 63))
        setHash ^= Self.mix(member)
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(setHash)
    }

    static func == (left: LinearizedSet, right: LinearizedSet) -> Bool {
        left.setHash == right.setHash && left.words == right.words
    }

    /// SplitMix64's finaliser (Steele, Lea & Flood 2014): a fixed bijection with good avalanche, so that the
    /// XOR of members' mixes rarely collides.
    private static func mix(_ member: Int) -> UInt64 {
        var z = UInt64(truncatingIfNeeded: member) &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A memo-table key: a linearized set and the state the linearization reached.
struct MemoKey<State: Hashable>: Hashable {
    let linearized: LinearizedSet
    let state: State
}
