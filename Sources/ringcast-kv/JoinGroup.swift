import ArgumentParser
import Foundation
import RingCast
import RingCastJSON
import RingCastSMR
import Synchronization

// join-bench: the replica processes it runs, and their memory as /proc reports it.

/// VmRSS and VmHWM of a process, and VmRSS by kind, bytes (/proc/PID/status).
///
/// Why by kind: "peak − state" of a replica is not all the transfer's. Measured with /proc/PID/smaps during
/// join-bench (512 MiB, loopback): every member, provider and joiner alike, holds about 14–16 MiB of code (RssFile)
/// and the ring's receive buffer (the engine's memfd `rc_io_recv`, RssShmem: 2 × n × (window + frame) bytes, all of
/// it resident once the traffic wrapped around it, 30–35 MiB for n = 4); the rest is the heap (RssAnon): the state,
/// a few MiB of allocator overhead for it, and at the joiner the suffix store (deliveries queued while it restores,
/// up to ``Replica/Options/suffixBytesMax``), whose freed memory the allocator keeps.
struct ProcStatus {
    var rss = 0
    var hwm = 0
    var anon = 0
    var file = 0
    var shmem = 0

    static func read(_ pid: pid_t) -> ProcStatus {
        var result = ProcStatus()
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return result }
        for line in text.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2, let kib = Int(fields[1]) else { continue }
            if fields[0] == "VmRSS:" { result.rss = kib * 1024 }
            if fields[0] == "VmHWM:" { result.hwm = kib * 1024 }
            if fields[0] == "RssAnon:" { result.anon = kib * 1024 }
            if fields[0] == "RssFile:" { result.file = kib * 1024 }
            if fields[0] == "RssShmem:" { result.shmem = kib * 1024 }
        }
        return result
    }

    /// CPU seconds the process used so far, user + system (/proc/PID/stat fields 14 and 15, in clock ticks).
    static func cpuSeconds(_ pid: pid_t) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return 0 }
        // After the command name (in parentheses, may hold spaces): field 3 onwards.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Resets VmHWM to the current RSS (Linux ≥ 4.0: "5" to clear_refs; the process is our child).
    static func resetPeak(_ pid: pid_t) {
        try? "5".write(toFile: "/proc/\(pid)/clear_refs", atomically: false, encoding: .utf8)
    }
}

/// The four `ringcast-kv serve` children (own process groups, output to files), stopped with SIGTERM then SIGKILL.
final class JoinGroup: @unchecked Sendable {
    private let directory: String
    private let ports: [UInt16]
    private let members: String
    private let extraArguments: [String]
    private var pids: [Int: pid_t] = [:]
    private let lock = NSLock()

    init(directory: String, members count: Int, extraArguments: [String]) throws {
        self.directory = directory
        self.extraArguments = extraArguments
        let ports = try SpawnedCluster.freePorts(replicas: count)
        self.ports = ports
        members = (0..<count).map { "127.0.0.1:\(ports[3 * $0])" }.joined(separator: ",")
    }

    /// What replica `id` printed on stdout so far.
    func output(_ id: Int) -> String {
        (try? String(contentsOfFile: "\(directory)/replica\(id).out", encoding: .utf8)) ?? ""
    }

    /// What replica `id` logged on stderr so far.
    func errorOutput(_ id: Int) -> String {
        (try? String(contentsOfFile: "\(directory)/replica\(id).err", encoding: .utf8)) ?? ""
    }

    func clientAddress(_ id: Int) -> Address { try! Address(host: "127.0.0.1", port: ports[3 * id + 2]) }
    func pid(_ id: Int) -> pid_t { lock.withLock { pids[id] ?? 0 } }

    func spawn(_ id: Int, view: String, arguments more: [String] = []) throws {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let arguments = [executable, "serve", "--id", "\(id)", "--members", members, "--view", view,
                         "--client-port", "\(ports[3 * id + 2])", "--log-level", "info"] + extraArguments + more
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "\(directory)/replica\(id).out", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, "\(directory)/replica\(id).err", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid = pid_t()
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard result == 0 else { throw ValidationError("posix_spawn \(executable): errno \(result)") }
        lock.withLock { pids[id] = pid }
    }

    func waitReady(_ ids: [Int], timeoutSeconds: Double = 30) throws {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        for id in ids {
            while true {
                let text = (try? String(contentsOfFile: "\(directory)/replica\(id).out", encoding: .utf8)) ?? ""
                if text.contains("ready client_port=") { break }
                var status: Int32 = 0
                if waitpid(pid(id), &status, WNOHANG) == pid(id) {
                    throw ValidationError("replica \(id) exited before it was ready; see \(directory)/replica\(id).err")
                }
                guard Date() < deadline else { throw ValidationError("replica \(id) was not ready in time") }
                usleep(20_000)
            }
        }
    }

    func stop() {
        let all: [pid_t] = lock.withLock {
            defer { pids = [:] }
            return Array(pids.values)
        }
        for pid in all { kill(-pid, SIGTERM) }
        let deadline = Date().addingTimeInterval(3)
        var live = all
        while !live.isEmpty && Date() < deadline {
            live = live.filter { pid in
                var status: Int32 = 0
                return waitpid(pid, &status, WNOHANG) == 0
            }
            if !live.isEmpty { usleep(20_000) }
        }
        for pid in live {
            kill(-pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
    }
}
