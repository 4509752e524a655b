import Glibc
internal import CRingCast

/// A point in time on the monotonic clock; every blocking step of ringperf waits until one.
struct Deadline: Sendable {
    let nanoseconds: Int64

    static func now() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }

    static func after(seconds: Double) -> Deadline {
        Deadline(nanoseconds: now() + Int64(seconds * 1e9))
    }

    /// Milliseconds left, at least 0, at most `cap` (poll's unit).
    func remainingMilliseconds(cap: Int64 = 200) -> Int32 {
        let left = (nanoseconds - Deadline.now()) / 1_000_000
        return Int32(max(0, min(left, cap)))
    }

    var remainingNanoseconds: Int64 { max(0, nanoseconds - Deadline.now()) }

    /// The earlier of this deadline and `other`.
    func capped(by other: Deadline?) -> Deadline {
        guard let other, other.nanoseconds < nanoseconds else { return self }
        return other
    }
    var expired: Bool { Deadline.now() >= nanoseconds }
}

/// A plain TCP socket for the control connection (blocking semantics, but every call has a deadline:
/// the socket is non-blocking and waits in `poll`). Owns its descriptor.
struct ControlSocket: ~Copyable {
    private(set) var fd: Int32
    private var buffer: [UInt8] = []
    let peer: String

    private init(fd: Int32, peer: String) {
        self.fd = fd
        self.peer = peer
    }

    /// Takes ownership of a descriptor handed over with ``take()`` (e.g. to another thread).
    init(adopting fd: Int32, peer: String) {
        self.init(fd: fd, peer: peer)
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    /// Gives the descriptor away (to the C data phase, which closes it).
    consuming func take() -> Int32 {
        let taken = fd
        fd = -1
        return taken
    }

    private static func open(_ address: rc_io_addr) throws(RingPerfError) -> Int32 {
        let family = withUnsafeBytes(of: address.bytes) { $0.load(as: sa_family_t.self) }
        let fd = socket(Int32(family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system("socket", errno) }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return fd
    }

    private static func withSockaddr<R>(_ address: rc_io_addr, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafeBytes(of: address.bytes) { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.length))
        }
    }

    /// Connects before `deadline`. Throws refused / unreachable / timed out with the endpoint named.
    static func connect(to endpoint: Endpoint, deadline: Deadline) throws(RingPerfError) -> ControlSocket {
        let address = try endpoint.address()
        let fd = try open(address)
        var socket = ControlSocket(fd: fd, peer: endpoint.description)
        let rc = withSockaddr(address) { Glibc.connect(fd, $0, $1) }
        if rc < 0 && errno != EINPROGRESS {
            throw RingPerfError.fromErrno(errno, endpoint: endpoint.description, call: "connect")
        }
        try socket.wait(for: Int16(POLLOUT), deadline: deadline, phase: "connecting to \(endpoint)")
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        if error != 0 { throw RingPerfError.fromErrno(error, endpoint: endpoint.description, call: "connect") }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        socket.buffer.reserveCapacity(512)
        return socket
    }

    /// Listens on `endpoint` with SO_REUSEADDR. Throws ``RingPerfError/addressInUse(_:)`` when taken.
    static func listen(on endpoint: Endpoint) throws(RingPerfError) -> ControlSocket {
        let address = try endpoint.address()
        let fd = try open(address)
        let socket = ControlSocket(fd: fd, peer: endpoint.description)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if withSockaddr(address, { bind(fd, $0, $1) }) < 0 {
            throw RingPerfError.fromErrno(errno, endpoint: endpoint.description, call: "bind")
        }
        if Glibc.listen(fd, 16) < 0 { throw .system("listen", errno) }
        return socket
    }

    /// The local port (after listening on port 0).
    var localPort: UInt16 {
        var address = rc_io_addr()
        var length = socklen_t(MemoryLayout.size(ofValue: address.bytes))
        withUnsafeMutableBytes(of: &address.bytes) { raw in
            _ = getsockname(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
        }
        address.length = UInt32(length)
        return rc_io_addr_port(&address)
    }

    /// Accepts one connection before `deadline`; nil when the deadline passed first.
    func accept(until deadline: Deadline) throws(RingPerfError) -> ControlSocket? {
        while !deadline.expired {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&entry, 1, deadline.remainingMilliseconds())
            if ready < 0 && errno != EINTR { throw .system("poll", errno) }
            if ready <= 0 { continue }
            let accepted = Glibc.accept(fd, nil, nil)
            if accepted < 0 {
                if errno == EAGAIN || errno == EINTR || errno == ECONNABORTED { continue }
                throw .system("accept", errno)
            }
            _ = fcntl(accepted, F_SETFD, FD_CLOEXEC)
            _ = fcntl(accepted, F_SETFL, fcntl(accepted, F_GETFL) | O_NONBLOCK)
            return ControlSocket(fd: accepted, peer: "peer")
        }
        return nil
    }

    private func wait(for events: Int16, deadline: Deadline, phase: String) throws(RingPerfError) {
        while true {
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let ready = poll(&entry, 1, deadline.remainingMilliseconds())
            if ready > 0 { return }
            if ready < 0 && errno != EINTR { throw .system("poll", errno) }
            if deadline.expired { throw .timedOut(phase) }
        }
    }

    /// Sends one text line (a newline is appended).
    func send(line: String, deadline: Deadline) throws(RingPerfError) {
        var bytes = Array((line + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeMutableBytes { raw in
                Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if sent > 0 {
                offset += sent
            } else if sent < 0 && (errno == EAGAIN || errno == EINTR) {
                try wait(for: Int16(POLLOUT), deadline: deadline, phase: "sending to \(peer)")
            } else {
                throw .system("send to \(peer)", errno)
            }
        }
    }

    /// Reads one line (without its newline) before `deadline`; lines are capped at 4 KiB.
    mutating func readLine(deadline: Deadline, phase: String) throws(RingPerfError) -> String {
        var chunk = [UInt8](repeating: 0, count: 512)
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            if buffer.count > 4096 { throw .protocolViolation("line longer than 4 KiB from \(peer)") }
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if count > 0 {
                buffer.append(contentsOf: chunk[..<count])
            } else if count == 0 {
                throw .protocolViolation("\(peer) closed the control connection while \(phase)")
            } else if errno == EAGAIN || errno == EINTR {
                try wait(for: Int16(POLLIN), deadline: deadline, phase: phase)
            } else {
                throw .system("recv from \(peer)", errno)
            }
        }
    }
}
