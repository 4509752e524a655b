@testable import RingCastSMR
import Testing

/// The client port's warnings from the network are rate-limited: the first of a burst at once, then one line per
/// interval standing for every event since the last line (a clock of the test's own: no sleeping).
@Suite struct WarningRateLimitTests {
    @Test func firstAtOnceThenOnePerIntervalCountingTheSuppressed() {
        let limit = WarningRateLimit(intervalNanos: 1_000)
        #expect(limit.admit(nowNanos: 5_000) == 1)
        for t in stride(from: UInt64(5_001), to: 6_000, by: 100) { #expect(limit.admit(nowNanos: t) == nil) }
        // 10 suppressed (5 001 … 5 901), then the one at 6 000 is logged and stands for 11.
        #expect(limit.admit(nowNanos: 6_000) == 11)
        #expect(limit.admit(nowNanos: 6_999) == nil)
        #expect(limit.admit(nowNanos: 50_000) == 2)
        #expect(limit.admit(nowNanos: 50_001) == nil)
    }

    @Test func aThousandRefusalsInOneIntervalMakeOneLine() {
        let limit = WarningRateLimit(intervalNanos: 10_000_000_000)
        let logged = (0..<1_000).compactMap { limit.admit(nowNanos: 1 + UInt64($0) * 1_000) }
        #expect(logged == [1])
    }
}
