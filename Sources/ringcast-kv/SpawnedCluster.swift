import ArgumentParser
import Foundation
import RingCast
import RingCastLocalPorts

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
        let ports = try freePorts(replicas: replicas)
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

    /// Ports p (data), p + 1 (control), p + 2 (client) free on loopback, per replica, flattened: from `LocalPorts`'
    /// pool for tools, outside the kernel's ephemeral range (join-bench's joiner, started seconds after its ports
    /// were picked, once lost one to an outgoing connection). The SMR tests' own clusters use the tests' pool.
    static func freePorts(replicas: Int) throws -> [UInt16] {
        guard let firsts = LocalPorts.free(count: replicas, run: 3, pool: .tools) else {
            throw ValidationError("found fewer than \(replicas) runs of 3 free loopback ports in \(LocalPorts.Pool.tools.range)")
        }
        return firsts.flatMap { [$0, $0 + 1, $0 + 2] }
    }
}
