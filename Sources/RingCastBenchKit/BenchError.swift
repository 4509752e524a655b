import Foundation

/// Why a benchmark run could not produce a result. Every case says what to do next.
public enum BenchError: Error, CustomStringConvertible, Equatable {
    case invalidConfiguration(String)
    case binaryMissing(role: String, path: String, hint: String)
    case portBusy(port: Int, detail: String)
    case spawnFailed(name: String, detail: String)
    /// A node exited non-zero or was killed by a signal; `stderrTail` is the end of what it printed.
    case nodeFailed(id: Int, status: String, stderrTail: String)
    case nodeOutputInvalid(id: Int, detail: String, stdoutTail: String)
    case timedOut(phase: String, seconds: Double, stillRunning: [String], stderrTails: String)
    case interrupted(signal: Int32)
    case rawLinkFailed(String)
    case lanFailed(String)

    public var description: String {
        switch self {
        case .invalidConfiguration(let message):
            return message
        case .binaryMissing(let role, let path, let hint):
            return "\(role) binary not found or not executable at \(path); \(hint)"
        case .portBusy(let port, let detail):
            return "port \(port) is busy (\(detail)); choose another --base-port or free it"
        case .spawnFailed(let name, let detail):
            return "could not start \(name): \(detail)"
        case .nodeFailed(let id, let status, let tail):
            return "node \(id) failed (\(status))" + Self.section("stderr of node \(id)", tail)
        case .nodeOutputInvalid(let id, let detail, let tail):
            return "node \(id) exited 0 but its --json output is unusable: \(detail)" + Self.section("stdout of node \(id)", tail)
        case .timedOut(let phase, let seconds, let running, let tails):
            return "timed out after \(String(format: "%.1f", seconds)) s in phase '\(phase)'; killed: " +
                running.joined(separator: ", ") + (tails.isEmpty ? "" : "\n" + tails)
        case .interrupted(let signal):
            return "interrupted by signal \(signal); every child process was killed"
        case .rawLinkFailed(let message):
            return "raw link measurement (ringperf) failed: \(message)"
        case .lanFailed(let message):
            return "emulated LAN (tools/lan) failed: \(message)"
        }
    }

    static func section(_ title: String, _ body: String) -> String {
        body.isEmpty ? " (\(title): empty)" : "\n--- \(title) (last lines) ---\n" + body
    }
}
