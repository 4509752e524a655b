import RingCast
@testable import RingCastSMR
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A counter: `add(delta)` returns the new value; the query returns the value.
struct Counter: StateMachine {
    struct Add: SMRCodable, Sendable {
        var delta: Int64
        func encode(into writer: inout ByteWriter) { writer.int64(delta) }
        init(delta: Int64) { self.delta = delta }
        init(from reader: inout ByteReader) throws(SMRCodecError) { delta = try reader.int64() }
    }
    struct Get: SMRCodable, Sendable {
        func encode(into writer: inout ByteWriter) {}
        init() {}
        init(from reader: inout ByteReader) throws(SMRCodecError) {}
    }
    struct Value: SMRCodable, Sendable, Equatable {
        var value: Int64
        func encode(into writer: inout ByteWriter) { writer.int64(value) }
        init(_ value: Int64) { self.value = value }
        init(from reader: inout ByteReader) throws(SMRCodecError) { value = try reader.int64() }
    }

    var value: Int64 = 0
    var applied: UInt64 = 0

    mutating func apply(_ batch: CommandBatch<Add>, into outputs: inout [Value]) {
        for (command, _) in batch {
            value &+= command.delta
            applied += 1
            outputs.append(Value(value))
        }
    }
    func query(_ query: Get) -> Value { Value(value) }
    func snapshot(into writer: inout SnapshotWriter) throws(SnapshotError) {
        try writer.uint64(UInt64(bitPattern: value))
        try writer.uint64(applied)
    }
    mutating func restore(from reader: inout SnapshotReader) throws(SnapshotError) {
        value = Int64(bitPattern: try reader.uint64())
        applied = try reader.uint64()
    }
}

typealias CounterClient = SMRClient<Counter.Add, Counter.Get, Counter.Value>

/// The request timeout of tests whose subject is not the timeout: CI runs the other suites of the target beside
/// them on 2 cores, where a request has waited longer than the client's default 5 s for a thread of the cooperative
/// pool (the send path's task) or for the reader thread.
let testTimeoutMillis = 30_000

final class CounterCluster: Sendable {
    let addresses: [UInt32: Address]
    let replicas = Mutex<[UInt32: Replica<Counter>]>([:])

    init(size: Int) throws {
        var addresses: [UInt32: Address] = [:]
        for (index, port) in freePortPairs(size).enumerated() {
            addresses[UInt32(index)] = try Address(host: "127.0.0.1", port: port)
        }
        self.addresses = addresses
    }

    @discardableResult
    func start(_ me: UInt32, initialView: [UInt32], options adjust: (inout Replica<Counter>.Options) -> Void = { _ in },
               security: Security = Security()) throws -> Replica<Counter> {
        var configuration = Group.Configuration(me: me, addresses: addresses, initialView: initialView)
        configuration.security = security
        // Silence is suspected only after 1.5 s: a loaded test machine must not exclude a live replica (the tests
        // that stop one rely on its sockets closing, which is detected at once).
        configuration.heartbeatMillis = 20
        configuration.suspectMillis = 1_500
        configuration.roundTimeoutMillis = 1_000
        configuration.limits.connectTimeoutMillis = 5_000
        configuration.logger.logLevel = .warning
        var options = Replica<Counter>.Options(clientPort: 0)
        options.logger.logLevel = .warning
        adjust(&options)
        let replica = try Replica(configuration: configuration, machine: Counter(), options: options)
        try replica.start()
        replicas.withLock { $0[me] = replica }
        return replica
    }

    func replica(_ id: UInt32) -> Replica<Counter> { replicas.withLock { $0[id]! } }

    func clientAddresses(_ ids: [UInt32]) throws -> [Address] {
        try ids.map { try Address(host: "127.0.0.1", port: replica($0).clientPort) }
    }

    func shutdownAll() {
        for replica in replicas.withLock({ Array($0.values) }) { replica.shutdown() }
    }

