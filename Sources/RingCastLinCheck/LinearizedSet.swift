/// The set of operations a partial linearization has linearized, as a bitset with an incremental hash.
///
/// The memo table of the search is keyed by (this set, model state) (Lowe 2017, §4). Hashing the whole
/// bitset on every probe would cost O(n/64) per step; instead the set keeps an XOR of a fixed 64-bit mix of
/// each member (Zobrist hashing), updated in O(1) on insert and remove. Equality of memo keys still
/// compares the bits.
struct LinearizedSet {
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
///
/// The set is stored compressed: the number of leading all-ones words, then the words up to the last
/// non-zero one. The search numbers operations in call order, and what a partial linearization has
/// linearized is nearly a prefix of that order (everything that returned before the frontier, plus a few
/// operations in flight), so an entry costs a few words however long the history is, instead of n/64.
struct MemoKey<State: Hashable>: Hashable {
    let setHash: UInt64
    let fullWords: Int
    /// The first two words after the full ones inline (no allocation per probe in the common case), the
    /// rest, when there is any, in `tailRest`.
    let tail0: UInt64
    let tail1: UInt64
    let tailRest: [UInt64]
    let state: State

    init(linearized: LinearizedSet, state: State) {
        let words = linearized.words
        var full = 0
        while full < words.count, words[full] == ~0 { full += 1 }
        var end = words.count
        while end > full, words[end - 1] == 0 { end -= 1 }
        setHash = linearized.setHash
        fullWords = full
        tail0 = full < end ? words[full] : 0
        tail1 = full + 1 < end ? words[full + 1] : 0
        tailRest = full + 2 < end ? Array(words[(full + 2)..<end]) : []
        self.state = state
    }

    func contains(_ member: Int) -> Bool {
        let word = member >> 6
        if word < fullWords { return true }
        let bits: UInt64
        switch word - fullWords {
        case 0: bits = tail0
        case 1: bits = tail1
        case let index where index - 2 < tailRest.count: bits = tailRest[index - 2]
        default: return false
        }
        return bits & (1 << UInt64(member & 63)) != 0
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(setHash)
        hasher.combine(state)
    }

    static func == (left: MemoKey, right: MemoKey) -> Bool {
        left.setHash == right.setHash && left.fullWords == right.fullWords && left.tail0 == right.tail0
            && left.tail1 == right.tail1 && left.state == right.state && left.tailRest == right.tailRest
    }
}
