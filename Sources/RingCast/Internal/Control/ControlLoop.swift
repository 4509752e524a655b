internal import CRingCast
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// The control channel's thread (its poll loop over the listener, connections and wake pipe) and its socket
// helpers; the API and the state shared with callers are in ControlChannel.swift.

// MARK: - Sockets

/// Small socket helpers over Glibc (each returns or throws the errno).
enum ControlTCP {
    static func describe(_ code: Int32) -> String { String(cString: strerror(code)) }

    /// A non-blocking, close-on-exec TCP socket for `address`'s family, with TCP_NODELAY.
    static func open(for address: rc_io_addr) -> (fd: Int32, errno: Int32) {
        let family = withUnsafeBytes(of: address.bytes) { $0.load(as: sa_family_t.self) }
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = Glibc.socket(Int32(family), type, 0)
        guard fd >= 0 else { return (-1, errno) }
        setNoDelay(fd)
        return (fd, 0)
    }

    /// Control frames are small and latency matters more than packet count (RFC 896's delay would stall a
    /// request behind the previous one's ACK).
    ///
    /// Also a small minimum retransmission timeout (TCP_RTO_MIN_US, Linux ≥ 6.15; ignored where unknown): a
    /// heartbeat dropped by a full switch queue would otherwise wait out Linux's 200 ms minimum RTO, which
    /// is as long as the failure detector's timeout — measured on the emulated 100 Mbit/s LAN at load, one
    /// such drop made a live member look silent. On a LAN the RTT is well below a millisecond.
    static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var rtoMinMicros: Int32 = Int32(rtoMinMicros)
        _ = setsockopt(fd, Int32(IPPROTO_TCP), tcpRTOMinMicros, &rtoMinMicros, socklen_t(MemoryLayout<Int32>.size))
    }

    /// include/uapi/linux/tcp.h: TCP_RTO_MIN_US (Debian 12's headers predate it).
    static let tcpRTOMinMicros: Int32 = 45
    static let rtoMinMicros = 5_000

    static func withSockaddr<R>(_ address: rc_io_addr, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafeBytes(of: address.bytes) { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.length))
        }
    }

    /// A listening socket with SO_REUSEADDR (a restarted member rebinds its port despite TIME_WAIT).
    /// - Throws: ``RingCastError/addressInUse(_:)``, ``RingCastError/system(call:errno:)``.
    static func listen(on address: Address, backlog: Int) throws(RingCastError) -> Int32 {
        let target = address.cAddress
        let (fd, openErrno) = open(for: target)
        guard fd >= 0 else { throw .system(call: "socket", errno: openErrno) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if withSockaddr(target, { Glibc.bind(fd, $0, $1) }) != 0 {
            let code = errno
            _ = Glibc.close(fd)
            if code == EADDRINUSE { throw .addressInUse(address) }
            throw .system(call: "bind", errno: code)
        }
        if Glibc.listen(fd, Int32(min(backlog, Int(SOMAXCONN)))) != 0 {
            let code = errno
            _ = Glibc.close(fd)
            throw .system(call: "listen", errno: code)
        }
        return fd
    }
}

// MARK: - The channel thread

/// The channel thread's state: every connection and buffer, touched by that thread only.
///
/// Each turn: take what callers changed (``reconcile()``), poll, handle what is ready, expire deadlines.
final class ControlLoop {
    /// Bytes read per recv(2).
    static let readBytes = 64 << 10
    /// recv(2) calls per connection per turn, so one busy peer cannot starve the others (poll is level-triggered:
    /// the rest is read next turn).
    static let readsPerTurnMax = 16
    /// accept(2) calls per turn.
    static let acceptsPerTurnMax = 16
    /// Bytes a connection takes from its queue into its write buffer at a time (beyond the frame that crosses it).
    static let writeBatchBytes = 256 << 10
    /// After an accept(2) failure such as EMFILE, the listener rests this long instead of spinning.
    static let listenerRestNanos: UInt64 = 100_000_000

