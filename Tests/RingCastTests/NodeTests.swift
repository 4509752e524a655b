import RingCast
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Engine tests over loopback (ARCHITECTURE §4, level 3): real sockets and io_uring, short and bounded.
@Suite("RingCast.Node over loopback", .serialized)
struct NodeTests {
    /// §2.4 uniform total order: 3 nodes each broadcast 500 messages; every node delivers the same 1500-message
    /// sequence, each origin's messages in its sequence order, and each node gets its own tokens back in order.
    @Test(arguments: [DeliveryWay.handler, .sequence])
    func section2_4_threeNodesDeliverTheSameSequence(way: DeliveryWay) async throws {
        let perNode = 500
        let members = loopbackMembers(3)
        let ring = try TestRing(members: members, way: way) { $0.window = 64 }
        defer { ring.shutdown() }
        try await startRing(ring.nodes)
        try await withDeadline(30, "3 × 500 broadcasts") {
            try await withThrowingTaskGroup(of: [UInt64].self) { group in
                for (position, node) in ring.nodes.enumerated() {
                    group.addTask {
                        var tokens: [UInt64] = []
                        for index in 0..<perNode {
                            tokens.append(try await node.broadcast(testPayload(origin: position, index: index, size: 200)))
                        }
                        return tokens
                    }
                }
                for try await tokens in group { #expect(tokens == Array(1...UInt64(perNode))) }
            }
            try await ring.waitForDeliveries(3 * perNode)
            return ()
        }
        ring.shutdown()
        let seen = ring.seen()
        #expect(seen[0].entries.count == 3 * perNode)
        for node in 1..<3 { #expect(seen[node].entries == seen[0].entries, "node \(node) delivered another sequence") }
        for node in 0..<3 {
            #expect(seen[node].tokens == Array(1...UInt64(perNode)), "node \(node) own tokens")
            for origin in 0..<3 {
                let sequence = seen[node].entries.filter { $0.origin == origin }
                #expect(sequence.map(\.originSeq) == Array(1...UInt64(perNode)))
                let expected = (0..<perNode).map { index in
                    testPayload(origin: origin, index: index, size: 200).withUnsafeBytes { fnv1a($0) }
                }
                #expect(sequence.map(\.payloadHash) == expected, "node \(node) origin \(origin) payloads")
            }
            #expect(Set(seen[node].entries.map(\.viewId)) == [1])
        }
        let stats = ring.nodes.map(\.statistics)
        for stat in stats {
            #expect(stat.deliveredMessages == UInt64(3 * perNode))
            #expect(stat.broadcasts == UInt64(perNode))
            #expect(stat.broadcastsInFlight == 0)
        }
    }

    /// Zero copies in user space (ARCHITECTURE §2): with the synchronous handler and 4 KiB payloads nothing is
    /// copied; the asynchronous sequence copies each delivery once, by design, and says so.
    @Test(arguments: [DeliveryWay.handler, .sequence])
    func zeroCopyCounters(way: DeliveryWay) async throws {
        let perNode = 100
        let ring = try TestRing(members: loopbackMembers(3), way: way)
        defer { ring.shutdown() }
        try await startRing(ring.nodes)
        try await withDeadline(20, "zero-copy run") {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (position, node) in ring.nodes.enumerated() {
                    group.addTask {
                        for index in 0..<perNode {
                            try await node.broadcast(testPayload(origin: position, index: index, size: 4096))
                        }
                    }
                }
                try await group.waitForAll()
            }
            try await ring.waitForDeliveries(3 * perNode)
        }
        ring.shutdown()
        for node in ring.nodes {
            let stats = node.statistics
            #expect(stats.deliveredMessages == UInt64(3 * perNode))
            #expect(stats.enginePayloadCopies == 0)
            switch way {
            case .handler: #expect(stats.payloadCopies == 0)
            case .sequence: #expect(stats.payloadCopies == stats.deliveredMessages)
            }
        }
    }

    /// Backpressure end to end (ARCHITECTURE §2): one node's sequence consumer is slow. Its delivery ring fills
    /// and stays within its bound, the Swift buffer stays within its bound, the other nodes' broadcasts wait
    /// instead of piling up, and everything still completes.
    @Test func backpressureSlowSequenceConsumer() async throws {
        let perNode = 300
        let ringMax = 32
        let members = loopbackMembers(3)
        let limits = testLimits {
            $0.window = 16
            $0.batchCountMax = 4
            $0.deliveryRingMax = ringMax
            $0.deliveryBatchCountMax = ringMax + 1 // a peek then sees the whole ring: its occupancy
            $0.deliveryBatchesBufferedMax = 2
            $0.broadcastRingMax = 4
        }
        let slow = try Node(configuration: .init(position: 0, members: members, limits: limits))
        let fast = try (1..<3).map { position in
            try Node(configuration: .init(position: position, members: members, limits: limits)) { _ in }
        }
        defer {
            slow.shutdown()
            for node in fast { node.shutdown() }
        }
        try await startRing([slow] + fast)
        let consumed = try await withDeadline(60, "slow consumer run") {
            try await withThrowingTaskGroup(of: Int.self) { group in
                group.addTask {
                    var count = 0
                    for try await batch in slow.deliveries {
                        count += batch.count
                        try await Task.sleep(for: .microseconds(500 * batch.count)) // slow: 0.5 ms per delivery
                        if count == 3 * perNode { break }
                    }
                    return count
                }
                for (index, node) in ([slow] + fast).enumerated() {
                    group.addTask {
                        for message in 0..<perNode {
                            try await node.broadcast(testPayload(origin: index, index: message, size: 1024))
                        }
                        return 0
                    }
                }
                var total = 0
                for try await count in group { total += count }
                return total
            }
        }
        #expect(consumed == 3 * perNode)
        slow.shutdown()
        for node in fast { node.shutdown() }
        let stats = slow.statistics
        #expect(stats.deliveredMessages == UInt64(3 * perNode))
        #expect(stats.deliveryPeekHighWater <= ringMax, "the delivery ring held more than its bound")
        #expect(stats.deliveryBatchesBufferedHighWater <= 2)
        #expect(stats.deliveryStalls > 0, "the delivery ring never filled: the consumer was not slow enough")
        let waits = ([slow] + fast).map { $0.statistics.broadcastWaits }.reduce(0, +)
        #expect(waits > 0, "no broadcast ever waited: backpressure did not reach the senders")
        for node in [slow] + fast { #expect(node.statistics.broadcastsInFlight <= 16) }
    }

    /// The embedding example of the DocC catalogue (RingCast.md), with ports the kernel hands out: every node
    /// delivers the three messages, and all in the same order.
    @Test func doccEmbeddingExample() async throws {
        let orders = try await withDeadline(20, "DocC example") {
            try await embeddingExample(members: loopbackMembers(3))
        }
        #expect(orders.count == 3)
        #expect(orders.allSatisfy { $0 == orders[0] })
        #expect(Set(orders[0].map { $0.split(separator: ": ").last.map(String.init) ?? "" })
                == ["hello from node 0", "hello from node 1", "hello from node 2"])
    }

    @Test func singleNodeRingDeliversToItself() async throws {
        let node = try Node(configuration: .init(position: 0, members: loopbackMembers(1), limits: testLimits()))
        defer { node.shutdown() }
        try await startRing([node])
        let token = try await node.broadcast(Array("alone".utf8))
        let batch = try await withDeadline(10, "single node") {
            var iterator = node.deliveries.makeAsyncIterator()
            return try await iterator.next() ?? []
        }
        #expect(batch.map(\.payload) == [Array("alone".utf8)])
        #expect(batch.first?.isOwn == true && batch.first?.token == token && batch.first?.originSeq == 1)
    }
}

/// The lifecycle and its typed errors.
@Suite("RingCast.Node lifecycle", .serialized)
struct LifecycleTests {
    @Test func broadcastBeforeStartThrowsNotStarted() async throws {
        let node = try Node(configuration: .init(position: 0, members: loopbackMembers(2), limits: testLimits()))
        await #expect(throws: RingCastError.notStarted) { try await node.broadcast([1, 2, 3]) }
        node.shutdown()
        node.shutdown() // idempotent
        #expect(throws: RingCastError.alreadyStarted) { try node.start() }
    }

