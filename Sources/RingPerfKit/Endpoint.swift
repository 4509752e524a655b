internal import CRingCast

/// A `HOST:PORT` pair as typed on the command line: an IPv4 literal, `[IPv6]` literal or `localhost`.
///
/// Only literals are accepted (no DNS): the transport parses addresses without a resolver so that an
/// engine thread can never block on one, and the LAN tools address nodes by IP.
public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
    public let host: String
    public let port: UInt16

    /// Parses `HOST:PORT`, `[IPv6]:PORT` or `localhost:PORT`.
    /// - Parameter allowPortZero: a listener may ask for an ephemeral port; a client may not.
    /// - Throws: ``RingPerfError/badEndpoint(_:_:)`` with the reason.
    public static func parse(_ text: String, allowPortZero: Bool = false) throws(RingPerfError) -> Endpoint {
        guard let colon = text.lastIndex(of: ":") else {
            throw .badEndpoint(text, "expected HOST:PORT, e.g. 127.0.0.1:5201 or [::1]:5201")
        }
        var host = String(text[..<colon])
        let portText = text[text.index(after: colon)...]
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
        } else if host.contains(":") {
            throw .badEndpoint(text, "write IPv6 addresses in brackets, e.g. [::1]:5201")
        }
        guard let port = UInt16(portText), allowPortZero || port != 0 else {
            throw .badEndpoint(text, "port must be a number in 1...65535")
        }
        let endpoint = Endpoint(host: host, port: port)
        _ = try endpoint.address()
        return endpoint
    }

    init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// The parsed socket address (C `rc_io_addr`).
    func address() throws(RingPerfError) -> rc_io_addr {
        var address = rc_io_addr()
        let rc = rc_io_addr_parse(host, port, &address)
        guard rc == 0 else {
            throw .badEndpoint(description, "'\(host)' is not an IPv4/IPv6 literal or localhost")
        }
        return address
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
