/// PBFT (Castro & Liskov, OSDI 1999 / TOCS 2002) as Backup's inner total order (spec §13.1: Aliph wraps PBFT).
/// A namespace for the sans-IO core's types.
public enum PBFT {}

extension PBFT {
    /// A bug planted into every core so the simulator's checkers can be seen to fail (like rc_chain's test_fault).
    /// Never set outside tests and the simulator.
    public enum TestFault: String, Sendable, CaseIterable {
        case none
        /// Quorums of 2f instead of 2f+1: "prepared" with the PRE-PREPARE and 2f−1 PREPAREs, "committed-local" with 2f
        /// COMMITs. Two such quorums need not intersect in a correct replica, so an equivocating primary helped by
        /// f−1 equivocating backups makes two correct replicas commit different requests at one sequence number.
        case prepareQuorumShort = "prepare-quorum-short"
    }

    /// One replica's settings, validated at construction (``Replica/init(settings:keyRing:)``).
    public struct Settings: Sendable {
        /// Faults tolerated: n = 3f+1.
        public var f: UInt32
        /// This replica, 0 … 3f.
        public var replica: UInt32
        /// K: a CHECKPOINT every K executed sequence numbers (PBFT §4.3).
        public var checkpointInterval: UInt64
        /// L = H − h: the log window above the stable checkpoint; a multiple of K, at least 2K so ordering goes on
        /// while the next checkpoint becomes stable.
        public var logWindow: UInt64
        /// Client ids are 0 … clientsMax−1 (the per-client reply table has exactly this many rows).
        public var clientsMax: UInt32
        /// Requests a replica holds that are not executed yet (beyond: ``Replica/RequestError/pendingFull``).
        public var pendingMax: Int
        /// Operation bytes per request.
        public var opBytesMax: Int
        /// Ticks a replica waits for its oldest pending request before it suspects the primary (PBFT §4.4); doubled
        /// per consecutive view change without a NEW-VIEW (the liveness rule of PBFT §4.5.2).
        public var viewChangeTimeoutTicks: UInt64
        /// View changes a replica keeps for views above its own (bounds the table against a Byzantine flood).
        public var viewsAheadMax: UInt64
        /// Requests one PRE-PREPARE orders at most (PBFT's batching, Castro & Liskov TOCS 2002 §5.1.4): every replica
        /// message is signed here (Ed25519), so a sequence number per request made Backup's rate that of the
        /// signatures (≈ 400 requests/s on the 2-core test machine); one per batch divides that cost by the batch.
        public var batchMax: Int
        /// Operation bytes one batch holds at most (a batch always takes its first request). A request that carries
        /// an init history is ordered alone: those are large and rare (a client's first request in a Backup). Why
        /// 32 KiB: a VIEW-CHANGE carries the prepared batches above the stable checkpoint, and it must stay well
        /// inside one wire frame (2 MiB).
        public var batchBytesMax: Int
        /// Sequence numbers the primary keeps proposed but not executed at once; the requests that arrive meanwhile
        /// wait and form the next batch (natural batching, no timer: with a single request in flight it is proposed
        /// at once).
        public var proposalsInFlightMax: UInt64
        public var testFault: TestFault

        public init(f: UInt32, replica: UInt32, checkpointInterval: UInt64 = 16, logWindow: UInt64 = 64,
                    clientsMax: UInt32, pendingMax: Int = 256, opBytesMax: Int = 1 << 16,
                    viewChangeTimeoutTicks: UInt64 = 40, viewsAheadMax: UInt64 = 8, batchMax: Int = 32,
                    batchBytesMax: Int = 32 << 10, proposalsInFlightMax: UInt64 = 2, testFault: TestFault = .none) {
            self.f = f; self.replica = replica; self.checkpointInterval = checkpointInterval; self.logWindow = logWindow
            self.clientsMax = clientsMax; self.pendingMax = pendingMax; self.opBytesMax = opBytesMax
            self.viewChangeTimeoutTicks = viewChangeTimeoutTicks; self.viewsAheadMax = viewsAheadMax
            self.batchMax = batchMax; self.batchBytesMax = batchBytesMax; self.proposalsInFlightMax = proposalsInFlightMax
            self.testFault = testFault
        }

        public var n: UInt32 { 3 * f + 1 }
        /// 2f+1: PREPARE-phase (with the PRE-PREPARE), COMMIT, CHECKPOINT and VIEW-CHANGE quorums.
        public var quorum: Int { Int(2 * f + 1) }
        /// PREPAREs from backups that, with the PRE-PREPARE, make a request prepared: 2f (PBFT §4.2).
        var preparesNeeded: Int { testFault == .prepareQuorumShort ? Int(2 * f) - 1 : Int(2 * f) }
        /// COMMITs that make a prepared request committed-local: 2f+1 (PBFT §4.2).
        var commitsNeeded: Int { testFault == .prepareQuorumShort ? Int(2 * f) : quorum }

        func validate() throws(SettingsError) {
            guard f >= 1, f <= 21 else { throw .f(f) }
            guard replica < n else { throw .replica(replica) }
            guard checkpointInterval >= 1, logWindow >= 2 * checkpointInterval, logWindow % checkpointInterval == 0,
                  logWindow <= 1 << 16 else { throw .window(checkpointInterval: checkpointInterval, logWindow: logWindow) }
            guard clientsMax >= 1, clientsMax <= 1 << 20 else { throw .clients(clientsMax) }
            guard pendingMax >= 1, opBytesMax >= 0, viewChangeTimeoutTicks >= 1, viewsAheadMax >= 1, batchMax >= 1,
                  batchMax <= 1024, batchBytesMax >= 1, proposalsInFlightMax >= 1 else { throw .bounds }
        }
    }

    /// Settings outside the rules above.
    public enum SettingsError: Error, Equatable, Sendable, CustomStringConvertible {
        case f(UInt32), replica(UInt32), window(checkpointInterval: UInt64, logWindow: UInt64), clients(UInt32), bounds

        public var description: String {
            switch self {
            case .f(let f): "f must be 1 … 21, got \(f)"
            case .replica(let r): "replica \(r) is not one of the 3f+1"
            case let .window(k, l): "the log window (\(l)) must be a multiple of K (\(k)), at least 2K, at most 65536"
            case .clients(let c): "clientsMax must be 1 … 2^20, got \(c)"
            case .bounds: "pendingMax, viewChangeTimeoutTicks, viewsAheadMax, batchBytesMax and proposalsInFlightMax "
                + "must be at least 1, batchMax 1 … 1024"
            }
        }
    }

    /// A view: the primary of view v is replica v mod n (PBFT §4.1).
    public static func primary(_ view: UInt64, n: UInt32) -> UInt32 { UInt32(view % UInt64(n)) }
}
