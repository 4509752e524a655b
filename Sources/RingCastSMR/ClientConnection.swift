#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// What a connection shares with the client port's event loop (``ClientServer``): the loop's wake-up pipe and the
/// loop's thread. A class of its own so that a connection outliving the port (a pending reply) never touches a freed
/// server.
final class ClientLoopSignal: Sendable {
    let readFD: Int32
    let writeFD: Int32
    /// `pthread_self()` of the loop thread (0 before it starts).
    let loopThread = Atomic<UInt>(0)
    /// A byte is in the pipe and the loop has not drained it yet: one write per wake-up, however many callers.
    let wakePending = Atomic<Bool>(false)

    init() throws(SMRError) {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw .system(call: "pipe", errno: errno) }
        readFD = fds[0]
        writeFD = fds[1]
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
    }

    deinit {
        Glibc.close(readFD)
        Glibc.close(writeFD)
    }

    /// True on the loop thread.
    var onLoop: Bool { UInt(pthread_self()) == loopThread.load(ordering: .acquiring) }

    /// Makes the loop's `poll` return (any thread).
    func wake() {
        guard !wakePending.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var byte: UInt8 = 1
        _ = write(writeFD, &byte, 1)
    }

    /// The loop, before it looks at what woke it: a wake-up requested after this writes a new byte.
    ///
    /// The pipe is emptied first and the flag cleared after. The other order lost wake-ups: a `wake()` between the
    /// clear and the read set the flag and wrote a byte that this read then took, leaving the flag set over an empty
    /// pipe, so every later `wake()` (shutdown's included) wrote nothing and the loop slept in `poll` for good (a
    /// test's `shutdown` hung in the loop thread's join, SMRTests under load). In this order a `wake()` that finds
    /// the flag still set made its change before this clear, which acquires it (the exchange reads the waker's
    /// releasing exchange), and the loop looks at the changes after it.
    ///
    /// - Parameter midway: runs between the two steps (tests: a `wake()` from another thread lands there).
    func drain(midway: () -> Void = {}) {
        // On the stack: no array per wake-up.
        withUnsafeTemporaryAllocation(byteCount: 64, alignment: 8) { scratch in
            while read(readFD, scratch.baseAddress, scratch.count) > 0 {}
        }
        midway()
        _ = wakePending.exchange(false, ordering: .acquiringAndReleasing)
    }
}

/// One client's connection at a replica. Its socket is non-blocking and read by the client port's one event loop
/// (``ClientServer``); replies are encoded into one byte buffer and written by whichever thread has them — the
/// delivery thread writes a delivered batch's replies itself, one non-blocking `send` per connection
/// (``flushDeferred()``), so a reply costs no thread hand-off. What the socket does not take waits for the loop,
/// which polls the socket for writability and writes the rest (``flush()``).
///
/// Bounded: the client may have at most `windowMax` requests outstanding (received, reply not yet taken for a
/// write); one more is a protocol violation and closes the connection. So the reply buffer holds at most that many
/// frames (plus an error, a welcome and the unsent rest of one write), also when the client stops reading: its
/// socket fills, its replies stay outstanding, and no other connection waits for it (no write ever blocks).
///
/// The descriptor is closed once: by ``releaseDescriptor()`` when no write is in progress, else by that write when
/// it ends — never while another thread may still `send` on it (a reused descriptor number would get its replies).
final class Connection: @unchecked Sendable {
    let fd: Int32
    let id: UInt64
    let windowMax: Int
    let cpu: CPUCounters
    let signal: ClientLoopSignal
    private let monitor = Monitor()
    /// The encoded frames waiting to be written, and how many frames that is.
    private var outbound: [UInt8] = []
    private var outboundFrames = 0
    /// Replies in `outbound` (they still count in `outstanding`).
    private var outboundReplies = 0
    /// What the thread writing now took from `outbound` (swapped with it, so each keeps its capacity).
    private var writing: [UInt8] = []
    private var writeInProgress = false
    /// Replies in `writing` not written in full yet (they count in `outstanding` until their last byte is written).
    private var writingReplies = 0
    /// How much of `writing` is written, and where the first frame not written in full starts.
    private var writtenBytes = 0
    private var writingFrameStart = 0
    private var outstanding = 0
    /// An error frame is queued: once it is written, the connection closes.
    private var closing = false
    private var closed = false
    /// A thread of its own serves this connection with blocking writes (a snapshot pull): nobody else writes.
    private var detached = false
    private var descriptorReleased = false
    private var descriptorClosed = false
    /// Frames were queued with `wake: false` since the last ``flushDeferred()``.
    private var deferred = false
    /// The last write met a full socket: the loop polls it for `POLLOUT` and writes the rest.
    let wantsWritable = Atomic<Bool>(false)

