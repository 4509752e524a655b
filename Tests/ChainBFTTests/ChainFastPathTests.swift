@testable import ChainBFT
import Foundation
import Glibc
import RingCastChain
import Synchronization
import Testing

/// The per-request costs the profile of docs/chain-bft.md ("Where the CPU goes") removed, each pinned by a
/// deterministic counter: send buffers are reused (no allocation per frame), several frames share one send, MACs and
/// digests live inline (the C struct, laid out as the core reads it), and a closed loop of callbacks never wakes the
/// client's engine thread.
@Suite("Chain fast path", .serialized) struct ChainFastPathTests {
    static func mac(_ seed: UInt8) -> ChainMAC { ChainMAC(bytes: (0..<16).map { seed &+ $0 }) }

    @Test func sizeClassesArePowersOfTwoFrom256Bytes() {
        #expect(ChainTransport.sizeClass(0) == 0)
        #expect(ChainTransport.sizeClass(1) == 0)
        #expect(ChainTransport.sizeClass(256) == 0)
        #expect(ChainTransport.sizeClass(257) == 1)
        #expect(ChainTransport.sizeClass(4154) == 5) // a 4 kB REQUEST frame: an 8 KiB buffer
        #expect(ChainTransport.sizeClass(256 << 15) == 15)
        #expect(ChainTransport.sizeClass((256 << 15) + 1) == nil) // larger: allocated exactly, never pooled
    }

    @Test func macsAndDigestsAreTheirCStructsAndKeepTheirBytes() {
        // Inline: 16 and 32 bytes, no array reference (ChainBatch.withCBatch lends [ChainMAC] as rc_crypto_mac[]).
        #expect(MemoryLayout<ChainMAC>.size == 16 && MemoryLayout<ChainMAC>.stride == 16)
        #expect(MemoryLayout<ChainDigest>.size == 32 && MemoryLayout<ChainDigest>.stride == 32)
        var mac = Self.mac(3)
        #expect(mac.bytes == (0..<16).map { 3 &+ $0 })
        mac.bytes[0] ^= 1
        #expect(mac.bytes[0] == 2)
        #expect(mac != Self.mac(3))
        #expect(mac.flipped() == Self.mac(3))
        #expect(Set([Self.mac(1), Self.mac(1), Self.mac(2)]).count == 2)
        var digest = ChainDigest(bytes: [UInt8](repeating: 7, count: 32))
        digest.bytes[31] = 8
        #expect(digest.bytes.last == 8 && digest.bytes.first == 7)
        #expect(digest == ChainDigest(digest.c))
    }

