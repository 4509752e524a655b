internal import CRingCast
#if canImport(Glibc)
import Glibc
#endif

// Socket helpers of the control channel's thread (ControlLoop.swift).

// MARK: - Sockets

/// Small socket helpers over Glibc (each returns or throws the errno).
enum ControlTCP {
    static func describe(_ code: Int32) -> String { String(cString: strerror(code)) }

    /// A non-blocking, close-on-exec TCP socket for `address`'s family, with TCP_NODELAY.
    static func open(for address: rc_io_addr) -> (fd: Int32, errno: Int32) {
        let family = withUnsafeBytes(of: address.bytes) { $0.load(as: sa_family_t.self) }
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = Glibc.socket(Int32(family), type, 0)
        guard fd >= 0 else { return (-1, errno) }
        setNoDelay(fd)
        return (fd, 0)
    }

    /// Control frames are small and latency matters more than packet count (RFC 896's delay would stall a
    /// request behind the previous one's ACK).
    ///
    /// Also a small minimum retransmission timeout (TCP_RTO_MIN_US, Linux ≥ 6.15; ignored where unknown): a
    /// heartbeat dropped by a full switch queue would otherwise wait out Linux's 200 ms minimum RTO, which
    /// is as long as the failure detector's timeout — measured on the emulated 100 Mbit/s LAN at load, one
    /// such drop made a live member look silent. On a LAN the RTT is well below a millisecond.
    static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var rtoMinMicros: Int32 = Int32(rtoMinMicros)
        _ = setsockopt(fd, Int32(IPPROTO_TCP), tcpRTOMinMicros, &rtoMinMicros, socklen_t(MemoryLayout<Int32>.size))
    }

    /// include/uapi/linux/tcp.h: TCP_RTO_MIN_US (Debian 12's headers predate it).
    static let tcpRTOMinMicros: Int32 = 45
    static let rtoMinMicros = 5_000

    static func withSockaddr<R>(_ address: rc_io_addr, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafeBytes(of: address.bytes) { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.length))
        }
    }

    /// A listening socket with SO_REUSEADDR (a restarted member rebinds its port despite TIME_WAIT).
    /// - Throws: ``RingCastError/addressInUse(_:)``, ``RingCastError/system(call:errno:)``.
    static func listen(on address: Address, backlog: Int) throws(RingCastError) -> Int32 {
        let target = address.cAddress
        let (fd, openErrno) = open(for: target)
        guard fd >= 0 else { throw .system(call: "socket", errno: openErrno) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if withSockaddr(target, { Glibc.bind(fd, $0, $1) }) != 0 {
            let code = errno
            _ = Glibc.close(fd)
            if code == EADDRINUSE { throw .addressInUse(address) }
            throw .system(call: "bind", errno: code)
        }
        if Glibc.listen(fd, Int32(min(backlog, Int(SOMAXCONN)))) != 0 {
            let code = errno
            _ = Glibc.close(fd)
            throw .system(call: "listen", errno: code)
        }
        return fd
    }
}
