import ChainBFT
import Foundation
import Glibc
import RingCastChain
import RingCastSMR
import Testing

/// More of spec §21 over real sockets: a Byzantine r_2 (a correct core whose outgoing batches a test wrapper alters)
/// and a Byzantine client whose MACs are valid for the head only. In every case a correct replica stops, the correct
/// client panics and aborts, and nothing wrong commits.
@Suite(.serialized)
struct ChainByzantineTests {
    enum Tamper: String, CaseIterable, Sendable {
        /// Shifts the sequence numbers (spec C3 (ii), D6).
        case sequence
        /// Drops the ordering MACs of the window (C3 (i)).
        case dropMACs
        /// Swaps two requests of a batch (order).
        case reorder
        /// Forges a MAC bit (C3 (i)).
        case forgeMAC
    }

    @Test(arguments: Tamper.allCases)
    func section21_byzantineSecondReplicaIsStoppedBySuccessors(tamper: Tamper) async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try TestCluster(f: 1) { settings in
            guard settings.position == 1 else { return }
            settings.outbound = { frame in
                guard case .batch(var batch) = frame, batch.snFirst >= 6 else { return frame }
                switch tamper {
                case .sequence: batch.snFirst += 1
                case .dropMACs: batch.window.removeAll()
                case .reorder:
                    guard batch.requests.count >= 2 else { batch.snFirst += 1; break }
                    batch.requests.swapAt(0, 1)
                case .forgeMAC: batch.window[batch.window.count - 1] = batch.window[batch.window.count - 1].flipped()
                }
                return .batch(batch)
            }
        }
        defer { cluster.stop() }
        let clients = try (0..<2).map { try cluster.client(UInt32($0), timeoutMillis: 600, window: 4) }
        defer { for client in clients { client.close() } }
        let results = await withTaskGroup(of: (Int, [[UInt8]], ChainBFTError?).self) { group in
            for (c, client) in clients.enumerated() {
                group.addTask {
                    var replies: [[UInt8]] = []
                    for k in 0..<20 {
                        do {
                            let output = try await put(client, "c\(c)", "v\(k)")
                            replies.append(output.value ?? [])
                        } catch let error as ChainBFTError {
                            return (c, replies, error)
                        } catch {
                            return (c, replies, nil)
                        }
                    }
                    return (c, replies, nil)
                }
            }
            var all: [(Int, [[UInt8]], ChainBFTError?)] = []
            for await result in group { all.append(result) }
            return all
        }
        for (c, replies, error) in results {
            // Whatever committed is what the client wrote, in order (each put returns the value it wrote).
            for (k, value) in replies.enumerated() { #expect(value == Array("v\(k)".utf8), "client \(c) commit \(k)") }
            #expect(replies.count < 20)
            guard case .aborted? = error else { Issue.record("client \(c): expected an abort, got \(String(describing: error))"); continue }
        }
        let stopped = cluster.replicas.map(\.statistics).filter(\.stopped)
        #expect(stopped.contains { $0.position == 2 }, "r_3 must detect r_2 (stopped: \(stopped.map(\.position)))")
    }

    /// Spec §21 "a client with MACs valid only for the head": the head orders it, r_2 finds its client MAC wrong
    /// (C3 (i), D5) and stops; the correct client's requests then abort; nothing wrong commits.
    @Test func section21_clientWithMACsValidOnlyForTheHead() async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chain-byz-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try ChainKeyDirectory.generate(directory: directory, f: 1, clients: 2)
        let endpoints = freePorts(4).map { ChainEndpoint(host: "127.0.0.1", port: $0) }
        var replicas: [ChainReplica<TestStore>] = []
        defer { for replica in replicas { replica.stop() } }
        for position in 0..<4 {
            var settings = ChainReplica<TestStore>.Settings(f: 1, position: UInt32(position), replicas: endpoints)
            settings.clientsMax = 2
            let ring = try ChainKeyDirectory.load(directory: directory, principal: .replica(UInt32(position))).ring
            let replica = try ChainReplica(settings: settings, keyRing: ring, machine: TestStore())
            try replica.start()
            replicas.append(replica)
        }
        for replica in replicas { #expect(replica.waitForLinks()) }
        func client(_ id: UInt32, byzantine: Bool) throws -> ChainClient {
            let ring = try ChainKeyDirectory.load(directory: directory, principal: .client(id)).ring
            if byzantine { try ring.setMACKey(peer: 1, key: [UInt8](repeating: 7, count: 32)) } // wrong key for r_2
            var settings = ChainClient.Settings(f: 1, client: id, replicas: endpoints)
            settings.timeoutNanos = 600_000_000
            settings.checkpointInterval = 128
            let c = try ChainClient(settings: settings, keyRing: ring)
            try c.start()
            return c
        }
        let correct = try client(0, byzantine: false)
        let byzantine = try client(1, byzantine: true)
        defer { correct.close(); byzantine.close() }
        let first = try await put(correct, "k", "before")
        #expect(first.value == Array("before".utf8))
        await #expect(throws: ChainBFTError.self) { _ = try await put(byzantine, "k", "evil") }
        await #expect(throws: ChainBFTError.self) { _ = try await put(correct, "k", "after") }
        #expect(replicas[1].statistics.stopped)
        #expect(replicas[1].statistics.stopReason == 4) // RC_CHAIN_STOP_CLIENT_MAC
    }
}
