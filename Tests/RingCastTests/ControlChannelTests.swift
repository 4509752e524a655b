@testable import RingCast
import RingCastKeys
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

// ControlChannel: the membership layer's control-plane transport (frames over TCP, one thread, bounded).
// Every test uses loopback ports the kernel just handed out, so the suite may run next to other suites.

// MARK: - Channels over loopback

@Suite(.serialized) struct ControlChannelTests {
    /// Two and three members send hundreds of frames (0 bytes to 1 MiB) to each other at once; every receiver gets
    /// every sender's frames in order, byte-exact.
    @Test(arguments: [2, 3])
    func framesArriveInOrderByteExact(members count: Int) async throws {
        let members = try (0..<count).map { try ControlMember(node: UInt32($0 + 1)) }
        defer { for member in members { member.channel.shutdown() } }
        for member in members {
            for other in members where other.peer != member.peer { member.channel.setPeer(other.peer, address: other.address) }
            try member.channel.start()
        }
        let framesPerStream = 300
        for index in 0..<framesPerStream {
            for sender in members {
                let frame = controlTestFrame(source: sender.peer.node, index: index)
                for receiver in members where receiver.peer != sender.peer {
                    #expect(sender.channel.send(frame, to: receiver.peer), "frame \(index)")
                }
            }
        }
        let complete = await controlEventually(within: 60) {
            members.allSatisfy { receiver in
                members.allSatisfy { sender in
                    sender.peer == receiver.peer || receiver.log.received(from: sender.peer).count == framesPerStream
                }
            }
        }
        #expect(complete)
        for receiver in members {
            for sender in members where sender.peer != receiver.peer {
                let frames = receiver.log.received(from: sender.peer)
                #expect(frames.count == framesPerStream)
                for (index, frame) in frames.enumerated() where frame != controlTestFrame(source: sender.peer.node, index: index) {
                    Issue.record("\(receiver.peer) got a wrong frame \(index) from \(sender.peer) (\(frame.count) bytes)")
                    break
                }
            }
            #expect(receiver.log.losses().isEmpty)
        }
        let expectedBytes = (0..<framesPerStream).reduce(0) { $0 + controlTestFrame(source: 1, index: $1).count } * (count - 1)
        for member in members {
            let statistics = member.channel.statistics
            #expect(statistics.framesIn == UInt64(framesPerStream * (count - 1)))
            #expect(statistics.bytesIn == UInt64(expectedBytes))
            #expect(statistics.connectsOut == UInt64(count - 1))
            #expect(statistics.accepts == UInt64(count - 1))
            #expect(statistics.lost == 0 && statistics.rejected == 0)
        }
        // framesOut counts frames fully handed to the kernel: equal once the receivers have them all.
        #expect(members.allSatisfy { $0.channel.statistics.framesOut == UInt64(framesPerStream * (count - 1)) })
    }

