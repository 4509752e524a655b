import RingCastBackup
import RingCastChain

/// The properties of spec §2.2 for the Backup instance, plus Backup's own contract (§13.1: exactly k commits) and the
/// way back into Chain, checked after a run over what correct replicas and clients did.
extension BackupSimWorld {
    func check() -> [String] {
        var out: [String] = []
        let correctReplicas = (0..<n).filter(correct)
        let histories = correctReplicas.map { (r: $0, entries: instances[Int($0)].entries) }
        struct Value: Equatable { var sn: UInt64; var client: UInt32; var timestamp: UInt64; var request: ChainDigest }
        func values(_ e: [ChainAbort.Entry]) -> [Value] { e.map { Value(sn: $0.sn, client: $0.client, timestamp: $0.timestamp, request: $0.requestDigest) } }
        // Commit Order (§2.2.5): the executed sequences of correct replicas are prefix-related.
        for a in histories {
            for b in histories where a.r < b.r {
                let x = values(a.entries), y = values(b.entries)
                let common = min(x.count, y.count)
                if x.prefix(common) != y.prefix(common) {
                    out.append("commit order: r\(a.r) and r\(b.r) executed different requests at one position")
                }
            }
        }
        // Validity (§2.2.1): every executed request after IH was invoked, none twice.
        let ihCount = entering.entries.count
        for h in histories {
            var seen = Set<ChainSimWorld.Key>()
            for (k, e) in h.entries.enumerated() {
                let key = ChainSimWorld.Key(client: e.client, timestamp: e.timestamp)
                if !seen.insert(key).inserted { out.append("validity: r\(h.r) executed c\(e.client) t\(e.timestamp) twice") }
                if k >= ihCount && !invoked.contains(key) { out.append("validity: r\(h.r) executed c\(e.client) t\(e.timestamp), never invoked") }
            }
            if values(Array(h.entries.prefix(ihCount))) != values(entering.entries) && !h.entries.isEmpty {
                out.append("init order: r\(h.r)'s history does not start with the init history")
            }
        }
        // Backup's contract (§13.1): at most k commits, exactly k once it aborts.
        for r in correctReplicas {
            let instance = instances[Int(r)]
            if instance.committedCount > scenario.k {
                out.append("backup k: r\(r) committed \(instance.committedCount) requests with k = \(scenario.k)")
            } else if instance.phase == .aborting && instance.committedCount != scenario.k {
                out.append("backup k: r\(r) aborts after \(instance.committedCount) commits with k = \(scenario.k)")
            }
        }
        // Abort Order (§2.2.6): every abort history a client left with holds every request a client saw committed
        // (in its entries, or below its base, whose H correct replicas reached with those requests); and all of them
        // are one history (the Backup's order).
        let start: Set<ChainSimWorld.Key>? = entering.base == 0 ? [] : historyKeys[entering.baseDigest]
        if let start {
            for h in histories {
                var keys = start
                for e in h.entries {
                    keys.insert(ChainSimWorld.Key(client: e.client, timestamp: e.timestamp))
                    historyKeys[e.historyDigest] = keys
                }
            }
        }
        for ih in exits {
            guard var keys = ih.base == 0 ? [] : historyKeys[ih.baseDigest] else {
                out.append("abort order: an abort history's base is not a history correct replicas executed")
                continue
            }
            keys.formUnion(ih.entries.map { ChainSimWorld.Key(client: $0.client, timestamp: $0.timestamp) })
            for c in clients {
                for commit in c.committed where !keys.contains(ChainSimWorld.Key(client: c.id, timestamp: commit.timestamp)) {
                    out.append("abort order: c\(c.id) t\(commit.timestamp) committed but missing from an abort history")
                }
            }
            if values(ih.entries) != values(exits[0].entries) || ih.base != exits[0].base {
                out.append("abort order: two clients left with different abort histories")
            }
        }
        // Termination (§2.2.2): every correct client's requests committed or it left for next(i).
        for c in clients where !c.finished {
            out.append("termination: c\(c.id) has \(c.remaining) requests left and \(c.outstanding == nil ? "none" : "one") outstanding at tick \(now)")
        }
        out += checkChainReentry()
        return Array(out.prefix(20))
    }

    /// The way back (spec §13.1, §12): a Chain core of next(i) installs the init history clients built from f+1
    /// Backup abort histories, and refuses it with a proof one short.
    func checkChainReentry() -> [String] {
        guard let ih = exits.first else { return [] }
        var out: [String] = []
        func core() -> ChainCore? {
            let position = n - 1
            let ring = rings[Int(position)]
            let settings = ChainCore.settings(f: scenario.f, self: position, instance: instanceNumber + 1, clients: keys.clients,
                                              checkpointInterval: Self.chainCheckpointInterval, historyMax: Self.historyMax,
                                              crypto: ring.crypto)
            guard let core = try? ChainCore(settings, keyRing: ring), (try? core.expectBackupProof()) != nil else { return nil }
            return core
        }
        guard let good = core(), let bad = core() else { return ["chain re-entry: could not make a Chain core"] }
        do {
            if try good.install(ih) == .installed { chainInstalls += 1 } else { out.append("chain re-entry: IH ignored") }
        } catch {
            out.append("chain re-entry: the next Chain instance refused the Backup proof: \(error)")
        }
        var short = ih
        short.proof.removeLast()
        if (try? bad.install(short)) != nil { out.append("chain re-entry: a proof of f Backup histories was accepted") }
        return out
    }
}
