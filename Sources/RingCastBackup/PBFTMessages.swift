public import RingCastChain

extension PBFT {
    /// ⟨PRE-PREPARE, v, n, d⟩ signed by the primary of v, with the batch of requests it orders piggybacked (PBFT §4.2,
    /// batching as in TOCS 2002 §5.1.4). The signature covers v, n and d; the batch is bound by d
    /// (``PBFT/batchDigest(_:keyRing:)``). An empty batch is the null request (§4.4).
    public struct PrePrepare: Hashable, Sendable {
        public var view: UInt64
        public var sn: UInt64
        public var digest: ChainDigest
        /// In execution order.
        public var requests: [ClientRequest]

        public init(view: UInt64, sn: UInt64, digest: ChainDigest, requests: [ClientRequest]) {
            self.view = view; self.sn = sn; self.digest = digest; self.requests = requests
        }

        /// A batch of one request (`request` nil: the null request).
        public init(view: UInt64, sn: UInt64, digest: ChainDigest, request: ClientRequest?) {
            self.init(view: view, sn: sn, digest: digest, requests: request.map { [$0] } ?? [])
        }
    }

    /// ⟨PREPARE, v, n, d, i⟩ and ⟨COMMIT, v, n, D(m), i⟩ (PBFT §4.2) share this shape.
    public struct Vote: Hashable, Sendable {
        public var view: UInt64
        public var sn: UInt64
        public var digest: ChainDigest

        public init(view: UInt64, sn: UInt64, digest: ChainDigest) { self.view = view; self.sn = sn; self.digest = digest }
    }

    /// ⟨CHECKPOINT, n, d, i⟩ (PBFT §4.3): d is H_n, the chained digest of the executed sequence (null requests count
    /// with the zero digest), so the state's digest is a function of the order alone.
    public struct Checkpoint: Hashable, Sendable {
        public var sn: UInt64
        public var digest: ChainDigest

        public init(sn: UInt64, digest: ChainDigest) { self.sn = sn; self.digest = digest }
    }

    /// P's element (PBFT §4.4): a PRE-PREPARE and 2f matching PREPAREs of other replicas, all signed, so any replica
    /// can check that the request prepared at that view.
    public struct PreparedCertificate: Hashable, Sendable {
        public var prePrepare: Envelope
        public var prepares: [Envelope]

        public init(prePrepare: Envelope, prepares: [Envelope]) { self.prePrepare = prePrepare; self.prepares = prepares }
    }

    /// ⟨VIEW-CHANGE, v+1, n, C, P, i⟩ (PBFT §4.4): the stable checkpoint (sn, digest) with its proof C (2f+1 signed
    /// CHECKPOINTs; empty at sn 0) and a prepared certificate for every sequence number above it this replica prepared.
    public struct ViewChange: Hashable, Sendable {
        public var newView: UInt64
        public var stableSn: UInt64
        public var stableDigest: ChainDigest
        public var checkpointProof: [Envelope]
        public var prepared: [PreparedCertificate]

        public init(newView: UInt64, stableSn: UInt64, stableDigest: ChainDigest, checkpointProof: [Envelope],
                    prepared: [PreparedCertificate]) {
            self.newView = newView; self.stableSn = stableSn; self.stableDigest = stableDigest
            self.checkpointProof = checkpointProof; self.prepared = prepared
        }
    }

    /// ⟨NEW-VIEW, v+1, V, O⟩ (PBFT §4.4): 2f+1 VIEW-CHANGEs and the PRE-PREPAREs of the new view that they determine.
    public struct NewView: Hashable, Sendable {
        public var view: UInt64
        public var viewChanges: [Envelope]
        public var prePrepares: [Envelope]

        public init(view: UInt64, viewChanges: [Envelope], prePrepares: [Envelope]) {
            self.view = view; self.viewChanges = viewChanges; self.prePrepares = prePrepares
        }
    }

    public indirect enum Message: Hashable, Sendable {
        case prePrepare(PrePrepare)
        case prepare(Vote)
        case commit(Vote)
        case checkpoint(Checkpoint)
        case viewChange(ViewChange)
        case newView(NewView)
    }

