import RingCastChain

/// The view change (PBFT §4.4, §4.5.2): a replica that suspects the primary moves to v+1 and multicasts VIEW-CHANGE
/// with its stable checkpoint proof and prepared certificates; the primary of v+1 gathers 2f+1 and multicasts NEW-VIEW
/// with the PRE-PREPAREs they determine (the highest-view certificate per sequence number, null requests for gaps).
/// Every replica recomputes that set from the VIEW-CHANGEs, so a Byzantine new primary cannot choose it.
extension PBFT.Replica {
    func startViewChange(to newView: UInt64, _ out: inout [PBFT.Action]) {
        precondition(newView > view, "views only grow")
        // Consecutive view changes without a NEW-VIEW double the timeout (§4.5.2).
        viewChangeAttempts = viewActive ? 0 : viewChangeAttempts + 1
        view = newView
        viewActive = false
        timerStart = ticks
        stats.viewChangesSent += 1
        let prepared = slots.keys.sorted().compactMap { sn -> PBFT.PreparedCertificate? in
            guard sn > lowWaterMark else { return nil }
            return slots[sn]?.certificate
        }
        let vc = PBFT.ViewChange(newView: newView, stableSn: lowWaterMark, stableDigest: stableDigest,
                                 checkpointProof: stableProof, prepared: prepared)
        let e = broadcast(.viewChange(vc), &out)
        viewChanges[newView, default: [:]][me] = e
        viewChanges = viewChanges.filter { $0.key >= newView }
    }

    func onViewChange<A: PBFTApplication>(_ vc: PBFT.ViewChange, _ e: PBFT.Envelope, app: inout A,
                                          _ out: inout [PBFT.Action]) throws(PBFT.EventError) {
        let v = vc.newView
        guard v > view || (v == view && !viewActive) else { return }
        guard v <= view + settings.viewsAheadMax else { return }
        try checkViewChange(vc)
        viewChanges[v, default: [:]][e.sender] = e
        // Liveness (§4.5.2): f+1 replicas want a view above ours, so at least one correct one does: join the
        // smallest such view rather than wait for our own timer.
        let higher = viewChanges.filter { $0.key > view }
        var senders = Set<UInt32>()
        for (_, votes) in higher { senders.formUnion(votes.keys) }
        senders.remove(me)
        if senders.count >= Int(settings.f) + 1, let smallest = higher.keys.min() {
            startViewChange(to: smallest, &out)
        }
        try sendNewViewIfReady(app: &app, &out)
    }

    /// A VIEW-CHANGE's proofs: the checkpoint proof, and per certificate a PRE-PREPARE signed by the primary of its
    /// (earlier) view with 2f matching PREPAREs of distinct other replicas, all inside the window of the checkpoint.
    func checkViewChange(_ vc: PBFT.ViewChange) throws(PBFT.EventError) {
        guard validCheckpointProof(sn: vc.stableSn, digest: vc.stableDigest, proof: vc.checkpointProof) else {
            throw .certificate("checkpoint proof")
        }
        guard vc.prepared.count <= Int(settings.logWindow) else { throw .certificate("too many certificates") }
        var seen = Set<UInt64>()
        for cert in vc.prepared {
            guard case .prePrepare(let p) = cert.prePrepare.message, p.view < vc.newView,
                  p.sn > vc.stableSn, p.sn <= vc.stableSn + settings.logWindow, seen.insert(p.sn).inserted,
                  cert.prePrepare.sender == PBFT.primary(p.view, n: n), cert.prePrepare.verify(crypto: crypto)
            else { throw .certificate("pre-prepare of sn in a certificate") }
            do { try checkPrePrepareBody(p, checkMAC: false) } catch { throw .certificate("request digest") }
            let vote = PBFT.Vote(view: p.view, sn: p.sn, digest: p.digest)
            var signers = Set<UInt32>()
            for e in cert.prepares {
                guard e.sender < n, e.sender != cert.prePrepare.sender, signers.insert(e.sender).inserted,
                      e.message == .prepare(vote), e.verify(crypto: crypto) else { throw .certificate("prepare") }
            }
            guard signers.count >= Int(2 * settings.f) else { throw .certificate("fewer than 2f prepares") }
        }
    }

    /// At the primary of view v: once 2f+1 VIEW-CHANGEs for v are in (its own among them), NEW-VIEW.
    func sendNewViewIfReady<A: PBFTApplication>(app: inout A, _ out: inout [PBFT.Action]) throws(PBFT.EventError) {
        guard !viewActive, isPrimary, !newViewSent.contains(view), let votes = viewChanges[view],
              votes[me] != nil, votes.count >= settings.quorum else { return }
        // Deterministic choice: its own and the lowest-numbered others.
        let chosen = [votes[me]!] + votes.filter { $0.key != me }.sorted { $0.key < $1.key }.prefix(settings.quorum - 1).map(\.value)
        let plan = newViewPlan(view, chosen)
        let prePrepares = plan.map { p in PBFT.Envelope.signed(.prePrepare(p), by: me, crypto: crypto) }
        newViewSent.insert(view)
        let nv = PBFT.NewView(view: view, viewChanges: chosen, prePrepares: prePrepares)
        _ = broadcast(.newView(nv), &out)
        install(nv, app: &app, &out)
    }

