import RingCast
@testable import RingCastSMR
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A stand-in replica on loopback that answers the handshake (hello, session opening) and then nothing: requests
/// stay in flight for as long as the test wants, so window limits are deterministic. With `answersCommands` it
/// answers each command at once with the count of commands so far (a counter, on threads of its own: no task).
final class SilentReplica: @unchecked Sendable {
    let listenFD: Int32
    let port: UInt16
    let answersCommands: Bool
    private let commands = Atomic<Int>(0)
    private var thread: Thread?

    init(answersCommands: Bool = false) throws {
        self.answersCommands = answersCommands
        (listenFD, port) = try Socket.listen(host: "127.0.0.1", port: 0)
        thread = try Thread { [self] in serve() }
    }

    /// Command frames received so far.
    var commandsReceived: Int { commands.load(ordering: .relaxed) }

    /// One connection at a time, until ``stop()``: a client that drops its connection after a timeout reconnects
    /// (and is welcomed) instead of waiting out its connect timeout on a listener nobody accepts from.
    private func serve() {
        while true {
            let fd = accept(listenFD, nil, nil)
            guard fd >= 0 else { return }
            serve(fd)
            close(fd)
        }
    }

    private func serve(_ fd: Int32) {
        var assembler = FrameAssembler(frameBytesMax: 1 << 20)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return }
            buffer.withUnsafeBytes { assembler.append(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            while let body = try? assembler.next(), let frame = try? ClientFrame.decode(body) {
                switch frame {
                case .hello:
                    _ = Socket.sendAll(fd, ClientFrame.welcome(replica: 0, windowMax: 128, appliedIndex: 0).encoded())
                case let .openSession(request):
                    var writer = ByteWriter()
                    writer.uint64(7)
                    _ = Socket.sendAll(fd, ClientFrame.reply(request: request, status: .ok, index: 7,
                                                             payload: writer.bytes).encoded())
                case let .command(request, _, _, _, _):
                    let count = commands.add(1, ordering: .relaxed).newValue
                    if answersCommands {
                        var writer = ByteWriter()
                        writer.int64(Int64(count))
                        _ = Socket.sendAll(fd, ClientFrame.reply(request: request, status: .ok, index: UInt64(7 + count),
                                                                 payload: writer.bytes).encoded())
                    }
                default:
                    break
                }
            }
        }
    }

    func stop() {
        shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
    }
}

/// What the completions of a test collect (a class: closures that escape cannot capture a `Mutex` itself).
final class Collected: Sendable {
    let outputs = Mutex<[Int64]>([])
    let failures = Mutex<[SMRClientError]>([])
    let reads = Atomic<Int>(0)
}

