import ArgumentParser
import Foundation
import RingCast
import RingCastJSON
import RingCastSMR
import Synchronization

// join-bench: the per-second samples of every replica, and the transfer counters in its statistics.

/// The transfer counters a replica appends to its statistics frame (after the marker).
struct TransferCounters {
    var sent: UInt64
    var bytesSent: UInt64
    var restored: UInt64
    var suffixDeliveries: UInt64
    var suffixPeak: UInt64
    var suffixBytes: UInt64
    var suffixWaits: UInt64
    var held: Bool
    var hasState: Bool
    /// The group excluded this replica (a counter after the original ten; false from a replica that lacks it).
    var excluded: Bool
    /// A learner's feed backlog: in-memory peak, spill file peak, spilled batches; chunks that waited for its pace;
    /// fallbacks to the ordinary join (0 from a replica that lacks them).
    var learnerStashPeak: UInt64 = 0
    var learnerSpillPeak: UInt64 = 0
    var learnerSpilledBatches: UInt64 = 0
    var learnerPacingWaits: UInt64 = 0
    var learnerFallbacks: UInt64 = 0
    /// A provider's learner feed queue at its peak, bytes (0 from a replica that lacks it).
    var learnerFeedPeak: UInt64 = 0
    /// A learner's restores raised from SCHED_IDLE for progressing below the floor.
    var learnerRestoresRaised: UInt64 = 0

    static let marker: UInt64 = 0x5452_414E_5346_4552

    init?(_ values: [UInt64]) {
        guard let start = values.firstIndex(of: Self.marker), values.count >= start + 10 else { return nil }
        let v = Array(values[(start + 1)...])
        sent = v[0]
        bytesSent = v[1]
        restored = v[2]
        suffixDeliveries = v[3]
        suffixPeak = v[4]
        suffixBytes = v[5]
        suffixWaits = v[6]
        held = v[7] != 0
        hasState = v[8] != 0
        excluded = v.count > 10 && v[10] != 0
        if v.count > 15 {
            learnerStashPeak = v[11]
            learnerSpillPeak = v[12]
            learnerSpilledBatches = v[13]
            learnerPacingWaits = v[14]
            learnerFallbacks = v[15]
        }
        if v.count > 16 { learnerFeedPeak = v[16] }
        if v.count > 17 { learnerRestoresRaised = v[17] }
    }
}

/// One second of one replica: commands applied, ring bytes delivered, RSS.
struct Sample: Sendable {
    var second: Int
    var replica: Int
    var commandsApplied: UInt64
    var ringBytes: UInt64
    var rss: Int
}

/// Polls every replica's statistics once a second (its own client per replica).
actor Sampler {
    private var clients: [Int: KVClient] = [:]
    private var pids: [Int: pid_t] = [:]
    private var last: [Int: (applied: UInt64, bytes: UInt64)] = [:]
    private(set) var series: [Sample] = []
    private(set) var clientOps: [Int] = []
    private(set) var second = 0

    func attach(_ id: Int, address: Address, pid: pid_t) async throws {
        var options = KVClient.Options(replicas: [address])
        options.timeoutMillis = 30_000
        clients[id] = try await KVClient.connect(options)
        pids[id] = pid
    }

    func run(clientOps read: @Sendable () -> Int) async {
        var lastOps = read()
        let start = monotonicNow()
        while !Task.isCancelled {
            let target = start + UInt64(second + 1) * 1_000_000_000
            let now = monotonicNow()
            if target > now { try? await Task.sleep(for: .nanoseconds(Int(target - now))) }
            second += 1
            let ops = read()
            clientOps.append(ops - lastOps)
            lastOps = ops
            var line = "[\(second) s] clients \(clientOps.last!) ops/s;"
            for id in clients.keys.sorted() {
                guard let values = try? await clients[id]!.replicaStatistics(), values.count > 9 else { continue }
                let previous = last[id] ?? (values[1], values[9])
                last[id] = (values[1], values[9])
                let sample = Sample(second: second, replica: id, commandsApplied: values[1] - previous.applied,
                                    ringBytes: values[9] &- previous.bytes, rss: ProcStatus.read(pids[id]!).rss)
                series.append(sample)
                line += String(format: " r%d applied %d/s ring %.1f MB/s rss %d MiB;", id, sample.commandsApplied,
                               Double(sample.ringBytes) / 1e6, sample.rss >> 20)
            }
            joinBenchLog(line)
        }
    }

    func transferCounters(_ id: Int) async -> TransferCounters? {
        guard let client = clients[id], let values = try? await client.replicaStatistics() else { return nil }
        return TransferCounters(values)
    }

    func digest(_ id: Int) async throws -> (index: UInt64, digest: UInt64) {
        try await clients[id]!.replicaDigest()
    }

    func close() {
        for client in clients.values { client.close() }
        clients = [:]
    }
}
