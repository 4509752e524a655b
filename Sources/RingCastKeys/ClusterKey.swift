internal import CRingCast

/// The cluster key: 256 random bits that every member of a cluster holds, and nobody else. Links between members
/// open with a challenge–response handshake that proves it (`rc_auth.h`); it is never sent.
///
/// ## File format (version 1)
/// A text file, mode 0600, made by `ringcast-keys cluster --out FILE`:
/// ```
/// # RingCast cluster key. Secret: mode 0600, the same file on every member, nowhere else.
/// ringcast-cluster-key 1
/// <64 hexadecimal digits>
/// ```
/// Lines starting with `#` and blank lines are ignored; anything else is an error. A later version changes the
/// number on the header line, and this reader refuses versions it does not know rather than guess.
public struct ClusterKey: Sendable, Hashable, CustomStringConvertible {
    /// Bytes of a cluster key.
    public static let bytesCount = 32
    /// The header line's first word.
    public static let header = "ringcast-cluster-key"
    /// The only version written and read.
    public static let version = 1

    /// The key itself. Keep it out of logs: ``description`` does not show it.
    public let bytes: [UInt8]

    /// A key of exactly ``bytesCount`` bytes.
    /// - Throws: ``KeyFileError/format(path:reason:)`` (path "-") for another length.
    public init(bytes: [UInt8]) throws(KeyFileError) {
        guard bytes.count == Self.bytesCount else {
            throw .format(path: "-", reason: "a cluster key has \(Self.bytesCount) bytes, not \(bytes.count)")
        }
        self.bytes = bytes
    }

    /// A fresh key from OpenSSL's RAND_bytes.
    /// - Throws: ``KeyFileError/randomness``.
    public static func generate() throws(KeyFileError) -> ClusterKey {
        var bytes = [UInt8](repeating: 0, count: bytesCount)
        let result = bytes.withUnsafeMutableBufferPointer { rc_auth_random($0.baseAddress, $0.count) }
        guard result == 0 else { throw .randomness }
        return try ClusterKey(bytes: bytes)
    }

    /// Reads and checks a key file (permissions first, then the format and the length).
    /// - Throws: ``KeyFileError``.
    public static func load(from path: String) throws(KeyFileError) -> ClusterKey {
        try parse(String(decoding: try KeyFile.readSecret(at: path), as: UTF8.self), path: path)
    }

    /// Parses the text of a key file (`path` only names it in errors).
    /// - Throws: ``KeyFileError/format(path:reason:)``.
    public static func parse(_ text: String, path: String = "-") throws(KeyFileError) -> ClusterKey {
        // \.isNewline: "\r\n" is one Character in Swift, so splitting on "\n" alone would keep CRLF lines whole.
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
            .map { $0.trimmingSuffix(while: { $0 == "\r" || $0 == " " || $0 == "\t" }) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        guard let first = lines.first else { throw .format(path: path, reason: "empty") }
        let words = first.split(separator: " ", omittingEmptySubsequences: true)
        guard words.count == 2, words[0] == Self.header else {
            throw .format(path: path, reason: "the first line must be \"\(Self.header) \(Self.version)\"")
        }
        guard words[1] == "\(Self.version)" else {
            throw .format(path: path, reason: "version \(words[1]) is not known (this build reads \(Self.version))")
        }
        guard lines.count == 2 else {
            throw .format(path: path, reason: lines.count < 2 ? "no key line" : "more than one key line")
        }
        guard let bytes = KeyFile.unhex(lines[1]) else {
            throw .format(path: path, reason: "the key line is not hexadecimal")
        }
        guard bytes.count == bytesCount else {
            throw .format(path: path, reason: "the key has \(bytes.count) bytes, a cluster key has \(bytesCount)")
        }
        return try ClusterKey(bytes: bytes)
    }

    /// The file's text (version 1).
    public var fileText: String {
        "# RingCast cluster key. Secret: mode 0600, the same file on every member, nowhere else.\n"
            + "\(Self.header) \(Self.version)\n\(KeyFile.hex(bytes))\n"
    }

    /// Writes the key file with mode 0600.
    /// - Throws: ``KeyFileError/exists(path:)`` unless `overwrite`, ``KeyFileError/system(call:path:errno:)``.
    public func write(to path: String, overwrite: Bool = false) throws(KeyFileError) {
        try KeyFile.writeSecret(Array(fileText.utf8), to: path, overwrite: overwrite)
    }

    /// Never the key: "ClusterKey(…)" with a short fingerprint-free marker.
    public var description: String { "ClusterKey(256 bits, redacted)" }
}

extension Substring {
    fileprivate func trimmingSuffix(while predicate: (Character) -> Bool) -> Substring {
        var end = endIndex
        while end > startIndex, predicate(self[index(before: end)]) { end = index(before: end) }
        return self[startIndex..<end]
    }
}