    /// The connection this channel dialled to `peer`: writes frames, reads only to notice the end.
    final class Outbound {
        let peer: ControlPeer
        let address: Address
        let epoch: UInt64
        let fd: Int32
        var connecting: Bool
        let deadlineNanos: UInt64
        /// Bytes to write: the hello, then prefixed frames; `written` of them are written.
        var buffer: [UInt8]
        var written = 0
        /// Stream offsets (counted from the hello's first byte) where queued frames end, to count them written.
        var frameEnds = FIFO<(end: Int, payloadBytes: Int)>()
        var streamWritten = 0
        var streamAppended = 0
        /// The slot had frames left after the last take (ask poll for POLLOUT to take more soon).
        var slotHasFrames = true
        var closed = false
        /// The handshake while it runs (authenticated channels); nil once done. No frame is taken before.
        var auth: ControlAuth?
        /// Tags every frame after the handshake (modes frames and encrypt).
        var mac: ControlFrameMAC?

        init(peer: ControlPeer, address: Address, epoch: UInt64, fd: Int32, connecting: Bool, deadlineNanos: UInt64,
             hello: [UInt8]) {
            self.peer = peer
            self.address = address
            self.epoch = epoch
            self.fd = fd
            self.connecting = connecting
            self.deadlineNanos = deadlineNanos
            buffer = hello
            streamAppended = hello.count
        }

        var pendingBytes: Int { buffer.count - written }
    }

    /// A connection a peer dialled: reads its hello, then its frames.
    final class Inbound {
        let fd: Int32
        var peer: ControlPeer?
        var reader = ControlFrameReader(lengthMax: ControlFrame.helloBytes)
        let helloDeadlineNanos: UInt64
        var closed = false
        /// The handshake while it runs (authenticated channels); nil once done.
        var auth: ControlAuth?
        /// Who the handshake proved: the hello must name the same member.
        var proved: ControlPeer?
        /// Handshake bytes not yet written (a few dozen: they fit a fresh socket's buffer, but are kept if not).
        var pendingOut: [UInt8] = []
        /// Verifies every frame's tag after the handshake (modes frames and encrypt).
        var mac: ControlFrameMAC?

        init(fd: Int32, helloDeadlineNanos: UInt64) {
            self.fd = fd
            self.helloDeadlineNanos = helloDeadlineNanos
        }
    }

