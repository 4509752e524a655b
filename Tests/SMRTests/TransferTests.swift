import RingCast
@testable import RingCastSMR
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Holds a provider's snapshot stream open until the test opens it: the transfer stays open as long as the test
/// needs, so what happens meanwhile is checked by counters, not by timing.
final class SnapshotGate: Sendable {
    private let state = Mutex<(open: Bool, entered: Int)>((false, 0))

    func open() { state.withLock { $0.open = true } }
    var entered: Int { state.withLock { $0.entered } }

    /// Called by the state machine's `snapshot` (on the provider's streaming thread).
    func pass() {
        state.withLock { $0.entered += 1 }
        while !state.withLock({ $0.open }) { usleep(1_000) }
    }
}

/// ``Counter`` whose snapshot waits at a gate (the provider's side of a transfer held open by the test).
struct GatedCounter: StateMachine {
    var counter = Counter()
    let gate: SnapshotGate?

    init(gate: SnapshotGate?) { self.gate = gate }

    mutating func apply(_ batch: CommandBatch<Counter.Add>, into outputs: inout [Counter.Value]) {
        counter.apply(batch, into: &outputs)
    }
    func query(_ query: Counter.Get) -> Counter.Value { counter.query(query) }
    func snapshot(into writer: inout SnapshotWriter) throws(SnapshotError) {
        gate?.pass()
        try counter.snapshot(into: &writer)
    }
    mutating func restore(from reader: inout SnapshotReader) throws(SnapshotError) {
        try counter.restore(from: &reader)
    }
}

final class GatedCluster: Sendable {
    let addresses: [UInt32: Address]
    let replicas = Mutex<[UInt32: Replica<GatedCounter>]>([:])

    init(size: Int) throws {
        var addresses: [UInt32: Address] = [:]
        for (index, port) in freePortPairs(size).enumerated() {
            addresses[UInt32(index)] = try Address(host: "127.0.0.1", port: port)
        }
        self.addresses = addresses
    }

    @discardableResult
    func start(_ me: UInt32, initialView: [UInt32], gate: SnapshotGate? = nil,
               options adjust: (inout Replica<GatedCounter>.Options) -> Void = { _ in }) throws -> Replica<GatedCounter> {
        var configuration = Group.Configuration(me: me, addresses: addresses, initialView: initialView)
        configuration.heartbeatMillis = 20
        configuration.suspectMillis = 1_500
        configuration.roundTimeoutMillis = 1_000
        configuration.limits.connectTimeoutMillis = 5_000
        configuration.logger.logLevel = .warning
        var options = Replica<GatedCounter>.Options(clientPort: 0)
        options.logger.logLevel = .warning
        adjust(&options)
        let replica = try Replica(configuration: configuration, machine: GatedCounter(gate: gate), options: options)
        try replica.start()
        replicas.withLock { $0[me] = replica }
        return replica
    }

    func replica(_ id: UInt32) -> Replica<GatedCounter> { replicas.withLock { $0[id]! } }

    func client(_ ids: [UInt32], window: Int = 8) async throws -> CounterClient {
        var options = CounterClient.Options(replicas: try ids.map { try Address(host: "127.0.0.1", port: replica($0).clientPort) })
        options.windowMax = window
        options.timeoutMillis = 20_000
        return try await CounterClient.connect(options)
    }

    func shutdownAll() {
        for replica in replicas.withLock({ Array($0.values) }) { replica.shutdown() }
    }

