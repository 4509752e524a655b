#if canImport(Glibc)
import Glibc
#endif

// The package's clocks, in one place (the engine's C side reads CLOCK_MONOTONIC itself, engine.c). `package`, so that
// ringcast-node uses these too.

/// CLOCK_MONOTONIC in nanoseconds: durations, timeouts, the membership core's ticks.
package func monotonicNanos() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// CLOCK_REALTIME in nanoseconds: times reported to people and compared across processes (view installation,
/// send and delivery stamps).
package func realtimeNanos() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}
