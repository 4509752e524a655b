#if canImport(Glibc)
import Glibc
#endif
import RingCast
import RingCastKeys
@testable import RingCastSMR
import Testing

/// The client plane's handshake (#14: "every TCP connection — ring data, control plane, and SMR clients — starts
/// with a mutual challenge–response handshake"): a client without the cluster key gets nothing through, a
/// stranger's bytes never reach the replica, and the snapshot pull between replicas proves the key too.
@Suite(.serialized) struct ClientAuthTests {
    @Test func clientLinks_needTheClusterKey_strangersAreCountedAndTheReplicaKeepsServing() async throws {
        let key = try ClusterKey.generate()
        let security = Security(clusterKey: key, authentication: .frames)
        let cluster = try CounterCluster(size: 3)
        defer { cluster.shutdownAll() }
        for id in UInt32(0)..<2 { try cluster.start(id, initialView: [0, 1], security: security) }
        for id in UInt32(0)..<2 { try await cluster.replica(id).group.waitUntilRunning() }
        let first = try cluster.clientAddresses([0])

        // A client with the key (it needs only the key: the client plane runs the handshake whatever the mode).
        var good = CounterClient.Options(replicas: first)
        good.security = Security(clusterKey: key)
        good.timeoutMillis = testTimeoutMillis
        let keyed = good
        try await withDeadline(20) {
            let client = try await CounterClient.connect(keyed)
            defer { client.close() }
            #expect(try await client.submit(Counter.Add(delta: 5)).value == 5)
            #expect(try await client.read(Counter.Get()).value == 5)
        }

        // Another key: every replica refuses the handshake, and the client says so instead of timing out.
        var wrong = CounterClient.Options(replicas: first)
        wrong.security = Security(clusterKey: try ClusterKey.generate())
        wrong.timeoutMillis = 10_000
        let refused = await connectionError(wrong)
        #expect(refused?.isUnauthenticated == true, "\(String(describing: refused))")

        // The right key under another cluster name fails the same way (the name is bound into the proof).
        var otherName = good
        otherName.clusterName = "another-cluster"
        otherName.timeoutMillis = 10_000
        let misnamed = await connectionError(otherName)
        #expect(misnamed?.isUnauthenticated == true, "\(String(describing: misnamed))")

        // A client on open links: its hello is not a handshake; the replica closes, and it times out.
        var open = CounterClient.Options(replicas: first)
        open.timeoutMillis = 600
        let openError = await connectionError(open)
        #expect(openError == .timeout, "\(String(describing: openError))")

        // A stranger writing garbage, and one that goes silent: both closed, counted, and nothing reaches apply.
        let address = first[0]
        let garbage = try Socket.connect(address, timeoutMillis: 1000)
        #expect(Socket.sendAll(garbage, Array(repeating: 0x41, count: 200)))
        #expect(readUntilClosed(garbage, seconds: 5), "the replica closes a connection that fails the handshake")
        close(garbage)
        let silent = try Socket.connect(address, timeoutMillis: 1000)
        #expect(readUntilClosed(silent, seconds: 10, skipping: 48), "a silent peer is closed after the handshake timeout")
        close(silent)

        let statistics = cluster.replica(0).statistics
        #expect(statistics.clientHandshakes >= 1)
        #expect(statistics.clientHandshakesFailed >= 5, "\(statistics)")
        #expect(statistics.clientFramesMalformed == 0, "no stranger's byte was parsed as a client frame")
        #expect(statistics.commandsApplied == 1, "only the keyed client's command was applied")

        // A joiner pulls the snapshot over a provider's client port: that link proves the key too.
        let joiner = try cluster.start(2, initialView: [0, 1], security: security)
        try await withDeadline(30) { try await joiner.group.waitUntilRunning(timeout: .seconds(25)) }
        let digests = try await cluster.settledDigests([0, 1, 2])
        #expect(Set(digests.map(\.digest)).count == 1, "\(digests)")
        #expect(joiner.statistics.snapshotsRestored == 1)
        #expect(joiner.withMachine { $0.value } == 5)
    }
}

/// The error `connect` throws, or nil when it connected.
private func connectionError(_ options: CounterClient.Options) async -> SMRClientError? {
    do {
        let client = try await CounterClient.connect(options)
        client.close()
        return nil
    } catch {
        return error
    }
}

extension SMRClientError {
    var isUnauthenticated: Bool {
        if case .unauthenticated = self { return true }
        return false
    }
}

/// Reads (discarding) until the peer closes; false if it is still open after `seconds`. `skipping`: the replica's
/// HELLO (48 bytes) may come first.
private func readUntilClosed(_ fd: Int32, seconds: Int, skipping: Int = 48) -> Bool {
    var timeout = timeval(tv_sec: seconds, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var buffer = [UInt8](repeating: 0, count: 256)
    var total = 0
    while true {
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count == 0 { return true }
        if count < 0 { return errno == ECONNRESET }
        total += count
        if total > skipping { return false }
    }
}