    /// Waits until the given replicas applied the same index, then returns their digests.
    func settledDigests(_ ids: [UInt32], timeoutSeconds: Double = 10) async throws -> [(index: UInt64, digest: UInt64)] {
        let deadline = ContinuousClock.now.advanced(by: .milliseconds(Int(timeoutSeconds * 1000)))
        while true {
            let digests = try ids.map { try replica($0).stateDigest() }
            if Set(digests.map(\.index)).count == 1 || ContinuousClock.now >= deadline { return digests }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

func withDeadline<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
            return nil
        }
        guard let first = try await group.next(), let value = first else {
            group.cancelAll()
            Issue.record("timed out after \(seconds) s")
            throw CancellationError()
        }
        group.cancelAll()
        return value
    }
}

final class StartedBox: Sendable { let count = Atomic<Int>(0) }

/// Writes `total` increments with 4 lanes through one client (made by `connect`); `box` counts the acknowledged ones.
func incrementLoad(total: Int, box: StartedBox,
                   connect: @escaping @Sendable () async throws -> CounterClient) -> Task<Void, Error> {
    Task {
        let client = try await connect()
        defer { client.close() }
        try await withThrowingTaskGroup(of: Void.self) { lanes in
            for lane in 0..<4 {
                lanes.addTask {
                    for _ in stride(from: lane, to: total, by: 4) {
                        _ = try await client.submit(Counter.Add(delta: 1))
                        box.count.add(1, ordering: .relaxed)
                    }
                }
            }
            try await lanes.waitForAll()
        }
    }
}

/// Outcomes of one client's increments.
struct Tally: Sendable {
    var acknowledged = 0
    var inDoubt = 0
    var lastValue: Int64 = 0
    var failovers: UInt64 = 0
}

@Suite(.serialized) struct ReplicaTests {
    @Test func counter_incrementsThroughEveryReplica_allReadModes() async throws {
        let cluster = try CounterCluster(size: 3)
        defer { cluster.shutdownAll() }
        for id in UInt32(0)..<3 { try cluster.start(id, initialView: [0, 1, 2]) }
        for id in UInt32(0)..<3 { try await cluster.replica(id).group.waitUntilRunning() }
        let addresses = try cluster.clientAddresses([0, 1, 2])
        try await withDeadline(30) {
            var options = CounterClient.Options(replicas: addresses)
            options.timeoutMillis = testTimeoutMillis
            options.preferred = 1
            let writer = try await CounterClient.connect(options)
            options.preferred = 2
            let reader = try await CounterClient.connect(options)
            defer { writer.close(); reader.close() }
            for round in 1...20 {
                let committed = try await writer.submitCommitted(Counter.Add(delta: 1))
                #expect(committed.output.value == Int64(round))
                // Linearizable at another replica: sees the acknowledged write.
                #expect(try await reader.read(Counter.Get()).value >= Int64(round))
            }
            // Sequential read at replica 2 carrying the writer's index: read-your-writes across replicas.
            let last = try await writer.submitCommitted(Counter.Add(delta: 5))
            #expect(try await writer.read(Counter.Get(), consistency: .sequential).value >= last.output.value)
            _ = try await reader.read(Counter.Get(), consistency: .stale)
            #expect(writer.index >= last.index)
        }
        let digests = try await cluster.settledDigests([0, 1, 2])
        #expect(Set(digests.map(\.index)).count == 1)
        #expect(Set(digests.map(\.digest)).count == 1)
        #expect(cluster.replica(0).withMachine { $0.value } == 25)
        let statistics = cluster.replica(2).statistics
        #expect(statistics.readsLinearizable >= 20)
        #expect(statistics.barriersDelivered >= 1)
    }

