import ArgumentParser
import Foundation
import RingCast

/// What `GET /status` answers and `ringcast-node status` prints: one member's view, state and counters, in the
/// spirit of `corosync-quorumtool -s` (one `Name   value` line each, stable names, made to be read and grepped).
enum NodeStatus {
    static func text(id: Int, member: Member?) -> String {
        var lines: [(String, String)] = [("Node ID", "\(id)")]
        switch member {
        case nil:
            lines.append(("State", "starting"))
        case let .node(node)?:
            let stats = node.statistics
            lines += [("Mode", "static ring"), ("State", "\(node.status)"),
                      ("Ring", "position \(node.configuration.position) of \(node.configuration.nodeCount), "
                          + "view id \(node.configuration.viewId)")]
            lines += counters(stats, deliveredMessages: stats.deliveredMessages, deliveredBytes: stats.deliveredBytes)
        case let .group(group)?:
            let stats = group.statistics
            lines += [("Mode", "group (\(group.configuration.mode))"), ("State", "\(group.state)")]
            if let view = group.currentView {
                lines += [("View ID", "\(view.id)"),
                          ("Members", view.members.map { "\($0)" }.joined(separator: " ")),
                          ("Last change", view.causes.joined(separator: ", "))]
            }
            lines += [("View changes", "\(stats.viewChanges)"),
                      ("Recovered", "\(stats.recoveredMessages) messages, \(stats.recoveryCopies) payload copies"),
                      ("Broadcast queue", "\(stats.broadcastsQueued) queued, \(stats.broadcastsInFlight) in flight"),
                      ("Control frames", "\(stats.controlFramesIn) in, \(stats.controlFramesOut) out, \(stats.membershipIgnored) ignored")]
            lines += counters(stats.engine, deliveredMessages: stats.deliveredMessages, deliveredBytes: stats.deliveredBytes)
        }
        let width = lines.map(\.0.count).max() ?? 0
        return lines.map { name, value in name.padding(toLength: width + 3, withPad: " ", startingAt: 0) + value }
            .joined(separator: "\n") + "\n"
    }

    /// The ring's counters (for a group: those of the current view's ring, which restart with each view).
    private static func counters(_ stats: Node.Statistics, deliveredMessages: UInt64, deliveredBytes: UInt64) -> [(String, String)] {
        [("Delivered", "\(deliveredMessages) messages, \(deliveredBytes) bytes"),
         ("Ring", "\(stats.framesIn) frames in, \(stats.framesOut) out; \(stats.bytesIn) bytes in, \(stats.bytesOut) out"),
         ("Window full", "\(stats.windowFull)"),
         ("Link starved", String(format: "%.1f ms", Double(stats.linkStarvedNanos) / 1e6)),
         ("Payload copies", "\(stats.payloadCopies)")]
    }
}

/// `ringcast-node status HOST:PORT`: asks a running node's `--metrics-listen` endpoint and prints the answer.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Print a running node's view, state and counters (from its --metrics-listen endpoint).")

    @Argument(help: ArgumentHelp("The node's --metrics-listen address.", valueName: "host:port"))
    var address: String
    @Flag(help: "Print the Prometheus metrics (GET /metrics) instead of the status.")
    var metrics = false
    @Option(help: ArgumentHelp("Give up after this long.", valueName: "seconds"))
    var timeout: Double = 2

    func validate() throws {
        guard timeout > 0, timeout <= 60 else { throw ValidationError("--timeout must be in (0, 60] seconds") }
        _ = try parsedAddress()
    }

    func run() throws {
        do {
            print(try HTTPEndpoint.get(metrics ? "/metrics" : "/status", from: try parsedAddress(),
                                       timeoutMillis: Int(timeout * 1000)), terminator: "")
        } catch {
            FileHandle.standardError.write(Data("ringcast-node status: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    private func parsedAddress() throws -> Address {
        do { return try Address(address) } catch { throw ValidationError("\(address): \(error)") }
    }
}
