import CRingCast
import Foundation
import Glibc
import Testing

/// Frames of the message test: [u32 payload length][u64 sequence][payload], little-endian.
private struct MessageLog {
    var bytes: [UInt8] = []
    var offsets: [Int] = []
    var lengths: [Int] = []

    init(count: Int, sizes: [Int]) {
        for sequence in 0..<count {
            let size = sizes[sequence % sizes.count]
            offsets.append(bytes.count)
            lengths.append(12 + size)
            withUnsafeBytes(of: UInt32(size).littleEndian) { bytes += $0 }
            withUnsafeBytes(of: UInt64(sequence).littleEndian) { bytes += $0 }
            for index in 0..<size { bytes.append(UInt8(truncatingIfNeeded: sequence &* 31 &+ index)) }
        }
    }
}

@Suite("io_uring transport over loopback", .serialized, .enabled(if: ioUringAvailable, "io_uring unavailable here (rc_io_create failed): skipping"))
struct TransportLoopbackTests {
    /// Sends `log` from `client` to `server`, parsing frames in place on arrival; returns frames verified.
    private func transfer(_ harness: Harness, _ log: MessageLog, client: UInt32, server: UInt32) -> (verified: Int, tokensInOrder: Bool) {
        var queued = 0, verified = 0, nextToken: UInt64 = 0, tokensInOrder = true
        log.bytes.withUnsafeBufferPointer { all in
            func fill() {
                while queued < log.offsets.count {
                    let rc = rc_io_send(harness.io, client, all.baseAddress! + log.offsets[queued], UInt32(log.lengths[queued]), UInt64(queued))
                    if rc == -EAGAIN { return }
                    precondition(rc == 0)
                    queued += 1
                }
            }
            fill()
            harness.pump(seconds: 20, until: { verified == log.offsets.count && nextToken == UInt64(log.offsets.count) }) { event in
                if event.type == RC_IO_EVENT_SEND_DONE.rawValue {
                    tokensInOrder = tokensInOrder && event.token == nextToken && event.error == 0
                    nextToken += 1
                }
                fill()
                guard event.type == RC_IO_EVENT_DATA.rawValue && event.conn == server else { return }
                var consumed = 0
                let data = harness.received(server)
                while verified < log.offsets.count, data.count - consumed >= log.lengths[verified] {
                    let expected = all.baseAddress! + log.offsets[verified]
                    if memcmp(data.baseAddress! + consumed, expected, log.lengths[verified]) != 0 { return }
                    consumed += log.lengths[verified]
                    verified += 1
                }
                _ = rc_io_recv_consume(harness.io, server, consumed)
            }
        }
        return (verified, tokensInOrder)
    }

    @Test func tenThousandMessagesArriveByteExactAndInOrder() throws {
        let harness = try Harness(defaultSettings { $0.send_queue_max = 256 })
        let (client, server) = try harness.connectedPair()
        let log = MessageLog(count: 10_000, sizes: [1, 17, 100, 1000, 3000, 20000, 200, 0, 65536])
        // The queue holds 256 entries: the rest waits for SEND_DONE (backpressure, nothing dropped).
        let outcome = transfer(harness, log, client: client, server: server)
        #expect(outcome.verified == 10_000)
        #expect(outcome.tokensInOrder)
        #expect(harness.stats.bytes_out == UInt64(log.bytes.count))
        #expect(harness.stats.send_iovecs > harness.stats.sends, "queued messages are gathered into one sendmsg")
    }

