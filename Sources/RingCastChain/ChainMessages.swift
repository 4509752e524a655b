public import CRingCastCore

/// A 128-bit MAC tag (rc_crypto_mac) as a Swift value. Stored inline (the C struct), not as an array: a batch
/// carries several MACs per request and each array was one heap allocation per MAC on every hop (the profile of
/// docs/chain-bft.md, "Where the CPU goes").
public struct ChainMAC: Hashable, Sendable {
    public var c: rc_crypto_mac

    public init(bytes: [UInt8]) {
        precondition(bytes.count == Int(RC_CRYPTO_MAC_BYTES), "a MAC is \(RC_CRYPTO_MAC_BYTES) bytes")
        var mac = rc_crypto_mac()
        Swift.withUnsafeMutableBytes(of: &mac.bytes) { $0.copyBytes(from: bytes) }
        c = mac
    }

    public init(_ mac: rc_crypto_mac) { c = mac }

    /// The tag's bytes (a copy; setting writes them back).
    public var bytes: [UInt8] {
        get { Swift.withUnsafeBytes(of: c.bytes) { Array($0) } }
        set {
            precondition(newValue.count == Int(RC_CRYPTO_MAC_BYTES), "a MAC is \(RC_CRYPTO_MAC_BYTES) bytes")
            Swift.withUnsafeMutableBytes(of: &c.bytes) { $0.copyBytes(from: newValue) }
        }
    }

    /// Lends the tag's bytes without copying them.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: c.bytes, body)
    }

    public static func == (a: ChainMAC, b: ChainMAC) -> Bool {
        Swift.withUnsafeBytes(of: a.c.bytes) { x in Swift.withUnsafeBytes(of: b.c.bytes) { y in x.elementsEqual(y) } }
    }

    public func hash(into hasher: inout Hasher) { Swift.withUnsafeBytes(of: c.bytes) { hasher.combine(bytes: $0) } }

    /// The same tag with one bit flipped: what a forger without the key produces, at best.
    public func flipped() -> ChainMAC {
        var copy = self
        copy.bytes[0] ^= 0x01
        return copy
    }
}

/// A SHA-256 digest (rc_crypto_digest) as a Swift value, stored inline like ``ChainMAC``.
public struct ChainDigest: Hashable, Sendable, CustomStringConvertible {
    public var c: rc_crypto_digest

    public init(bytes: [UInt8]) {
        precondition(bytes.count == Int(RC_CRYPTO_DIGEST_BYTES), "a digest is \(RC_CRYPTO_DIGEST_BYTES) bytes")
        var digest = rc_crypto_digest()
        Swift.withUnsafeMutableBytes(of: &digest.bytes) { $0.copyBytes(from: bytes) }
        c = digest
    }

    public init(_ digest: rc_crypto_digest) { c = digest }

    /// The digest's bytes (a copy; setting writes them back).
    public var bytes: [UInt8] {
        get { Swift.withUnsafeBytes(of: c.bytes) { Array($0) } }
        set {
            precondition(newValue.count == Int(RC_CRYPTO_DIGEST_BYTES), "a digest is \(RC_CRYPTO_DIGEST_BYTES) bytes")
            Swift.withUnsafeMutableBytes(of: &c.bytes) { $0.copyBytes(from: newValue) }
        }
    }

    /// Lends the digest's bytes without copying them.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: c.bytes, body)
    }

    public static func == (a: ChainDigest, b: ChainDigest) -> Bool {
        Swift.withUnsafeBytes(of: a.c.bytes) { x in Swift.withUnsafeBytes(of: b.c.bytes) { y in x.elementsEqual(y) } }
    }

    public func hash(into hasher: inout Hasher) { Swift.withUnsafeBytes(of: c.bytes) { hasher.combine(bytes: $0) } }

    public var description: String { bytes.prefix(6).map { String($0, radix: 16).leftPadded(2) }.joined() }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}

/// A client request ⟨c, o, t_c⟩ with its bytes.
public struct ChainRequest: Hashable, Sendable {
    public var client: UInt32
    public var timestamp: UInt64
    public var op: [UInt8]
    public var ref: UInt64

    public init(client: UInt32, timestamp: UInt64, op: [UInt8], ref: UInt64 = 0) {
        self.client = client; self.timestamp = timestamp; self.op = op; self.ref = ref
    }
}

/// A CHAIN message between consecutive replicas (or the tail's replies): rc_chain_batch with its arrays copied.
public struct ChainBatch: Hashable, Sendable {
    public var instance: UInt64
    public var snFirst: UInt64
    public var requests: [ChainRequest]
    public var window: [ChainMAC]
    public var clientMACsPerRequest: Int
    public var clientMACs: [ChainMAC]
    public var replyMACsPerRequest: Int
    public var replyMACs: [ChainMAC]
    /// Out of the tail: H_sn per request (LHDigest); empty elsewhere.
    public var historyDigests: [ChainDigest]

