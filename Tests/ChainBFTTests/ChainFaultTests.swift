import ChainBFT
import Glibc
import RingCastChain
import RingCastSMR
import Testing

/// Faults over real sockets: a crashed replica, Byzantine replicas (a correct core whose outgoing frames or replies a
/// test wrapper alters: never a flag in the core), malformed input. The property every test asserts: a correct client
/// never commits a reply a correct replica did not compute; a stuck or lying chain ends in a PANIC and an abort.
@Suite(.serialized)
struct ChainFaultTests {
    /// Writes `count` puts; returns the outputs that committed and the first error.
    func workload(_ client: ChainClient, count: Int, tag: String) async -> (committed: [(Int, TestStore.Output)], error: ChainBFTError?) {
        var committed: [(Int, TestStore.Output)] = []
        for k in 0..<count {
            do {
                committed.append((k, try await put(client, "\(tag)\(k % 3)", "v\(k)")))
            } catch let error as ChainBFTError {
                return (committed, error)
            } catch {
                Issue.record("unexpected error \(error)")
                return (committed, nil)
            }
        }
        return (committed, nil)
    }

    /// Every committed reply is the one a correct replica computes (the values written, the running digest of a
    /// correct replica's own state machine replaying the same commands).
    func expectCorrect(_ committed: [(Int, TestStore.Output)], tag: String) {
        var reference = TestStore()
        var outputs: [TestStore.Output] = []
        for (index, (k, output)) in committed.enumerated() {
            var batch = CommandBatch<TestStore.Command>()
            batch.append(.put(key: Array("\(tag)\(k % 3)".utf8), value: Array("v\(k)".utf8)),
                         ApplyContext(index: UInt64(index + 1), orderedTimeMillis: 0, session: 0, sequence: 0))
            outputs.removeAll()
            reference.apply(batch, into: &outputs)
            #expect(output == outputs[0], "commit \(k) is not what a correct replica computes")
        }
    }