    @Test func payloadLargerThanBatchBytesThrows() async throws {
        let node = try Node(configuration: .init(position: 0, members: loopbackMembers(1),
                                                 limits: testLimits { $0.batchBytesMax = 1024 }))
        defer { node.shutdown() }
        try await startRing([node])
        await #expect(throws: RingCastError.payloadTooLarge(bytes: 1025, limit: 1024)) {
            try await node.broadcast([UInt8](repeating: 0, count: 1025))
        }
    }

    @Test func secondNodeOnTheSameAddressThrowsAddressInUse() async throws {
        let members = loopbackMembers(2)
        let first = try Node(configuration: .init(position: 0, members: members, limits: testLimits()))
        let second = try Node(configuration: .init(position: 0, members: members, limits: testLimits()))
        defer {
            first.shutdown()
            second.shutdown()
        }
        try first.start()
        #expect(throws: RingCastError.addressInUse(try Address(members[0]))) { try second.start() }
    }

    @Test func missingSuccessorTimesOut() async throws {
        let node = try Node(configuration: .init(position: 0, members: loopbackMembers(2),
                                                 limits: testLimits { $0.connectTimeoutMillis = 300 }))
        defer { node.shutdown() }
        try node.start()
        let clock = ContinuousClock()
        let started = clock.now
        // Our own wait gives up after 10 s; the engine's 300 ms connect timeout must end it well before (the margin
        // is for a loaded machine: 4 s was seen once with 3 busy loops on the 2 cores).
        await #expect(throws: RingCastError.connectTimeout) { try await node.waitUntilRunning(timeout: .seconds(10)) }
        #expect(clock.now - started < .seconds(8), "the engine's connect timeout did not bound the wait")
    }

