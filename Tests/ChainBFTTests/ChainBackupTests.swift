@testable import ChainBFT
import Foundation
import Glibc
import RingCastBackup
import RingCastChain
import RingCastSMR
import Testing

/// Aliph's composition over loopback TCP (spec §13.1, issue #13): with one replica down every Chain instance panics
/// (Chain needs all 3f+1), its 2f+1 ABORTs lead into a Backup instance (PBFT among the 3f+1, of which 2f+1 are up)
/// that commits k = ⌈C·2^m⌉ requests and aborts into the next Chain instance with f+1 signed histories; k doubles, so
/// every request commits. The replicas and the client are the production ones; the store is the tests' digest store.
@Suite(.serialized)
struct ChainBackupTests {
    static func cluster(f: UInt32 = 1) throws -> TestCluster {
        try TestCluster(f: f) { settings in
            settings.backupSchedule = Backup.Schedule(cExponent: 0) // k = 1, 2, 4, 8, …
            settings.backupViewChangeTimeoutTicks = 30 // 300 ms: the crashed replica may be PBFT's primary of view 0
        }
    }

    static func client(_ cluster: TestCluster, _ id: UInt32,
                       configure: (inout ChainClient.Settings) -> Void = { _ in }) throws -> ChainClient {
        var settings = ChainClient.Settings(f: cluster.f, client: id, replicas: cluster.endpoints)
        settings.timeoutNanos = 500_000_000
        settings.abortWaitNanos = 10_000_000_000
        settings.checkpointInterval = 16
        settings.windowMax = 4
        settings.switchInstance = ChainNextInstance()
        settings.switchesWithoutCommitMax = 12
        settings.backupSendsMax = 40
        configure(&settings)
        let client = try ChainClient(settings: settings, keyRing: try cluster.keys.keyRing(for: .client(id)))
        try client.start()
        return client
    }

    /// Waits until the live replicas' states are at one sn (each executed what the others did), stably.
    static func settle(_ replicas: [ChainReplica<TestStore>], timeoutNanos: UInt64 = 20_000_000_000) -> Bool {
        let deadline = DispatchTime.now().uptimeNanoseconds + timeoutNanos
        while DispatchTime.now().uptimeNanoseconds < deadline {
            let sns = replicas.map(\.statistics.stateSN)
            if Set(sns).count == 1 {
                usleep(300_000)
                if replicas.map(\.statistics.stateSN) == sns { return true }
            }
            usleep(20_000)
        }
        return false
    }

    /// Conformance 10 over the engine: a replica (the tail, a middle one, the head and PBFT's first primary) crashes
    /// after some writes; every later write commits (Chain → Backup → Chain → …), each exactly once, and the survivors
    /// end with one state.
    @Test(arguments: [(UInt32(1), UInt32(3)), (1, 1), (1, 0), (2, 6)])
    func section13_1_crashedReplicaEveryRequestCommits(f: UInt32, crashed: UInt32) async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try Self.cluster(f: f)
        defer { cluster.stop() }
        let client = try Self.client(cluster, 0)
        defer { client.close() }
        for k in 0..<3 { _ = try await put(client, "before\(k)", "v\(k)") }
        cluster.replicas[Int(crashed)].stop()
        let writes = 12
        for k in 0..<writes {
            let out = try await put(client, "after\(k)", "w\(k)")
            #expect(out.value == Array("w\(k)".utf8))
        }
        let s = client.statistics
        #expect(s.backupCommits >= 1, "nothing committed in a Backup instance: \(s)")
        #expect(s.switches >= 2)
        // Reads through the protocol: the last value of each key, and exactly one application per write.
        for k in 0..<writes { #expect(try await get(client, "after\(k)").value == Array("w\(k)".utf8)) }
        #expect(try await get(client, TestStore.appliedKey).value == Array("\(3 + writes)".utf8))
        let live = cluster.replicas.enumerated().filter { $0.offset != Int(crashed) }.map(\.element)
        #expect(Self.settle(live), "the live replicas' states did not meet: \(live.map(\.statistics.stateSN))")
        for replica in live { replica.stop() }
        let digests = live.map(\.statistics.stateDigest)
        #expect(digests.allSatisfy { $0 != nil } && Set(digests).count == 1, "survivors' state digests \(digests)")
        let backups = live.map(\.statistics.switching.backupInstancesEntered)
        print("r\(crashed) down: client switches \(s.switches), Backup commits \(s.backupCommits), retransmits \(s.backupRetransmits); replicas' instance \(live.map(\.statistics.switching.instance)), Backup instances \(backups), behind \(live.map(\.statistics.switching.backupBehind))")
        #expect(backups.allSatisfy { $0 >= 1 }, "Backup instances entered per survivor: \(backups)")
    }

