import Testing
import RingCastBackup
import RingCastChain

@Suite("BackupTests: PBFT core")
struct PBFTTests {
    /// PBFT §4.2: with n = 3f+1 and no fault every replica executes every request once, in one order, and the client
    /// gets f+1 matching replies.
    @Test(arguments: [UInt32(1), 2])
    func section4_2_normalCase(f: UInt32) throws {
        let cluster = try PBFTCluster(f: f)
        for t in 1...6 as ClosedRange<UInt64> {
            for c in 0..<UInt32(2) { try cluster.submit(client: c, timestamp: t, op: [UInt8(c), UInt8(t)]) }
        }
        let reference = cluster.apps[0].order
        #expect(reference.count == 12)
        for q in 0..<Int(cluster.n) {
            #expect(cluster.apps[q].order == reference)
            #expect(cluster.apps[q].executed.map(\.sn) == Array(1...12))
            #expect(cluster.replicas[q].view == 0)
        }
        #expect(cluster.committedResult(client: 1, timestamp: 3) == [3, 1])
        #expect(cluster.refusals.isEmpty)
        // Every replica message is signed (the slow path's transferable proofs).
        #expect(cluster.replicas.allSatisfy { $0.stats.signatures > 0 && $0.stats.signatureVerifications > 0 })
    }

    /// PBFT §4.4: the primary crashed; the backups' timers expire, they change to view 1, and the requests commit.
    @Test(arguments: [UInt32(1), 2])
    func section4_4_viewChangeAfterCrashedPrimary(f: UInt32) throws {
        let cluster = try PBFTCluster(f: f)
        try cluster.submit(client: 0, timestamp: 1)
        cluster.crashed = [0]
        try cluster.submit(client: 0, timestamp: 2)
        try cluster.submit(client: 1, timestamp: 1)
        #expect(cluster.committedResult(client: 0, timestamp: 2) == nil)
        cluster.tick(200)
        for q in cluster.live {
            #expect(cluster.replicas[Int(q)].view >= 1)
            #expect(cluster.replicas[Int(q)].viewActive)
            #expect(cluster.apps[Int(q)].order == cluster.apps[1].order)
            #expect(cluster.apps[Int(q)].order.count == 3)
        }
        #expect(cluster.committedResult(client: 0, timestamp: 2) == [3, 2, 1])
        #expect(cluster.committedResult(client: 1, timestamp: 1) == [3, 2, 1])
    }