    /// Many tasks pipelining on one client (window 64): requests queued while another task sends leave in that
    /// task's `send` (combining), and a replica writes a delivered batch's replies from the delivery thread.
    /// Every request gets its own reply exactly once: the outputs are the counter's values 1…n, each once.
    @Test func pipelined_manyTasksOnOneClient_everyRequestAppliedOnceWithItsOwnReply() async throws {
        let cluster = try CounterCluster(size: 3)
        defer { cluster.shutdownAll() }
        for id in UInt32(0)..<3 { try cluster.start(id, initialView: [0, 1, 2]) }
        for id in UInt32(0)..<3 { try await cluster.replica(id).group.waitUntilRunning() }
        let addresses = try cluster.clientAddresses([0, 1, 2])
        let tasks = 64
        let perTask = 40
        let values: [Int64] = try await withDeadline(45) {
            var options = CounterClient.Options(replicas: addresses)
            options.windowMax = 64
            options.timeoutMillis = testTimeoutMillis
            let client = try await CounterClient.connect(options)
            defer { client.close() }
            return try await withThrowingTaskGroup(of: [Int64].self) { group in
                for _ in 0..<tasks {
                    group.addTask {
                        var seen: [Int64] = []
                        for _ in 0..<perTask { seen.append(try await client.submit(Counter.Add(delta: 1)).value) }
                        return seen
                    }
                }
                var all: [Int64] = []
                for try await some in group { all += some }
                return all
            }
        }
        #expect(values.count == tasks * perTask)
        #expect(Set(values) == Set((1...Int64(tasks * perTask)).map { $0 }), "every increment applied once, each reply its own")
        #expect(cluster.replica(0).withMachine { $0.value } == Int64(tasks * perTask))
    }

    @Test func failover_replicaShutDownMidLoad_counterIsAcknowledgedPlusAtMostInDoubt() async throws {
        let cluster = try CounterCluster(size: 3)
        defer { cluster.shutdownAll() }
        for id in UInt32(0)..<3 { try cluster.start(id, initialView: [0, 1, 2]) }
        for id in UInt32(0)..<3 { try await cluster.replica(id).group.waitUntilRunning() }
        let addresses = try cluster.clientAddresses([0, 1, 2])
        let clients = 4
        let perClient = 150
        let started = StartedBox()
        let tallies = try await withDeadline(45) {
            try await withThrowingTaskGroup(of: Tally.self) { group in
                for client in 0..<clients {
                    group.addTask {
                        var options = CounterClient.Options(replicas: addresses)
                        options.preferred = client % 2 == 0 ? 0 : 1 // half of them on the replica that dies
                        options.timeoutMillis = 10_000
                        options.windowMax = 4
                        let session = try await CounterClient.connect(options)
                        defer { session.close() }
                        var tally = Tally()
                        for _ in 0..<perClient {
                            started.count.add(1, ordering: .relaxed)
                            do {
                                tally.lastValue = try await session.submit(Counter.Add(delta: 1)).value
                                tally.acknowledged += 1
                            } catch {
                                tally.inDoubt += 1
                            }
                        }
                        tally.failovers = session.statistics.failovers
                        return tally
                    }
                }
                group.addTask {
                    while started.count.load(ordering: .relaxed) < clients * perClient / 3 {
                        try await Task.sleep(for: .milliseconds(2))
                    }
                    cluster.replica(0).shutdown()
                    return Tally()
                }
                var all: [Tally] = []
                for try await tally in group { all.append(tally) }
                return all
            }
        }
        let acknowledged = tallies.reduce(0) { $0 + $1.acknowledged }
        let inDoubt = tallies.reduce(0) { $0 + $1.inDoubt }
        let digests = try await cluster.settledDigests([1, 2])
        #expect(digests[0] == digests[1], "the survivors diverged: \(digests)")
        let value = cluster.replica(1).withMachine { $0.value }
        let applied = cluster.replica(1).withMachine { $0.applied }
        #expect(Int64(applied) == value, "every applied command added 1")
        #expect(value >= Int64(acknowledged), "an acknowledged increment was lost: \(value) < \(acknowledged)")
        #expect(value <= Int64(acknowledged + inDoubt), "applied twice: \(value) > \(acknowledged) + \(inDoubt)")
        #expect(acknowledged > clients * perClient / 2)
        // The clients of the replica that died moved to another one.
        #expect(tallies.reduce(0) { $0 + $1.failovers } >= 1)
        print("failover: acknowledged \(acknowledged), in doubt \(inDoubt), counter \(value), failovers \(tallies.map(\.failovers))")
    }

