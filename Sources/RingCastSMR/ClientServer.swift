#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging
import RingCast

import Synchronization

/// The replica's client port: ONE event-loop thread for every connection (listener included). The loop polls the
/// sockets (non-blocking), reads every ready one once per round (a flooding client cannot starve the others), hands
/// the frames of one receive to the replica together, and writes what a receive's answers queued with one `send`.
/// Replies to commands are written by the delivery thread itself (``Connection/flushDeferred()``); the loop writes
/// only what a full socket left (`POLLOUT`). No write ever blocks the loop, so a client that stops reading holds
/// its own replies (bounded by its window), never the others'.
///
/// Two things block and so run on threads of their own, each bounded by `clientsMax`: the handshake of an
/// authenticated client link (a silent peer holds only its own thread, for at most the handshake timeout), and the
/// stream of a snapshot pull (paced, blocking writes of up to gigabytes; its wire behaviour is the same as before:
/// the request frame, then chunk frames and the end frame on that connection).
///
/// Why `poll` and not epoll: the Glibc module does not export epoll, and the set is small (≤ `clientsMax`, a few
/// per replica in the bench); the array is rebuilt per round without allocating.
final class ClientServer: @unchecked Sendable {
    let listenFD: Int32
    let port: UInt16
    let clientsMax: Int
    let frameBytesMax: Int
    let logger: Logger
    let handler: @Sendable ([ClientFrame], Connection) -> Void
    let onMalformed: @Sendable () -> Void
    let onRefused: @Sendable () -> Void
    private let signal: ClientLoopSignal
    private let monitor = Monitor()
    /// Every connection not retired yet (on the loop, in its handshake, or streaming a snapshot).
    private var connections: [UInt64: Connection] = [:]
    /// Connections to hand to the loop (after a handshake or a snapshot stream).
    private var arrivals: [Connection] = []
    private var nextID: UInt64 = 1
    private var stopping = false
    private var loopThread: Thread?
    /// Threads of their own (handshakes, snapshot streams) running now: shutdown waits for them.
    private var threadsRunning = 0
    /// Requests a client may have outstanding on one connection (the session window).
    var windowMax = 128
    /// The client plane's handshake (set when the group's links are authenticated): run on a thread of the
    /// connection's own before its first frame is read, so a silent or slow peer holds only that thread, for at
    /// most the handshake timeout. Throws when the peer does not prove the cluster key.
    var authenticate: (@Sendable (Int32) throws(RingCastError) -> Void)?
    var onHandshake: @Sendable (_ accepted: Bool) -> Void = { _ in }
    var cpu = CPUCounters()
    /// Refusals (too many clients, failed handshakes) and malformed frames come from the network: their warnings are
    /// rate-limited, each kind on its own (``WarningRateLimit``); the statistics count every one.
    private let refusedWarnings = WarningRateLimit()
    private let handshakeWarnings = WarningRateLimit()
    private let malformedWarnings = WarningRateLimit()

    // The loop's own state (the loop thread only).
    private var live: [Connection] = []
    private var polls: [pollfd] = []
    private var received: [UInt8] = []
    private var frames: [ClientFrame] = []
    /// One round in ``CPUCounters/sampleEvery`` is timed (``CPUCounters``).
    private var roundSampler = CPUCounters.Sampler()

    /// Connections on the loop now (tests: many connections share one thread).
    var loopConnectionCount: Int { monitor.withLock { connections.count } }

    init(host: String, port: UInt16, clientsMax: Int, frameBytesMax: Int, logger: Logger,
         handler: @escaping @Sendable ([ClientFrame], Connection) -> Void,
         onMalformed: @escaping @Sendable () -> Void, onRefused: @escaping @Sendable () -> Void) throws(SMRError) {
        signal = try ClientLoopSignal()
        (listenFD, self.port) = try Socket.listen(host: host, port: port)
        self.clientsMax = clientsMax
        self.frameBytesMax = frameBytesMax
        self.logger = logger
        self.handler = handler
        self.onMalformed = onMalformed
        self.onRefused = onRefused
        _ = fcntl(listenFD, F_SETFL, fcntl(listenFD, F_GETFL) | O_NONBLOCK)
    }

    deinit {
        Glibc.close(listenFD)
    }

    func start() throws(SMRError) {
        let thread = try Thread { [self] in runLoop() }
        monitor.withLock { loopThread = thread }
    }

    // MARK: The loop

