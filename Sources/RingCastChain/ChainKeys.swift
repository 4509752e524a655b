public import CRingCastCore
internal import CRingCast

/// A failed call into the Chain core or the crypto provider: its negative errno.
public enum ChainError: Error, Equatable, CustomStringConvertible {
    case code(Int32)

    public var description: String {
        switch self {
        case .code(let rc): return "chain: errno \(-rc)"
        }
    }
}

/// A principal of the crypto interface: a replica's chain position, or a client id (rc_crypto.h).
public enum ChainPrincipal: Hashable, Sendable {
    case replica(UInt32)
    case client(UInt32)

    public var raw: UInt32 {
        switch self {
        case .replica(let position): return position
        case .client(let id): return UInt32(RC_CRYPTO_CLIENT_FLAG) | id
        }
    }
}

/// The secret material of one cluster (n = 3f+1 replicas, `clients` clients), drawn from OpenSSL's DRBG: a
/// pairwise HMAC key for every replica pair and every client–replica pair, and an Ed25519 key pair per replica.
/// Never derived from ids (spec §4). For the simulator and tests; real deployments read key files (a later tool).
public struct ChainKeys: Sendable {
    public let f: UInt32
    public let clients: UInt32
    private var pairwise: [Pair: [UInt8]]
    private var signingKeys: [[UInt8]]
    public private(set) var publicKeys: [[UInt8]]

    struct Pair: Hashable, Sendable {
        let low: UInt32
        let high: UInt32
        init(_ a: UInt32, _ b: UInt32) { low = min(a, b); high = max(a, b) }
    }

    public var nodes: UInt32 { 3 * f + 1 }

    /// - Throws: ``ChainError`` when OpenSSL's random generator fails.
    public static func generate(f: UInt32, clients: UInt32) throws(ChainError) -> ChainKeys {
        var keys = ChainKeys(f: f, clients: clients, pairwise: [:], signingKeys: [], publicKeys: [])
        let n = 3 * f + 1
        var principals = (0..<n).map { ChainPrincipal.replica($0).raw }
        principals += (0..<clients).map { ChainPrincipal.client($0).raw }
        for a in 0..<n {
            for b in principals where b != a && !(b < n && b < a) {
                keys.pairwise[Pair(a, b)] = try random(Int(RC_CRYPTO_MAC_KEY_BYTES))
            }
            var secret = [UInt8](repeating: 0, count: 32), publicKey = [UInt8](repeating: 0, count: 32)
            let rc = rc_crypto_openssl_ed25519_keypair(&secret, &publicKey)
            guard rc == 0 else { throw .code(rc) }
            keys.signingKeys.append(secret)
            keys.publicKeys.append(publicKey)
        }
        return keys
    }

    static func random(_ count: Int) throws(ChainError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let rc = rc_crypto_openssl_random(&bytes, count)
        guard rc == 0 else { throw .code(rc) }
        return bytes
    }

    /// The key ring of one principal: only its own pairwise keys and signing key, and every replica's public key.
    public func keyRing(for principal: ChainPrincipal) throws(ChainError) -> ChainKeyRing {
        let ring = try ChainKeyRing(self: principal, replicas: nodes, clients: clients)
        let me = principal.raw
        for (pair, key) in pairwise where pair.low == me || pair.high == me {
            try ring.setMACKey(peer: pair.low == me ? pair.high : pair.low, key: key)
        }
        if case .replica(let position) = principal { try ring.setSigningKey(signingKeys[Int(position)]) }
        for (position, key) in publicKeys.enumerated() { try ring.setPublicKey(signer: UInt32(position), key: key) }
        return ring
    }
}

/// One principal's OpenSSL key ring (rc_crypto_openssl.h) and the `rc_crypto` table cores take.
/// Not `Sendable`: its operation counters are plain integers, like the core that uses it.
public final class ChainKeyRing {
    let pointer: OpaquePointer

    /// - Throws: ``ChainError`` for sizes out of range or when OpenSSL lacks HMAC or SHA-256.
    public init(self principal: ChainPrincipal, replicas: UInt32, clients: UInt32) throws(ChainError) {
        var out: OpaquePointer?
        let rc = rc_crypto_openssl_create(&out, principal.raw, replicas, clients)
        guard rc == 0, let out else { throw .code(rc) }
        pointer = out
    }

    deinit { rc_crypto_openssl_destroy(pointer) }

    public func setMACKey(peer: UInt32, key: [UInt8]) throws(ChainError) {
        let rc = rc_crypto_openssl_set_mac_key(pointer, peer, key, key.count)
        guard rc == 0 else { throw .code(rc) }
    }

    public func setSigningKey(_ key: [UInt8]) throws(ChainError) {
        precondition(key.count == 32, "Ed25519 private keys are 32 bytes")
        let rc = rc_crypto_openssl_set_signing_key(pointer, key)
        guard rc == 0 else { throw .code(rc) }
    }

    public func setPublicKey(signer: UInt32, key: [UInt8]) throws(ChainError) {
        precondition(key.count == 32, "Ed25519 public keys are 32 bytes")
        let rc = rc_crypto_openssl_set_public_key(pointer, signer, key)
        guard rc == 0 else { throw .code(rc) }
    }

    /// The table a core or the client helpers call; valid while this ring lives.
    public var crypto: rc_crypto { rc_crypto_openssl_provider(pointer) }

    public struct Stats: Equatable, Sendable {
        public var macGenerations: UInt64
        public var macVerifications: UInt64
        public var macFailures: UInt64
        public var digests: UInt64
        public var signatures: UInt64
        public var signatureVerifications: UInt64
        public var signatureFailures: UInt64
    }

    public var stats: Stats {
        let s = rc_crypto_openssl_stats_get(pointer)
        return Stats(macGenerations: s.mac_generations, macVerifications: s.mac_verifications, macFailures: s.mac_failures,
                     digests: s.digests, signatures: s.signatures, signatureVerifications: s.signature_verifications,
                     signatureFailures: s.signature_failures)
    }

    public func resetStats() { rc_crypto_openssl_stats_reset(pointer) }
}