    let core: ControlChannelCore
    var outbound: [ControlPeer: Outbound] = [:]
    var inbound: [Inbound] = []
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: readBytes, alignment: 16)
    var listenerRestsUntilNanos: UInt64 = 0
    var limits: ControlChannel.Limits { core.limits }
    var timeoutNanos: UInt64 { UInt64(core.limits.connectTimeoutMillis) * 1_000_000 }

    init(core: ControlChannelCore) { self.core = core }

    deinit { scratch.deallocate() }

    func run() {
        core.channelThread.store(UInt(pthread_self()), ordering: .relaxed)
        while reconcile() {
            pollAndHandle()
            expireDeadlines()
            inbound.removeAll { $0.closed }
        }
        for connection in outbound.values { _ = Glibc.close(connection.fd) }
        for connection in inbound where !connection.closed { _ = Glibc.close(connection.fd) }
        outbound = [:]
        inbound = []
        if core.shared.withLock({ $0.stoppedFromChannelThread }) {
            _ = Glibc.close(core.listenerFD)
            _ = pthread_detach(pthread_self())
        }
    }

    // MARK: Reconcile with callers

    /// Applies what callers changed since the last turn: emits the losses they raised, closes connections they
    /// reset or removed, dials peers with queued frames, and moves frames into write buffers, then writes.
    /// - Returns: false once the channel is stopping.
    private func reconcile() -> Bool {
        var stale: [Outbound] = []
        var taken: [(Outbound, [[UInt8]])] = []
        var dials: [(peer: ControlPeer, address: Address, epoch: UInt64)] = []
        let live = Array(outbound.values)
        let (losses, removed, stopping) = core.shared.withLock { shared in
            shared.wakePending = false
            let losses = shared.losses
            let removed = shared.removed
            shared.losses = []
            shared.removed = []
            if shared.stopping { return (losses, removed, true) }
            for connection in live {
                guard let slot = shared.slots[connection.peer], slot.epoch == connection.epoch else {
                    stale.append(connection)
                    continue
                }
                if connection.auth != nil { // no frame before the peer proved the key
                    connection.slotHasFrames = false
                    continue
                }
                var budget = Self.writeBatchBytes - connection.pendingBytes
                var frames: [[UInt8]] = []
                while budget > 0, let frame = slot.frames.popFirst() {
                    budget -= frame.count + ControlFrame.headerBytes
                    slot.queuedBytes -= frame.count + ControlFrame.headerBytes
                    frames.append(frame)
                }
                connection.slotHasFrames = !slot.frames.isEmpty
                if !frames.isEmpty { taken.append((connection, frames)) }
            }
            for (peer, slot) in shared.slots where !slot.connected && !slot.frames.isEmpty {
                slot.connected = true
                dials.append((peer, slot.address, slot.epoch))
            }
            return (losses, removed, false)
        }
        for loss in losses { core.emitLoss(of: loss.peer, reason: loss.reason) }
        if stopping { return false }
        for connection in stale { close(connection) }
        if !removed.isEmpty {
            for connection in inbound where !connection.closed {
                if let peer = connection.peer, removed.contains(peer) { close(connection) }
            }
        }
        for (connection, frames) in taken where !connection.closed { append(frames, to: connection) }
        for dial in dials { self.dial(dial.peer, address: dial.address, epoch: dial.epoch) }
        for connection in Array(outbound.values) { flush(connection) }
        return true
    }

    /// Appends unframed bytes (the handshake's, then the hello) to the write buffer.
    private func appendRaw(_ bytes: [UInt8], to connection: Outbound) {
        if connection.written > 0 {
            connection.buffer.removeFirst(connection.written)
            connection.written = 0
        }
        connection.buffer += bytes
        connection.streamAppended += bytes.count
    }

    private func append(_ frames: [[UInt8]], to connection: Outbound) {
        if connection.written > 0 {
            connection.buffer.removeFirst(connection.written)
            connection.written = 0
        }
        for frame in frames {
            let start = connection.buffer.count
            ControlFrame.appendHeader(length: frame.count, to: &connection.buffer)
            connection.buffer += frame
            if let mac = connection.mac { connection.buffer += mac.tag(connection.buffer[start...]) }
            connection.streamAppended += connection.buffer.count - start
            connection.frameEnds.append((connection.streamAppended, frame.count))
        }
        if let _ = connection.mac, !frames.isEmpty {
            core.counters.withLock { $0.authMacsOut += UInt64(frames.count) }
        }
    }

    // MARK: Outgoing connections

    /// Starts a non-blocking connect to `address` for the slot's `epoch`, hello first in the write buffer.
    private func dial(_ peer: ControlPeer, address: Address, epoch: UInt64) {
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

    private func handle(_ connection: Outbound, revents: Int16) {
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
    private func authenticate(_ connection: Outbound) -> Bool {
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

    private func authFailed(_ connection: Outbound, reason: String) {
        core.counters.withLock { $0.authRejected += 1 }
        fail(connection, reason: "authentication with \(connection.address) failed: \(reason)")
    }

    /// Writes as much of the buffer as the socket takes.
    private func flush(_ connection: Outbound) {
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
    private func close(_ connection: Outbound) {
        guard !connection.closed else { return }
        connection.closed = true
        _ = Glibc.close(connection.fd)
        if outbound[connection.peer] === connection { outbound[connection.peer] = nil }
    }

    /// Closes a failed connection and reports the loss, unless its epoch was already reset.
    private func fail(_ connection: Outbound, reason: String) {
        close(connection)
        lose(connection.peer, epoch: connection.epoch, reason: reason)
    }

    /// Resets the peer's slot if `epoch` is still current (dropping its queued frames) and emits the loss.
    /// A stale epoch was reset by a caller, who announced it (or removed the peer, silently).
    private func lose(_ peer: ControlPeer, epoch: UInt64, reason: String) {
        let current: Bool = core.shared.withLock { shared in
            guard let slot = shared.slots[peer], slot.epoch == epoch else { return false }
            shared.reset(slot)
            return true
        }
        if current { core.emitLoss(of: peer, reason: reason) }
    }

    // MARK: Accepted connections

    private func acceptConnections() {
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
    private func flushHandshake(_ connection: Inbound) {
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

    private func handle(_ connection: Inbound) {
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
    private func consume(_ count: Int, from connection: Inbound) -> Bool {
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
    private func identify(_ connection: Inbound, as peer: ControlPeer) {
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
    private func end(_ connection: Inbound, reason: String) {
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
    private func reject(_ connection: Inbound, reason: String) {
        guard !connection.closed else { return }
        let authenticating = connection.auth != nil || (core.auth != nil && connection.proved == nil)
        core.counters.withLock { counters in
            counters.rejected += 1
            if authenticating { counters.authRejected += 1 }
        }
        close(connection)
        if let peer = connection.peer { core.emitLoss(of: peer, reason: reason) }
    }

    private func close(_ connection: Inbound) {
        guard !connection.closed else { return }
        connection.closed = true
        _ = Glibc.close(connection.fd)
    }

    // MARK: Poll

    private func pollAndHandle() {
        let now = monotonicNanos()
        let outs = Array(outbound.values)
        let ins = inbound.filter { !$0.closed }
        var fds: [pollfd] = []
        fds.reserveCapacity(2 + outs.count + ins.count)
        fds.append(pollfd(fd: core.wake.readFD, events: Int16(POLLIN), revents: 0))
        // A negative descriptor is skipped by poll(2): that is how the listener rests.
        fds.append(pollfd(fd: now >= listenerRestsUntilNanos ? core.listenerFD : -1, events: Int16(POLLIN), revents: 0))
        for connection in outs {
            let wantsOut = connection.connecting || connection.pendingBytes > 0 || connection.slotHasFrames
            fds.append(pollfd(fd: connection.fd, events: Int16(POLLIN) | (wantsOut ? Int16(POLLOUT) : 0), revents: 0))
        }
        for connection in ins {
            let wantsOut = !connection.pendingOut.isEmpty
            fds.append(pollfd(fd: connection.fd, events: Int16(POLLIN) | (wantsOut ? Int16(POLLOUT) : 0), revents: 0))
        }
        let ready = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), timeoutMillis(now)) }
        guard ready > 0 else { return } // timeout (deadlines are checked next), or EINTR
        if fds[0].revents != 0 { core.wake.drain() }
        if fds[1].revents != 0 { acceptConnections() }
        for (index, connection) in outs.enumerated() where !connection.closed && fds[2 + index].revents != 0 {
            handle(connection, revents: fds[2 + index].revents)
        }
        for (index, connection) in ins.enumerated() where !connection.closed && fds[2 + outs.count + index].revents != 0 {
            handle(connection)
        }
    }

    /// Until the nearest deadline (connect, hello, listener rest), rounded up; -1 (none) waits for the wake pipe.
    private func timeoutMillis(_ now: UInt64) -> Int32 {
        var nearest = UInt64.max
        for connection in outbound.values where connection.connecting || connection.auth != nil {
            nearest = min(nearest, connection.deadlineNanos)
        }
        for connection in inbound where !connection.closed && connection.peer == nil {
            nearest = min(nearest, connection.helloDeadlineNanos)
        }
        if listenerRestsUntilNanos > now { nearest = min(nearest, listenerRestsUntilNanos) }
        guard nearest != .max else { return -1 }
        guard nearest > now else { return 0 }
        return Int32(min((nearest - now + 999_999) / 1_000_000, UInt64(Int32.max)))
    }

    private func expireDeadlines() {
        let now = monotonicNanos()
        for connection in Array(outbound.values) where connection.connecting && now >= connection.deadlineNanos {
            fail(connection, reason: "connect to \(connection.address) timed out after \(limits.connectTimeoutMillis) ms")
        }
        for connection in Array(outbound.values) where connection.auth != nil && now >= connection.deadlineNanos {
            authFailed(connection, reason: "no handshake within \(limits.connectTimeoutMillis) ms")
        }
        for connection in inbound where !connection.closed && connection.peer == nil
            && now >= connection.helloDeadlineNanos {
            reject(connection, reason: "no hello within \(limits.connectTimeoutMillis) ms")
        }
    }
}
