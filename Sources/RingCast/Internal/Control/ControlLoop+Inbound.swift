internal import CRingCast
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// The connections peers dial to this member (ControlLoop.swift): accept, handshake, hello, frames.

extension ControlLoop {
    // MARK: Accepted connections

    func acceptConnections() {
        for _ in 0..<Self.acceptsPerTurnMax {
            // accept4(2) would set both flags atomically, but Glibc's Swift overlay does not export it. A fork(2)
            // by another thread between accept and fcntl would leak this descriptor into the child: harmless here
            // (the node does not fork), and worth a C shim if it ever does.
            let fd = Glibc.accept(core.listenerFD, nil, nil)
            if fd < 0 {
                switch errno {
                case EAGAIN, EWOULDBLOCK: return
                case EINTR, ECONNABORTED, EPROTO: continue
                default:
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: rest rather than spin on a listener that stays readable.
                    listenerRestsUntilNanos = monotonicNanos() + Self.listenerRestNanos
                    return
                }
            }
            let open = inbound.count { !$0.closed }
            guard open < 2 * limits.peersMax else {
                core.counters.withLock { counters in
                    counters.accepts += 1
                    counters.rejected += 1
                }
                _ = Glibc.close(fd)
                continue
            }
            core.counters.withLock { $0.accepts += 1 }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            ControlTCP.setNoDelay(fd)
            let connection = Inbound(fd: fd, helloDeadlineNanos: monotonicNanos() + timeoutNanos)
            inbound.append(connection)
            if let config = core.auth {
                do {
                    let auth = try ControlAuth(config: config, initiator: false, expectNode: RC_AUTH_PEER_ANY)
                    connection.auth = auth
                    connection.pendingOut = auth.takeOutput()
                    flushHandshake(connection)
                } catch {
                    reject(connection, reason: "authentication: \(error)")
                }
            }
        }
    }

    /// Writes what the handshake has to say on an accepted connection (the only bytes ever written on one).
    func flushHandshake(_ connection: Inbound) {
        while !connection.pendingOut.isEmpty, !connection.closed {
            let count = connection.pendingOut.withUnsafeBytes { bytes in
                Glibc.send(connection.fd, bytes.baseAddress!, bytes.count, Int32(MSG_NOSIGNAL))
            }
            if count > 0 {
                connection.pendingOut.removeFirst(count)
                continue
            }
            if count < 0 && errno == EINTR { continue }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return }
            end(connection, reason: "sending the handshake: \(ControlTCP.describe(count < 0 ? errno : EPIPE))")
            return
        }
    }

    func handle(_ connection: Inbound) {
        flushHandshake(connection)
        guard !connection.closed else { return }
        for _ in 0..<Self.readsPerTurnMax {
            let count = Glibc.recv(connection.fd, scratch.baseAddress, scratch.count, 0)
            if count > 0 {
                guard consume(count, from: connection) else { return }
                if count < scratch.count { return } // drained (most likely); poll says if not
                continue
            }
            if count == 0 {
                let midFrame = connection.reader.isBetweenFrames ? "" : " in the middle of a frame"
                end(connection, reason: "connection closed by the peer\(midFrame)")
                return
            }
            switch errno {
            case EAGAIN, EWOULDBLOCK: return
            case EINTR: continue
            default:
                end(connection, reason: "connection from the peer: \(ControlTCP.describe(errno))")
                return
            }
        }
    }

    /// Cuts `count` bytes of `scratch` into frames: the hello first, then frames delivered in order.
    /// - Returns: false when the connection was closed (malformed).
    func consume(_ count: Int, from connection: Inbound) -> Bool {
        var offset = 0
        if let auth = connection.auth {
            // The handshake first: nothing the connection sends is read as a frame before the peer proved the key.
            do {
                offset = try auth.input(UnsafeRawBufferPointer(rebasing: scratch[0..<count]))
            } catch {
                reject(connection, reason: "authentication failed: \(error)")
                return false
            }
            connection.pendingOut += auth.takeOutput()
            flushHandshake(connection)
            guard !connection.closed else { return false }
            guard auth.isDone else { return true }
            connection.auth = nil
            connection.proved = auth.peer
            core.counters.withLock { $0.authHandshakes += 1 }
            if auth.tagsFrames {
                do {
                    connection.mac = try auth.frameMAC(sending: false)
                } catch {
                    reject(connection, reason: "authentication: \(error)")
                    return false
                }
                connection.reader.trailerBytes = Int(RC_AUTH_TAG_BYTES)
            }
        }
        while offset < count {
            let result: (used: Int, frame: [UInt8]?)
            do {
                result = try connection.reader.consume(UnsafeRawBufferPointer(UnsafeMutableRawBufferPointer(rebasing: scratch[offset..<count])))
            } catch {
                reject(connection, reason: connection.peer == nil ? "bad hello: \(error)" : "\(error)")
                return false
            }
            offset += result.used
            guard let frame = result.frame else { continue }
            if let mac = connection.mac {
                // Checked before the frame is read as a hello or handed to the membership layer.
                let good = mac.verify(payload: frame, tag: connection.reader.lastTrailer)
                core.counters.withLock { counters in
                    counters.authMacsIn += 1
                    if !good { counters.authMacFailures += 1 }
                }
                guard good else {
                    reject(connection, reason: "a control frame's tag did not verify")
                    return false
                }
            }
            if let peer = connection.peer {
                core.emit(.received(from: peer, bytes: frame))
                continue
            }
            do {
                identify(connection, as: try ControlFrame.parseHello(frame))
            } catch {
                reject(connection, reason: "bad hello: \(error)")
                return false
            }
            guard !connection.closed else { return false }
        }
        return true
    }

    /// The hello names the connection's peer; an older connection from the same peer is over (the peer dials
    /// again only after giving up on it), so it is closed now rather than when its end shows.
    func identify(_ connection: Inbound, as peer: ControlPeer) {
        if let proved = connection.proved, proved != peer {
            reject(connection, reason: "the hello names \(peer) but the handshake proved \(proved)")
            return
        }
        connection.peer = peer
        connection.reader.lengthMax = limits.frameBytesMax
        for other in inbound where other !== connection && !other.closed && other.peer == peer {
            end(other, reason: "superseded by a new connection from the same peer")
        }
    }

    /// The connection ended (EOF, error, timeout): a loss if it was identified, a rejection if not.
    func end(_ connection: Inbound, reason: String) {
        guard !connection.closed else { return }
        guard let peer = connection.peer else {
            reject(connection, reason: reason)
            return
        }
        close(connection)
        core.emitLoss(of: peer, reason: reason)
    }

    /// The connection broke the protocol: counted as rejected (before the close, so that whoever sees the close
    /// sees the count), and a loss if it was identified.
    func reject(_ connection: Inbound, reason: String) {
        guard !connection.closed else { return }
        let authenticating = connection.auth != nil || (core.auth != nil && connection.proved == nil)
        core.counters.withLock { counters in
            counters.rejected += 1
            if authenticating { counters.authRejected += 1 }
        }
        close(connection)
        if let peer = connection.peer { core.emitLoss(of: peer, reason: reason) }
    }

    func close(_ connection: Inbound) {
        guard !connection.closed else { return }
        connection.closed = true
        _ = Glibc.close(connection.fd)
    }
}
