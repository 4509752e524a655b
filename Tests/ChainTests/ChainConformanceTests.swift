import CRingCastCore
import Glibc
import RingCastChain
import RingCastSimKit
import Testing

/// Spec §21's conformance tests at the level of single cores (the simulator repeats them over many seeds in
/// ChainSimulationTests).
@Suite struct ChainConformanceTests {
    /// One request through r1 and the batch r1 would send to r2.
    static func firstHop(_ x: ChainFixture) throws -> ChainBatch {
        #expect(try x.submit(client: 0, timestamp: 1) == 0)
        return try #require(x.next(0))
    }

    /// §21.2 (Lemma A.2): r1 sends straight to r3, with guesses for r2's MACs; r3 stops and logs nothing.
    @Test func section21_2_bypassIsDetected() throws {
        let x = try ChainFixture(f: 1)
        let b = try Self.firstHop(x)
        let forged = ChainBatch(
            instance: b.instance, snFirst: b.snFirst, requests: b.requests,
            window: [b.window[1], ChainMAC.zero, ChainMAC.zero], clientMACsPerRequest: 0, clientMACs: [],
            replyMACsPerRequest: 0, replyMACs: [])
        #expect(x.cores[2].receive(forged) == -EPROTO)
        #expect(x.cores[2].stopReason == RC_CHAIN_STOP_ORDERING_MAC && x.cores[2].lastSN == 0)
    }

    /// §21.2: a dropped MAC (the window one short) is a batch no correct predecessor sends.
    @Test func section21_2_droppedMACStops() throws {
        let x = try ChainFixture(f: 1)
        var b = try Self.firstHop(x)
        b.window.removeLast()
        #expect(x.cores[1].receive(b) == -EPROTO)
        #expect(x.cores[1].stopReason == RC_CHAIN_STOP_MALFORMED && x.cores[1].lastSN == 0)
    }

    /// §21.2 with the sliding window: a forged MAC addressed two hops down passes r2 and stops r3.
    @Test func section21_2_forgedMACForFartherSuccessor() throws {
        let x = try ChainFixture(f: 1)
        var b = try Self.firstHop(x)
        b.window[1] = b.window[1].flipped() // μ(r1, r3)
        #expect(x.cores[1].receive(b) == 0)
        var states = [UInt64](repeating: 0, count: 4)
        x.execute(1, state: &states[1])
        let b2 = try #require(x.next(1))
        #expect(x.cores[2].receive(b2) == -EPROTO)
        #expect(x.cores[2].stopReason == RC_CHAIN_STOP_ORDERING_MAC)
    }

    /// §21.3: r2 alters content (or sn) and re-authenticates with its own keys; r3 still has r1's MAC over the
    /// original, so it stops.
    @Test(arguments: ["content", "sequence"])
    func section21_3_tamperingIsDetected(field: String) throws {
        let x = try ChainFixture(f: 1)
        let b = try Self.firstHop(x)
        #expect(x.cores[1].receive(b) == 0)
        var states = [UInt64](repeating: 0, count: 4)
        x.execute(1, state: &states[1])
        var b2 = try #require(x.next(1))
        if field == "content" { b2.requests[0].op.append(0x21) } else { b2.snFirst += 1 }
        let block = b2.orderingBlock(f: 1, position: 1, keyRing: x.cores[1].keyRing)
        b2.window.replaceSubrange((b2.window.count - block.count)..., with: block)
        #expect(x.cores[2].receive(b2) == -EPROTO)
        #expect(x.cores[2].stopReason == (field == "content" ? RC_CHAIN_STOP_ORDERING_MAC : RC_CHAIN_STOP_SEQUENCE))
        #expect(x.cores[2].lastSN == 0)
    }

