internal import CRingCast
import Glibc

/// The io_uring TCP transport (rc_io.h) under one Chain replica or client: length-prefixed frames over a few
/// connections. Owned by one thread, which created it (IORING_SETUP_SINGLE_ISSUER): every method but
/// ``wake()`` must be called from that thread.
///
/// Bounded: at most `connectionsMax` connections; per connection at most `sendQueueMax` frames queued for the
/// kernel (beyond that ``send(_:_:)`` returns false and the caller holds or drops, counting it); received bytes
/// stay in rc_io's fixed receive buffer until a whole frame is there (a frame is at most
/// ``ChainWireLimits/frameBytesMax``, checked from its length field before anything is allocated).
final class ChainTransport {
    enum Event {
        case accepted(UInt32)
        case connected(UInt32)
        case connectFailed(UInt32, Int32)
        case frame(UInt32, ChainFrame)
        /// The connection sent bytes that are no frame; it has been closed.
        case malformed(UInt32, ChainWireError)
        case closed(UInt32, Int32)
        case wake
    }

    /// What the frame handler asks the transport to do with the rest of a connection's bytes.
    enum Disposition {
        case next
        /// Stop reading this connection (its last frame is held by the owner: TCP backpressure); resume with
        /// ``resume(_:)``.
        case pause
    }

    struct Settings {
        var connectionsMax: UInt32 = 64
        var receiveBufferBytes: UInt32 = 4 << 20
        var sendQueueMax: UInt32 = 4096
        var limits = ChainWireLimits()
    }

    let settings: Settings
    private let io: OpaquePointer
    private var events = [rc_io_event](repeating: rc_io_event(), count: 128)
    /// Send buffers the kernel still reads from, by token (each the whole buffer of its size class).
    private var buffers: [UInt64: UnsafeMutableRawBufferPointer] = [:]
    /// Send buffers the kernel is done with, by size class (class k holds 2^(k+8) bytes), at most
    /// ``freeBytesMax`` bytes in all: the hot path reuses them instead of allocating a buffer per frame (the profile
    /// in docs/chain-bft.md found malloc/free ≈ 20 % of the CPU).
    private var freeBuffers: [[UnsafeMutableRawBufferPointer]] = Array(repeating: [], count: ChainTransport.sizeClasses)
    private var freeBytes = 0
    static let sizeClasses = 16
    static let freeBytesMax = 16 << 20
    /// Send buffers allocated (not taken from the free lists): with a steady load it stops growing.
    private(set) var sendBuffersAllocated: UInt64 = 0
    private var nextToken: UInt64 = 1
    private var paused: Set<UInt32> = []
    private(set) var framesIn: UInt64 = 0
    private(set) var framesOut: UInt64 = 0
    private(set) var malformedFrames: UInt64 = 0
    private(set) var sendsRefused: UInt64 = 0

    init(_ settings: Settings) throws(ChainBFTError) {
        precondition(settings.limits.frameBytesMax + 4 <= Int(settings.receiveBufferBytes),
                     "a frame must fit the receive buffer")
        var s = rc_io_settings()
        rc_io_settings_default(&s)
        s.conns_max = settings.connectionsMax
        s.recv_buffer_bytes = settings.receiveBufferBytes
        s.recv_bytes_max = min(s.recv_bytes_max, settings.receiveBufferBytes)
        s.send_queue_max = settings.sendQueueMax
        // Few quick retries: the owner retries on its own timer (a peer that starts late or restarts is reached within
        // a reconnect period, not after rc_io's doubling backoff grew to seconds).
        s.connect_retries = 3
        s.connect_backoff_ns = 5_000_000
        var io: OpaquePointer?
        let rc = rc_io_create(&io, &s)
        guard rc == 0, let io else { throw .transport("rc_io_create", rc) }
        self.io = io
        self.settings = settings
    }

    deinit {
        rc_io_destroy(io)
        for buffer in buffers.values { buffer.deallocate() }
        for list in freeBuffers { for buffer in list { buffer.deallocate() } }
    }

    static func address(_ host: String, _ port: UInt16) throws(ChainBFTError) -> rc_io_addr {
        var address = rc_io_addr()
        let rc = rc_io_addr_parse(host, port, &address)
        guard rc == 0 else { throw .badAddress("\(host):\(port)") }
        return address
    }

