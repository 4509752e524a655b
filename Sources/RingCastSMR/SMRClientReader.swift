#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import RingCast

/// The client's reader thread (SMRClient.swift): connecting and failing over to the next replica with the same
/// session, reading replies and completing their waiters in batches, and expiring requests at their timeout.
extension SMRClient {
    func runReader() {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        var assembler = FrameAssembler(frameBytesMax: options.frameBytesMax)
        var failedInARow = 0
        while !monitor.withLock({ closed }) {
            let current = monitor.withLock { fd }
            if current < 0 {
                if connectNext() {
                    failedInARow = 0
                    assembler = FrameAssembler(frameBytesMax: options.frameBytesMax)
                    sendPending()
                } else {
                    failedInARow += 1
                    if let reason = monitor.withLock({ handshakeFailuresInARow >= options.replicas.count ? handshakeFailure : nil }) {
                        // A key mismatch does not heal by waiting: fail what is waiting instead of timing out.
                        failAll(.unauthenticated(reason))
                    }
                    expireRequests(reason: failedInARow >= options.replicas.count ? "no replica answered" : nil)
                    if failedInARow % options.replicas.count == 0 { usleep(50_000) }
                }
                continue
            }
            // One `recv` per wake-up: the socket's receive timeout (``Self/receiveTimeout``, set by ``connectNext()``)
            // bounds the wait so deadlines are checked, without a `poll` per receive.
            let received = buffer.withUnsafeMutableBytes { recv(current, $0.baseAddress, $0.count, 0) }
            if received > 0 {
                buffer.withUnsafeBytes { assembler.append(UnsafeRawBufferPointer(rebasing: $0[0..<received])) }
                var malformed = false
                frames.removeAll(keepingCapacity: true)
                do {
                    while let body = try assembler.next() { frames.append(try ClientFrame.decode(body)) }
                } catch {
                    malformed = true
                }
                // The completions of this receive's replies queue their next requests; they leave in one send.
                handle(frames)
                if malformed {
                    dropConnection()
                    continue
                }
                sendQueued()
            } else if received == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
                dropConnection()
                continue
            } else if monitor.withLock({
                stats.readerIdleWakeUps += 1
                guard !sending && !outgoing.isEmpty else { return false }
                stats.sendsByReader += 1
                return true
            }) {
                // A receive timeout (20 ms without a reply) while requests wait and nobody sends them: the
                // cooperative pool has not run the send task (an application blocking the pool's threads; seen as
                // 5 s stalls in CI). The reader sends them; the task, when it runs, finds nothing left.
                sendQueued()
            }
            if expireRequests(reason: nil) { dropConnection() }
        }
    }

    /// Connects to the next replica and exchanges hello/welcome. False when it did not answer.
    func connectNext() -> Bool {
        let (address, attempt) = monitor.withLock { (options.replicas[replica], replica) }
        defer { monitor.withLock { if fd < 0 { replica = (attempt + 1) % options.replicas.count } } }
        guard let socket = try? Socket.connect(address, timeoutMillis: Int32(options.connectTimeoutMillis)) else {
            monitor.withLock { handshakeFailuresInARow = 0 }
            return false
        }
        do {
            try options.security.authenticateClientLink(socket: socket, role: .dialer, clusterName: options.clusterName,
                                                        selfID: 0)
            monitor.withLock { handshakeFailuresInARow = 0 }
        } catch {
            Glibc.close(socket)
            monitor.withLock {
                stats.handshakesFailed += 1
                handshakeFailuresInARow += 1
                handshakeFailure = "\(address): \(error)"
            }
            return false
        }
        var timeout = timeval(tv_sec: options.connectTimeoutMillis / 1000, tv_usec: (options.connectTimeoutMillis % 1000) * 1000)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard Socket.sendAll(socket, ClientFrame.hello.encoded()) else {
            Glibc.close(socket)
            return false
        }
        var assembler = FrameAssembler(frameBytesMax: 4096)
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            let received = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            guard received > 0 else {
                Glibc.close(socket)
                return false
            }
            buffer.withUnsafeBytes { assembler.append(UnsafeRawBufferPointer(rebasing: $0[0..<received])) }
            guard let body = try? assembler.next() else { continue }
            guard case .welcome? = try? ClientFrame.decode(body) else {
                Glibc.close(socket)
                return false
            }
            break
        }
        var wait = Self.receiveTimeout
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        monitor.withLock {
            fd = socket
            generation += 1
        }
        return true
    }

    func dropConnection() {
        sendMonitor.withLock {
            monitor.withLock {
                guard fd >= 0 else { return }
                Glibc.close(fd)
                fd = -1
                stats.failovers += 1
                replica = (replica + 1) % options.replicas.count
            }
        }
    }

    /// The frames of one receive: their requests leave the window under one lock, then their waiters are called
    /// (outside it; what they queue is sent once, after). A `notRunning` or `busy` reply (not served here: the
    /// request stays in flight and goes to another replica), an error frame (the replica closes after it) or any
    /// other frame drops the connection, once the replies of the receive are handed out.
    func handle(_ frames: [ClientFrame]) {
        var drop = false
        monitor.withLock {
            dispatching = true
            finished.removeAll(keepingCapacity: true)
            for frame in frames {
                guard case let .reply(request, status, index, payload) = frame,
                      status != .notRunning, status != .busy else {
                    drop = true
                    continue
                }
                seenIndex = max(seenIndex, index)
                if let waiting = removeInflightLocked(request) {
                    finished.append((waiting.waiter, (status, index, payload)))
                }
            }
        }
        for (waiter, reply) in finished { waiter.finish(.success(reply)) }
        finished.removeAll(keepingCapacity: true)
        monitor.withLock { dispatching = false }
        if drop { dropConnection() }
    }

    /// Fails every request in flight with `error` (every replica refused the handshake: waiting will not help).
    func failAll(_ error: SMRClientError) {
        let failed: [Inflight] = monitor.withLock {
            defer {
                inflight = [:]
                commandNumbers = []
            }
            return Array(inflight.values)
        }
        for request in failed { request.waiter.finish(.failure(error)) }
    }

    /// Fails requests past their deadline (or all, with `reason`). True when one timed out: the connection is then
    /// dropped (the replica still owes those replies, and a new connection starts with a clean window).
    @discardableResult
    func expireRequests(reason: String?) -> Bool {
        let now = monotonicNanos()
        guard now &- lastExpiryScan >= Self.expiryScanIntervalNanos else { return false }
        lastExpiryScan = now
        let expired: [Inflight] = monitor.withLock {
            var ids: [UInt64] = []
            for (id, request) in inflight where request.deadlineNanos <= now { ids.append(id) }
            guard !ids.isEmpty else { return [] }
            stats.timeouts += UInt64(ids.count)
            return ids.compactMap { removeInflightLocked($0) }
        }
        for request in expired { request.waiter.finish(.failure(.timeout)) }
        _ = reason
        return !expired.isEmpty
    }
}