    @Test func tinySendBufferAndHugeMessageStayExact() throws {
        let (a, b) = try plainSocketPair()
        var small: Int32 = 4096 // the kernel doubles it and keeps a minimum (man 7 socket)
        setsockopt(a, SOL_SOCKET, SO_SNDBUF, &small, 4)
        let harness = try Harness(defaultSettings { $0.send_bytes_max = 256 << 10; $0.recv_bytes_max = 64 << 10 })
        let client = UInt32(rc_io_adopt(harness.io, a))
        let server = UInt32(rc_io_adopt(harness.io, b))
        // Entries larger than send_bytes_max and a send buffer far smaller than a send: the kernel takes
        // each send in many pieces (MSG_WAITALL), the stream must still be exact.
        let log = MessageLog(count: 6, sizes: [1 << 20, 5, 300_000])
        var received = 0
        var mismatch = false
        log.bytes.withUnsafeBufferPointer { all in
            for index in log.offsets.indices {
                precondition(rc_io_send(harness.io, client, all.baseAddress! + log.offsets[index], UInt32(log.lengths[index]), UInt64(index)) == 0)
            }
            harness.pump(seconds: 20, until: { received == log.bytes.count || mismatch }) { event in
                guard event.type == RC_IO_EVENT_DATA.rawValue, event.conn == server else { return }
                let data = harness.received(server)
                mismatch = mismatch || memcmp(data.baseAddress!, all.baseAddress! + received, data.count) != 0
                received += data.count
                _ = rc_io_recv_consume(harness.io, server, data.count)
            }
        }
        #expect(!mismatch)
        #expect(received == log.bytes.count)
        #expect(harness.stats.sends > 6, "a 1 MiB entry goes out in send_bytes_max (256 KiB) pieces")
    }

    @Test(arguments: [(false, 0), (true, -ECONNRESET)])
    func peerCloseAndResetAreReported(reset: Bool, expected: Int32) throws {
        let (a, b) = try plainSocketPair()
        let harness = try Harness(defaultSettings())
        let conn = UInt32(rc_io_adopt(harness.io, a))
        _ = harness.pump(seconds: 0.05, until: { false }) // arm the recv
        if reset {
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0) // close sends RST (SO_LINGER 0, man 7 socket)
            setsockopt(b, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        }
        close(b)
        var closed: Int32?
        harness.pump(until: { closed != nil }) { event in
            if event.type == RC_IO_EVENT_CLOSED.rawValue && event.conn == conn { closed = event.error }
        }
        #expect(closed == expected)
        #expect(rc_io_send(harness.io, conn, "x", 1, 0) == -EPIPE)
        #expect(rc_io_close(harness.io, conn) == 0)
    }

    /// Loopback always copies (msg_zerocopy.rst §Loopback): the probe must turn zero-copy off.
    @Test func zeroCopyAutoFallsBackOnLoopback() throws {
        let harness = try Harness(defaultSettings { $0.zerocopy = Int32(RC_IO_ZEROCOPY_AUTO.rawValue); $0.send_bytes_max = 64 << 10 })
        let (client, server) = try harness.connectedPair()
        let log = MessageLog(count: 400, sizes: [65536 - 12])
        let outcome = transfer(harness, log, client: client, server: server)
        #expect(outcome.verified == 400)
        let stats = harness.stats
        #expect(rc_io_zerocopy_state(harness.io, client) == Int32(RC_IO_ZC_STATE_OFF.rawValue))
        #expect(stats.zc_notifications > 0 && stats.zc_copied == stats.zc_notifications)
        #expect(stats.sends_zc < stats.sends, "after the probe, sends are plain")
        var copy = stats
        #expect(rc_io_stats_zerocopy_fraction(&copy) == 0)
    }

    @Test func zeroCopyOnStaysByteExact() throws {
        let harness = try Harness(defaultSettings { $0.zerocopy = Int32(RC_IO_ZEROCOPY_ON.rawValue) })
        let (client, server) = try harness.connectedPair()
        let log = MessageLog(count: 300, sizes: [100_000, 20, 40_000])
        let outcome = transfer(harness, log, client: client, server: server)
        #expect(outcome.verified == 300)
        #expect(outcome.tokensInOrder)
        let stats = harness.stats
        #expect(stats.sends_zc > 0 && stats.sends_zc == stats.zc_notifications)
    }