    /// Listens on host:port (0: any free port); returns the port bound.
    func listen(host: String, port: UInt16) throws(ChainBFTError) -> UInt16 {
        var address = try Self.address(host, port)
        let id = rc_io_listen(io, &address, 128)
        guard id >= 0 else { throw .transport("listen on \(host):\(port)", id) }
        let bound = rc_io_listen_port(io, UInt32(id))
        guard bound > 0 else { throw .transport("listen port", bound) }
        return UInt16(bound)
    }

    /// Starts a connection (retried with backoff inside rc_io); the outcome comes as `.connected` / `.connectFailed`.
    func connect(host: String, port: UInt16) throws(ChainBFTError) -> UInt32 {
        var address = try Self.address(host, port)
        let id = rc_io_connect(io, &address)
        guard id >= 0 else { throw .transport("connect to \(host):\(port)", id) }
        return UInt32(id)
    }

    /// Queues one frame (copied: the transport owns the bytes until the kernel is done). false when the connection's
    /// queue is full or it is dead (counted): the caller decides whether to hold or drop.
    @discardableResult
    func send(_ conn: UInt32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { source in
            queue(conn, byteCount: source.count) { $0.copyMemory(from: source) }
        }
    }

    /// Encodes `frame` straight into the buffer the kernel sends from: the payload is copied once on the way out.
    func send(_ conn: UInt32, _ frame: ChainFrame) -> Bool {
        queue(conn, byteCount: ChainWire.encodedSize(frame)) { buffer in
            let written = ChainWire.encode(frame, into: buffer)
            precondition(written == buffer.count, "ChainWire's counting and writing passes disagree")
        }
    }

    /// Encodes several frames back to back into one send buffer: one submission and one completion for all of them
    /// (the tail's replies to one client, a client's requests of one round), the receiver parses them one by one.
    func send(_ conn: UInt32, frames: [ChainFrame]) -> Bool {
        guard !frames.isEmpty else { return true }
        if frames.count == 1 { return send(conn, frames[0]) }
        let total = frames.reduce(0) { $0 + ChainWire.encodedSize($1) }
        let sent = queue(conn, byteCount: total) { buffer in
            var offset = 0
            for frame in frames {
                offset += ChainWire.encode(frame, into: UnsafeMutableRawBufferPointer(rebasing: buffer[offset...]))
            }
            precondition(offset == buffer.count, "ChainWire's counting and writing passes disagree")
        }
        if sent { framesOut += UInt64(frames.count - 1) }
        return sent
    }

    private func queue(_ conn: UInt32, byteCount: Int, _ fill: (UnsafeMutableRawBufferPointer) -> Void) -> Bool {
        guard rc_io_send_space(io, conn) > 0 else {
            sendsRefused += 1
            return false
        }
        let buffer = takeBuffer(byteCount)
        fill(UnsafeMutableRawBufferPointer(rebasing: buffer[0..<byteCount]))
        let token = nextToken
        nextToken += 1
        let rc = rc_io_send(io, conn, buffer.baseAddress, UInt32(byteCount), token)
        guard rc == 0 else {
            giveBack(buffer)
            sendsRefused += 1
            return false
        }
        buffers[token] = buffer
        framesOut += 1
        return true
    }

    func sendSpace(_ conn: UInt32) -> UInt32 { rc_io_send_space(io, conn) }

    /// Send buffers the kernel has not given back yet.
    var sendsInFlight: Int { buffers.count }

    /// The size class of a frame of `byteCount` bytes: the smallest k with 2^(k+8) ≥ byteCount; nil above the largest.
    static func sizeClass(_ byteCount: Int) -> Int? {
        let k = max(0, (Int.bitWidth - (max(byteCount, 1) - 1).leadingZeroBitCount) - 8)
        return k < sizeClasses ? k : nil
    }

    private func takeBuffer(_ byteCount: Int) -> UnsafeMutableRawBufferPointer {
        if let k = Self.sizeClass(byteCount) {
            if let reused = freeBuffers[k].popLast() {
                freeBytes -= reused.count
                return reused
            }
            sendBuffersAllocated += 1
            return .allocate(byteCount: 256 << k, alignment: 16)
        }
        sendBuffersAllocated += 1
        return .allocate(byteCount: byteCount, alignment: 16)
    }

