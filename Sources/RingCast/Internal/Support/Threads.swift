#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A self-pipe: `signal()` makes the read end readable until `drain()`; used to wake threads blocked in poll(2).
/// (eventfd would do, but Glibc's Swift overlay does not export it; a non-blocking pipe is portable.)
struct WakePipe: Sendable {
    let readFD: Int32
    let writeFD: Int32

    init() throws(RingCastError) {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw .system(call: "pipe", errno: errno) }
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        readFD = fds[0]
        writeFD = fds[1]
    }

    /// Makes the read end readable (a full pipe is already readable, so EAGAIN is fine).
    func signal() {
        var byte: UInt8 = 1
        _ = write(writeFD, &byte, 1)
    }

    /// Empties the pipe.
    func drain() {
        var scratch = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        while withUnsafeMutableBytes(of: &scratch, { read(readFD, $0.baseAddress, $0.count) }) > 0 {}
    }

    func close() {
        _ = Glibc.close(readFD)
        _ = Glibc.close(writeFD)
    }
}

/// Blocks until one of `fds` is readable or `timeoutMillis` passed (-1 = no limit). Returns the readable ones.
func waitReadable(_ fds: [Int32], timeoutMillis: Int32) -> [Bool] {
    var polls = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
    let result = polls.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), timeoutMillis) }
    if result <= 0 { return Array(repeating: false, count: fds.count) }
    return polls.map { $0.revents & Int16(POLLIN | POLLERR | POLLHUP) != 0 }
}

/// Reads an eventfd (or pipe) once to clear it; never blocks on a non-blocking descriptor.
func clearEventFD(_ fd: Int32) {
    var value: UInt64 = 0
    _ = read(fd, &value, 8)
}

/// A joinable OS thread running a Swift closure (the engine's producer and consumer contracts are per thread,
/// and waiting for an eventfd must not block the cooperative pool).
struct OSThread: Sendable {
    private let handle: pthread_t

    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    init(_ body: @escaping @Sendable () -> Void) throws(RingCastError) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { argument in
            let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        guard result == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            throw .system(call: "pthread_create", errno: result)
        }
        handle = thread
    }

    func join() {
        _ = pthread_join(handle, nil)
    }
}
