@testable import RingCast
import RingCastKeys
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

// ControlChannel when peers fail: stopped, unknown, restarted, not reading, refusing, silent, removed.
// Nested in ControlChannelTests so that it runs serialized with the rest of the suite.
extension ControlChannelTests {
    @Suite struct Failures {
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
    }
}
