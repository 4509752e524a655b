public import CRingCastCore

/// ⟨IH, Proof_IH⟩ (spec §12): the init history a client carries into instance i' = next(i), with the 2f+1 signed
/// ABORTs of instance i it was extracted from. Replicas of i' recompute P3 over the proof and install IH only when
/// it is exactly that result (``ChainCore/install(_:)``).
public struct ChainInitHistory: Hashable, Sendable {
    /// i': the instance it initialises.
    public var instance: UInt64
    /// The checkpoint number IH starts from, and H there.
    public var base: UInt64
    public var baseDigest: ChainDigest
    /// Positions base·CHK + 1, … (their history digests are not compared: every replica recomputes H).
    public var entries: [ChainAbort.Entry]
    /// The 2f+1 signed ABORTs.
    public var proof: [ChainAbort]

    public init(instance: UInt64, base: UInt64, baseDigest: ChainDigest, entries: [ChainAbort.Entry], proof: [ChainAbort]) {
        self.instance = instance; self.base = base; self.baseDigest = baseDigest; self.entries = entries; self.proof = proof
    }

    /// P3 through the C core (rc_chain_abort_history_extract): the IH a correct client builds from `proof` (2f+1
    /// well-formed ABORTs of distinct replicas with valid signatures, all naming next(i) = `instance`).
    /// - Returns: nil when the proof is not 2f+1 well-formed ABORTs, or the history exceeds `capacity`.
    public static func extract(proof: [ChainAbort], f: UInt32, checkpointInterval: UInt32, instance: UInt64,
                               capacity: UInt32 = 1 << 16) -> ChainInitHistory? {
        guard proof.count == Int(2 * f + 1), proof.allSatisfy({ $0.isWellFormed(f: f, checkpointInterval: checkpointInterval) })
        else { return nil }
        var out = [rc_chain_abort_entry](repeating: rc_chain_abort_entry(), count: Int(capacity))
        var scratch = [UInt8](repeating: 0, count: rc_chain_abort_history_scratch_size(capacity))
        var base: UInt64 = 0
        var baseDigest = rc_crypto_digest()
        let count = withCAborts(proof) { aborts in
            rc_chain_abort_history_extract(f, checkpointInterval, aborts.baseAddress, UInt32(aborts.count), &base, &baseDigest,
                                           &out, capacity, &scratch, scratch.count)
        }
        guard count >= 0 else { return nil }
        return ChainInitHistory(
            instance: instance, base: base, baseDigest: ChainDigest(baseDigest),
            entries: out.prefix(count).map(ChainAbort.Entry.init), proof: proof)
    }

    /// The value as rc_chain_on_init takes it, valid inside `body`.
    public func withCInitHistory<R>(_ body: (UnsafePointer<rc_chain_init_history>) -> R) -> R {
        let cEntries = entries.map(\.c)
        return withCAborts(proof) { aborts in
            cEntries.withUnsafeBufferPointer { e in
                var ih = rc_chain_init_history(
                    instance: instance, base: base, base_digest: baseDigest.c, entry_count: UInt32(entries.count),
                    entries: e.baseAddress, proof_count: UInt32(aborts.count), proof: aborts.baseAddress)
                return body(&ih)
            }
        }
    }
}

/// Why a replica refused an init history (rc_chain_init_error).
public enum ChainInitRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    case instance, proofSize, abortShape, signer, next, signature, mismatch, tooLong

    init?(_ error: rc_chain_init_error) {
        switch error {
        case RC_CHAIN_INIT_ERROR_INSTANCE: self = .instance
        case RC_CHAIN_INIT_ERROR_PROOF_SIZE: self = .proofSize
        case RC_CHAIN_INIT_ERROR_ABORT_SHAPE: self = .abortShape
        case RC_CHAIN_INIT_ERROR_SIGNER: self = .signer
        case RC_CHAIN_INIT_ERROR_NEXT: self = .next
        case RC_CHAIN_INIT_ERROR_SIGNATURE: self = .signature
        case RC_CHAIN_INIT_ERROR_MISMATCH: self = .mismatch
        case RC_CHAIN_INIT_ERROR_TOO_LONG: self = .tooLong
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .instance: "the init history is for another instance, or its ABORTs are not all of one earlier instance"
        case .proofSize: "the proof does not hold exactly 2f+1 ABORTs"
        case .abortShape: "an ABORT of the proof is malformed"
        case .signer: "two ABORTs of the proof come from one replica"
        case .next: "an ABORT of the proof names another next instance"
        case .signature: "an ABORT of the proof is not signed by its replica"
        case .mismatch: "the init history is not the abort history of its proof (P3)"
        case .tooLong: "the init history is longer than this replica's history"
        }
    }
}

