#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging
import RingCast

/// One client's connection at a replica: a reader thread (frames in) and a writer thread (replies out, every
/// reply queued since its last send written in one `send`).
///
/// Bounded: the client may have at most `windowMax` requests outstanding (received, reply not yet taken by the
/// writer); one more is a protocol violation and closes the connection. So the reply queue holds at most that many
/// frames, also when the client stops reading (the writer then blocks in `send`, and the replies stay outstanding).
/// The queue is one byte buffer the frames are encoded into (no array per reply), swapped with the sender's.
final class Connection: @unchecked Sendable {
    let fd: Int32
    let id: UInt64
    let windowMax: Int
    private let monitor = Monitor()
    /// The encoded frames waiting to be sent, and how many frames that is.
    private var outbound: [UInt8] = []
    private var outboundFrames = 0
    /// What the delivery thread is writing (``flushDeferred()``, while `writingInline`) and what the writer thread
    /// is writing: swapped with `outbound`, so each keeps its capacity.
    private var inlineBuffer: [UInt8] = []
    private var writerBuffer: [UInt8] = []
    private var outstanding = 0
    private var closing = false
    private var closed = false
    private var writerWaiting = false
    /// Replies in `outbound` (they still count in `outstanding`).
    private var outboundReplies = 0
    /// The delivery thread is writing what it took from `outbound` (``flushDeferred()``): the writer waits, so
    /// that bytes leave in the order they were queued.
    private var writingInline = false
    /// Frames were queued with `wake: false` since the last ``flushDeferred()``.
    private var deferred = false

    let cpu: CPUCounters

    init(fd: Int32, id: UInt64, windowMax: Int, cpu: CPUCounters) {
        self.cpu = cpu
        self.fd = fd
        self.id = id
        self.windowMax = windowMax
    }

    /// Counts `count` requests the client is owed replies for (the frames of one receive, one lock); returns how
    /// many fit its window: fewer than `count` means the client broke it.
    func admitRequests(_ count: Int) -> Int {
        monitor.withLock {
            let admitted = min(count, max(0, windowMax - outstanding))
            outstanding += admitted
            return admitted
        }
    }

    /// Queues a frame for the writer (never blocks: bounded by the window). With `wake: false` (the delivery
    /// thread, many replies per delivered batch) the writer is not woken: the caller calls ``flushDeferred()``
    /// once the batch is applied, and the result says whether this was the first deferred frame since then.
    @discardableResult
    func send(_ frame: ClientFrame, countsAsReply: Bool = true, wake: Bool = true) -> Bool {
        queue(countsAsReply: countsAsReply, wake: wake) { frame.encode(into: &$0) }
    }

    /// Queues the reply to `request` from a command's cached reply (``ClientFrame/appendReply(request:cached:to:)``:
    /// no decoding and re-encoding of the cached bytes); `wake` and the result as in ``send(_:countsAsReply:wake:)``.
    @discardableResult
    func sendReply(request: UInt64, cached: [UInt8], wake: Bool) -> Bool {
        queue(countsAsReply: true, wake: wake) { ClientFrame.appendReply(request: request, cached: cached, to: &$0) }
    }

    private func queue(countsAsReply: Bool, wake: Bool, _ append: (inout [UInt8]) -> Void) -> Bool {
        monitor.withLock {
            guard !closed, !closing else { return false }
            // + 3: an error frame, a welcome, and the unsent rest of an inline write.
            precondition(outboundFrames <= windowMax + 3, "a connection's reply queue outgrew its window")
            append(&outbound)
            outboundFrames += 1
            if countsAsReply { outboundReplies += 1 }
            if wake {
                if writerWaiting { monitor.broadcast() }
                return false
            }
            defer { deferred = true }
            return !deferred
        }
    }

    /// Writes the frames queued with `wake: false` on the calling thread, without blocking (`MSG_DONTWAIT`), when
    /// the writer is idle; what the socket does not take now goes to the writer. Saves a writer wake-up (two
    /// context switches) per connection per delivered batch: the obvious cost in a replica's profile after
    /// the syscalls themselves.
    func flushDeferred() {
        let taken: Bool = monitor.withLock {
            deferred = false
            guard !outbound.isEmpty else { return false }
            guard writerWaiting, !closed, !closing, !writingInline else {
                // The writer is busy (it takes these after its send) or the connection ends: the writer handles it.
                monitor.broadcast()
                return false
            }
            outstanding -= outboundReplies
            precondition(outstanding >= 0, "more replies than requests on a connection")
            outboundReplies = 0
            outboundFrames = 0
            writingInline = true
            inlineBuffer.removeAll(keepingCapacity: true)
            swap(&outbound, &inlineBuffer)
            return true
        }
        guard taken else { return }
        var offset = 0
        inlineBuffer.withUnsafeBytes { raw in
            while offset < raw.count {
                let sent = Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                if sent < 0 && errno == EINTR { continue }
                guard sent > 0 else { break }  // EAGAIN (full) or an error: the writer sends the rest or sees it
                offset += sent
            }
        }
        monitor.withLock {
            writingInline = false
            if offset < inlineBuffer.count {
                outbound.insert(contentsOf: inlineBuffer[offset...], at: 0)
                outboundFrames += 1
            }
            monitor.broadcast()
        }
    }