    private func giveBack(_ buffer: UnsafeMutableRawBufferPointer) {
        if let k = Self.sizeClass(buffer.count), buffer.count == 256 << k, freeBytes + buffer.count <= Self.freeBytesMax {
            freeBuffers[k].append(buffer)
            freeBytes += buffer.count
        } else {
            buffer.deallocate()
        }
    }

    func close(_ conn: UInt32) {
        paused.remove(conn)
        _ = rc_io_close(io, conn)
    }

    /// Any thread: makes the owner's ``poll(timeoutNanos:_:)`` return with `.wake`.
    func wake() { _ = rc_io_wake(io) }

    /// Reads the frames waiting on a paused connection again.
    func resume(_ conn: UInt32, _ handle: (Event) -> Disposition) {
        guard paused.remove(conn) != nil else { return }
        _ = rc_io_recv_pause(io, conn, false)
        drain(conn, handle)
    }

    /// Waits up to `timeoutNanos` for events and hands each to `handle` (frames decoded, in order per connection).
    func poll(timeoutNanos: Int64, _ handle: (Event) -> Disposition) throws(ChainBFTError) {
        let count = events.withUnsafeMutableBufferPointer { rc_io_wait(io, $0.baseAddress, 128, timeoutNanos) }
        guard count >= 0 else {
            if count == -EINTR { return }
            throw .transport("rc_io_wait", count)
        }
        for index in 0..<Int(count) {
            let e = events[index]
            switch Int(e.type) {
            case Int(RC_IO_EVENT_ACCEPTED.rawValue): _ = handle(.accepted(e.conn))
            case Int(RC_IO_EVENT_CONNECTED.rawValue): _ = handle(.connected(e.conn))
            case Int(RC_IO_EVENT_CONNECT_FAILED.rawValue):
                _ = rc_io_close(io, e.conn)
                _ = handle(.connectFailed(e.conn, e.error))
            case Int(RC_IO_EVENT_DATA.rawValue): if !paused.contains(e.conn) { drain(e.conn, handle) }
            case Int(RC_IO_EVENT_SEND_DONE.rawValue):
                if let buffer = buffers.removeValue(forKey: e.token) { giveBack(buffer) }
            case Int(RC_IO_EVENT_CLOSED.rawValue):
                paused.remove(e.conn)
                _ = rc_io_close(io, e.conn)
                _ = handle(.closed(e.conn, e.error))
            case Int(RC_IO_EVENT_WAKE.rawValue): _ = handle(.wake)
            default: break
            }
        }
    }

    /// Parses whole frames in place and consumes them; a malformed one closes the connection (counted).
    private func drain(_ conn: UInt32, _ handle: (Event) -> Disposition) {
        while true {
            var data: UnsafePointer<UInt8>?
            var available = 0
            guard rc_io_recv_peek(io, conn, &data, &available) == 0, let data, available > 0 else { return }
            let bytes = UnsafeRawBufferPointer(start: data, count: available)
            let result: Result<(Int, ChainFrame)?, ChainWireError>
            do throws(ChainWireError) {
                if let length = try ChainWire.frameLength(bytes, limits: settings.limits) {
                    let frame = try ChainWire.decode(UnsafeRawBufferPointer(rebasing: bytes[0..<length]), limits: settings.limits)
                    result = .success((length, frame))
                } else {
                    result = .success(nil)
                }
            } catch {
                result = .failure(error)
            }
            switch result {
            case .success(nil): return
            case .success(let (length, frame)?):
                _ = rc_io_recv_consume(io, conn, length)
                framesIn += 1
                if case .pause = handle(.frame(conn, frame)) {
                    paused.insert(conn)
                    _ = rc_io_recv_pause(io, conn, true)
                    return
                }
            case .failure(let error):
                malformedFrames += 1
                _ = rc_io_close(io, conn)
                _ = handle(.malformed(conn, error))
                return
            }
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds (the shells read the clock; the core never does).
func monotonicNanos() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}