    /// A replica message with its sender's Ed25519 signature. Backup is Aliph's slow path, so every replica message is
    /// signed: VIEW-CHANGE and NEW-VIEW then carry proofs (prepared certificates, checkpoint proofs) that a third
    /// replica can check, which MAC authenticators cannot give without PBFT's extra view-change acknowledgements.
    public struct Envelope: Hashable, Sendable {
        public var sender: UInt32
        public var message: Message
        public var signature: [UInt8]

        public init(sender: UInt32, message: Message, signature: [UInt8]) {
            self.sender = sender; self.message = message; self.signature = signature
        }

        static func signed(_ message: Message, by sender: UInt32, crypto: BackupCrypto) -> Envelope {
            Envelope(sender: sender, message: message, signature: crypto.sign(signedBytes(message, sender: sender)))
        }

        func verify(crypto: BackupCrypto) -> Bool {
            crypto.verify(signer: sender, Envelope.signedBytes(message, sender: sender), signature: signature)
        }

        /// What the signature covers: a tag per kind, the sender, the fields; nested envelopes with their own
        /// signatures (so a VIEW-CHANGE's signature also binds the proofs it carries).
        static func signedBytes(_ message: Message, sender: UInt32) -> BackupBytes {
            var b = BackupBytes(tag: "RCBK-MSG")
            b.u32(sender)
            message.encode(into: &b)
            return b
        }

        func encode(into b: inout BackupBytes) {
            b.u32(sender)
            message.encode(into: &b)
            b.raw(signature)
        }
    }
}

extension PBFT.Message {
    func encode(into b: inout BackupBytes) {
        switch self {
        case .prePrepare(let p):
            b.u32(1); b.u64(p.view); b.u64(p.sn); b.digest(p.digest)
        case .prepare(let v):
            b.u32(2); b.u64(v.view); b.u64(v.sn); b.digest(v.digest)
        case .commit(let v):
            b.u32(3); b.u64(v.view); b.u64(v.sn); b.digest(v.digest)
        case .checkpoint(let c):
            b.u32(4); b.u64(c.sn); b.digest(c.digest)
        case .viewChange(let vc):
            b.u32(5); b.u64(vc.newView); b.u64(vc.stableSn); b.digest(vc.stableDigest)
            b.u32(UInt32(vc.checkpointProof.count))
            for e in vc.checkpointProof { e.encode(into: &b) }
            b.u32(UInt32(vc.prepared.count))
            for cert in vc.prepared {
                cert.prePrepare.encode(into: &b)
                b.u32(UInt32(cert.prepares.count))
                for e in cert.prepares { e.encode(into: &b) }
            }
        case .newView(let nv):
            b.u32(6); b.u64(nv.view)
            b.u32(UInt32(nv.viewChanges.count))
            for e in nv.viewChanges { e.encode(into: &b) }
            b.u32(UInt32(nv.prePrepares.count))
            for e in nv.prePrepares { e.encode(into: &b) }
        }
    }

    /// The view a message belongs to (the new view for VIEW-CHANGE and NEW-VIEW); nil for CHECKPOINT.
    var view: UInt64? {
        switch self {
        case .prePrepare(let p): p.view
        case .prepare(let v), .commit(let v): v.view
        case .checkpoint: nil
        case .viewChange(let vc): vc.newView
        case .newView(let nv): nv.view
        }
    }
}

extension PBFT.Envelope {
    /// Signs `message` as replica `sender` with `keyRing`'s signing key: what the simulator's Byzantine replicas and
    /// the tests use to build messages outside a core.
    public static func sign(_ message: PBFT.Message, by sender: UInt32, keyRing: ChainKeyRing) -> PBFT.Envelope {
        signed(message, by: sender, crypto: BackupCrypto(keyRing: keyRing))
    }

    /// Whether the signature is `sender`'s (with `keyRing` holding every replica's public key).
    public func verify(keyRing: ChainKeyRing) -> Bool { verify(crypto: BackupCrypto(keyRing: keyRing)) }
}

extension PBFT {
    /// D(m) of a request, as the replicas compute it.
    public static func requestDigest(_ request: Request, keyRing: ChainKeyRing) -> ChainDigest {
        digest(request, crypto: BackupCrypto(keyRing: keyRing))
    }

    /// The digest a PRE-PREPARE carries for `requests`, as the replicas compute it.
    public static func batchDigest(_ requests: [ClientRequest], keyRing: ChainKeyRing) -> ChainDigest {
        batchDigest(requests, crypto: BackupCrypto(keyRing: keyRing))
    }
}
