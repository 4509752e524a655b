internal import CRingCast
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The control-plane transport between group members: view changes, heartbeats, recovery data, state transfer.
///
/// Rare, small-to-medium messages over plain TCP, driven by one thread running poll(2); never on the data hot path
/// (which is the C engine's io_uring ring). Robust and bounded rather than fast.
///
/// ## Connections
/// A connection carries frames one way only: A→B frames travel on the connection A dialled to B, B→A frames on
/// B's own. So there is never a race over who dials whom, and a received frame is attributed to the peer named
/// by the hello that opened the connection it came on (``ControlFrame``). Connections are dialled on demand, by
/// the first ``send(_:to:)`` after a start or a loss.
///
/// ## Losses
/// ``Event/lost(_:reason:)`` says "a link with this peer failed, frames to or from it may have been dropped".
/// It is raised when
/// - the outgoing connection fails to connect (refused, unreachable, no answer within `connectTimeoutMillis`),
///   fails while writing, or is closed by the peer;
/// - a connection the peer dialled ends (EOF or reset: a `kill -9` of the peer shows within milliseconds), turns
///   out malformed (oversize length), or is superseded by a newer connection from the same peer;
/// - ``send(_:to:)`` refuses a frame (unknown peer, frame too large, queue limit exceeded); the outgoing
///   connection is then closed rather than a frame silently dropped.
///
/// Frames queued for a peer when its outgoing link fails are dropped *with* that event; the next
/// ``send(_:to:)`` dials a fresh connection and the queue restarts with that frame. The membership layer handles a
/// loss by suspecting the peer and re-sending what still matters. One failure may be reported more than once
/// (once per connection: a dead peer ends both the connection we dialled and the one it dialled), so handle
/// `.lost` idempotently. Losses raised by ``send(_:to:)`` are coalesced per peer until the channel thread emits
/// them. ``removePeer(_:)`` and ``shutdown()`` close connections without events; no event at all is emitted once
/// ``shutdown()`` began.
///
/// ## Threads
/// One thread (started by ``start()``) owns the sockets and calls `onEvent` with every event, in order (frames in
/// the order sent, per connection). The callback may do light work and may call ``send(_:to:)``, ``setPeer(_:address:)``
/// and ``removePeer(_:)``; it must not block (it stalls every peer's traffic). It may call ``shutdown()``, which then
/// cannot wait for the thread it runs on: it returns at once and the thread stops and closes everything after the
/// callback returns (the same happens if the channel's last reference goes away on that thread). Every other
/// method may be called from any thread and never blocks beyond a short lock.
///
/// ## Bounds
/// - at most ``Limits/peersMax`` peers with an address, and 2 × `peersMax` accepted connections (room for a
///   reconnecting peer whose old connection has not closed yet, and for connections still owing their hello);
/// - frames up to ``Limits/frameBytesMax`` either way (a larger incoming length closes that connection);
/// - per peer, ``Limits/queuedBytesMaxPerPeer`` bytes queued by callers (payload plus 4 per frame), plus what the
///   channel thread has taken for writing (at most 256 KiB beyond one frame) and the kernel's socket buffer;
/// - per connection, one partly received frame (grown as its bytes arrive).
///
/// Like ``Node``, a `final class` with internal locks: calls are short hand-overs, and events come from a thread
/// that is not a Swift task. Do not let `onEvent` capture the channel strongly: the channel owns the callback, so
/// that would be a cycle, and the channel would only stop at an explicit ``shutdown()``.
final class ControlChannel: Sendable {
    /// The channel's bounds.
    struct Limits: Sendable, Equatable {
        /// Largest frame payload, either way (1 ... 2³¹−1).
        var frameBytesMax = 4 << 20
        /// Bytes queued for one peer by ``send(_:to:)`` and not yet taken by the channel thread (payload plus 4
        /// per frame). At least `frameBytesMax` + 4.
        var queuedBytesMaxPerPeer = 64 << 20
        /// How long an outgoing connect may take, and how long an accepted connection may take to send its hello.
        var connectTimeoutMillis = 1000
        /// Peers with an address (``setPeer(_:address:)``). Accepted connections are bounded by 2 × this.
        var peersMax = 64

