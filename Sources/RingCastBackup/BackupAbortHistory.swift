public import RingCastChain
internal import CRingCastCore

extension ChainAbort {
    /// A Backup abort history (spec §13.1) in the record Chain's ABORTs use (rc_chain_abort), signed by `keyRing`'s
    /// replica the same way (rc_chain_abort_encode, Ed25519): `instance` is the Backup's, `checkpointNumber` and
    /// `checkpointDigest` the base its executed sequence (the init history, then the k committed requests) is given
    /// from — the init history's, or past half of history_max the last Chain checkpoint boundary the sequence reaches
    /// (``Backup/Instance/abortHistoryBase()``) — and H there, `entries` the positions after it with H at each. The
    /// instance number says which
    /// protocol signed it (``Backup/Order``), so a Backup record is never taken for a Chain ABORT.
    public static func backupHistory(replica: UInt32, client: UInt32, timestamp: UInt64, instance: UInt64,
                                     base: UInt64, baseDigest: ChainDigest, entries: [ChainAbort.Entry],
                                     keyRing: ChainKeyRing) -> ChainAbort {
        var a = ChainAbort(rc_chain_abort())
        a.replica = replica; a.client = client; a.timestamp = timestamp
        a.instance = instance; a.nextInstance = instance + 1
        a.checkpointNumber = base; a.checkpointDigest = baseDigest
        a.entries = entries
        return a.resigned(with: keyRing)
    }

    /// Everything but the signer and the signature: what f+1 replicas must agree on.
    func sameHistory(_ other: ChainAbort) -> Bool {
        client == other.client && timestamp == other.timestamp && instance == other.instance
            && nextInstance == other.nextInstance && checkpointNumber == other.checkpointNumber
            && checkpointDigest == other.checkpointDigest && entries == other.entries
    }
}

extension Backup {
    /// Why a client did not count a Backup abort history.
    public enum AbortRejection: Error, Equatable, Sendable {
        /// Another instance, next(i), client or request.
        case mismatch
        /// Not well formed (positions not consecutive from the base).
        case shape
        case duplicate
        case signature
    }

    /// The client side of leaving Backup (spec §13.1): f+1 identical signed abort histories of distinct replicas
    /// naming the same next instance make the init history of next(i), with those f+1 as its proof (which the Chain
    /// replicas of next(i) check, rc_chain_expect_backup_proof). Bounded: at most n histories.
    public struct AbortCollector {
        public let f: UInt32
        public let checkpointInterval: UInt32
        public let instance: UInt64
        public let client: UInt32
        public let timestamp: UInt64
        public private(set) var histories: [ChainAbort] = []

        public init(f: UInt32, checkpointInterval: UInt32, instance: UInt64, client: UInt32, timestamp: UInt64) {
            self.f = f; self.checkpointInterval = checkpointInterval; self.instance = instance
            self.client = client; self.timestamp = timestamp
        }

        /// Counts `history`; returns the init history of next(i) once f+1 identical ones are in, else nil.
        public mutating func add(_ history: ChainAbort, keyRing: ChainKeyRing) throws(AbortRejection) -> ChainInitHistory? {
            guard history.instance == instance, history.nextInstance == instance + 1, history.client == client,
                  history.timestamp == timestamp else { throw .mismatch }
            guard history.isWellFormed(f: f, checkpointInterval: checkpointInterval) else { throw .shape }
            guard !histories.contains(where: { $0.replica == history.replica }) else { throw .duplicate }
            guard history.verify(with: keyRing) else { throw .signature }
            histories.append(history)
            let same = histories.filter { $0.sameHistory(history) }
            guard same.count >= Int(f) + 1 else { return nil }
            let proof = Array(same.sorted { $0.replica < $1.replica }.prefix(Int(f) + 1))
            return ChainInitHistory(instance: instance + 1, base: history.checkpointNumber,
                                    baseDigest: history.checkpointDigest, entries: history.entries, proof: proof)
        }
    }
}
