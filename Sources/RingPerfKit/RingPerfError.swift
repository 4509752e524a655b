import Glibc

/// Everything that can go wrong operating ringperf, each with a message a person can act on.
public enum RingPerfError: Error, Equatable, CustomStringConvertible {
    case badEndpoint(String, String)
    case badArgument(String)
    case refused(String)
    case unreachable(String, String)
    case addressInUse(String)
    case timedOut(String)
    case protocolViolation(String)
    case system(String, Int32)
    case dataPhase(String, Int32)
    case verification(String)

    public var description: String {
        switch self {
        case .badEndpoint(let text, let reason): "bad address '\(text)': \(reason)"
        case .badArgument(let reason): reason
        case .refused(let endpoint): "connection to \(endpoint) refused (is `ringperf server` running there?)"
        case .unreachable(let endpoint, let reason): "\(endpoint) unreachable: \(reason)"
        case .addressInUse(let endpoint): "cannot listen on \(endpoint): address already in use"
        case .timedOut(let phase): "timed out: \(phase)"
        case .protocolViolation(let detail): "control protocol error: \(detail)"
        case .system(let call, let code): "\(call) failed: \(Self.message(code))"
        case .dataPhase(let phase, let code): "\(phase): \(Self.message(code))"
        case .verification(let detail): "data verification failed: \(detail)"
        }
    }

    /// strerror text for a positive or negative errno value.
    static func message(_ code: Int32) -> String {
        let positive = code < 0 ? -code : code
        return "\(String(cString: strerror(positive))) (errno \(positive))"
    }

    /// Maps a connect/listen errno to the matching case.
    static func fromErrno(_ code: Int32, endpoint: String, call: String) -> RingPerfError {
        switch code < 0 ? -code : code {
        case ECONNREFUSED: .refused(endpoint)
        case ENETUNREACH, EHOSTUNREACH: .unreachable(endpoint, message(code))
        case ETIMEDOUT: .timedOut("\(call) \(endpoint)")
        case EADDRINUSE: .addressInUse(endpoint)
        case EADDRNOTAVAIL: .unreachable(endpoint, "address not available on this host")
        default: .system("\(call) \(endpoint)", code)
        }
    }
}
