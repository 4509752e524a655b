@testable import ChainBFT
import Foundation
import Glibc
import RingCastChain
import RingCastSMR
import Synchronization
import Testing

/// Switching over loopback TCP (spec §2.3, §11–§12, §21 conformance 8 and 9): after a PANIC and 2f+1 signed ABORTs
/// the client builds ⟨IH, Proof_IH⟩, the replicas enter instance 2 (rolled back to the checkpoint base, D10), FETCH
/// what they miss, and the clients continue there. The Byzantine replica is a test wrapper around a correct core
/// (its outgoing frames altered), never a flag in the core.
@Suite(.serialized)
struct ChainInstanceSwitchTests {
    /// Flips every ordering MAC of the head's batches of instance 1 from sn `from` on: r1 refuses them and stops (C3),
    /// no reply comes, the clients panic. In instance 2 the head behaves (a transient fault).
    static func headForgesBatches(from sn: UInt64) -> @Sendable (ChainFrame) -> ChainFrame? {
        { frame in
            guard case .batch(var batch) = frame, batch.instance == 1, batch.snFirst >= sn else { return frame }
            batch.window = batch.window.map { $0.flipped() }
            return .batch(batch)
        }
    }

    static func switchingClient(_ cluster: TestCluster, _ id: UInt32, window: Int = 4,
                                timeoutMillis: UInt64 = 2_000) throws -> ChainClient {
        var settings = ChainClient.Settings(f: cluster.f, client: id, replicas: cluster.endpoints)
        settings.timeoutNanos = timeoutMillis * 1_000_000
        settings.abortWaitNanos = 3_000_000_000
        settings.checkpointInterval = 16
        settings.windowMax = window
        settings.switchInstance = ChainNextInstance(instancesMax: 4)
        let client = try ChainClient(settings: settings, keyRing: try cluster.keys.keyRing(for: .client(id)))
        try client.start()
        return client
    }

    /// Waits until every replica is in one instance ≥ `instance` and all executed the same requests, stably.
    static func settle(_ cluster: TestCluster, instance: UInt64, timeoutNanos: UInt64 = 10_000_000_000) -> Bool {
        let deadline = DispatchTime.now().uptimeNanoseconds + timeoutNanos
        while DispatchTime.now().uptimeNanoseconds < deadline {
            let s = cluster.replicas.map(\.statistics)
            if s.allSatisfy({ $0.switching.instance >= instance }), Set(s.map(\.switching.instance)).count == 1,
               Set(s.map(\.lastSN)).count == 1,
               s.allSatisfy({ $0.executed > 0 }) {
                usleep(200_000)
                let again = cluster.replicas.map(\.statistics.lastSN)
                if Set(again).count == 1 && again == s.map(\.lastSN) { return true }
            }
            usleep(20_000)
        }
        return false
    }