    /// Authenticated channels (issue 14): with the same cluster key frames flow both ways, queued before the
    /// handshake finished included; a channel with another key gets nothing through, and both sides count it.
    @Test(arguments: [Security.Authentication.handshake, .frames])
    func authenticatedChannels(mode: Security.Authentication) async throws {
        let key = try ClusterKey.generate()
        let secure = Security(clusterKey: key, authentication: mode)
        let a = try ControlMember(node: 1, security: secure)
        let b = try ControlMember(node: 2, security: secure)
        let stranger = try ControlMember(node: 3, security: Security(clusterKey: try ClusterKey.generate()))
        defer { for member in [a, b, stranger] { member.channel.shutdown() } }
        a.channel.setPeer(b.peer, address: b.address)
        b.channel.setPeer(a.peer, address: a.address)
        stranger.channel.setPeer(a.peer, address: a.address)
        for member in [a, b, stranger] { try member.channel.start() }
        for index in 0..<50 {
            #expect(a.channel.send(controlTestFrame(source: 1, index: index), to: b.peer))
            #expect(b.channel.send(controlTestFrame(source: 2, index: index), to: a.peer))
        }
        #expect(stranger.channel.send([1, 2, 3], to: a.peer))
        #expect(await controlEventually(within: 20) {
            b.log.received(from: a.peer).count == 50 && a.log.received(from: b.peer).count == 50
                && !stranger.log.losses().isEmpty && a.channel.statistics.authRejected >= 1
        })
        for index in 0..<50 { #expect(b.log.received(from: a.peer)[index] == controlTestFrame(source: 1, index: index)) }
        #expect(a.log.received(from: stranger.peer).isEmpty, "nothing from a process without the key")
        #expect(a.channel.statistics.authHandshakes == 2 && b.channel.statistics.authHandshakes == 2)
        #expect(stranger.channel.statistics.authRejected >= 1 && stranger.channel.statistics.authHandshakes == 0)
        #expect(a.log.losses().isEmpty && b.log.losses().isEmpty)
        // With frame tags: the hello and the 50 frames each way, every one verified.
        let tagged: UInt64 = mode == .frames ? 51 : 0
        #expect(a.channel.statistics.authMacsIn == tagged && b.channel.statistics.authMacsIn == tagged)
        #expect(a.channel.statistics.authMacsOut == tagged && a.channel.statistics.authMacFailures == 0)
    }

    /// The callback may send: a member that echoes every frame back (the pattern of a request/response).
    @Test func callbackCanSendAnEcho() async throws {
        let echoChannel = Mutex<ControlChannel?>(nil)
        let client = try ControlMember(node: 1)
        let server = try ControlMember(node: 2) { event in
            if case let .received(from, bytes) = event {
                _ = echoChannel.withLock { $0 }?.send(bytes, to: from)
            }
        }
        echoChannel.withLock { $0 = server.channel }
        defer {
            client.channel.shutdown()
            server.channel.shutdown()
            echoChannel.withLock { $0 = nil }
        }
        client.channel.setPeer(server.peer, address: server.address)
        server.channel.setPeer(client.peer, address: client.address)
        try client.channel.start()
        try server.channel.start()
        for index in 0..<100 { client.channel.send(controlTestFrame(source: 9, index: index), to: server.peer) }
        #expect(await controlEventually { client.log.received(from: server.peer).count == 100 })
        #expect(client.log.received(from: server.peer) == (0..<100).map { controlTestFrame(source: 9, index: $0) })
    }

    /// Shutting a member down (its sockets close, as on kill -9) shows as `.lost` at the others within a bound.
    @Test func aStoppedMemberIsLostAtTheOthers() async throws {
        let members = try (1...3).map { try ControlMember(node: UInt32($0)) }
        defer { for member in members { member.channel.shutdown() } }
        for member in members {
            for other in members where other.peer != member.peer { member.channel.setPeer(other.peer, address: other.address) }
            try member.channel.start()
        }
        for sender in members {
            for receiver in members where receiver.peer != sender.peer { sender.channel.send([1, 2, 3], to: receiver.peer) }
        }
        #expect(await controlEventually { members.allSatisfy { $0.log.receivedCount == 2 } })
        let victim = members[2]
        let clock = ContinuousClock()
        let stoppedAt = clock.now
        victim.channel.shutdown()
        #expect(await controlEventually(within: 5) { members[0..<2].allSatisfy { !$0.log.losses(of: victim.peer).isEmpty } })
        for survivor in members[0..<2] {
            let lostAt = try #require(survivor.log.firstLoss(of: victim.peer))
            #expect(lostAt - stoppedAt < .seconds(5))
        }
        #expect(members[0].log.losses(of: members[1].peer).isEmpty)
        // The survivors still talk.
        members[0].channel.send([4], to: members[1].peer)
        #expect(await controlEventually { members[1].log.received(from: members[0].peer) == [[1, 2, 3], [4]] })
    }

    /// Garbage, a wrong magic, a wrong version, a close before the hello, and an oversize frame after a good hello
    /// are each rejected and counted; only the connection is closed, and the channel keeps working.
    @Test func malformedConnectionsAreRejectedAndTheChannelKeepsWorking() async throws {
        let member = try ControlMember(node: 1)
        let other = try ControlMember(node: 2)
        defer {
            member.channel.shutdown()
            other.channel.shutdown()
        }
        member.channel.setPeer(other.peer, address: other.address)
        other.channel.setPeer(member.peer, address: member.address)
        try member.channel.start()
        try other.channel.start()

        let intruder = ControlPeer(node: 99, incarnation: 1)
        var wrongMagic = ControlFrame.hello(from: intruder)
        wrongMagic[4] = UInt8(ascii: "X")
        var wrongVersion = ControlFrame.hello(from: intruder)
        wrongVersion[8] = 3 // version 3 (little-endian)
        var oversize = ControlFrame.hello(from: intruder)
        ControlFrame.appendHeader(length: member.channel.limits.frameBytesMax + 1, to: &oversize)
        let attempts: [[UInt8]] = [Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8), wrongMagic, wrongVersion, [], oversize]
        for bytes in attempts {
            let fd = try RawControlTCP.connect(port: member.address.port)
            defer { Glibc.close(fd) }
            RawControlTCP.write(fd, bytes)
            if bytes.isEmpty { Glibc.shutdown(fd, Int32(SHUT_WR)) }
            #expect(RawControlTCP.waitForClose(fd, seconds: 5), "the channel closes a malformed connection: \(bytes.prefix(8))")
        }
        #expect(await controlEventually { member.channel.statistics.rejected == UInt64(attempts.count) })
        // The intruder had identified itself before its oversize frame: that connection's end is a loss.
        #expect(await controlEventually { member.log.losses(of: intruder).count == 1 })
        #expect(member.log.received(from: intruder).isEmpty)
        member.channel.send([7], to: other.peer)
        other.channel.send([8], to: member.peer)
        #expect(await controlEventually { other.log.received(from: member.peer) == [[7]] && member.log.received(from: other.peer) == [[8]] })
        #expect(member.log.losses(of: other.peer).isEmpty)
    }

    /// An accepted connection that never completes its hello is closed after connectTimeoutMillis.
    @Test func aSilentConnectionIsRejectedAfterTheTimeout() async throws {
        var limits = ControlChannel.Limits()
        limits.connectTimeoutMillis = 200
        let member = try ControlMember(node: 1, limits: limits)
        defer { member.channel.shutdown() }
        try member.channel.start()
        let fd = try RawControlTCP.connect(port: member.address.port)
        defer { Glibc.close(fd) }
        RawControlTCP.write(fd, [0, 0, 0])
        #expect(RawControlTCP.waitForClose(fd, seconds: 5))
        #expect(member.channel.statistics.rejected == 1)
    }

    /// Accepted connections are bounded by 2 × peersMax: one more is closed at once and counted.
    @Test func acceptedConnectionsAreBounded() async throws {
        var limits = ControlChannel.Limits()
        limits.peersMax = 1
        limits.connectTimeoutMillis = 10_000
        let member = try ControlMember(node: 1, limits: limits)
        defer { member.channel.shutdown() }
        try member.channel.start()
        let held = try (0..<2).map { _ in try RawControlTCP.connect(port: member.address.port) }
        defer { for fd in held { Glibc.close(fd) } }
        #expect(await controlEventually { member.channel.statistics.accepts == 2 })
        let extra = try RawControlTCP.connect(port: member.address.port)
        defer { Glibc.close(extra) }
        #expect(RawControlTCP.waitForClose(extra, seconds: 5))
        #expect(member.channel.statistics.rejected == 1)
        #expect(!RawControlTCP.waitForClose(held[0], seconds: 0.05), "the first two are still waiting for a hello")
    }

    /// `send` refuses a frame above frameBytesMax (false, and `.lost`); the next frame goes on a fresh connection.
    @Test func oversizeFrameIsRefusedBySend() async throws {
        var limits = ControlChannel.Limits()
        limits.frameBytesMax = 1024
        limits.queuedBytesMaxPerPeer = 64 << 10
        let sender = try ControlMember(node: 1, limits: limits)
        let receiver = try ControlMember(node: 2, limits: limits)
        defer {
            sender.channel.shutdown()
            receiver.channel.shutdown()
        }
        sender.channel.setPeer(receiver.peer, address: receiver.address)
        try sender.channel.start()
        try receiver.channel.start()
        #expect(sender.channel.send(Array(repeating: 1, count: 1024), to: receiver.peer))
        #expect(await controlEventually { receiver.log.received(from: sender.peer).count == 1 })
        #expect(!sender.channel.send(Array(repeating: 2, count: 1025), to: receiver.peer))
        #expect(await controlEventually { sender.log.losses(of: receiver.peer).count == 1 })
        #expect(sender.log.losses(of: receiver.peer).first?.contains("frameBytesMax") == true)
        #expect(sender.channel.send([3], to: receiver.peer))
        #expect(await controlEventually { receiver.log.received(from: sender.peer).last == [3] })
        #expect(sender.channel.statistics.connectsOut == 2)
    }

    @Test func sendToAnUnknownPeerIsLost() async throws {
        let member = try ControlMember(node: 1)
        defer { member.channel.shutdown() }
        try member.channel.start()
        let stranger = ControlPeer(node: 5, incarnation: 5)
        #expect(!member.channel.send([1], to: stranger))
        #expect(await controlEventually { member.log.losses(of: stranger).first?.contains("unknown peer") == true })
        #expect(member.channel.statistics.lost == 1)
    }

    /// A peer that stops and restarts on the same port (first with the same identity, then as a new incarnation)
    /// is lost, then reached again by the next send; its own sends arrive on its new connection.
    @Test func reconnectsAfterThePeerRestartsOnTheSamePort() async throws {
        let member = try ControlMember(node: 1)
        var peer = try ControlMember(node: 2)
        defer {
            member.channel.shutdown()
            peer.channel.shutdown()
        }
        let port = peer.address.port
        member.channel.setPeer(peer.peer, address: peer.address)
        try member.channel.start()
        try peer.channel.start()
        #expect(member.channel.send([1], to: peer.peer))
        #expect(await controlEventually { peer.log.received(from: member.peer) == [[1]] })
        for incarnation: UInt32 in [1, 2] {
            let old = peer.peer
            let lossesBefore = member.log.losses(of: old).count
            peer.channel.shutdown()
            #expect(await controlEventually { member.log.losses(of: old).count > lossesBefore })
            peer = try ControlMember(node: 2, incarnation: incarnation, port: port)
            if peer.peer != old {
                member.channel.removePeer(old)
                member.channel.setPeer(peer.peer, address: peer.address)
            }
            peer.channel.setPeer(member.peer, address: member.address)
            try peer.channel.start()
            let tag = UInt8(incarnation)
            #expect(member.channel.send([10 + tag], to: peer.peer))
            #expect(await controlEventually { peer.log.received(from: member.peer) == [[10 + tag]] })
            #expect(peer.channel.send([20 + tag], to: member.peer))
            #expect(await controlEventually { member.log.received(from: peer.peer).last == [20 + tag] })
        }
        #expect(member.channel.statistics.connectsOut == 3)
    }

    /// A peer that accepts and never reads: the queue fills, `send` returns false and the peer is lost, instead
    /// of memory growing without bound.
    @Test func aPeerThatNeverReadsIsLostAtTheQueueLimit() async throws {
        var limits = ControlChannel.Limits()
        limits.frameBytesMax = 64 << 10
        limits.queuedBytesMaxPerPeer = 1 << 20
        let member = try ControlMember(node: 1, limits: limits)
        defer { member.channel.shutdown() }
        let (listener, port) = try RawControlTCP.listen(backlog: 8)
        defer { Glibc.close(listener) }
        let sink = ControlPeer(node: 2, incarnation: 1)
        member.channel.setPeer(sink, address: try Address(host: "127.0.0.1", port: port))
        try member.channel.start()
        let frame = [UInt8](repeating: 0xAB, count: 64 << 10)
        #expect(member.channel.send(frame, to: sink))
        let accepted = try RawControlTCP.accept(listener, seconds: 5)
        defer { Glibc.close(accepted) }
        var sent = 1
        // Paced so that the channel thread keeps up while the peer's socket takes data: the refusal comes from the
        // peer not reading. The kernel's buffers take some megabytes first; 64 MiB is far beyond them.
        while sent < 1024, member.channel.send(frame, to: sink) {
            sent += 1
            try await Task.sleep(for: .milliseconds(1))
        }
        #expect(sent < 1024, "send never refused a frame to a peer that does not read")
        #expect(member.channel.statistics.bytesOut >= UInt64(limits.queuedBytesMaxPerPeer),
                "the kernel took more than the queue bound before the queue filled")
        #expect(await controlEventually { member.log.losses(of: sink).first?.contains("queue") == true })
        #expect(member.channel.statistics.bytesOut < UInt64(sent) * UInt64(frame.count))
    }

    @Test func connectionRefusedIsLost() async throws {
        let member = try ControlMember(node: 1)
        defer { member.channel.shutdown() }
        let nobody = ControlPeer(node: 3, incarnation: 1)
        member.channel.setPeer(nobody, address: try Address(host: "127.0.0.1", port: freeControlPort()))
        try member.channel.start()
        #expect(member.channel.send([1], to: nobody))
        #expect(await controlEventually { member.log.losses(of: nobody).first?.contains("connect") == true })
        #expect(member.channel.statistics.connectsOut == 0)
    }

    /// A listener whose accept queue is full drops the SYN: the connect times out and the peer is lost.
    @Test func connectTimeoutIsLost() async throws {
        var limits = ControlChannel.Limits()
        limits.connectTimeoutMillis = 300
        let member = try ControlMember(node: 1, limits: limits)
        defer { member.channel.shutdown() }
        // Backlog 0 holds one unaccepted connection on Linux; the raw client takes it.
        let (listener, port) = try RawControlTCP.listen(backlog: 0)
        defer { Glibc.close(listener) }
        let filler = try RawControlTCP.connect(port: port)
        defer { Glibc.close(filler) }
        let silent = ControlPeer(node: 4, incarnation: 1)
        member.channel.setPeer(silent, address: try Address(host: "127.0.0.1", port: port))
        try member.channel.start()
        #expect(member.channel.send([1], to: silent))
        #expect(await controlEventually(within: 5) { !member.log.losses(of: silent).isEmpty })
        let reason = member.log.losses(of: silent).first ?? ""
        #expect(reason.contains("timed out"), "\(reason)")
    }

    /// removePeer closes both directions without an event here; the other side sees its links end.
    @Test func removePeerForgetsThePeer() async throws {
        let member = try ControlMember(node: 1)
        let other = try ControlMember(node: 2)
        defer {
            member.channel.shutdown()
            other.channel.shutdown()
        }
        member.channel.setPeer(other.peer, address: other.address)
        other.channel.setPeer(member.peer, address: member.address)
        try member.channel.start()
        try other.channel.start()
        member.channel.send([1], to: other.peer)
        other.channel.send([2], to: member.peer)
        #expect(await controlEventually { member.log.receivedCount == 1 && other.log.receivedCount == 1 })
        member.channel.removePeer(other.peer)
        #expect(await controlEventually { !other.log.losses(of: member.peer).isEmpty })
        #expect(member.log.losses().isEmpty)
        #expect(!member.channel.send([3], to: other.peer))
        #expect(await controlEventually { member.log.losses(of: other.peer).first?.contains("unknown peer") == true })
    }

    /// The callback may shut the channel down, here by dropping its last reference (deinit on the channel
    /// thread): no event follows, the thread cleans up alone, and the port is free again.
    @Test func shutdownFromTheCallbackStopsAfterIt() async throws {
        let holder = Mutex<ControlChannel?>(nil)
        let log = ControlEventLog()
        let stopping = ControlPeer(node: 2, incarnation: 1)
        let address = try Address(host: "127.0.0.1", port: freeControlPort())
        do {
            let channel = try ControlChannel(me: stopping, listen: address) { event in
                log.record(event)
                _ = holder.withLock { channel in
                    defer { channel = nil }
                    return channel
                }
            }
            holder.withLock { $0 = channel }
            try channel.start()
        }
        let sender = try ControlMember(node: 1)
        defer { sender.channel.shutdown() }
        sender.channel.setPeer(stopping, address: address)
        try sender.channel.start()
        for index in 0..<3 { sender.channel.send([UInt8(index)], to: stopping) }
        #expect(await controlEventually { log.receivedCount == 1 })
        #expect(await controlEventually { !sender.log.losses(of: stopping).isEmpty })
        #expect(await controlEventually { (try? ControlChannel(me: stopping, listen: address) { _ in }) != nil })
        #expect(log.received(from: sender.peer) == [[0]])
    }

    @Test func lifecycleAndLimits() async throws {
        var limits = ControlChannel.Limits()
        limits.peersMax = 2
        let member = try ControlMember(node: 1, limits: limits)
        let address = member.address
        #expect(member.channel.setPeer(ControlPeer(node: 2, incarnation: 1), address: address))
        #expect(member.channel.setPeer(ControlPeer(node: 3, incarnation: 1), address: address))
        #expect(member.channel.setPeer(ControlPeer(node: 2, incarnation: 1), address: address), "replacing is fine")
        #expect(!member.channel.setPeer(ControlPeer(node: 4, incarnation: 1), address: address), "peersMax")
        #expect(throws: RingCastError.addressInUse(address)) {
            _ = try ControlChannel(me: ControlPeer(node: 9, incarnation: 1), listen: address) { _ in }
        }
        try member.channel.start()
        #expect(throws: RingCastError.alreadyStarted) { try member.channel.start() }
        member.channel.shutdown()
        member.channel.shutdown()
        #expect(!member.channel.send([1], to: ControlPeer(node: 2, incarnation: 1)))
        #expect(throws: RingCastError.alreadyStarted) { try member.channel.start() }
        // The port is free again.
        let again = try ControlChannel(me: member.peer, listen: address) { _ in }
        again.shutdown()

        var bad = ControlChannel.Limits()
        bad.queuedBytesMaxPerPeer = bad.frameBytesMax
        #expect(throws: RingCastError.self) {
            _ = try ControlChannel(me: member.peer, listen: address, limits: bad) { _ in }
        }
        // A channel that was never started shuts down (and deinit does it too).
        let unstarted = try ControlChannel(me: member.peer, listen: address) { _ in }
        unstarted.shutdown()
        _ = try ControlChannel(me: member.peer, listen: address) { _ in }
    }
}

