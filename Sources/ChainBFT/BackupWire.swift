import RingCastBackup
import RingCastChain
internal import CRingCastCore

/// Backup's frames on the Chain wire (spec §13.1): PBFT's signed envelopes between replicas (on the control links),
/// a client's request to every replica, and a replica's reply to it. Each names the Backup instance it belongs to, so
/// a frame of an instance left is told apart from the current one's. The decoder bounds every count by the bytes
/// left and by ``ChainWireLimits`` before it allocates, and accepts only the nesting PBFT uses (a VIEW-CHANGE carries
/// CHECKPOINTs and prepared certificates of PRE-PREPAREs and PREPAREs; a NEW-VIEW carries VIEW-CHANGEs and
/// PRE-PREPAREs), so a frame cannot make the decoder recurse deeper than three levels.
extension ChainWire {
    /// Ed25519 signature bytes (rc_crypto_signature).
    static var signatureBytes: Int { Int(RC_CRYPTO_SIGNATURE_BYTES) }

    static func putBackup(_ frame: ChainFrame, _ w: inout FrameWriter) {
        switch frame {
        case let .pbft(instance, envelope):
            w.uint8(ChainFrame.Kind.pbft.rawValue)
            w.uint64(instance)
            putEnvelope(envelope, &w)
        case let .backupRequest(instance, request):
            w.uint8(ChainFrame.Kind.backupRequest.rawValue)
            w.uint64(instance)
            putClientRequest(request, &w)
        case let .backupReply(instance, reply):
            w.uint8(ChainFrame.Kind.backupReply.rawValue)
            w.uint64(instance)
            w.uint64(reply.view); w.uint32(reply.client); w.uint64(reply.timestamp); w.uint32(reply.replica)
            w.lengthPrefixed(reply.result)
            w.tag(reply.mac)
        default:
            preconditionFailure("putBackup takes the Backup frames only")
        }
    }

    static func backupFrame(_ kind: ChainFrame.Kind, _ r: inout RawReader,
                            _ limits: ChainWireLimits) throws(ChainWireError) -> ChainFrame {
        let instance = try r.u64()
        switch kind {
        case .pbft:
            return .pbft(instance: instance, try envelope(&r, limits, depth: 0))
        case .backupRequest:
            return .backupRequest(instance: instance, try clientRequest(&r, limits))
        case .backupReply:
            let view = try r.u64(), client = try r.u32(), timestamp = try r.u64(), replica = try r.u32()
            let result = try r.byteString()
            return .backupReply(instance: instance, PBFT.Reply(view: view, client: client, timestamp: timestamp,
                                                               replica: replica, result: result, mac: try r.mac()))
        default:
            throw ChainWireError("not a Backup frame: \(kind)")
        }
    }

    // ---- requests ---------------------------------------------------------------------------------------

    static func putClientRequest(_ c: PBFT.ClientRequest, _ w: inout FrameWriter) {
        w.uint32(c.request.client)
        w.uint64(c.request.timestamp)
        w.lengthPrefixed(c.request.op)
        if let ih = c.request.initHistory {
            w.uint8(1)
            putInitHistory(ih, &w)
        } else {
            w.uint8(0)
        }
        w.uint32(UInt32(c.authenticator.count))
        for mac in c.authenticator { w.tag(mac) }
    }

    static func clientRequest(_ r: inout RawReader, _ limits: ChainWireLimits) throws(ChainWireError) -> PBFT.ClientRequest {
        let client = try r.u32(), timestamp = try r.u64()
        let op = try r.byteString()
        let flag = try r.u8()
        guard flag <= 1 else { throw ChainWireError("a Backup request with init-history flag \(flag)") }
        let ih = flag == 1 ? try initHistory(&r, limits) : nil
        let authenticator = try r.macs(limits)
        guard authenticator.count <= Int(3 * RC_CHAIN_F_MAX + 1) else {
            throw ChainWireError("an authenticator of \(authenticator.count) MACs")
        }
        return PBFT.ClientRequest(request: PBFT.Request(client: client, timestamp: timestamp, op: op, initHistory: ih),
                                  authenticator: authenticator)
    }

    // ---- envelopes --------------------------------------------------------------------------------------

    /// What an envelope nested at some place may hold (nil: anything, at the top).
    enum Nested { case checkpoint, prePrepare, prepare, viewChange }

    static func putEnvelope(_ e: PBFT.Envelope, _ w: inout FrameWriter) {
        w.uint32(e.sender)
        putMessage(e.message, &w)
        w.lengthPrefixed(e.signature)
    }

    static func putMessage(_ m: PBFT.Message, _ w: inout FrameWriter) {
        switch m {
        case .prePrepare(let p):
            // The batch: its length, then each request (none: the null request).
            w.uint8(1); w.uint64(p.view); w.uint64(p.sn); w.tag(p.digest)
            w.uint32(UInt32(p.requests.count))
            for request in p.requests { putClientRequest(request, &w) }
        case .prepare(let v):
            w.uint8(2); w.uint64(v.view); w.uint64(v.sn); w.tag(v.digest)
        case .commit(let v):
            w.uint8(3); w.uint64(v.view); w.uint64(v.sn); w.tag(v.digest)
        case .checkpoint(let c):
            w.uint8(4); w.uint64(c.sn); w.tag(c.digest)
        case .viewChange(let vc):
            w.uint8(5); w.uint64(vc.newView); w.uint64(vc.stableSn); w.tag(vc.stableDigest)
            w.uint32(UInt32(vc.checkpointProof.count))
            for e in vc.checkpointProof { putEnvelope(e, &w) }
            w.uint32(UInt32(vc.prepared.count))
            for cert in vc.prepared {
                putEnvelope(cert.prePrepare, &w)
                w.uint32(UInt32(cert.prepares.count))
                for e in cert.prepares { putEnvelope(e, &w) }
            }
        case .newView(let nv):
            w.uint8(6); w.uint64(nv.view)
            w.uint32(UInt32(nv.viewChanges.count))
            for e in nv.viewChanges { putEnvelope(e, &w) }
            w.uint32(UInt32(nv.prePrepares.count))
            for e in nv.prePrepares { putEnvelope(e, &w) }
        }
    }

