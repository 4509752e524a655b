import RingCast

/// What the SMR layer throws.
public enum SMRError: Error, Sendable, CustomStringConvertible {
    /// A setting is out of range or inconsistent.
    case invalidConfiguration(String)
    /// The group underneath failed or refused (see the wrapped error).
    case group(RingCastError)
    case addressInUse(String)
    case connectionFailed(Address, errno: Int32)
    case system(call: String, errno: Int32)
    /// A snapshot could not be written or restored.
    case snapshot(SnapshotError)
    case alreadyStarted
    case shutdown

    public var description: String {
        switch self {
        case let .invalidConfiguration(reason): "invalid configuration: \(reason)"
        case let .group(error): "group: \(error)"
        case let .addressInUse(address): "address \(address) is already in use"
        case let .connectionFailed(address, code): "connecting to \(address) failed (errno \(code))"
        case let .system(call, code): "\(call) failed (errno \(code))"
        case let .snapshot(error): "\(error)"
        case .alreadyStarted: "the replica was already started"
        case .shutdown: "the replica is shut down"
        }
    }
}
