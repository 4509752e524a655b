/// P3 (spec §11.4): the abort history a client extracts from 2f+1 signed ABORTs of distinct replicas that name the
/// same next(i). The caller checks the signatures and the distinctness (``ChainAbort/verify(with:)``); this is the
/// pure extraction, so any client (the simulator's, later the ChainBFT one) computes the same history.
public struct ChainAbortHistory: Hashable, Sendable {
    /// The checkpoint the history starts from: ``base`` · CHK requests summarised by ``baseDigest`` (H there).
    public var base: UInt64
    public var baseDigest: ChainDigest
    /// Positions base·CHK + 1, … in order.
    public var entries: [ChainAbort.Entry]

    public init(base: UInt64, baseDigest: ChainDigest, entries: [ChainAbort.Entry]) {
        self.base = base; self.baseDigest = baseDigest; self.entries = entries
    }

    /// - Parameters:
    ///   - aborts: 2f+1 ABORTs with valid signatures from distinct replicas.
    ///   - checkpointInterval: CHK.
    ///
    /// Base (D11): the highest checkpoint whose digest ≥ f+1 ABORTs vouch for, stable (their checkpoint) or
    /// tentative (their H at that boundary), so ABORTs truncated at different stable checkpoints align; 0 (H_0 = 0)
    /// when none is. Then, per absolute position after it, the value ≥ f+1 ABORTs hold (unique, since 2f+1 < 2(f+1)),
    /// until a position has none; truncated at the first request that appears twice ([T] P3, not [I]'s skipping).
    public static func extract(_ aborts: [ChainAbort], f: Int, checkpointInterval: UInt64) -> ChainAbortHistory {
        precondition(checkpointInterval >= 1, "CHK is at least 1")
        struct Claim: Hashable { var number: UInt64; var digest: ChainDigest }
        var vouched: [Claim: Int] = [:]
        for a in aborts {
            var claims: Set<Claim> = [Claim(number: a.checkpointNumber, digest: a.checkpointDigest)]
            for e in a.entries where e.sn % checkpointInterval == 0 {
                claims.insert(Claim(number: e.sn / checkpointInterval, digest: e.historyDigest))
            }
            for claim in claims { vouched[claim, default: 0] += 1 }
        }
        var base = Claim(number: 0, digest: ChainDigest(bytes: [UInt8](repeating: 0, count: 32)))
        for (claim, votes) in vouched where votes >= f + 1 && claim.number > base.number { base = claim }
        struct Value: Hashable { var client: UInt32; var timestamp: UInt64; var request: ChainDigest }
        struct Key: Hashable { var client: UInt32; var timestamp: UInt64 }
        var entries: [ChainAbort.Entry] = []
        var seen = Set<Key>()
        var position = base.number * checkpointInterval + 1
        while true {
            var votes: [Value: (count: Int, entry: ChainAbort.Entry)] = [:]
            for a in aborts {
                guard let e = a.entries.first(where: { $0.sn == position }) else { continue }
                let value = Value(client: e.client, timestamp: e.timestamp, request: e.requestDigest)
                votes[value, default: (0, e)].count += 1
            }
            guard let chosen = votes.first(where: { $0.value.count >= f + 1 }) else { break }
            guard seen.insert(Key(client: chosen.key.client, timestamp: chosen.key.timestamp)).inserted else { break }
            entries.append(chosen.value.entry)
            position += 1
        }
        return ChainAbortHistory(base: base.number, baseDigest: base.digest, entries: entries)
    }
}
