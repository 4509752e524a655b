import RingCastChain

/// Checkpoints and garbage collection (PBFT §4.3): every K executions a replica multicasts CHECKPOINT(n, H_n); 2f+1
/// matching ones make it stable, the low water mark h moves to n, and every slot and vote at or below n goes.
extension PBFT.Replica {
    func takeCheckpoint(_ sn: UInt64, _ out: inout [PBFT.Action]) {
        ownCheckpoints[sn] = historyDigest
        let e = broadcast(.checkpoint(PBFT.Checkpoint(sn: sn, digest: historyDigest)), &out)
        checkpointVotes[sn, default: [:]][me] = e
        tryStable(sn)
    }

    func onCheckpoint(_ c: PBFT.Checkpoint, _ e: PBFT.Envelope, _ out: inout [PBFT.Action]) {
        // Only multiples of K in the window: at most L/K · n votes are kept.
        guard c.sn % settings.checkpointInterval == 0, inWindow(c.sn) else { return }
        guard checkpointVotes[c.sn]?[e.sender] == nil else { return }
        checkpointVotes[c.sn, default: [:]][e.sender] = e
        tryStable(c.sn)
        // A stable checkpoint moves H: a primary that waited at the window's end proposes now, not at the next request.
        propose(&out)
    }

    func tryStable(_ sn: UInt64) {
        guard let votes = checkpointVotes[sn] else { return }
        var byDigest: [ChainDigest: [PBFT.Envelope]] = [:]
        for e in votes.values {
            if case .checkpoint(let c) = e.message { byDigest[c.digest, default: []].append(e) }
        }
        guard let (digest, proof) = byDigest.first(where: { $0.value.count >= settings.quorum }) else { return }
        makeStable(sn: sn, digest: digest, proof: proof.sorted { $0.sender < $1.sender })
    }

    /// h := sn. 2f+1 matching CHECKPOINTs hold at least f+1 correct replicas' H_sn, so a replica that executed sn
    /// with another digest has diverged: that is a broken invariant, not bad input.
    func makeStable(sn: UInt64, digest: ChainDigest, proof: [PBFT.Envelope]) {
        guard sn > lowWaterMark else { return }
        if lastExecuted >= sn, let mine = ownCheckpoints[sn] {
            // Only a planted bug (short quorums) gets here with another digest; the simulator then reports the
            // Commit Order violation instead of this replica trapping.
            precondition(mine == digest || settings.testFault != .none,
                         "a stable checkpoint at \(sn) differs from this replica's executed history")
            if mine != digest { stats.divergedCheckpoints += 1 }
        } else if lastExecuted < sn {
            behind = true
        }
        lowWaterMark = sn
        stableDigest = digest
        stableProof = proof
        stats.checkpointsStable += 1
        slots = slots.filter { $0.key > sn }
        checkpointVotes = checkpointVotes.filter { $0.key > sn }
        ownCheckpoints = ownCheckpoints.filter { $0.key > sn }
        if nextSn <= sn { nextSn = sn + 1 }
    }

    /// A checkpoint proof: 2f+1 CHECKPOINTs of distinct replicas for (sn, digest), each signed (checked here).
    func validCheckpointProof(sn: UInt64, digest: ChainDigest, proof: [PBFT.Envelope]) -> Bool {
        if sn == 0 { return digest == .zero && proof.isEmpty }
        guard sn % settings.checkpointInterval == 0, proof.count >= settings.quorum, proof.count <= Int(n) else { return false }
        var signers = Set<UInt32>()
        for e in proof {
            guard e.sender < n, signers.insert(e.sender).inserted, e.message == .checkpoint(PBFT.Checkpoint(sn: sn, digest: digest)),
                  e.verify(crypto: crypto) else { return false }
        }
        return true
    }
}