    @Test func shutdownEndsTheSequenceAndFailsLaterBroadcasts() async throws {
        let node = try Node(configuration: .init(position: 0, members: loopbackMembers(1), limits: testLimits()))
        try await startRing([node])
        let ended = Task {
            var batches = 0
            for try await _ in node.deliveries { batches += 1 }
            return batches
        }
        try await Task.sleep(for: .milliseconds(50))
        node.shutdown()
        let batches = try await withDeadline(5, "sequence end") { try await ended.value }
        #expect(batches == 0)
        #expect(node.status == .stopped)
        await #expect(throws: RingCastError.shutdown) { try await node.broadcast([1]) }
    }
}

/// Configuration is validated at construction, with typed errors.
@Suite("RingCast.Node.Configuration")
struct ConfigurationTests {
    @Test(arguments: ["127.0.0.1", "127.0.0.1:", "127.0.0.1:70000", "127.0.0.1:0", "example.com:80", "::1:80",
                      "[::1:80", ":80", "1.2.3:80"])
    func badAddressesAreRefused(text: String) {
        #expect(throws: RingCastError.self) { try Address(text) }
        do {
            _ = try Address(text)
        } catch {
            guard case .invalidAddress = error else {
                Issue.record("expected invalidAddress, got \(error)")
                return
            }
        }
    }

    @Test func goodAddressesParse() throws {
        #expect(try Address("127.0.0.1:7000").port == 7000)
        #expect(try Address("[::1]:7001").host == "::1")
        #expect(try Address("[::1]:7001").description == "[::1]:7001")
        #expect(try Address("localhost:7002").host == "localhost")
    }

    @Test func ringShapeIsChecked() throws {
        let members = ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"]
        let configuration = try Node.Configuration(position: 2, members: members)
        #expect(configuration.successor == (try Address("127.0.0.1:7000")))
        #expect(configuration.nodeCount == 3)
        #expect(throws: RingCastError.self) { try Node.Configuration(position: 3, members: members) }
        #expect(throws: RingCastError.self) { try Node.Configuration(position: 0, members: []) }
        #expect(throws: RingCastError.self) {
            try Node.Configuration(position: 0, members: ["127.0.0.1:7000", "127.0.0.1:7000"])
        }
        let tooMany = (0...Node.Configuration.nodeCountMax).map { "127.0.0.1:\(7000 + $0)" }
        #expect(throws: RingCastError.self) { try Node.Configuration(position: 0, members: tooMany) }
    }

    @Test func limitsAreChecked() throws {
        let members = ["127.0.0.1:7000", "127.0.0.1:7001"]
        func refused(_ adjust: (inout Node.Limits) -> Void) -> Bool {
            var limits = Node.Limits()
            adjust(&limits)
            do {
                _ = try Node.Configuration(position: 0, members: members, limits: limits)
                return false
            } catch {
                if case .invalidConfiguration = error { return true }
                return false
            }
        }
        #expect(refused { $0.window = 0 })
        #expect(refused { $0.window = Node.Limits.windowMax + 1 })
        #expect(refused { $0.batchCountMax = Node.Limits.batchCountMaxLimit + 1 })
        #expect(refused { $0.batchBytesMax = 0 })
        #expect(refused { $0.deliveryRingMax = $0.batchCountMax - 1 })
        #expect(refused { $0.heartbeatMillis = Node.Limits.heartbeatMillisMax + 1 })
        #expect(refused { $0.receiveBufferBytes = Node.Limits.receiveBufferBytesMax + 1 })
        #expect(refused { $0.deliveryBatchesBufferedMax = 0 })
        #expect(!refused { _ in })
    }

    @Test func engineRefusesATooSmallReceiveBuffer() throws {
        var limits = Node.Limits()
        limits.receiveBufferBytes = 4096
        let configuration = try Node.Configuration(position: 0, members: loopbackMembers(2), limits: limits)
        #expect {
            _ = try Node(configuration: configuration)
        } throws: { error in
            guard let error = error as? RingCastError, case .invalidConfiguration = error else { return false }
            return true
        }
    }
}