// MARK: - Support

/// One channel and everything it reported.
private struct ControlMember {
    let peer: ControlPeer
    let address: Address
    let log: ControlEventLog
    let channel: ControlChannel

    /// A channel on `port`, or on a port the kernel just handed out (retried if someone took it meanwhile).
    init(node: UInt32, incarnation: UInt32 = 1, port: UInt16? = nil, limits: ControlChannel.Limits = .init(),
         security: Security = Security(),
         also: @escaping @Sendable (ControlChannel.Event) -> Void = { _ in }) throws {
        peer = ControlPeer(node: node, incarnation: incarnation)
        let log = ControlEventLog()
        self.log = log
        var attempt = 0
        while true {
            attempt += 1
            let address = try Address(host: "127.0.0.1", port: port ?? freeControlPort())
            do {
                let auth = security.isAuthenticated
                    ? security.authConfig(clusterName: "test", node: node, incarnation: incarnation) : nil
                channel = try ControlChannel(me: peer, listen: address, limits: limits, auth: auth) { event in
                    log.record(event)
                    also(event)
                }
                self.address = address
                return
            } catch {
                guard case .addressInUse = error, port == nil, attempt < 5 else { throw error }
            }
        }
    }
}

/// A channel's events, recorded on its thread and read by the test.
private final class ControlEventLog: Sendable {
    private let events = Mutex<[ControlChannel.Event]>([])
    /// When each `.lost` arrived, on the channel's thread: a bound on detection is measured at the event, not when
    /// the test's task (which shares the pool with every other suite) next looks.
    private let lossInstants = Mutex<[(peer: ControlPeer, at: ContinuousClock.Instant)]>([])

