import CRingCast
import Glibc
import Testing

/// Whether this kernel lets us create a ring at all (containers may forbid io_uring).
let ioUringAvailable: Bool = {
    var settings = rc_io_settings()
    rc_io_settings_default(&settings)
    settings.conns_max = 1
    settings.recv_buffer_bytes = 1 << 16
    settings.recv_bytes_max = 1 << 16
    var io: OpaquePointer?
    guard rc_io_create(&io, &settings) == 0 else { return false }
    rc_io_destroy(io)
    return true
}()

func defaultSettings(_ adjust: (inout rc_io_settings) -> Void = { _ in }) -> rc_io_settings {
    var settings = rc_io_settings()
    rc_io_settings_default(&settings)
    adjust(&settings)
    return settings
}

func loopback(port: UInt16) -> rc_io_addr {
    var address = rc_io_addr()
    let rc = rc_io_addr_parse("127.0.0.1", port, &address)
    precondition(rc == 0)
    return address
}

/// One rc_io driven from the test thread, with its events collected per connection.
final class Harness {
    let io: OpaquePointer
    var events: [rc_io_event] = []
    private var buffer = [rc_io_event](repeating: rc_io_event(), count: 64)

    init(_ settings: rc_io_settings) throws {
        var settings = settings
        var io: OpaquePointer?
        let rc = rc_io_create(&io, &settings)
        try #require(rc == 0, "rc_io_create: \(rc)")
        self.io = try #require(io)
    }

    deinit { rc_io_destroy(io) }

    /// Waits for events until `done` holds or `seconds` pass; calls `handle` for each event.
    @discardableResult
    func pump(seconds: Double = 5, until done: () -> Bool, handle: (rc_io_event) -> Void = { _ in }) -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let deadline = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9 + seconds
        while !done() {
            clock_gettime(CLOCK_MONOTONIC, &now)
            if Double(now.tv_sec) + Double(now.tv_nsec) / 1e9 > deadline { return false }
            let count = buffer.withUnsafeMutableBufferPointer { rc_io_wait(io, $0.baseAddress, 64, 20_000_000) }
            precondition(count >= 0, "rc_io_wait: \(count)")
            for event in buffer.prefix(Int(count)) {
                events.append(event)
                handle(event)
            }
        }
        return true
    }

    /// Listens on an ephemeral loopback port, connects to it and returns (client id, accepted id).
    func connectedPair() throws -> (client: UInt32, server: UInt32) {
        var any = loopback(port: 0)
        let listener = rc_io_listen(io, &any, 8)
        try #require(listener >= 0, "listen: \(listener)")
        let port = rc_io_listen_port(io, UInt32(listener))
        try #require(port > 0)
        var address = loopback(port: UInt16(port))
        let client = rc_io_connect(io, &address)
        try #require(client >= 0)
        var server: UInt32?
        var connected = false
        pump(until: { server != nil && connected }) { event in
            if event.type == RC_IO_EVENT_ACCEPTED.rawValue { server = event.conn }
            if event.type == RC_IO_EVENT_CONNECTED.rawValue && event.conn == UInt32(client) { connected = true }
        }
        return (UInt32(client), try #require(server))
    }

    var stats: rc_io_stats { rc_io_stats_get(io) }

    /// Everything received and not consumed on `conn`.
    func received(_ conn: UInt32) -> UnsafeBufferPointer<UInt8> {
        var data: UnsafePointer<UInt8>?
        var bytes = 0
        let rc = rc_io_recv_peek(io, conn, &data, &bytes)
        precondition(rc == 0)
        return UnsafeBufferPointer(start: data, count: bytes)
    }
}

/// A plain, blocking TCP pair over loopback (for sockets whose options the test sets itself).
func plainSocketPair() throws -> (Int32, Int32) {
    let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(listener) }
    var address = loopback(port: 0)
    let bound = withUnsafeBytes(of: &address.bytes) { bind(listener, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.length)) }
    try #require(bound == 0 && listen(listener, 1) == 0)
    var length = socklen_t(address.length)
    _ = withUnsafeMutableBytes(of: &address.bytes) { getsockname(listener, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length) }
    let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    let connected = withUnsafeBytes(of: &address.bytes) { connect(client, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), length) }
    try #require(connected == 0)
    let server = accept(listener, nil, nil)
    try #require(server >= 0)
    return (client, server)
}
