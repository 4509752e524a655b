@testable import RingCast
import RingCastKeys
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Support

/// One channel and everything it reported.
struct ControlMember {
    let peer: ControlPeer
    let address: Address
    let log: ControlEventLog
    let channel: ControlChannel

    /// A channel on `port`, or on a port the kernel just handed out (retried if someone took it meanwhile).
    init(node: UInt32, incarnation: UInt32 = 1, port: UInt16? = nil, limits: ControlChannel.Limits = .init(),
         security: Security = Security(),
         also: @escaping @Sendable (ControlChannel.Event) -> Void = { _ in }) throws {
        peer = ControlPeer(node: node, incarnation: incarnation)
        let log = ControlEventLog()
        self.log = log
        var attempt = 0
        while true {
            attempt += 1
            let address = try Address(host: "127.0.0.1", port: port ?? freeControlPort())
            do {
                let auth = security.isAuthenticated
                    ? security.authConfig(clusterName: "test", node: node, incarnation: incarnation) : nil
                channel = try ControlChannel(me: peer, listen: address, limits: limits, auth: auth) { event in
                    log.record(event)
                    also(event)
                }
                self.address = address
                return
            } catch {
                guard case .addressInUse = error, port == nil, attempt < 5 else { throw error }
            }
        }
    }
}

/// A channel's events, recorded on its thread and read by the test.
final class ControlEventLog: Sendable {
    private let events = Mutex<[ControlChannel.Event]>([])
    /// When each `.lost` arrived, on the channel's thread: a bound on detection is measured at the event, not when
    /// the test's task (which shares the pool with every other suite) next looks.
    private let lossInstants = Mutex<[(peer: ControlPeer, at: ContinuousClock.Instant)]>([])

    func record(_ event: ControlChannel.Event) {
        if case let .lost(peer, _) = event { lossInstants.withLock { $0.append((peer, ContinuousClock.now)) } }
        events.withLock { $0.append(event) }
    }

    /// When the first loss of `peer` arrived, if it did.
    func firstLoss(of peer: ControlPeer) -> ContinuousClock.Instant? {
        lossInstants.withLock { $0.first { $0.peer == peer }?.at }
    }

    func received(from peer: ControlPeer) -> [[UInt8]] {
        events.withLock { events in
            events.compactMap { event in
                if case let .received(from, bytes) = event, from == peer { return bytes }
                return nil
            }
        }
    }

    var receivedCount: Int {
        events.withLock { events in
            events.count { if case .received = $0 { true } else { false } }
        }
    }

    /// The reasons of the losses of `peer` (of any peer when nil), in order.
    func losses(of peer: ControlPeer? = nil) -> [String] {
        events.withLock { events in
            events.compactMap { event in
                if case let .lost(lost, reason) = event, peer == nil || lost == peer { return reason }
                return nil
            }
        }
    }
}

/// Polls `condition` every 2 ms until it holds or `seconds` pass (a broken channel fails the test, not hangs it).
func controlEventually(within seconds: Double = 10, _ condition: () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: .milliseconds(Int(seconds * 1000)))
    while clock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(2))
    }
    return condition()
}

/// Frame `index` from `source`: sizes from 0 bytes to 1 MiB, contents that differ per source and index.
func controlTestFrame(source: UInt32, index: Int) -> [UInt8] {
    let size: Int
    switch index {
    case 0: size = 0
    case _ where index % 100 == 50: size = 1 << 20
    case _ where index % 37 == 5: size = 65_536 + index
    default: size = (index &* 7919) % 3000
    }
    let seed = UInt32(truncatingIfNeeded: index) &* 2_654_435_761 ^ source &* 40503
    return [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
        var state = seed | 1
        for offset in 0..<size {
            state ^= state << 13
            state ^= state >> 17
            state ^= state << 5
            buffer[offset] = UInt8(truncatingIfNeeded: state)
        }
        initialized = size
    }
}

/// A loopback port that was free a moment ago (bound to 127.0.0.1:0, then closed).
func freeControlPort() -> UInt16 {
    let (fd, port) = try! RawControlTCP.listen(backlog: 1)
    Glibc.close(fd)
    return port
}

/// Plain blocking sockets for playing a misbehaving peer.
enum RawControlTCP {
    struct Failure: Error, CustomStringConvertible {
        var call: String
        var code: Int32
        var description: String { "\(call): \(String(cString: strerror(code)))" }
    }

    static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        return address
    }

    static func connect(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(call: "socket", code: errno) }
        var address = loopback(port: port)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            Glibc.close(fd)
            throw Failure(call: "connect", code: code)
        }
        return fd
    }

    /// A listener on 127.0.0.1 at `port` (0: a port the kernel picks).
    static func listen(backlog: Int32, port: UInt16 = 0) throws -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(call: "socket", code: errno) }
        var address = loopback(port: port)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard ok, Glibc.listen(fd, backlog) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw Failure(call: "bind/listen", code: code)
        }
        return (fd, UInt16(bigEndian: address.sin_port))
    }

    static func accept(_ listener: Int32, seconds: Double) throws -> Int32 {
        var poller = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, Int32(seconds * 1000)) == 1 else { throw Failure(call: "poll (accept)", code: ETIMEDOUT) }
        let fd = Glibc.accept(listener, nil, nil)
        guard fd >= 0 else { throw Failure(call: "accept", code: errno) }
        return fd
    }

    static func write(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { return } // the channel may already have closed it: that is what tests look for
            offset += count
        }
    }

    /// Reads (and discards) until the other side closes; true if it did within `seconds`.
    static func waitForClose(_ fd: Int32, seconds: Double) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .milliseconds(Int(seconds * 1000)))
        var scratch = [UInt8](repeating: 0, count: 4096)
        while clock.now < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 50) >= 0 else { return false }
            if poller.revents == 0 { continue }
            let count = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count == 0 || (count < 0 && errno != EAGAIN && errno != EINTR) { return true }
        }
        return false
    }
}