/// What ``ChainCore/install(_:)`` did.
public enum ChainInitOutcome: Equatable, Sendable {
    /// Installed: the replica is FETCHING (or DONE for an empty IH).
    case installed
    /// Already initialised (or an IH was installed before): ignored, spec §12.
    case ignored
}

extension ChainCore {
    /// C2+/C3+/P2+: validates `ih` against its proof and installs it (rc_chain_on_init).
    /// - Throws: ``ChainInitRefusal`` with the reason; nothing changed.
    @discardableResult
    public func install(_ ih: ChainInitHistory) throws(ChainInitRefusal) -> ChainInitOutcome {
        var why = RC_CHAIN_INIT_ERROR_NONE
        let rc = ih.withCInitHistory { rc_chain_on_init(pointer, $0, &why) }
        if rc == 0 { return .installed }
        if rc == 1 { return .ignored }
        guard let refusal = ChainInitRefusal(why) else { preconditionFailure("rc_chain_on_init: \(rc)") }
        throw refusal
    }

    /// A request body for IH entry `sn` (own store or a FETCH answer): 0 accepted, 1 already present, -EBADMSG wrong
    /// digest, -ERANGE not an IH entry.
    public func supply(sn: UInt64, _ request: ChainRequest) -> Int32 {
        request.op.withUnsafeBufferPointer { op in
            var r = rc_chain_request(client: request.client, timestamp: request.timestamp, op: op.baseAddress,
                                     op_bytes: UInt32(request.op.count), ref: request.ref)
            return rc_chain_on_fetched(pointer, sn, &r)
        }
    }

    /// Every FETCH due now.
    public func fetches() -> [rc_chain_fetch] {
        var all: [rc_chain_fetch] = []
        var out = rc_chain_fetch()
        while rc_chain_next_fetch(pointer, &out) == 1 { all.append(out) }
        return all
    }

    public var initState: rc_chain_init_state { rc_chain_init_state_get(pointer) }
    /// Whether an init history is installed and every body behind it present (always at instance 1).
    public var initialized: Bool { initState == RC_CHAIN_INIT_DONE }
    public var initMissing: UInt32 { rc_chain_init_missing(pointer) }
}

extension ChainAbort.Entry {
    public init(_ e: rc_chain_abort_entry) {
        self.init(sn: e.sn, client: e.client, timestamp: e.timestamp, requestDigest: ChainDigest(e.request_digest),
                  historyDigest: ChainDigest(e.history_digest))
    }

    public var c: rc_chain_abort_entry {
        rc_chain_abort_entry(sn: sn, client: client, timestamp: timestamp, request_digest: requestDigest.c,
                             history_digest: historyDigest.c)
    }
}

extension ChainAbort {
    /// rc_chain_abort_well_formed: a client keeps only such ABORTs for P3 and its proof.
    public func isWellFormed(f: UInt32, checkpointInterval: UInt32) -> Bool {
        withCAborts([self]) { rc_chain_abort_well_formed(f, checkpointInterval, $0.baseAddress) }
    }
}