    @Test func ipv6LoopbackCarriesData() throws {
        let harness = try Harness(defaultSettings())
        var any = rc_io_addr()
        try #require(rc_io_addr_parse("::1", 0, &any) == 0)
        let listener = rc_io_listen(harness.io, &any, 4)
        if listener == -EADDRNOTAVAIL || listener == -EAFNOSUPPORT { return } // no IPv6 on this host
        try #require(listener >= 0)
        var address = rc_io_addr()
        try #require(rc_io_addr_parse("::1", UInt16(rc_io_listen_port(harness.io, UInt32(listener))), &address) == 0)
        let client = rc_io_connect(harness.io, &address)
        try #require(client >= 0)
        var server: UInt32?
        var text = ""
        // Memory lent to rc_io_send must live until SEND_DONE: not a temporary string pointer.
        let message = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 5)
        defer { message.deallocate() }
        _ = message.initialize(from: Array("hello".utf8))
        harness.pump(until: { text == "hello" }) { event in
            if event.type == RC_IO_EVENT_ACCEPTED.rawValue { server = event.conn }
            if event.type == RC_IO_EVENT_CONNECTED.rawValue { _ = rc_io_send(harness.io, UInt32(client), message.baseAddress, 5, 1) }
            if event.type == RC_IO_EVENT_DATA.rawValue, let server, event.conn == server {
                text = String(decoding: harness.received(server), as: UTF8.self)
            }
        }
        #expect(text == "hello")
    }

    @Test func connectToClosedPortIsRefused() throws {
        let harness = try Harness(defaultSettings { $0.connect_retries = 2; $0.connect_backoff_ns = 1_000_000 })
        let (a, b) = try plainSocketPair() // borrow a port that is then closed
        var address = rc_io_addr()
        var length = socklen_t(MemoryLayout.size(ofValue: address.bytes))
        _ = withUnsafeMutableBytes(of: &address.bytes) { getsockname(b, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length) }
        address.length = UInt32(length)
        close(a)
        close(b)
        var closedPort = loopback(port: rc_io_addr_port(&address))
        let conn = rc_io_connect(harness.io, &closedPort)
        try #require(conn >= 0)
        var failed: Int32?
        harness.pump(until: { failed != nil }) { event in
            if event.type == RC_IO_EVENT_CONNECT_FAILED.rawValue { failed = event.error }
        }
        #expect(failed == -ECONNREFUSED)
        #expect(harness.stats.connect_retries == 2)
    }

    @Test func listeningOnABusyPortIsAddressInUse() throws {
        let harness = try Harness(defaultSettings())
        var any = loopback(port: 0)
        let first = rc_io_listen(harness.io, &any, 4)
        try #require(first >= 0)
        var busy = loopback(port: UInt16(rc_io_listen_port(harness.io, UInt32(first))))
        // SO_REUSEADDR does not allow two listeners on one port (man 7 socket).
        #expect(rc_io_listen(harness.io, &busy, 4) == -EADDRINUSE)
    }

    /// A paused or full receive buffer keeps no recv in flight: TCP's window closes (backpressure).
    @Test func fullReceiveBufferStopsReading() throws {
        let harness = try Harness(defaultSettings { $0.recv_buffer_bytes = 64 << 10; $0.recv_bytes_max = 64 << 10 })
        let (client, server) = try harness.connectedPair()
        let log = MessageLog(count: 64, sizes: [64 << 10])
        log.bytes.withUnsafeBufferPointer { all in
            for index in 0..<64 { _ = rc_io_send(harness.io, client, all.baseAddress! + log.offsets[index], UInt32(log.lengths[index]), UInt64(index)) }
            harness.pump(seconds: 0.5, until: { false })
        }
        #expect(harness.received(server).count == 64 << 10, "exactly one buffer's worth, then it stops")
        #expect(harness.stats.recv_full_stalls >= 1)
        #expect(rc_io_recv_consume(harness.io, server, (64 << 10) + 1) == -EINVAL)
    }
}

