@testable import ChainBFT
import Foundation
import Glibc
import RingCastChain
import Testing

/// The forwarding path's byte handling: ChainWire sizes a frame before writing it (the transport encodes straight into
/// the send buffer), and the payload copies each replica makes per request per hop are counted.
@Suite("Chain hot path") struct ChainHotPathTests {
    // RC_CRYPTO_MAC_BYTES and RC_CRYPTO_DIGEST_BYTES (ChainMAC and ChainDigest check the sizes).
    static func mac(_ seed: UInt8) -> ChainMAC { ChainMAC(bytes: [UInt8](repeating: seed, count: 16)) }
    static func digest(_ seed: UInt8) -> ChainDigest { ChainDigest(bytes: [UInt8](repeating: seed, count: 32)) }

    static func op(_ k: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 4096 + k)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 7 &+ k) }
        return bytes
    }

    static var frames: [ChainFrame] {
        let requests: [ChainRequest] = (0..<5).map { k in ChainRequest(client: UInt32(k), timestamp: UInt64(100 + k), op: op(k)) }
        let clientMACs: [ChainMAC] = (0..<5).map { mac(UInt8(10 + $0)) }
        let replyMACs: [ChainMAC] = (0..<10).map { mac(UInt8(20 + $0)) }
        let digests: [ChainDigest] = (0..<5).map { digest(UInt8(40 + $0)) }
        let batch = ChainBatch(instance: 3, snFirst: 41, requests: requests, window: [mac(1), mac(2), mac(3)],
                               clientMACsPerRequest: 1, clientMACs: clientMACs, replyMACsPerRequest: 2, replyMACs: replyMACs,
                               historyDigests: digests)
        let reply = ChainReply(client: 1, timestamp: 2, sn: 3, reply: [1, 2, 3], historyDigest: digest(9), replyMACs: [mac(7), mac(8)])
        return [
            .hello(.replicaData(2), instance: 9),
            .request(requests[1], clientMACs: [mac(5), mac(6)]),
            .request(ChainRequest(client: 1, timestamp: 2, op: []), clientMACs: [mac(5), mac(6)]),
            .batch(batch),
            .reply(reply),
        ]
    }

    @Test func theCountingPassSizesEveryFrameExactlyAndTheBytesRoundTrip() throws {
        for frame in Self.frames {
            let bytes = ChainWire.encode(frame)
            #expect(bytes.count == ChainWire.encodedSize(frame))
            let length = try bytes.withUnsafeBytes { try ChainWire.frameLength($0, limits: ChainWireLimits()) }
            #expect(length == bytes.count)
            let decoded = try bytes.withUnsafeBytes { try ChainWire.decode($0, limits: ChainWireLimits()) }
            // Re-encoding the decoded frame gives the same bytes: nothing lost or reordered by the one-pass writer.
            #expect(ChainWire.encode(decoded) == bytes)
            // Into a caller's buffer: the same bytes, and nothing written past them.
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count + 8, alignment: 16)
            defer { buffer.deallocate() }
            buffer.initializeMemory(as: UInt8.self, repeating: 0xee)
            let written = ChainWire.encode(frame, into: buffer)
            #expect(written == bytes.count)
            #expect(Array(buffer[0..<written]) == bytes)
            #expect(buffer[written...].allSatisfy { $0 == 0xee })
        }
    }

    @Test func aBatchKeepsEachRequestsBytes() throws {
        guard case .batch(let batch) = Self.frames[3] else { Issue.record("no batch"); return }
        let bytes = ChainWire.encode(.batch(batch))
        guard case .batch(let decoded) = try bytes.withUnsafeBytes({ try ChainWire.decode($0, limits: ChainWireLimits()) }) else {
            Issue.record("not a batch")
            return
        }
        #expect(decoded.requests.map(\.op) == batch.requests.map(\.op))
        #expect(decoded.historyDigests == batch.historyDigests)
        #expect(decoded.replyMACs == batch.replyMACs)
    }

    /// Per request per hop: the head decodes the REQUEST and encodes the batch (2); a middle replica decodes the batch
    /// and encodes it again (2: the core reads each op in place, ChainBatch.withCBatch no longer lays them out in a
    /// buffer of their own); the tail decodes (1). The counters are exact whatever the load, so equality is asserted.
    @Test func payloadCopiesPerRequestPerHopAreCounted() async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try TestCluster(f: 1)
        defer { cluster.stop() }
        let client = try cluster.client(0, window: 1)
        defer { client.close() }
        for k in 0..<40 { _ = try await put(client, "k\(k)", String(repeating: "v", count: 100)) }
        let deadline = Date().addingTimeInterval(10)
        while cluster.replicas.contains(where: { $0.statistics.requestsLogged < 40 }), Date() < deadline { usleep(10_000) }
        let stats = cluster.replicas.map(\.statistics)
        for s in stats { #expect(s.requestsLogged == 40) }
        #expect(stats.map(\.payloadCopies) == [80, 80, 80, 40])
    }
}
