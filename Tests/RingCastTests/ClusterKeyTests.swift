import RingCast
import RingCastKeys
import Testing
#if canImport(Glibc)
import Glibc
#endif

private func temporaryPath(_ name: String) -> String {
    "/tmp/ringcast-keytest-\(getpid())-\(name)"
}

@Suite("Cluster key files (RingCastKeys)")
struct ClusterKeyTests {
    @Test("a generated key is written with mode 0600, loads back equal, and two keys differ")
    func generateWriteLoad() throws {
        let path = temporaryPath("roundtrip")
        defer { unlink(path) }
        let key = try ClusterKey.generate()
        try key.write(to: path)
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(UInt32(info.st_mode) & 0o777 == 0o600)
        #expect(try ClusterKey.load(from: path) == key)
        #expect(try ClusterKey.generate() != key)
        #expect(!"\(key)".contains(KeyFile.hex(key.bytes)), "the description never shows the key")
        #expect(throws: KeyFileError.exists(path: path)) { try key.write(to: path) }
        try ClusterKey.generate().write(to: path, overwrite: true)
        #expect(try ClusterKey.load(from: path) != key)
    }

    @Test("a key file readable by the group or others is refused with a clear error")
    func permissionsRefused() throws {
        let path = temporaryPath("perm")
        defer { unlink(path) }
        try ClusterKey.generate().write(to: path)
        chmod(path, 0o640)
        #expect(throws: KeyFileError.permissions(path: path, mode: 0o640)) { try ClusterKey.load(from: path) }
        chmod(path, 0o604)
        do {
            _ = try ClusterKey.load(from: path)
            Issue.record("a world-readable key loaded")
        } catch {
            #expect("\(error)".contains("chmod 600"))
        }
    }

    @Test("format, version and length are checked", arguments: [
        ("", "empty"),
        ("ringcast-cluster-key 2\n" + String(repeating: "ab", count: 32) + "\n", "version 2"),
        ("some-other-key 1\n" + String(repeating: "ab", count: 32) + "\n", "first line"),
        ("ringcast-cluster-key 1\n" + String(repeating: "ab", count: 31) + "\n", "31 bytes"),
        ("ringcast-cluster-key 1\n" + String(repeating: "zz", count: 32) + "\n", "hexadecimal"),
        ("ringcast-cluster-key 1\n", "no key line"),
        ("ringcast-cluster-key 1\n" + String(repeating: "ab", count: 32) + "\nextra\n", "more than one"),
    ])
    func formatRefused(text: String, expected: String) {
        do {
            _ = try ClusterKey.parse(text, path: "k")
            Issue.record("accepted: \(expected)")
        } catch {
            #expect("\(error)".contains(expected), "\(error)")
        }
    }

    @Test("comments, blank lines and CRLF are accepted; the key is 32 bytes")
    func parseTolerant() throws {
        let key = try ClusterKey.parse("# c\n\r\nringcast-cluster-key 1\r\n" + String(repeating: "AB", count: 32) + "\r\n")
        #expect(key.bytes == [UInt8](repeating: 0xab, count: 32))
    }

    @Test("Security: a mode without a key is refused; a key file with bad permissions names the fix")
    func securityConfiguration() throws {
        var security = Security()
        security.authentication = .frames
        var configuration = Group.Configuration(me: 0, addresses: [0: try Address("127.0.0.1:7000")], initialView: [0])
        configuration.security = security
        #expect(throws: RingCastError.self) { try configuration.validate() }
        let path = temporaryPath("sec")
        defer { unlink(path) }
        try ClusterKey.generate().write(to: path)
        chmod(path, 0o644)
        #expect(throws: RingCastError.self) { _ = try Security(clusterKeyFile: path) }
        chmod(path, 0o600)
        configuration.security = try Security(clusterKeyFile: path, authentication: .frames)
        try configuration.validate()
    }
}
