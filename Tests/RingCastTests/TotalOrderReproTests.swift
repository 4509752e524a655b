import Foundation
import RingCast
import Testing

/// Total order with the engine's default limits (window 1024 / 2 MiB, batches of 64 / 64 KiB, fairness on),
/// every node sending at once: the `ringcast-node` benchmark's shape, in one process.
///
/// Regression test: at ~14:25 UTC on 2026-11-21 this failed with 3 nodes and 3 kB and 10 kB payloads — the nodes
/// delivered the same set in different orders (e.g. node 2 differed from node 0 at delivery 1232: 0/418 vs 1/380),
/// only with fairness on and batching (batch count 1, window 16 or fairness off passed). It passed again after the
/// engine/LCR changes of 14:31–14:43 UTC. The handler hashes each payload in Swift, which makes the engine thread
/// slow enough to reach the failing interleavings. `RC_REPRO_PER_NODE=4000` makes it longer.
@Suite("Total order, default limits", .serialized)
struct TotalOrderDefaultLimitsTests {
    @Test(arguments: [200, 3_000, 4_096, 10_000])
    func section2_4_sameSequenceWithDefaultLimits(size: Int) async throws {
        let perNode = Int(ProcessInfo.processInfo.environment["RC_REPRO_PER_NODE"] ?? "") ?? 1000
        let nodes = 3
        let ring = try TestRing(members: loopbackMembers(nodes), way: .handler)
        defer { ring.shutdown() }
        try await startRing(ring.nodes)
        try await withDeadline(30, "3 × \(perNode) broadcasts of \(size) bytes") {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (position, node) in ring.nodes.enumerated() {
                    group.addTask {
                        for index in 0..<perNode {
                            try await node.broadcast(testPayload(origin: position, index: index, size: size))
                        }
                    }
                }
                try await group.waitForAll()
            }
            try await ring.waitForDeliveries(nodes * perNode)
        }
        ring.shutdown()
        let seen = ring.seen()
        for node in 1..<nodes {
            let reference = seen[0].entries
            let other = seen[node].entries
            let first = reference.indices.first { $0 >= other.count || reference[$0] != other[$0] }
            let detail = first.map { index in
                index < other.count
                    ? "\(reference[index].origin)/\(reference[index].originSeq) vs \(other[index].origin)/\(other[index].originSeq)"
                    : "node \(node) delivered only \(other.count)"
            } ?? ""
            #expect(first == nil, "node \(node) differs from node 0 at delivery \(first ?? -1): \(detail)")
        }
    }
}
