internal import CRingCastCore
import RingCastChain

/// The byte string a signature or a digest covers: fixed-width little-endian integers and length-prefixed byte
/// strings, so two different messages never encode to the same bytes.
struct BackupBytes {
    private(set) var bytes: [UInt8] = []

    init(tag: String) { raw(Array(tag.utf8)) }

    mutating func u32(_ value: UInt32) { for k in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt32(k)))) } }
    mutating func u64(_ value: UInt64) { for k in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(k)))) } }
    mutating func digest(_ value: ChainDigest) { bytes += value.bytes }
    mutating func raw(_ value: [UInt8]) {
        u32(UInt32(value.count))
        bytes += value
    }
}

/// The operations Backup needs from one principal's ``ChainKeyRing`` (libcrypto through rc_crypto.h; no primitive of
/// our own): SHA-256, pairwise HMAC, Ed25519. Counts its signature operations, so tests and the simulator can read
/// what the slow path costs.
final class BackupCrypto {
    let keyRing: ChainKeyRing
    private(set) var signatures: UInt64 = 0
    private(set) var signatureVerifications: UInt64 = 0

    init(keyRing: ChainKeyRing) { self.keyRing = keyRing }

    func digest(_ data: BackupBytes) -> ChainDigest {
        let crypto = keyRing.crypto
        var out = rc_crypto_digest()
        let rc = data.bytes.withUnsafeBufferPointer { b in
            var part = rc_crypto_part(data: b.baseAddress, bytes: b.count)
            return crypto.digest(crypto.context, &part, 1, &out)
        }
        precondition(rc == 0, "SHA-256 failed: \(rc)")
        return ChainDigest(out)
    }

    /// Ed25519 with this principal's signing key.
    func sign(_ data: BackupBytes) -> [UInt8] {
        let crypto = keyRing.crypto
        var signature = rc_crypto_signature()
        let rc = data.bytes.withUnsafeBufferPointer { crypto.sign(crypto.context, $0.baseAddress, $0.count, &signature) }
        precondition(rc == 0, "signing failed: \(rc) (a replica's key ring holds its signing key)")
        signatures += 1
        return withUnsafeBytes(of: signature.bytes) { Array($0) }
    }

    /// Whether `signature` is replica `signer`'s over `data`.
    func verify(signer: UInt32, _ data: BackupBytes, signature: [UInt8]) -> Bool {
        guard signature.count == Int(RC_CRYPTO_SIGNATURE_BYTES) else { return false }
        let crypto = keyRing.crypto
        var s = rc_crypto_signature()
        withUnsafeMutableBytes(of: &s.bytes) { $0.copyBytes(from: signature) }
        signatureVerifications += 1
        return data.bytes.withUnsafeBufferPointer { crypto.sign_verify(crypto.context, signer, $0.baseAddress, $0.count, &s) } == 1
    }

    /// HMAC-SHA-256 (truncated as rc_crypto_mac) with the key shared with `peer` (a ``ChainPrincipal/raw``).
    func mac(peer: UInt32, _ data: BackupBytes) -> ChainMAC {
        let crypto = keyRing.crypto
        var tag = rc_crypto_mac()
        let rc = data.bytes.withUnsafeBufferPointer { b in
            var part = rc_crypto_part(data: b.baseAddress, bytes: b.count)
            return crypto.mac(crypto.context, peer, &part, 1, &tag)
        }
        precondition(rc == 0, "MAC failed: \(rc)")
        return ChainMAC(tag)
    }

    func verifyMAC(peer: UInt32, _ data: BackupBytes, tag: ChainMAC) -> Bool {
        let crypto = keyRing.crypto
        var t = tag.c
        return data.bytes.withUnsafeBufferPointer { b in
            var part = rc_crypto_part(data: b.baseAddress, bytes: b.count)
            return crypto.mac_verify(crypto.context, peer, &part, 1, &t)
        } == 1
    }
}
