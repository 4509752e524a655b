@testable import ChainBFT
import RingCastBackup
import RingCastChain
import Testing

/// Backup's frames on the Chain wire (spec §13.1): PBFT envelopes of every kind (nested VIEW-CHANGE and NEW-VIEW
/// included), a client request carrying an init history, a reply; each round-trips with its signature or MAC still
/// valid, and truncated or garbage input is refused with a clear error (the replica closes that connection only).
struct BackupWireTests {
    let keys: ChainKeys
    let rings: [ChainKeyRing]
    let client: ChainKeyRing

    init() throws {
        let keys = try ChainKeys.generate(f: 1, clients: 2)
        self.keys = keys
        rings = try (0..<4).map { try keys.keyRing(for: .replica(UInt32($0))) }
        client = try keys.keyRing(for: .client(1))
    }

    func decode(_ bytes: [UInt8]) throws(ChainWireError) -> ChainFrame? { try decodeOneFrame(bytes) }

    /// A request carrying a (signed, well-formed) init history of one entry.
    func request() -> PBFT.ClientRequest {
        let d = ChainDigest.request(client: 0, timestamp: 1, op: [7], keyRing: rings[0])
        let entry = ChainAbort.Entry(sn: 1, client: 0, timestamp: 1, requestDigest: d,
                                     historyDigest: ChainDigest.zero.extended(sn: 1, request: d, keyRing: rings[0]))
        let proof = (0..<3).map { r in
            ChainAbort.backupHistory(replica: UInt32(r), client: 0, timestamp: 9, instance: 1, base: 0, baseDigest: .zero,
                                     entries: [entry], keyRing: rings[r])
        }
        let ih = ChainInitHistory(instance: 2, base: 0, baseDigest: .zero, entries: [entry], proof: proof)
        return PBFT.ClientRequest(PBFT.Request(client: 1, timestamp: 5, op: [1, 2, 3], initHistory: ih), keyRing: client, n: 4)
    }

    func viewChange() -> PBFT.Envelope {
        let r = request()
        let d = PBFT.requestDigest(r.request, keyRing: rings[0])
        let pp = PBFT.Envelope.sign(.prePrepare(PBFT.PrePrepare(view: 0, sn: 1, digest: d, request: r)), by: 0, keyRing: rings[0])
        let prepares = (1...2).map { PBFT.Envelope.sign(.prepare(PBFT.Vote(view: 0, sn: 1, digest: d)), by: UInt32($0), keyRing: rings[$0]) }
        let checkpoint = PBFT.Envelope.sign(.checkpoint(PBFT.Checkpoint(sn: 0, digest: .zero)), by: 2, keyRing: rings[2])
        let vc = PBFT.ViewChange(newView: 1, stableSn: 0, stableDigest: .zero, checkpointProof: [checkpoint],
                                 prepared: [PBFT.PreparedCertificate(prePrepare: pp, prepares: prepares)])
        return PBFT.Envelope.sign(.viewChange(vc), by: 3, keyRing: rings[3])
    }

    @Test func section13_1_envelopesRoundTripWithTheirSignatures() throws {
        let vc = viewChange()
        let nullPrePrepare = PBFT.Envelope.sign(.prePrepare(PBFT.PrePrepare(view: 1, sn: 2, digest: .zero, request: nil)),
                                                by: 1, keyRing: rings[1])
        let newView = PBFT.Envelope.sign(.newView(PBFT.NewView(view: 1, viewChanges: [vc], prePrepares: [nullPrePrepare])),
                                         by: 1, keyRing: rings[1])
        let commit = PBFT.Envelope.sign(.commit(PBFT.Vote(view: 0, sn: 3, digest: .zero)), by: 2, keyRing: rings[2])
        for e in [vc, newView, commit, nullPrePrepare] {
            guard case let .pbft(instance, back)? = try decode(ChainWire.encode(.pbft(instance: 4, e))) else {
                Issue.record("not a PBFT frame")
                continue
            }
            #expect(instance == 4)
            #expect(back == e)
            #expect(back.verify(keyRing: rings[0]))
        }
    }

    @Test func section13_1_requestAndReplyRoundTrip() throws {
        let r = request()
        guard case let .backupRequest(instance, back)? = try decode(ChainWire.encode(.backupRequest(instance: 2, r))) else {
            Issue.record("not a Backup request")
            return
        }
        #expect(instance == 2 && back == r)
        let reply = PBFT.Reply(view: 3, client: 1, timestamp: 5, replica: 2, result: [0, 9, 9], mac: ChainMAC(bytes: Array(0..<16)))
        guard case let .backupReply(_, replyBack)? = try decode(ChainWire.encode(.backupReply(instance: 2, reply))) else {
            Issue.record("not a Backup reply")
            return
        }
        #expect(replyBack == reply)
    }

    /// Every strict prefix of a well-formed frame whose length field is patched to the prefix is refused (truncated
    /// bodies), never decoded into something else and never trapping.
    @Test func truncatedFramesAreRefused() throws {
        let frames: [ChainFrame] = [.pbft(instance: 2, viewChange()), .backupRequest(instance: 2, request()),
                                    .backupReply(instance: 2, PBFT.Reply(view: 0, client: 1, timestamp: 1, replica: 0,
                                                                         result: [1], mac: ChainMAC(bytes: Array(0..<16))))]
        for frame in frames {
            let bytes = ChainWire.encode(frame)
            var refused = 0
            for cut in stride(from: 5, to: bytes.count, by: max(1, bytes.count / 97)) {
                var prefix = Array(bytes.prefix(cut))
                let length = UInt32(cut - 4)
                for k in 0..<4 { prefix[k] = UInt8(truncatingIfNeeded: length >> (8 * UInt32(k))) }
                do {
                    _ = try decode(prefix)
                    Issue.record("a frame cut at \(cut) of \(bytes.count) bytes decoded")
                } catch {
                    refused += 1
                }
            }
            #expect(refused > 0)
        }
    }

    @Test func garbageIsRefusedClearly() throws {
        // An unknown PBFT message kind, a nested envelope of the wrong kind, a signature of the wrong size.
        var unknownKind = ChainWire.encode(.pbft(instance: 2, PBFT.Envelope.sign(.checkpoint(PBFT.Checkpoint(sn: 1, digest: .zero)),
                                                                                   by: 1, keyRing: rings[1])))
        unknownKind[4 + 1 + 8 + 4] = 77
        #expect { _ = try decode(unknownKind) } throws: { ($0 as? ChainWireError)?.reason.contains("unknown PBFT message kind") == true }

        let commit = PBFT.Envelope.sign(.commit(PBFT.Vote(view: 0, sn: 1, digest: .zero)), by: 2, keyRing: rings[2])
        let wrongNesting = PBFT.Envelope.sign(.newView(PBFT.NewView(view: 1, viewChanges: [commit], prePrepares: [])),
                                              by: 1, keyRing: rings[1])
        #expect { _ = try decode(ChainWire.encode(.pbft(instance: 2, wrongNesting))) } throws: {
            ($0 as? ChainWireError)?.reason.contains("where viewChange belongs") == true
        }

        let shortSignature = PBFT.Envelope(sender: 1, message: .checkpoint(PBFT.Checkpoint(sn: 1, digest: .zero)), signature: [1, 2])
        #expect { _ = try decode(ChainWire.encode(.pbft(instance: 2, shortSignature))) } throws: {
            ($0 as? ChainWireError)?.reason.contains("signature of 2 bytes") == true
        }
    }
}
