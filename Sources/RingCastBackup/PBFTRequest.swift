public import RingCastChain

extension PBFT {
    /// ⟨REQUEST, o, t, c⟩ (PBFT §4.1). `initHistory` is Backup's: the first request a client sends to a Backup
    /// instance carries the init history of the Chain instance it left (spec §12 C1+, §13.1). It is ordered with the
    /// request (part of its digest), so every correct replica sees the same one.
    public struct Request: Hashable, Sendable {
        public var client: UInt32
        public var timestamp: UInt64
        public var op: [UInt8]
        public var initHistory: ChainInitHistory?

        public init(client: UInt32, timestamp: UInt64, op: [UInt8], initHistory: ChainInitHistory? = nil) {
            self.client = client; self.timestamp = timestamp; self.op = op; self.initHistory = initHistory
        }

        func encode(into out: inout BackupBytes) {
            out.u32(client); out.u64(timestamp); out.raw(op)
            guard let ih = initHistory else { return out.u32(0) }
            out.u32(1); out.u64(ih.instance); out.u64(ih.base); out.digest(ih.baseDigest)
            out.u32(UInt32(ih.entries.count))
            for e in ih.entries { encodeEntry(e, into: &out) }
            out.u32(UInt32(ih.proof.count))
            for a in ih.proof {
                out.u32(a.replica); out.u32(a.client); out.u64(a.timestamp); out.u64(a.instance); out.u64(a.nextInstance)
                out.u64(a.checkpointNumber); out.digest(a.checkpointDigest); out.u32(UInt32(a.entries.count))
                for e in a.entries { encodeEntry(e, into: &out) }
                out.raw(a.signature)
            }
        }

        private func encodeEntry(_ e: ChainAbort.Entry, into out: inout BackupBytes) {
            out.u64(e.sn); out.u32(e.client); out.u64(e.timestamp); out.digest(e.requestDigest); out.digest(e.historyDigest)
        }
    }

    /// A request as a client sends it to every replica: with an authenticator, one HMAC per replica over D(req)
    /// (PBFT §4.1 with MACs; Castro's thesis §3.2). A replica checks only its own entry.
    public struct ClientRequest: Hashable, Sendable {
        public var request: Request
        public var authenticator: [ChainMAC]

        public init(request: Request, authenticator: [ChainMAC]) {
            self.request = request; self.authenticator = authenticator
        }

        /// Builds the authenticator with the client's key ring (its pairwise keys with every replica).
        public init(_ request: Request, keyRing: ChainKeyRing, n: UInt32) {
            let crypto = BackupCrypto(keyRing: keyRing)
            let d = PBFT.digest(request, crypto: crypto)
            self.request = request
            authenticator = (0..<n).map { crypto.mac(peer: ChainPrincipal.replica($0).raw, macInput(d)) }
        }
    }

    /// D(m) of a request; the zero digest stands for the null request (PBFT §4.4).
    static func digest(_ request: Request, crypto: BackupCrypto) -> ChainDigest {
        var b = BackupBytes(tag: "RCBK-REQ")
        request.encode(into: &b)
        return crypto.digest(b)
    }

    /// d of a batch: zero for the null request, D(m) for one request (a batch of one is PBFT without batching), and
    /// for more the digest of their digests in order under a tag of its own (so no batch shares a digest with a
    /// single request).
    static func batchDigest(_ requests: [ClientRequest], crypto: BackupCrypto) -> ChainDigest {
        switch requests.count {
        case 0: return .zero
        case 1: return digest(requests[0].request, crypto: crypto)
        default:
            var b = BackupBytes(tag: "RCBK-BATCH")
            b.u32(UInt32(requests.count))
            for r in requests { b.digest(digest(r.request, crypto: crypto)) }
            return crypto.digest(b)
        }
    }

    static func macInput(_ digest: ChainDigest) -> BackupBytes {
        var b = BackupBytes(tag: "RCBK-AUTH")
        b.digest(digest)
        return b
    }

    /// ⟨REPLY, v, t, c, i, r⟩ (PBFT §4.1), with an HMAC from replica i to the client. A client takes a result once f+1
    /// replicas sent matching ones (one of them is correct).
    public struct Reply: Hashable, Sendable {
        public var view: UInt64
        public var client: UInt32
        public var timestamp: UInt64
        public var replica: UInt32
        public var result: [UInt8]
        public var mac: ChainMAC

        /// A reply as a wire decoder rebuilds it (the client checks ``verify(keyRing:)``).
        public init(view: UInt64, client: UInt32, timestamp: UInt64, replica: UInt32, result: [UInt8], mac: ChainMAC) {
            self.view = view; self.client = client; self.timestamp = timestamp; self.replica = replica
            self.result = result; self.mac = mac
        }

        func macInput() -> BackupBytes {
            var b = BackupBytes(tag: "RCBK-REPLY")
            b.u64(view); b.u32(client); b.u64(timestamp); b.u32(replica); b.raw(result)
            return b
        }

        /// Whether the MAC is `replica`'s for this client (checked with the client's key ring).
        public func verify(keyRing: ChainKeyRing) -> Bool {
            BackupCrypto(keyRing: keyRing).verifyMAC(peer: ChainPrincipal.replica(replica).raw, macInput(), tag: mac)
        }
    }
}
