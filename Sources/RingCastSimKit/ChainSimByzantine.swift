internal import CRingCastCore
import RingCastChain

/// Byzantine behaviour injected around a correct core (spec §21 tests 2–5): the simulator alters what the
/// Byzantine replica sends, with that replica's own keys where it re-authenticates (the strongest it can do).
extension ChainSimWorld {
    func triggered(_ node: ChainSimNode) -> Bool {
        isByzantine(node.position) && node.batchesOut > scenario.trigger
    }

    /// The batches the replica at `node` actually sends, and to whom.
    func byzantineForward(_ node: ChainSimNode, _ batch: ChainBatch) -> [(Int, ChainBatch)] {
        let p = node.position
        guard triggered(node) else { return [(p + 1, batch)] }
        var b = batch
        switch scenario.behaviour {
        case .bypass:
            note("r\(p) BYZANTINE bypasses r\(p + 1) with sn \(b.snFirst)")
            return [(p + 2, bypass(b, from: p))]
        case .dropMAC:
            b.window.removeLast()
        case .forgeMAC:
            let index = scenario.variant % b.window.count
            b.window[index] = b.window[index].flipped()
        case .tamperContent:
            b.requests[scenario.variant % b.requests.count].op.append(0x21)
            reauthenticate(&b, node)
        case .tamperOrder:
            if b.requests.count >= 2 { b.requests.swapAt(0, 1) } else { b.requests[0].timestamp += 1 }
            reauthenticate(&b, node)
        case .tamperSequence:
            b.snFirst = scenario.variant % 2 == 1 && b.snFirst > 1 ? b.snFirst - 1 : b.snFirst + 1
            reauthenticate(&b, node)
        case .lyingSigmaLast:
            guard scenario.variant % 2 == 1 else { return [(p + 1, b)] } // even: a wrong reply (duties)
            let own = p - 2 * f
            for k in 0..<b.requests.count {
                let index = k * b.replyMACsPerRequest + own
                b.replyMACs[index] = b.replyMACs[index].flipped()
            }
        case .forgedInit, .lyingFetch:
            // Instance 1 only: a dropped MAC forces the switch whose INIT (or FETCHes) this replica then lies about.
            guard b.instance == 1 else { return [(p + 1, b)] }
            b.window.removeLast()
        case .none, .lyingTail, .headOnlyClient, .crash:
            return [(p + 1, b)]
        }
        note("r\(p) BYZANTINE \(scenario.behaviour.rawValue) on sn \(batch.snFirst)")
        return [(p + 1, b)]
    }

    /// Replaces the replica's own block (the window's last |succ| MACs) with MACs over the altered content.
    func reauthenticate(_ b: inout ChainBatch, _ node: ChainSimNode) {
        let block = b.orderingBlock(f: scenario.f, position: UInt32(node.position), keyRing: node.core.keyRing)
        b.window.replaceSubrange((b.window.count - block.count)..., with: block)
    }

    func randomMAC() -> ChainMAC { ChainMAC(bytes: (0..<16).map { _ in UInt8(prng.int(0...255)) }) }

    /// The best a replica p can send to p+2 for the hop out of p+1: its window reshaped, with the MACs only
    /// p+1 could write replaced by guesses.
    func bypass(_ b: ChainBatch, from p: Int) -> ChainBatch {
        let q = p + 1, fu = scenario.f
        var window: [ChainMAC] = []
        var offset = 0
        for s in max(0, p - f)...p {
            let size = min(s + f + 1, n - 1) - p
            if s >= max(0, q - f) { window += b.window[(offset + 1)..<(offset + size)] }
            offset += size
        }
        window += (0..<(min(q + f + 1, n - 1) - q)).map { _ in randomMAC() }
        precondition(window.count == Int(rc_chain_window_count(fu, UInt32(q))))
        let clientIn = b.clientMACsPerRequest, clientOut = Int(rc_chain_client_macs_count(fu, UInt32(q)))
        let replyIn = b.replyMACsPerRequest, replyOut = Int(rc_chain_reply_macs_count(fu, UInt32(q)))
        var clientMACs: [ChainMAC] = [], replyMACs: [ChainMAC] = []
        for k in 0..<b.requests.count {
            if clientOut > 0 { clientMACs += b.clientMACs[(k * clientIn + 1)..<(k * clientIn + 1 + clientOut)] }
            replyMACs += b.replyMACs[(k * replyIn)..<((k + 1) * replyIn)]
            replyMACs += (0..<(replyOut - replyIn)).map { _ in randomMAC() }
        }
        return ChainBatch(instance: b.instance, snFirst: b.snFirst, requests: b.requests, window: window,
                          clientMACsPerRequest: clientOut, clientMACs: clientMACs, replyMACsPerRequest: replyOut,
                          replyMACs: replyMACs)
    }

    /// A lying tail (spec §21.4): a wrong reply, or a wrong history digest.
    func byzantineReply(_ node: ChainSimNode, _ reply: inout ChainSimReply) {
        guard scenario.behaviour == .lyingTail, triggered(node) else { return }
        if scenario.variant % 2 == 0 || reply.reply.isEmpty {
            reply.reply = reply.reply.isEmpty ? [0x42] : reply.reply
            reply.reply[0] ^= 0xff
        } else {
            reply.history.bytes[0] ^= 1
        }
        note("r\(node.position) BYZANTINE lies to c\(reply.client) about sn \(reply.sn)")
    }

    /// The INIT the replica forwards (spec §21.8): under `.forgedInit`, in instance 2, a forged one — a history that
    /// is not P3 of its proof, a proof one ABORT short, or an ABORT (its own, re-signed) naming another next(i).
    func byzantineInit(_ node: ChainSimNode, _ ih: ChainInitHistory) -> ChainInitHistory {
        guard isByzantine(node.position), scenario.behaviour == .forgedInit, ih.instance == 2 else { return ih }
        var forged = ih
        switch scenario.variant % 5 {
        case 0:
            if forged.entries.isEmpty {
                forged.entries.append(ChainAbort.Entry(sn: ih.base * chk + 1, client: 0, timestamp: 999_999,
                                                       requestDigest: .zero, historyDigest: .zero))
            } else {
                forged.entries.removeLast()
            }
        case 1:
            if forged.entries.isEmpty { forged.baseDigest.bytes[0] ^= 1 } else { forged.entries[0].requestDigest.bytes[0] ^= 1 }
        case 2:
            forged.proof.removeLast()
        case 3:
            var own = forged.proof[0]
            own.replica = UInt32(node.position)
            own.nextInstance = 3
            forged.proof[0] = own.resigned(with: node.keyRing)
            if forged.proof.dropFirst().contains(where: { $0.replica == own.replica }) { forged.proof.removeLast() }
        default:
            forged.base += 1
        }
        forgedInits += 1
        note("r\(node.position) BYZANTINE forwards a forged INIT (variant \(scenario.variant % 5))")
        return forged
    }
}
