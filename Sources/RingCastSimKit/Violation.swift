internal import CRingCast

/// A property of uniform total order broadcast (thesis §2.4), or a simulator verdict about the run.
public enum Property: String, Sendable, Codable, CaseIterable {
    case validity
    case integrity
    case uniformAgreement = "uniform_agreement"
    case totalOrder = "total_order"
    /// Delivered before every process had received it (§2.4.2): a crash could then break agreement.
    case uniformity
    /// Out of steps, or no progress possible.
    case liveness
    /// A core rejected a frame a correct predecessor sent (-EPROTO).
    case `protocol`

    init?(_ property: rc_sim_property) {
        switch property {
        case RC_SIM_PROPERTY_VALIDITY: self = .validity
        case RC_SIM_PROPERTY_INTEGRITY: self = .integrity
        case RC_SIM_PROPERTY_AGREEMENT: self = .uniformAgreement
        case RC_SIM_PROPERTY_TOTAL_ORDER: self = .totalOrder
        case RC_SIM_PROPERTY_UNIFORMITY: self = .uniformity
        case RC_SIM_PROPERTY_LIVENESS: self = .liveness
        case RC_SIM_PROPERTY_PROTOCOL: self = .protocol
        default: return nil
        }
    }
}

/// The first violation a checker found, enough to explain it in one line.
public struct Violation: Sendable, Equatable, Codable, CustomStringConvertible {
    public var property: Property
    /// The process whose log (or run) shows the violation.
    public var process: Int
    /// The process it disagrees with (agreement, total order); equal to `process` otherwise.
    public var otherProcess: Int
    public var message: MessageID?
    /// Total order: the message ordered differently relative to `message`.
    public var otherMessage: MessageID?

    enum CodingKeys: String, CodingKey {
        case property, process, message
        case otherProcess = "other_process", otherMessage = "other_message"
    }

    init?(_ violation: rc_sim_violation) {
        guard let property = Property(violation.property) else { return nil }
        self.property = property
        self.process = Int(violation.process)
        self.otherProcess = Int(violation.other_process)
        self.message = MessageID(packed: violation.message)
        self.otherMessage = MessageID(packed: violation.other_message)
    }

    public var description: String {
        let message = self.message.map { " \($0)" } ?? ""
        switch property {
        case .totalOrder:
            let other = otherMessage.map { "\($0)" } ?? "?"
            return "total_order: p\(process) delivered \(other) before\(message), p\(otherProcess) did not"
        case .uniformAgreement:
            return "uniform_agreement: p\(otherProcess) delivered\(message), correct p\(process) did not"
        case .validity:
            return "validity: correct p\(process) never delivered its own\(message)"
        case .integrity:
            return "integrity: p\(process) delivered\(message) twice or without a broadcast"
        case .uniformity:
            return "uniformity: p\(process) delivered\(message) before every process had received it"
        case .liveness:
            return "liveness: the run stopped making progress before every broadcast was delivered"
        case .protocol:
            return "protocol: p\(process) rejected a frame from its correct predecessor (-EPROTO)"
        }
    }
}
