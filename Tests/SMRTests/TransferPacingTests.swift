import RingCast
@testable import RingCastSMR
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A counter plus a block of bytes that every command changes (so that a snapshot spans many chunks, and a stream
/// that read a state changing under it would give the joiner a different state), whose copy is a snapshot
/// (``StateMachine/copyIsSnapshot``): a provider streams a copy taken at the cut while it goes on applying.
struct BulkCounter: StateMachine {
    static var copyIsSnapshot: Bool { true }
    var counter = Counter()
    var bulk: [UInt8]
    let gate: SnapshotGate?

    init(bulkBytes: Int, gate: SnapshotGate?) {
        bulk = [UInt8](repeating: 0, count: bulkBytes)
        self.gate = gate
    }

    mutating func apply(_ batch: CommandBatch<Counter.Add>, into outputs: inout [Counter.Value]) {
        for (command, context) in batch where !bulk.isEmpty {
            bulk[Int(context.index % UInt64(bulk.count))] &+= UInt8(truncatingIfNeeded: command.delta &+ 1)
        }
        counter.apply(batch, into: &outputs)
    }
    func query(_ query: Counter.Get) -> Counter.Value { counter.query(query) }
    func snapshot(into writer: inout SnapshotWriter) throws(SnapshotError) {
        gate?.pass()
        try counter.snapshot(into: &writer)
        try writer.lengthPrefixed(bulk)
    }
    mutating func restore(from reader: inout SnapshotReader) throws(SnapshotError) {
        try counter.restore(from: &reader)
        bulk = try reader.lengthPrefixed(limit: 64 << 20)
    }
}

/// Replicas of ``BulkCounter`` on loopback (ports from GatedCluster's range: these tests run in TransferTests'
/// serialized suite, never beside a GatedCluster).
final class BulkCluster: Sendable {
    let addresses: [UInt32: Address]
    let bulkBytes: Int
    let replicas = Mutex<[UInt32: Replica<BulkCounter>]>([:])

    init(size: Int, bulkBytes: Int) throws {
        var addresses: [UInt32: Address] = [:]
        for (index, port) in freePortPairs(size).enumerated() {
            addresses[UInt32(index)] = try Address(host: "127.0.0.1", port: port)
        }
        self.addresses = addresses
        self.bulkBytes = bulkBytes
    }

    @discardableResult
    func start(_ me: UInt32, initialView: [UInt32], gate: SnapshotGate? = nil,
               options adjust: (inout Replica<BulkCounter>.Options) -> Void = { _ in }) throws -> Replica<BulkCounter> {
        var configuration = Group.Configuration(me: me, addresses: addresses, initialView: initialView)
        configuration.heartbeatMillis = 20
        configuration.suspectMillis = 1_500
        configuration.roundTimeoutMillis = 1_000
        configuration.limits.connectTimeoutMillis = 5_000
        configuration.logger.logLevel = .warning
        var options = Replica<BulkCounter>.Options(clientPort: 0)
        options.logger.logLevel = .critical
        adjust(&options)
        let replica = try Replica(configuration: configuration, machine: BulkCounter(bulkBytes: bulkBytes, gate: gate),
                                  options: options)
        try replica.start()
        replicas.withLock { $0[me] = replica }
        return replica
    }

    func replica(_ id: UInt32) -> Replica<BulkCounter> { replicas.withLock { $0[id]! } }

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

/// Issue #12, Done-when 4: a transfer that leaves the others their throughput — the provider applies while it
/// streams a copy, the stream is paced, shutdown during a transfer leaves no thread behind.
extension TransferTests {
    /// A fake clock: the bucket never lets more than `burst + rate × elapsed` go, at most one burst between two
    /// refills, and an idle bucket does not save up more than one burst.
    @Test func tokenBucket_neverAheadOfRatePlusBurst() {
        let rate: UInt64 = 1_000_000 // bytes/s
        let burst: UInt64 = 10_000
        var bucket = TokenBucket(bytesPerSecond: rate, burstBytes: burst, nowNanos: 0)
        #expect(bucket.take(burst, nowNanos: 0) == 0, "a full bucket lets one burst go at once")
        #expect(bucket.take(burst, nowNanos: 0) == 10_000_000, "the next burst waits burst ÷ rate = 10 ms")
        #expect(bucket.take(burst, nowNanos: 4_000_000) == 6_000_000)
        #expect(bucket.take(burst, nowNanos: 10_000_000) == 0)

        // A sender that sends whenever it may, at irregular times (a deterministic sequence), for 2 s.
        var now: UInt64 = 10_000_000
        var sent: UInt64 = 2 * burst
        var step: UInt64 = 1
        while now < 2_010_000_000 {
            step = (step * 7_919 + 13) % 9_973
            now += 100_000 + step * 300 // 0.1 ms … 3.1 ms
            let chunk = 1_000 + step % 9_000
            if bucket.take(chunk, nowNanos: now) == 0 { sent += chunk }
            #expect(sent <= burst + rate * now / 1_000_000_000, "ahead of the rate at \(now) ns: \(sent) bytes")
        }
        #expect(sent >= rate * 2 - 2 * burst, "the sender got the rate: \(sent) bytes in 2 s")
        #expect(bucket.takenSinceRefillMax <= burst, "more than one burst between two refills")
        #expect(bucket.waits > 0)
        #expect(bucket.takenBytes == sent)

        // Idle for an hour: still one burst, not an hour's worth.
        now += 3_600_000_000_000
        #expect(bucket.take(burst, nowNanos: now) == 0)
        #expect(bucket.take(1, nowNanos: now) > 0)
    }

    /// The idle-class restore is raised once, at the end of the first one-second window below the floor; windows at or
    /// above it (pacing waits included) keep it idle-class.
    @Test func idleTransferPriority_raisedOnceByTheFirstWindowBelowTheFloor() {
        let second: UInt64 = 1_000_000_000
        var priority = IdleTransferPriority(floorBytesPerSecond: 16 << 20, nowNanos: 0)
        // 20 MiB in the first second, in 1 MiB chunks: above the floor.
        var raises: [Bool] = []
        for chunk in 1...20 { raises.append(priority.progressed(1 << 20, nowNanos: UInt64(chunk) * second / 20)) }
        // Exactly the floor over the next 2 s: not below.
        raises.append(priority.progressed(32 << 20, nowNanos: 3 * second))
        #expect(raises == [Bool](repeating: false, count: 21))
        // 15 MiB over the next second: below; raised exactly once, at the end of that window.
        let early = priority.progressed(15 << 20, nowNanos: 3 * second + second / 2)
        let atTheEnd = priority.progressed(0, nowNanos: 4 * second)
        let later = priority.progressed(0, nowNanos: 10 * second)
        #expect(!early && atTheEnd && !later)
        #expect(priority.raised)
        // A backlog past half its bound raises at once, inside a window well above the floor; and only once.
        var busy = IdleTransferPriority(floorBytesPerSecond: 16 << 20, nowNanos: 0)
        let fast = busy.progressed(64 << 20, nowNanos: second / 10)
        let high = busy.progressed(1 << 20, nowNanos: second / 5, backlogHigh: true)
        let again = busy.progressed(0, nowNanos: 5 * second, backlogHigh: true)
        #expect(!fast && high && !again)
    }

    /// The probe that decides whether a learner's restore may run idle-class answers the kernel's rule for leaving
    /// SCHED_IDLE (sched(7); kernel `can_nice`): CAP_SYS_NICE in the effective set, or RLIMIT_NICE ≥ 20 − nice for the
    /// thread's nice value (0 here). The rule is computed here from /proc and getrlimit, apart from the probe's own
    /// attempt. And the probe leaves the calling thread's policy as it was.
    @Test func idleClassCanBeLeft_answersTheKernelsRule_callerUntouched() throws {
        #if os(Linux)
        let policyBefore = sched_getscheduler(0)
        let niceBefore = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        let answer = idleClassCanBeLeft(nice: 10)
        #expect(sched_getscheduler(0) == policyBefore)
        #expect(getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0) == niceBefore)
        func contents(_ path: String) throws -> String {
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            try #require(descriptor >= 0)
            defer { close(descriptor) }
            var bytes = [UInt8](repeating: 0, count: 16 << 10)
            let count = read(descriptor, &bytes, bytes.count)
            try #require(count > 0)
            return String(decoding: bytes[..<count], as: UTF8.self)
        }
        // In a user namespace of its own (a rootless container) CapEff lists capabilities the kernel checks against
        // the initial namespace's, which the namespace does not have: the rule cannot be read from /proc there.
        let uidMap = try contents("/proc/self/uid_map").split(whereSeparator: \.isWhitespace)
        guard uidMap == ["0", "0", "4294967295"] else { return }
        let status = try contents("/proc/self/status")
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("CapEff:") })
        let effective = try #require(UInt64(String(line.dropFirst("CapEff:".count).filter { !$0.isWhitespace }), radix: 16))
        let capSysNice = effective & (1 << 23) != 0
        var limit = rlimit()
        #expect(getrlimit(__rlimit_resource_t(__RLIMIT_NICE.rawValue), &limit) == 0)
        let withinLimit = limit.rlim_cur == rlim_t.max || limit.rlim_cur >= rlim_t(20 - Int(niceBefore))
        #expect(answer == (capSysNice || withinLimit))
        #endif
    }

    /// The rate is exact over many small refills (the sub-byte remainder is kept): 1 byte/s for 10 × 100 ms.
    @Test func tokenBucket_slowRateAddsUpAcrossRefills() {
        var bucket = TokenBucket(bytesPerSecond: 1, burstBytes: 1, nowNanos: 0)
        #expect(bucket.take(1, nowNanos: 0) == 0)
        for tenth in UInt64(1)...9 { #expect(bucket.take(1, nowNanos: tenth * 100_000_000) > 0) }
        #expect(bucket.take(1, nowNanos: 1_000_000_000) == 0, "ten refills of 0.1 byte make one byte")
    }

    /// A machine whose copy is a snapshot: while the provider's stream is held open (the gate), the provider keeps
    /// applying — its own client's writes are acknowledged and its state moves past the cut, nothing waits in its
    /// suffix store — and the joiner still gets exactly the cut's state (the copy did not change with the
    /// original): after the suffix, all digests equal.
    @Test func copyIsSnapshot_providerAppliesWhileItStreams_digestsEqual() async throws {
        let cluster = try BulkCluster(size: 3, bulkBytes: 300_000)
        defer { cluster.shutdownAll() }
        let gate = SnapshotGate()
        defer { gate.open() }
        let provider = try cluster.start(0, initialView: [0, 1], gate: gate) { $0.snapshotChunkBytes = 16 << 10 }
        let other = try cluster.start(1, initialView: [0, 1])
        for replica in [provider, other] { try await replica.group.waitUntilRunning() }
        let providerClient = try await cluster.client([0])
        defer { providerClient.close() }
        try await withDeadline(30) {
            for _ in 0..<100 { _ = try await providerClient.submit(Counter.Add(delta: 1)) }
        }

        let joiner = try cluster.start(2, initialView: [0, 1])
        #expect(try await eventually(20) { gate.entered >= 1 }, "the joiner never started pulling")
        let cut = provider.appliedIndex
        // Acknowledged by the provider itself, so applied there, while its stream waits at the gate.
        try await withDeadline(30) {
            for _ in 0..<300 { _ = try await providerClient.submit(Counter.Add(delta: 1)) }
        }
        #expect(gate.entered == 1)
        #expect(provider.appliedIndex >= cut + 300, "the provider applied while it streamed")
        #expect(!provider.isTransferring, "a copy is streamed: the provider's state is not held")
        #expect(provider.statistics.suffixDeliveries == 0, "the provider queued nothing")
        #expect(provider.withMachine { $0.counter.value } == 400)
        #expect(try await providerClient.read(Counter.Get()).value == 400, "linearizable reads are served meanwhile")

        gate.open()
        try await withDeadline(20) { try await joiner.group.waitUntilRunning(timeout: .seconds(15)) }
        #expect(try await eventually(20) { joiner.statistics.snapshotsRestored == 1 && !joiner.isTransferring })
        let digests = try await cluster.settledDigests([0, 1, 2])
        #expect(Set(digests.map(\.index)).count == 1, "\(digests)")
        #expect(Set(digests.map(\.digest)).count == 1, "\(digests)")
        #expect(joiner.withMachine { $0.counter.value } == 400)
        #expect(provider.statistics.snapshotBytesSent > 300_000, "the whole bulk was streamed")
    }

    /// A paced stream: a 256 KiB state in 8 KiB chunks at 1 MiB/s. The provider's token bucket counted its waits,
    /// and never let more than one chunk go between two refills; the joiner at load ends with the group's state.
    @Test func pacedTransfer_atMostOneChunkPerRefill_joinerAtLoadDigestsEqual() async throws {
        let chunk = 8 << 10
        let cluster = try BulkCluster(size: 3, bulkBytes: 256 << 10)
        defer { cluster.shutdownAll() }
        let paced: (inout Replica<BulkCounter>.Options) -> Void = {
            $0.snapshotChunkBytes = chunk
            $0.snapshotBytesPerSecondMax = 1 << 20
        }
        let provider = try cluster.start(0, initialView: [0, 1], options: paced)
        let other = try cluster.start(1, initialView: [0, 1], options: paced)
        for replica in [provider, other] { try await replica.group.waitUntilRunning() }

        let total = 600
        let box = StartedBox()
        let load = incrementLoad(total: total, box: box) { try await cluster.client([0, 1], window: 4) }
        #expect(try await eventually(20) { box.count.load(ordering: .relaxed) >= 50 })
        let joiner = try cluster.start(2, initialView: [0, 1])
        try await withDeadline(30) { try await joiner.group.waitUntilRunning(timeout: .seconds(20)) }
        #expect(try await eventually(30) { joiner.statistics.snapshotsRestored == 1 && !joiner.isTransferring },
                "the joiner did not restore")
        try await withDeadline(60) { try await load.value }
        let digests = try await cluster.settledDigests([0, 1, 2])
        #expect(Set(digests.map(\.index)).count == 1, "\(digests)")
        #expect(Set(digests.map(\.digest)).count == 1, "\(digests)")
        #expect(joiner.withMachine { $0.counter.value } == Int64(total))
        let statistics = provider.statistics
        #expect(statistics.snapshotBytesSent >= UInt64(256 << 10))
        #expect(statistics.snapshotPacingWaits >= 1, "the stream never waited for the bucket")
        #expect(statistics.snapshotBytesPerRefillMax > 0 && statistics.snapshotBytesPerRefillMax <= UInt64(chunk),
                "\(statistics.snapshotBytesPerRefillMax) bytes between two refills")
    }

    /// Shutdown while a (very slowly paced) transfer is in progress, the joiner first, then the provider: each
    /// shutdown returns and no state-transfer thread is left running.
    @Test func shutdownDuringTransfer_returns_noTransferThreadLeft() async throws {
        let cluster = try BulkCluster(size: 3, bulkBytes: 512 << 10)
        defer { cluster.shutdownAll() }
        let slow: (inout Replica<BulkCounter>.Options) -> Void = {
            $0.snapshotChunkBytes = 4 << 10
            $0.snapshotBytesPerSecondMax = 16 << 10 // 32 s for the state: it is in progress when we stop
        }
        let provider = try cluster.start(0, initialView: [0, 1], options: slow)
        let other = try cluster.start(1, initialView: [0, 1], options: slow)
        for replica in [provider, other] { try await replica.group.waitUntilRunning() }
        let joiner = try cluster.start(2, initialView: [0, 1])
        #expect(try await eventually(20) { joiner.transferThreadsRunning == 1 && joiner.isTransferring },
                "the joiner's pull never started")
        #expect(try await eventually(20) { provider.transferThreadsRunning == 1 }, "the provider's release thread")
        try await Task.sleep(for: .milliseconds(300))
        #expect(joiner.statistics.snapshotsRestored == 0, "the transfer was still in progress")

        try await withDeadline(20) { joiner.shutdown() }
        #expect(joiner.transferThreadsRunning == 0, "the joiner's pull thread outlived its shutdown")
        try await withDeadline(20) { provider.shutdown() }
        #expect(provider.transferThreadsRunning == 0, "the provider's transfer thread outlived its shutdown")
        try await withDeadline(20) { other.shutdown() }
    }
}