    func settledDigests(_ ids: [UInt32], timeoutSeconds: Double = 15) async throws -> [(index: UInt64, digest: UInt64)] {
        let deadline = ContinuousClock.now.advanced(by: .milliseconds(Int(timeoutSeconds * 1000)))
        while true {
            let digests = try ids.map { try replica($0).stateDigest() }
            if Set(digests.map(\.index)).count == 1 || ContinuousClock.now >= deadline { return digests }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// Polls `condition` every 5 ms until it holds or `seconds` passed; returns whether it held.
func eventually(_ seconds: Double, _ condition: () -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now.advanced(by: .milliseconds(Int(seconds * 1000)))
    while !condition() {
        guard ContinuousClock.now < deadline else { return false }
        try await Task.sleep(for: .milliseconds(5))
    }
    return true
}

/// Issue #12, Deliver 1: state transfer without stopping the ring (the suffix store, SuffixStore.swift).
@Suite(.serialized) struct TransferTests {
    /// The provider's snapshot stream is held open; meanwhile the other replica keeps delivering and applying
    /// (commands acknowledged, its applied index moving) while the provider's state stays at the cut and its
    /// deliveries queue. Then the joiner gets the state and the suffix: digests equal everywhere.
    @Test func joinerAtLoad_ringKeepsDeliveringDuringTheTransfer_digestsEqual() async throws {
        let cluster = try GatedCluster(size: 3)
        defer { cluster.shutdownAll() }
        let gate = SnapshotGate()
        defer { gate.open() } // runs before shutdownAll: a provider stuck at the gate would keep it waiting
        let provider = try cluster.start(0, initialView: [0, 1], gate: gate)
        let other = try cluster.start(1, initialView: [0, 1])
        for replica in [provider, other] { try await replica.group.waitUntilRunning() }
        let client = try await cluster.client([1])
        defer { client.close() }
        var acknowledged: Int64 = 0
        try await withDeadline(30) {
            for _ in 0..<200 { _ = try await client.submit(Counter.Add(delta: 1)) }
        }
        acknowledged += 200
        // A client of the provider, connected (its session opened) before the transfer.
        let providerClient = try await cluster.client([0])
        defer { providerClient.close() }

        let joiner = try cluster.start(2, initialView: [0, 1])
        // The transfer is open: the provider's stream waits at the gate.
        #expect(try await eventually(20) { gate.entered >= 1 }, "the joiner never started pulling")
        let cut = provider.appliedIndex
        let otherBefore = other.appliedIndex
        try await withDeadline(30) {
            // Acknowledged by replica 1, i.e. delivered there: the ring delivers while the transfer is open.
            for _ in 0..<500 { _ = try await client.submit(Counter.Add(delta: 1)) }
        }
        acknowledged += 500
        #expect(gate.entered == 1)
        #expect(other.appliedIndex >= otherBefore + 500, "the other replica applied while the transfer was open")
        #expect(provider.appliedIndex == cut, "the provider's state stayed at the cut while it streamed")
        let held = provider.statistics
        #expect(held.suffixDeliveries >= 1, "the provider queued its deliveries")
        #expect(held.suffixBytesPeak > 0 && held.suffixBytesPeak <= UInt64(Replica<GatedCounter>.Options(clientPort: 0).suffixBytesMax))
        #expect(provider.withMachine { $0.counter.value } == 200, "the provider's state is the cut's")
        // At the provider, a stale read answers from the state at the cut; a linearizable read waits for its
        // barrier, which is in the suffix, so until the transfer ends.
        #expect(try await providerClient.read(Counter.Get(), consistency: .stale).value == 200)
        let answered = StartedBox()
        let linearizable = Task {
            let value = try await providerClient.read(Counter.Get()).value
            answered.count.store(1, ordering: .relaxed)
            return value
        }
        try await Task.sleep(for: .milliseconds(300))
        #expect(answered.count.load(ordering: .relaxed) == 0, "a linearizable read was answered from a held state")

        gate.open()
        let readAfter = try await withDeadline(20) { try await linearizable.value }
        #expect(readAfter == acknowledged, "the read saw every write acknowledged before it")
        try await withDeadline(20) { try await joiner.group.waitUntilRunning(timeout: .seconds(15)) }
        let digests = try await cluster.settledDigests([0, 1, 2])
        #expect(Set(digests.map(\.index)).count == 1, "\(digests)")
        #expect(Set(digests.map(\.digest)).count == 1, "\(digests)")
        #expect(joiner.statistics.snapshotsRestored == 1)
        #expect(joiner.statistics.suffixDeliveries >= 1, "the joiner queued what arrived during its restore")
        for id in UInt32(0)..<3 {
            #expect(cluster.replica(id).withMachine { $0.counter.value } == acknowledged)
        }
        let after = provider.statistics
        #expect(after.suffixApplied == after.suffixDeliveries, "every queued delivery was applied")
        // The joiner serves like the others.
        let joinerClient = try await cluster.client([2])
        defer { joinerClient.close() }
        let total = acknowledged
        try await withDeadline(20) {
            let written = try await joinerClient.submit(Counter.Add(delta: 1)).value
            #expect(written == total + 1)
            let read = try await joinerClient.read(Counter.Get()).value
            #expect(read == total + 1)
        }
    }

    /// A tiny suffix store at the provider: once it is full, the provider's delivery waits (backpressure: the
    /// ring stops, the clients wait); nothing is lost — after the transfer every command is applied once.
    @Test func suffixStoreFull_backpressureOnTheRing_noLoss() async throws {
        let cluster = try GatedCluster(size: 3)
        defer { cluster.shutdownAll() }
        let gate = SnapshotGate()
        let limit = 4096
        defer { gate.open() }
        let provider = try cluster.start(0, initialView: [0, 1], gate: gate) { $0.suffixBytesMax = limit }
        let other = try cluster.start(1, initialView: [0, 1])
        for replica in [provider, other] { try await replica.group.waitUntilRunning() }
        let joiner = try cluster.start(2, initialView: [0, 1]) { $0.suffixBytesMax = limit }
        #expect(try await eventually(20) { gate.entered >= 1 }, "the joiner never started pulling")

        let total = 400
        let box = StartedBox()
        let load = incrementLoad(total: total, box: box) { try await cluster.client([1], window: 4) }
        #expect(try await eventually(20) { provider.statistics.suffixFullWaits >= 1 },
                "the provider's suffix store never filled")
        // Full: the provider's delivery waits, so the ring stops; the clients stop getting acknowledgements.
        try await Task.sleep(for: .milliseconds(300))
        let stalled = box.count.load(ordering: .relaxed)
        try await Task.sleep(for: .milliseconds(300))
        #expect(box.count.load(ordering: .relaxed) == stalled, "acknowledgements went on while the provider could take none")
        #expect(stalled < total)
        let held = provider.statistics
        #expect(held.suffixBytesPeak <= UInt64(limit), "the bound held: \(held.suffixBytesPeak) > \(limit)")

        gate.open()
        try await withDeadline(40) { try await load.value }
        #expect(box.count.load(ordering: .relaxed) == total)
        let digests = try await cluster.settledDigests([0, 1, 2])
        #expect(Set(digests.map(\.index)).count == 1, "\(digests)")
        #expect(Set(digests.map(\.digest)).count == 1, "\(digests)")
        for id in UInt32(0)..<3 {
            #expect(cluster.replica(id).withMachine { $0.counter.value } == Int64(total), "replica \(id): lost or doubled")
        }
        let after = provider.statistics
        #expect(after.suffixApplied == after.suffixDeliveries)
        #expect(joiner.statistics.snapshotsRestored == 1)
    }

    /// A long run of deliveries applied at once (a suffix) can hold a request and, in the same batch, a later one
    /// whose `firstUnacknowledged` is above it (its client got the reply from a replica that applied sooner).
    @Test func sessionTable_laterRequestAcknowledgingAnUnrecordedOne_waitsForTheBatch() {
        var table = SessionTable(limits: SessionTable.Limits(sessionsMax: 4, windowMax: 8, timeoutMillis: 60_000))
        table.open(id: 1, nowMillis: 0)
        #expect(table.admit(session: 1, sequence: 1, firstUnacknowledged: 1, nowMillis: 0) == .apply)
        #expect(table.admit(session: 1, sequence: 2, firstUnacknowledged: 2, nowMillis: 0) == .duplicateInFlight)
        table.record(session: 1, sequence: 1, reply: [7])
        #expect(table.admit(session: 1, sequence: 2, firstUnacknowledged: 2, nowMillis: 0) == .apply)
        table.record(session: 1, sequence: 2, reply: [8])
        #expect(table.admit(session: 1, sequence: 1, firstUnacknowledged: 2, nowMillis: 0) == .alreadyAcknowledged)
        #expect(table.admit(session: 1, sequence: 2, firstUnacknowledged: 2, nowMillis: 0) == .duplicate(reply: [8]))
    }

    @Test func suffixStore_boundsAndOrder() {
        var store = SuffixStore(bytesMax: 200)
        #expect(store.admits(10_000), "an empty store takes one delivery of any size")
        store.append([1, 2, 3])
        #expect(store.bytes == 3 + SuffixStore.entryOverheadBytes)
        #expect(store.admits(100))
        #expect(!store.admits(200))
        store.append(Array(repeating: 9, count: 100))
        #expect(!store.admits(0))
        #expect(store.popFirst() == [1, 2, 3])
        #expect(store.popFirst()?.count == 100)
        #expect(store.popFirst() == nil)
        #expect(store.bytes == 0 && store.isEmpty)
        #expect(store.peakBytes == 103 + 2 * SuffixStore.entryOverheadBytes)
        #expect(store.appended == 2)
    }
}