    private func runLoop() {
        signal.loopThread.store(UInt(pthread_self()), ordering: .releasing)
        received = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            polls.removeAll(keepingCapacity: true)
            polls.append(pollfd(fd: signal.readFD, events: Int16(POLLIN), revents: 0))
            polls.append(pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0))
            for connection in live {
                let out = connection.wantsWritable.load(ordering: .acquiring) ? Int16(POLLOUT) : 0
                polls.append(pollfd(fd: connection.fd, events: Int16(POLLIN) | out, revents: 0))
            }
            let ready = polls.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), -1) }
            if ready < 0 {
                if errno == EINTR { continue }
                logger.error("the client port's poll failed; closing the port", metadata: ["errno": "\(errno)"])
                break
            }
            // Thread CPU time of one round in CPUCounters.sampleEvery (a syscall each: never per frame), charged
            // with that weight; the POLLOUT writes apart, timed every time (rare: a client that reads slowly).
            let weight = roundSampler.next()
            var mark = weight > 0 ? threadCPUNanos() : 0
            if polls[0].revents != 0 {
                signal.drain()
                let (stop, arrived): (Bool, [Connection]) = monitor.withLock {
                    defer { arrivals.removeAll(keepingCapacity: true) }
                    return (stopping, arrivals)
                }
                if stop {
                    for connection in arrived { retireFromThread(connection) }
                    if weight > 0 { CPUCounters.charge(cpu.ingestNanos, since: mark, weight: weight) }
                    break
                }
                for connection in arrived {
                    owned.insert(ObjectIdentifier(connection))
                    live.append(connection)
                    connection.discarding = connection.isEnding  // a failed stream: only its error frame remains
                    connection.flush()  // what was queued while it was away (an error frame)
                }
            }
            if polls[1].revents != 0 { acceptReady() }
            // `live` may have grown (arrivals, accepts) past what was polled: polls[2...] are its first entries.
            var retired = false
            for index in 2..<polls.count {
                let events = polls[index].revents
                guard events != 0 else { continue }
                let connection = live[index - 2]
                if events & Int16(POLLOUT) != 0 {
                    connection.wantsWritable.store(false, ordering: .releasing)
                    let writeStarted = weight > 0 ? CPUCounters.charge(cpu.ingestNanos, since: mark, weight: weight)
                        : threadCPUNanos()
                    connection.flush()
                    mark = CPUCounters.charge(cpu.writerNanos, since: writeStarted)
                }
                if events & Int16(POLLIN | POLLHUP | POLLERR | POLLNVAL) != 0 {
                    switch readReady(connection) {
                    case .keep: break
                    case .retire:
                        retire(connection)
                        retired = true
                    case .detached:
                        retired = true
                    }
                }
            }
            if retired { live.removeAll { !isLive($0) } }
            if weight > 0 { CPUCounters.charge(cpu.ingestNanos, since: mark, weight: weight) }
        }
        for connection in live { retire(connection) }
        live.removeAll()
    }

    /// Connections the loop still owns (not retired, not handed to a thread of their own).
    private var owned: Set<ObjectIdentifier> = []
    private func isLive(_ connection: Connection) -> Bool { owned.contains(ObjectIdentifier(connection)) }

    private func acceptReady() {
        while true {
            let fd = accept(listenFD, nil, nil)
            guard fd >= 0 else {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return  // EAGAIN: no more; EMFILE and the like: the next round tries again
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            Socket.setNoDelay(fd)
            let connection: Connection? = monitor.withLock {
                guard !stopping, connections.count < clientsMax else { return nil }
                defer { nextID += 1 }
                let connection = Connection(fd: fd, id: nextID, windowMax: windowMax, frameBytesMax: frameBytesMax,
                                            cpu: cpu, signal: signal)
                connections[nextID] = connection
                return connection
            }
            guard let connection else {
                let refusal = ClientFrame.error(code: ClientErrorCode.tooManyClients.rawValue, message: "too many clients (\(clientsMax))").encoded()
                _ = refusal.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                Glibc.close(fd)
                onRefused()
                if let events = refusedWarnings.admit(nowNanos: monotonicNanos()) {
                    logger.warning("client refused: too many clients",
                                   metadata: ["clients_max": "\(clientsMax)", "refused_since_last_warning": "\(events)"])
                }
                continue
            }
            if authenticate != nil {
                // Blocking handshake on a thread of its own; the loop gets the connection after it.
                if !runOnOwnThread(connection, { [self] in handshake(connection) }) { retire(connection) }
                continue
            }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            owned.insert(ObjectIdentifier(connection))
            live.append(connection)
        }
    }

    private enum ReadOutcome { case keep, retire, detached }

    /// One receive from a ready connection (one per round: every ready client gets its turn), its frames handed to
    /// the replica together (one window count, one registration and one push for the commands among them), then
    /// what their answers queued written with one `send`.
    private func readReady(_ connection: Connection) -> ReadOutcome {
        let count = received.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return .keep }
        guard count > 0 else { return .retire }
        // After a failure the error frame is on its way and the client's further bytes are dropped until it closes.
        if connection.discarding { return .keep }
        received.withUnsafeBytes { connection.assembler.append(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        frames.removeAll(keepingCapacity: true)
        var malformed: SMRCodecError?
        do {
            while let body = try connection.assembler.next() { frames.append(try ClientFrame.decode(body)) }
        } catch {
            malformed = error
        }
        // Every request counts against the window, hello too: a client must not make the replica queue replies
        // faster than it reads them.
        let decoded = frames.count
        let admitted = decoded == 0 ? 0 : connection.admitRequests(decoded)
        if admitted < decoded { frames.removeSubrange(admitted...) }
        // A snapshot pull and a learner's feed (LearnerFeed.swift, which lasts until the learner hangs up) stream
        // with blocking writes: the request and what follows it go to a thread of their own.
        var pull: [ClientFrame] = []
        if let at = frames.firstIndex(where: {
            switch $0 {
            case .snapshotRequest, .learnRequest, .learnRequestFeedApart, .learnFeed: true
            default: false
            }
        }) {
            pull = Array(frames[at...])
            frames.removeSubrange(at...)
        }
        if !frames.isEmpty { handler(frames, connection) }
        if admitted < decoded {
            connection.fail(code: ClientErrorCode.windowExceeded.rawValue, message: "more than \(connection.windowMax) requests outstanding")
            onMalformed()
            connection.discarding = true
        } else if let malformed {
            if let events = malformedWarnings.admit(nowNanos: monotonicNanos()) {
                logger.warning("malformed client frame; closing that connection",
                               metadata: ["connection": "\(connection.id)", "error": "\(malformed)",
                                          "malformed_since_last_warning": "\(events)"])
            }
            connection.fail(code: ClientErrorCode.malformedFrame.rawValue, message: "\(malformed)")
            onMalformed()
            connection.discarding = true
        } else if connection.isEnding {
            connection.discarding = true  // the replica failed it (a command too large, a refused transfer)
        }
        // A failed connection serves no pull (a joiner never sends more than its request).
        if !pull.isEmpty && !connection.discarding {
            owned.remove(ObjectIdentifier(connection))
            connection.detach()
            let frames = pull
            if runOnOwnThread(connection, { [self] in
                handler(frames, connection)
                reattach(connection)
            }) {
                return .detached
            }
            connection.attach()
            owned.insert(ObjectIdentifier(connection))
            connection.fail(code: ClientErrorCode.snapshotRefused.rawValue, message: "cannot start the snapshot stream's thread")
        }
        connection.flush()
        return .keep
    }

    /// The handshake of an authenticated link, on the connection's own thread; then the loop gets it.
    private func handshake(_ connection: Connection) {
        guard let authenticate else { return reattach(connection) }
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
            return retireFromThread(connection)
        }
        reattach(connection)
    }

    /// Runs `body` on a new detached thread, counted for shutdown; false when no thread could start.
    private func runOnOwnThread(_ connection: Connection, _ body: @escaping @Sendable () -> Void) -> Bool {
        monitor.withLock { threadsRunning += 1 }
        do {
            let thread = try Thread { [self] in
                body()
                monitor.withLock {
                    threadsRunning -= 1
                    monitor.broadcast()
                }
            }
            thread.detach()
            return true
        } catch {
            logger.error("cannot start a connection thread", metadata: ["error": "\(error)"])
            monitor.withLock { threadsRunning -= 1 }
            return false
        }
    }

    /// A connection's own thread is done with it: back to the loop (non-blocking), or retired when the port stops.
    private func reattach(_ connection: Connection) {
        connection.attach()
        let accepted: Bool = monitor.withLock {
            guard !stopping else { return false }
            arrivals.append(connection)
            return true
        }
        guard accepted else { return retireFromThread(connection) }
        signal.wake()
    }

    /// Retires a connection the loop owns.
    private func retire(_ connection: Connection) {
        owned.remove(ObjectIdentifier(connection))
        retireFromThread(connection)
    }

    private func retireFromThread(_ connection: Connection) {
        connection.releaseDescriptor()
        monitor.withLock {
            connections[connection.id] = nil
            monitor.broadcast()
        }
    }

    /// Closes the port and every connection; waits for the loop and the connections' own threads.
    func shutdown() {
        let (loop, all): (Thread?, [Connection]) = monitor.withLock {
            guard !stopping else { return (nil, []) }
            stopping = true
            defer { loopThread = nil }
            return (loopThread, Array(connections.values))
        }
        signal.wake()
        // Blocked handshakes and snapshot streams fail at once.
        for connection in all { connection.close() }
        loop?.join()
        let stranded: [Connection] = monitor.withLock {
            defer { arrivals.removeAll() }
            return arrivals
        }
        for connection in stranded { retireFromThread(connection) }
        monitor.withLock {
            let deadline = monotonicNanos() + 5_000_000_000
            while (!connections.isEmpty || threadsRunning > 0) && monotonicNanos() < deadline {
                monitor.wait(untilNanos: deadline)
            }
        }
    }
}