    /// §21.3 at the head: a head that alters a request cannot forge the client's MAC for r2.
    @Test func section21_3_headTamperingIsDetected() throws {
        let x = try ChainFixture(f: 1)
        var b = try Self.firstHop(x)
        b.requests[0].op = Array("something else".utf8)
        let block = b.orderingBlock(f: 1, position: 0, keyRing: x.cores[0].keyRing)
        b.window = block
        #expect(x.cores[1].receive(b) == -EPROTO)
        #expect(x.cores[1].stopReason == RC_CHAIN_STOP_CLIENT_MAC)
    }

    /// §21.4 and §21.5: a lying tail, or a lying member of Σlast (ρ over its own wrong reply): the client does not commit.
    @Test(arguments: [2, 3])
    func section21_4_5_lyingSigmaLastIsNotCommitted(liar: Int) throws {
        let x = try ChainFixture(f: 1)
        let client = try x.client(0)
        #expect(try x.submit(client: 0, timestamp: 1, op: "op") == 0)
        var states = [UInt64](repeating: 0, count: 4)
        let out = x.pump(states: &states, lieAt: liar)
        let b = try #require(out.first)
        var state: UInt64 = 0
        let truth = ChainFixture.apply(&state, Array("op".utf8))
        var told = truth
        if liar == 3 { told[0] ^= 0xff } // the tail's reply is its own (wrong) one
        #expect(!client.commits(timestamp: 1, op: Array("op".utf8), sn: 1, reply: told, historyDigest: b.historyDigests[0],
                                replyMACs: b.replyMACs))
        #expect(!client.commits(timestamp: 1, op: Array("op".utf8), sn: 1, reply: truth, historyDigest: b.historyDigests[0],
                                replyMACs: b.replyMACs), "one correct-looking reply is not enough: all f+1 must vouch")
    }

    /// §21.6: a Byzantine client's MACs are valid only for the head: r2 stops, Chain will abort.
    @Test(arguments: [UInt32(1), 2])
    func section21_6_clientMACsValidOnlyForHead(f: UInt32) throws {
        let x = try ChainFixture(f: f)
        let r = x.request(client: 0, timestamp: 1, op: "evil")
        var macs = try x.client(0).authenticate(timestamp: 1, op: r.op)
        macs[Int(f)] = macs[Int(f)].flipped() // valid for r1 … r_f, not for r_{f+1}
        #expect(x.cores[0].request(r, clientMACs: macs) == 0)
        var states = [UInt64](repeating: 0, count: x.n)
        var b = try #require(x.next(0))
        for p in 1..<Int(f) {
            #expect(x.cores[p].receive(b) == 0)
            x.execute(p, state: &states[p])
            b = try #require(x.next(p))
        }
        #expect(x.cores[Int(f)].receive(b) == -EPROTO)
        #expect(x.cores[Int(f)].stopReason == RC_CHAIN_STOP_CLIENT_MAC)
    }

    /// §14: checkpoints every CHK requests become stable with all 3f+1 votes and truncate LH; without CHECKPOINTs
    /// the history fills and the head pushes back (-EAGAIN) instead of growing.
    @Test func section14_checkpointsBoundTheHistory() throws {
        let x = try ChainFixture(f: 1, batchCount: 4, checkpointInterval: 4, historyMax: 12)
        var states = [UInt64](repeating: 0, count: 4)
        var timestamp: UInt64 = 1
        for _ in 0..<10 {
            for c in UInt32(0)..<4 { #expect(try x.submit(client: c, timestamp: timestamp) == 0) }
            timestamp += 1
            _ = x.pump(states: &states)
            for core in x.cores { #expect(core.historyCount <= 12) }
        }
        for core in x.cores {
            #expect(core.lastSN == 40 && core.stableCheckpoint == 10 && core.historyCount == 0)
            #expect(core.stats.checkpoints_stable >= 1 && !core.stopped)
        }
        // No CHECKPOINT delivered: the history fills to its bound, then the head refuses.
        var refused = false
        for _ in 0..<4 {
            for c in UInt32(0)..<4 {
                let rc = try x.submit(client: c, timestamp: timestamp)
                if rc == -EAGAIN { refused = true } else { #expect(rc == 0) }
            }
            timestamp += 1
            _ = x.pump(states: &states, checkpoints: false)
        }
        #expect(refused && x.cores[0].historyCount == 12 && x.cores[0].stats.refused_full > 0)
        _ = x.pump(states: &states)
        #expect(x.cores.allSatisfy { $0.historyCount < 12 }, "stable checkpoints free the history again")
    }

    /// §21.7 (Abort Order) at the core level: k requests commit, the client panics, and any 2f+1 ABORTs — f of them
    /// forged and re-signed by a Byzantine replica — give an abort history that has every commit as a prefix.
    @Test(arguments: [UInt32(1), 2])
    func section21_7_abortHistoryKeepsCommits(f: UInt32) throws {
        let x = try ChainFixture(f: f, batchCount: 3, checkpointInterval: 4, historyMax: 16)
        var states = [UInt64](repeating: 0, count: x.n)
        for t in UInt64(1)...5 {
            for c in UInt32(0)..<3 { #expect(try x.submit(client: c, timestamp: t) == 0) }
            _ = x.pump(states: &states)
        }
        // Requests the head ordered that reached nobody else: they may or may not end in the abort history.
        #expect(try x.submit(client: 3, timestamp: 1) == 0)
        let committed = x.cores[Int(3 * f)].lastSN
        #expect(committed == 15)
        let client = try x.client(0)
        var aborts = try (0..<x.n).map { try x.cores[$0].panic(try client.panic(timestamp: 9, replica: UInt32($0))).get() }
        #expect(aborts.allSatisfy { $0.verify(with: client.keyRing) })
        #expect(x.cores.allSatisfy { $0.stopped })
        // f Byzantine replicas forge histories (a different request at every position) and sign them.
        for k in 0..<Int(f) {
            var forged = aborts[k]
            forged.entries = forged.entries.map { var e = $0; e.requestDigest.bytes[0] ^= 0xff; return e }
            aborts[k] = forged.resigned(with: x.cores[k].keyRing)
            #expect(aborts[k].verify(with: client.keyRing))
        }
        // Any 2f+1 with the f forged ones in: the forged first, then f+1 correct ones.
        let chosen = Array(aborts.prefix(Int(f))) + Array(aborts.suffix(Int(f) + 1))
        let ah = ChainAbortHistory.extract(chosen, f: Int(f), checkpointInterval: 4)
        let tail = x.cores[Int(3 * f)]
        let boundary = ah.base * 4
        // The base is a checkpoint the correct replicas vouched for: the tail's own (genuine) ABORT agrees.
        let genuine = try #require(aborts.last)
        #expect(ah.base >= 1 && (genuine.checkpointNumber != ah.base || genuine.checkpointDigest == ah.baseDigest))
        #expect(boundary + UInt64(ah.entries.count) >= committed, "every committed position is in the abort history")
        for (index, entry) in ah.entries.enumerated() {
            let sn = boundary + UInt64(index) + 1
            if let view = tail.history(sn) { #expect(ChainDigest(view.request_digest) == entry.requestDigest) }
        }
    }

    /// P2: a stopped replica orders nothing more, and answers later PANICs with the same frozen history.
    @Test func panicStopsAndFreezes() throws {
        let x = try ChainFixture(f: 1)
        var states = [UInt64](repeating: 0, count: 4)
        #expect(try x.submit(client: 0, timestamp: 1) == 0)
        _ = x.pump(states: &states)
        let c1 = try x.client(1)
        var panic = try c1.panic(timestamp: 3, replica: 1)
        panic.mac.bytes.0 ^= 1
        #expect(throws: ChainError.code(-EBADMSG)) { try x.cores[1].panic(panic).get() }
        #expect(!x.cores[1].stopped)
        let first = try x.cores[1].panic(try c1.panic(timestamp: 3, replica: 1)).get()
        #expect(x.cores[1].stopReason == RC_CHAIN_STOP_PANIC && first.entries.count == 1 && first.nextInstance == 2)
        #expect(try x.submit(client: 2, timestamp: 1) == 0, "the head did not see the PANIC")
        let b = try #require(x.next(0))
        #expect(x.cores[1].receive(b) == -ESHUTDOWN)
        let second = try x.cores[1].panic(try x.client(2).panic(timestamp: 1, replica: 1)).get()
        #expect(second.entries == first.entries)
        // D13: a stopped replica answers a request with the same frozen history, signed for that client.
        #expect(throws: ChainError.code(-EBUSY)) { try x.cores[0].stoppedAbort(client: 2, timestamp: 2).get() }
        let late = try x.cores[1].stoppedAbort(client: 3, timestamp: 7).get()
        #expect(late.entries == first.entries && late.client == 3 && late.verify(with: c1.keyRing))
    }

    /// §14 step 2 as implemented (deviation 6): r4's CHECKPOINTs are lost, so r4 alone has every vote. The others
    /// retransmit theirs after `checkpoint_retransmit_ticks` to r4 (the vote they lack); r4, stable already,
    /// answers each with its vote, and the checkpoint becomes stable everywhere.
    @Test func section14_checkpointRetransmission() throws {
        let keys = try ChainKeys.generate(f: 1, clients: 4)
        let cores = try (0..<UInt32(4)).map { p in
            try ChainCore(ChainCore.settings(f: 1, self: p, clients: 4, batchCount: 4, checkpointInterval: 4,
                                             historyMax: 16, checkpointRetransmitTicks: 3, crypto: rc_crypto()),
                          keyRing: keys.keyRing(for: .replica(p)))
        }
        var states = [UInt64](repeating: 0, count: 4)
        var ops: [UInt64: [UInt8]] = [:]
        for c in UInt32(0)..<4 {
            let op = Array("c\(c)".utf8)
            ops[UInt64(c + 1)] = op
            let auth = ChainClientAuthenticator(keyRing: try keys.keyRing(for: .client(c)), f: 1, client: c)
            #expect(cores[0].request(ChainRequest(client: c, timestamp: 1, op: op, ref: UInt64(c + 1)),
                                     clientMACs: try auth.authenticate(timestamp: 1, op: op)) == 0)
        }
        for p in 0..<4 {
            for e in cores[p].executions() where e.reply_needed {
                #expect(cores[p].reply(sn: e.sn, ChainFixture.apply(&states[p], ops[e.ref]!)) == 0)
            }
            if p < 3 { #expect(cores[p + 1].receive(try #require(cores[p].nextBatch { ops[$0]! })) == 0) }
        }
        #expect(cores.allSatisfy { $0.lastSN == 4 })
        func exchange(losing lost: Int?) -> Int {
            var delivered = 0
            for p in 0..<4 {
                for c in cores[p].checkpoints() where p != lost {
                    _ = cores[Int(c.to)].receive(checkpoint: c)
                    delivered += 1
                }
            }
            return delivered
        }
        #expect(exchange(losing: 3) == 9)
        #expect(cores[3].stableCheckpoint == 1 && cores[0..<3].allSatisfy { $0.stableCheckpoint == 0 })
        for core in cores { core.tick(); core.tick() }
        #expect(exchange(losing: nil) == 0, "nothing before the period")
        for core in cores { core.tick() }
        // r1 … r3 resend to r4 only (the others' votes match), and r4 answers each in the same pass.
        #expect(exchange(losing: nil) == 6)
        #expect(cores.allSatisfy { $0.stableCheckpoint == 1 && $0.historyCount == 0 })
        #expect(exchange(losing: nil) == 0, "answers are not answered")
    }
}