    /// O of §4.4: min-s the highest stable checkpoint among the VIEW-CHANGEs, max-s the highest prepared sequence
    /// number; for each n between them the request of the certificate with the highest view, or the null request.
    func newViewPlan(_ v: UInt64, _ vcs: [PBFT.Envelope]) -> [PBFT.PrePrepare] {
        var minS: UInt64 = 0
        var best: [UInt64: PBFT.PrePrepare] = [:]
        for e in vcs {
            guard case .viewChange(let vc) = e.message else { preconditionFailure("checked VIEW-CHANGE") }
            minS = max(minS, vc.stableSn)
            for cert in vc.prepared {
                guard case .prePrepare(let p) = cert.prePrepare.message else { preconditionFailure("checked certificate") }
                if let b = best[p.sn], b.view >= p.view { continue }
                best[p.sn] = p
            }
        }
        let maxS = best.keys.filter { $0 > minS }.max() ?? minS
        precondition(maxS - minS <= settings.logWindow, "certificates lie inside one window")
        guard maxS > minS else { return [] }
        return (minS + 1...maxS).map { sn in
            if let p = best[sn] { return PBFT.PrePrepare(view: v, sn: sn, digest: p.digest, requests: p.requests) }
            return PBFT.PrePrepare(view: v, sn: sn, digest: .zero, request: nil)
        }
    }

    func onNewView<A: PBFTApplication>(_ nv: PBFT.NewView, _ e: PBFT.Envelope, app: inout A,
                                       _ out: inout [PBFT.Action]) throws(PBFT.EventError) {
        guard nv.view > view || (nv.view == view && !viewActive) else { return }
        guard nv.view <= view + settings.viewsAheadMax else { return }
        guard e.sender == PBFT.primary(nv.view, n: n) else { throw .sender(e.sender) }
        guard nv.viewChanges.count == settings.quorum else { throw .certificate("NEW-VIEW without 2f+1 VIEW-CHANGEs") }
        var signers = Set<UInt32>()
        for vcEnvelope in nv.viewChanges {
            guard case .viewChange(let vc) = vcEnvelope.message, vc.newView == nv.view, vcEnvelope.sender < n,
                  signers.insert(vcEnvelope.sender).inserted, vcEnvelope.verify(crypto: crypto)
            else { throw .certificate("VIEW-CHANGE in NEW-VIEW") }
            try checkViewChange(vc)
        }
        // O must be exactly what the VIEW-CHANGEs determine, each PRE-PREPARE signed by the new primary.
        let plan = newViewPlan(nv.view, nv.viewChanges)
        guard plan.count == nv.prePrepares.count else { throw .certificate("O is not the VIEW-CHANGEs' set") }
        for (p, pe) in zip(plan, nv.prePrepares) {
            guard pe.sender == e.sender, pe.message == .prePrepare(p), pe.verify(crypto: crypto) else {
                throw .certificate("O is not the VIEW-CHANGEs' set")
            }
        }
        install(nv, app: &app, &out)
    }

    /// Enters the new view: adopts a higher stable checkpoint, logs O's PRE-PREPAREs, multicasts PREPAREs for them,
    /// and (at the primary) goes on proposing after max-s.
    func install<A: PBFTApplication>(_ nv: PBFT.NewView, app: inout A, _ out: inout [PBFT.Action]) {
        view = nv.view
        viewActive = true
        viewChangeAttempts = 0
        stats.newViewsInstalled += 1
        out.append(.enteredView(view))
        for vcEnvelope in nv.viewChanges {
            guard case .viewChange(let vc) = vcEnvelope.message else { continue }
            if vc.stableSn > lowWaterMark { makeStable(sn: vc.stableSn, digest: vc.stableDigest, proof: vc.checkpointProof) }
        }
        // Votes of earlier views are void; certificates stay (a later view change needs them).
        for sn in slots.keys {
            let certificate = slots[sn]!.certificate
            slots[sn] = PBFT.Slot()
            slots[sn]!.certificate = certificate
        }
        var maxS = lowWaterMark
        for pe in nv.prePrepares {
            guard case .prePrepare(let p) = pe.message, inWindow(p.sn) else { continue }
            accept(p, pe, &out)
            maxS = max(maxS, p.sn)
        }
        slots = slots.filter { $0.value.prePrepare != nil || $0.value.certificate != nil }
        viewChanges = viewChanges.filter { $0.key > view }
        newViewSent = newViewSent.filter { $0 >= view }
        assigned = []
        nextSn = max(maxS, lastExecuted, lowWaterMark) + 1
        // Requests O re-proposes are assigned already.
        for pe in nv.prePrepares {
            if case .prePrepare(let p) = pe.message {
                for r in p.requests { assigned.insert(PBFT.RequestKey(client: r.request.client, timestamp: r.request.timestamp)) }
            }
        }
        timerStart = pending.isEmpty ? nil : ticks
        for sn in slots.keys.sorted() { advance(sn, app: &app, &out) }
        propose(&out)
    }
}
