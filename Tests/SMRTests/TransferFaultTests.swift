import RingCast
@testable import RingCastSMR
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A gate the provider's snapshot stream waits at, which the test either opens (the stream goes on) or breaks (the
/// stream fails as if the provider died in the middle of it): the failure happens at a point the test chose, not at
/// a moment a timer happened to pick.
final class FaultGate: Sendable {
    private let state = Mutex<(open: Bool, broken: Bool, entered: Int)>((false, false, 0))

    func open() { state.withLock { $0.open = true } }
    func breakStream() { state.withLock { $0.broken = true } }
    var entered: Int { state.withLock { $0.entered } }

    /// On the provider's streaming thread; throws once the test broke the gate.
    func pass() throws(SnapshotError) {
        state.withLock { $0.entered += 1 }
        while true {
            let (open, broken) = state.withLock { ($0.open, $0.broken) }
            if broken { throw SnapshotError("the test broke the provider's stream") }
            if open { return }
            usleep(1_000)
        }
    }
}

/// ``Counter`` whose snapshot waits at a ``FaultGate``; `Copy` decides which provider path the transfer takes: the
/// state held at the cut (`false`) or a copy streamed while apply goes on (``StateMachine/copyIsSnapshot``).
struct FaultCounter<Copy: FaultCopyMode>: StateMachine {
    var counter = Counter()
    let gate: FaultGate?

    init(gate: FaultGate?) { self.gate = gate }

    static var copyIsSnapshot: Bool { Copy.copyIsSnapshot }
    mutating func apply(_ batch: CommandBatch<Counter.Add>, into outputs: inout [Counter.Value]) {
        counter.apply(batch, into: &outputs)
    }
    func query(_ query: Counter.Get) -> Counter.Value { counter.query(query) }
    func snapshot(into writer: inout SnapshotWriter) throws(SnapshotError) {
        try gate?.pass()
        try counter.snapshot(into: &writer)
    }
    mutating func restore(from reader: inout SnapshotReader) throws(SnapshotError) {
        try counter.restore(from: &reader)
    }
}

protocol FaultCopyMode: Sendable { static var copyIsSnapshot: Bool { get } }
enum HeldState: FaultCopyMode { static var copyIsSnapshot: Bool { false } }
enum CopiedState: FaultCopyMode { static var copyIsSnapshot: Bool { true } }

final class FaultCluster<Copy: FaultCopyMode>: Sendable {
    typealias Machine = FaultCounter<Copy>
    let addresses: [UInt32: Address]
    let replicas = Mutex<[UInt32: Replica<Machine>]>([:])
    static var suspectMillis: Int { 1_500 }

    init(size: Int) throws {
        var addresses: [UInt32: Address] = [:]
        for (index, port) in freePortPairs(size).enumerated() {
            addresses[UInt32(index)] = try Address(host: "127.0.0.1", port: port)
        }
        self.addresses = addresses
    }

    @discardableResult
    func start(_ me: UInt32, initialView: [UInt32], gate: FaultGate? = nil,
               options adjust: (inout Replica<Machine>.Options) -> Void = { _ in }) throws -> Replica<Machine> {
        var configuration = Group.Configuration(me: me, addresses: addresses, initialView: initialView)
        configuration.heartbeatMillis = 20
        configuration.suspectMillis = Self.suspectMillis
        configuration.roundTimeoutMillis = 1_000
        configuration.limits.connectTimeoutMillis = 5_000
        configuration.logger.logLevel = .critical
        var options = Replica<Machine>.Options(clientPort: 0)
        options.logger.logLevel = .critical
        adjust(&options)
        let replica = try Replica(configuration: configuration, machine: Machine(gate: gate), options: options)
        try replica.start()
        replicas.withLock { $0[me] = replica }
        return replica
    }

    func replica(_ id: UInt32) -> Replica<Machine> { replicas.withLock { $0[id]! } }

    func client(_ ids: [UInt32], timeoutMillis: Int = 20_000) async throws -> CounterClient {
        var options = CounterClient.Options(replicas: try ids.map { try Address(host: "127.0.0.1", port: replica($0).clientPort) })
        options.windowMax = 8
        options.timeoutMillis = timeoutMillis
        return try await CounterClient.connect(options)
    }

    func shutdown(_ id: UInt32) { replicas.withLock { $0[id] }?.shutdown() }

    func shutdownAll() {
        for replica in replicas.withLock({ Array($0.values) }) { replica.shutdown() }
    }