    /// Spec §1 (Chain progress needs every replica): a crashed replica stalls the chain; the client's timer fires,
    /// it PANICs and collects 2f+1 signed ABORTs from the others; nothing wrong commits.
    @Test func crashedReplicaLeadsToPanicAndAbort() async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try TestCluster(f: 1)
        defer { cluster.stop() }
        let client = try cluster.client(0, timeoutMillis: 500)
        defer { client.close() }
        let before = await workload(client, count: 10, tag: "a")
        #expect(before.committed.count == 10 && before.error == nil)
        cluster.replicas[2].stop() // crash r_3 (a middle replica)
        let after = await workload(client, count: 10, tag: "b")
        #expect(after.committed.isEmpty)
        guard case .aborted(instance: 1, _)? = after.error else {
            Issue.record("expected an abort of instance 1, got \(String(describing: after.error))")
            return
        }
        #expect(client.statistics.panics == 1)
        #expect(client.statistics.abortsValid >= 3)
        expectCorrect(before.committed, tag: "a")
        // The instance is over for this client: the next request fails at once, clearly.
        await #expect(throws: ChainBFTError.self) { _ = try await put(client, "x", "y") }
    }

    /// Spec §21 "a lying tail": the tail alters the reply bytes after its correct core MACed them. C4 fails (the ρ of
    /// Σlast cover the correct reply), the client panics; it never returns the altered reply.
    @Test func lyingTailNeverCommits() async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try TestCluster(f: 1) { settings in
            guard settings.position == 3 else { return }
            settings.outbound = { frame in
                guard case .reply(var reply) = frame, reply.sn >= 5 else { return frame }
                reply.reply = ChainOperation.command(TestStore.Command.put(key: [1], value: [2]))
                return .reply(reply)
            }
        }
        defer { cluster.stop() }
        let client = try cluster.client(0, timeoutMillis: 500)
        defer { client.close() }
        let run = await workload(client, count: 10, tag: "t")
        #expect(run.committed.count == 4)
        expectCorrect(run.committed, tag: "t")
        guard case .aborted? = run.error else { Issue.record("expected an abort, got \(String(describing: run.error))"); return }
        #expect(client.statistics.replyChecksFailed >= 1)
    }

    /// Spec §21 "a lying member of Σlast" (D1): r_3 computes a wrong reply and MACs it honestly; the tail's reply is
    /// correct but r_3's ρ does not cover it, so C4 fails and nothing wrong commits.
    @Test func lyingSigmaLastMemberNeverCommits() async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try TestCluster(f: 1) { settings in
            guard settings.position == 2 else { return }
            settings.replyTamper = { sn, reply in sn >= 3 ? reply + [0xff] : reply }
        }
        defer { cluster.stop() }
        let client = try cluster.client(0, timeoutMillis: 500)
        defer { client.close() }
        let run = await workload(client, count: 10, tag: "s")
        #expect(run.committed.count == 2)
        expectCorrect(run.committed, tag: "s")
        guard case .aborted? = run.error else { Issue.record("expected an abort, got \(String(describing: run.error))"); return }
    }

    /// Spec §21 "tampers with content": r_2 changes a request's bytes and re-authenticates the batch with its own
    /// keys (the strongest it can do). r_3 checks the head's MAC too (pred(r_3) = {r_1, r_2}), stops, and the client
    /// never commits the altered request.
    @Test func tamperingReplicaIsDetected() async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let keys = try ChainKeys.generate(f: 1, clients: 4)
        let byzantineRing = UncheckedRing(try keys.keyRing(for: .replica(1)))
        let cluster = try TestCluster(f: 1, keys: keys) { settings in
            guard settings.position == 1 else { return }
            settings.outbound = { frame in
                guard case .batch(var batch) = frame, batch.snFirst + UInt64(batch.requests.count) > 5 else { return frame }
                let k = batch.requests.count - 1
                batch.requests[k].op = ChainOperation.command(TestStore.Command.put(key: Array("evil".utf8), value: [0]))
                let block = byzantineRing.lock.withLock { batch.orderingBlock(f: 1, position: 1, keyRing: byzantineRing.ring) }
                batch.window.replaceSubrange((batch.window.count - block.count)..., with: block)
                return .batch(batch)
            }
        }
        defer { cluster.stop() }
        let client = try cluster.client(0, timeoutMillis: 500)
        defer { client.close() }
        let run = await workload(client, count: 10, tag: "m")
        #expect(run.committed.count <= 5)
        expectCorrect(run.committed, tag: "m")
        guard case .aborted? = run.error else { Issue.record("expected an abort, got \(String(describing: run.error))"); return }
        #expect(cluster.replicas[2].statistics.stopped)
        #expect(cluster.replicas[2].statistics.stopReason == 3) // RC_CHAIN_STOP_ORDERING_MAC
    }

    /// Bad input gets a clear error and the node keeps working: garbage, an oversized length, a frame before HELLO.
    @Test func malformedFramesCloseTheConnectionOnly() async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try TestCluster(f: 1)
        defer { cluster.stop() }
        let client = try cluster.client(0)
        defer { client.close() }
        _ = try await put(client, "k", "1")
        let head = cluster.endpoints[0]
        for garbage: [UInt8] in [[0xff, 0xff, 0xff, 0xff, 1], [5, 0, 0, 0, 99, 1, 2, 3, 4], [5, 0, 0, 0, 6, 0, 0, 0, 0]] {
            try rawSend(garbage, to: head)
        }
        let deadline = monotonicNow() + 2_000_000_000
        while cluster.replicas[0].statistics.malformedFrames < 3 && monotonicNow() < deadline { usleep(10_000) }
        #expect(cluster.replicas[0].statistics.malformedFrames == 3)
        let output = try await put(client, "k", "2")
        #expect(output.value == Array("2".utf8))
        #expect(!cluster.replicas[0].statistics.stopped)
    }
}

/// The Byzantine replica's key ring, used from its engine thread only (the hook runs there).
final class UncheckedRing: @unchecked Sendable {
    let ring: ChainKeyRing
    let lock = NSLockLike()
    init(_ ring: ChainKeyRing) { self.ring = ring }
}

final class NSLockLike: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }
}

func monotonicNow() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// Connects with a plain socket, writes `bytes`, and closes after a moment.
func rawSend(_ bytes: [UInt8], to endpoint: ChainEndpoint) throws {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr(endpoint.host)
    address.sin_port = endpoint.port.bigEndian
    let rc = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    try #require(rc == 0, "connect: errno \(errno)")
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    usleep(50_000)
}