    /// Requests one PRE-PREPARE may carry on the wire (``RingCastBackup/PBFT/Settings/batchMax`` is at most this; the
    /// core checks its own, smaller bound).
    static let batchRequestsMax = 1024

    /// A count of nested items, each at least `itemBytesMin` long: bounded by the bytes left and by `max`.
    static func count(_ r: inout RawReader, itemBytesMin: Int, max: Int, _ what: String) throws(ChainWireError) -> Int {
        let n = Int(try r.u32())
        guard n <= max, n <= r.remaining / itemBytesMin else { throw ChainWireError("\(n) \(what)") }
        return n
    }

    /// An envelope; `only` restricts the kind a nested one may be, `depth` counts the nesting (at most 3).
    static func envelope(_ r: inout RawReader, _ limits: ChainWireLimits, depth: Int,
                         only: Nested? = nil) throws(ChainWireError) -> PBFT.Envelope {
        guard depth <= 3 else { throw ChainWireError("PBFT envelopes nested deeper than 3") }
        let sender = try r.u32()
        let kind = try r.u8()
        let allowed: Bool
        switch only {
        case nil: allowed = true
        case .checkpoint?: allowed = kind == 4
        case .prePrepare?: allowed = kind == 1
        case .prepare?: allowed = kind == 2
        case .viewChange?: allowed = kind == 5
        }
        guard allowed else { throw ChainWireError("a PBFT message of kind \(kind) where \(only!) belongs") }
        let message: PBFT.Message
        // An envelope is at least sender, kind, a view/sn, a digest and a signature length: 49 bytes.
        let envelopeMin = 4 + 1 + 8 + 32 + 4
        let logMax = 1 << 16
        switch kind {
        case 1:
            let view = try r.u64(), sn = try r.u64(), digest = try r.digest()
            // A request is at least client, timestamp, op length, flag and MAC count: 21 bytes.
            let count = try count(&r, itemBytesMin: 21, max: Self.batchRequestsMax, "requests in a PRE-PREPARE")
            var requests: [PBFT.ClientRequest] = []
            requests.reserveCapacity(count)
            for _ in 0..<count { requests.append(try clientRequest(&r, limits)) }
            message = .prePrepare(PBFT.PrePrepare(view: view, sn: sn, digest: digest, requests: requests))
        case 2, 3:
            let vote = PBFT.Vote(view: try r.u64(), sn: try r.u64(), digest: try r.digest())
            message = kind == 2 ? .prepare(vote) : .commit(vote)
        case 4:
            message = .checkpoint(PBFT.Checkpoint(sn: try r.u64(), digest: try r.digest()))
        case 5:
            let newView = try r.u64(), stableSn = try r.u64(), stableDigest = try r.digest()
            var proof: [PBFT.Envelope] = []
            for _ in 0..<(try count(&r, itemBytesMin: envelopeMin, max: Int(3 * RC_CHAIN_F_MAX + 1), "checkpoint votes")) {
                proof.append(try envelope(&r, limits, depth: depth + 1, only: .checkpoint))
            }
            var prepared: [PBFT.PreparedCertificate] = []
            for _ in 0..<(try count(&r, itemBytesMin: envelopeMin, max: logMax, "prepared certificates")) {
                let pp = try envelope(&r, limits, depth: depth + 1, only: .prePrepare)
                var prepares: [PBFT.Envelope] = []
                for _ in 0..<(try count(&r, itemBytesMin: envelopeMin, max: Int(3 * RC_CHAIN_F_MAX + 1), "PREPAREs")) {
                    prepares.append(try envelope(&r, limits, depth: depth + 1, only: .prepare))
                }
                prepared.append(PBFT.PreparedCertificate(prePrepare: pp, prepares: prepares))
            }
            message = .viewChange(PBFT.ViewChange(newView: newView, stableSn: stableSn, stableDigest: stableDigest,
                                                  checkpointProof: proof, prepared: prepared))
        case 6:
            let view = try r.u64()
            var viewChanges: [PBFT.Envelope] = []
            for _ in 0..<(try count(&r, itemBytesMin: envelopeMin, max: Int(3 * RC_CHAIN_F_MAX + 1), "VIEW-CHANGEs")) {
                viewChanges.append(try envelope(&r, limits, depth: depth + 1, only: .viewChange))
            }
            var prePrepares: [PBFT.Envelope] = []
            for _ in 0..<(try count(&r, itemBytesMin: envelopeMin, max: logMax, "PRE-PREPAREs")) {
                prePrepares.append(try envelope(&r, limits, depth: depth + 1, only: .prePrepare))
            }
            message = .newView(PBFT.NewView(view: view, viewChanges: viewChanges, prePrepares: prePrepares))
        default:
            throw ChainWireError("unknown PBFT message kind \(kind)")
        }
        let signatureCount = Int(try r.u32())
        guard signatureCount == signatureBytes else { throw ChainWireError("a signature of \(signatureCount) bytes") }
        return PBFT.Envelope(sender: sender, message: message, signature: try r.raw(signatureCount))
    }
}