    /// Sends an error frame, then closes (malformed input, a broken window, too many clients).
    func fail(code: UInt8, message: String) {
        monitor.withLock {
            guard !closed, !closing else { return }
            ClientFrame.error(code: code, message: message).encode(into: &outbound)
            outboundFrames += 1
            closing = true
            monitor.broadcast()
        }
    }

    /// Closes both directions now (the reader and writer threads end).
    func close() {
        monitor.withLock {
            closed = true
            monitor.broadcast()
        }
        shutdown(fd, Int32(SHUT_RDWR))
    }

    func runWriter() {
        while true {
            let finish: Bool = monitor.withLock {
                while (outbound.isEmpty && !closed && !closing) || writingInline {
                    writerWaiting = true
                    monitor.wait()
                    writerWaiting = false
                }
                // Replies leave the window when the writer takes them (before the client can have them): until
                // then they count, so a client that does not read cannot make this queue grow.
                outstanding -= outboundReplies
                precondition(outstanding >= 0, "more replies than requests on a connection")
                outboundReplies = 0
                outboundFrames = 0
                writerBuffer.removeAll(keepingCapacity: true)
                swap(&outbound, &writerBuffer)
                return closed || closing
            }
            let started = threadCPUNanos()
            let sent = writerBuffer.isEmpty || Socket.sendAll(fd, writerBuffer)
            CPUCounters.charge(cpu.writerNanos, since: started)
            if !sent { break }
            if finish { break }
        }
        close()
    }
}

/// The replica's client port: a listener thread and, per connection, a reader and a writer thread.
final class ClientServer: @unchecked Sendable {
    let listenFD: Int32
    let port: UInt16
    let clientsMax: Int
    let frameBytesMax: Int
    let logger: Logger
    let handler: @Sendable ([ClientFrame], Connection) -> Void
    let onMalformed: @Sendable () -> Void
    let onRefused: @Sendable () -> Void
    private let monitor = Monitor()
    private var connections: [UInt64: Connection] = [:]
    private var nextID: UInt64 = 1
    private var stopping = false
    private var listener: Thread?
    private var stopPipe: (read: Int32, write: Int32) = (-1, -1)
    /// Requests a client may have outstanding on one connection (the session window).
    var windowMax = 128
    /// The client plane's handshake (set when the group's links are authenticated): run on the connection's
    /// reader thread before its first frame is read, so a silent or slow peer holds only its own thread, for at
    /// most the handshake timeout. Throws when the peer does not prove the cluster key.
    var authenticate: (@Sendable (Int32) throws(RingCastError) -> Void)?
    var onHandshake: @Sendable (_ accepted: Bool) -> Void = { _ in }
    var cpu = CPUCounters()
    /// Refusals (too many clients, failed handshakes) and malformed frames come from the network: their warnings are
    /// rate-limited, each kind on its own (``WarningRateLimit``); the statistics count every one.
    private let refusedWarnings = WarningRateLimit()
    private let handshakeWarnings = WarningRateLimit()
    private let malformedWarnings = WarningRateLimit()