    func record(_ event: ControlChannel.Event) {
        if case let .lost(peer, _) = event { lossInstants.withLock { $0.append((peer, ContinuousClock.now)) } }
        events.withLock { $0.append(event) }
    }

    /// When the first loss of `peer` arrived, if it did.
    func firstLoss(of peer: ControlPeer) -> ContinuousClock.Instant? {
        lossInstants.withLock { $0.first { $0.peer == peer }?.at }
    }

    func received(from peer: ControlPeer) -> [[UInt8]] {
        events.withLock { events in
            events.compactMap { event in
                if case let .received(from, bytes) = event, from == peer { return bytes }
                return nil
            }
        }
    }

    var receivedCount: Int {
        events.withLock { events in
            events.count { if case .received = $0 { true } else { false } }
        }
    }

    /// The reasons of the losses of `peer` (of any peer when nil), in order.
    func losses(of peer: ControlPeer? = nil) -> [String] {
        events.withLock { events in
            events.compactMap { event in
                if case let .lost(lost, reason) = event, peer == nil || lost == peer { return reason }
                return nil
            }
        }
    }
}

/// Polls `condition` every 2 ms until it holds or `seconds` pass (a broken channel fails the test, not hangs it).
private func controlEventually(within seconds: Double = 10, _ condition: () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: .milliseconds(Int(seconds * 1000)))
    while clock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(2))
    }
    return condition()
}