        /// - Throws: ``RingCastError/invalidConfiguration(_:)`` naming the first value out of range.
        func validate() throws(RingCastError) {
            guard frameBytesMax >= 1 && frameBytesMax <= ControlFrame.lengthMax else {
                throw .invalidConfiguration("frameBytesMax \(frameBytesMax) is not in 1...\(ControlFrame.lengthMax)")
            }
            guard queuedBytesMaxPerPeer >= frameBytesMax + ControlFrame.headerBytes else {
                throw .invalidConfiguration("queuedBytesMaxPerPeer \(queuedBytesMaxPerPeer) cannot hold one frame "
                    + "of frameBytesMax \(frameBytesMax) (+\(ControlFrame.headerBytes))")
            }
            guard connectTimeoutMillis >= 1 && connectTimeoutMillis <= 3_600_000 else {
                throw .invalidConfiguration("connectTimeoutMillis \(connectTimeoutMillis) is not in 1...3600000")
            }
            guard peersMax >= 1 && peersMax <= 4096 else {
                throw .invalidConfiguration("peersMax \(peersMax) is not in 1...4096")
            }
        }
    }

    /// What the channel reports, on its thread, in order.
    enum Event: Sendable, Equatable {
        /// A frame from `from`, byte-exact.
        case received(from: ControlPeer, bytes: [UInt8])
        /// A link with the peer failed (see the type's documentation); `reason` is for logs.
        case lost(ControlPeer, reason: String)
    }

    /// A snapshot of the channel's counters.
    struct Statistics: Sendable, Hashable {
        /// Frames delivered as ``Event/received(from:bytes:)``, and their payload bytes.
        var framesIn: UInt64 = 0
        var bytesIn: UInt64 = 0
        /// Frames completely written to a socket, and their payload bytes (prefixes and hellos not counted).
        var framesOut: UInt64 = 0
        var bytesOut: UInt64 = 0
        /// Outgoing connections that completed their connect.
        var connectsOut: UInt64 = 0
        /// Connections accepted from the listener (rejected ones included).
        var accepts: UInt64 = 0
        /// ``Event/lost(_:reason:)`` events emitted.
        var lost: UInt64 = 0
        /// Accepted connections closed for a bad hello (length, magic, version, none in time), an oversize
        /// frame, a close before the hello, or because the accepted-connection bound was reached.
        var rejected: UInt64 = 0
        /// Connections (either way) whose peer proved the cluster key (authenticated channels only).
        var authHandshakes: UInt64 = 0
        /// Connections (either way) closed because the handshake failed or did not finish in time: no key, another
        /// key, a replay, a stranger where a member was dialled, garbage. Accepted ones count in `rejected` too.
        var authRejected: UInt64 = 0
        /// Control-frame tags computed and verified (modes frames and encrypt), and tags that failed (the connection
        /// is closed: a loss, and a rejection if accepted).
        var authMacsOut: UInt64 = 0
        var authMacsIn: UInt64 = 0
        var authMacFailures: UInt64 = 0
    }

    /// Who this channel is (sent in every hello).
    let me: ControlPeer
    /// Where it listens.
    let listen: Address
    let limits: Limits
    private let core: ControlChannelCore

    /// Binds and listens on `listen`; ``start()`` starts the thread that accepts and delivers.
    /// - Parameters:
    ///   - me: this member's identity, sent in every hello.
    ///   - onEvent: called on the channel's thread, in order; must not block.
    /// - Throws: ``RingCastError/invalidConfiguration(_:)`` for limits out of range,
    ///   ``RingCastError/addressInUse(_:)``, ``RingCastError/system(call:errno:)``.
    ///   - auth: with a cluster key (`Security.authConfig`), every connection opens with the handshake of
    ///     `rc_auth.h` before its hello; nil keeps open connections.
    init(me: ControlPeer, listen: Address, limits: Limits = .init(), auth: rc_auth_config? = nil,
         onEvent: @escaping @Sendable (Event) -> Void) throws(RingCastError) {
        try limits.validate()
        self.me = me
        self.listen = listen
        self.limits = limits
        core = try ControlChannelCore(me: me, listen: listen, limits: limits, auth: auth, onEvent: onEvent)
    }

    deinit { core.shutdown() }

    /// Starts the channel thread.
    /// - Throws: ``RingCastError/alreadyStarted`` (a second call, or after ``shutdown()``),
    ///   ``RingCastError/system(call:errno:)``.
    func start() throws(RingCastError) { try core.start() }

    /// Says where `peer` listens; replaces an earlier address. Changing the address closes the outgoing
    /// connection to the old one (with ``Event/lost(_:reason:)`` if it was open or had frames queued).
    ///
    /// The peer table is bounded (`peersMax`), so this says whether the peer was taken.
    /// - Returns: false when `peersMax` peers are already known (`peer` stays unknown: sends to it are lost).
    @discardableResult
    func setPeer(_ peer: ControlPeer, address: Address) -> Bool { core.setPeer(peer, address: address) }

    /// Forgets `peer`: closes the connection to it and the one from it, drops its queued frames. No event.
    func removePeer(_ peer: ControlPeer) { core.removePeer(peer) }