    init(host: String, port: UInt16, clientsMax: Int, frameBytesMax: Int, logger: Logger,
         handler: @escaping @Sendable ([ClientFrame], Connection) -> Void,
         onMalformed: @escaping @Sendable () -> Void, onRefused: @escaping @Sendable () -> Void) throws(SMRError) {
        (listenFD, self.port) = try Socket.listen(host: host, port: port)
        self.clientsMax = clientsMax
        self.frameBytesMax = frameBytesMax
        self.logger = logger
        self.handler = handler
        self.onMalformed = onMalformed
        self.onRefused = onRefused
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw .system(call: "pipe", errno: errno) }
        stopPipe = (fds[0], fds[1])
    }

    deinit {
        Glibc.close(listenFD)
        Glibc.close(stopPipe.read)
        Glibc.close(stopPipe.write)
    }

    func start() throws(SMRError) {
        let thread = try Thread { [self] in acceptLoop() }
        monitor.withLock { listener = thread }
    }

    private func acceptLoop() {
        while true {
            var polls = [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0),
                         pollfd(fd: stopPipe.read, events: Int16(POLLIN), revents: 0)]
            let ready = polls.withUnsafeMutableBufferPointer { poll($0.baseAddress, 2, -1) }
            if ready < 0 && errno == EINTR { continue }
            if polls[1].revents != 0 || ready < 0 { return }
            let fd = accept(listenFD, nil, nil)
            guard fd >= 0 else { continue }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            Socket.setNoDelay(fd)
            let connection: Connection? = monitor.withLock {
                guard !stopping, connections.count < clientsMax else { return nil }
                defer { nextID += 1 }
                let connection = Connection(fd: fd, id: nextID, windowMax: windowMax, cpu: cpu)
                connections[nextID] = connection
                return connection
            }
            guard let connection else {
                _ = Socket.sendAll(fd, ClientFrame.error(code: 3, message: "too many clients (\(clientsMax))").encoded())
                Glibc.close(fd)
                onRefused()
                if let events = refusedWarnings.admit(nowNanos: monotonicNanos()) {
                    logger.warning("client refused: too many clients",
                                   metadata: ["clients_max": "\(clientsMax)", "refused_since_last_warning": "\(events)"])
                }
                continue
            }
            do {
                let writer = try Thread { connection.runWriter() }
                _ = try Thread { [self] in
                    runReader(connection)
                    writer.join()
                    Glibc.close(connection.fd)
                    monitor.withLock {
                        connections[connection.id] = nil
                        monitor.broadcast()
                    }
                }
            } catch {
                logger.error("cannot start a connection thread", metadata: ["error": "\(error)"])
                connection.close()
                Glibc.close(fd)
                monitor.withLock { _ = connections.removeValue(forKey: connection.id) }
            }
        }
    }

    private func runReader(_ connection: Connection) {
        defer { connection.close() }
        if let authenticate {
            do {
                try authenticate(connection.fd)
                onHandshake(true)
            } catch {
                // Nothing was read past the handshake: the peer's frames never reach the replica.
                onHandshake(false)
                if let events = handshakeWarnings.admit(nowNanos: monotonicNanos()) {
                    logger.warning("client link refused: handshake failed",
                                   metadata: ["connection": "\(connection.id)", "error": "\(error)",
                                              "refused_since_last_warning": "\(events)"])
                }
                return
            }
        }
        var assembler = FrameAssembler(frameBytesMax: frameBytesMax)
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        var frames: [ClientFrame] = []
        while true {
            let received = buffer.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, $0.count, 0) }
            if received < 0 && errno == EINTR { continue }
            guard received > 0 else { return }
            let started = threadCPUNanos()
            defer { CPUCounters.charge(cpu.ingestNanos, since: started) }
            buffer.withUnsafeBytes { assembler.append(UnsafeRawBufferPointer(rebasing: $0[0..<received])) }
            // Every frame of this receive is handed over at once: one window count and, for the commands among
            // them, one registration and one push to the broadcaster (locks per receive, not per request).
            frames.removeAll(keepingCapacity: true)
            var malformed: SMRCodecError?
            do {
                while let body = try assembler.next() { frames.append(try ClientFrame.decode(body)) }
            } catch {
                malformed = error
            }
            // Every request counts against the window, hello too: a client must not make the replica queue
            // replies faster than it reads them.
            let decoded = frames.count
            let admitted = decoded == 0 ? 0 : connection.admitRequests(decoded)
            if admitted < decoded { frames.removeSubrange(admitted...) }
            if !frames.isEmpty { handler(frames, connection) }
            if admitted < decoded {
                connection.fail(code: 4, message: "more than \(connection.windowMax) requests outstanding")
                onMalformed()
                return waitForWriter()
            }
            if let malformed {
                if let events = malformedWarnings.admit(nowNanos: monotonicNanos()) {
                    logger.warning("malformed client frame; closing that connection",
                                   metadata: ["connection": "\(connection.id)", "error": "\(malformed)",
                                              "malformed_since_last_warning": "\(events)"])
                }
                connection.fail(code: 1, message: "\(malformed)")
                onMalformed()
                return waitForWriter()
            }
        }
        // After `fail`, the writer sends the error frame and closes the socket; the deferred close follows.
        func waitForWriter() {
            var scratch = [UInt8](repeating: 0, count: 4096)
            while scratch.withUnsafeMutableBytes({ recv(connection.fd, $0.baseAddress, $0.count, 0) }) > 0 {}
        }
    }

    /// Closes the port and every connection; waits for their threads.
    func shutdown() {
        let (listener, all): (Thread?, [Connection]) = monitor.withLock {
            guard !stopping else { return (nil, []) }
            stopping = true
            defer { self.listener = nil }
            return (self.listener, Array(connections.values))
        }
        var byte: UInt8 = 1
        _ = write(stopPipe.write, &byte, 1)
        listener?.join()
        for connection in all { connection.close() }
        monitor.withLock {
            let deadline = monotonicNanos() + 5_000_000_000
            while !connections.isEmpty && monotonicNanos() < deadline { monitor.wait(untilNanos: deadline) }
        }
    }
}
