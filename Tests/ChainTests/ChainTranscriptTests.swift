import CRingCastCore
import RingCastChain
import Glibc
import Testing

/// Transcript tests of steps C1–C4 (spec §8) per role: a tiny script of events and the actions each core emits.
@Suite struct ChainTranscriptTests {
    /// f = 1, one request end to end: C1 at the client, C2 at the head, C3 at r2, r3 (Σlast), r4 (tail), C4.
    @Test func stepsC1toC4_oneRequestF1() throws {
        let x = try ChainFixture(f: 1)
        let client = try x.client(0)
        let request = x.request(client: 0, timestamp: 1, op: "put a 1")
        // C1: the client writes f+1 = 2 MACs, for r1 and r2.
        let macs = try client.authenticate(timestamp: 1, op: request.op)
        #expect(macs.count == 2)
        // C2: the head checks its MAC, assigns sn 1, logs.
        #expect(x.cores[0].request(request, clientMACs: macs) == 0)
        #expect(x.cores[0].lastSN == 1)
        var states = [UInt64](repeating: 0, count: 4)
        #expect(x.execute(0, state: &states[0]) == [1])
        let b1 = try #require(x.next(0))
        #expect(b1.snFirst == 1 && b1.requests.count == 1)
        #expect(b1.window.count == 2 && b1.clientMACs.count == 1 && b1.replyMACs.isEmpty, "§5.4: μ(C,r2) μ(r1,r2) μ(r1,r3)")
        #expect(b1.clientMACs[0] == macs[1], "the client's MAC for r2 travels with the request")
        // C3 at r2 (checks μ(C,r2), μ(r1,r2)).
        #expect(x.cores[1].receive(b1) == 0)
        #expect(x.execute(1, state: &states[1]) == [1])
        let b2 = try #require(x.next(1))
        #expect(b2.window.count == 3 && b2.clientMACs.isEmpty && b2.replyMACs.isEmpty)
        // C3 at r3 ∈ Σlast: the batch waits for the reply (ρ).
        #expect(x.cores[2].receive(b2) == 0)
        #expect(x.next(2) == nil, "Σlast forwards only after the application replied")
        x.execute(2, state: &states[2])
        let b3 = try #require(x.next(2))
        #expect(b3.window.count == 2 && b3.replyMACs.count == 1, "§5.4: μ(r2,r4) μ(r3,r4) ρ(r3,C)")
        // C3 at the tail: the reply batch carries f+1 ρ and H_1.
        #expect(x.cores[3].receive(b3) == 0)
        x.execute(3, state: &states[3])
        let out = try #require(x.next(3))
        #expect(out.window.isEmpty && out.replyMACs.count == 2 && out.historyDigests.count == 1)
        // C4: the client commits with the reply it computes D(reply) of.
        var state: UInt64 = 0
        let reply = ChainFixture.apply(&state, request.op)
        #expect(client.commits(timestamp: 1, op: request.op, sn: 1, reply: reply, historyDigest: out.historyDigests[0],
                               replyMACs: out.replyMACs))
        // The history digest is the same at every replica (D2).
        let digests = x.cores.map { ChainDigest(try! #require($0.history(1)).history_digest) }
        #expect(Set(digests).count == 1 && digests[0] == out.historyDigests[0])
        // A different reply, history digest or one bad ρ: no commit (C4).
        var wrong = reply
        wrong[0] ^= 1
        #expect(!client.commits(timestamp: 1, op: request.op, sn: 1, reply: wrong, historyDigest: out.historyDigests[0],
                                replyMACs: out.replyMACs))
        #expect(!client.commits(timestamp: 1, op: request.op, sn: 1, reply: reply, historyDigest: ChainDigest(bytes: .init(repeating: 0, count: 32)),
                                replyMACs: out.replyMACs))
        #expect(!client.commits(timestamp: 1, op: request.op, sn: 1, reply: reply, historyDigest: out.historyDigests[0],
                                replyMACs: [out.replyMACs[0], out.replyMACs[1].flipped()]))
        for core in x.cores { #expect(!core.stopped) }
    }

    /// C2 steps 2 and 3: an old timestamp is ignored; a bad client MAC is discarded and the head goes on.
    @Test func stepC2_headIgnoresOldAndDiscardsBadMAC() throws {
        let x = try ChainFixture(f: 1)
        let client = try x.client(1)
        let r1 = x.request(client: 1, timestamp: 5, op: "a")
        var macs = try client.authenticate(timestamp: 5, op: r1.op)
        macs[0] = macs[0].flipped()
        #expect(x.cores[0].request(r1, clientMACs: macs) == -EBADMSG)
        #expect(x.cores[0].stats.requests_bad_mac == 1 && !x.cores[0].stopped && x.cores[0].lastSN == 0)
        macs[0] = macs[0].flipped()
        #expect(x.cores[0].request(r1, clientMACs: macs) == 0)
        #expect(x.cores[0].request(r1, clientMACs: macs) == 1, "t_c ≤ t_1[c]: not new")
        #expect(x.cores[0].stats.requests_not_new == 1 && x.cores[0].lastSN == 1)
    }

    /// §9: requests that arrive while the link is busy share one batch, with consecutive sns and one ordering MAC
    /// per successor.
    @Test func section9_batchHasConsecutiveSequenceNumbers() throws {
        let x = try ChainFixture(f: 1, batchCount: 3)
        for c in UInt32(0)..<4 {
            let r = x.request(client: c, timestamp: 1, op: "op\(c)")
            #expect(x.cores[0].request(r, clientMACs: try x.client(c).authenticate(timestamp: 1, op: r.op)) == 0)
        }
        let first = try #require(x.next(0))
        #expect(first.snFirst == 1 && first.requests.map(\.client) == [0, 1, 2] && first.window.count == 2)
        let second = try #require(x.next(0))
        #expect(second.snFirst == 4 && second.requests.count == 1)
        #expect(x.next(0) == nil)
        #expect(x.cores[1].receive(first) == 0 && x.cores[1].receive(second) == 0)
        #expect(x.cores[1].lastSN == 4)
        #expect(x.cores[1].receive(first) == 1, "D6: a batch wholly seen is a retransmission")
        #expect(!x.cores[1].stopped)
    }

    /// C3 (ii), D6: a gap stops the replica.
    @Test func stepC3_sequenceGapStops() throws {
        let x = try ChainFixture(f: 1)
        let r = x.request(client: 0, timestamp: 1, op: "x")
        _ = x.cores[0].request(r, clientMACs: try x.client(0).authenticate(timestamp: 1, op: r.op))
        var b = try #require(x.next(0))
        b.snFirst = 2
        #expect(x.cores[1].receive(b) == -EPROTO)
        #expect(x.cores[1].stopped && x.cores[1].stopReason == RC_CHAIN_STOP_SEQUENCE)
        #expect(x.cores[1].receive(b) == -ESHUTDOWN)
    }

    /// C3 (iii): a timestamp not above t_j[c] inside an ordered batch stops the replica (D5).
    @Test func stepC3_oldTimestampStops() throws {
        let x = try ChainFixture(f: 1)
        let c0 = try x.client(0)
        let r1 = x.request(client: 0, timestamp: 2, op: "x")
        _ = x.cores[0].request(r1, clientMACs: try c0.authenticate(timestamp: 2, op: r1.op))
        let b1 = try #require(x.next(0))
        #expect(x.cores[1].receive(b1) == 0)
        // A Byzantine head re-sends the same request under a new sn, re-authenticated with its own keys.
        var replay = b1
        replay.snFirst = 2
        let block = replay.orderingBlock(f: 1, position: 0, keyRing: x.cores[0].keyRing)
        replay.window = block
        #expect(x.cores[1].receive(replay) == -EPROTO)
        #expect(x.cores[1].stopReason == RC_CHAIN_STOP_TIMESTAMP)
        #expect(x.cores[1].lastSN == 1)
    }
}

