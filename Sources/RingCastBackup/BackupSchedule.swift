/// Aliph's Backup (spec §13.1, [T§4.3]): wraps PBFT, enters with an init history, commits k requests, then aborts
/// every request with a signed abort history. A namespace for its types.
public enum Backup {}

extension Backup {
    /// k = ⌈C·2^m⌉ (spec §13.1, [T§4.3]): m counts Backup instances (0 for the first), so k grows exponentially with
    /// each Backup instance and the composition is live under a lasting fault (eventually one Backup instance
    /// outlasts it); C flattens the start of the curve so that short outages cost k = 1 per switch.
    ///
    /// C is `2^-cExponent`. The default, 2^-4, keeps k = 1 for the first five Backup instances (a crash lasting a few
    /// switches commits one request per Backup and returns to Chain at once), then doubles: 2, 4, 8, … The thesis's
    /// example C = 2^-200 is tuned for a 10 s outage at 50 ms per switch; in the simulator a crash lasts a few hundred
    /// ticks, and 2^-200 would make every Backup commit one request for 200 instances, so the doubling (the part that
    /// makes the composition live) would never be exercised.
    ///
    /// Bounded: k ≤ `kMax` (and the wrapper further caps it so that the abort history, init history included, fits
    /// the next Chain instance's history). Not implemented: the periodic reset of m ([T] footnote 9).
    public struct Schedule: Sendable, Equatable {
        public var cExponent: UInt32
        public var kMax: UInt64

        public init(cExponent: UInt32 = 4, kMax: UInt64 = 4096) {
            precondition(kMax >= 1, "a Backup commits at least one request")
            self.cExponent = cExponent
            self.kMax = kMax
        }

        /// k for the m-th Backup instance (m from 0).
        public func k(m: UInt64) -> UInt64 {
            // ⌈2^(m−e)⌉ is 1 while m ≤ e, else 2^(m−e): exact in integers, no floating point.
            guard m > UInt64(cExponent) else { return 1 }
            let shift = m - UInt64(cExponent)
            guard shift < 63 else { return kMax }
            return min(kMax, UInt64(1) << shift)
        }
    }

    /// Aliph's static order without Quorum (which RingCast does not have): Chain → Backup → Chain → …, next(i) = i+1
    /// (spec §2.3). Odd instances are Chain, even ones Backup; the m of the Backup instance i is i/2 − 1.
    public enum Order {
        public static func isBackup(_ instance: UInt64) -> Bool { instance % 2 == 0 }
        public static func backupIndex(_ instance: UInt64) -> UInt64 {
            precondition(isBackup(instance), "instance \(instance) is a Chain instance")
            return instance / 2 - 1
        }
    }
}
