internal import CRingCast
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// The control channel's thread: its poll loop over the listener, connections and wake pipe, and the reconcile
// with callers. Outgoing connections are in ControlLoop+Outbound.swift, accepted ones in ControlLoop+Inbound.swift,
// the socket helpers in ControlTCP.swift; the API and the state shared with callers are in ControlChannel.swift.

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
    func reconcile() -> Bool {
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
    func appendRaw(_ bytes: [UInt8], to connection: Outbound) {
        if connection.written > 0 {
            connection.buffer.removeFirst(connection.written)
            connection.written = 0
        }
        connection.buffer += bytes
        connection.streamAppended += bytes.count
    }

    func append(_ frames: [[UInt8]], to connection: Outbound) {
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

    // MARK: Poll

    func pollAndHandle() {
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
    func timeoutMillis(_ now: UInt64) -> Int32 {
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

    func expireDeadlines() {
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
