/// Why a simulation could not run (as opposed to a run whose checkers found a violation).
public enum SimError: Error, Equatable, CustomStringConvertible {
    /// The settings were refused; the message says which rule they break.
    case invalidSettings(String)
    /// The C simulator returned a negative errno.
    case simulatorFailed(operation: String, errno: Int32)

    public var description: String {
        switch self {
        case .invalidSettings(let message):
            return "invalid settings: \(message)"
        case .simulatorFailed(let operation, let errno):
            return "\(operation) failed with errno \(-errno)"
        }
    }
}