@Suite("rc_io settings validation")
struct TransportSettingsTests {
    @Test(arguments: [
        "conns_max", "recv_buffer_bytes", "recv_bytes_max", "send_queue_max", "send_iovecs_max", "send_bytes_max",
        "zc_pending_max", "zc_probe_sends", "connect_retries", "connect_backoff_ns", "sq_entries", "zerocopy",
    ])
    func beyondMaximumIsInvalid(setting: String) {
        var settings = defaultSettings()
        switch setting {
        case "conns_max": settings.conns_max = RC_IO_CONNS_MAX + 1
        case "recv_buffer_bytes": settings.recv_buffer_bytes = RC_IO_RECV_BUFFER_BYTES_MAX + 4096
        case "recv_bytes_max": settings.recv_bytes_max = settings.recv_buffer_bytes + 1
        case "send_queue_max": settings.send_queue_max = RC_IO_SEND_QUEUE_MAX + 1
        case "send_iovecs_max": settings.send_iovecs_max = RC_IO_SEND_IOVECS_MAX + 1
        case "send_bytes_max": settings.send_bytes_max = RC_IO_SEND_BYTES_MAX + 1
        case "zc_pending_max": settings.zc_pending_max = RC_IO_ZC_PENDING_MAX + 1
        case "zc_probe_sends": settings.zc_probe_sends = RC_IO_ZC_PROBE_SENDS_MAX + 1
        case "connect_retries": settings.connect_retries = RC_IO_CONNECT_RETRIES_MAX + 1
        case "connect_backoff_ns": settings.connect_backoff_ns = RC_IO_CONNECT_BACKOFF_NS_MAX + 1
        case "sq_entries": settings.sq_entries = RC_IO_SQ_ENTRIES_MAX + 1
        default: settings.zerocopy = 7
        }
        var io: OpaquePointer?
        #expect(rc_io_create(&io, &settings) == -EINVAL)
        #expect(io == nil)
    }

    @Test func zeroAndUnalignedAreInvalid() {
        var settings = defaultSettings { $0.conns_max = 0 }
        var io: OpaquePointer?
        #expect(rc_io_create(&io, &settings) == -EINVAL)
        settings = defaultSettings { $0.recv_buffer_bytes = 5000 } // not a page multiple: cannot be mirrored
        #expect(rc_io_create(&io, &settings) == -EINVAL)
    }

    @Test(arguments: ["127.0.0.1", "::1", "localhost", "10.1.2.3", "fe80::1"])
    func literalAddressesParse(host: String) {
        var address = rc_io_addr()
        #expect(rc_io_addr_parse(host, 4242, &address) == 0)
        #expect(rc_io_addr_port(&address) == 4242)
    }

    @Test(arguments: ["example.com", "", "1.2.3", "[::1]", "127.0.0.1:80"])
    func otherHostsAreInvalid(host: String) {
        var address = rc_io_addr()
        #expect(rc_io_addr_parse(host, 1, &address) == -EINVAL)
    }
}

@Suite("io_uring transport wake-up", .enabled(if: ioUringAvailable, "io_uring unavailable here (rc_io_create failed): skipping"))
struct TransportWakeTests {
    /// Another thread may only write to the eventfd (SINGLE_ISSUER); the owner sees one WAKE event.
    @Test func wakeFromAnotherThreadEndsTheWait() throws {
        let harness = try Harness(defaultSettings())
        let address = Int(bitPattern: harness.io)
        let done = DispatchSemaphore(value: 0)
        let waker = Thread {
            usleep(50_000)
            precondition(rc_io_wake(OpaquePointer(bitPattern: address)) == 0)
            precondition(rc_io_wake(OpaquePointer(bitPattern: address)) == 0)
            done.signal()
        }
        waker.start()
        defer { done.wait() } // the rc_io must outlive every rc_io_wake
        // One wait with a 10 s timeout: only the wake can end it with an event.
        var events = [rc_io_event](repeating: rc_io_event(), count: 8)
        let count = events.withUnsafeMutableBufferPointer { rc_io_wait(harness.io, $0.baseAddress, 8, 10_000_000_000) }
        #expect(count >= 1)
        #expect(events.prefix(Int(max(count, 0))).contains { $0.type == RC_IO_EVENT_WAKE.rawValue && $0.conn == RC_IO_CONN_NONE })
    }
}
