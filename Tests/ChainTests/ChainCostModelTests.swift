import CRingCastCore
import RingCastChain
import Testing

/// Spec §16.2 and §21.11: MAC operations per position from the cores' deterministic counters, against the model
/// (one ordering MAC per batch per successor; client and reply MACs per request).
@Suite struct ChainCostModelTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var f: UInt32
        var batchSizes: [Int]
        var testDescription: String { "f=\(f) batches \(batchSizes.count) mean \(Double(batchSizes.reduce(0, +)) / Double(batchSizes.count))" }
    }

    static let cases: [Case] = [
        Case(f: 1, batchSizes: Array(repeating: 1, count: 16)),
        Case(f: 1, batchSizes: Array(repeating: 8, count: 8)),
        Case(f: 1, batchSizes: Array(repeating: 64, count: 4)),
        Case(f: 2, batchSizes: Array(repeating: 1, count: 16)),
        Case(f: 2, batchSizes: Array(repeating: 8, count: 8)),
        Case(f: 2, batchSizes: Array(repeating: 64, count: 4)),
        Case(f: 1, batchSizes: [3, 1, 7, 8, 2, 5, 8, 1, 4]),
        Case(f: 2, batchSizes: [5, 8, 1, 2, 8, 8, 3]),
    ]

    @Test(arguments: cases)
    func section16_2_macOperationsPerPosition(_ c: Case) throws {
        let f = Int(c.f), bMax = c.batchSizes.max()!
        // No checkpoint falls inside the run (CHK above it), so every MAC counted is a fast-path one.
        let x = try ChainFixture(f: c.f, clients: 64, batchCount: UInt32(bMax), checkpointInterval: 1024,
                                 historyMax: UInt32(1024 + bMax))
        var states = [UInt64](repeating: 0, count: x.n)
        var timestamp: UInt64 = 1
        for size in c.batchSizes {
            for k in 0..<size { #expect(try x.submit(client: UInt32(k), timestamp: timestamp) == 0) }
            timestamp += 1
            _ = x.pump(states: &states, checkpoints: false)
        }
        let requests = UInt64(c.batchSizes.reduce(0, +)), batches = UInt64(c.batchSizes.count)
        #expect(x.cores[0].stats.batches_out == batches)
        let f1 = UInt64(f + 1)
        var perRequest: [Double] = []
        for (q, core) in x.cores.enumerated() {
            let s = core.stats
            let (verifications, generations): (UInt64, UInt64)
            switch q {
            case 0: (verifications, generations) = (requests, f1 * batches)
            case 1...f: (verifications, generations) = (requests + UInt64(q) * batches, f1 * batches)
            case (f + 1)..<(2 * f): (verifications, generations) = (f1 * batches, f1 * batches)
            case (2 * f)..<(3 * f): (verifications, generations) = (f1 * batches, UInt64(3 * f - q) * batches + requests)
            default: (verifications, generations) = (f1 * batches, requests)
            }
            #expect(s.mac_verifications == verifications, "r\(q + 1) verifications")
            #expect(s.mac_generations == generations, "r\(q + 1) generations")
            // The provider counted the same operations the core asked for.
            #expect(core.keyRing.stats.macVerifications == verifications && core.keyRing.stats.macGenerations == generations)
            perRequest.append(Double(s.mac_verifications + s.mac_generations) / Double(requests))
        }
        let meanBatch = Double(requests) / Double(batches)
        let bottleneck = 1 + Double(2 * f + 1) / meanBatch
        #expect(abs(perRequest.max()! - bottleneck) < 1e-9, "the bottleneck does 1 + (2f+1)/b")
        #expect(abs(perRequest[f] - bottleneck) < 1e-9 && abs(perRequest[2 * f] - bottleneck) < 1e-9,
                "reached at r_{f+1} ([T]) and at r_{2f+1}")
        #expect(abs(perRequest[0] - (1 + Double(f + 1) / meanBatch)) < 1e-9, "the head does 1 + (f+1)/b")
        #expect(abs(perRequest[3 * f] - (1 + Double(f + 1) / meanBatch)) < 1e-9, "the tail does 1 + (f+1)/b")
    }

    /// The client writes f+1 MACs and reads f+1 per request: 2(f+1).
    @Test(arguments: [UInt32(1), 2])
    func section16_2_clientOperations(f: UInt32) throws {
        let x = try ChainFixture(f: f)
        let client = try x.client(0)
        var states = [UInt64](repeating: 0, count: x.n)
        let r = x.request(client: 0, timestamp: 1, op: "x")
        #expect(x.cores[0].request(r, clientMACs: try client.authenticate(timestamp: 1, op: r.op)) == 0)
        let b = try #require(x.pump(states: &states).first)
        var state: UInt64 = 0
        #expect(client.commits(timestamp: 1, op: r.op, sn: 1, reply: ChainFixture.apply(&state, r.op),
                               historyDigest: b.historyDigests[0], replyMACs: b.replyMACs))
        #expect(client.keyRing.stats.macGenerations == UInt64(f) + 1 && client.keyRing.stats.macVerifications == UInt64(f) + 1)
    }
}