/// Settings are validated at init (rc_chain.h): bad ones are refused with -EINVAL, never trapped on later.
@Suite struct ChainSettingsTests {
    @Test func invalidSettingsAreRefused() throws {
        let keys = try ChainKeys.generate(f: 1, clients: 2)
        let ring = try keys.keyRing(for: .replica(0))
        let good = ChainCore.settings(f: 1, self: 0, clients: 2, crypto: ring.crypto)
        var cases: [rc_chain_settings] = []
        var s = good; s.f = 0; cases.append(s)
        s = good; s.`self` = 4; cases.append(s)
        s = good; s.instance = 0; cases.append(s)
        s = good; s.history_max = s.checkpoint_interval + s.batch_count_max - 1; cases.append(s)
        s = good; s.out_batches_max = 1; cases.append(s)
        s = good; s.batch_count_max = 0; cases.append(s)
        s = good; s.crypto.mac = nil; cases.append(s)
        for bad in cases {
            var bad = bad
            #expect(rc_chain_memory_size(&bad) == 0)
        }
        var ok = good
        #expect(rc_chain_memory_size(&ok) > 0)
        #expect(throws: ChainError.code(-EINVAL)) { try ChainCore(cases[1], keyRing: ring) }
        let core = try ChainCore(good, keyRing: ring)
        #expect(core.isHead && !core.inSigmaLast && core.historyCount == 0)
        #expect(core.receive(ChainBatch(instance: 1, snFirst: 1, requests: [], window: [], clientMACsPerRequest: 0,
                                        clientMACs: [], replyMACsPerRequest: 0, replyMACs: [])) == -EINVAL,
                "the head takes no batches")
    }
}