    @Test func snapshot_joinerReceivesStateAtLoad_digestsEqual() async throws {
        let cluster = try CounterCluster(size: 3)
        defer { cluster.shutdownAll() }
        // Tiny chunks: the state streams as many chunk frames over the provider's client port.
        let tinyChunks: (inout Replica<Counter>.Options) -> Void = { $0.snapshotChunkBytes = 64 }
        for id in UInt32(0)..<2 { try cluster.start(id, initialView: [0, 1], options: tinyChunks) }
        for id in UInt32(0)..<2 { try await cluster.replica(id).group.waitUntilRunning() }
        let addresses = try cluster.clientAddresses([0, 1])
        let load = Task {
            var options = CounterClient.Options(replicas: addresses)
            options.windowMax = 8
            options.timeoutMillis = testTimeoutMillis
            let client = try await CounterClient.connect(options)
            defer { client.close() }
            var count = 0
            while !Task.isCancelled && count < 3_000 {
                _ = try await client.submit(Counter.Add(delta: 1))
                count += 1
            }
            return count
        }
        try await Task.sleep(for: .milliseconds(300))
        let joiner = try cluster.start(2, initialView: [0, 1], options: tinyChunks)
        try await withDeadline(20) { try await joiner.group.waitUntilRunning(timeout: .seconds(15)) }
        try await Task.sleep(for: .milliseconds(300))
        load.cancel()
        let count = try await load.value
        let digests = try await cluster.settledDigests([0, 1, 2])
        #expect(Set(digests.map(\.index)).count == 1, "\(digests)")
        #expect(Set(digests.map(\.digest)).count == 1, "\(digests)")
        #expect(joiner.statistics.snapshotsRestored == 1)
        let provider = cluster.replica(0).statistics
        #expect(provider.snapshotsSent == 1)
        #expect(provider.snapshotBytesSent > 64, "the state went as several chunks")
        #expect(joiner.withMachine { $0.value } == Int64(count))
        // The joiner serves reads and writes like the others.
        var options = CounterClient.Options(replicas: [try Address(host: "127.0.0.1", port: joiner.clientPort)])
        options.timeoutMillis = testTimeoutMillis
        let client = try await CounterClient.connect(options)
        defer { client.close() }
        #expect(try await client.submit(Counter.Add(delta: 1)).value == Int64(count + 1))
        #expect(try await client.read(Counter.Get()).value == Int64(count + 1))
    }

