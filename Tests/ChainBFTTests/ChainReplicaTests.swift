import ChainBFT
import RingCastChain
import RingCastSMR
import Testing

/// Four (and seven) replicas over loopback TCP and io_uring, in this process (one engine thread each).
@Suite(.serialized)
struct ChainReplicaTests {
    /// Spec C1–C4 end to end: every request commits with the reply the service computed, in one order.
    @Test(arguments: [UInt32(1), 2])
    func section5_3_2_requestsCommitThroughTheChain(f: UInt32) async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try TestCluster(f: f)
        defer { cluster.stop() }
        let client = try cluster.client(0)
        defer { client.close() }
        var last: UInt64 = 0
        for k in 0..<50 {
            let output = try await put(client, "k\(k % 7)", "v\(k)")
            #expect(output.value == Array("v\(k)".utf8))
            #expect(output.digest != last)
            last = output.digest
        }
        let read = try await get(client, "k3")
        #expect(read.value == Array("v45".utf8))
        #expect(read.digest == last)
        #expect(client.statistics.commits == 51)
        #expect(client.statistics.panics == 0)
    }

    /// Pipelined clients: every request commits, and every replica ends with the same state (the store replicated).
    @Test func pipelinedClientsReplicateTheStore() async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try TestCluster(f: 1)
        let clients = try (0..<3).map { try cluster.client(UInt32($0), window: 8) }
        let committed = try await withThrowingTaskGroup(of: Int.self) { group in
            for (c, client) in clients.enumerated() {
                for lane in 0..<8 {
                    group.addTask {
                        var count = 0
                        for k in 0..<40 {
                            _ = try await put(client, "c\(c)-\(lane)-\(k % 5)", "v\(k)")
                            count += 1
                        }
                        return count
                    }
                }
            }
            var total = 0
            for try await count in group { total += count }
            return total
        }
        #expect(committed == 3 * 8 * 40)
        for client in clients { client.close() }
        cluster.stop()
        let stats = cluster.replicas.map(\.statistics)
        #expect(stats.allSatisfy { $0.executed == UInt64(committed) })
        #expect(Set(stats.map(\.stateDigest)).count == 1)
        #expect(stats[0].stateDigest != nil)
        #expect(stats.allSatisfy { !$0.stopped && $0.malformedFrames == 0 })
        // Batching happened (several clients in flight) and checkpoints became stable (CHK = 16).
        #expect(stats[0].batchesOut < UInt64(committed))
        #expect(stats.allSatisfy { $0.stableCheckpoint >= 1 })
    }
}