/// Frame `index` from `source`: sizes from 0 bytes to 1 MiB, contents that differ per source and index.
private func controlTestFrame(source: UInt32, index: Int) -> [UInt8] {
    let size: Int
    switch index {
    case 0: size = 0
    case _ where index % 100 == 50: size = 1 << 20
    case _ where index % 37 == 5: size = 65_536 + index
    default: size = (index &* 7919) % 3000
    }
    let seed = UInt32(truncatingIfNeeded: index) &* 2_654_435_761 ^ source &* 40503
    return [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
        var state = seed | 1
        for offset in 0..<size {
            state ^= state << 13
            state ^= state >> 17
            state ^= state << 5
            buffer[offset] = UInt8(truncatingIfNeeded: state)
        }
        initialized = size
    }
}

/// A loopback port that was free a moment ago (bound to 127.0.0.1:0, then closed).
private func freeControlPort() -> UInt16 {
    let (fd, port) = try! RawControlTCP.listen(backlog: 1)
    Glibc.close(fd)
    return port
}

/// Plain blocking sockets for playing a misbehaving peer.
private enum RawControlTCP {
    struct Failure: Error, CustomStringConvertible {
        var call: String
        var code: Int32
        var description: String { "\(call): \(String(cString: strerror(code)))" }
    }