    public init(instance: UInt64, snFirst: UInt64, requests: [ChainRequest], window: [ChainMAC], clientMACsPerRequest: Int,
                clientMACs: [ChainMAC], replyMACsPerRequest: Int, replyMACs: [ChainMAC], historyDigests: [ChainDigest] = []) {
        self.instance = instance; self.snFirst = snFirst; self.requests = requests; self.window = window
        self.clientMACsPerRequest = clientMACsPerRequest; self.clientMACs = clientMACs
        self.replyMACsPerRequest = replyMACsPerRequest; self.replyMACs = replyMACs; self.historyDigests = historyDigests
    }

    /// Copies a batch out of core memory; `op` resolves a request's `ref` to its bytes (the caller owns them).
    public init(_ b: rc_chain_batch, op: (UInt64) -> [UInt8]) {
        let count = Int(b.count)
        instance = b.instance
        snFirst = b.sn_first
        requests = (0..<count).map { k in
            let r = b.requests[k]
            return ChainRequest(client: r.client, timestamp: r.timestamp, op: op(r.ref), ref: r.ref)
        }
        window = (0..<Int(b.window_count)).map { ChainMAC(b.window[$0]) }
        clientMACsPerRequest = Int(b.client_macs_per_request)
        clientMACs = (0..<(count * clientMACsPerRequest)).map { ChainMAC(b.client_macs[$0]) }
        replyMACsPerRequest = Int(b.reply_macs_per_request)
        replyMACs = (0..<(count * replyMACsPerRequest)).map { ChainMAC(b.reply_macs[$0]) }
        historyDigests = b.history_digests == nil ? [] : (0..<count).map { ChainDigest(b.history_digests[$0]) }
    }

    /// The sequence number of request `index`.
    public func sn(_ index: Int) -> UInt64 { snFirst + UInt64(index) }

