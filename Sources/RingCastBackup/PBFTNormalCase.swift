import RingCastChain

/// The normal case (PBFT §4.2): REQUEST → PRE-PREPARE → PREPARE → COMMIT → execution in sequence-number order, with
/// the per-client reply table that makes execution exactly-once (§4.1).
extension PBFT.Replica {
    func onRequest<A: PBFTApplication>(_ r: PBFT.ClientRequest, app: inout A, _ out: inout [PBFT.Action]) throws(PBFT.EventError) {
        let request = r.request
        guard request.client < settings.clientsMax else { throw .clientOutOfRange(request.client) }
        guard request.op.count <= settings.opBytesMax else { throw .opTooLarge(request.op.count) }
        guard validClientMAC(r) else { throw .clientMAC }
        if let row = clients[Int(request.client)], request.timestamp <= row.timestamp {
            // Executed already: the cached reply for the last timestamp, nothing for older ones (§4.1).
            if request.timestamp == row.timestamp {
                stats.cachedReplies += 1
                out.append(.reply(reply(to: request, result: row.reply)))
            }
            return
        }
        let key = PBFT.RequestKey(client: request.client, timestamp: request.timestamp)
        guard !pending.contains(where: { PBFT.RequestKey(client: $0.request.client, timestamp: $0.request.timestamp) == key })
        else { return }
        guard pending.count < settings.pendingMax else { throw .pendingFull }
        pending.append(r)
        if timerStart == nil { timerStart = ticks }
        propose(&out)
    }

    func validClientMAC(_ r: PBFT.ClientRequest) -> Bool {
        guard r.authenticator.count == Int(n) else { return false }
        let d = PBFT.digest(r.request, crypto: crypto)
        return crypto.verifyMAC(peer: ChainPrincipal.client(r.request.client).raw, PBFT.macInput(d), tag: r.authenticator[Int(me)])
    }

    func reply(to request: PBFT.Request, result: [UInt8]) -> PBFT.Reply {
        var r = PBFT.Reply(view: view, client: request.client, timestamp: request.timestamp, replica: me, result: result,
                           mac: ChainMAC(bytes: [UInt8](repeating: 0, count: 16)))
        r.mac = crypto.mac(peer: ChainPrincipal.client(request.client).raw, r.macInput())
        return r
    }

    /// The primary assigns the next sequence numbers to batches of pending requests while the window has room
    /// (§4.2: n in (h, H]; beyond H requests wait for the next stable checkpoint: backpressure) and fewer than
    /// ``PBFT/Settings/proposalsInFlightMax`` of its sequence numbers are not executed yet; the requests that arrive
    /// meanwhile form the next batch (TOCS 2002 §5.1.4). Called on each request and after each execution.
    func propose(_ out: inout [PBFT.Action]) {
        guard isPrimary, viewActive else { return }
        while nextSn <= highWaterMark, nextSn - 1 - min(lastExecuted, nextSn - 1) < settings.proposalsInFlightMax {
            let batch = nextBatch()
            guard !batch.isEmpty else { return }
            for r in batch { assigned.insert(PBFT.RequestKey(client: r.request.client, timestamp: r.request.timestamp)) }
            let sn = nextSn
            nextSn += 1
            let d = PBFT.batchDigest(batch, crypto: crypto)
            let p = PBFT.PrePrepare(view: view, sn: sn, digest: d, requests: batch)
            let e = broadcast(.prePrepare(p), &out)
            var slot = PBFT.Slot()
            slot.prePrepare = e; slot.requests = batch; slot.digest = d
            slots[sn] = slot
        }
    }

    /// The pending requests not assigned yet, in arrival order, up to ``PBFT/Settings/batchMax`` and
    /// ``PBFT/Settings/batchBytesMax`` (the first always fits); a request carrying an init history goes alone.
    func nextBatch() -> [PBFT.ClientRequest] {
        var batch: [PBFT.ClientRequest] = []
        var bytes = 0
        for r in pending where batch.count < settings.batchMax {
            guard !assigned.contains(PBFT.RequestKey(client: r.request.client, timestamp: r.request.timestamp)) else { continue }
            let alone = r.request.initHistory != nil
            if !batch.isEmpty && (alone || bytes + r.request.op.count > settings.batchBytesMax) { break }
            batch.append(r)
            bytes += r.request.op.count
            if alone { break }
        }
        return batch
    }

    func inWindow(_ sn: UInt64) -> Bool { sn > lowWaterMark && sn <= highWaterMark }

    func onPrePrepare<A: PBFTApplication>(_ p: PBFT.PrePrepare, _ e: PBFT.Envelope, app: inout A,
                                          _ out: inout [PBFT.Action]) throws(PBFT.EventError) {
        guard p.view == view, viewActive, inWindow(p.sn) else { return }
        guard e.sender == primary else { throw .sender(e.sender) }
        try checkPrePrepareBody(p, checkMAC: true)
        if let d = slots[p.sn]?.digest, slots[p.sn]?.prePrepare != nil {
            // One PRE-PREPARE per (v, n): a second with another digest is the primary equivocating.
            if d == p.digest { return }
            throw .conflict
        }
        accept(p, e, &out)
        advance(p.sn, app: &app, &out)
    }

