// LCRCore: the steady-state cost of the sans-IO LCR core (rc_lcr.h) per delivered LCR message, for a
// ring of 2 and of 5 processes in one address space, every process a continuous sender.
//
// One unit of the scaling factor is one delivery at one process, so the wall clock per unit is what one
// core spends, on average, per LCR message it delivers: its share of broadcasting, forwarding, ACK
// handling and ordering (rc_lcr_broadcast, rc_lcr_next_frame, rc_lcr_on_frame, rc_lcr_next_deliveries)
// plus the harness's copy of each frame onto the link (what a wire decoder would write).
//
// Gated (Thresholds/*.p90.json): mallocCountTotal = 0. The core allocates only at init and the harness
// preallocates everything in `setup`, so any allocation in the measured rounds is a regression.

import Benchmark
import CRingCast

/// Deterministic counters of the schedule, per scaling-factor deliveries (reported, not gated).
enum LCRCounters {
    static let frames = BenchmarkMetric.custom("frames", polarity: .prefersSmaller, useScalingFactor: false)
    static let ackOnlyFrames = BenchmarkMetric.custom("ack-only frames", polarity: .prefersSmaller, useScalingFactor: false)
}

let benchmarks: @Sendable () -> Void = {
    // Only the malloc count is deterministic enough to gate on this shared 2-core machine; time is reported.
    let gate: [BenchmarkMetric: BenchmarkThresholds] = [
        .mallocCountTotal: .init(absolute: [.p0: 0, .p50: 0, .p90: 0, .p99: 0, .p100: 0]),
    ]
    let configuration = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal, LCRCounters.frames, LCRCounters.ackOnlyFrames],
        timeUnits: .nanoseconds,
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 20_000,
        thresholds: gate
    )

    for nodes in [2, 5] {
        Benchmark("ring-n\(nodes)", configuration: configuration) { (benchmark: Benchmark, ring: LCRRing) in
            let framesBefore = ring.statsSum { $0.frames_out }
            let ackOnlyBefore = ring.statsSum { $0.ack_only_frames }
            let units = UInt64(benchmark.scaledIterations.count)
            // Carry any overshoot of the previous iteration so the average per unit stays exact.
            let target = ring.deliveries - ring.deliveries % units + units
            benchmark.startMeasurement()
            ring.run(untilDeliveries: target)
            benchmark.stopMeasurement()
            ring.checkHealthy()
            benchmark.measurement(LCRCounters.frames, Int(ring.statsSum { $0.frames_out } - framesBefore))
            benchmark.measurement(LCRCounters.ackOnlyFrames, Int(ring.statsSum { $0.ack_only_frames } - ackOnlyBefore))
        } setup: {
            let ring = LCRRing(nodes: nodes)
            // Reach the steady state (queues full, fairness settled) before anything is measured.
            for _ in 0..<(1_000 * nodes) { ring.round() }
            ring.checkHealthy()
            return ring
        }
    }
}
