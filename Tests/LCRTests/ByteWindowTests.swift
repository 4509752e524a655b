import CRingCast
import Testing

// The adaptive byte window (rc_window.h): deterministic, times and counts passed in. Whole-engine latency and
// throughput are measured by ringcast-bench, not asserted here (machines are noisy).

private let EINVAL: Int32 = 22
private let millis: UInt64 = 1_000_000

private func settings(min: UInt64 = 64 << 10, max: UInt64 = 1 << 20) -> rc_window_settings {
    var settings = rc_window_settings()
    rc_window_settings_default(&settings, max)
    settings.bytes_min = min
    return settings
}

private func window(_ settings: rc_window_settings, now: UInt64 = 0) -> rc_window {
    var window = rc_window()
    var copy = settings
    #expect(rc_window_init(&window, &copy, now) == 0)
    return window
}

/// A fluid model of a ring of `origins` closed-loop senders: every origin keeps its window in flight, a message
/// needs `baseTripNanos` round the ring when the links have room, and the ring carries at most
/// `capacityBytesPerSecond`; beyond that, queues grow and the round trip with them (Little's law).
private struct FluidRing {
    let origins: Int
    let capacityBytesPerSecond: Double
    let baseTripNanos: Double

    /// Delivered bytes per second (every origin's) and the round trip, for windows `window` each.
    func run(window: UInt64) -> (rate: Double, tripNanos: Double) {
        let inFlight = Double(window) * Double(origins)
        let unconstrained = inFlight / baseTripNanos * 1e9
        let rate = min(unconstrained, capacityBytesPerSecond)
        return (rate, inFlight / rate * 1e9)
    }
}

@Suite("Byte window sized from the ring (rc_window.h)")
struct ByteWindowTests {
    @Test func inconsistentSettingsAreRefused() {
        var window = rc_window()
        var reversed = settings(min: 2 << 20, max: 1 << 20)
        #expect(rc_window_init(&window, &reversed, 0) == -EINVAL)
        var noMinimum = settings(min: 0)
        #expect(rc_window_init(&window, &noMinimum, 0) == -EINVAL)
        var noDelay = settings()
        noDelay.delay_ns = 0
        #expect(rc_window_init(&window, &noDelay, 0) == -EINVAL)
        var noEpoch = settings()
        noEpoch.epoch_ns = 0
        #expect(rc_window_init(&window, &noEpoch, 0) == -EINVAL)
    }

    @Test func startsAtTheMinimumAndResizesOnlyPerEpoch() {
        let s = settings()
        var w = window(s)
        #expect(rc_window_bytes(&w) == 64 << 10)
        #expect(!rc_window_on_progress(&w, s.epoch_ns - 1, 10 << 20, 1))
        #expect(rc_window_bytes(&w) == 64 << 10)
        // 10 MB in one 50 ms epoch = 200 MB/s; one origin; 6 ms: 1.2 MB, capped at the 1 MiB maximum.
        #expect(rc_window_on_progress(&w, s.epoch_ns, 10_000_000, 1))
        #expect(rc_window_bytes(&w) == 1 << 20)
    }

    @Test func everyOriginGetsTheSharedRateTimesTheDelayOverTheActiveOrigins() {
        let s = settings()
        var w = window(s)
        // 1 MB per 50 ms = 20 MB/s; 5 origins; 6 ms: 24 000 bytes, below the 64 KiB minimum.
        #expect(rc_window_on_progress(&w, s.epoch_ns, 1_000_000, 5))
        #expect(rc_window_bytes(&w) == 64 << 10)
        // 10 MB per epoch = 200 MB/s: 200e6 × 0.006 / 5 = 240 000.
        #expect(rc_window_on_progress(&w, 2 * s.epoch_ns, 11_000_000, 5))
        #expect(rc_window_bytes(&w) == 240_000)
        // The same ring seen with 2 active origins: each gets 2.5× the window. The window depends only on what
        // every process of the ring sees alike, so every origin computes the same one (§2.5.2's equal shares).
        var two = window(s)
        #expect(rc_window_on_progress(&two, s.epoch_ns, 10_000_000, 2))
        #expect(rc_window_bytes(&two) == 600_000)
    }

    @Test func theRoundTripIsMeasuredButOnlyItsMinimumKept() {
        var w = window(settings())
        #expect(w.rtt_min_ns == 0)
        rc_window_on_stable(&w, 10 * millis, 9 * millis)
        #expect(w.rtt_min_ns == millis)
        rc_window_on_stable(&w, 30 * millis, 10 * millis) // a longer trip never raises the minimum
        #expect(w.rtt_min_ns == millis)
        #expect(rc_window_bytes(&w) == 64 << 10) // and round trips alone do not resize the window
    }