    /// Queues one frame for `peer` and wakes the channel thread; any thread, never blocks. Dials on demand.
    ///
    /// - Returns: false when the frame was refused: the peer has no address, the frame is larger than
    ///   `frameBytesMax`, or the peer's queue would exceed `queuedBytesMaxPerPeer`. Then the peer's outgoing
    ///   connection is closed, its queued frames dropped, and ``Event/lost(_:reason:)`` follows on the channel
    ///   thread (the membership layer treats it as a link failure). Also false, without an event, after
    ///   ``shutdown()``. True means queued, not delivered: a later `.lost` may still drop it.
    @discardableResult
    func send(_ bytes: [UInt8], to peer: ControlPeer) -> Bool { core.send(bytes, to: peer) }

    /// Stops the thread, closes every connection and the listener, and waits for that. Idempotent; a concurrent
    /// second call returns at once. Queued frames are dropped, and no event is emitted once it began. Called from `onEvent`, it cannot wait
    /// for its own thread: it returns at once, and the thread stops after the callback returns.
    func shutdown() { core.shutdown() }

    /// A snapshot of the counters.
    var statistics: Statistics { core.counters.withLock { $0 } }
}

// MARK: - Shared state

/// One peer's outgoing side as callers see it: its address and the frames they queued.
/// Lives inside ``ControlShared``, under its lock.
final class ControlSlot {
    var address: Address
    var frames = FIFO<[UInt8]>()
    /// Bytes in `frames`: payload plus the 4-byte prefix of each.
    var queuedBytes = 0
    /// Unique over the channel's life (a removed and re-added peer gets a fresh one too): a connection belongs to
    /// the epoch it was dialled in, and is closed once its slot moved on.
    var epoch: UInt64
    /// The channel thread holds a connection (or an attempt) for the current epoch.
    var connected = false

    init(address: Address, epoch: UInt64) {
        self.address = address
        self.epoch = epoch
    }
}

/// What callers and the channel thread share, under one lock.
struct ControlShared {
    var slots: [ControlPeer: ControlSlot] = [:]
    /// Peers removed since the channel thread last looked (it closes their accepted connections too).
    var removed: Set<ControlPeer> = []
    /// Losses raised by callers, for the channel thread to emit in order; one per peer at a time.
    var losses: [(peer: ControlPeer, reason: String)] = []
    /// The wake pipe was signalled and the thread has not looked yet (saves a write per queued frame).
    var wakePending = false
    var running = false
    var stopping = false
    /// shutdown() was called on the channel thread (from `onEvent`), so nobody joins it: it cleans up alone.
    var stoppedFromChannelThread = false
    private var nextEpoch: UInt64 = 1

    mutating func takeEpoch() -> UInt64 {
        defer { nextEpoch += 1 }
        return nextEpoch
    }

    /// Forgets the slot's connection and queued frames; the caller decides whether to announce a loss.
    mutating func reset(_ slot: ControlSlot) {
        slot.epoch = takeEpoch()
        slot.frames = FIFO()
        slot.queuedBytes = 0
        slot.connected = false
    }

    /// Queues a loss for the channel thread to emit, unless one for the same peer is already waiting (a later
    /// emission covers both) or `lossesMax` are waiting.
    mutating func announceLoss(of peer: ControlPeer, reason: String, lossesMax: Int) {
        guard !losses.contains(where: { $0.peer == peer }), losses.count < lossesMax else { return }
        losses.append((peer, reason))
    }
}

enum ControlLifecycle: Sendable {
    case created
    case started(OSThread)
    case stopped
}

// MARK: - Core

/// Everything behind a ``ControlChannel``, owned by the channel and by its thread while it runs (so that a
/// forgotten channel still stops in `deinit`).
final class ControlChannelCore: Sendable {
    let me: ControlPeer
    let listen: Address
    let limits: ControlChannel.Limits
    let onEvent: @Sendable (ControlChannel.Event) -> Void
    /// The handshake's settings, or nil for open connections.
    let auth: rc_auth_config?
    let listenerFD: Int32
    /// Closed only in `deinit`, so a late `send` never writes to a reused descriptor.
    let wake: WakePipe
    let shared = Mutex(ControlShared())
    let counters = Mutex(ControlChannel.Statistics())
    private let lifecycle = Mutex(ControlLifecycle.created)
    /// pthread_self() of the channel thread once it runs (shutdown() from `onEvent` must not wait for itself).
    let channelThread = Atomic<UInt>(0)
    /// Set first thing in shutdown(): no event is emitted after it, even by a turn already under way.
    let stopRequested = Atomic<Bool>(false)
    /// Losses waiting to be emitted, at most (they are coalesced per peer; this bounds unknown peers).
    var lossesMax: Int { 4 * limits.peersMax + 16 }