    static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        return address
    }

    static func connect(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(call: "socket", code: errno) }
        var address = loopback(port: port)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            Glibc.close(fd)
            throw Failure(call: "connect", code: code)
        }
        return fd
    }

    /// A listener on 127.0.0.1 at a port the kernel picks.
    static func listen(backlog: Int32) throws -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(call: "socket", code: errno) }
        var address = loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard ok, Glibc.listen(fd, backlog) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw Failure(call: "bind/listen", code: code)
        }
        return (fd, UInt16(bigEndian: address.sin_port))
    }

    static func accept(_ listener: Int32, seconds: Double) throws -> Int32 {
        var poller = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, Int32(seconds * 1000)) == 1 else { throw Failure(call: "poll (accept)", code: ETIMEDOUT) }
        let fd = Glibc.accept(listener, nil, nil)
        guard fd >= 0 else { throw Failure(call: "accept", code: errno) }
        return fd
    }

    static func write(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { return } // the channel may already have closed it: that is what tests look for
            offset += count
        }
    }

    /// Reads (and discards) until the other side closes; true if it did within `seconds`.
    static func waitForClose(_ fd: Int32, seconds: Double) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .milliseconds(Int(seconds * 1000)))
        var scratch = [UInt8](repeating: 0, count: 4096)
        while clock.now < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 50) >= 0 else { return false }
            if poller.revents == 0 { continue }
            let count = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count == 0 || (count < 0 && errno != EAGAIN && errno != EINTR) { return true }
        }
        return false
    }
}
