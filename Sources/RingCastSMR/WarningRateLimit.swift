import Synchronization

/// How often one kind of warning may reach the log. A replica's client port is open to whoever can reach it: a
/// scanner, a client with the wrong key or a misbehaving program can open thousands of connections a second, and a
/// warning per refused connection would turn each into a log line (disk, and the operator's attention). The first
/// event of a burst is logged at once; after it at most one line per ``intervalNanos``, carrying how many events it
/// stands for. The statistics count every event either way.
struct WarningRateLimit: ~Copyable {
    /// The smallest time between two logged lines of this kind.
    let intervalNanos: UInt64
    private let state = Mutex<(lastLoggedNanos: UInt64?, suppressed: UInt64)>((nil, 0))

    init(intervalNanos: UInt64 = 10_000_000_000) {
        precondition(intervalNanos > 0, "a rate limit needs a positive interval")
        self.intervalNanos = intervalNanos
    }

    /// One more event at `nowNanos` (a monotonic clock). Returns nil when it is not to be logged (it is counted
    /// into the next line), or the number of events the line to log stands for: 1 for itself, plus those
    /// suppressed since the previous line.
    func admit(nowNanos: UInt64) -> UInt64? {
        state.withLock { state in
            if let last = state.lastLoggedNanos, nowNanos &- last < intervalNanos {
                state.suppressed += 1
                return nil
            }
            let events = state.suppressed + 1
            state = (nowNanos, 0)
            return events
        }
    }
}
