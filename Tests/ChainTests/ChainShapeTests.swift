import CRingCastCore
import Testing

/// Spec §21 test 1: the successor and predecessor sets and the per-hop MAC counts of §5.1/§5.4.
@Suite struct ChainShapeTests {
    @Test(arguments: [UInt32(1), 2, 3])
    func section21_1_successorAndPredecessorSets(f: UInt32) {
        let n = rc_chain_nodes(f)
        var out = [UInt32](repeating: 0, count: Int(f) + 1)
        var client = false
        for position in 0..<n {
            let successorCount = Int(rc_chain_successors(f, position, &out, &client))
            let successors = Array(out.prefix(successorCount))
            #expect(successors.count <= Int(f) + 1)
            #expect(client == (position >= 2 * f), "the client succeeds exactly Σlast")
            // q ∈ succ(p) ⇔ p ∈ pred(q)
            for q in successors {
                var predecessors = [UInt32](repeating: 0, count: Int(f) + 1)
                let count = rc_chain_predecessors(f, q, &predecessors, nil)
                #expect(predecessors.prefix(Int(count)).contains(position))
            }
            let predecessorCount = Int(rc_chain_predecessors(f, position, &out, &client))
            #expect(client == (position <= f), "the client precedes r_1 … r_{f+1}")
            // §5.1: |pred(r_j)| = j for j ≤ f+1 (the client included), f+1 beyond.
            #expect(predecessorCount + (client ? 1 : 0) == Int(min(position + 1, f + 1)))
        }
        // pred(client) = Σlast: the positions whose successor set holds the client.
        let sigmaLast = (0..<n).filter { p in var c = false; _ = rc_chain_successors(f, p, &out, &c); return c }
        #expect(sigmaLast == Array((2 * f)...(3 * f)))
        #expect(sigmaLast.count == Int(f) + 1)
    }

    @Test(arguments: [UInt32(1), 2, 3])
    func section5_4_macsPerHop(f: UInt32) {
        let n = rc_chain_nodes(f)
        let hops = (0..<(n - 1)).map { p in
            rc_chain_window_count(f, p) + rc_chain_client_macs_count(f, p) + rc_chain_reply_macs_count(f, p)
        }
        #expect(rc_chain_client_macs_count(f, UInt32.max) == f + 1, "client → head carries f+1")
        #expect(hops[0] == 2 * f + 1, "head → r_2 carries 2f+1")
        #expect(hops.max() == (f + 1) * (f + 2) / 2 || f == 1, "a middle hop carries up to (f+1)(f+2)/2 ordering MACs")
        #expect((0..<(n - 1)).map { rc_chain_window_count(f, $0) }.max() == (f + 1) * (f + 2) / 2)
        #expect(rc_chain_reply_macs_count(f, n - 1) == f + 1, "tail → client carries f+1")
        if f == 1 { #expect(hops == [3, 3, 3], "§5.4's f = 1 table") }
        if f == 2 { #expect(rc_chain_window_count(f, 2) == 6, "§5.4: the r3 → r4 hop carries 6 for f = 2") }
    }
}
