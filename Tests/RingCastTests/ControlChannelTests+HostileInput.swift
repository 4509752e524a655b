@testable import RingCast
import RingCastKeys
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

// ControlChannel under bad input from the network: garbage, silence, too many connections, oversize frames.
// Nested in ControlChannelTests so that it runs serialized with the rest of the suite.
extension ControlChannelTests {
    @Suite struct HostileInput {
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
    }
}
