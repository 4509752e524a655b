import Foundation
import RingCast
import ServiceLifecycle
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

/// SIGTERM in group mode: the ServiceGroup's graceful shutdown reaches this service first (services stop in reverse
/// order), which ends the run as ``Termination`` does for a static ring; then the `Group` service leaves the group.
struct TerminationService: Service {
    func run() async throws {
        do {
            try await gracefulShutdown()
            Termination.requested.store(true, ordering: .relaxed)
        } catch {
            // Cancelled: the run ended by itself and is stopping the services.
        }
    }
}

/// The member a run drives, once it exists, for the status endpoint's thread.
final class CurrentMember: Sendable {
    private let member = Mutex<Member?>(nil)
    var value: Member? {
        get { member.withLock { $0 } }
        set { member.withLock { $0 = newValue } }
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