    init(me: ControlPeer, listen: Address, limits: ControlChannel.Limits, auth: rc_auth_config?,
         onEvent: @escaping @Sendable (ControlChannel.Event) -> Void) throws(RingCastError) {
        self.auth = auth
        self.me = me
        self.listen = listen
        self.limits = limits
        self.onEvent = onEvent
        listenerFD = try ControlTCP.listen(on: listen, backlog: 2 * limits.peersMax)
        do {
            wake = try WakePipe()
        } catch {
            _ = Glibc.close(listenerFD)
            throw error
        }
    }

    deinit { wake.close() }

    func start() throws(RingCastError) {
        try lifecycle.withLock { (state: inout ControlLifecycle) throws(RingCastError) in
            guard case .created = state else { throw .alreadyStarted }
            shared.withLock { $0.running = true }
            do throws(RingCastError) {
                state = .started(try OSThread { [self] in ControlLoop(core: self).run() })
            } catch {
                shared.withLock { $0.running = false }
                throw error
            }
        }
    }

    func shutdown() {
        stopRequested.store(true, ordering: .relaxed)
        let previous = lifecycle.withLock { state in
            defer { state = .stopped }
            return state
        }
        if case .stopped = previous { return }
        let onChannelThread = channelThread.load(ordering: .relaxed) == UInt(pthread_self())
        shared.withLock { shared in
            shared.stopping = true
            shared.running = false
            shared.stoppedFromChannelThread = onChannelThread
        }
        guard case let .started(thread) = previous else {
            _ = Glibc.close(listenerFD)
            return
        }
        if onChannelThread {
            return // The loop sees `stopping` after the callback returns; it closes the listener and detaches.
        }
        wake.signal()
        thread.join()
        _ = Glibc.close(listenerFD)
    }

    func setPeer(_ peer: ControlPeer, address: Address) -> Bool {
        let known: Bool = shared.withLock { shared in
            if let slot = shared.slots[peer] {
                if slot.address != address {
                    if slot.connected || !slot.frames.isEmpty {
                        shared.announceLoss(of: peer, reason: "address changed from \(slot.address) to \(address)",
                                            lossesMax: lossesMax)
                    }
                    shared.reset(slot)
                    slot.address = address
                }
                return true
            }
            guard shared.slots.count < limits.peersMax else { return false }
            shared.slots[peer] = ControlSlot(address: address, epoch: shared.takeEpoch())
            return true
        }
        wake.signal()
        return known
    }

    func removePeer(_ peer: ControlPeer) {
        shared.withLock { shared in
            shared.slots[peer] = nil
            if shared.running { shared.removed.insert(peer) }
        }
        wake.signal()
    }

    func send(_ bytes: [UInt8], to peer: ControlPeer) -> Bool {
        let cost = bytes.count + ControlFrame.headerBytes
        let (queued, signal): (Bool, Bool) = shared.withLock { shared in
            guard !shared.stopping else { return (false, false) }
            let queued: Bool
            if let slot = shared.slots[peer] {
                if bytes.count > limits.frameBytesMax {
                    shared.announceLoss(of: peer, reason: "refused a frame of \(bytes.count) bytes: "
                        + "frameBytesMax is \(limits.frameBytesMax)", lossesMax: lossesMax)
                    shared.reset(slot)
                    queued = false
                } else if slot.queuedBytes + cost > limits.queuedBytesMaxPerPeer {
                    shared.announceLoss(of: peer, reason: "send queue full: \(slot.queuedBytes) bytes queued, "
                        + "queuedBytesMaxPerPeer is \(limits.queuedBytesMaxPerPeer)", lossesMax: lossesMax)
                    shared.reset(slot)
                    queued = false
                } else {
                    slot.frames.append(bytes)
                    slot.queuedBytes += cost
                    queued = true
                }
            } else {
                shared.announceLoss(of: peer, reason: "unknown peer (no address set)", lossesMax: lossesMax)
                queued = false
            }
            let signal = !shared.wakePending
            shared.wakePending = true
            return (queued, signal)
        }
        if signal { wake.signal() }
        return queued
    }

    /// Emits an event on the channel thread, unless shutdown() began; counted first, so whoever saw the event
    /// sees the count.
    func emit(_ event: ControlChannel.Event) {
        guard !stopRequested.load(ordering: .relaxed) else { return }
        counters.withLock { counters in
            switch event {
            case let .received(_, bytes):
                counters.framesIn += 1
                counters.bytesIn += UInt64(bytes.count)
            case .lost:
                counters.lost += 1
            }
        }
        onEvent(event)
    }

    func emitLoss(of peer: ControlPeer, reason: String) { emit(.lost(peer, reason: reason)) }
}
