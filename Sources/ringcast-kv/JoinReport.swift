import ArgumentParser
import Foundation
import RingCast
import RingCastJSON
import RingCastSMR
import Synchronization

// join-bench: what a run measured, as text or JSON.

struct JoinReport {
    var fillMiB: Int
    var fillKeys: Int
    var stateBytes: Int
    var fillSeconds: Double
    var joinSecond: Int
    var caughtUpSecond: Int
    var restoredSeconds: Double?
    var caughtUpSeconds: Double?
    /// A learner's phases: its copy restored, its group member started (then the join; caught up is the end).
    var learnerRestoredSeconds: Double?
    var learnerJoiningSeconds: Double?
    var snapshotBytes: UInt64
    var providerSuffixPeak: UInt64
    var providerSuffixWaits: UInt64
    /// The provider's feed queue to the learner at its peak (bytes applied and not yet sent to it).
    var providerLearnerFeedPeak: UInt64
    var joinerSuffixPeak: UInt64
    var joinerSuffixWaits: UInt64
    /// The joiner's learner counters (stash in memory, spill file, pacing, fallbacks).
    var joinerLearner: TransferCounters?
    var providerRSSBefore: Int
    /// VmHWM at the catch-up (the peak over the transfer) and at the end of the run (after --after s of load).
    var providerHWM: Int
    var providerEndHWM: Int
    var joinerBaselineRSS: Int
    var joinerHWM: Int
    var joinerEndHWM: Int
    /// RSS by kind at the catch-up (heap, code, the ring's receive buffer): see ``ProcStatus``.
    var providerAtCatchUp: ProcStatus
    var joinerAtCatchUp: ProcStatus
    var series: [Sample]
    /// The load clients' completed requests per second (element i is second i + 1).
    var clientOps: [Int]
    var digests: [(index: UInt64, digest: UInt64)]
    var failures: Int
    /// Load requests that failed with a timeout (nobody answered them within the client's 30 s).
    var timeouts: Int
    /// Replicas the group excluded (after --stall-provider-ms): their digests are not compared.
    var excluded: Set<Int>
    /// From the load's stop to the end of every load client's last request.
    var loadDrainSeconds: Double
    var cpu: CPU
    var configuration: String

    /// CPU seconds (user + system, /proc/PID/stat) of each replica process: over the --before window (replicas 0, 1,
    /// 2), and from the joiner's start to its catch-up (replicas 0, 1, 2, and the joiner over its whole life so far).
    /// What the join costs the machine: the join window's CPU per second minus the before window's, per replica.
    struct CPU {
        var beforeSeconds: Double
        var before: [Double]
        var joinSeconds: Double
        var join: [Double]

        func text() -> String {
            let rate = { (cpu: Double, seconds: Double) in seconds > 0 ? cpu / seconds : 0 }
            var parts: [String] = []
            for replica in 0..<3 {
                parts.append(String(format: "r%d %.2f → %.2f", replica, rate(before[replica], beforeSeconds),
                                    rate(join[replica], joinSeconds)))
            }
            return String(format: "CPU (cores busy, before → join start to catch-up, %.1f s): ", joinSeconds)
                + parts.joined(separator: ", ")
                + String(format: "; joiner %.1f CPU-s until caught up (%.2f cores)", join[3], rate(join[3], joinSeconds))
        }

        var json: JSONValue {
            .object([("before_seconds", .number(beforeSeconds)), ("before_cpu_seconds", .array(before.map { .number($0) })),
                     ("join_seconds", .number(joinSeconds)), ("join_cpu_seconds", .array(join.map { .number($0) }))])
        }
    }

    var digestsEqual: Bool {
        let members = digests.enumerated().filter { !excluded.contains($0.offset) }.map(\.element)
        return digests.count == 4 && members.count == 4 - excluded.count && Set(members.map(\.index)).count == 1
            && Set(members.map(\.digest)).count == 1
    }