    /// The batch as rc_chain_on_batch takes it, valid inside `body`. The arrays' sizes go in as they are, so a
    /// tampered batch reaches the core unchanged. No request's bytes are copied: the core reads each op where its
    /// array keeps it, and the MAC and digest arrays are lent as the C arrays they are laid out as (``ChainMAC`` and
    /// ``ChainDigest`` hold exactly their C struct).
    ///
    /// - Parameter firstRef: when given, request k goes in with `ref` = firstRef + k instead of its own (the engine
    ///   names the requests it keeps without copying the batch to set them).
    public func withCBatch<R>(firstRef: UInt64? = nil, _ body: (UnsafePointer<rc_chain_batch>) -> R) -> R {
        var cRequests = [rc_chain_request](repeating: rc_chain_request(), count: requests.count)
        return cRequests.withUnsafeMutableBufferPointer { rq in
            withOpPointers(requests, from: 0, firstRef: firstRef, into: rq) {
                withCArray(window, as: rc_crypto_mac.self) { w in
                    withCArray(clientMACs, as: rc_crypto_mac.self) { cm in
                        withCArray(replyMACs, as: rc_crypto_mac.self) { rm in
                            withCArray(historyDigests, as: rc_crypto_digest.self) { h in
                                var batch = rc_chain_batch(
                                    instance: instance, sn_first: snFirst, count: UInt32(requests.count),
                                    requests: UnsafePointer(rq.baseAddress), window_count: UInt32(window.count), window: w,
                                    client_macs_per_request: UInt32(clientMACsPerRequest), client_macs: cm,
                                    reply_macs_per_request: UInt32(replyMACsPerRequest), reply_macs: rm,
                                    history_digests: historyDigests.isEmpty ? nil : h)
                                return body(&batch)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Fills `out[k]` for every request from `index` on with a pointer into that request's own array (borrowed for the
/// duration of `body`, one nested borrow per request: a batch holds at most RC_CHAIN_BATCH_COUNT_MAX requests).
private func withOpPointers<R>(_ requests: [ChainRequest], from index: Int, firstRef: UInt64?,
                               into out: UnsafeMutableBufferPointer<rc_chain_request>, _ body: () -> R) -> R {
    guard index < requests.count else { return body() }
    let r = requests[index]
    return r.op.withUnsafeBufferPointer { op in
        out[index] = rc_chain_request(client: r.client, timestamp: r.timestamp, op: op.isEmpty ? nil : op.baseAddress,
                                      op_bytes: UInt32(op.count), ref: firstRef.map { $0 + UInt64(index) } ?? r.ref)
        return withOpPointers(requests, from: index + 1, firstRef: firstRef, into: out, body)
    }
}

/// Lends an array of ``ChainMAC`` or ``ChainDigest`` as the C array of their inline structs (same size and stride:
/// checked).
private func withCArray<Element, C, R>(_ array: [Element], as: C.Type, _ body: (UnsafePointer<C>?) -> R) -> R {
    precondition(MemoryLayout<Element>.size == MemoryLayout<C>.size && MemoryLayout<Element>.stride == MemoryLayout<C>.stride,
                 "\(Element.self) is laid out as \(C.self)")
    return array.withUnsafeBufferPointer { buffer in
        guard let base = buffer.baseAddress else { return body(nil) }
        return UnsafeRawPointer(base).withMemoryRebound(to: C.self, capacity: buffer.count) { body($0) }
    }
}

/// A signed ABORT (rc_chain_abort) with its history copied.
public struct ChainAbort: Hashable, Sendable {
    public struct Entry: Hashable, Sendable {
        public var sn: UInt64
        public var client: UInt32
        public var timestamp: UInt64
        public var requestDigest: ChainDigest
        /// H_sn; at sn = cc·CHK the replica's tentative checkpoint digest for cc.
        public var historyDigest: ChainDigest

        public init(sn: UInt64, client: UInt32, timestamp: UInt64, requestDigest: ChainDigest, historyDigest: ChainDigest) {
            self.sn = sn; self.client = client; self.timestamp = timestamp
            self.requestDigest = requestDigest; self.historyDigest = historyDigest
        }
    }

    public var replica: UInt32
    public var client: UInt32
    public var timestamp: UInt64
    public var instance: UInt64
    public var nextInstance: UInt64
    public var checkpointNumber: UInt64
    public var checkpointDigest: ChainDigest
    public var entries: [Entry]
    public var signature: [UInt8]

    public init(_ a: rc_chain_abort) {
        replica = a.replica; client = a.client; timestamp = a.timestamp; instance = a.instance
        nextInstance = a.next_instance; checkpointNumber = a.checkpoint_number
        checkpointDigest = ChainDigest(a.checkpoint_digest)
        entries = (0..<Int(a.entry_count)).map { k in
            let e = a.entries[k]
            return Entry(sn: e.sn, client: e.client, timestamp: e.timestamp, requestDigest: ChainDigest(e.request_digest),
                         historyDigest: ChainDigest(e.history_digest))
        }
        signature = withUnsafeBytes(of: a.signature.bytes) { Array($0) }
    }

    /// Whether the signature is the replica's over this ABORT (rc_chain_abort_verify), with `keyRing` holding the
    /// replicas' public keys.
    public func verify(with keyRing: ChainKeyRing) -> Bool {
        let cEntries = entries.map {
            rc_chain_abort_entry(sn: $0.sn, client: $0.client, timestamp: $0.timestamp, request_digest: $0.requestDigest.c,
                                 history_digest: $0.historyDigest.c)
        }
        var crypto = keyRing.crypto
        return cEntries.withUnsafeBufferPointer { e in
            var a = rc_chain_abort()
            a.replica = replica; a.client = client; a.timestamp = timestamp; a.instance = instance
            a.next_instance = nextInstance; a.checkpoint_number = checkpointNumber; a.checkpoint_digest = checkpointDigest.c
            a.entry_count = UInt32(entries.count); a.entries = e.baseAddress
            withUnsafeMutableBytes(of: &a.signature.bytes) { $0.copyBytes(from: signature) }
            var scratch = [UInt8](repeating: 0, count: rc_chain_abort_encoded_size(UInt32(entries.count)))
            return rc_chain_abort_verify(&crypto, &a, &scratch, scratch.count) == 1
        }
    }
}

extension ChainAbort {
    /// This ABORT signed again with `keyRing`'s signing key (rc_chain_abort_encode, then the provider's sign): what a
    /// Byzantine replica does to an ABORT whose history it forged, for the abort-history tests (spec §21.7).
    public func resigned(with keyRing: ChainKeyRing) -> ChainAbort {
        let cEntries = entries.map {
            rc_chain_abort_entry(sn: $0.sn, client: $0.client, timestamp: $0.timestamp, request_digest: $0.requestDigest.c,
                                 history_digest: $0.historyDigest.c)
        }
        let crypto = keyRing.crypto
        var copy = self
        cEntries.withUnsafeBufferPointer { e in
            var a = rc_chain_abort()
            a.replica = replica; a.client = client; a.timestamp = timestamp; a.instance = instance
            a.next_instance = nextInstance; a.checkpoint_number = checkpointNumber; a.checkpoint_digest = checkpointDigest.c
            a.entry_count = UInt32(entries.count); a.entries = e.baseAddress
            var buffer = [UInt8](repeating: 0, count: rc_chain_abort_encoded_size(UInt32(entries.count)))
            let size = rc_chain_abort_encode(&a, &buffer, buffer.count)
            precondition(size > 0, "rc_chain_abort_encode failed")
            var signature = rc_crypto_signature()
            let rc = crypto.sign(crypto.context, buffer, Int(size), &signature)
            precondition(rc == 0, "signing failed: \(rc)")
            copy.signature = withUnsafeBytes(of: signature.bytes) { Array($0) }
        }
        return copy
    }
}
