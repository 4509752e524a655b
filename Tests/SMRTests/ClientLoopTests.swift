import Logging
import RingCast
@testable import RingCastSMR
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What a stand-in handler of ``ClientLoopTests`` saw (a class: closures cannot capture a `Mutex` or an `Atomic`).
final class EchoCounts: Sendable {
    let handlerThreads = Mutex<Set<UInt>>([])
    let framesHandled = Atomic<Int>(0)
}

/// A client port whose handler answers each `statistics` request with `payloadBytes` bytes, records the threads it
/// ran on and counts the frames it saw.
final class EchoPort: Sendable {
    let server: ClientServer
    let counts = EchoCounts()

    init(payloadBytes: Int, windowMax: Int = 128) throws {
        let counts = counts
        let payload = [UInt8](repeating: 7, count: payloadBytes)
        server = try ClientServer(host: "127.0.0.1", port: 0, clientsMax: 256, frameBytesMax: 1 << 16,
                                  logger: Logger(label: "test.client-loop"),
                                  handler: { frames, connection in
                                      counts.handlerThreads.withLock { _ = $0.insert(UInt(pthread_self())) }
                                      counts.framesHandled.add(frames.count, ordering: .relaxed)
                                      for case let .statistics(request) in frames {
                                          connection.send(.reply(request: request, status: .ok, index: 0,
                                                                 payload: payload))
                                      }
                                  },
                                  onMalformed: {}, onRefused: {})
        server.windowMax = windowMax
        try server.start()
    }

    var framesHandled: Int { counts.framesHandled.load(ordering: .relaxed) }
    var handlerThreadCount: Int { counts.handlerThreads.withLock { $0.count } }
    var address: Address { get throws { try Address(host: "127.0.0.1", port: server.port) } }
}

/// The client port's event loop on its own (``ClientServer`` with a stand-in handler): many connections on one
/// thread, a stalled reader that holds nobody else, bounded buffers, and connections that end mid-frame.
@Suite struct ClientLoopTests {
    /// The loop's wake-up pipe never loses a wake-up: a `wake()` that lands inside `drain()` (between emptying the
    /// pipe and clearing the flag) leaves the next `wake()` able to write its byte. Before, `drain()` cleared the flag
    /// first; a `wake()` there left the flag set over an empty pipe, the next `wake()` wrote nothing, and a shutdown
    /// waited for the loop thread forever.
    @Test func wakeUpDuringDrain_nextWakeUpStillReachesTheLoop() throws {
        let signal = try ClientLoopSignal()
        signal.wake()
        signal.drain(midway: { signal.wake() })
        // The loop now looks at its state and polls again: the next wake-up must make the pipe readable.
        signal.wake()
        var poller = pollfd(fd: signal.readFD, events: Int16(POLLIN), revents: 0)
        #expect(poll(&poller, 1, 0) == 1, "a wake-up after a drain wrote no byte: the loop would sleep on")
    }

    static func requests(_ range: Range<Int>) -> [UInt8] {
        var writer = ByteWriter()
        for request in range { ClientFrame.statistics(request: UInt64(request)).encode(into: &writer) }
        return writer.bytes
    }

    /// Waits (bounded) until `condition` holds.
    static func eventually(_ seconds: Double = 10, _ condition: () -> Bool) -> Bool {
        let deadline = RingCastSMR.monotonicNanos() + UInt64(seconds * 1e9)
        while RingCastSMR.monotonicNanos() < deadline {
            if condition() { return true }
            usleep(2000)
        }
        return condition()
    }

    @Test func manyConnections_servedByOneThread_eachGetsItsOwnReplies() throws {
        let port = try EchoPort(payloadBytes: 16)
        defer { port.server.shutdown() }
        let address = try port.address
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        for _ in 0..<64 { fds.append(try Socket.connect(address, timeoutMillis: 2000)) }
        for (index, fd) in fds.enumerated() {
            #expect(Socket.sendAll(fd, Self.requests(index * 100..<index * 100 + 20)))
        }
        for (index, fd) in fds.enumerated() {
            let replies = readFrames(fd) { $0.count >= 20 }
            let requests = replies.compactMap { frame -> Int? in
                if case let .reply(request, .ok, _, payload) = frame, payload.count == 16 { return Int(request) }
                return nil
            }
            #expect(requests == Array(index * 100..<index * 100 + 20))
        }
        #expect(port.server.loopConnectionCount == 64)
        #expect(port.handlerThreadCount == 1)  // one loop thread for every connection
        #expect(port.framesHandled == 64 * 20)
    }

