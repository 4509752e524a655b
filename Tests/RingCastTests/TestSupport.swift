import RingCast
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Ports the kernel just handed out as free (bound to 127.0.0.1:0, then closed), so that parallel test
/// processes and other engineers' runs do not collide on fixed ports.
func freeLoopbackPorts(_ count: Int) -> [UInt16] {
    var sockets: [Int32] = []
    var ports: [UInt16] = []
    defer { for fd in sockets { close(fd) } }
    while ports.count < count {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(fd >= 0, "socket: \(errno)")
        sockets.append(fd)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                bind(fd, generic, length) == 0 && getsockname(fd, generic, &length) == 0
            }
        }
        precondition(bound, "bind: \(errno)")
        ports.append(UInt16(bigEndian: address.sin_port))
    }
    return ports
}

func loopbackMembers(_ count: Int) -> [String] {
    freeLoopbackPorts(count).map { "127.0.0.1:\($0)" }
}

/// Limits for tests: short connect timeout so that a broken test fails fast.
func testLimits(_ adjust: (inout Node.Limits) -> Void = { _ in }) -> Node.Limits {
    var limits = Node.Limits()
    limits.connectTimeoutMillis = 5_000
    adjust(&limits)
    return limits
}

/// Starts every node and waits until the ring is connected.
func startRing(_ nodes: [Node]) async throws {
    for node in nodes { try node.start() }
    for node in nodes { try await node.waitUntilRunning(timeout: .seconds(10)) }
}

/// Runs `body` with a deadline: a hung ring fails the test instead of hanging the suite.
func withDeadline<T: Sendable>(_ seconds: Double, _ what: String,
                               _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        guard let first = try await group.next(), let value = first else {
            group.cancelAll()
            Issue.record("\(what): no result within \(seconds) s")
            throw DeadlineExceeded()
        }
        group.cancelAll()
        return value
    }
}

struct DeadlineExceeded: Error {}

/// What a synchronous handler saw, per node (filled on the engine thread, read after shutdown).
struct Seen: Sendable, Equatable {
    var entries: [Entry] = []
    var tokens: [UInt64] = []
    var batches = 0

    struct Entry: Sendable, Equatable, Hashable {
        let origin: Int
        let originSeq: UInt64
        let viewId: UInt64
        let payloadHash: UInt64
        let length: Int
    }
}

func fnv1a(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash ^= UInt64(byte)
        hash = hash &* 0x0000_0100_0000_01b3
    }
    return hash
}

/// A payload that names its origin and sequence, `size` bytes long.
func testPayload(origin: Int, index: Int, size: Int) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: size)
    for i in 0..<size { bytes[i] = UInt8(truncatingIfNeeded: origin &* 131 &+ index &* 7 &+ i) }
    return bytes
}
