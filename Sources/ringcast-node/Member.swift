import Foundation
import RingCast
import Synchronization

/// What a run drives: one static ring (`Node`, ids = ring positions) or a group member (`Group`, survives
/// crashes, partitions and joins through view changes).
enum Member: Sendable {
    case node(Node)
    case group(Group)

    func broadcast(_ payload: [UInt8]) async throws(RingCastError) {
        switch self {
        case let .node(node): try await node.broadcast(payload)
        case let .group(group): try await group.broadcast(payload)
        }
    }

    /// Why this member cannot go on, if it cannot.
    var failure: String? {
        switch self {
        case let .node(node):
            if case let .failed(error) = node.status { return "\(error)" }
            return nil
        case let .group(group):
            return group.state == .excluded ? "excluded from the group" : nil
        }
    }

    /// Own messages not yet delivered back (queued, or in the ring).
    var ownOutstanding: Int {
        switch self {
        case let .node(node): node.statistics.broadcastsInFlight
        case let .group(group):
            group.statistics.broadcastsQueued + group.statistics.broadcastsInFlight
        }
    }

    func shutdown() {
        switch self {
        case let .node(node): node.shutdown()
        case let .group(group): group.shutdown()
        }
    }

    var statistics: Node.Statistics {
        switch self {
        case let .node(node): node.statistics
        case let .group(group): group.statistics.engine
        }
    }
}

/// SIGTERM ends the run early and cleanly: the node still drains, shuts down and prints its report.
enum Termination {
    static let requested = Atomic<Bool>(false)
    nonisolated(unsafe) private static var source: DispatchSourceSignal?

    static func install() {
        signal(SIGTERM, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
        source.setEventHandler { requested.store(true, ordering: .relaxed) }
        source.resume()
        Self.source = source
    }
}
