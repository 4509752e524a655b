@testable import ChainBFT
import Foundation
import Glibc
import RingCastChain
import Testing

/// The Chain frame codec: every frame kind round-trips; input no correct sender writes is refused with a clear
/// error before anything is allocated for it.
struct ChainWireTests {
    func decode(_ bytes: [UInt8], limits: ChainWireLimits = ChainWireLimits()) throws(ChainWireError) -> ChainFrame? {
        try decodeOneFrame(bytes, limits: limits)
    }

    func mac(_ seed: UInt8) -> ChainMAC { ChainMAC(bytes: (0..<16).map { seed &+ $0 }) }
    func digest(_ seed: UInt8) -> ChainDigest { ChainDigest(bytes: (0..<32).map { seed &+ $0 }) }

    @Test func batchAndReplyRoundTrip() throws {
        let batch = ChainBatch(
            instance: 1, snFirst: 7,
            requests: [ChainRequest(client: 2, timestamp: 99, op: [1, 2, 3]), ChainRequest(client: 3, timestamp: 5, op: [])],
            window: [mac(1), mac(2), mac(3)], clientMACsPerRequest: 1, clientMACs: [mac(4), mac(5)],
            replyMACsPerRequest: 0, replyMACs: [], historyDigests: [])
        guard case .batch(let decoded)? = try decode(ChainWire.encode(.batch(batch))) else { Issue.record("not a batch"); return }
        #expect(decoded == batch)
        let reply = ChainReply(client: 2, timestamp: 99, sn: 7, reply: [9, 9], historyDigest: digest(3), replyMACs: [mac(6), mac(7)])
        guard case .reply(let back)? = try decode(ChainWire.encode(.reply(reply))) else { Issue.record("not a reply"); return }
        #expect(back == reply)
        guard case .hello(.client(5), instance: 3)? = try decode(ChainWire.encode(.hello(.client(5), instance: 3))) else {
            Issue.record("HELLO did not round-trip")
            return
        }
    }

    @Test func abortRoundTripKeepsItsSignature() throws {
        let keys = try ChainKeys.generate(f: 1, clients: 1)
        let ring = try keys.keyRing(for: .replica(0))
        let core = try ChainCore(ChainCore.settings(f: 1, self: 0, clients: 1, crypto: ring.crypto), keyRing: ring)
        let client = ChainClientAuthenticator(keyRing: try keys.keyRing(for: .client(0)), f: 1, client: 0)
        let abort = try core.panic(try client.panic(timestamp: 1, replica: 0)).get()
        guard case .abort(let decoded)? = try decode(ChainWire.encode(.abort(abort))) else { Issue.record("not an abort"); return }
        #expect(decoded == abort)
        #expect(decoded.verify(with: try keys.keyRing(for: .client(0))))
    }

    @Test func partialFrameWaitsForMoreBytes() throws {
        let bytes = ChainWire.encode(.hello(.replicaData(1), instance: 1))
        #expect(try decode(Array(bytes.prefix(bytes.count - 1))) == nil)
        #expect(try decode(Array(bytes.prefix(3))) == nil)
    }

    @Test(arguments: [
        ([0, 0, 0, 0] as [UInt8], "empty"),
        ([0xff, 0xff, 0xff, 0x7f], "exceeds"),
        ([1, 0, 0, 0, 42], "unknown kind"),
        ([6, 0, 0, 0, 1, 9, 0, 0, 0, 0], "unknown role"),
        ([5, 0, 0, 0, 2, 0, 0, 0, 0], "needs"),
    ])
    func malformedInputIsRefusedClearly(bytes: [UInt8], reason: String) {
        do {
            _ = try decode(bytes)
            Issue.record("accepted \(bytes)")
        } catch {
            #expect(error.reason.contains(reason), "\(error.reason)")
        }
    }

    @Test func aHugeCountIsRefusedBeforeAllocating() {
        var limits = ChainWireLimits()
        limits.macsMax = 8
        // A REQUEST claiming 2^32-1 client MACs in a 25-byte frame.
        var bytes: [UInt8] = [0, 0, 0, 0, 2] + [0, 0, 0, 0] + [UInt8](repeating: 0, count: 8) + [0, 0, 0, 0] + [0xff, 0xff, 0xff, 0xff]
        bytes[0] = UInt8(bytes.count - 4)
        #expect(throws: ChainWireError.self) { _ = try decode(bytes, limits: limits) }
    }

    @Test func keyFilesLoadOnlyTheirOwnerAndRefuseLoosePermissions() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chain-keys-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try ChainKeyDirectory.generate(directory: directory, f: 1, clients: 2)
        let (head, f, clients) = try ChainKeyDirectory.load(directory: directory, principal: .replica(0))
        #expect(f == 1 && clients == 2)
        let (client, _, _) = try ChainKeyDirectory.load(directory: directory, principal: .client(0))
        // The loaded rings agree: the head accepts a request MACed with client 0's file (C2 step 3), and refuses the
        // same request claimed by client 1 (whose key it shares with nobody else).
        let core = try ChainCore(ChainCore.settings(f: 1, self: 0, clients: 2, crypto: head.crypto), keyRing: head)
        let macs = try ChainClientAuthenticator(keyRing: client, f: 1, client: 0).authenticate(timestamp: 1, op: [1])
        #expect(core.request(ChainRequest(client: 0, timestamp: 1, op: [1]), clientMACs: macs) == 0)
        #expect(core.request(ChainRequest(client: 1, timestamp: 1, op: [1]), clientMACs: macs) == -EBADMSG)
        chmod(directory + "/client-1.chainkey", 0o644)
        #expect(throws: ChainBFTError.self) { _ = try ChainKeyDirectory.load(directory: directory, principal: .client(1)) }
        #expect(throws: ChainBFTError.self) { _ = try ChainKeyDirectory.load(directory: directory, principal: .client(7)) }
    }
}

/// Decodes the first frame of `bytes` (nil: incomplete), as the transport would: length first, then the body.
func decodeOneFrame(_ bytes: [UInt8], limits: ChainWireLimits = ChainWireLimits()) throws(ChainWireError) -> ChainFrame? {
    let result = bytes.withUnsafeBytes { raw -> Result<ChainFrame?, ChainWireError> in
        do throws(ChainWireError) {
            guard let length = try ChainWire.frameLength(raw, limits: limits) else { return .success(nil) }
            return .success(try ChainWire.decode(UnsafeRawBufferPointer(rebasing: raw[0..<length]), limits: limits))
        } catch {
            return .failure(error)
        }
    }
    return try result.get()
}