    /// The probe's timer (ChainClient.Settings.probeTimeoutNanos): with the tail down, each Chain instance after a
    /// Backup aborts on the short timer, not the client's ordinary one (3 s here). k = 1, 2, 4, 8 for 12 writes: the
    /// first switch waits out the ordinary timer (Chain 1 was not entered from a Backup), and each later Chain
    /// instance — at least two — PANICs on the probe's. Before, every one cost the ordinary timer (none counted).
    @Test func section13_1_chainAfterBackupProbesWithTheShortTimer() async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try Self.cluster()
        defer { cluster.stop() }
        let client = try Self.client(cluster, 0) { settings in
            settings.timeoutNanos = 3_000_000_000
            settings.probeTimeoutNanos = 200_000_000
        }
        defer { client.close() }
        _ = try await put(client, "warm", "up")
        cluster.replicas[3].stop()
        for k in 0..<12 {
            let out = try await put(client, "after\(k)", "w\(k)")
            #expect(out.value == Array("w\(k)".utf8))
        }
        let s = client.statistics
        #expect(s.backupCommits >= 1 && s.switches >= 4, "\(s)")
        #expect(s.probeTimeouts >= 2, "Chain instances after a Backup did not PANIC on the probe's timer: \(s)")
        #expect(s.probeTimeouts < s.panics, "Chain 1's PANIC is on the ordinary timer: \(s)")
        #expect(try await get(client, TestStore.appliedKey).value == Array("13".utf8))
    }

    /// Many times history_max requests commit with a replica down: each Backup's abort history starts at its last
    /// checkpoint boundary (spec §13.1, [T] footnote 10), so the Chain instance after it enters with fewer than CHK
    /// entries. Before, a Backup handed on its whole executed sequence (its init history and its k, up to history_max),
    /// the Chain instance entered with its history full, and with 4 × history_max writes the client got neither a reply
    /// nor an abort in time (`outcome unknown`; 2 × still passed).
    @Test func section13_1_moreThanHistoryMaxCommitWithAReplicaDown() async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let historyMax: UInt32 = 128
        let cluster = try TestCluster(f: 1) { settings in
            settings.backupSchedule = Backup.Schedule(cExponent: 0)
            settings.backupViewChangeTimeoutTicks = 30
            settings.historyMax = historyMax
        }
        defer { cluster.stop() }
        let client = try Self.client(cluster, 0)
        defer { client.close() }
        _ = try await put(client, "warm", "up")
        cluster.replicas.last!.stop()
        let writes = 4 * Int(historyMax) + 16
        let lanes = 4
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<lanes {
                group.addTask {
                    for k in stride(from: lane, to: writes, by: lanes) { _ = try await put(client, "k\(k)", "v\(k)") }
                }
            }
            try await group.waitForAll()
        }
        #expect(try await get(client, TestStore.appliedKey).value == Array("\(1 + writes)".utf8))
        let live = Array(cluster.replicas.dropLast())
        #expect(Self.settle(live), "the live replicas' states did not meet: \(live.map(\.statistics.stateSN))")
        for replica in live { replica.stop() }
        let digests = live.map(\.statistics.stateDigest)
        #expect(digests.allSatisfy { $0 != nil } && Set(digests).count == 1, "survivors' state digests \(digests)")
        let s = client.statistics
        print("history_max \(historyMax), \(writes) writes with r3 down: switches \(s.switches), Backup commits \(s.backupCommits); replicas' instance \(live.map(\.statistics.switching.instance)), unreachable \(live.map(\.statistics.switching.initHistoriesUnreachable))")
        #expect(s.backupCommits > UInt64(historyMax))
    }

    /// Several clients at once, each with requests in flight, after the tail crashed: clients build different init
    /// histories from different 2f+1 ABORTs, take turns in Backup's k, and every request still commits exactly once.
    @Test(arguments: [UInt32(1), 2])
    func section13_1_concurrentClientsAfterACrash(f: UInt32) async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try Self.cluster(f: f)
        defer { cluster.stop() }
        let clients = try (0..<3).map { try Self.client(cluster, UInt32($0)) }
        defer { for client in clients { client.close() } }
        _ = try await put(clients[0], "warm", "up")
        cluster.replicas.last!.stop()
        let perClient = 6
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (c, client) in clients.enumerated() {
                for k in 0..<perClient {
                    group.addTask { _ = try await put(client, "c\(c)-\(k)", "v\(k)") }
                }
            }
            try await group.waitForAll()
        }
        let applied = try await get(clients[1], TestStore.appliedKey).value.map { String(decoding: $0, as: UTF8.self) }
        #expect(applied == "\(1 + 3 * perClient)", "every committed write applied exactly once")
        let live = Array(cluster.replicas.dropLast())
        #expect(Self.settle(live), "the live replicas' states did not meet: \(live.map(\.statistics.stateSN))")
        for replica in live { replica.stop() }
        let digests = live.map(\.statistics.stateDigest)
        #expect(digests.allSatisfy { $0 != nil } && Set(digests).count == 1, "survivors' state digests \(digests)")
        print("f=\(f) concurrent: switches \(clients.map(\.statistics.switches)), Backup commits \(clients.map(\.statistics.backupCommits)), retransmits \(clients.map(\.statistics.backupRetransmits)); instance \(live.map(\.statistics.switching.instance)), behind \(live.map(\.statistics.switching.backupBehind)), refused \(live.map(\.statistics.switching.backupRefused))")
    }
}