/// Lends `aborts` as a C array (signatures included), entries laid out in one buffer, for the duration of `body`.
func withCAborts<R>(_ aborts: [ChainAbort], _ body: (UnsafeBufferPointer<rc_chain_abort>) -> R) -> R {
    let flat = aborts.flatMap { $0.entries.map(\.c) }
    return flat.withUnsafeBufferPointer { entries in
        var offset = 0
        var cAborts: [rc_chain_abort] = []
        for a in aborts {
            var c = rc_chain_abort()
            c.replica = a.replica; c.client = a.client; c.timestamp = a.timestamp; c.instance = a.instance
            c.next_instance = a.nextInstance; c.checkpoint_number = a.checkpointNumber; c.checkpoint_digest = a.checkpointDigest.c
            c.entry_count = UInt32(a.entries.count)
            c.entries = a.entries.isEmpty ? nil : entries.baseAddress! + offset
            withUnsafeMutableBytes(of: &c.signature.bytes) { $0.copyBytes(from: a.signature.prefix(64)) }
            offset += a.entries.count
            cAborts.append(c)
        }
        return cAborts.withUnsafeBufferPointer(body)
    }
}

extension ChainCore {
    /// The sns of the installed init history (empty before installation and at instance 1).
    public var initRange: ClosedRange<UInt64>? {
        var first: UInt64 = 0, last: UInt64 = 0
        guard rc_chain_init_range(pointer, &first, &last) == 1, last >= first else { return nil }
        return first...last
    }

    /// Σlast, for an executed request of the init history: this replica's ρ and H_sn, to send straight to the client
    /// (rc_chain_init_reply). nil outside Σlast or for another sn.
    public func initReply(sn: UInt64, _ reply: [UInt8]) -> (mac: ChainMAC, history: ChainDigest)? {
        var rho = rc_crypto_mac()
        var history = rc_crypto_digest()
        let rc = reply.withUnsafeBufferPointer { rc_chain_init_reply(pointer, sn, $0.baseAddress, UInt32(reply.count), &rho, &history) }
        return rc == 0 ? (ChainMAC(rho), ChainDigest(history)) : nil
    }
}

extension ChainCore {
    /// The replica entered a later instance: stop here (rc_chain_leave), so late clients get this instance's ABORT.
    public func leave() { rc_chain_leave(pointer) }
}

extension ChainDigest {
    /// The zero digest: H_0.
    public static let zero = ChainDigest(bytes: [UInt8](repeating: 0, count: Int(RC_CRYPTO_DIGEST_BYTES)))

    /// D(req) = SHA-256("RCCH-REQ" ‖ c ‖ t_c ‖ o), as every core computes it (rc_chain_request_digest).
    public static func request(client: UInt32, timestamp: UInt64, op: [UInt8], keyRing: ChainKeyRing) -> ChainDigest {
        var crypto = keyRing.crypto
        var out = rc_crypto_digest()
        let rc = op.withUnsafeBufferPointer {
            rc_chain_request_digest(&crypto, client, timestamp, $0.baseAddress, UInt32(op.count), &out)
        }
        precondition(rc == 0, "SHA-256 failed: \(rc)")
        return ChainDigest(out)
    }

    /// H_sn = SHA-256(H_{sn-1} ‖ sn ‖ D(req_sn)) (D2, rc_chain.h), for shells and checkers that follow a history
    /// outside a core (a replica's state digest, the simulator's ledger, an init history's end).
    public func extended(sn: UInt64, request: ChainDigest, keyRing: ChainKeyRing) -> ChainDigest {
        let crypto = keyRing.crypto
        var out = rc_crypto_digest()
        var position = [UInt8](repeating: 0, count: 8)
        for k in 0..<8 { position[k] = UInt8(truncatingIfNeeded: sn >> (8 * UInt64(k))) }
        let rc = bytes.withUnsafeBufferPointer { previous in
            position.withUnsafeBufferPointer { p in
                request.bytes.withUnsafeBufferPointer { r in
                    var parts = [rc_crypto_part(data: previous.baseAddress, bytes: 32), rc_crypto_part(data: p.baseAddress, bytes: 8),
                                 rc_crypto_part(data: r.baseAddress, bytes: 32)]
                    return crypto.digest(crypto.context, &parts, 3, &out)
                }
            }
        }
        precondition(rc == 0, "SHA-256 failed: \(rc)")
        return ChainDigest(out)
    }
}

