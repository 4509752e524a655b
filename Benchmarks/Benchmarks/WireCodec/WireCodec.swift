// WireCodec: the frame codec (rc_wire.h) for a ring of n = 5, one DATA frame carrying one piggy-backed
// ACK per origin (the largest hop header for n = 5) and either a batch of 10 × 100 B or 1 × 10 kB
// application messages.
//
//   encode: rc_wire_message_header_encode (what the origin writes once) + rc_wire_hop_encode (what every
//           hop rewrites); payloads are never copied, they go out as their own iovecs.
//   decode: rc_wire_decode of the whole frame + a walk over the application messages in place.
// One unit of the scaling factor is one frame.
//
// Gated (Thresholds/*.p90.json): mallocCountTotal = 0. The codec allocates nothing (rc_wire.h) and the
// fixture's buffers are made in `setup`.

import Benchmark
import CRingCast

let benchmarks: @Sendable () -> Void = {
    let gate: [BenchmarkMetric: BenchmarkThresholds] = [
        .mallocCountTotal: .init(absolute: [.p0: 0, .p50: 0, .p90: 0, .p99: 0, .p100: 0]),
    ]
    let configuration = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        timeUnits: .nanoseconds,
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: .seconds(1),
        maxIterations: 20_000,
        thresholds: gate
    )

    let batches: [(name: String, count: Int, bytes: UInt32)] = [("10x100B", 10, 100), ("1x10kB", 1, 10_240)]
    for batch in batches {
        Benchmark("encode-n5-\(batch.name)", configuration: configuration) { benchmark, fixture in
            var written = 0
            for _ in benchmark.scaledIterations { written &+= fixture.encode() }
            blackHole(written)
        } setup: {
            WireFixture(nodes: 5, appCount: batch.count, appBytes: batch.bytes)
        }

        Benchmark("decode-n5-\(batch.name)", configuration: configuration) { benchmark, fixture in
            var seen = 0
            for _ in benchmark.scaledIterations { seen &+= fixture.decode() }
            blackHole(seen)
        } setup: {
            WireFixture(nodes: 5, appCount: batch.count, appBytes: batch.bytes)
        }
    }
}