    /// d matches the batch, the batch keeps the primary's limits, and each request is one a client sent (this
    /// replica's authenticator entry); a null request carries the zero digest.
    func checkPrePrepareBody(_ p: PBFT.PrePrepare, checkMAC: Bool) throws(PBFT.EventError) {
        guard !p.requests.isEmpty else {
            guard p.digest == .zero else { throw .conflict }
            return
        }
        guard p.requests.count <= settings.batchMax else { throw .conflict }
        var bytes = 0
        for r in p.requests {
            guard r.request.client < settings.clientsMax, r.request.op.count <= settings.opBytesMax else { throw .conflict }
            bytes += r.request.op.count
        }
        if p.requests.count > 1 {
            guard bytes <= settings.batchBytesMax, p.requests.allSatisfy({ $0.request.initHistory == nil }) else { throw .conflict }
        }
        guard PBFT.batchDigest(p.requests, crypto: crypto) == p.digest else { throw .conflict }
        if checkMAC && !p.requests.allSatisfy(validClientMAC) { throw .clientMAC }
    }

    /// Logs the PRE-PREPARE and, at a backup, multicasts PREPARE (§4.2).
    func accept(_ p: PBFT.PrePrepare, _ e: PBFT.Envelope, _ out: inout [PBFT.Action]) {
        var slot = slots[p.sn] ?? PBFT.Slot()
        slot.prePrepare = e; slot.requests = p.requests; slot.digest = p.digest
        slots[p.sn] = slot
        if e.sender != me {
            let mine = broadcast(.prepare(PBFT.Vote(view: p.view, sn: p.sn, digest: p.digest)), &out)
            slots[p.sn]!.prepares[me] = mine
        }
    }

    func onPrepare<A: PBFTApplication>(_ v: PBFT.Vote, _ e: PBFT.Envelope, app: inout A,
                                       _ out: inout [PBFT.Action]) throws(PBFT.EventError) {
        guard v.view == view, viewActive, inWindow(v.sn) else { return }
        guard e.sender != primary else { throw .sender(e.sender) }
        slots[v.sn, default: PBFT.Slot()].prepares[e.sender] = slots[v.sn]?.prepares[e.sender] ?? e
        advance(v.sn, app: &app, &out)
    }

    func onCommit<A: PBFTApplication>(_ v: PBFT.Vote, _ e: PBFT.Envelope, app: inout A, _ out: inout [PBFT.Action]) {
        guard v.view == view, viewActive, inWindow(v.sn) else { return }
        slots[v.sn, default: PBFT.Slot()].commits[e.sender] = slots[v.sn]?.commits[e.sender] ?? e
        advance(v.sn, app: &app, &out)
    }

    /// prepared(m, v, n, i): the PRE-PREPARE and 2f matching PREPAREs of other replicas; then COMMIT.
    /// committed-local: prepared and 2f+1 matching COMMITs; then execute what is in order (§4.2).
    func advance<A: PBFTApplication>(_ sn: UInt64, app: inout A, _ out: inout [PBFT.Action]) {
        guard var slot = slots[sn], slot.prePrepare != nil, let d = slot.digest else { return }
        let vote = PBFT.Vote(view: view, sn: sn, digest: d)
        if !slot.prepared {
            let matching = slot.prepares.values.filter { $0.sender != primary && $0.message == .prepare(vote) }
            guard matching.count >= settings.preparesNeeded else { return }
            slot.prepared = true
            slot.certificate = PBFT.PreparedCertificate(prePrepare: slot.prePrepare!,
                                                        prepares: Array(matching.sorted { $0.sender < $1.sender }))
            slot.commits[me] = broadcast(.commit(vote), &out)
        }
        if !slot.committed {
            let matching = slot.commits.values.filter { $0.message == .commit(vote) }.count
            if matching >= settings.commitsNeeded { slot.committed = true }
        }
        slots[sn] = slot
        executeReady(app: &app, &out)
    }

    /// Executes committed batches in order, each request of a batch in its order; a request a client already got
    /// executed (re-proposed after a view change, or ordered twice by a Byzantine primary) advances the history but
    /// does not run again. The primary then proposes what waited (``propose(_:)``).
    func executeReady<A: PBFTApplication>(app: inout A, _ out: inout [PBFT.Action]) {
        var executed = false
        while !behind, let slot = slots[lastExecuted + 1], slot.committed, let d = slot.digest {
            let sn = lastExecuted + 1
            lastExecuted = sn
            executed = true
            historyDigest = historyDigest.extended(sn: sn, request: d, keyRing: crypto.keyRing)
            if slot.requests.isEmpty {
                stats.nullExecuted += 1
                out.append(.executed(sn: sn, nil))
            }
            for r in slot.requests.lazy.map(\.request) {
                let c = Int(r.client)
                if let row = clients[c], r.timestamp <= row.timestamp {
                    // Not again (exactly-once).
                } else {
                    let result = app.execute(sn: sn, request: r)
                    clients[c] = PBFT.ClientRow(timestamp: r.timestamp, reply: result)
                    stats.executed += 1
                    out.append(.reply(reply(to: r, result: result)))
                    out.append(.executed(sn: sn, r))
                }
                pending.removeAll { $0.request.client == r.client && $0.request.timestamp <= r.timestamp }
                assigned = assigned.filter { $0.client != r.client || $0.timestamp > r.timestamp }
            }
            timerStart = pending.isEmpty ? nil : ticks
            if sn % settings.checkpointInterval == 0 { takeCheckpoint(sn, &out) }
        }
        if executed { propose(&out) }
    }

    /// The view-change timer (§4.4): a backup waiting too long for a pending request suspects the primary. The wait
    /// doubles per view change that brought no NEW-VIEW (§4.5.2).
    func onTick(_ out: inout [PBFT.Action]) {
        ticks += 1
        // A replica behind a stable checkpoint executes nothing more here, so its pending requests say nothing about
        // the primary: it does not suspect it.
        guard let start = timerStart, !(isPrimary && viewActive), !behind else { return }
        let wait = settings.viewChangeTimeoutTicks << UInt64(min(viewChangeAttempts, 16))
        guard ticks - start >= wait else { return }
        startViewChange(to: view + 1, &out)
    }
}
