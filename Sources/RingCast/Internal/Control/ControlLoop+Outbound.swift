internal import CRingCast
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// The connections this member dials to its peers (ControlLoop.swift): connect, handshake, flush, loss.

extension ControlLoop {
    // MARK: Outgoing connections

    /// Starts a non-blocking connect to `address` for the slot's `epoch`, hello first in the write buffer.
    func dial(_ peer: ControlPeer, address: Address, epoch: UInt64) {
        let target = address.cAddress
        let (fd, openErrno) = ControlTCP.open(for: target)
        guard fd >= 0 else {
            lose(peer, epoch: epoch, reason: "socket: \(ControlTCP.describe(openErrno))")
            return
        }
        let result = ControlTCP.withSockaddr(target) { Glibc.connect(fd, $0, $1) }
        let connectErrno = result == 0 ? 0 : errno
        guard result == 0 || connectErrno == EINPROGRESS else {
            _ = Glibc.close(fd)
            lose(peer, epoch: epoch, reason: "connect to \(address): \(ControlTCP.describe(connectErrno))")
            return
        }
        // Authenticated: the handshake's HELLO goes first, the channel's hello once the peer proved the key.
        var auth: ControlAuth?
        if let config = core.auth {
            do {
                auth = try ControlAuth(config: config, initiator: true, expectNode: peer.node)
            } catch {
                _ = Glibc.close(fd)
                lose(peer, epoch: epoch, reason: "authentication: \(error)")
                return
            }
        }
        let connection = Outbound(peer: peer, address: address, epoch: epoch, fd: fd, connecting: result != 0,
                                  deadlineNanos: monotonicNanos() + timeoutNanos,
                                  hello: auth?.takeOutput() ?? ControlFrame.hello(from: core.me))
        connection.auth = auth
        precondition(outbound[peer] == nil, "one outgoing connection per peer")
        outbound[peer] = connection
        if result == 0 { core.counters.withLock { $0.connectsOut += 1 } }
    }

    func handle(_ connection: Outbound, revents: Int16) {
        if connection.connecting {
            guard revents & Int16(POLLOUT | POLLERR | POLLHUP) != 0 else { return }
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            _ = getsockopt(connection.fd, SOL_SOCKET, SO_ERROR, &error, &length)
            guard error == 0, revents & Int16(POLLOUT) != 0 else {
                let why = error == 0 ? "connection failed" : ControlTCP.describe(error)
                fail(connection, reason: "connect to \(connection.address): \(why)")
                return
            }
            connection.connecting = false
            core.counters.withLock { $0.connectsOut += 1 }
        }
        if connection.auth != nil, revents & Int16(POLLIN | POLLERR | POLLHUP) != 0 {
            guard authenticate(connection) else { return }
        } else if revents & Int16(POLLIN | POLLERR | POLLHUP) != 0 {
            // The peer never writes on this connection: readable means closed, reset, or a broken peer.
            let count = Glibc.recv(connection.fd, scratch.baseAddress, scratch.count, 0)
            if count == 0 {
                fail(connection, reason: "connection to \(connection.address) closed by the peer")
                return
            }
            if count > 0 {
                fail(connection, reason: "the peer wrote on a send-only connection")
                return
            }
            if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
                fail(connection, reason: "connection to \(connection.address): \(ControlTCP.describe(errno))")
                return
            }
        }
        if revents & Int16(POLLOUT) != 0 { flush(connection) }
    }

    /// Reads the responder's handshake bytes; once it proved the key, the channel's hello follows ours.
    /// - Returns: false when the connection failed (closed, counted, and a loss).
    func authenticate(_ connection: Outbound) -> Bool {
        guard let auth = connection.auth else { return true }
        let count = Glibc.recv(connection.fd, scratch.baseAddress, scratch.count, 0)
        if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return true }
        let reason: String
        if count == 0 {
            reason = "closed by the peer during the handshake (it refused our proof, or runs another mode)"
        } else if count < 0 {
            reason = ControlTCP.describe(errno)
        } else {
            do {
                let used = try auth.input(UnsafeRawBufferPointer(rebasing: scratch[0..<count]))
                appendRaw(auth.takeOutput(), to: connection)
                guard auth.isDone else { return true }
                // The responder says nothing after its proof: more bytes are a broken or hostile peer.
                guard used == count else {
                    authFailed(connection, reason: "the peer wrote after its proof")
                    return false
                }
                connection.auth = nil
                connection.slotHasFrames = true
                core.counters.withLock { $0.authHandshakes += 1 }
                var hello = ControlFrame.hello(from: core.me)
                if auth.tagsFrames {
                    let mac = try auth.frameMAC(sending: true)
                    connection.mac = mac
                    hello += mac.tag(hello[...])
                    core.counters.withLock { $0.authMacsOut += 1 }
                }
                appendRaw(hello, to: connection)
                return true
            } catch {
                reason = "\(error)"
            }
        }
        authFailed(connection, reason: reason)
        return false
    }

    func authFailed(_ connection: Outbound, reason: String) {
        core.counters.withLock { $0.authRejected += 1 }
        fail(connection, reason: "authentication with \(connection.address) failed: \(reason)")
    }

    /// Writes as much of the buffer as the socket takes.
    func flush(_ connection: Outbound) {
        guard !connection.connecting, !connection.closed else { return }
        var failure: Int32 = 0
        while connection.pendingBytes > 0 {
            let offset = connection.written
            let count = connection.buffer.withUnsafeBytes { bytes in
                Glibc.send(connection.fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            if count > 0 {
                connection.written += count
                connection.streamWritten += count
                continue
            }
            if count < 0 && errno == EINTR { continue }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { break }
            failure = count < 0 ? errno : EPIPE
            break
        }
        var frames: UInt64 = 0
        var bytes: UInt64 = 0
        while let first = connection.frameEnds.first, first.end <= connection.streamWritten {
            _ = connection.frameEnds.popFirst()
            frames += 1
            bytes += UInt64(first.payloadBytes)
        }
        if frames > 0 {
            core.counters.withLock { counters in
                counters.framesOut += frames
                counters.bytesOut += bytes
            }
        }
        if failure != 0 {
            fail(connection, reason: "send to \(connection.address): \(ControlTCP.describe(failure))")
            return
        }
        if connection.pendingBytes == 0 {
            // Keep the capacity for the next frames, unless a large frame left a large buffer behind.
            connection.buffer.removeAll(keepingCapacity: connection.buffer.capacity <= Self.writeBatchBytes * 2)
            connection.written = 0
        }
    }

    /// Closes a connection without an event (its reset or removal was decided elsewhere).
    func close(_ connection: Outbound) {
        guard !connection.closed else { return }
        connection.closed = true
        _ = Glibc.close(connection.fd)
        if outbound[connection.peer] === connection { outbound[connection.peer] = nil }
    }

    /// Closes a failed connection and reports the loss, unless its epoch was already reset.
    func fail(_ connection: Outbound, reason: String) {
        close(connection)
        lose(connection.peer, epoch: connection.epoch, reason: reason)
    }

    /// Resets the peer's slot if `epoch` is still current (dropping its queued frames) and emits the loss.
    /// A stale epoch was reset by a caller, who announced it (or removed the peer, silently).
    func lose(_ peer: ControlPeer, epoch: UInt64, reason: String) {
        let current: Bool = core.shared.withLock { shared in
            guard let slot = shared.slots[peer], slot.epoch == epoch else { return false }
            shared.reset(slot)
            return true
        }
        if current { core.emitLoss(of: peer, reason: reason) }
    }
}