    /// The view every listed member has installed, once they agree on one that holds exactly `members`.
    func agreedView(_ ids: [UInt32], members: Set<UInt32>, seconds: Double = 20) async throws -> Bool {
        try await eventually(seconds) {
            ids.allSatisfy { id in
                let group = replica(id).group
                return group.state == .running && Set(group.currentView?.members ?? []) == members
            }
        }
    }
}

/// Issue #12 faults during a state transfer: the provider or the joiner dies in the middle of the pull. The members
/// that remain keep applying and answering (bounded by the suspicion timeout and the view change), the joiner fails
/// with a clear state (it does not serve, it does not apply a state that is not the group's), and no hold outlives
/// its transfer.
@Suite(.serialized) struct TransferFaultTests {
    /// Submits `count` increments through `client` and returns the last value (throws on a timeout).
    private static func increments(_ client: CounterClient, _ count: Int) async throws -> Int64 {
        var last: Int64 = 0
        for _ in 0..<count { last = try await client.submit(Counter.Add(delta: 1)).value }
        return last
    }

    /// (a) The provider dies while the joiner pulls: its stream breaks mid-way and it leaves the group. Run for the
    /// held-state path and the copy path.
    private func providerDiesMidPull<Copy: FaultCopyMode>(_: Copy.Type) async throws {
        let cluster = try FaultCluster<Copy>(size: 3)
        defer { cluster.shutdownAll() }
        let gate = FaultGate()
        defer { gate.breakStream() } // before shutdownAll: nothing stays at the gate
        let provider = try cluster.start(0, initialView: [0, 1], gate: gate)
        let other = try cluster.start(1, initialView: [0, 1])
        for replica in [provider, other] { try await replica.group.waitUntilRunning() }
        let client = try await cluster.client([1])
        defer { client.close() }
        #expect(try await withDeadline(30) { try await Self.increments(client, 100) } == 100)

        let joiner = try cluster.start(2, initialView: [0, 1])
        #expect(try await eventually(20) { gate.entered >= 1 }, "the joiner never started pulling")
        // The provider dies in the middle of the stream.
        gate.breakStream()
        cluster.shutdown(0)

        // The survivors install a view without the provider (after the suspicion timeout) and keep applying.
        #expect(try await cluster.agreedView([1, 2], members: [1, 2]), "no view without the provider")
        let value = try await withDeadline(20) { try await Self.increments(client, 100) }
        #expect(value == 200, "every acknowledged increment applied once at the surviving member")
        #expect(other.withMachine { $0.counter.value } == 200)
        #expect(!other.isTransferring, "the surviving member holds nothing")
        // The joiner failed clearly: it does not claim a state, it does not serve, and it holds nothing.
        #expect(try await eventually(20) { joiner.core.lock.withLock { joiner.core.failed } },
                "the joiner did not record that its transfer failed")
        #expect(!joiner.isTransferring)
        #expect(joiner.statistics.snapshotsRestored == 0)
        #expect(joiner.withMachine { $0.counter.value } == 0, "a failed joiner applied deliveries to a state it lacks")
        let joinerClient = try? await cluster.client([2], timeoutMillis: 3_000)
        if let joinerClient {
            defer { joinerClient.close() }
            await #expect(throws: SMRClientError.self) { try await joinerClient.read(Counter.Get(), consistency: .stale) }
        }
    }

    @Test func providerDiesMidPull_heldState_survivorsKeepApplying_joinerFailsClearly() async throws {
        try await providerDiesMidPull(HeldState.self)
    }

    @Test func providerDiesMidPull_copyIsSnapshot_survivorsKeepApplying_joinerFailsClearly() async throws {
        try await providerDiesMidPull(CopiedState.self)
    }

    /// (b) The joiner dies while it pulls: the provider's stream fails, its hold ends (not at the pull deadline, at
    /// the broken stream), it applies its suffix and keeps answering; the two survivors end with equal states.
    private func joinerDiesMidPull<Copy: FaultCopyMode>(_: Copy.Type) async throws {
        let cluster = try FaultCluster<Copy>(size: 3)
        defer { cluster.shutdownAll() }
        let gate = FaultGate()
        defer { gate.breakStream() }
        let provider = try cluster.start(0, initialView: [0, 1], gate: gate)
        let other = try cluster.start(1, initialView: [0, 1])
        for replica in [provider, other] { try await replica.group.waitUntilRunning() }
        let client = try await cluster.client([1])
        defer { client.close() }
        let providerClient = try await cluster.client([0])
        defer { providerClient.close() }
        #expect(try await withDeadline(30) { try await Self.increments(client, 100) } == 100)

        _ = try cluster.start(2, initialView: [0, 1])
        #expect(try await eventually(20) { gate.entered >= 1 }, "the joiner never started pulling")
        cluster.shutdown(2)
        // The stream goes on and finds the joiner's connection closed.
        gate.open()

        #expect(try await cluster.agreedView([0, 1], members: [0, 1]), "no view without the joiner")
        let value = try await withDeadline(20) { try await Self.increments(client, 100) }
        #expect(value == 200)
        // The provider's hold ended with the stream: its clients are answered, linearizable reads included.
        #expect(try await eventually(20) { !provider.isTransferring }, "the provider still holds its state")
        let read = try await withDeadline(20) { try await providerClient.read(Counter.Get()).value }
        #expect(read == 200)
        #expect(try await withDeadline(20) { try await Self.increments(providerClient, 10) } == 210)
        #expect(provider.statistics.snapshotsSent == 1)
        #expect(try await eventually(20) { provider.appliedIndex == other.appliedIndex })
        let digests = try [provider.stateDigest(), other.stateDigest()]
        #expect(Set(digests.map(\.index)).count == 1 && Set(digests.map(\.digest)).count == 1, "\(digests)")
    }

    @Test func joinerDiesMidPull_heldState_providerReleasesAndServes() async throws {
        try await joinerDiesMidPull(HeldState.self)
    }

    @Test func joinerDiesMidPull_copyIsSnapshot_providerReleasesAndServes() async throws {
        try await joinerDiesMidPull(CopiedState.self)
    }

    /// A second join while the provider still streams the first one's state (held at the cut): the provider's cut for
    /// the second joiner waits for the first transfer on its control thread, so it goes silent and the others may
    /// exclude it — then the second joiner's state never comes. Whatever the timing, the survivors keep applying, and
    /// no replica ever answers from a state that is not the group's: a replica that serves has the group's digest, a
    /// joiner left without state applied nothing and refuses clients.
    @Test func secondJoinWhileTheProviderStreams_survivorsKeepApplying_noReplicaWithoutStateServes() async throws {
        let cluster = try FaultCluster<HeldState>(size: 4)
        defer { cluster.shutdownAll() }
        let gate = FaultGate()
        defer { gate.breakStream() }
        let provider = try cluster.start(0, initialView: [0, 1], gate: gate)
        let other = try cluster.start(1, initialView: [0, 1])
        for replica in [provider, other] { try await replica.group.waitUntilRunning() }
        let client = try await cluster.client([1, 0])
        defer { client.close() }
        #expect(try await withDeadline(30) { try await Self.increments(client, 100) } == 100)
        let first = try cluster.start(2, initialView: [0, 1])
        #expect(try await eventually(20) { gate.entered >= 1 }, "the first joiner never started pulling")
        // Load all along (the window in which a joiner could apply without state has deliveries in it).
        let load = Task { try await Self.increments(client, 100) }
        try await Task.sleep(for: .milliseconds(100))
        let second = try cluster.start(3, initialView: [0, 1])
        // A joiner must never apply a command while it has no state (it would answer its clients from a state that
        // is not the group's): watched all along, since a late state transfer would overwrite the evidence.
        let appliedWithoutState = StartedBox()
        let watch = Task {
            while !Task.isCancelled {
                for joiner in [first, second] where joiner.core.lock.withLock({
                    !joiner.core.hasState && joiner.core.statistics.commandsApplied > 0
                }) {
                    appliedWithoutState.count.add(1, ordering: .relaxed)
                }
                try? await Task.sleep(for: .milliseconds(2))
            }
        }
        // Longer than the suspicion timeout: the provider's control thread waits for the first transfer meanwhile.
        try await Task.sleep(for: .milliseconds(FaultCluster<HeldState>.suspectMillis * 2))
        gate.open()

        // The load (a client of members 1 and 0) gets through, whichever view the group settles on.
        let value = try await withDeadline(60) { try await load.value }
        #expect(value == 200)
        watch.cancel()
        #expect(appliedWithoutState.count.load(ordering: .relaxed) == 0, "a joiner applied commands while it had no state")
        // The group settles on a view (which members it keeps depends on the timing: the provider, back from its
        // blocked control thread, suspects everyone it did not hear from, and may win a majority without member 1).
        // Every replica of that view serves from the group's state, at one index, with one digest.
        let all = [provider, other, first, second]
        func serving() -> [Replica<FaultCounter<HeldState>>] {
            all.filter { replica in
                replica.group.state == .running && !replica.isExcluded
                    && replica.core.lock.withLock { !replica.core.failed && replica.core.hasState }
            }
        }
        let settled = try await eventually(30) {
            let members = serving()
            let views = Set(members.map { $0.group.currentView?.id ?? 0 })
            return members.count >= 2 && views.count == 1 && Set(members.map(\.appliedIndex)).count == 1
                && members.count == members.first?.group.currentView?.members.count
        }
        let described = all.map { replica in
            "\(replica.group.state) view \(replica.group.currentView?.members ?? []) excluded \(replica.isExcluded) "
                + "failed/hasState \(replica.core.lock.withLock { (replica.core.failed, replica.core.hasState) }) "
                + "index \(replica.appliedIndex) restored \(replica.statistics.snapshotsRestored)"
        }
        #expect(settled, "no view whose members all serve at one index: \(described)")
        let servers = serving()
        let digests = try servers.map { try $0.stateDigest() }
        #expect(Set(digests.map(\.digest)).count == 1, "a serving replica has a state that is not the group's: \(digests)")
        #expect(servers.allSatisfy { $0.withMachine { $0.counter.value } == 200 }, "\(described)")
        for joiner in [first, second] where !servers.contains(where: { $0 === joiner }) {
            // Left out (excluded, or its transfer failed): it applied nothing on a state it lacks, and serves nobody.
            if joiner.statistics.snapshotsRestored == 0 {
                #expect(joiner.withMachine { $0.counter.value } == 0, "a joiner without state applied deliveries")
            }
        }
    }

    /// What an excluded replica does (Exclusion.swift), driven directly: the group's exclusion itself needs a member
    /// silent for the suspicion timeout, which only a stopped process gives (KVStallProcessTests). Its clients are
    /// told and fail over with their session (a retried command is applied once); it refuses every request that needs
    /// the group's state — stale reads included — and keeps answering statistics and digests; a read queued after
    /// the broadcaster stopped is answered `notRunning` instead of waiting for a barrier that never comes.
    @Test func excludedReplica_refusesClients_theyFailOver_appliedOnce() async throws {
        let cluster = try FaultCluster<HeldState>(size: 2)
        defer { cluster.shutdownAll() }
        let first = try cluster.start(0, initialView: [0, 1])
        let second = try cluster.start(1, initialView: [0, 1])
        for replica in [first, second] { try await replica.group.waitUntilRunning() }
        let failingOver = try await cluster.client([0, 1])
        defer { failingOver.close() }
        let onlyFirst = try await cluster.client([0], timeoutMillis: 3_000)
        defer { onlyFirst.close() }
        #expect(try await withDeadline(30) { try await Self.increments(failingOver, 50) } == 50)
        #expect(!first.isExcluded)
        // A tool's connection (its session opened before the exclusion: an opening is refused after it).
        let tool = try await cluster.client([0], timeoutMillis: 5_000)
        defer { tool.close() }

        first.core.leaveServiceAfterExclusion()
        #expect(first.isExcluded)
        #expect(first.core.ingressMonitor.withLock { first.core.stopped }, "the broadcaster was stopped")
        // The client connected to the excluded replica goes on at the other one, in the same session.
        let value = try await withDeadline(30) { try await Self.increments(failingOver, 50) }
        #expect(value == 100, "every increment applied once")
        #expect(second.withMachine { $0.counter.value } == 100)
        #expect(failingOver.statistics.failovers >= 1)
        // A client that knows only the excluded replica gets no answer from it, not even a stale one.
        await #expect(throws: SMRClientError.self) { try await onlyFirst.read(Counter.Get(), consistency: .stale) }
        await #expect(throws: SMRClientError.self) { try await onlyFirst.submit(Counter.Add(delta: 1)) }
        #expect(second.withMachine { $0.counter.value } == 100, "nothing was applied through the excluded replica")
        // Tools still read its counters and digest (at the index it stopped at).
        #expect(try await tool.replicaDigest().index == first.appliedIndex)
        #expect(try await tool.replicaStatistics().count > 10)
        // A linearizable read arriving once the broadcaster stopped: answered (refused) at once, never parked.
        let reads = first.core.reads.withLock { first.core.readsWaiting }
        #expect(reads == 0, "no read waits at the excluded replica")
    }
}
