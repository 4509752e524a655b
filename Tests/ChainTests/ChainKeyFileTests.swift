import CRingCast
import CRingCastCore
import Foundation
import Glibc
import RingCastChain
import RingCastKeys
import Testing

/// Chain BFT key files (spec §4): one per party, only its own secrets, mode 0600, checked on load.
@Suite struct ChainKeyFileTests {
    static func temporaryDirectory() -> String {
        var template = Array("/tmp/chainkeys-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil)
        return String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func mac(_ ring: ChainKeyRing, peer: ChainPrincipal, _ text: String) -> rc_crypto_mac? {
        let crypto = ring.crypto
        var tag = rc_crypto_mac()
        let rc = Array(text.utf8).withUnsafeBytes { raw in
            var part = rc_crypto_part(data: raw.baseAddress, bytes: raw.count)
            return crypto.mac(crypto.context, peer.raw, &part, 1, &tag)
        }
        return rc == 0 ? tag : nil
    }

    static func verify(_ ring: ChainKeyRing, peer: ChainPrincipal, _ text: String, _ tag: rc_crypto_mac) -> Int32 {
        let crypto = ring.crypto
        var tag = tag
        return Array(text.utf8).withUnsafeBytes { raw in
            var part = rc_crypto_part(data: raw.baseAddress, bytes: raw.count)
            return crypto.mac_verify(crypto.context, peer.raw, &part, 1, &tag)
        }
    }

    /// Written files load back with mode 0600; the rings they make interoperate pairwise, and hold no other pair.
    @Test func generatedFilesLoadAndInteroperate() throws {
        let dir = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let files = try ChainKeyFile.generateCluster(f: 1, clients: 2)
        #expect(files.count == 6)
        for file in files { try file.write(to: dir + "/" + file.fileName) }
        var info = stat()
        #expect(stat(dir + "/replica-0.chainkey", &info) == 0 && info.st_mode & 0o777 == 0o600)
        let r0 = try ChainIdentity.load(path: dir + "/replica-0.chainkey", expecting: .replica(0))
        let r1 = try ChainIdentity.load(path: dir + "/replica-1.chainkey")
        let c0 = try ChainIdentity.load(path: dir + "/client-0.chainkey", expecting: .client(0))
        let c1 = try ChainIdentity.load(path: dir + "/client-1.chainkey")
        #expect(r0.principal == .replica(0) && r0.f == 1 && r0.replicas == 4 && r0.clients == 2)
        #expect(c1.principal == .client(1))
        #expect(r0.file == files[0])
        // Replica–replica and client–replica keys agree at both ends.
        let tag = try #require(Self.mac(r0.keyRing, peer: .replica(1), "order"))
        #expect(Self.verify(r1.keyRing, peer: .replica(0), "order", tag) == 1)
        let clientTag = try #require(Self.mac(c0.keyRing, peer: .replica(1), "request"))
        #expect(Self.verify(r1.keyRing, peer: .client(0), "request", clientTag) == 1)
        #expect(Self.verify(r1.keyRing, peer: .client(1), "request", clientTag) == 0, "client 1 has another key")
        // A client holds no key with another client, and every pair key is distinct (random, not derived).
        #expect(Self.mac(c0.keyRing, peer: .client(1), "x") == nil)
        #expect(files[4].macKeys.count == 4 && files[0].macKeys.count == 5)
        let allKeys = files.flatMap { $0.macKeys.values }
        #expect(Set(allKeys).count == 6 + 8, "C(4,2) replica pairs + 4·2 client pairs, each held twice")
        // Signatures: a replica's signature verifies at a client with the file's public key.
        let data = Array("abort".utf8)
        var signature = rc_crypto_signature()
        let crypto = r0.keyRing.crypto, clientCrypto = c0.keyRing.crypto
        #expect(data.withUnsafeBytes { crypto.sign(crypto.context, $0.baseAddress, $0.count, &signature) } == 0)
        #expect(data.withUnsafeBytes { clientCrypto.sign_verify(clientCrypto.context, 0, $0.baseAddress, $0.count, &signature) } == 1)
        #expect(data.withUnsafeBytes { clientCrypto.sign_verify(clientCrypto.context, 1, $0.baseAddress, $0.count, &signature) } == 0)
    }

    /// Group- or other-readable files are refused before they are parsed.
    @Test func permissionsAreChecked() throws {
        let dir = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = try ChainKeyFile.generateCluster(f: 1, clients: 1)[2]
        let path = dir + "/k"
        try file.write(to: path)
        #expect(chmod(path, 0o644) == 0)
        #expect(throws: KeyFileError.permissions(path: path, mode: 0o644)) { try ChainKeyFile.load(path: path) }
        #expect(chmod(path, 0o600) == 0)
        #expect(try ChainKeyFile.load(path: path) == file)
        #expect(throws: KeyFileError.self) { try ChainKeyFile.load(path: path, expecting: .replica(1)) }
    }

    static func reason(_ text: String) -> String? {
        do {
            _ = try ChainKeyFile.parse(text)
            return nil
        } catch {
            if case .format(_, let reason) = error { return reason }
            return "\(error)"
        }
    }

    /// Each kind of damage is refused with a reason that names it.
    @Test func malformedFilesAreRefused() throws {
        let file = try ChainKeyFile.generateCluster(f: 1, clients: 1)[1]
        let text = file.fileText
        #expect(try ChainKeyFile.parse(text) == file)
        let lines = text.split(separator: "\n").map(String.init)
        func without(_ prefix: String) -> String { lines.filter { !$0.hasPrefix(prefix) }.joined(separator: "\n") }
        func replacing(_ prefix: String, _ line: String) -> String {
            lines.map { $0.hasPrefix(prefix) ? line : $0 }.joined(separator: "\n")
        }
        #expect(Self.reason(text.replacingFirst("ringcast-chain-keys 1", "ringcast-chain-keys 2"))?.contains("version 2") == true)
        #expect(Self.reason(without("mac replica 2"))?.contains("no MAC key with replica 2") == true)
        #expect(Self.reason(without("public client 0"))?.contains("no public key of client 0") == true)
        #expect(Self.reason(replacing("signing", "signing " + String(repeating: "ab", count: 32)))?.contains("does not belong") == true)
        #expect(Self.reason(replacing("signing", "signing abcd"))?.contains("bytes") == true)
        #expect(Self.reason(replacing("self", "self replica 4"))?.contains("only 4") == true)
        #expect(Self.reason(replacing("cluster", "cluster 0 1")) != nil)
        #expect(Self.reason(text + "mac replica 1 " + String(repeating: "00", count: 32) + "\n")?.contains("replica 1") == true,
                "a MAC key with itself")
        #expect(Self.reason(text + "mac replica 2 " + String(repeating: "00", count: 32) + "\n")?.contains("second") == true)
        #expect(Self.reason(text + "frobnicate 1\n")?.contains("unknown keyword") == true)
        #expect(Self.reason(text.replacingFirst("mac replica 0 ", "mac replica 0 zz"))?.contains("hexadecimal") == true)
        #expect(ChainKeyFile.isChainKeyText(text))
        #expect(!ChainKeyFile.isChainKeyText("ringcast-cluster-key 1\n00\n"))
    }
}

extension String {
    func replacingFirst(_ target: String, _ replacement: String) -> String {
        var copy = self
        guard let range = copy.firstRange(of: target) else { return self }
        copy.replaceSubrange(range, with: replacement)
        return copy
    }
}
