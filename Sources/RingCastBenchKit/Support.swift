#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import RingCastLocalPorts

/// The signal that asked the benchmark to stop (SIGINT/SIGTERM), 0 if none. Written only by the signal handler
/// (an aligned 32-bit store, the `sig_atomic_t` idiom of signal-safety(7)) and polled by the run loop, which then
/// kills the children and takes the LAN down before exiting.
nonisolated(unsafe) var pendingStopSignal: Int32 = 0

public enum StopSignals {
    /// Routes SIGINT, SIGTERM and SIGHUP to ``pendingStopSignal`` instead of killing the process outright.
    public static func install() {
        for signalNumber in [SIGINT, SIGTERM, SIGHUP] {
            signal(signalNumber) { received in pendingStopSignal = received }
        }
    }

    static var pending: Int32 { pendingStopSignal }
}

/// Finds the executables the benchmark starts.
package enum Locator {
    /// The directory of the running executable (/proc/self/exe, else argv[0]).
    package static var executableDirectory: String {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            return (path as NSString).deletingLastPathComponent
        }
        let argument0 = CommandLine.arguments.first ?? "."
        let absolute = argument0.hasPrefix("/") ? argument0 :
            (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(argument0)
        return (absolute as NSString).deletingLastPathComponent
    }

    /// `override`, else `name` beside the running executable; checked to exist and be executable.
    package static func binary(_ name: String, override: String?, flag: String) throws(BenchError) -> String {
        let path = absolute(override ?? (executableDirectory as NSString).appendingPathComponent(name))
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw .binaryMissing(role: name, path: path,
                                 hint: "build it (swift build -c release --product \(name)) or pass \(flag) PATH")
        }
        return path
    }

    /// `tools/lan`: `override`, else searched upward from the executable's directory and the working directory.
    package static func lanTool(override: String?) throws(BenchError) -> String {
        if let override {
            let path = absolute(override)
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw .binaryMissing(role: "tools/lan", path: path, hint: "pass --lan-tool PATH to the LAN script")
            }
            return path
        }
        for start in [executableDirectory, FileManager.default.currentDirectoryPath] {
            var directory = start
            for _ in 0..<8 {
                let candidate = (directory as NSString).appendingPathComponent("tools/lan")
                if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
                let parent = (directory as NSString).deletingLastPathComponent
                if parent == directory { break }
                directory = parent
            }
        }
        throw .binaryMissing(role: "tools/lan", path: "tools/lan (searched upward from \(executableDirectory))",
                             hint: "run from the RingCast checkout or pass --lan-tool PATH")
    }

    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(path)
    }
}

/// Loopback ports for the nodes of a run: from `LocalPorts`' pool for tools, outside the kernel's ephemeral range
/// (a port picked there could be taken by a node's outgoing connect before its own node binds it). Another program
/// could still bind one in between; the node then fails with EADDRINUSE and the error says so.
enum Ports {
    static func free(count: Int) throws(BenchError) -> [Int] {
        try runs(count: count, run: 1)
    }

    /// `count` ports p whose neighbour p + 1 is free too: a node listens for data on p and for control on p + 1.
    static func freePairs(count: Int) throws(BenchError) -> [Int] {
        try runs(count: count, run: 2)
    }

    private static func runs(count: Int, run: Int) throws(BenchError) -> [Int] {
        guard let ports = LocalPorts.free(count: count, run: run, pool: .tools) else {
            throw .portBusy(port: 0, detail: "found fewer than \(count) runs of \(run) free loopback ports in "
                                + "\(LocalPorts.Pool.tools.range)")
        }
        return ports.map(Int.init)
    }

    /// Checks that `port` can be bound on 127.0.0.1 now.
    static func checkFree(_ port: Int) throws(BenchError) {
        let (fd, _) = try bind(port: port)
        close(fd)
    }

    private static func bind(port: Int) throws(BenchError) -> (Int32, Int) {
        #if canImport(Glibc) || canImport(Musl)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw .portBusy(port: port, detail: "socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                systemBind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw .portBusy(port: port, detail: "bind 127.0.0.1:\(port): \(reason)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }
}

/// The progress line on stderr: rewritten in place once a second on a terminal, one line per phase otherwise.
public final class ProgressLine {
    private let enabled: Bool
    private let isTerminal: Bool
    private var lastPhase = ""
    private var lastWrite = 0.0
    private var width = 0
    private let started = Clock.now

    public init(enabled: Bool) {
        self.enabled = enabled
        isTerminal = isatty(STDERR_FILENO) == 1
    }

    func update(phase: String, detail: String = "") {
        guard enabled else { return }
        let now = Clock.now
        let phaseChanged = phase != lastPhase
        guard phaseChanged || (isTerminal && now - lastWrite >= 1) else { return }
        lastPhase = phase
        lastWrite = now
        let text = "ringcast-bench: \(phase)\(detail.isEmpty ? "" : " " + detail)  [\(Int(now - started)) s]"
        if isTerminal {
            let padding = String(repeating: " ", count: max(0, width - text.count))
            width = text.count
            write("\r" + text + padding)
        } else {
            write(text + "\n")
        }
    }

    func finish() {
        guard enabled, isTerminal, width > 0 else { return }
        write("\r" + String(repeating: " ", count: width) + "\r")
        width = 0
    }

    private func write(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }
}

#if canImport(Glibc)
private let systemBind = Glibc.bind
#elseif canImport(Musl)
private let systemBind = Musl.bind
#elseif canImport(Darwin)
private let systemBind = Darwin.bind
#endif