    /// Mean commands applied per second at `replica` in seconds (from, through].
    func mean(_ replica: Int, _ range: ClosedRange<Int>) -> Double {
        let picked = series.filter { $0.replica == replica && range.contains($0.second) }
        guard !picked.isEmpty else { return 0 }
        return Double(picked.reduce(0) { $0 + $1.commandsApplied }) / Double(picked.count)
    }

    /// Mean requests per second the load clients completed in seconds (from, through].
    func meanClientOps(_ range: ClosedRange<Int>) -> Double {
        let picked = range.filter { $0 >= 1 && $0 <= clientOps.count }.map { clientOps[$0 - 1] }
        guard !picked.isEmpty else { return 0 }
        return Double(picked.reduce(0, +)) / Double(picked.count)
    }

    var phases: (before: ClosedRange<Int>, during: ClosedRange<Int>, after: ClosedRange<Int>) {
        let last = series.map(\.second).max() ?? 0
        // The first two seconds after the fill are warm-up (the load clients connect and open their sessions; on a
        // busy machine the second one was still almost empty) unless --before is too short for that; the join second
        // and the catch-up second count as "during". Sample s covers (s − 1, s]: the join started in sample
        // joinSecond + 1; the last sample is partial.
        let first = joinSecond >= 4 ? 3 : 2
        return (first...max(first, joinSecond), (joinSecond + 1)...max(joinSecond + 1, caughtUpSecond + 1),
                (caughtUpSecond + 2)...max(caughtUpSecond + 2, last - 1))
    }

