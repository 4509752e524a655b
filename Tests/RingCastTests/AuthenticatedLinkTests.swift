import RingCast
import RingCastKeys
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A raw loopback TCP client for attacks: connects, writes what it is told, closes.
private struct Intruder {
    let fd: Int32

    init?(port: UInt16) {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard connected else {
            close(fd)
            return nil
        }
    }

    /// Writes `bytes`; false once the peer closed (EPIPE/ECONNRESET), which is what a refusal looks like.
    @discardableResult
    func write(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    func end() { close(fd) }
}

/// Attacks one port with every kind of bad input the issue names; returns the connections made.
private func attack(port: UInt16, strangerHello: [UInt8]) async throws -> Int {
    var made = 0
    func once(_ body: (Intruder) async throws -> Void) async throws {
        guard let intruder = Intruder(port: port) else { return }
        made += 1
        try await body(intruder)
        intruder.end()
    }
    // Garbage.
    try await once { $0.write(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)) }
    // Random bytes.
    try await once { $0.write((0..<512).map { UInt8(truncatingIfNeeded: $0 &* 7919 &+ 13) }) }
    // A truncated handshake (half a HELLO, then close).
    try await once { $0.write(Array(strangerHello.prefix(20))) }
    // A stranger's well-formed HELLO (another node id, no key), then a forged proof.
    try await once { intruder in
        intruder.write(strangerHello)
        intruder.write(Array("RCA1".utf8) + [2, 0, 0, 0] + [UInt8](repeating: 0xee, count: 32))
    }
    // Oversized lengths: a control-plane length prefix of 2³¹−1 and a ring frame header claiming 4 GiB.
    try await once { $0.write([0x7f, 0xff, 0xff, 0xff] + [UInt8](repeating: 0, count: 64)) }
    try await once { $0.write([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff] + [UInt8](repeating: 1, count: 64)) }
    // Slow loris: a HELLO one byte at a time, slower than any deadline allows.
    try await once { intruder in
        for byte in strangerHello {
            guard intruder.write([byte]) else { return }
            try await Task.sleep(for: .milliseconds(60))
        }
    }
    return made
}

/// What one node delivered (payload hashes in order).
private final class HashLog: Sendable {
    let list = Mutex<[UInt64]>([])
    func withLock<T>(_ body: (inout [UInt64]) -> T) -> T { list.withLock { body(&$0) } }
}

/// A HELLO of rc_auth.h's format from node 99 with an arbitrary nonce (well-formed, but 99 holds no key).
private func strangerHello(channel: UInt8, mode: UInt8) -> [UInt8] {
    Array("RCA1".utf8) + [1, mode, channel, 0] + [0, 0, 0, 99] + [0, 0, 0, 0] + [UInt8](repeating: 0x5a, count: 32)
}

