public import RingCastChain
internal import CRingCast
internal import CRingCastCore
import RingCastKeys

/// One key file per party of a Chain cluster in a directory: `replica-<position>.key` and `client-<id>.key`, each
/// mode 0600 and holding only that party's pairwise HMAC keys and (replicas) its Ed25519 signing key, plus every
/// replica's public key. Keys come from OpenSSL's DRBG, never from ids (spec §4).
///
/// Interim: the chain-core work adds `ringcast-keys chain` and `ChainKeyFile.load(path:)` in RingCastKeys; once it
/// is merged, ``load(directory:principal:)`` should read that format instead, and this writer goes away. The format:
/// text lines `ringcast-chain-keys 1`, `f F`, `clients C`, `principal replica|client ID`, `mac PEER HEX` (PEER is the
/// rc_crypto principal: a position, or 0x80000000|client), `sign HEX`, `public POSITION HEX`.
public enum ChainKeyDirectory {
    public static func fileName(_ principal: ChainPrincipal) -> String {
        switch principal {
        case .replica(let p): return "replica-\(p).key"
        case .client(let c): return "client-\(c).key"
        }
    }

    /// Generates fresh keys for n = 3f+1 replicas and `clients` clients and writes every party's file.
    public static func generate(directory: String, f: UInt32, clients: UInt32, overwrite: Bool = false) throws(ChainBFTError) {
        let n = 3 * f + 1
        let replicas = (0..<n).map { ChainPrincipal.replica($0) }
        let all = replicas + (0..<clients).map { ChainPrincipal.client($0) }
        var macs: [ChainPrincipal: [(UInt32, [UInt8])]] = [:]
        for (k, a) in all.enumerated() {
            for b in all[(k + 1)...] {
                if case .client = a, case .client = b { continue } // clients share no keys
                let key = try random(Int(RC_CRYPTO_MAC_KEY_BYTES))
                macs[a, default: []].append((b.raw, key))
                macs[b, default: []].append((a.raw, key))
            }
        }
        var secrets: [[UInt8]] = [], publics: [[UInt8]] = []
        for _ in 0..<n {
            var secret = [UInt8](repeating: 0, count: 32), publicKey = [UInt8](repeating: 0, count: 32)
            let rc = rc_crypto_openssl_ed25519_keypair(&secret, &publicKey)
            guard rc == 0 else { throw .core("Ed25519 key pair", rc) }
            secrets.append(secret)
            publics.append(publicKey)
        }
        for principal in all {
            var lines = ["ringcast-chain-keys 1", "f \(f)", "clients \(clients)"]
            switch principal {
            case .replica(let p): lines.append("principal replica \(p)")
            case .client(let c): lines.append("principal client \(c)")
            }
            for (peer, key) in macs[principal] ?? [] { lines.append("mac \(peer) \(hex(key))") }
            if case .replica(let p) = principal { lines.append("sign \(hex(secrets[Int(p)]))") }
            for (p, key) in publics.enumerated() { lines.append("public \(p) \(hex(key))") }
            let path = directory + "/" + fileName(principal)
            do { try KeyFile.writeSecret(Array((lines.joined(separator: "\n") + "\n").utf8), to: path, overwrite: overwrite) } catch {
                throw .keyFile("\(error)")
            }
        }
    }

    /// Loads `principal`'s key ring from its file in `directory` (permissions and format checked).
    /// - Returns: the ring and the cluster's f and client count, as the file says.
    public static func load(directory: String, principal: ChainPrincipal) throws(ChainBFTError) -> (ring: ChainKeyRing, f: UInt32, clients: UInt32) {
        let path = directory + "/" + fileName(principal)
        let bytes: [UInt8]
        do { bytes = try KeyFile.readSecret(at: path) } catch { throw .keyFile("\(error)") }
        func bad(_ reason: String) -> ChainBFTError { .keyFile("\(path): not a Chain key file: \(reason)") }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        guard lines.count >= 4, lines[0] == ["ringcast-chain-keys", "1"] else { throw bad("no `ringcast-chain-keys 1` header") }
        guard lines[1].count == 2, lines[1][0] == "f", let f = UInt32(lines[1][1]), (1...RC_CHAIN_F_MAX).contains(f) else { throw bad("line 2 is not `f F`") }
        guard lines[2].count == 2, lines[2][0] == "clients", let clients = UInt32(lines[2][1]) else { throw bad("line 3 is not `clients C`") }
        let expected: [String]
        switch principal {
        case .replica(let p): expected = ["principal", "replica", "\(p)"]
        case .client(let c): expected = ["principal", "client", "\(c)"]
        }
        guard lines[3] == expected else { throw bad("it belongs to \(lines[3].dropFirst().joined(separator: " ")), not \(expected.dropFirst().joined(separator: " "))") }
        let ring: ChainKeyRing
        do { ring = try ChainKeyRing(self: principal, replicas: 3 * f + 1, clients: clients) } catch { throw .core("key ring", -22) }
        var publics = 0
        for (index, line) in lines.enumerated().dropFirst(4) {
            do throws(ChainError) {
                switch (line.first, line.count) {
                case ("mac", 3):
                    guard let peer = UInt32(line[1]), let key = unhex(line[2]), key.count == Int(RC_CRYPTO_MAC_KEY_BYTES) else { throw .code(-22) }
                    try ring.setMACKey(peer: peer, key: key)
                case ("sign", 2):
                    guard let key = unhex(line[1]), key.count == 32 else { throw .code(-22) }
                    try ring.setSigningKey(key)
                case ("public", 3):
                    guard let p = UInt32(line[1]), p < 3 * f + 1, let key = unhex(line[2]), key.count == 32 else { throw .code(-22) }
                    try ring.setPublicKey(signer: p, key: key)
                    publics += 1
                default: throw .code(-22)
                }
            } catch {
                throw bad("line \(index + 1) is malformed")
            }
        }
        guard publics == Int(3 * f + 1) else { throw bad("\(publics) public keys for \(3 * f + 1) replicas") }
        return (ring, f, clients)
    }

    static func random(_ count: Int) throws(ChainBFTError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let rc = rc_crypto_openssl_random(&bytes, count)
        guard rc == 0 else { throw .core("OpenSSL random", rc) }
        return bytes
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes { out.append(digits[Int(byte >> 4)]); out.append(digits[Int(byte & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    static func unhex(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 97...102: return c - 87
            default: return nil
            }
        }
        var out: [UInt8] = []
        var k = 0
        while k < chars.count {
            guard let hi = value(chars[k]), let lo = value(chars[k + 1]) else { return nil }
            out.append(hi << 4 | lo)
            k += 2
        }
        return out
    }
}