    /// A view change while requests are prepared but not committed everywhere: the NEW-VIEW re-proposes them at the
    /// same sequence numbers, and nothing executes twice.
    @Test func section4_4_preparedRequestsSurviveTheViewChange() throws {
        let cluster = try PBFTCluster(f: 1)
        let r = try cluster.clientRequest(client: 2, timestamp: 1)
        for q in cluster.live { cluster.deliver(.request(r), to: q) }
        // Deliver only PRE-PREPAREs and PREPAREs, then crash the primary before any COMMIT arrives.
        var held: [(UInt32, PBFT.Envelope)] = []
        while !cluster.queue.isEmpty {
            let (to, e) = cluster.queue.removeFirst()
            if case .commit = e.message { held.append((to, e)); continue }
            cluster.deliver(.message(e), to: to)
        }
        cluster.crashed = [0]
        cluster.tick(200)
        for q in cluster.live { #expect(cluster.apps[Int(q)].order == ["2.1"]) }
        #expect(cluster.apps[1].executed.first?.sn == 1)
    }

    /// PBFT §4.3: checkpoints become stable with 2f+1 matching CHECKPOINTs and the log never holds more than L slots.
    @Test func section4_3_checkpointGarbageCollection() throws {
        let cluster = try PBFTCluster(f: 1, checkpointInterval: 4, logWindow: 8)
        for t in 1...40 as ClosedRange<UInt64> { try cluster.submit(client: 0, timestamp: t) }
        for replica in cluster.replicas {
            #expect(replica.lastExecuted == 40)
            #expect(replica.lowWaterMark == 40)
            #expect(replica.stats.checkpointsStable == 10)
            #expect(replica.stats.slotsHighest <= 8)
            #expect(replica.stats.slots == 0)
        }
    }

    /// §4.1: a retransmitted request gets the cached reply and is not executed again.
    @Test func section4_1_duplicateRequestGetsTheCachedReply() throws {
        let cluster = try PBFTCluster(f: 1)
        try cluster.submit(client: 3, timestamp: 7, op: [9, 8])
        let before = cluster.replies.count
        try cluster.submit(client: 3, timestamp: 7, op: [9, 8])
        #expect(cluster.replies.count == before + 4)
        #expect(cluster.replies.suffix(4).allSatisfy { $0.result == [8, 9] && $0.timestamp == 7 })
        #expect(cluster.apps.allSatisfy { $0.executed.count == 1 })
        #expect(cluster.replicas.allSatisfy { $0.stats.cachedReplies == 1 })
        // An older timestamp gets nothing and is not ordered.
        try cluster.submit(client: 3, timestamp: 6)
        #expect(cluster.replies.count == before + 4)
    }

    /// Bad input gets a clear error and the replica keeps working: a forged client MAC, a client out of range, a
    /// message whose signature is not its sender's.
    @Test func badInputIsRefused() throws {
        let cluster = try PBFTCluster(f: 1)
        var r = try cluster.clientRequest(client: 0, timestamp: 1)
        r.authenticator[1] = r.authenticator[1].flipped()
        var app = RecordingApp()
        #expect(throws: PBFT.EventError.clientMAC) { try cluster.replicas[1].handle(.request(r), app: &app) }
        var other = try cluster.clientRequest(client: 0, timestamp: 1)
        other.request.client = 99
        #expect(throws: PBFT.EventError.clientOutOfRange(99)) { try cluster.replicas[1].handle(.request(other), app: &app) }
        let vote = PBFT.Message.prepare(PBFT.Vote(view: 0, sn: 1, digest: .zero))
        let forged = PBFT.Envelope(sender: 2, message: vote, signature: [UInt8](repeating: 7, count: 64))
        #expect(throws: PBFT.EventError.signature) { try cluster.replicas[1].handle(.message(forged), app: &app) }
        try cluster.submit(client: 0, timestamp: 1)
        #expect(cluster.committedResult(client: 0, timestamp: 1) == [3, 2, 1])
    }

    /// An equivocating primary: a second PRE-PREPARE for (v, n) with another digest is refused as a conflict.
    @Test func equivocatingPrePrepareIsRefused() throws {
        let cluster = try PBFTCluster(f: 1)
        let a = try cluster.clientRequest(client: 0, timestamp: 1, op: [1])
        let b = try cluster.clientRequest(client: 1, timestamp: 1, op: [2])
        let primaryRing = try cluster.keys.keyRing(for: .replica(0))
        func prePrepare(_ r: PBFT.ClientRequest) -> PBFT.Envelope {
            let p = PBFT.PrePrepare(view: 0, sn: 1, digest: PBFT.requestDigest(r.request, keyRing: primaryRing), request: r)
            return PBFT.Envelope.sign(.prePrepare(p), by: 0, keyRing: primaryRing)
        }
        var app = RecordingApp()
        _ = try cluster.replicas[1].handle(.message(prePrepare(a)), app: &app)
        #expect(throws: PBFT.EventError.conflict) { try cluster.replicas[1].handle(.message(prePrepare(b)), app: &app) }
    }

    /// A forged view-change certificate (a prepared certificate with a PREPARE the replica did not sign, or too few
    /// PREPAREs) is refused.
    @Test func forgedViewChangeCertificateIsRefused() throws {
        let cluster = try PBFTCluster(f: 1)
        let r = try cluster.clientRequest(client: 0, timestamp: 1)
        let rings = try (0..<UInt32(4)).map { try cluster.keys.keyRing(for: .replica($0)) }
        let d = PBFT.requestDigest(r.request, keyRing: rings[0])
        let pp = PBFT.Envelope.sign(.prePrepare(PBFT.PrePrepare(view: 0, sn: 1, digest: d, request: r)), by: 0, keyRing: rings[0])
        let vote = PBFT.Message.prepare(PBFT.Vote(view: 0, sn: 1, digest: d))
        let good = PBFT.Envelope.sign(vote, by: 1, keyRing: rings[1])
        // Replica 3 (Byzantine) claims replica 2 prepared too, signing with its own key.
        let forged = PBFT.Envelope(sender: 2, message: vote, signature: PBFT.Envelope.sign(vote, by: 2, keyRing: rings[3]).signature)
        let vc = PBFT.ViewChange(newView: 1, stableSn: 0, stableDigest: .zero, checkpointProof: [],
                                 prepared: [PBFT.PreparedCertificate(prePrepare: pp, prepares: [good, forged])])
        let e = PBFT.Envelope.sign(.viewChange(vc), by: 3, keyRing: rings[3])
        var app = RecordingApp()
        #expect(throws: PBFT.EventError.certificate("prepare")) { try cluster.replicas[1].handle(.message(e), app: &app) }
        let short = PBFT.ViewChange(newView: 1, stableSn: 0, stableDigest: .zero, checkpointProof: [],
                                    prepared: [PBFT.PreparedCertificate(prePrepare: pp, prepares: [good])])
        let e2 = PBFT.Envelope.sign(.viewChange(short), by: 3, keyRing: rings[3])
        #expect(throws: PBFT.EventError.certificate("fewer than 2f prepares")) { try cluster.replicas[1].handle(.message(e2), app: &app) }
    }

    @Test func settingsOutOfRangeAreRefused() throws {
        let keys = try ChainKeys.generate(f: 1, clients: 1)
        let ring = try keys.keyRing(for: .replica(0))
        #expect(throws: PBFT.SettingsError.replica(4)) { try PBFT.Replica(settings: PBFT.Settings(f: 1, replica: 4, clientsMax: 1), keyRing: ring) }
        #expect(throws: PBFT.SettingsError.window(checkpointInterval: 16, logWindow: 20)) {
            try PBFT.Replica(settings: PBFT.Settings(f: 1, replica: 0, logWindow: 20, clientsMax: 1), keyRing: ring)
        }
    }
}