extension ChainInitHistory {
    /// H at each entry of IH, from the base digest on (``ChainDigest/extended(sn:request:keyRing:)``).
    public func historyDigests(keyRing: ChainKeyRing) -> [ChainDigest] {
        var h = baseDigest
        return entries.map { e in
            h = h.extended(sn: e.sn, request: e.requestDigest, keyRing: keyRing)
            return h
        }
    }
}

extension ChainCore {
    /// t_j[c] at the checkpoint base from the restored application state (rc_chain_init_base_timestamps), right after
    /// ``install(_:)``. 0 or -EINVAL.
    @discardableResult
    public func installBaseTimestamps(_ timestamps: [UInt64]) -> Int32 {
        timestamps.withUnsafeBufferPointer { rc_chain_init_base_timestamps(pointer, $0.baseAddress, UInt32($0.count)) }
    }
}

extension ChainCore {
    /// Σlast: ρ for a reply this replica's own state holds for a request the checkpoint base covers (D7,
    /// rc_chain_cached_reply), to send straight to its client. nil outside Σlast.
    public func cachedReply(client: UInt32, sn: UInt64, request: ChainDigest, reply: [UInt8], history: ChainDigest) -> ChainMAC? {
        var rho = rc_crypto_mac()
        var requestDigest = request.c, historyDigest = history.c
        let rc = reply.withUnsafeBufferPointer {
            rc_chain_cached_reply(pointer, client, sn, &requestDigest, $0.baseAddress, UInt32(reply.count), &historyDigest, &rho)
        }
        return rc == 0 ? ChainMAC(rho) : nil
    }
}

extension ChainInitHistory {
    /// The checks rc_chain_on_init makes for a Chain proof, outside a Chain core: for an instance of another protocol
    /// (Aliph's Backup, spec §13.1) entered from Chain. IH names `instance`; the proof holds exactly 2f+1 well-formed
    /// ABORTs of distinct replicas, of one instance below `instance`, naming next(i) = `instance`, each signed by its
    /// replica; IH is exactly P3 of the proof; its clients are below `clientsMax`; it fits `historyMax`.
    /// - Throws: ``ChainInitRefusal`` with the first failed check.
    public func validateChainProof(f: UInt32, checkpointInterval: UInt32, clientsMax: UInt32, historyMax: UInt32,
                                   instance expected: UInt64, keyRing: ChainKeyRing) throws(ChainInitRefusal) {
        guard instance == expected else { throw .instance }
        guard proof.count == Int(2 * f + 1) else { throw .proofSize }
        var signers = Set<UInt32>()
        for a in proof {
            guard a.isWellFormed(f: f, checkpointInterval: checkpointInterval), a.entries.count <= Int(historyMax)
            else { throw .abortShape }
            guard signers.insert(a.replica).inserted else { throw .signer }
            guard a.instance == proof[0].instance, a.instance < expected else { throw .instance }
            guard a.nextInstance == expected else { throw .next }
        }
        guard entries.count <= Int(historyMax) else { throw .tooLong }
        guard let p3 = ChainInitHistory.extract(proof: proof, f: f, checkpointInterval: checkpointInterval,
                                                instance: expected, capacity: historyMax)
        else { throw .tooLong }
        guard p3.base == base, p3.baseDigest == baseDigest, p3.entries.count == entries.count,
              zip(p3.entries, entries).allSatisfy({
                  $0.sn == $1.sn && $0.client == $1.client && $0.timestamp == $1.timestamp && $0.requestDigest == $1.requestDigest
              })
        else { throw .mismatch }
        guard entries.allSatisfy({ $0.client < clientsMax }) else { throw .abortShape }
        // Signatures last, as the C core does: the checks above reject most forgeries without public-key operations.
        guard proof.allSatisfy({ $0.verify(with: keyRing) }) else { throw .signature }
    }
}
