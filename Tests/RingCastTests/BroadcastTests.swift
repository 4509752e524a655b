import RingCast
import Synchronization
import Testing

/// `broadcast` under backpressure: concurrent callers, waiting, cancellation.
@Suite("RingCast.Node broadcast", .serialized)
struct BroadcastTests {
    /// Four tasks broadcast on one node with a tiny window and broadcast ring, so most calls wait for space:
    /// every call returns a distinct token, and every message is delivered once, in each task's order.
    @Test func concurrentBroadcastersAllComplete() async throws {
        let perTask = 200
        let ring = try TestRing(members: loopbackMembers(2), way: .handler) {
            $0.window = 4
            $0.broadcastRingMax = 2
        }
        defer { ring.shutdown() }
        try await startRing(ring.nodes)
        let tokens = try await withDeadline(30, "4 concurrent broadcasters") {
            try await withThrowingTaskGroup(of: [UInt64].self) { group in
                for task in 0..<4 {
                    group.addTask {
                        var tokens: [UInt64] = []
                        for index in 0..<perTask {
                            tokens.append(try await ring.nodes[0].broadcast(testPayload(origin: task, index: index, size: 64)))
                        }
                        return tokens
                    }
                }
                var all: [[UInt64]] = []
                for try await tokens in group { all.append(tokens) }
                return all
            }
        }
        for list in tokens { #expect(list == list.sorted(), "one task's tokens are not increasing") }
        #expect(Set(tokens.joined()) == Set(1...UInt64(4 * perTask)))
        try await withDeadline(10, "deliveries") { try await ring.waitForDeliveries(4 * perTask) }
        ring.shutdown()
        #expect(ring.nodes[0].statistics.broadcastWaits > 0, "the tiny window never made a broadcast wait")
        #expect(ring.seen()[1].entries == ring.seen()[0].entries)
    }

    /// A broadcast that waits for space can be cancelled: it throws `cancelled` and was not broadcast.
    @Test func waitingBroadcastIsCancellable() async throws {
        let members = loopbackMembers(1)
        let node = try Node(configuration: .init(position: 0, members: members, limits: testLimits {
            $0.window = 2
            $0.broadcastRingMax = 1
            $0.batchCountMax = 1
            $0.deliveryRingMax = 1
            $0.deliveryBatchesBufferedMax = 1
        }))
        defer { node.shutdown() }
        try await startRing([node])
        // Nobody reads `deliveries`: the delivery ring and the buffer fill, then the window, then the broadcast ring.
        let filled = Task {
            var sent = 0
            while !Task.isCancelled {
                do throws(RingCastError) {
                    try await node.broadcast([UInt8](repeating: 1, count: 16))
                    sent += 1
                } catch {
                    return (sent, error)
                }
            }
            return (sent, RingCastError.cancelled)
        }
        try await Task.sleep(for: .milliseconds(300))
        #expect(node.statistics.broadcastWaits > 0, "the broadcaster is not waiting")
        filled.cancel()
        let (sent, error) = try await withDeadline(5, "cancelled broadcast") { await filled.value }
        #expect(error == .cancelled)
        #expect(sent >= 1 && sent < 20, "sent \(sent) before blocking")
    }

    /// A broadcast waiting for space when the node shuts down throws `shutdown`.
    @Test func waitingBroadcastFailsOnShutdown() async throws {
        let node = try Node(configuration: .init(position: 0, members: loopbackMembers(1), limits: testLimits {
            $0.window = 2
            $0.broadcastRingMax = 1
            $0.batchCountMax = 1
            $0.deliveryRingMax = 1
            $0.deliveryBatchesBufferedMax = 1
        }))
        try await startRing([node])
        let blocked = Task { () -> RingCastError in
            do throws(RingCastError) {
                while true { try await node.broadcast([1, 2, 3]) }
            } catch {
                return error
            }
        }
        try await Task.sleep(for: .milliseconds(300))
        node.shutdown()
        let error = try await withDeadline(5, "broadcast after shutdown") { await blocked.value }
        #expect(error == .shutdown)
    }
}