@Suite("Authenticated links (issue 14) over loopback", .serialized)
struct AuthenticatedLinkTests {
    @Test("a static ring with the cluster key delivers the same sequence; frames mode tags every frame, copies nothing",
          arguments: [Security.Authentication.handshake, .frames])
    func ringWithKeyDelivers(mode: Security.Authentication) async throws {
        let key = try ClusterKey.generate()
        let members = loopbackMembers(3)
        var nodes: [Node] = []
        let seen = (0..<3).map { _ in HashLog() }
        for position in 0..<3 {
            var configuration = try Node.Configuration(position: position, members: members, limits: testLimits { $0.window = 64 })
            configuration.security = Security(clusterKey: key, authentication: mode)
            let record = seen[position]
            nodes.append(try Node(configuration: configuration) { batch in
                record.withLock { list in batch.forEach { list.append(fnv1a($0.payload)) } }
            })
        }
        let ring = nodes
        defer { for node in ring { node.shutdown() } }
        try await startRing(ring)
        let perNode = 200
        try await withDeadline(30, "authenticated ring run") {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for (position, node) in ring.enumerated() {
                    tasks.addTask {
                        for index in 0..<perNode { try await node.broadcast(testPayload(origin: position, index: index, size: 4096)) }
                    }
                }
                try await tasks.waitForAll()
            }
            while seen.contains(where: { $0.withLock { $0.count } < 3 * perNode }) { try await Task.sleep(for: .milliseconds(5)) }
        }
        let sequences = seen.map { $0.withLock { $0 } }
        #expect(sequences[0] == sequences[1] && sequences[1] == sequences[2])
        for node in nodes {
            let stats = node.statistics
            #expect(stats.authHandshakes == 2, "the predecessor and the successor proved the key")
            #expect(stats.authRejected == 0)
            #expect(stats.payloadCopies == 0, "the zero-copy path is kept")
            if mode == .frames {
                #expect(stats.authMacsOut > 0 && stats.authMacsIn > 0)
                #expect(stats.authMacsOut <= stats.framesOut + stats.heartbeatsOut)
                #expect(stats.authMacFailures == 0)
            } else {
                #expect(stats.authMacsOut == 0 && stats.authMacsIn == 0)
            }
        }
    }

    @Test("a static ring with sealed frames (AES-256-GCM) delivers the same sequence; a node that does not encrypt cannot link")
    func ringWithEncryption() async throws {
        let key = try ClusterKey.generate()
        let members = loopbackMembers(3)
        var nodes: [Node] = []
        let seen = (0..<3).map { _ in HashLog() }
        for position in 0..<3 {
            var configuration = try Node.Configuration(position: position, members: members, limits: testLimits { $0.window = 64 })
            configuration.security = Security(clusterKey: key, authentication: .handshake)
            configuration.security.encrypt = true
            let record = seen[position]
            nodes.append(try Node(configuration: configuration) { batch in
                record.withLock { list in batch.forEach { list.append(fnv1a($0.payload)) } }
            })
        }
        let ring = nodes
        defer { for node in ring { node.shutdown() } }
        try await startRing(ring)
        let perNode = 200
        try await withDeadline(30, "sealed ring run") {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for (position, node) in ring.enumerated() {
                    tasks.addTask {
                        for index in 0..<perNode { try await node.broadcast(testPayload(origin: position, index: index, size: 3000 + index)) }
                    }
                }
                try await tasks.waitForAll()
            }
            while seen.contains(where: { $0.withLock { $0.count } < 3 * perNode }) { try await Task.sleep(for: .milliseconds(5)) }
        }
        let sequences = seen.map { $0.withLock { $0 } }
        #expect(sequences[0] == sequences[1] && sequences[1] == sequences[2])
        for node in ring {
            let stats = node.statistics
            #expect(stats.authHandshakes == 2 && stats.authMacFailures == 0)
            #expect(stats.authMacsOut > 0 && stats.authMacsIn > 0)
            #expect(stats.authCipherBytes > UInt64(perNode * 3000), "every frame went through the cipher")
            #expect(stats.payloadCopies == 0)
        }

        // A ring where one node does not encrypt: the handshake binds the mode, so no link forms.
        let others = loopbackMembers(2)
        var mixed: [Node] = []
        for position in 0..<2 {
            var configuration = try Node.Configuration(position: position, members: others,
                                                       limits: testLimits { $0.connectTimeoutMillis = 1500 })
            configuration.security = Security(clusterKey: key, authentication: .handshake)
            configuration.security.encrypt = position == 0
            mixed.append(try Node(configuration: configuration))
        }
        let pair = mixed
        defer { for node in pair { node.shutdown() } }
        for node in pair { try node.start() }
        for node in pair { await #expect(throws: RingCastError.self) { try await node.waitUntilRunning(timeout: .seconds(5)) } }
        #expect(pair.map { $0.statistics.authRejected }.reduce(0, +) >= 1)
    }

    @Test("intruders that connect to a ring's port before the predecessor (garbage, a stranger's HELLO, a slow loris) do not take its place")
    func intrudersBeforeThePredecessor() async throws {
        let key = try ClusterKey.generate()
        let members = loopbackMembers(2)
        var nodes: [Node] = []
        for position in 0..<2 {
            var configuration = try Node.Configuration(position: position, members: members, limits: testLimits())
            configuration.security = Security(clusterKey: key, authentication: .frames)
            configuration.security.handshakeTimeoutMillis = 500
            nodes.append(try Node(configuration: configuration))
        }
        let ring = nodes
        defer { for node in ring { node.shutdown() } }
        try ring[1].start() // listens; its predecessor (node 0) is not there yet
        let port = try Address(members[1]).port
        var intruders: [Intruder] = []
        for attempt in 0..<20 { // the listener comes up on the engine thread
            if let intruder = Intruder(port: port) {
                intruders.append(intruder)
                break
            }
            try await Task.sleep(for: .milliseconds(10 + attempt))
        }
        try #require(intruders.count == 1)
        intruders[0].write(Array("GET / HTTP/1.1\r\n\r\n".utf8))
        let stranger = try #require(Intruder(port: port))
        stranger.write(strangerHello(channel: 1, mode: 2))           // well-formed, holds no key: its proof will fail
        let loris = try #require(Intruder(port: port))
        loris.write(Array(strangerHello(channel: 1, mode: 2).prefix(5))) // then nothing: the deadline closes it
        try await Task.sleep(for: .milliseconds(50))
        stranger.write(Array("RCA1".utf8) + [2, 0, 0, 0] + [UInt8](repeating: 0xee, count: 32))
        try ring[0].start()
        try await ring[0].waitUntilRunning(timeout: .seconds(10))
        try await ring[1].waitUntilRunning(timeout: .seconds(10))
        let token = try await ring[0].broadcast(Array("after the intruders".utf8))
        #expect(token > 0)
        try await withDeadline(10, "intruders counted") {
            while ring[1].statistics.authRejected < 3 { try await Task.sleep(for: .milliseconds(10)) }
        }
        let stats = ring[1].statistics
        #expect(stats.authHandshakes == 2, "the real predecessor and successor proved the key")
        #expect(stats.authRejected >= 3, "garbage, the stranger and the slow loris were closed and counted")
        for intruder in intruders + [stranger, loris] { intruder.end() }
    }

    @Test("a node with another key cannot form the ring: the handshake fails and is counted, nothing is delivered")
    func ringWithWrongKeyFails() async throws {
        let members = loopbackMembers(2)
        var nodes: [Node] = []
        let delivered = Atomic<Int>(0)
        for position in 0..<2 {
            var configuration = try Node.Configuration(position: position, members: members,
                                                       limits: testLimits { $0.connectTimeoutMillis = 1500 })
            configuration.security = Security(clusterKey: try ClusterKey.generate(), authentication: .frames)
            nodes.append(try Node(configuration: configuration) { batch in
                delivered.add(batch.count, ordering: .relaxed)
            })
        }
        defer { for node in nodes { node.shutdown() } }
        for node in nodes { try node.start() }
        for node in nodes {
            await #expect(throws: RingCastError.self) { try await node.waitUntilRunning(timeout: .seconds(5)) }
        }
        #expect(nodes.map { $0.statistics.authRejected }.reduce(0, +) >= 1)
        #expect(nodes.allSatisfy { $0.statistics.authHandshakes == 0 })
        #expect(delivered.load(ordering: .relaxed) == 0)
    }

    @Test("with frame MACs or sealed frames, a member with the key joins and a member that stops is replaced by a view whose ring authenticates again",
          arguments: [false, true])
    func joinAndCrashUnderFrames(encrypt: Bool) async throws {
        let cluster = try GroupCluster(size: 4)
        defer { cluster.stopAll() }
        let key = try ClusterKey.generate()
        let secure: (inout Group.Configuration) -> Void = {
            $0.security = Security(clusterKey: key, authentication: .frames)
            $0.security.encrypt = encrypt
        }
        for me: UInt32 in 0..<3 { try cluster.start(me, initialView: [0, 1, 2], configure: secure) }
        for me: UInt32 in 0..<3 { try await cluster.group(me).waitUntilRunning() }
        try cluster.start(3, initialView: [0, 1, 2], configure: secure)
        try await cluster.group(3).waitUntilRunning(timeout: .seconds(20))
        // The joiner runs once it installed the view; member 0 may publish it a moment later.
        try await cluster.wait(10, "member 0 installs the view with the joiner") { cluster.group(0).currentView?.members == [0, 1, 2, 3] }
        cluster.stop(2)
        try await cluster.wait(20, "a view without the crashed member") {
            cluster.group(0).currentView?.members == [0, 1, 3] && cluster.group(0).state == .running
        }
        let before = cluster.entries(3).count
        for index in 0..<100 { try await cluster.group(0).broadcast(testPayload(origin: 0, index: index, size: 3000)) }
        try await cluster.wait(20, "deliveries in the new view") { cluster.entries(3).count >= before + 100 }
        let engine = cluster.group(0).statistics.engine
        #expect(engine.authHandshakes == 2 && engine.authMacsIn > 0 && engine.authMacFailures == 0)
        #expect((engine.authCipherBytes > 0) == encrypt)
        expectAgreement([cluster.entries(0), cluster.entries(1)])
    }

    @Test("a member with another key cannot join: the group keeps its view and counts the refusals")
    func joinerWithoutKeyRefused() async throws {
        let cluster = try GroupCluster(size: 4)
        defer { cluster.stopAll() }
        let key = try ClusterKey.generate()
        for me: UInt32 in 0..<3 {
            try cluster.start(me, initialView: [0, 1, 2]) { $0.security = Security(clusterKey: key, authentication: .frames) }
        }
        for me: UInt32 in 0..<3 { try await cluster.group(me).waitUntilRunning() }
        let stranger = try cluster.start(3, initialView: [0, 1, 2]) {
            $0.security = Security(clusterKey: try! ClusterKey.generate(), authentication: .frames)
        }
        for index in 0..<50 { try await cluster.group(0).broadcast(testPayload(origin: 0, index: index, size: 1000)) }
        try await cluster.wait(20, "deliveries with the stranger knocking") { (0..<3).allSatisfy { cluster.entries(UInt32($0)).count >= 50 } }
        try await Task.sleep(for: .milliseconds(1500))
        #expect(stranger.state != .running)
        #expect(cluster.entries(3).isEmpty)
        for me: UInt32 in 0..<3 {
            #expect(cluster.group(me).currentView?.members == [0, 1, 2])
            #expect(cluster.group(me).currentView?.id == 1)
        }
        let refused = (UInt32(0)..<3).map { cluster.group($0).statistics.controlAuthRejected }.reduce(0, +)
        #expect(refused >= 1, "the stranger's control connections were refused")
        #expect(cluster.group(0).statistics.controlAuthHandshakes >= 2)
        expectAgreement((0..<3).map { cluster.entries(UInt32($0)) })
    }

    @Test("bad input on a running group's ports (garbage, truncated, a stranger, oversized lengths, slow loris): it keeps delivering and counts each",
          arguments: [Security.Authentication.none, .frames])
    func badInputNeverStopsTheGroup(mode: Security.Authentication) async throws {
        let cluster = try GroupCluster(size: 3)
        defer { cluster.stopAll() }
        let key = try ClusterKey.generate()
        for me: UInt32 in 0..<3 {
            try cluster.start(me, initialView: [0, 1, 2]) { configuration in
                if mode != .none { configuration.security = Security(clusterKey: key, authentication: mode) }
            }
        }
        for me: UInt32 in 0..<3 { try await cluster.group(me).waitUntilRunning() }
        let sender = cluster.group(0)
        let stop = Atomic<Bool>(false)
        let load = Task {
            var index = 0
            while !stop.load(ordering: .relaxed) {
                try await sender.broadcast(testPayload(origin: 0, index: index, size: 2000))
                index += 1
                if index % 50 == 0 { try await Task.sleep(for: .milliseconds(1)) }
            }
        }
        try await cluster.wait(10, "deliveries before the attack") { cluster.entries(1).count >= 100 }
        let target = try #require(cluster.addresses[1])
        let dataMade = try await attack(port: target.port, strangerHello: strangerHello(channel: 1, mode: 2))
        let controlMade = try await attack(port: target.port + 1, strangerHello: strangerHello(channel: 2, mode: 2))
        #expect(dataMade == 7 && controlMade == 7)
        let before = cluster.entries(1).count
        try await cluster.wait(10, "deliveries after the attack") { cluster.entries(1).count >= before + 200 }
        stop.store(true, ordering: .relaxed)
        _ = try? await load.value
        try await cluster.wait(10, "the control plane counted every connection") {
            cluster.group(1).statistics.controlRejected >= UInt64(controlMade)
        }
        try await cluster.wait(10, "the ring counted every connection beyond the predecessor") {
            let engine = cluster.group(1).statistics.engine
            return engine.connectionsRefused + engine.authRejected + engine.acceptsRejected >= UInt64(dataMade)
        }
        let stats = cluster.group(1).statistics
        #expect(stats.engine.authMacFailures == 0, "no intruder got a frame as far as the MAC check")
        if mode != .none { #expect(stats.controlAuthRejected >= UInt64(controlMade)) }
        for me: UInt32 in 0..<3 {
            #expect(cluster.group(me).currentView?.id == 1, "no attack caused a view change")
        }
        try await cluster.wait(10, "members agree") { cluster.entries(0).count == cluster.entries(1).count && cluster.entries(1).count == cluster.entries(2).count }
        expectAgreement((0..<3).map { cluster.entries(UInt32($0)) })
    }
}
