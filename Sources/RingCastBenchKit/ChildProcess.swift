#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// One child process in its own process group, stdin from /dev/null, stdout and stderr into files.
///
/// Its own group lets the benchmark kill everything a child started (`kill(-pgid)`), and keeps the terminal's
/// Ctrl-C away from the children: the benchmark alone decides when they stop, and it always stops them
/// (posix_spawn(3), setpgid(2)). Used from one thread; nothing here is shared.
package final class ChildProcess {
    package let name: String
    package let pid: pid_t
    package let stdoutPath: String
    package let stderrPath: String
    package private(set) var exitDescription: String?
    package private(set) var exitedCleanly = false

    package var isRunning: Bool { exitDescription == nil }

    private init(name: String, pid: pid_t, stdoutPath: String, stderrPath: String) {
        self.name = name
        self.pid = pid
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath
    }

    /// Starts `executable` (a path; no PATH search) with `arguments`.
    package static func spawn(name: String, executable: String, arguments: [String], stdoutPath: String,
                      stderrPath: String) throws(BenchError) -> ChildProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        // Nothing else of ours leaks into a child: a descriptor another thread opened without O_CLOEXEC (a file
        // being written, a socket) would otherwise live as long as the child (and keep, say, a freshly
        // written script busy: ETXTBSY).
        if let closeFrom = Self.addCloseFrom { _ = closeFrom(&actions, 3) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGPIPE, SIGHUP] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        var result = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        // ETXTBSY: a script just written is still open for writing in a child another thread is forking
        // (the descriptor lives until that child's exec). It passes within milliseconds; retry, bounded.
        for _ in 0..<50 where result == ETXTBSY {
            usleep(10_000)
            result = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        }
        guard result == 0 else {
            throw .spawnFailed(name: name, detail: "\(executable): \(String(cString: strerror(result)))")
        }
        return ChildProcess(name: name, pid: pid, stdoutPath: stdoutPath, stderrPath: stderrPath)
    }

    /// glibc ≥ 2.34's posix_spawn_file_actions_addclosefrom_np, looked up at run time because Swift's Glibc
    /// module does not export this GNU extension; nil where the C library lacks it.
    private static let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        #if canImport(Glibc)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else {
            return nil
        }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
        #else
        return nil
        #endif
    }()

    /// Reaps the child if it has exited; returns whether it is still running.
    @discardableResult
    package func poll() -> Bool {
        guard isRunning else { return false }
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        if result == 0 { return true }
        if result < 0 {
            exitDescription = "lost (waitpid: \(String(cString: strerror(errno))))"
            return false
        }
        // wait(2) status layout: low 7 bits = terminating signal, bits 8…15 = exit code.
        let signal = status & 0x7f
        if signal == 0 {
            let code = (status >> 8) & 0xff
            exitedCleanly = code == 0
            exitDescription = "exit code \(code)"
        } else {
            exitDescription = "killed by signal \(signal)" + (signal == SIGKILL ? " (SIGKILL)" : "")
        }
        return false
    }

    /// Sends `signal` to the child's whole process group while the child has not been reaped (after reaping,
    /// its group id could in principle name someone else's group).
    package func signalGroup(_ signal: Int32) {
        guard isRunning else { return }
        _ = kill(-pid, signal)
    }

    package func stdoutText() -> String { Self.read(stdoutPath) }
    package func stderrText() -> String { Self.read(stderrPath) }

    package static func read(_ path: String) -> String {
        guard let data = FileManager.default.contents(atPath: path) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    /// The last `lines` lines of `text`, for error messages.
    package static func tail(_ text: String, lines: Int = 15) -> String {
        let all = text.split(separator: "\n", omittingEmptySubsequences: false)
        let trimmed = all.last == "" ? all.dropLast() : all[...]
        return trimmed.suffix(lines).joined(separator: "\n")
    }
}

/// Children that must not outlive the run: stops them all (SIGTERM, then SIGKILL after a bounded wait).
package final class ChildGroup {
    package private(set) var children: [ChildProcess] = []

    package init() {}

    package func add(_ child: ChildProcess) { children.append(child) }

    package var running: [ChildProcess] { children.filter { $0.poll() } }

    /// SIGTERM to every running child's group, up to `graceSeconds` for them to exit, then SIGKILL and reap.
    package func stopAll(graceSeconds: Double = 2) { Self.stop(children, graceSeconds: graceSeconds) }

    package static func stop(_ children: [ChildProcess], graceSeconds: Double = 2) {
        var live: [ChildProcess] { children.filter { $0.poll() } }
        guard !live.isEmpty else { return }
        live.forEach { $0.signalGroup(SIGTERM) }
        // A node stopped by a loopback partition (SIGSTOP) handles SIGTERM only once continued (signal(7)).
        live.forEach { $0.signalGroup(SIGCONT) }
        let deadline = Clock.now + graceSeconds
        while Clock.now < deadline, !live.isEmpty { usleep(20_000) }
        for child in live { child.signalGroup(SIGKILL) }
        // SIGKILL cannot be caught; reaping is then a matter of the kernel tearing the process down.
        let reapDeadline = Clock.now + 5
        while Clock.now < reapDeadline, !live.isEmpty { usleep(10_000) }
    }
}

/// Monotonic seconds and wall-clock nanoseconds.
package enum Clock {
    package static var now: Double {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }

    package static var unixNanos: UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }
}
