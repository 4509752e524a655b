import CRingCastCore
import Glibc
import RingCastChain
import Testing

/// Spec §12 and §21 tests 8 and 9 at the level of single cores: entering instance 2 with an init history (IH) and
/// its proof, the checks that refuse forged ones, and FETCH of the request bodies behind IH's digests.
@Suite struct ChainInitTests {
    /// Instance 1 commits `rounds` × 3 requests (CHK 4, so checkpoints go stable), then every replica answers a
    /// PANIC. Returns the fixture and the 3f+1 signed ABORTs.
    static func abortedInstance(f: UInt32, rounds: UInt64 = 5) throws -> (ChainFixture, [ChainAbort]) {
        let x = try ChainFixture(f: f, batchCount: 3, checkpointInterval: 4, historyMax: 16)
        var states = [UInt64](repeating: 0, count: x.n)
        for t in 1...rounds {
            for c in UInt32(0)..<3 { #expect(try x.submit(client: c, timestamp: t) == 0) }
            _ = x.pump(states: &states)
        }
        let client = try x.client(0)
        let aborts = try (0..<x.n).map { try x.cores[$0].panic(try client.panic(timestamp: 99, replica: UInt32($0))).get() }
        return (x, aborts)
    }

    /// The instance-2 cluster on the same keys.
    static func nextInstance(_ x: ChainFixture, retransmitTicks: UInt32 = 0) throws -> ChainFixture {
        try ChainFixture(f: x.f, batchCount: 3, checkpointInterval: 4, historyMax: 16, keys: x.keys, instance: 2,
                         retransmitTicks: retransmitTicks)
    }

    /// The client's proof: any 2f+1 ABORTs (here the last 2f+1), and P3 over them.
    static func initHistory(_ x: ChainFixture, _ aborts: [ChainAbort]) throws -> ChainInitHistory {
        let proof = Array(aborts.suffix(Int(2 * x.f + 1)))
        return try #require(ChainInitHistory.extract(proof: proof, f: x.f, checkpointInterval: 4, instance: 2))
    }

    /// The C extraction agrees with the Swift one (ChainAbortHistory.extract) on genuine and partly forged proofs.
    @Test(arguments: [UInt32(1), 2])
    func p3InCMatchesSwift(f: UInt32) throws {
        let (x, aborts) = try Self.abortedInstance(f: f)
        var forged = aborts
        for k in 0..<Int(f) {
            var a = aborts[k]
            a.entries = a.entries.map { var e = $0; e.requestDigest.bytes[1] ^= 0x5a; return e }
            forged[k] = a.resigned(with: x.cores[k].keyRing)
        }
        for proof in [Array(aborts.suffix(Int(2 * f + 1))), Array(forged.prefix(Int(2 * f + 1)))] {
            let c = try #require(ChainInitHistory.extract(proof: proof, f: f, checkpointInterval: 4, instance: 2))
            let swift = ChainAbortHistory.extract(proof, f: Int(f), checkpointInterval: 4)
            #expect(c.base == swift.base && c.baseDigest == swift.baseDigest)
            #expect(c.entries.map(\.sn) == swift.entries.map(\.sn))
            #expect(c.entries.map(\.requestDigest) == swift.entries.map(\.requestDigest))
            #expect(c.base >= 1, "CHK 4 and 15 committed requests: a stable checkpoint")
            #expect(c.base * 4 + UInt64(c.entries.count) == 15, "every committed request is in IH (Abort Order)")
        }
    }

    /// Before it has an IH, an instance-2 replica orders nothing, holds batches and refuses to answer a PANIC without
    /// one (P2+); a valid IH is installed by every replica, and a second one is ignored.
    @Test func validInitHistoryIsInstalledEverywhere() throws {
        let (x, aborts) = try Self.abortedInstance(f: 1)
        let y = try Self.nextInstance(x)
        #expect(y.cores.allSatisfy { !$0.initialized && $0.initState == RC_CHAIN_INIT_WAITING })
        #expect(try y.submit(client: 0, timestamp: 50) == -ENOTCONN)
        #expect(throws: ChainError.code(-ENOTCONN)) { try y.cores[2].panic(try y.client(0).panic(timestamp: 50, replica: 2)).get() }
        let ih = try Self.initHistory(x, aborts)
        for core in y.cores { #expect(try core.install(ih) == .installed) }
        #expect(try y.cores[0].install(ih) == .ignored, "initialised replicas ignore a later IH")
        for core in y.cores {
            #expect(core.initState == RC_CHAIN_INIT_FETCHING && core.initMissing == UInt32(ih.entries.count))
            #expect(core.lastSN == 15 && core.stableCheckpoint == ih.base)
        }
        #expect(try y.submit(client: 0, timestamp: 5) == 1, "a request already in IH is not logged again")
    }

    /// §21.8: every forged IH or proof is refused by every correct replica, with its reason, and changes nothing.
    @Test(arguments: [UInt32(1), 2])
    func section21_8_forgedInitHistoriesAreRefused(f: UInt32) throws {
        let (x, aborts) = try Self.abortedInstance(f: f)
        let y = try Self.nextInstance(x)
        let ih = try Self.initHistory(x, aborts)
        var cases: [(String, ChainInitHistory, ChainInitRefusal)] = []
        var dropped = ih
        dropped.entries.removeLast()
        cases.append(("a committed request left out", dropped, .mismatch))
        var swapped = ih
        swapped.entries.swapAt(0, 1)
        cases.append(("two requests reordered", swapped, .mismatch))
        var altered = ih
        altered.entries[0].requestDigest.bytes[0] ^= 1
        cases.append(("a request replaced", altered, .mismatch))
        var extra = ih
        var invented = ih.entries.last!
        invented.sn += 1
        invented.timestamp += 100
        extra.entries.append(invented)
        cases.append(("a request added", extra, .mismatch))
        var rebased = ih
        rebased.base = 0
        rebased.baseDigest = ChainDigest(bytes: [UInt8](repeating: 0, count: 32))
        cases.append(("another checkpoint base", rebased, .mismatch))
        var short = ih
        short.proof.removeFirst()
        cases.append(("2f ABORTs", short, .proofSize))
        var twice = ih
        twice.proof[0] = twice.proof[1]
        cases.append(("one replica's ABORT twice", twice, .signer))
        var unsigned = ih
        unsigned.proof[0].entries[0].timestamp += 1
        cases.append(("an ABORT changed after signing", unsigned, .signature))
        var badSignature = ih
        badSignature.proof[1].signature[0] ^= 1
        cases.append(("a broken signature", badSignature, .signature))
        // A Byzantine replica signs an ABORT naming next(i) = 3: it is genuine, but names another instance.
        var elsewhere = ih
        let liar = Int(elsewhere.proof[0].replica)
        elsewhere.proof[0].nextInstance = 3
        elsewhere.proof[0] = elsewhere.proof[0].resigned(with: x.cores[liar].keyRing)
        cases.append(("an ABORT naming next(i) = 3", elsewhere, .next))
        var later = ih
        later.instance = 3
        cases.append(("an IH for instance 3", later, .instance))
        var sameInstance = ih
        sameInstance.proof[0].instance = 2
        sameInstance.proof[0] = sameInstance.proof[0].resigned(with: x.cores[liar].keyRing)
        cases.append(("an ABORT of instance 2 itself", sameInstance, .instance))
        var gap = ih
        gap.proof[0].entries.remove(at: 0)
        gap.proof[0] = gap.proof[0].resigned(with: x.cores[liar].keyRing)
        cases.append(("an ABORT with a gap", gap, .abortShape))
        for (name, forged, reason) in cases {
            for core in y.cores {
                #expect(throws: reason, "\(name) at r\(core.position)") { try core.install(forged) }
                #expect(core.initState == RC_CHAIN_INIT_WAITING && core.lastSN == 0)
            }
        }
        #expect(y.cores[0].stats.inits_refused == UInt64(cases.count))
        // After all that, the genuine IH still goes in.
        for core in y.cores { #expect(try core.install(ih) == .installed) }
    }

    /// The same forged-IH checks hold when the f+1 vouchers of a position are needed: f forged ABORTs in the proof
    /// (re-signed by their Byzantine replicas) still give the genuine history, which replicas accept.
    @Test func proofWithForgedABORTsStillYieldsTheCommittedHistory() throws {
        let (x, aborts) = try Self.abortedInstance(f: 1)
        var forged = aborts[0]
        forged.entries = forged.entries.map { var e = $0; e.timestamp += 1000; return e }
        forged = forged.resigned(with: x.cores[0].keyRing)
        let proof = [forged, aborts[1], aborts[2]]
        let ih = try #require(ChainInitHistory.extract(proof: proof, f: 1, checkpointInterval: 4, instance: 2))
        let genuine = try Self.initHistory(x, aborts)
        #expect(ih.base == genuine.base && ih.entries.map(\.requestDigest) == genuine.entries.map(\.requestDigest))
        let y = try Self.nextInstance(x)
        #expect(try y.cores[3].install(ih) == .installed)
    }

    /// §21.9: bodies behind IH's digests are supplied locally by some replicas and fetched by the others; a body with
    /// the wrong digest is refused; executions wait for the missing ones; then instance 2 commits a new request whose
    /// sn continues after IH, and its own ABORT history keeps IH as a prefix (Abort Order across the switch).
    @Test func section21_9_missingRequestsAreFetched() throws {
        let (x, aborts) = try Self.abortedInstance(f: 1)
        let y = try Self.nextInstance(x, retransmitTicks: 2)
        let ih = try Self.initHistory(x, aborts)
        for core in y.cores { #expect(try core.install(ih) == .installed) }
        // The bodies instance 1 saw, by digest: replicas 0 and 1 kept theirs; 2 and 3 lost everything.
        var bodies: [ChainDigest: ChainRequest] = [:]
        for op in x.ops.values {
            let text = String(decoding: op, as: UTF8.self) // "c<client>-t<timestamp>"
            let parts = text.dropFirst().split(separator: "-t")
            let request = ChainRequest(client: UInt32(parts[0])!, timestamp: UInt64(parts[1])!, op: op)
            bodies[try Self.digest(request, ring: x.cores[0].keyRing)] = request
        }
        func body(_ entry: ChainAbort.Entry) -> ChainRequest? {
            guard var request = bodies[entry.requestDigest] else { return nil }
            request.ref = y.request(client: request.client, timestamp: request.timestamp,
                                    op: String(decoding: request.op, as: UTF8.self)).ref
            return request
        }
        for position in 0..<2 {
            for entry in ih.entries { #expect(y.cores[position].supply(sn: entry.sn, try #require(body(entry))) == 0) }
            #expect(y.cores[position].initialized)
        }
        var states = [UInt64](repeating: 0, count: 4)
        #expect(y.cores[2].executions().isEmpty, "nothing runs before the first missing body")
        for position in 2..<4 {
            let core = y.cores[position]
            let fetches = core.fetches()
            #expect(fetches.count == ih.entries.count)
            #expect(fetches.allSatisfy { $0.to == UInt32((position + 1) % 4) && $0.instance == 2 })
            #expect(core.fetches().isEmpty, "one FETCH per body per round")
            // Replica 3 asks replica 0, which answers; replica 2 asks replica 3, which has nothing: next round.
            if position == 2 {
                for _ in 0..<2 { core.tick() }
                let retry = core.fetches()
                #expect(retry.count == ih.entries.count && retry.allSatisfy { $0.to == 0 }, "the next round asks the next replica")
            }
            // A lying answer first (another request's body), then the right one.
            let first = try #require(ih.entries.first)
            let wrong = try #require(body(ih.entries[1]))
            #expect(core.supply(sn: first.sn, wrong) == -EBADMSG)
            #expect(core.stats.fetched_rejected == 1 && !core.initialized)
            for entry in ih.entries { #expect(core.supply(sn: entry.sn, try #require(body(entry))) == 0) }
            #expect(core.supply(sn: first.sn, try #require(body(first))) == 1)
            #expect(core.supply(sn: 99, wrong) == -ERANGE)
            #expect(core.initialized && core.initMissing == 0)
        }
        // Every replica executes IH (no replies: those were instance 1's), then a new request commits in instance 2.
        for position in 0..<4 {
            let sns = y.execute(position, state: &states[position])
            #expect(sns == ih.entries.map(\.sn))
        }
        #expect(Set(states).count == 1, "every replica reached the same state from IH")
        // Σlast replied to every IH request directly: the f+1 ρ agree and commit for the request's client.
        for entry in ih.entries {
            let replies = try #require(y.initReplies[entry.sn]).sorted { $0.position < $1.position }
            #expect(replies.map(\.position) == [2, 3])
            #expect(replies.allSatisfy { $0.reply == replies[0].reply && $0.history == replies[0].history })
            let owner = try y.client(entry.client)
            let op = try #require(body(entry)).op
            #expect(owner.commits(timestamp: entry.timestamp, op: op, sn: entry.sn, reply: replies[0].reply,
                                  historyDigest: replies[0].history, replyMACs: replies.map(\.mac)))
            var wrong = replies[0].reply
            wrong[0] ^= 1
            #expect(!owner.commits(timestamp: entry.timestamp, op: op, sn: entry.sn, reply: wrong,
                                   historyDigest: replies[0].history, replyMACs: replies.map(\.mac)))
        }
        let request = y.request(client: 1, timestamp: 77, op: "after-the-switch")
        let client = try y.client(1)
        #expect(y.cores[0].request(request, clientMACs: try client.authenticate(timestamp: 77, op: request.op)) == 0)
        let replies = y.pump(states: &states)
        let reply = try #require(replies.first)
        #expect(reply.snFirst == 16 && reply.instance == 2)
        // The test application's reply is the state after the op (ChainFixture.apply): the tail's state now.
        let replyBytes = withUnsafeBytes(of: states[3].littleEndian) { Array($0) }
        #expect(client.commits(timestamp: 77, op: request.op, sn: 16, reply: replyBytes,
                               historyDigest: reply.historyDigests[0], replyMACs: Array(reply.replyMACs.prefix(2))))
        // A PANIC in instance 2: the ABORT's history reaches sn 16, and H_16 there is the tail's (H continued from IH).
        let abort = try y.cores[1].panic(try client.panic(timestamp: 78, replica: 1)).get()
        #expect(abort.instance == 2 && abort.nextInstance == 3 && abort.verify(with: client.keyRing))
        #expect(abort.checkpointNumber * 4 + UInt64(abort.entries.count) == 16)
        let h16 = abort.entries.last?.historyDigest ?? abort.checkpointDigest
        #expect(h16 == reply.historyDigests[0])
    }

    static func digest(_ request: ChainRequest, ring: ChainKeyRing) throws -> ChainDigest {
        var crypto = ring.crypto
        var out = rc_crypto_digest()
        let rc = request.op.withUnsafeBufferPointer {
            rc_chain_request_digest(&crypto, request.client, request.timestamp, $0.baseAddress, UInt32(request.op.count), &out)
        }
        #expect(rc == 0)
        return ChainDigest(out)
    }
}