    @Test func malformedClientInput_closesThatConnection_replicaKeepsServing() async throws {
        let cluster = try CounterCluster(size: 1)
        defer { cluster.shutdownAll() }
        let replica = try cluster.start(0, initialView: [0])
        try await replica.group.waitUntilRunning()
        let address = try Address(host: "127.0.0.1", port: replica.clientPort)
        // Garbage: a frame with protocol version 9.
        let fd = try Socket.connect(address, timeoutMillis: 1000)
        defer { close(fd) }
        #expect(Socket.sendAll(fd, [2, 0, 0, 0, 9, 1]))
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            received += buffer[0..<count]
        }
        let body = received.dropFirst(4)
        guard case let .error(code, message)? = try? ClientFrame.decode(body) else {
            Issue.record("expected an error frame, got \(received)")
            return
        }
        #expect(code == 1)
        #expect(message.contains("version"))
        try await withDeadline(10) {
            var options = CounterClient.Options(replicas: [address])
            options.timeoutMillis = testTimeoutMillis
            let client = try await CounterClient.connect(options)
            defer { client.close() }
            #expect(try await client.submit(Counter.Add(delta: 2)).value == 2)
        }
        #expect(replica.statistics.clientFramesMalformed == 1)
    }

    @Test func sessionExpiry_decidedInTheOrder_clientGetsSessionExpiredThenReopens() async throws {
        let cluster = try CounterCluster(size: 1)
        defer { cluster.shutdownAll() }
        let replica = try cluster.start(0, initialView: [0]) {
            $0.sessions = SessionTable.Limits(sessionsMax: 16, windowMax: 16, timeoutMillis: 300)
        }
        try await replica.group.waitUntilRunning()
        let address = try Address(host: "127.0.0.1", port: replica.clientPort)
        try await withDeadline(20) {
            var options = CounterClient.Options(replicas: [address])
            options.windowMax = 4
            options.timeoutMillis = testTimeoutMillis
            let idle = try await CounterClient.connect(options)
            let busy = try await CounterClient.connect(options)
            defer { idle.close(); busy.close() }
            // A loaded machine may let even a fresh session expire before its first command (the busy client's
            // opening moved ordered time on); that attempt was not applied, and the retry opens a new session.
            do {
                #expect(try await idle.submit(Counter.Add(delta: 1)).value == 1)
            } catch SMRClientError.sessionExpired {
                #expect(try await idle.submit(Counter.Add(delta: 1)).value == 1)
            }
            let first = idle.sessionID
            // Ordered time moves only with what is delivered: the busy client's commands carry it past the timeout.
            for _ in 0..<12 {
                try await Task.sleep(for: .milliseconds(60))
                do {
                    _ = try await busy.submit(Counter.Add(delta: 1))
                } catch SMRClientError.sessionExpired {
                    // A loaded machine may leave even the busy client idle too long; that attempt was not applied.
                    _ = try await busy.submit(Counter.Add(delta: 1))
                }
            }
            await #expect(throws: SMRClientError.sessionExpired) { try await idle.submit(Counter.Add(delta: 100)) }
            // Not applied: 1 + 12.
            #expect(try await busy.read(Counter.Get()).value == 13)
            // The next call opens a new session.
            #expect(try await idle.submit(Counter.Add(delta: 1)).value == 14)
            #expect(idle.sessionID != first)
        }
        #expect(replica.statistics.sessionsExpired >= 1)
    }

    @Test func snapshot_twoJoinersAtOnce_bothReceiveTheState() async throws {
        let cluster = try CounterCluster(size: 4)
        defer { cluster.shutdownAll() }
        for id in UInt32(0)..<2 { try cluster.start(id, initialView: [0, 1]) }
        for id in UInt32(0)..<2 { try await cluster.replica(id).group.waitUntilRunning() }
        let addresses = try cluster.clientAddresses([0, 1])
        try await withDeadline(20) {
            let client = try await CounterClient.connect(.init(replicas: addresses))
            defer { client.close() }
            for _ in 0..<50 { _ = try await client.submit(Counter.Add(delta: 1)) }
        }
        // Both ask to join at once: one view change may admit both (each pulls the same cut) or one after the other.
        let joiners = [try cluster.start(2, initialView: [0, 1]), try cluster.start(3, initialView: [0, 1])]
        try await withDeadline(30) {
            for joiner in joiners { try await joiner.group.waitUntilRunning(timeout: .seconds(25)) }
        }
        try await withDeadline(20) {
            let client = try await CounterClient.connect(.init(replicas: try cluster.clientAddresses([2, 3])))
            defer { client.close() }
            #expect(try await client.submit(Counter.Add(delta: 1)).value == 51)
        }
        let digests = try await cluster.settledDigests([0, 1, 2, 3])
        #expect(Set(digests.map(\.index)).count == 1, "\(digests)")
        #expect(Set(digests.map(\.digest)).count == 1, "\(digests)")
        print("two joiners: the provider announced \(cluster.replica(0).statistics.snapshotsSent) transfer(s)")
        for joiner in joiners {
            #expect(joiner.statistics.snapshotsRestored == 1)
            #expect(joiner.withMachine { $0.value } == 51)
        }
    }
}
