internal import CRingCast

/// A node's `host:port` address: an IPv4 or IPv6 literal (IPv6 in brackets: `[::1]:7000`) or `localhost`.
///
/// Parsed and validated once, at construction, by the same parser the engine uses (`rc_io_addr_parse`).
public struct Address: Sendable, Hashable, CustomStringConvertible {
    /// The host part as written (without IPv6 brackets).
    public let host: String
    /// The TCP port, 1...65535 (0 is refused: a ring member must be reachable at a known port).
    public let port: UInt16

    /// Parses `host:port`.
    /// - Throws: ``RingCastError/invalidAddress(_:reason:)`` when the text is not a literal address with a port.
    public init(_ text: String) throws(RingCastError) {
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw .invalidAddress(text, reason: "missing ']' after an IPv6 host")
            }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw .invalidAddress(text, reason: "expected ':PORT' after ']'") }
            portPart = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw .invalidAddress(text, reason: "expected HOST:PORT")
            }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            if hostPart.contains(":") {
                throw .invalidAddress(text, reason: "write IPv6 hosts in brackets: [HOST]:PORT")
            }
        }
        guard let port = UInt16(portPart) else {
            throw .invalidAddress(text, reason: "port '\(portPart)' is not a number in 1...65535")
        }
        try self.init(host: String(hostPart), port: port, text: text)
    }

    /// Validates a host literal and a port.
    /// - Throws: ``RingCastError/invalidAddress(_:reason:)``.
    public init(host: String, port: UInt16) throws(RingCastError) {
        try self.init(host: host, port: port, text: host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)")
    }

    private init(host: String, port: UInt16, text: String) throws(RingCastError) {
        guard port != 0 else { throw .invalidAddress(text, reason: "port 0 is not a reachable port") }
        guard !host.isEmpty else { throw .invalidAddress(text, reason: "empty host") }
        var parsed = rc_io_addr()
        guard rc_io_addr_parse(host, port, &parsed) == 0 else {
            throw .invalidAddress(text, reason: "host '\(host)' is not an IPv4/IPv6 literal or localhost")
        }
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// The engine's parsed form (valid: checked at construction).
    var cAddress: rc_io_addr {
        var parsed = rc_io_addr()
        let result = rc_io_addr_parse(host, port, &parsed)
        precondition(result == 0, "an Address is validated at construction")
        return parsed
    }
}