    @Test func stalledReader_holdsOnlyItsOwnReplies_andItsQueueStaysWithinTheWindow() throws {
        // 256 KiB replies: a window of them (16 MiB) is far more than the sockets hold, so the stalled connection's
        // socket fills and its replies wait in its bounded queue.
        let window = 64
        let port = try EchoPort(payloadBytes: 256 << 10, windowMax: window)
        defer { port.server.shutdown() }
        let address = try port.address
        let stalled = try Socket.connect(address, timeoutMillis: 2000)
        defer { close(stalled) }
        #expect(Socket.sendAll(stalled, Self.requests(0..<window)))
        #expect(Self.eventually { port.framesHandled == window })
        // Another client is served while the stalled one's replies wait.
        let other = try Socket.connect(address, timeoutMillis: 2000)
        defer { close(other) }
        for round in 0..<5 {
            #expect(Socket.sendAll(other, Self.requests(round * 10..<round * 10 + 10)))
            let replies = readFrames(other) { $0.count >= 10 }
            #expect(replies.count == 10)
        }
        // A reply counts in the window until its last byte is written: the stalled connection may not queue another
        // window's worth. Past it, the connection is refused (error code 4) after the replies it was owed.
        #expect(Socket.sendAll(stalled, Self.requests(1000..<1000 + window)))
        let drained = readFrames(stalled) { _ in false }
        let replies = drained.filter { if case .reply = $0 { true } else { false } }.count
        let errors = drained.compactMap { frame -> UInt8? in
            if case let .error(code, _) = frame { return code }
            return nil
        }
        #expect(replies >= window && replies < 2 * window)
        #expect(errors == [4])
        #expect(Self.eventually { port.server.loopConnectionCount == 1 })
    }

    @Test func connectionClosedMidFrame_isRetired_othersKeepWorking() throws {
        let port = try EchoPort(payloadBytes: 8)
        defer { port.server.shutdown() }
        let address = try port.address
        let kept = try Socket.connect(address, timeoutMillis: 2000)
        defer { close(kept) }
        for _ in 0..<8 {
            let fd = try Socket.connect(address, timeoutMillis: 2000)
            let frame = Self.requests(0..<1)
            // A whole frame, then the first half of the next, then the end of the connection.
            #expect(Socket.sendAll(fd, frame + Array(frame[0..<frame.count / 2])))
            #expect(readFrames(fd) { $0.count >= 1 }.count == 1)
            close(fd)
        }
        #expect(Self.eventually { port.server.loopConnectionCount == 1 })
        #expect(port.framesHandled == 8)  // no half frame reached the handler
        #expect(Socket.sendAll(kept, Self.requests(0..<3)))
        #expect(readFrames(kept) { $0.count >= 3 }.count == 3)
    }

    @Test func malformedFrame_getsAnErrorAndTheEnd_othersKeepWorking() throws {
        let port = try EchoPort(payloadBytes: 8)
        defer { port.server.shutdown() }
        let address = try port.address
        let bad = try Socket.connect(address, timeoutMillis: 2000)
        defer { close(bad) }
        let kept = try Socket.connect(address, timeoutMillis: 2000)
        defer { close(kept) }
        // A valid request, then a frame of an unknown kind.
        #expect(Socket.sendAll(bad, Self.requests(0..<1) + [2, 0, 0, 0, ClientFrame.version, 0x7f]))
        let frames = readFrames(bad) { _ in false }  // until the port closes it
        #expect(frames.count == 2)
        if case .error(1, _)? = frames.last {} else { Issue.record("no error frame: \(frames)") }
        #expect(Self.eventually { port.server.loopConnectionCount == 1 })
        #expect(Socket.sendAll(kept, Self.requests(0..<2)))
        #expect(readFrames(kept) { $0.count >= 2 }.count == 2)
    }

    @Test func shutdown_endsEveryConnection() throws {
        let port = try EchoPort(payloadBytes: 8)
        let address = try port.address
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        for _ in 0..<10 { fds.append(try Socket.connect(address, timeoutMillis: 2000)) }
        #expect(Self.eventually { port.server.loopConnectionCount == 10 })
        port.server.shutdown()
        #expect(port.server.loopConnectionCount == 0)
        for fd in fds {
            var byte: UInt8 = 0
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            #expect(recv(fd, &byte, 1, 0) <= 0)
        }
    }
}
