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