    @Test func oneQuietEpochDoesNotShrinkTheWindow() {
        let s = settings()
        var w = window(s)
        #expect(rc_window_on_progress(&w, s.epoch_ns, 5_000_000, 1)) // 100 MB/s × 6 ms = 600 000
        #expect(rc_window_bytes(&w) == 600_000)
        #expect(rc_window_on_progress(&w, 2 * s.epoch_ns, 5_000_000, 1)) // nothing delivered: the last epoch's rate holds
        #expect(rc_window_bytes(&w) == 600_000)
        #expect(rc_window_on_progress(&w, 3 * s.epoch_ns, 5_000_000, 1)) // two quiet epochs: back to the minimum
        #expect(rc_window_bytes(&w) == 64 << 10)
    }

    /// From the minimum, the window grows while the ring has room and settles at the ring's share × delay once
    /// the ring is full: throughput reaches the capacity and the round trip stays near the delay, for a slow
    /// and a fast ring (§2.5.3: latency should be what the ring needs, not what the buffers hold).
    @Test(arguments: [(5, 12.5e6, 4.0 * 1e6), (1, 12.5e6, 4.0 * 1e6), (3, 125e6, 0.4 * 1e6)])
    func convergesToFullRingWithShortQueues(origins: Int, capacity: Double, baseTrip: Double) {
        let s = settings()
        var w = window(s)
        let ring = FluidRing(origins: origins, capacityBytesPerSecond: capacity, baseTripNanos: baseTrip)
        var delivered: UInt64 = 0
        var last = ring.run(window: rc_window_bytes(&w))
        for epoch in 1...40 {
            last = ring.run(window: rc_window_bytes(&w))
            delivered += UInt64(last.rate * Double(s.epoch_ns) / 1e9)
            _ = rc_window_on_progress(&w, UInt64(epoch) * s.epoch_ns, delivered, UInt32(origins))
        }
        last = ring.run(window: rc_window_bytes(&w))
        #expect(last.rate >= capacity * 0.999, "the ring is full")
        let minimumTrip = Double(origins) * Double(s.bytes_min) / capacity * 1e9
        #expect(last.tripNanos <= max(Double(s.delay_ns), baseTrip, minimumTrip) * 1.01, "queues hold about the delay, not megabytes")
        #expect(rc_window_bytes(&w) < s.bytes_max, "the window is sized from the ring, below its maximum")
    }
}

@Suite("Backpressure reaches the caller (rc_engine_broadcast)")
struct BroadcastAdmissionTests {
    private static let EAGAIN: Int32 = 11

    /// An engine that is created but not started takes nothing from its broadcast ring, so what it admits is
    /// exactly what rc_engine_broadcast lets in: the byte window (64 KiB until the first epoch has measured the
    /// ring) plus the staging, one message always, and then -EAGAIN, however many ring slots are free.
    @Test(arguments: [(10_000, 32 << 10), (10_000, 0), (100, 32 << 10), (200_000, 32 << 10)])
    func admitsTheWindowPlusStagingThenRefuses(size: Int, staging: Int) throws {
        var settings = rc_engine_settings()
        rc_engine_settings_default(&settings)
        settings.nodes = 2
        settings.`self` = 0
        settings.broadcast_ring_max = 4096
        settings.batch_bytes_max = UInt32(max(size, 64 << 10))
        settings.staging_bytes = UInt32(staging)
        var engine: OpaquePointer?
        #expect(rc_engine_create(&engine, &settings) == 0)
        defer { rc_engine_destroy(engine) }
        let payload = [UInt8](repeating: 7, count: size)
        var admitted = 0
        try payload.withUnsafeBytes { bytes in
            while true {
                let rc = rc_engine_broadcast(engine, bytes.baseAddress, UInt32(size), UInt64(admitted + 1))
                if rc == -Self.EAGAIN { break }
                try #require(rc == 0)
                admitted += 1
                try #require(admitted < 4096, "the ring's slots, not the bytes, stopped the producer")
            }
        }
        // The staging is staging_bytes, or an eighth of the window when that is more (engine.c).
        let window = 64 << 10
        let limit = window + max(staging, window / 8)
        #expect(admitted == max(1, limit / size), "admitted \(admitted) messages of \(size) B against \(limit) B")
        #expect(rc_engine_staging_bytes(engine) == UInt64(max(staging, window / 8)))
    }
}