enum DeliveryWay: Sendable, CustomStringConvertible {
    case handler
    case sequence
    var description: String { self == .handler ? "synchronous handler" : "async sequence" }
}

/// n nodes, each recording what it delivered: through the synchronous handler, or through a task that drains
/// the asynchronous sequence.
final class TestRing: Sendable {
    let nodes: [Node]
    private let records: [Recorder]
    private let drains: Mutex<[Task<Void, Never>]>
    private let stopping: Flag

    /// - Parameter handlerDelayMicros: extra time the synchronous handler spends per delivery (a slow consumer
    ///   on the engine thread).
    init(members: [String], way: DeliveryWay, handlerDelayMicros: UInt32 = 0,
         limits adjust: (inout Node.Limits) -> Void = { _ in }) throws {
        let limits = testLimits(adjust)
        let records = members.map { _ in Recorder() }
        self.records = records
        stopping = Flag()
        var nodes: [Node] = []
        for position in members.indices {
            let configuration = try Node.Configuration(position: position, members: members, limits: limits)
            switch way {
            case .handler:
                let record = records[position]
                nodes.append(try Node(configuration: configuration) { batch in
                    record.state.withLock { seen in
                        seen.batches += 1
                        batch.forEach { delivery in
                            seen.entries.append(.init(origin: delivery.origin, originSeq: delivery.originSeq,
                                                      viewId: delivery.viewId, payloadHash: fnv1a(delivery.payload),
                                                      length: delivery.payload.count))
                            if delivery.isOwn { seen.tokens.append(delivery.token) }
                            if handlerDelayMicros > 0 { usleep(handlerDelayMicros) }
                        }
                    }
                })
            case .sequence:
                nodes.append(try Node(configuration: configuration))
            }
        }
        self.nodes = nodes
        var drains: [Task<Void, Never>] = []
        let stopping = stopping
        if way == .sequence {
            for (position, node) in nodes.enumerated() {
                let record = records[position]
                drains.append(Task {
                    do {
                        for try await batch in node.deliveries {
                            record.state.withLock { seen in
                                seen.batches += 1
                                for delivery in batch {
                                    seen.entries.append(.init(
                                        origin: delivery.origin, originSeq: delivery.originSeq, viewId: delivery.viewId,
                                        payloadHash: delivery.payload.withUnsafeBytes { fnv1a($0) },
                                        length: delivery.payload.count))
                                    if delivery.isOwn { seen.tokens.append(delivery.token) }
                                }
                            }
                        }
                    } catch {
                        // In a static ring, the first node to shut down resets its neighbours' links: a failure
                        // after the test began shutting down is expected.
                        if !stopping.value.load(ordering: .acquiring) {
                            Issue.record("deliveries of node \(position) failed: \(error)")
                        }
                    }
                })
            }
        }
        self.drains = Mutex(drains)
    }

    func seen() -> [Seen] { records.map { $0.state.withLock { $0 } } }

    /// Waits (polling every 5 ms) until every node recorded `count` deliveries.
    func waitForDeliveries(_ count: Int) async throws {
        while records.contains(where: { $0.state.withLock { $0.entries.count } < count }) {
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    func shutdown() {
        stopping.value.store(true, ordering: .releasing)
        for node in nodes { node.shutdown() }
    }
}

final class Recorder: Sendable {
    let state = Mutex(Seen())
}

final class Flag: Sendable {
    let value = Atomic<Bool>(false)
}
