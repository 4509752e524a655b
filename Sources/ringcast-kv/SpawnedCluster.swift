import ArgumentParser
import Foundation
import RingCast

/// The replicas `bench` runs: `ringcast-kv serve` child processes on loopback (posix_spawn, each in its own process
/// group, output to files, as ringcast-bench runs ringcast-node), stopped with SIGTERM then SIGKILL.
final class SpawnedCluster: @unchecked Sendable {
    struct Child {
        let pid: pid_t
        let stdoutPath: String
        let stderrPath: String
    }

    private let lock = NSLock()
    private var children: [Child] = []
    private(set) var clientAddresses: [Address] = []

    static func start(replicas: Int, directory: String, plantBug: String?, suspectMillis: Int) throws -> SpawnedCluster {
        let cluster = SpawnedCluster()
        let ports = freePorts(count: replicas * 3)
        let members = (0..<replicas).map { "127.0.0.1:\(ports[3 * $0])" }.joined(separator: ",")
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        do {
            for id in 0..<replicas {
                var arguments = ["serve", "--id", "\(id)", "--members", members, "--client-port", "\(ports[3 * id + 2])",
                                 "--log-level", "warning", "--suspect-ms", "\(suspectMillis)"]
                if let plantBug { arguments += ["--plant-bug", plantBug] }
                let child = try spawn(executable: executable, arguments: arguments,
                                      stdoutPath: "\(directory)/replica\(id).out", stderrPath: "\(directory)/replica\(id).err")
                cluster.lock.withLock { cluster.children.append(child) }
                cluster.clientAddresses.append(try Address(host: "127.0.0.1", port: ports[3 * id + 2]))
            }
            try cluster.waitReady(timeoutSeconds: 20)
        } catch {
            cluster.stop()
            throw error
        }
        return cluster
    }

    /// Waits until every child printed its ready line.
    private func waitReady(timeoutSeconds: Double) throws {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        for child in lock.withLock({ children }) {
            while true {
                let text = (try? String(contentsOfFile: child.stdoutPath, encoding: .utf8)) ?? ""
                if text.contains("ready client_port=") { break }
                var status: Int32 = 0
                if waitpid(child.pid, &status, WNOHANG) == child.pid {
                    let stderr = (try? String(contentsOfFile: child.stderrPath, encoding: .utf8)) ?? ""
                    throw ValidationError("a replica exited before it was ready:\n\(stderr.suffix(2000))")
                }
                guard Date() < deadline else { throw ValidationError("a replica was not ready within \(timeoutSeconds) s") }
                usleep(20_000)
            }
        }
    }

    /// SIGKILLs replica `index` (fault injection).
    func kill(_ index: Int) {
        let child: Child? = lock.withLock { index < children.count ? children[index] : nil }
        if let child {
            Foundation.kill(-child.pid, SIGKILL)
            FileHandle.standardError.write(Data("killed replica \(index) (pid \(child.pid))\n".utf8))
        }
    }

    /// SIGTERM, then SIGKILL after 2 s; reaps every child.
    func stop() {
        let all: [Child] = lock.withLock {
            defer { children = [] }
            return children
        }
        for child in all { Foundation.kill(-child.pid, SIGTERM) }
        let deadline = Date().addingTimeInterval(2)
        var live = all
        while !live.isEmpty && Date() < deadline {
            live = live.filter { child in
                var status: Int32 = 0
                return waitpid(child.pid, &status, WNOHANG) == 0
            }
            if !live.isEmpty { usleep(20_000) }
        }
        for child in live {
            Foundation.kill(-child.pid, SIGKILL)
            var status: Int32 = 0
            waitpid(child.pid, &status, 0)
        }
    }

    static func spawn(executable: String, arguments: [String], stdoutPath: String, stderrPath: String) throws -> Child {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own process group, so that a kill reaches only the replica.
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid = pid_t()
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard result == 0 else { throw ValidationError("posix_spawn \(executable): errno \(result)") }
        return Child(pid: pid, stdoutPath: stdoutPath, stderrPath: stderrPath)
    }

    /// Ports p (data), p + 1 (control), p + 2 (client) free on loopback, per replica.
    static func freePorts(count: Int) -> [UInt16] {
        func bindable(_ port: UInt16) -> Bool {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = port.bigEndian
            return withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
        }
        // Below the kernel's ephemeral range: a port picked there can be taken by any outgoing connection (a
        // client's, the ring's) before the replica that was given it binds — join-bench's joiner, started seconds
        // later, once failed with "address already in use". Only when that range leaves no room, the old span.
        let ephemeralLow = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))
            .flatMap { $0.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap { Int($0) } } ?? 32_768
        // From 26000: the SMR tests' in-process clusters pick 10000–25999 while they spawn these processes.
        let (low, high) = ephemeralLow >= 30_000 ? (26_000, ephemeralLow - 4) : (30_000, 59_990)
        // Where to start: the pid scattered over the span (Fibonacci hashing). Benches started together have pids a
        // few apart; a start of `pid mod span` put their searches a few ports apart, so two of them (the test suites
        // run side by side) could both find a triple free before either's replica bound it, and one bench ended at
        // once with no report.
        let triples = (high - low) / 3
        let start = Int((UInt64(UInt32(bitPattern: getpid())) &* 2_654_435_761) % UInt64(triples))
        var result: [UInt16] = []
        var candidate = UInt16(low + start * 3)
        while result.count < count {
            candidate = Int(candidate) >= high - 3 ? UInt16(low) : candidate + 3
            if bindable(candidate) && bindable(candidate + 1) && bindable(candidate + 2) {
                result += [candidate, candidate + 1, candidate + 2]
            }
        }
        return Array(result.prefix(count))
    }
}