    func text() -> String {
        let mib = { (bytes: Int) in String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
        var lines: [String] = []
        lines.append("join-bench (loopback, one shared machine): \(configuration)")
        lines.append("state: \(fillKeys) keys, \(mib(stateBytes)) of keys + values (filled in "
            + String(format: "%.1f s", fillSeconds) + "); snapshot streamed: \(mib(Int(snapshotBytes)))")
        lines.append(String(format: "transfer: state restored %.2f s after the joiner started; suffix applied (caught up) after %.2f s",
                            restoredSeconds ?? -1, caughtUpSeconds ?? -1))
        if let joining = learnerJoiningSeconds {
            lines.append(String(format: "learner phase (outside the view): copy restored after %.2f s, caught up to its "
                + "provider and joining after %.2f s; join phase (in the ring, to the cut, then the suffix): %.2f s",
                learnerRestoredSeconds ?? -1, joining, (caughtUpSeconds ?? joining) - joining))
        }
        let phases = phases
        lines.append("windows (samples s cover (s − 1, s]): before \(phases.before), during \(phases.during) (from the joiner's "
            + "start to one second after its catch-up: the learner's restore, its feed catch-up and the join), after \(phases.after)")
        lines.append(cpu.text())
        for replica in 0..<3 {
            let before = mean(replica, phases.before)
            let during = mean(replica, phases.during)
            let after = mean(replica, phases.after)
            lines.append(String(format: "replica %d commands applied/s: before %.0f, during %.0f (%.0f %%), after %.0f", replica,
                                before, during, before > 0 ? 100 * during / before : 0, after))
        }
        lines.append(String(format: "replica 3 commands applied/s after catch-up: %.0f", mean(3, phases.after)))
        let clientsBefore = meanClientOps(phases.before), clientsDuring = meanClientOps(phases.during)
        lines.append(String(format: "load clients requests/s: before %.0f, during %.0f (%.0f %%), after %.0f", clientsBefore,
                            clientsDuring, clientsBefore > 0 ? 100 * clientsDuring / clientsBefore : 0,
                            meanClientOps(phases.after)))
        lines.append("provider (replica 0): RSS before the join \(mib(providerRSSBefore)), peak over the transfer \(mib(providerHWM)); "
            + "peak − state \(mib(providerHWM - stateBytes)), peak − RSS before \(mib(providerHWM - providerRSSBefore)); "
            + "suffix peak \(mib(Int(providerSuffixPeak))), waits for room \(providerSuffixWaits); "
            + "learner feed queue peak \(mib(Int(providerLearnerFeedPeak))); "
            + "peak until the end of the run \(mib(providerEndHWM))")
        lines.append("joiner (replica 3): RSS when ready (empty) \(mib(joinerBaselineRSS)), peak over the transfer \(mib(joinerHWM)); "
            + "peak − state \(mib(joinerHWM - stateBytes)), peak − state − RSS when ready \(mib(joinerHWM - stateBytes - joinerBaselineRSS)); "
            + "suffix peak \(mib(Int(joinerSuffixPeak))), waits for room \(joinerSuffixWaits); "
            + "peak until the end of the run \(mib(joinerEndHWM))")
        if let learner = joinerLearner {
            lines.append("joiner's feed backlog: in memory peak \(mib(Int(learner.learnerStashPeak))), spill file peak "
                + "\(mib(Int(learner.learnerSpillPeak))) (\(learner.learnerSpilledBatches) batches spilled); chunks paced "
                + "\(learner.learnerPacingWaits) times; fallbacks to the ordinary join \(learner.learnerFallbacks); "
                + "restores raised from SCHED_IDLE \(learner.learnerRestoresRaised)")
        }
        for (name, status) in [("provider", providerAtCatchUp), ("joiner", joinerAtCatchUp)] {
            lines.append("\(name) RSS at the catch-up \(mib(status.rss)): heap \(mib(status.anon)) (heap − state "
                + "\(mib(status.anon - stateBytes))), code \(mib(status.file)), ring receive buffer and other shared "
                + "memory \(mib(status.shmem))")
        }
        lines.append("per second (commands applied at r0 r1 r2 r3 | ring MB/s at r0 | load clients requests/s):")
        for second in Set(series.map(\.second)).sorted() {
            let row = (0..<4).map { id in series.first { $0.second == second && $0.replica == id }.map { "\($0.commandsApplied)" } ?? "-" }
            let ring = series.first { $0.second == second && $0.replica == 0 }.map { String(format: "%.1f", Double($0.ringBytes) / 1e6) } ?? "-"
            let mark = second == joinSecond + 1 ? "  ← join" : second == caughtUpSecond ? "  ← caught up" : ""
            let clients = second >= 1 && second <= clientOps.count ? "\(clientOps[second - 1])" : "-"
            lines.append("  \(second): \(row.joined(separator: " ")) | \(ring) | \(clients)\(mark)")
        }
        lines.append("digests: " + digests.map { "\($0.index)@" + String($0.digest, radix: 16) }.joined(separator: " ")
            + (digestsEqual ? "  EQUAL" : "  DIFFER"))
        if failures > 0 { lines.append("client request failures: \(failures) (timeouts: \(timeouts))") }
        if !excluded.isEmpty { lines.append("excluded by the group (digest not compared): \(excluded.sorted())") }
        lines.append(String(format: "load drained in %.2f s after its stop", loadDrainSeconds))
        return lines.joined(separator: "\n")
    }

    func json() -> String {
        let phases = phases
        var fields: [(String, JSONValue)] = [
            ("state_bytes", .integer(Int64(stateBytes))), ("fill_keys", .integer(Int64(fillKeys))),
            ("fill_seconds", .number(fillSeconds)), ("snapshot_bytes", .integer(Int64(snapshotBytes))),
            ("restored_seconds", restoredSeconds.map { .number($0) } ?? .null),
            ("caught_up_seconds", caughtUpSeconds.map { .number($0) } ?? .null),
            ("learner_restored_seconds", learnerRestoredSeconds.map { .number($0) } ?? .null),
            ("learner_joining_seconds", learnerJoiningSeconds.map { .number($0) } ?? .null),
            ("provider_rss_before_join_bytes", .integer(Int64(providerRSSBefore))),
            ("provider_peak_rss_bytes", .integer(Int64(providerHWM))),
            ("provider_peak_minus_state_bytes", .integer(Int64(providerHWM - stateBytes))),
            ("provider_suffix_peak_bytes", .integer(Int64(providerSuffixPeak))),
            ("provider_learner_feed_peak_bytes", .integer(Int64(providerLearnerFeedPeak))),
            ("provider_suffix_waits", .integer(Int64(providerSuffixWaits))),
            ("joiner_suffix_peak_bytes", .integer(Int64(joinerSuffixPeak))),
            ("joiner_suffix_waits", .integer(Int64(joinerSuffixWaits))),
            ("joiner_learner_stash_peak_bytes", .integer(Int64(joinerLearner?.learnerStashPeak ?? 0))),
            ("joiner_learner_spill_peak_bytes", .integer(Int64(joinerLearner?.learnerSpillPeak ?? 0))),
            ("joiner_learner_spilled_batches", .integer(Int64(joinerLearner?.learnerSpilledBatches ?? 0))),
            ("joiner_learner_pacing_waits", .integer(Int64(joinerLearner?.learnerPacingWaits ?? 0))),
            ("joiner_learner_fallbacks", .integer(Int64(joinerLearner?.learnerFallbacks ?? 0))),
            ("joiner_learner_restores_raised", .integer(Int64(joinerLearner?.learnerRestoresRaised ?? 0))),
            ("joiner_ready_rss_bytes", .integer(Int64(joinerBaselineRSS))),
            ("joiner_peak_rss_bytes", .integer(Int64(joinerHWM))),
            ("joiner_peak_minus_state_bytes", .integer(Int64(joinerHWM - stateBytes))),
            ("provider_end_peak_rss_bytes", .integer(Int64(providerEndHWM))),
            ("joiner_end_peak_rss_bytes", .integer(Int64(joinerEndHWM))),
            ("provider_catch_up_rss_bytes", .object(providerAtCatchUp.jsonFields)),
            ("joiner_catch_up_rss_bytes", .object(joinerAtCatchUp.jsonFields)),
            ("digests_equal", .bool(digestsEqual)), ("client_failures", .integer(Int64(failures))),
            ("client_timeouts", .integer(Int64(timeouts))),
            ("excluded_replicas", .array(excluded.sorted().map { .integer(Int64($0)) })),
            ("load_drain_seconds", .number(loadDrainSeconds)),
            ("cpu", cpu.json),
            ("windows", .object([("before", .string("\(phases.before)")), ("during", .string("\(phases.during)")),
                                 ("after", .string("\(phases.after)"))])),
            ("configuration", .string(configuration)),
        ]
        for replica in 0..<3 {
            fields.append(("replica\(replica)_applied_per_second", .object([
                ("before", .number(mean(replica, phases.before))), ("during", .number(mean(replica, phases.during))),
                ("after", .number(mean(replica, phases.after)))])))
        }
        fields.append(("clients_requests_per_second", .object([
            ("before", .number(meanClientOps(phases.before))), ("during", .number(meanClientOps(phases.during))),
            ("after", .number(meanClientOps(phases.after)))])))
        fields.append(("series", .array(series.map { sample in
            .object([("second", .integer(Int64(sample.second))), ("replica", .integer(Int64(sample.replica))),
                     ("applied", .integer(Int64(sample.commandsApplied))), ("ring_bytes", .integer(Int64(sample.ringBytes))),
                     ("rss_bytes", .integer(Int64(sample.rss)))])
        })))
        return JSONValue.object(fields).text
    }
}

extension ProcStatus {
    /// RSS by kind for the JSON report.
    var jsonFields: [(String, JSONValue)] {
        [("rss", .integer(Int64(rss))), ("heap", .integer(Int64(anon))), ("code", .integer(Int64(file))),
         ("shared", .integer(Int64(shmem)))]
    }
}
