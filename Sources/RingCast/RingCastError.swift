internal import CRingCast
#if canImport(Glibc)
import Glibc
#endif

/// Everything that can go wrong while configuring, starting or running a ``Node``.
///
/// Operating errors are thrown (typed); programmer errors (using the API against its documented
/// preconditions) trap.
public enum RingCastError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A `host:port` string that does not parse (the host must be an IPv4/IPv6 literal or `localhost`).
    case invalidAddress(String, reason: String)
    /// A configuration value out of its documented range.
    case invalidConfiguration(String)
    /// Another socket already listens on this node's address (`EADDRINUSE`).
    case addressInUse(Address)
    /// The ring did not connect (successor and predecessor) within the connect timeout.
    case connectTimeout
    /// A system call failed: the call's name and the errno value.
    case system(call: String, errno: Int32)
    /// The engine stopped with an error (a lost connection, a malformed frame, …): its code and description.
    case engineFailed(code: Int32, message: String)
    /// A payload larger than the configured `batchBytesMax` (an LCR message must hold at least one).
    case payloadTooLarge(bytes: Int, limit: Int)
    /// `start()` was called twice, or after `shutdown()`.
    case alreadyStarted
    /// The operation needs a started node.
    case notStarted
    /// The node was shut down (a broadcast that was still waiting, or one that came later).
    case shutdown
    /// The waiting task was cancelled; a broadcast that throws this was not handed to the engine.
    case cancelled
    /// The group installed a view without this member while it was alive (quorum mode): it stopped delivering.
    case excluded
    /// A link's handshake failed (``Security/authenticateClientLink(socket:role:clusterName:selfID:)``): the peer
    /// does not hold the cluster key, runs another mode, or went silent. The connection must be closed.
    case authenticationFailed(String)

    public var description: String {
        switch self {
        case let .invalidAddress(text, reason): "invalid address '\(text)': \(reason)"
        case let .invalidConfiguration(reason): "invalid configuration: \(reason)"
        case let .addressInUse(address): "address \(address) is already in use"
        case .connectTimeout: "the ring did not connect within the connect timeout"
        case let .system(call, code): "\(call) failed: \(Self.describe(code: -code))"
        case let .engineFailed(code, message): "engine failed (\(code)): \(message)"
        case let .payloadTooLarge(bytes, limit): "payload of \(bytes) bytes exceeds batchBytesMax \(limit)"
        case .alreadyStarted: "the node was already started"
        case .notStarted: "the node is not started"
        case .shutdown: "the node is shut down"
        case .cancelled: "cancelled"
        case .excluded: "this member was excluded from the group (it may rejoin as a new incarnation)"
        case let .authenticationFailed(reason): "the link's handshake failed: \(reason)"
        }
    }

    /// The C library's description of a negative errno value or an `rc_wire_error`.
    static func describe(code: Int32) -> String {
        // rc_wire_error_string names the codec's errors (-1000…) and the few errno values the codec returns;
        // the engine also reports socket errors (-ECONNRESET, …), which strerror names.
        if code < 0 && code > -1000 {
            return String(cString: strerror(-code))
        }
        return String(cString: rc_wire_error_string(code))
    }

    /// Maps an engine error code (negative errno or wire error) to a typed error.
    static func engine(code: Int32) -> RingCastError {
        if code == -ETIMEDOUT { return .connectTimeout }
        return .engineFailed(code: code, message: describe(code: code))
    }
}
