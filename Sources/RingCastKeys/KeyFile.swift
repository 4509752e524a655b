#if canImport(Glibc)
import Glibc
#endif

/// Why a key file could not be made or read. Every case names the file and what to do.
public enum KeyFileError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The file is readable or writable by its group or by others (`mode` is its permission bits).
    case permissions(path: String, mode: UInt32)
    /// The file is not what a key file of this kind must be (wrong header, version, length or characters).
    case format(path: String, reason: String)
    /// The file exists and overwriting was not asked for.
    case exists(path: String)
    /// A system call failed.
    case system(call: String, path: String, errno: Int32)
    /// OpenSSL's RAND_bytes failed (no entropy): no key was made.
    case randomness

    public var description: String {
        switch self {
        case let .permissions(path, mode):
            "\(path): mode \(String(mode, radix: 8)) lets the group or others read or write a secret key; "
                + "run `chmod 600 \(path)` (and check who saw it)"
        case let .format(path, reason): "\(path): not a valid key file: \(reason)"
        case let .exists(path): "\(path) exists; remove it or pass --force to replace it"
        case let .system(call, path, code): "\(path): \(call): \(String(cString: strerror(code)))"
        case .randomness: "OpenSSL's RAND_bytes failed: no key was made"
        }
    }
}

/// Reading and writing secret files: created with mode 0600 (whatever the umask), refused on load when the group
/// or others may read or write them, bounded in size. The cluster key (``ClusterKey``) and, later, the Chain BFT
/// key files use it.
public enum KeyFile {
    /// The largest key file read (a key file is a few lines).
    public static let bytesMax = 64 << 10

    /// Reads a secret file after checking that it is a regular file that only its owner may access.
    /// - Throws: ``KeyFileError/permissions(path:mode:)``, ``KeyFileError/format(path:reason:)`` (not a regular
    ///   file, too large), ``KeyFileError/system(call:path:errno:)``.
    /// `limit` defaults to ``bytesMax``; a Chain BFT key file (one line per party) may pass a larger bound.
    public static func readSecret(at path: String, limit: Int = bytesMax) throws(KeyFileError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw .system(call: "open", path: path, errno: errno) }
        defer { _ = close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .system(call: "fstat", path: path, errno: errno) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .format(path: path, reason: "not a regular file") }
        let mode = UInt32(info.st_mode) & 0o7777
        guard mode & 0o077 == 0 else { throw .permissions(path: path, mode: mode) }
        guard Int(info.st_size) <= limit else {
            throw .format(path: path, reason: "\(info.st_size) bytes (a key file has at most \(limit))")
        }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size) + 1)
        var filled = 0
        while filled < bytes.count {
            let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw .system(call: "read", path: path, errno: errno) }
            if count == 0 { break }
            filled += count
        }
        guard filled <= limit else { throw .format(path: path, reason: "larger than \(limit) bytes") }
        return Array(bytes[0..<filled])
    }

    /// Writes a secret file with mode 0600: a new file (O_EXCL), or with `overwrite` a temporary file renamed over
    /// the old one (so that a reader never sees half a key, and the old file's permissions do not carry over).
    /// - Throws: ``KeyFileError/exists(path:)``, ``KeyFileError/system(call:path:errno:)``.
    public static func writeSecret(_ bytes: [UInt8], to path: String, overwrite: Bool) throws(KeyFileError) {
        let target = overwrite ? path + ".tmp-\(getpid())" : path
        let fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            if errno == EEXIST && !overwrite { throw .exists(path: path) }
            throw .system(call: "open", path: target, errno: errno)
        }
        var failure: KeyFileError?
        if fchmod(fd, 0o600) != 0 { failure = .system(call: "fchmod", path: target, errno: errno) }
        var written = 0
        while failure == nil && written < bytes.count {
            let count = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { failure = .system(call: "write", path: target, errno: count < 0 ? errno : EIO) } else { written += count }
        }
        if failure == nil && fsync(fd) != 0 { failure = .system(call: "fsync", path: target, errno: errno) }
        _ = close(fd)
        if failure == nil && overwrite && rename(target, path) != 0 { failure = .system(call: "rename", path: path, errno: errno) }
        if let failure {
            _ = unlink(target)
            throw failure
        }
    }

    /// Lowercase hexadecimal of `bytes`.
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of a hexadecimal string (either case), or nil for an odd length or another character.
    public static func unhex(_ text: Substring) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = value(utf8[index]), let low = value(utf8[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }
}