/// Reads frames from a raw connection until `done` says so or the peer closes (SO_RCVTIMEO bounds each wait).
func readFrames(_ fd: Int32, until done: ([ClientFrame]) -> Bool) -> [ClientFrame] {
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var assembler = FrameAssembler(frameBytesMax: 1 << 20)
    var buffer = [UInt8](repeating: 0, count: 65536)
    var frames: [ClientFrame] = []
    while !done(frames) {
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { break }
        buffer.withUnsafeBytes { assembler.append(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        while let body = try? assembler.next() {
            guard let frame = try? ClientFrame.decode(body) else { return frames }
            frames.append(frame)
        }
    }
    return frames
}

/// The client plane's batching: completions instead of a task per request, frames of one receive handled together
/// at the replica, replies appended from the session table's cached bytes.
@Suite(.serialized) struct ClientPlaneTests {
    @Test func replyFrame_appendedFromCachedReply_isTheReplyFrame() throws {
        let cached = ReplicaCore<Counter>.cachedReply(.alreadyAcknowledged, index: 42, output: [1, 2, 3])
        var bytes: [UInt8] = [9]  // appended after what is already there
        ClientFrame.appendReply(request: 77, cached: cached, to: &bytes)
        let expected = ClientFrame.reply(request: 77, status: .alreadyAcknowledged, index: 42, payload: [1, 2, 3])
        #expect(Array(bytes.dropFirst()) == expected.encoded())
        #expect(try ClientFrame.decode(bytes.dropFirst(5)) == expected)
        // Many frames into one buffer: each length prefix is its own.
        var writer = ByteWriter()
        ClientFrame.hello.encode(into: &writer)
        expected.encode(into: &writer)
        #expect(writer.bytes == ClientFrame.hello.encoded() + expected.encoded())
    }

    /// Closed loops on completions: each completion submits the next increment from the reader thread. Every
    /// increment is applied once with its own reply: the outputs are exactly 1…n.
    @Test func completions_closedLoopsOnOneClient_everyRequestAppliedOnceWithItsOwnReply() async throws {
        let cluster = try CounterCluster(size: 1)
        defer { cluster.shutdownAll() }
        let replica = try cluster.start(0, initialView: [0])
        try await replica.group.waitUntilRunning()
        let addresses = try cluster.clientAddresses([0])
        let loops = 8, perLoop = 100
        let collected = Collected()
        try await withDeadline(60) {
            var options = CounterClient.Options(replicas: addresses)
            options.windowMax = loops
            options.timeoutMillis = testTimeoutMillis
            let client = try await CounterClient.connect(options)
            defer { client.close() }
            let done = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(loops))
            final class Loop: @unchecked Sendable {
                var remaining: Int
                init(_ count: Int) { remaining = count }
            }
            @Sendable func step(_ loop: Loop) {
                guard loop.remaining > 0 else {
                    // One linearizable read per loop at its end, on a completion too.
                    do {
                        try client.read(Counter.Get()) { outcome in
                            if case .success = outcome { collected.reads.add(1, ordering: .relaxed) }
                            done.continuation.yield()
                        }
                    } catch {
                        collected.failures.withLock { $0.append(error) }
                        done.continuation.yield()
                    }
                    return
                }
                loop.remaining -= 1
                do {
                    try client.submit(Counter.Add(delta: 1)) { outcome in
                        switch outcome {
                        case let .success(committed): collected.outputs.withLock { $0.append(committed.output.value) }
                        case let .failure(error): collected.failures.withLock { $0.append(error) }
                        }
                        step(loop)
                    }
                } catch {
                    collected.failures.withLock { $0.append(error) }
                    done.continuation.yield()
                }
            }
            for _ in 0..<loops { step(Loop(perLoop)) }
            var finished = 0
            for await _ in done.stream {
                finished += 1
                if finished == loops { break }
            }
        }
        #expect(collected.failures.withLock { $0 }.isEmpty)
        #expect(collected.outputs.withLock { $0.sorted() } == (1...Int64(loops * perLoop)).map { $0 })
        #expect(collected.reads.load(ordering: .relaxed) == loops)
        #expect(replica.withMachine { $0.value } == Int64(loops * perLoop))
    }

    /// The non-waiting calls never queue beyond the window: one more than `windowMax` in flight throws `windowFull`
    /// (and sends nothing); closing the client calls every pending completion once with `closed`.
    @Test func completions_beyondTheWindow_windowFull_closeFinishesEachOnce() async throws {
        let silent = try SilentReplica()
        defer { silent.stop() }
        var options = CounterClient.Options(replicas: [try Address(host: "127.0.0.1", port: silent.port)])
        options.windowMax = 4
        options.timeoutMillis = 60_000
        let client = try await CounterClient.connect(options)
        let collected = Collected()
        for _ in 0..<4 {
            try client.submit(Counter.Add(delta: 1)) { outcome in
                if case let .failure(error) = outcome { collected.failures.withLock { $0.append(error) } }
            }
        }
        #expect(throws: SMRClientError.windowFull) {
            try client.submit(Counter.Add(delta: 1)) { _ in Issue.record("a refused call must not complete") }
        }
        #expect(throws: SMRClientError.windowFull) {
            try client.read(Counter.Get()) { _ in Issue.record("a refused call must not complete") }
        }
        let deadline = ContinuousClock.now.advanced(by: .seconds(10))
        while silent.commandsReceived < 4 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(silent.commandsReceived == 4)
        client.close()
        #expect(collected.failures.withLock { $0 } == [SMRClientError](repeating: .closed, count: 4))
        #expect(throws: SMRClientError.closed) { try client.submit(Counter.Add(delta: 1)) { _ in } }
    }

    /// Many requests in one `send`: the replica handles the frames of a receive together (one window count, one
    /// registration and one push for the commands) and answers each; a burst past the window closes only that
    /// connection, after the requests within it were answered.
    @Test func pipelinedFramesInOneSend_eachAnswered_burstPastTheWindowClosesOnlyThatConnection() async throws {
        let cluster = try CounterCluster(size: 1)
        defer { cluster.shutdownAll() }
        let replica = try cluster.start(0, initialView: [0])
        try await replica.group.waitUntilRunning()
        let address = try Address(host: "127.0.0.1", port: replica.clientPort)
        let fd = try Socket.connect(address, timeoutMillis: 1000)
        defer { close(fd) }
        #expect(Socket.sendAll(fd, ClientFrame.hello.encoded() + ClientFrame.openSession(request: 1).encoded()))
        let opening = readFrames(fd) { $0.count >= 2 }
        guard opening.count == 2, case let .reply(1, .ok, _, payload) = opening[1] else {
            Issue.record("no session: \(opening)")
            return
        }
        var reader = ByteReader(payload)
        let session = try reader.uint64()
        // 30 commands and a linearizable read after them, in one send.
        var writer = ByteWriter()
        for sequence in UInt64(1)...30 {
            var command = ByteWriter()
            Counter.Add(delta: 1).encode(into: &command)
            ClientFrame.command(request: 100 + sequence, session: session, sequence: sequence, firstUnacknowledged: 1,
                                command: command.bytes).encode(into: &writer)
        }
        ClientFrame.read(request: 200, consistency: .linearizable, minIndex: 0, query: []).encode(into: &writer)
        #expect(Socket.sendAll(fd, writer.bytes))
        let replies = readFrames(fd) { $0.count >= 31 }
        var values: [Int64] = []
        var readValue: Int64?
        for frame in replies {
            guard case let .reply(request, .ok, _, payload) = frame else {
                Issue.record("unexpected \(frame)")
                continue
            }
            var reader = ByteReader(payload)
            if request == 200 { readValue = try reader.int64() } else { values.append(try reader.int64()) }
        }
        #expect(values.sorted() == (1...30).map { $0 })
        #expect(readValue == 30)  // the barrier follows the 30 commands in the ring

        // Past the window in one burst (one segment on loopback, so one receive): those within the window are
        // answered, then an error frame (code 4), then the replica closes the connection.
        let window = replica.server.windowMax
        var burst = ByteWriter()
        for request in 0..<(3 * window) {
            ClientFrame.read(request: UInt64(1000 + request), consistency: .stale, minIndex: 0, query: []).encode(into: &burst)
        }
        #expect(Socket.sendAll(fd, burst.bytes))
        let answered = readFrames(fd) { _ in false }
        let errors = answered.compactMap { frame -> UInt8? in
            if case let .error(code, _) = frame { return code }
            return nil
        }
        #expect(errors == [4])
        #expect(answered.count <= window + 1)
        // The replica keeps serving others.
        try await withDeadline(20) {
            let client = try await CounterClient.connect(.init(replicas: [address]))
            defer { client.close() }
            #expect(try await client.submit(Counter.Add(delta: 1)).value == 31)
        }
    }

    /// A client that sends requests and never reads its replies holds only its own connection's bounded queue:
    /// another client's requests are answered meanwhile.
    @Test func clientThatNeverReads_doesNotBlockAnother() async throws {
        let cluster = try CounterCluster(size: 1)
        defer { cluster.shutdownAll() }
        let replica = try cluster.start(0, initialView: [0])
        try await replica.group.waitUntilRunning()
        let address = try Address(host: "127.0.0.1", port: replica.clientPort)
        let slow = try Socket.connect(address, timeoutMillis: 1000)
        defer { close(slow) }
        var writer = ByteWriter()
        for request in 0..<100 {
            ClientFrame.read(request: UInt64(request), consistency: .stale, minIndex: 0, query: []).encode(into: &writer)
        }
        #expect(Socket.sendAll(slow, writer.bytes))
        try await withDeadline(30) {
            let client = try await CounterClient.connect(.init(replicas: [address]))
            defer { client.close() }
            for round in 1...50 { #expect(try await client.submit(Counter.Add(delta: 1)).value == Int64(round)) }
        }
        #expect(replica.statistics.readsStale == 100)
    }
}