    /// Abort Order and exactly-once over a switch: two clients keep writing while the head forges batch MACs; they
    /// panic, switch to instance 2 and every write commits once; afterwards every key reads its last written value on
    /// every replica's state (equal state digests), and the store applied exactly as many writes as committed.
    @Test func section12_byzantineHeadLeadsToSwitchWithNothingLost() async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try TestCluster(f: 1) { settings in
            if settings.position == 0 { settings.outbound = Self.headForgesBatches(from: 24) }
        }
        defer { cluster.stop() }
        let clients = try (0..<2).map { try Self.switchingClient(cluster, UInt32($0)) }
        let writes = 40
        let failures = await withTaskGroup(of: [String].self) { group in
            for (c, client) in clients.enumerated() {
                group.addTask {
                    var failed: [String] = []
                    for k in 0..<writes {
                        do { _ = try await put(client, "c\(c)-k\(k % 8)", "v\(k)") } catch { failed.append("c\(c) k\(k): \(error)") }
                    }
                    return failed
                }
            }
            var all: [String] = []
            for await part in group { all += part }
            return all
        }
        #expect(failures.isEmpty, "\(failures)")
        let switches = clients.map(\.statistics.switches)
        #expect(switches.reduce(0, +) >= 1, "no client switched: \(clients.map(\.statistics))")
        // Reads in instance 2: the last committed write of every key is there (nothing committed lost).
        for c in 0..<2 {
            for key in 0..<8 {
                let last = (0..<writes).last { $0 % 8 == key }!
                let output = try await get(clients[c], "c\(c)-k\(key)")
                #expect(output.value == Array("v\(last)".utf8), "c\(c)-k\(key)")
            }
        }
        let applied = try await get(clients[0], TestStore.appliedKey)
        #expect(applied.value == Array("\(2 * writes)".utf8), "every committed write applied exactly once")
        for client in clients { client.close() }
        #expect(Self.settle(cluster, instance: 2), "\(cluster.replicas.map(\.statistics.switching))")
        cluster.stop()
        let digests = cluster.replicas.map(\.statistics.stateDigest)
        #expect(digests[0] != nil && Set(digests).count == 1, "state digests differ: \(digests)")
        for replica in cluster.replicas {
            #expect(replica.statistics.switching.instancesEntered >= 1)
            #expect(replica.statistics.switching.initHistoriesRefused == 0)
        }
    }

    /// A pending request the init history holds commits without being executed again: the tail (a test wrapper)
    /// drops one reply, the client times out and panics, every ABORT holds the request, and after the switch the next
    /// instance answers it from IH (Backup 2: f+1 matching "in the init history" replies carrying the reply; a Chain
    /// instance: Σlast's direct replies, rc_chain_init_reply). Exactly once: the store applied as many writes as
    /// committed.
    @Test func section12_requestInInitHistoryCommitsFromSigmaLast() async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let replies = Mutex(0)
        let cluster = try TestCluster(f: 1) { settings in
            guard settings.position == 3 else { return }
            settings.outbound = { frame in
                guard case .reply = frame else { return frame }
                let k = replies.withLock { count -> Int in count += 1; return count }
                return k == 6 ? nil : frame
            }
        }
        defer { cluster.stop() }
        // A long timer: on a loaded machine a slow rollback must not look like a second fault.
        let client = try Self.switchingClient(cluster, 0, window: 1, timeoutMillis: 1500)
        defer { client.close() }
        for k in 0..<12 { _ = try await put(client, "k\(k % 3)", "v\(k)") }
        let s = client.statistics
        // ≥: on a loaded machine a later request may time out too and take the same path again.
        // Chain 1's next instance is Backup 2 (Aliph's order): its replicas answer a request IH holds with the reply
        // they computed installing IH; a Chain instance after a Backup commits it from Σlast's direct replies. (Requests
        // Backup aborts after its k are resubmitted in Chain 3: `resubmitted` is not 0 any more.)
        #expect(s.switches >= 1 && s.inInitHistory >= 1 && (s.initCommits >= 1 || s.backupCommits >= 1), "\(s)")
        let applied = try await get(client, TestStore.appliedKey)
        #expect(applied.value == Array("12".utf8))
        #expect(try await get(client, "k2").value == Array("v11".utf8))
    }

    /// A client that slept through the switch: its next request carries MACs of instance 1, which the head (now in
    /// instance 2, or later on a loaded machine) refuses; the head sends it the current instance's init history, which
    /// the client checks and joins, resubmits and commits — long before its own two-minute timer (the time limit
    /// fails the test otherwise). The head counts the stale request.
    @Test(.timeLimit(.minutes(1))) func section12_staleClientLearnsOfTheSwitchFromTheHead() async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try TestCluster(f: 1) { settings in
            if settings.position == 0 { settings.outbound = Self.headForgesBatches(from: 8) }
        }
        defer { cluster.stop() }
        let sleeper = try Self.switchingClient(cluster, 1, window: 1, timeoutMillis: 120_000)
        defer { sleeper.close() }
        for k in 0..<3 { _ = try await put(sleeper, "s", "v\(k)") }
        let active = try Self.switchingClient(cluster, 0, window: 1)
        defer { active.close() }
        for k in 0..<12 { _ = try await put(active, "a", "v\(k)") }
        #expect(active.statistics.switches >= 1)
        #expect(cluster.replicas[0].statistics.switching.instance >= 2)
        _ = try await put(sleeper, "s", "late")
        let s = sleeper.statistics
        #expect(s.panics == 0 && s.instancesJoined == 1 && s.switches == 1 && s.resubmitted == 1, "\(s)")
        #expect(cluster.replicas[0].statistics.switching.oldInstanceFrames >= 1)
        #expect(try await get(sleeper, "s").value == Array("late".utf8))
    }

    /// Conformance 9: r3 lost its request store (test hook) and FETCHes every IH body; the Byzantine head, asked first,
    /// answers with another body, which r3's core refuses; a correct replica's answer is taken; r3 ends with the same
    /// state as the others.
    @Test func section12_missingRequestsAreFetchedAndAWrongBodyIsRefused() async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try TestCluster(f: 1) { settings in
            if settings.position == 3 { settings.forgetBodiesOnEnter = true }
            settings.checkpointRetransmitTicks = 10 // FETCH rounds (and CHECKPOINT retransmissions) every 100 ms
            guard settings.position == 0 else { return }
            let forge = Self.headForgesBatches(from: 20)
            settings.outbound = { frame in
                guard case .fetched(var answer) = frame, var request = answer.request else { return forge(frame) }
                request.op = ChainOperation.command(TestStore.Command.put(key: Array("forged".utf8), value: [1]))
                answer.request = request
                return .fetched(answer)
            }
        }
        defer { cluster.stop() }
        // A long timer: FETCH rounds are 0.5 s apart, and a loaded machine must not look like a second fault.
        let client = try Self.switchingClient(cluster, 0, window: 1, timeoutMillis: 2000)
        defer { client.close() }
        for k in 0..<30 { _ = try await put(client, "k\(k % 4)", "v\(k)") }
        // ≥: on a loaded machine a slow FETCH may look like a second fault; r3 then fetches again, which is fine.
        #expect(client.statistics.switches >= 1)
        #expect(Self.settle(cluster, instance: 2), "\(cluster.replicas.map(\.statistics.switching))")
        let r3 = cluster.replicas[3].statistics.switching
        #expect(r3.bodiesSupplied == 0)
        #expect(r3.fetchesSent >= 1 && r3.fetchedAccepted >= 1, "\(r3)")
        #expect(r3.fetchedRejected >= 1, "the forged FETCH answer was not refused: \(r3)")
        let output = try await get(client, "forged")
        #expect(output.value == nil, "a forged body was executed")
        client.close()
        cluster.stop()
        let digests = cluster.replicas.map(\.statistics.stateDigest)
        #expect(digests[0] != nil && Set(digests).count == 1, "state digests differ: \(digests)")
    }

    /// Conformance 8: a raw client PANICs, gathers 2f+1 ABORTs and builds the genuine ⟨IH, Proof_IH⟩; every forged
    /// variant (a wrong next instance, an ABORT's signature broken, a proof of 2f ABORTs, an entry changed) is refused
    /// by every replica, which stays in instance 1; the genuine one is then entered by all.
    @Test func section21_forgedInitHistoriesAreRefusedByEveryReplica() async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try TestCluster(f: 1)
        defer { cluster.stop() }
        let client = try cluster.client(0)
        for k in 0..<10 { _ = try await put(client, "k\(k)", "v\(k)") }
        client.close()

        let keyRing = try cluster.keys.keyRing(for: .client(1))
        let auth = ChainClientAuthenticator(keyRing: keyRing, f: 1, client: 1)
        var transportSettings = ChainTransport.Settings()
        transportSettings.connectionsMax = 8
        let transport = try ChainTransport(transportSettings)
        var conns: [UInt32] = []
        for endpoint in cluster.endpoints { conns.append(try transport.connect(host: endpoint.host, port: endpoint.port)) }
        var connected = Set<UInt32>()
        var aborts: [ChainAbort] = []
        func pump(until done: () -> Bool) throws {
            let deadline = DispatchTime.now().uptimeNanoseconds + 5_000_000_000
            while !done() && DispatchTime.now().uptimeNanoseconds < deadline {
                try transport.poll(timeoutNanos: 10_000_000) { event in
                    switch event {
                    case .connected(let conn):
                        connected.insert(conn)
                        _ = transport.send(conn, .hello(.client(1), instance: 1))
                    case .frame(_, .abort(let abort)): aborts.append(abort)
                    default: break
                    }
                    return .next
                }
            }
        }
        try pump { connected.count == 4 }
        try #require(connected.count == 4)
        for (r, conn) in conns.enumerated() {
            _ = transport.send(conn, .panic(ChainPanicFrame(try auth.panic(timestamp: 1, replica: UInt32(r)))))
        }
        try pump { aborts.count == 4 }
        var collector = AbstractAbortCollector(f: 1, checkpointInterval: 16)
        var genuine: ChainInitHistory?
        for abort in aborts.sorted(by: { $0.replica < $1.replica }) where genuine == nil {
            genuine = try collector.add(abort, client: 1, timestamp: 1, keyRing: keyRing)
        }
        let ih = try #require(genuine)
        #expect(ih.instance == 2 && ih.entries.count + Int(ih.base) * 16 == 10)

        var forged: [ChainInitHistory] = []
        var wrongNext = ih; wrongNext.instance = 3; forged.append(wrongNext)
        var badSignature = ih; badSignature.proof[1].signature[5] ^= 1; forged.append(badSignature)
        var short = ih; short.proof.removeLast(); forged.append(short)
        var changed = ih
        if !changed.entries.isEmpty { changed.entries[0].timestamp += 1 } else { changed.base += 1 }
        forged.append(changed)
        for variant in forged {
            for conn in conns { _ = transport.send(conn, .initHistory(variant)) }
        }
        let refusedAll = { cluster.replicas.allSatisfy { $0.statistics.switching.initHistoriesRefused == UInt64(forged.count) } }
        try pump { refusedAll() }
        for replica in cluster.replicas {
            let s = replica.statistics.switching
            #expect(s.initHistoriesRefused == UInt64(forged.count), "r\(replica.settings.position): \(s)")
            #expect(s.instance == 1 && s.instancesEntered == 0)
            #expect(s.lastRefusal?.contains("init history refused") == true, "\(String(describing: s.lastRefusal))")
        }
        for conn in conns { _ = transport.send(conn, .initHistory(ih)) }
        try pump { cluster.replicas.allSatisfy { $0.statistics.switching.instance == 2 } }
        for replica in cluster.replicas { #expect(replica.statistics.switching.instance == 2) }
    }

    /// A crashed replica with a switching policy that allows no next instance: Chain alone needs all 3f+1, so the
    /// request ends in a clear error in instance 1 and nothing wrong commits (ChainBackupTests: with the policy
    /// allowing it, Backup survives the crash).
    @Test func section13_crashedReplicaWithoutNextInstanceEndsInAClearError() async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try TestCluster(f: 1)
        defer { cluster.stop() }
        var settings = ChainClient.Settings(f: 1, client: 0, replicas: cluster.endpoints)
        settings.timeoutNanos = 400_000_000
        settings.checkpointInterval = 16
        settings.switchInstance = ChainNextInstance(instancesMax: 1)
        let client = try ChainClient(settings: settings, keyRing: try cluster.keys.keyRing(for: .client(0)))
        try client.start()
        defer { client.close() }
        for k in 0..<5 { _ = try await put(client, "k", "v\(k)") }
        guard client.statistics.switches == 0 else { return } // a loaded machine timed out a write: nothing to check
        cluster.replicas[2].stop()
        do {
            _ = try await put(client, "k", "late")
            Issue.record("a write committed with a replica crashed and no next instance")
        } catch let error as ChainBFTError {
            guard case .instancesExhausted(let instance, _) = error else { Issue.record("\(error)"); return }
            #expect(instance == 1)
        }
        #expect(client.statistics.switches == 0)
    }

    /// Bounded retries: with at most one switch in a row without a commit, the tail's crash costs the switch into
    /// Backup (where the writes commit until its k); the next write's Backup aborts, the Chain instance after it panics
    /// too, and that second switch without a commit ends in the clear error (the write is in its abort history: r0–r2
    /// ordered it, but Σlast's dead member never vouches).
    @Test func section13_switchesWithoutCommitAreBounded() async throws {
        try #require(ioUringAvailable, "io_uring is unavailable here")
        let cluster = try TestCluster(f: 1)
        defer { cluster.stop() }
        var settings = ChainClient.Settings(f: 1, client: 0, replicas: cluster.endpoints)
        settings.timeoutNanos = 400_000_000
        settings.checkpointInterval = 16
        settings.switchInstance = ChainNextInstance()
        settings.switchesWithoutCommitMax = 1
        settings.backupSendsMax = 40 // a loaded machine: Backup's retransmissions must not end a write first
        let client = try ChainClient(settings: settings, keyRing: try cluster.keys.keyRing(for: .client(0)))
        try client.start()
        defer { client.close() }
        _ = try await put(client, "k", "v")
        let before = client.statistics.switches
        guard before == 0 else { return } // a loaded machine timed out the first write: the count below would not hold
        cluster.replicas[3].stop() // the tail
        // "late" was ordered by r0–r2 in Chain 1, so it is in Backup 2's init history: Backup answers it from there
        // (not executed again); "later" is Backup 2's one commit (k = 1).
        _ = try await put(client, "k", "late")
        _ = try await put(client, "k", "later")
        #expect(client.statistics.backupCommits == 2)
        do {
            _ = try await put(client, "k", "latest")
            Issue.record("a write committed after Backup's k")
        } catch let error as ChainBFTError {
            #expect(error == .instancesExhausted(instance: 3, inAbortHistory: true), "\(error)")
        }
        #expect(client.statistics.switches == 2)
    }
}