@Suite("BackupTests: PBFT bounds")
struct PBFTBoundsTests {
    /// The pending table is bounded: beyond pendingMax a request is refused (the client retries), never dropped
    /// silently; and the primary assigns no sequence number above h + L.
    @Test func pendingTableAndWindowAreBounded() throws {
        let keys = try ChainKeys.generate(f: 1, clients: 8)
        let settings = PBFT.Settings(f: 1, replica: 1, checkpointInterval: 2, logWindow: 4, clientsMax: 8, pendingMax: 3)
        let backup = try PBFT.Replica(settings: settings, keyRing: keys.keyRing(for: .replica(1)))
        var app = RecordingApp()
        func request(_ c: UInt32) throws -> PBFT.ClientRequest {
            PBFT.ClientRequest(PBFT.Request(client: c, timestamp: 1, op: [1]), keyRing: try keys.keyRing(for: .client(c)), n: 4)
        }
        for c in 0..<UInt32(3) { _ = try backup.handle(.request(request(c)), app: &app) }
        #expect(backup.pendingCount == 3)
        #expect(throws: PBFT.EventError.pendingFull) { try backup.handle(.request(request(3)), app: &app) }
        #expect(backup.stats.refused == 1)

        // One request per sequence number and no in-flight limit: only the window holds the primary back.
        let primary = try PBFT.Replica(settings: PBFT.Settings(f: 1, replica: 0, checkpointInterval: 2, logWindow: 4, clientsMax: 8,
                                                               batchMax: 1, proposalsInFlightMax: 64),
                                       keyRing: keys.keyRing(for: .replica(0)))
        var proposed = 0
        for c in 0..<UInt32(8) {
            for a in try primary.handle(.request(request(c)), app: &app) {
                if case .broadcast(let e) = a, case .prePrepare = e.message { proposed += 1 }
            }
        }
        #expect(proposed == 4) // L = 4: the other four wait for a stable checkpoint
        #expect(primary.stats.slotsHighest <= 4)
    }
}