    /// One connection over loopback: 300 REQUEST frames of 4 kB, each sent once the previous one's buffer came back.
    /// Every frame arrives intact and in order, and the transport allocated one buffer per size class in use
    /// (HELLO's and the requests'), not one per frame. Then 16 frames in one send arrive as 16 frames.
    @Test func sendBuffersAreReusedAndSeveralFramesShareOneSend() throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let server = try ChainTransport(ChainTransport.Settings())
        let client = try ChainTransport(ChainTransport.Settings())
        let port = try server.listen(host: "127.0.0.1", port: 0)
        let conn = try client.connect(host: "127.0.0.1", port: port)
        var received: [ChainFrame] = []
        var connected = false
        let deadline = monotonicNanos() + 10_000_000_000
        func pump(until done: () -> Bool) throws {
            while !done() {
                try #require(monotonicNanos() < deadline, "timed out")
                try client.poll(timeoutNanos: 1_000_000) { event in
                    if case .connected = event { connected = true }
                    return .next
                }
                try server.poll(timeoutNanos: 1_000_000) { event in
                    if case .frame(_, let frame) = event { received.append(frame) }
                    return .next
                }
            }
        }
        try pump { connected }
        #expect(client.send(conn, .hello(.client(1), instance: 1)))
        try pump { received.count == 1 && client.sendsInFlight == 0 }
        let op = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        for k in 0..<300 {
            let frame = ChainFrame.request(ChainRequest(client: 1, timestamp: UInt64(k + 1), op: op), clientMACs: [Self.mac(1), Self.mac(2)])
            #expect(client.send(conn, frame))
            try pump { received.count == k + 2 && client.sendsInFlight == 0 }
        }
        #expect(client.framesOut == 301)
        #expect(client.sendBuffersAllocated == 2)
        for (k, frame) in received.dropFirst().enumerated() {
            guard case .request(let request, let macs) = frame else {
                Issue.record("frame \(k) is not a request")
                continue
            }
            #expect(request.timestamp == UInt64(k + 1) && request.op == op && macs == [Self.mac(1), Self.mac(2)])
        }
        let burst = (0..<16).map { k in
            ChainFrame.request(ChainRequest(client: 1, timestamp: UInt64(1000 + k), op: Array(op.prefix(100 + k))), clientMACs: [Self.mac(3), Self.mac(4)])
        }
        #expect(client.send(conn, frames: burst))
        try pump { received.count == 301 + 16 && client.sendsInFlight == 0 }
        #expect(client.framesOut == 317)
        #expect(client.sendBuffersAllocated == 3) // the burst's one buffer (a larger class)
        let timestamps = received.suffix(16).compactMap { frame -> UInt64? in
            guard case .request(let request, _) = frame, request.op.count == Int(request.timestamp) - 900 else { return nil }
            return request.timestamp
        }
        #expect(timestamps == (0..<16).map { UInt64(1000 + $0) })
    }

    /// The callback API: closed loops that submit again from their completion (on the engine thread) run 400 puts
    /// with replies as the store computes them, and write no wake-up beyond the first submits from this thread.
    @Test func callbackClosedLoopsCommitEveryRequestWithoutWakeUps() throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try TestCluster(f: 1)
        defer { cluster.stop() }
        let client = try cluster.client(0, window: 8)
        defer { client.close() }
        final class Loops: Sendable {
            let client: ChainClient
            let left = Atomic<Int>(400)
            let commits = Atomic<Int>(0)
            let failures = Mutex<[String]>([])
            let done = DispatchSemaphore(value: 0)
            init(_ client: ChainClient) { self.client = client }
            func next(_ k: Int) {
                guard left.subtract(1, ordering: .relaxed).newValue >= 0 else {
                    done.signal()
                    return
                }
                let op = ChainOperation.command(TestStore.Command.put(key: Array("k\(k % 5)".utf8), value: Array("v\(k)".utf8)))
                client.submit(op) { [self] result in
                    switch result {
                    case .success(let reply):
                        if let output = try? ChainOperation.decodeReply(reply, as: TestStore.Output.self), output.value != nil {
                            commits.add(1, ordering: .relaxed)
                        } else {
                            failures.withLock { $0.append("undecodable reply") }
                        }
                        next(k + 8)
                    case .failure(let error):
                        failures.withLock { $0.append("\(error)") }
                        done.signal()
                    }
                }
            }
        }
        let loops = Loops(client)
        for k in 0..<8 { loops.next(k) }
        for _ in 0..<8 {
            #expect(loops.done.wait(timeout: .now() + 30) == .success, "a closed loop did not end")
        }
        #expect(loops.failures.withLock { $0 } == [])
        #expect(loops.commits.load(ordering: .relaxed) == 400)
        #expect(client.statistics.commits == 400)
        #expect(client.wakeUps <= 8) // only the 8 first submits, from this thread, may wake the engine
        // The store applied exactly the 400 puts, in one order on every replica.
        let applied = try ChainOperation.decodeReply(
            try submitAndWait(client, ChainOperation.query(TestStore.Query(key: Array(TestStore.appliedKey.utf8)))),
            as: TestStore.Output.self)
        #expect(applied.value == Array("400".utf8))
        // Each request's payload is hashed once (D(req), kept for C1 and C4), each reply once (D(reply)): 401
        // requests (the 400 puts and the query), none resubmitted. Hashing at C1 and again at C4 would make it 1,203.
        #expect(client.statistics.panics == 0 && client.statistics.resubmitted == 0)
        let deadline = monotonicNanos() + 10_000_000_000
        while client.statistics.digests < 802 && monotonicNanos() < deadline { usleep(5_000) }
        #expect(client.statistics.digests == 802)
    }

    @Test func aSubmitAfterCloseCompletesAtOnceWithStopped() throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try TestCluster(f: 1)
        defer { cluster.stop() }
        let client = try cluster.client(1)
        client.close()
        let outcome = Mutex<Result<[UInt8], ChainBFTError>?>(nil)
        client.submit([1]) { result in outcome.withLock { $0 = result } }
        guard case .failure(.stopped)? = outcome.withLock({ $0 }) else {
            Issue.record("expected .stopped at once, got \(String(describing: outcome.withLock { $0 }))")
            return
        }
    }
}

/// Submits through the callback API and waits for the outcome (bounded).
func submitAndWait(_ client: ChainClient, _ op: [UInt8]) throws -> [UInt8] {
    let outcome = Mutex<Result<[UInt8], ChainBFTError>?>(nil)
    let done = DispatchSemaphore(value: 0)
    client.submit(op) { result in
        outcome.withLock { $0 = result }
        done.signal()
    }
    guard done.wait(timeout: .now() + 30) == .success, let result = outcome.withLock({ $0 }) else {
        throw ChainBFTError.timedOut
    }
    return try result.get()
}