    // The loop's own state of this connection (touched by the loop thread only, or by the one thread that owns the
    // connection while it is detached or in its handshake).
    nonisolated(unsafe) var assembler: FrameAssembler
    /// The connection failed (an error frame is on its way): what the client still sends is read and dropped.
    nonisolated(unsafe) var discarding = false

    init(fd: Int32, id: UInt64, windowMax: Int, frameBytesMax: Int, cpu: CPUCounters, signal: ClientLoopSignal) {
        self.fd = fd
        self.id = id
        self.windowMax = windowMax
        self.cpu = cpu
        self.signal = signal
        assembler = FrameAssembler(frameBytesMax: frameBytesMax)
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

    /// Queues a frame (never blocks: bounded by the window). With `wake: false` (the delivery thread, many replies
    /// per delivered batch) nothing is written yet: the caller calls ``flushDeferred()`` once the batch is applied,
    /// and the result says whether this was the first deferred frame since then. With `wake: true` the frame is
    /// written now, or, on the loop thread, when the loop is done with this connection's receive (one write for all
    /// the answers to it).
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
        let first: Bool? = monitor.withLock {
            guard !closed, !closing else { return nil }
            // + 2: an error frame and a welcome (the rest of a partial write is apart, in `writing`).
            precondition(outboundFrames <= windowMax + 3, "a connection's reply queue outgrew its window")
            append(&outbound)
            outboundFrames += 1
            if countsAsReply { outboundReplies += 1 }
            if wake { return false }
            defer { deferred = true }
            return !deferred
        }
        guard let first else { return false }
        if wake && !signal.onLoop { flush() }
        return first
    }

    /// Writes the frames queued with `wake: false` (the delivery thread, once per connection per delivered batch).
    func flushDeferred() {
        monitor.withLock { deferred = false }
        flush()
    }

    /// Writes what is queued without blocking (`MSG_DONTWAIT`), on the calling thread. What the socket does not take
    /// stays where it is (`writing` from `writtenBytes` on: never copied again, however slowly the client reads) and
    /// the loop is asked to poll for writability. One writer at a time: a thread that finds a write in progress
    /// leaves its frames to that writer (it looks at the queue again before it ends), so bytes leave in queue order.
    func flush() {
        var more = take()
        var blocked = false
        while more {
            let start = writtenBytes
            var offset = start
            var broken = false
            writing.withUnsafeBytes { raw in
                while offset < raw.count {
                    let sent = Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset,
                                          Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                    if sent > 0 { offset += sent; continue }
                    if sent < 0 && errno == EINTR { continue }
                    if sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { blocked = true } else { broken = true }
                    return
                }
            }
            more = monitor.withLock {
                if offset < writing.count {
                    // Part written: the replies whose last byte left leave the window; the rest stay counted.
                    let (sent, frameStart) = Self.repliesComplete(in: writing, from: writingFrameStart, upTo: offset)
                    outstanding -= sent
                    writingReplies -= sent
                    writingFrameStart = frameStart
                    writtenBytes = offset
                } else {
                    outstanding -= writingReplies
                    writingReplies = 0
                    writingFrameStart = 0
                    writtenBytes = 0
                    writing.removeAll(keepingCapacity: true)
                }
                precondition(outstanding >= 0 && writingReplies >= 0, "more replies than requests on a connection")
                // A broken socket: the loop sees the error or the hang-up when it reads, and retires the connection.
                if broken { closed = true }
                if blocked || broken { return finishWrite() }
                // Whatever was queued meanwhile (or the close after an error frame) is this writer's too.
                writeInProgress = false
                return takeLocked()
            }
        }
        if blocked {
            wantsWritable.store(true, ordering: .releasing)
            signal.wake()
        }
    }