@Suite("BackupTests: PBFT batching")
struct PBFTBatchingTests {
    /// TOCS 2002 §5.1.4: with two sequence numbers in flight (the default), the requests that arrive meanwhile form
    /// the next PRE-PREPARE's batch; every replica executes each request once, in one order, and each client gets its
    /// reply. 10 requests take 3 sequence numbers (1, 1, 8), so 3 rounds of signed PREPAREs and COMMITs, not 10.
    @Test(arguments: [UInt32(1), 2])
    func requestsThatArriveWhileProposalsAreInFlightShareOneSequenceNumber(f: UInt32) throws {
        let cluster = try PBFTCluster(f: f, clients: 10)
        for c in 0..<UInt32(10) {
            let r = try cluster.clientRequest(client: c, timestamp: 1, op: [UInt8(c)])
            for q in cluster.live { cluster.deliver(.request(r), to: q) }
        }
        cluster.run()
        let reference = cluster.apps[0].order
        #expect(reference == (0..<10).map { "\($0).1" })
        for q in 0..<Int(cluster.n) {
            #expect(cluster.apps[q].order == reference)
            #expect(cluster.apps[q].executed.map(\.sn) == [1, 2] + Array(repeating: 3, count: 8))
        }
        for c in 0..<UInt32(10) { #expect(cluster.committedResult(client: c, timestamp: 1) == [UInt8(c)]) }
        #expect(cluster.refusals.isEmpty)
    }

    /// A primary that waited at the window's end (H = h + L) proposes the waiting requests as soon as a checkpoint
    /// becomes stable, without a further request to prompt it: 8 requests, L = 4, one request per sequence number.
    @Test func primaryProposesWhenTheWindowMoves() throws {
        let cluster = try PBFTCluster(f: 1, clients: 8, checkpointInterval: 2, logWindow: 4, batchMax: 1, proposalsInFlightMax: 64)
        for c in 0..<UInt32(8) {
            let r = try cluster.clientRequest(client: c, timestamp: 1, op: [UInt8(c)])
            for q in cluster.live { cluster.deliver(.request(r), to: q) }
        }
        cluster.run()
        for q in 0..<Int(cluster.n) { #expect(cluster.apps[q].executed.map(\.sn) == Array(1...8), "replica \(q)") }
        for c in 0..<UInt32(8) { #expect(cluster.committedResult(client: c, timestamp: 1) == [UInt8(c)]) }
    }

    /// A backup refuses a PRE-PREPARE whose batch breaks its limits (a Byzantine primary): more than batchMax
    /// requests, or an init history sharing a batch. Nothing is logged for that sequence number.
    @Test func batchesBeyondTheLimitsAreRefused() throws {
        let keys = try ChainKeys.generate(f: 1, clients: 4)
        let settings = PBFT.Settings(f: 1, replica: 1, clientsMax: 4, batchMax: 2)
        let backup = try PBFT.Replica(settings: settings, keyRing: keys.keyRing(for: .replica(1)))
        let primaryRing = try keys.keyRing(for: .replica(0))
        var app = RecordingApp()
        func request(_ c: UInt32) throws -> PBFT.ClientRequest {
            PBFT.ClientRequest(PBFT.Request(client: c, timestamp: 1, op: [1]), keyRing: try keys.keyRing(for: .client(c)), n: 4)
        }
        func prePrepare(_ sn: UInt64, _ batch: [PBFT.ClientRequest]) -> PBFT.Envelope {
            PBFT.Envelope.sign(.prePrepare(PBFT.PrePrepare(view: 0, sn: sn, digest: PBFT.batchDigest(batch, keyRing: primaryRing),
                                                           requests: batch)), by: 0, keyRing: primaryRing)
        }
        let three = try (0..<UInt32(3)).map(request)
        #expect(throws: PBFT.EventError.conflict) { try backup.handle(.message(prePrepare(1, three)), app: &app) }
        let withHistory = PBFT.ClientRequest(
            PBFT.Request(client: 3, timestamp: 1, op: [1],
                         initHistory: ChainInitHistory(instance: 2, base: 0, baseDigest: .zero, entries: [], proof: [])),
            keyRing: try keys.keyRing(for: .client(3)), n: 4)
        #expect(throws: PBFT.EventError.conflict) { try backup.handle(.message(prePrepare(1, [three[0], withHistory])), app: &app) }
        // Within the limits, the same backup accepts it and sends its PREPARE.
        let accepted = try backup.handle(.message(prePrepare(1, Array(three.prefix(2)))), app: &app)
        #expect(accepted.contains { if case .broadcast(let e) = $0, case .prepare = e.message { true } else { false } })
    }
}
