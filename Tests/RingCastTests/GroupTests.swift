import RingCast
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Loopback ports p with p + 1 free too (a group member's data and control ports).
func freeLoopbackPortPairs(_ count: Int) -> [UInt16] { freeLoopbackPorts(count, run: 2) }

/// What one member delivered.
final class SeenBox: Sendable {
    let state = Mutex(Seen())
    func withLock<T>(_ body: (inout Seen) -> T) -> T { state.withLock { body(&$0) } }
}

/// A little cluster of group members on loopback, each recording what it delivered.
final class GroupCluster: Sendable {
    let addresses: [UInt32: Address]
    let seen: [SeenBox]
    let members: Mutex<[UInt32: Group]>

    init(size: Int) throws {
        let ports = freeLoopbackPortPairs(size)
        var addresses: [UInt32: Address] = [:]
        for (index, port) in ports.enumerated() { addresses[UInt32(index)] = try Address(host: "127.0.0.1", port: port) }
        self.addresses = addresses
        seen = (0..<size).map { _ in SeenBox() }
        members = Mutex([:])
    }

    func configuration(_ me: UInt32, initialView: [UInt32], mode: Group.Mode = .quorum) -> Group.Configuration {
        var configuration = Group.Configuration(me: me, addresses: addresses, initialView: initialView)
        configuration.mode = mode
        configuration.limits = testLimits { $0.window = 32 }
        configuration.heartbeatMillis = 20
        configuration.suspectMillis = 300
        configuration.roundTimeoutMillis = 300
        return configuration
    }

    /// A member, started unless `start` is false (then the caller runs it, e.g. as a `Service`).
    @discardableResult
    func start(_ me: UInt32, initialView: [UInt32], mode: Group.Mode = .quorum,
               stateTransfer: Group.StateTransfer? = nil, start: Bool = true,
               configure: (inout Group.Configuration) -> Void = { _ in }) throws -> Group {
        let record = seen[Int(me)]
        var configuration = configuration(me, initialView: initialView, mode: mode)
        configure(&configuration)
        let group = try Group(configuration: configuration, stateTransfer: stateTransfer) { batch in
            record.withLock { seen in
                seen.batches += 1
                batch.forEach { delivery in
                    seen.entries.append(Seen.Entry(origin: delivery.origin, originSeq: delivery.originSeq, viewId: delivery.viewId,
                                              payloadHash: fnv1a(delivery.payload), length: delivery.payload.count))
                }
            }
        }
        if start { try group.start() }
        members.withLock { $0[me] = group }
        return group
    }

    func group(_ me: UInt32) -> Group { members.withLock { $0[me]! } }
    func entries(_ me: UInt32) -> [Seen.Entry] { seen[Int(me)].withLock { $0.entries } }

    func stop(_ me: UInt32) {
        let group = members.withLock { $0.removeValue(forKey: me) }
        group?.shutdown()
    }

    func stopAll() {
        let all = members.withLock { members in
            defer { members.removeAll() }
            return Array(members.values)
        }
        for group in all { group.shutdown() }
    }

    /// Waits until `condition` holds (polling), or fails after `seconds`.
    func wait(_ seconds: Double, _ what: String, _ condition: () -> Bool) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .milliseconds(Int(seconds * 1000)))
        while !condition() {
            if clock.now > deadline {
                Issue.record("timed out waiting for \(what)")
                throw DeadlineExceeded()
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}

/// The properties of §2.4 over what the survivors delivered: the same sequence (total order, uniform
/// agreement), each origin's messages once and gap-free (integrity).
func expectAgreement(_ sequences: [[Seen.Entry]], sourceLocation: SourceLocation = #_sourceLocation) {
    guard let longest = sequences.max(by: { $0.count < $1.count }) else { return }
    for sequence in sequences {
        #expect(Array(longest.prefix(sequence.count)) == sequence, "a member's deliveries are not a prefix of another's",
                sourceLocation: sourceLocation)
    }
    var next: [Int: UInt64] = [:]
    for entry in longest {
        let expected = (next[entry.origin] ?? 0) + 1
        #expect(entry.originSeq == expected, "origin \(entry.origin): seq \(entry.originSeq) after \(expected - 1)",
                sourceLocation: sourceLocation)
        next[entry.origin] = entry.originSeq
    }
}

