import RingCast
import RingCastLocalPorts
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `count` loopback ports for a test cluster (the first of `run` consecutive ones each), outside the kernel's
/// ephemeral range, never handed out twice in this process: see `LocalPorts`.
func freeLoopbackPorts(_ count: Int, run: Int = 1) -> [UInt16] {
    guard let ports = LocalPorts.free(count: count, run: run, pool: .tests) else {
        preconditionFailure("no \(count) runs of \(run) free loopback ports in \(LocalPorts.Pool.tests.range)")
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
