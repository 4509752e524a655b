import Foundation

/// A bench run's work directory: the replicas' logs, the drivers' histories, key files.
///
/// Made with `mkdtemp` (a fresh name, never a reused one left by an earlier process with the same pid) and mode 0700
/// under the temporary directory, because it may hold secret keys. ``finish(passed:)`` removes it after a run that
/// passed every check and keeps it, with its path on stderr, otherwise, so a failure can be read.
/// `RINGCAST_BENCH_KEEP=1` keeps it always (as `ringcast-bench` does).
struct WorkDirectory {
    let path: String

    /// - Throws: `ValidationError`-style text through `WorkDirectoryError` when the directory cannot be made.
    init(prefix: String) throws {
        var template = Array((NSTemporaryDirectory() as NSString).appendingPathComponent("\(prefix).XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            throw WorkDirectoryError(text: "cannot make a work directory for \(prefix): \(String(cString: strerror(errno)))")
        }
        path = String(cString: made)
    }

    /// Removes the directory if the run passed (and keeping was not asked for); otherwise says where it is.
    func finish(passed: Bool) {
        if passed && ProcessInfo.processInfo.environment["RINGCAST_BENCH_KEEP"] != "1" {
            try? FileManager.default.removeItem(atPath: path)
        } else {
            FileHandle.standardError.write(Data("logs kept in \(path)\n".utf8))
        }
    }
}

struct WorkDirectoryError: Error, CustomStringConvertible {
    let text: String
    var description: String { text }
}