@Suite("Group membership over loopback (§2.4.3, Fig. 2.7)", .serialized)
struct GroupTests {
    @Test("a crash of one member of three: the survivors install a view without it and deliver the same sequence")
    func section2_4_3_crashOfOneOfThree() async throws {
        let cluster = try GroupCluster(size: 3)
        defer { cluster.stopAll() }
        for me: UInt32 in 0..<3 { try cluster.start(me, initialView: [0, 1, 2]) }
        for me: UInt32 in 0..<3 { try await cluster.group(me).waitUntilRunning() }
        let perMember = 300
        try await withDeadline(60, "crash run") {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for me: UInt32 in 0..<2 {
                    let group = cluster.group(me)
                    tasks.addTask {
                        for index in 0..<perMember {
                            try await group.broadcast(testPayload(origin: Int(me), index: index, size: 2000))
                        }
                    }
                }
                let doomed = cluster.group(2)
                tasks.addTask {
                    for index in 0..<perMember {
                        do { try await doomed.broadcast(testPayload(origin: 2, index: index, size: 2000)) } catch { return }
                    }
                }
                try await cluster.wait(20, "some deliveries before the crash") { cluster.entries(0).count >= 200 }
                cluster.stop(2)
                try await tasks.waitForAll()
            }
            try await cluster.wait(30, "survivors deliver their own messages") {
                (UInt32(0)..<2).allSatisfy { me in
                    let entries = cluster.entries(me)
                    return (0..<2).allSatisfy { origin in entries.filter { $0.origin == origin }.count == perMember }
                }
            }
        }
        for me: UInt32 in 0..<2 {
            let view = try #require(cluster.group(me).currentView)
            #expect(view.members == [0, 1])
            #expect(view.id >= 2)
        }
        try await cluster.wait(10, "survivors agree") { cluster.entries(0) == cluster.entries(1) }
        expectAgreement([cluster.entries(0), cluster.entries(1), cluster.entries(2)])
        #expect(cluster.entries(0).contains { $0.viewId >= 2 }, "deliveries carry the new view id")
    }

    @Test("a graceful leave: the others install a view without the member that left")
    func leave() async throws {
        let cluster = try GroupCluster(size: 3)
        defer { cluster.stopAll() }
        for me: UInt32 in 0..<3 { try cluster.start(me, initialView: [0, 1, 2]) }
        for me: UInt32 in 0..<3 { try await cluster.group(me).waitUntilRunning() }
        for index in 0..<50 { try await cluster.group(2).broadcast(testPayload(origin: 2, index: index, size: 100)) }
        try await cluster.wait(20, "the leaver's messages delivered") { cluster.entries(0).count == 50 }
        try await cluster.group(2).leave()
        try await cluster.wait(20, "a view without 2") { cluster.group(0).currentView?.members == [0, 1] }
        #expect(cluster.group(2).state == .left)
        for index in 0..<50 { try await cluster.group(0).broadcast(testPayload(origin: 0, index: index, size: 100)) }
        try await cluster.wait(20, "deliveries in the new view") { cluster.entries(1).count == 100 }
        expectAgreement([cluster.entries(0), cluster.entries(1), cluster.entries(2)])
    }

    @Test("a join at load: the joiner starts from the transferred state and delivers a gap-free suffix")
    func joinWithStateTransfer() async throws {
        let cluster = try GroupCluster(size: 3)
        defer { cluster.stopAll() }
        // The "application state" is the number of messages applied; the provider hands it over.
        let restored = Mutex<Int?>(nil)
        let transfer0 = Group.StateTransfer(snapshot: { [seen = cluster.seen[0]] in
            let count = seen.withLock { $0.entries.count }
            return withUnsafeBytes(of: UInt64(count).littleEndian) { Array($0) }
        }, restore: { _ in })
        let transfer2 = Group.StateTransfer(snapshot: { [] }, restore: { bytes in
            var value: UInt64 = 0
            for (index, byte) in bytes.prefix(8).enumerated() { value |= UInt64(byte) << (8 * index) }
            restored.withLock { $0 = Int(value) }
        })
        try cluster.start(0, initialView: [0, 1], stateTransfer: transfer0)
        try cluster.start(1, initialView: [0, 1], stateTransfer: transfer0)
        for me: UInt32 in 0..<2 { try await cluster.group(me).waitUntilRunning() }
        let perMember = 200
        try await withDeadline(60, "join run") {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for me: UInt32 in 0..<2 {
                    let group = cluster.group(me)
                    tasks.addTask {
                        for index in 0..<perMember {
                            try await group.broadcast(testPayload(origin: Int(me), index: index, size: 1000))
                        }
                    }
                }
                try await cluster.wait(20, "deliveries before the join") { cluster.entries(0).count >= 100 }
                try cluster.start(2, initialView: [0, 1], stateTransfer: transfer2)
                try await cluster.group(2).waitUntilRunning(timeout: .seconds(20))
                try await tasks.waitForAll()
            }
            try await cluster.wait(30, "all delivered") { cluster.entries(1).count == 2 * perMember }
        }
        #expect(cluster.group(0).currentView?.members == [0, 1, 2])
        let offset = try #require(restored.withLock { $0 })
        let founders = cluster.entries(0)
        let joiner = cluster.entries(2)
        #expect(offset > 0 && offset <= founders.count)
        #expect(Array(founders[offset...].prefix(joiner.count)) == joiner, "the joiner's deliveries continue the state exactly")
    }
}