    /// Takes the queue for writing; true when the caller writes (false: nothing to write, or a write is in progress).
    private func take() -> Bool {
        monitor.withLock {
            // The writer in progress takes these frames before it ends (it looks at the queue again).
            if writeInProgress { return false }
            return takeLocked()
        }
    }

    private func takeLocked() -> Bool {
        guard !closed, !detached, !descriptorReleased else { return finishWrite() }
        // The rest of a partial write goes first.
        if writtenBytes < writing.count {
            writeInProgress = true
            return true
        }
        guard !outbound.isEmpty else {
            if closing {
                // The error frame is written: close both directions (the loop reads the end and retires it).
                closed = true
                shutdown(fd, Int32(SHUT_RDWR))
            }
            return finishWrite()
        }
        // Replies leave the window when their last byte is written (``flush()``): until then they count, so a
        // client that does not read cannot make this queue grow, and one that counts the replies it received never
        // has more outstanding than the replica counts.
        writingReplies = outboundReplies
        outboundReplies = 0
        outboundFrames = 0
        writing.removeAll(keepingCapacity: true)
        swap(&outbound, &writing)
        writtenBytes = 0
        writingFrameStart = 0
        writeInProgress = true
        return true
    }

    /// Replies (every frame but an error frame) that end at or before `offset` in `bytes` (frames back to back),
    /// counted from the frame starting at `start`; and where the first frame not complete starts. On a partial write
    /// only, each frame walked once.
    private static func repliesComplete(in bytes: [UInt8], from start: Int, upTo offset: Int) -> (Int, Int) {
        var position = start
        var replies = 0
        while position + ClientFrame.lengthBytes + 2 <= offset {
            let length = Int(bytes[position]) | Int(bytes[position + 1]) << 8 | Int(bytes[position + 2]) << 16
                | Int(bytes[position + 3]) << 24
            let end = position + ClientFrame.lengthBytes + length
            guard end <= offset else { break }
            if bytes[position + ClientFrame.lengthBytes + 1] != ClientFrame.errorKind { replies += 1 }
            position = end
        }
        return (replies, position)
    }

    /// Ends a write (the lock held); closes the descriptor if it was released meanwhile. Returns false.
    private func finishWrite() -> Bool {
        writeInProgress = false
        if descriptorReleased && !descriptorClosed {
            descriptorClosed = true
            Glibc.close(fd)
        }
        return false
    }

    /// Sends an error frame, then closes (malformed input, a broken window, too many clients, a failed stream).
    func fail(code: UInt8, message: String) {
        let queued: Bool = monitor.withLock {
            guard !closed, !closing else { return false }
            ClientFrame.error(code: code, message: message).encode(into: &outbound)
            outboundFrames += 1
            closing = true
            return true
        }
        if queued && !signal.onLoop { flush() }
    }

    /// True once the connection is closing or closed (nothing it sends is served any more).
    var isEnding: Bool { monitor.withLock { closing || closed } }

    /// Closes both directions now (a blocked handshake or snapshot stream fails; the loop reads the end).
    func close() {
        monitor.withLock { closed = true }
        shutdown(fd, Int32(SHUT_RDWR))
    }

    /// Hands the connection to a thread of its own (``ClientServer`` serving a snapshot pull): the socket becomes
    /// blocking and nobody else writes to it until ``attach()``.
    func detach() {
        monitor.withLock { detached = true }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
    }

    /// Back to the loop: non-blocking again; what was queued meanwhile (an error frame) is written by the loop.
    func attach() {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        monitor.withLock { detached = false }
    }

    /// The port is done with the connection: closes it and its descriptor (now, or when the write in progress ends).
    func releaseDescriptor() {
        close()
        monitor.withLock {
            descriptorReleased = true
            if !writeInProgress { _ = finishWrite() }
        }
    }
}
