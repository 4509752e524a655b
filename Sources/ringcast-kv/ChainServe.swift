import ArgumentParser
import ChainBFT
import Foundation
import RingCastBackup
import RingCastChain
import RingCastSMR

/// `ringcast-kv serve --protocol chain`: the same KVStore, replicated Byzantine-tolerantly by a Chain BFT replica
/// (ChainBFT). The member list is the chain order (the first is the head, the last the tail); n = 3f+1.
/// Replicas and clients connect to the member's one port.
enum ChainServe {
    static func run(id: UInt32, members: String, keys: String?, batchCount: UInt32, clientsMax: UInt32?,
                    byzantineAfterMillis: UInt64? = nil) async throws {
        guard let keys else { throw ValidationError("--protocol chain needs --keys DIR (one key file per party: `ringcast-keys chain --f F --clients C --out DIR`)") }
        let endpoints = try parseChainEndpoints(members, "--members")
        guard endpoints.count >= 4, (endpoints.count - 1) % 3 == 0 else {
            throw ValidationError("--protocol chain needs 3f+1 members (4, 7, …), not \(endpoints.count)")
        }
        let f = UInt32((endpoints.count - 1) / 3)
        guard id < UInt32(endpoints.count) else { throw ValidationError("--id \(id) is not a member position") }
        let (ring, fileF, clients) = try ChainKeyDirectory.load(directory: keys, principal: .replica(id))
        guard fileF == f else { throw ValidationError("the key files are for f = \(fileF), the members for f = \(f)") }
        var settings = ChainReplica<KVStore>.Settings(f: f, position: id, replicas: endpoints)
        settings.clientsMax = min(clientsMax ?? clients, clients)
        settings.batchCountMax = batchCount
        // With a replica down no Chain checkpoint becomes stable (it needs all 3f+1), so every init history reaches back
        // to the last one before the crash: history_max bounds how many requests Chain and Backup (spec §13.1) can
        // commit after a crash until the replica is back (the abort history must fit the next Chain instance).
        settings.historyMax = 2048
        // k = 1, 2, 4, … (C = 1): a one-off fault still costs one request's Backup; a lasting crash gets long Backups
        // soon (each Chain instance in between costs a client timeout).
        settings.backupSchedule = Backup.Schedule(cExponent: 0)
        if let byzantineAfterMillis { settings.outbound = forgedBatches(afterMillis: byzantineAfterMillis) }
        let replica = try ChainReplica(settings: settings, keyRing: ring, machine: KVStore())
        let port = try replica.start()
        FileHandle.standardOutput.write(Data("ready client_port=\(port) id=\(id) protocol=chain\n".utf8))
        await waitForTermination()
        replica.stop()
        let s = replica.statistics
        // executed= is the sn the state is at (the bench compares digests there); executions= counts re-executions too.
        print("stopped executed=\(s.stateSN) executions=\(s.executed) last_sn=\(s.lastSN) stable_checkpoint=\(s.stableCheckpoint) "
            + "stopped_instance=\(s.stopped) stop_reason=\(s.stopReason) malformed_frames=\(s.malformedFrames) "
            + "mac_generations=\(s.macGenerations) mac_verifications=\(s.macVerifications) "
            + "state_digest=\(s.stateDigest.map { String(format: "%016llx", $0) } ?? "none") "
            + "instance=\(s.switching.instance) instances_entered=\(s.switching.instancesEntered) "
            + "init_histories_refused=\(s.switching.initHistoriesRefused) fetches_sent=\(s.switching.fetchesSent) "
            + "backup_instances=\(s.switching.backupInstancesEntered) backup_executed=\(s.switching.backupExecuted) "
            + "backup_behind=\(s.switching.backupBehind)")
    }

    /// `--byzantine-after-ms`: the harness-level fault of the switching bench (ChainReplica.Settings.outbound wraps a
    /// correct core; the core has no such flag). From then on, every ordering MAC of this replica's batches of
    /// instance 1 is flipped; the successor refuses them and stops (C3), the clients time out, PANIC and switch.
    static func forgedBatches(afterMillis: UInt64) -> @Sendable (ChainFrame) -> ChainFrame? {
        let start = DispatchTime.now().uptimeNanoseconds
        return { frame in
            guard case .batch(var batch) = frame, batch.instance == 1,
                  DispatchTime.now().uptimeNanoseconds - start >= afterMillis * 1_000_000 else { return frame }
            batch.window = batch.window.map { $0.flipped() }
            return .batch(batch)
        }
    }
}

func parseChainEndpoints(_ text: String, _ flag: String) throws -> [ChainEndpoint] {
    let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    return try items.map { item in
        guard let endpoint = ChainEndpoint(item) else { throw ValidationError("\(flag): \(item) is not host:port") }
        return endpoint
    }
}

/// A KV client over ChainClient: commands and reads are both ordered by the chain (a read is linearizable).
final class ChainKV: Sendable {
    let client: ChainClient

    /// - Parameter requireAll: connect to every replica before returning (false: one is enough, a replica may be down).
    init(replicas: [ChainEndpoint], keys: String, clientID: UInt32, windowMax: Int = 16, timeoutMillis: Int = 5000,
         requireAll: Bool = true) throws {
        let (ring, f, _) = try ChainKeyDirectory.load(directory: keys, principal: .client(clientID))
        guard replicas.count == Int(3 * f + 1) else {
            throw ValidationError("the key files are for \(3 * f + 1) replicas, --replicas lists \(replicas.count)")
        }
        var settings = ChainClient.Settings(f: f, client: clientID, replicas: replicas)
        settings.windowMax = windowMax
        settings.timeoutNanos = UInt64(timeoutMillis) * 1_000_000
        // Switching (spec §2.3, §13.1): next(i) = i+1 in Aliph's order, Chain → Backup → Chain → …; with a replica
        // down each Chain instance aborts and each Backup commits k (doubling), so a client may see several switches
        // without a commit of its own while other clients' requests take Backup's k: bounded at 32 in a row.
        settings.switchInstance = ChainNextInstance()
        settings.switchesWithoutCommitMax = 32
        settings.backupSendsMax = 16
        client = try ChainClient(settings: settings, keyRing: ring)
        try client.start(requireAll: requireAll)
    }

    func submit(_ command: KVCommand) async throws -> KVResult {
        try ChainOperation.decodeReply(try await client.submit(ChainOperation.command(command)), as: KVResult.self)
    }

    func read(_ query: KVQuery) async throws -> KVResult {
        try ChainOperation.decodeReply(try await client.submit(ChainOperation.query(query)), as: KVResult.self)
    }

    func close() { client.close() }
}

extension ClientOptions {
    /// The Chain client when `--protocol chain` was given, else nil (the LCR client is used).
    func chain() throws -> ChainKV? {
        guard protocolName == "chain" else { return nil }
        guard let keys else { throw ValidationError("--protocol chain needs --keys DIR") }
        return try ChainKV(replicas: try parseChainEndpoints(replicas, "--replicas"), keys: keys, clientID: clientID,
                           timeoutMillis: timeout)
    }
}

