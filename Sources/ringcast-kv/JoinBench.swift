import ArgumentParser
import Foundation
import RingCast
import RingCastJSON
import RingCastSMR
import Synchronization

/// `ringcast-kv join-bench`: a replica joins a loaded group whose state holds --fill-mib of values (issue #12,
/// Done-when 4). Measures the transfer, the others' throughput before/during/after, and memory beyond the state.
struct JoinBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join-bench",
        abstract: "Fill a 3-replica group with --fill-mib of values, load it, start a 4th replica that joins; report.",
        discussion: """
        Spawns replicas 0, 1, 2 (`ringcast-kv serve`, this executable) on 127.0.0.1 in a group of four members \
        whose founding view is 0,1,2; fills the store with --fill-mib MiB of values (--fill-value-size bytes each, \
        distinct keys); runs --load-clients closed-loop clients (puts of --value-size bytes over --keys keys and \
        linearizable gets, --writes percent puts) on the replicas in --load-on; after --before seconds starts \
        replica 3, which joins and receives the state from the provider (replica 0, the lowest old member) streamed \
        over its client port, and keeps the load --after seconds past the joiner's catch-up.

        Reports per second, per replica: commands applied and ring bytes delivered; the clients' ops/s; the \
        transfer's duration (join started → state restored → suffix applied); the provider's and the joiner's peak \
        RSS (VmHWM, reset at the join through /proc/PID/clear_refs) minus the logical state size (keys + values); and \
        the state digests of all four replicas at the end (equal = success). The machine is shared by the replicas, \
        the clients and the joiner: throughput figures are only meaningful on a quiet machine.
        """)

    @Option(name: .customLong("fill-mib"), help: "MiB of values to fill the store with before the join.")
    var fillMiB = 512
    @Option(name: .customLong("fill-value-size"), help: "Bytes per fill value.")
    var fillValueSize = 16 << 10
    @Option(name: .customLong("load-clients"), help: "Closed-loop load clients.")
    var loadClients = 6
    @Option(help: "Requests in flight per load client.")
    var depth = 4
    @Option(name: .customLong("value-size"), help: "Bytes per load value.")
    var valueSize = 1000
    @Option(help: "Distinct load keys (apart from the fill keys).")
    var keys = 1000
    @Option(help: ArgumentHelp("Percentage of load requests that are puts.", valueName: "percent"))
    var writes = 50
    @Option(name: .customLong("load-on"), help: ArgumentHelp("Replicas the load clients connect to.", valueName: "id,…"))
    var loadOn = "0,1,2"
    @Option(help: ArgumentHelp("Seconds of load before the join.", valueName: "seconds"))
    var before = 5
    @Option(help: ArgumentHelp("Seconds of load after the joiner caught up.", valueName: "seconds"))
    var after = 5
    @Option(name: .customLong("suffix-mib"), help: "Passed to the replicas: the suffix store's bound (MiB).")
    var suffixMiB = 32
    @Option(name: .customLong("chunk-kib"), help: "Passed to the replicas: snapshot chunk size (KiB).")
    var chunkKiB = 1024
    @Option(name: .customLong("snapshot-rate-mib"), help: "Passed to the replicas: the provider streams at most this many MiB/s (0: unpaced).")
    var snapshotRateMiB = 0
    @Option(name: .customLong("snapshot-nice"), help: "Passed to the replicas: nice value of the state-transfer threads (0: normal priority).")
    var snapshotNice = 10
    @Flag(name: .customLong("snapshot-idle"), inversion: .prefixedNo, help: "Passed to the replicas: a learner restores at SCHED_IDLE while it keeps 16 MiB/s, where the process may leave SCHED_IDLE again (--no-snapshot-idle: SCHED_BATCH throughout).")
    var snapshotIdle = true
    @Option(name: .customLong("learner-feed-mib"), help: "Passed to the replicas: a provider's feed queue per learner (MiB). The feed goes out on the learner's connection of its own as it comes, so it only holds what arrives while the learner's feed thread is not reading; beyond it the learner is dropped and tries again.")
    var learnerFeedMiB = 16
    @Option(name: .customLong("learner-rate-mib"), help: "Passed to the replicas: a learner reads its provider's copy at most this many MiB/s (0: unpaced; only with --spill).")
    var learnerRateMiB = 48
    @Flag(inversion: .prefixedNo, help: "The replicas get a work directory (in this run's directory): a learner spills its feed backlog there (--no-spill: memory only, at most --suffix-mib, unpaced).")
    var spill = true
    @Option(name: .customLong("suspect-ms"), help: "Passed to the replicas.")
    var suspectMillis = 1_000
    @Flag(inversion: .prefixedNo, help: "The joiner catches up as a learner from replicas 0, 1, 2 first, then joins the ring (--no-learner: it joins at once and receives the state at the view change).")
    var learner = true
    @Option(name: .customLong("stall-provider-ms"), help: ArgumentHelp(
        "Fault injection: SIGSTOP the provider (replica 0) this long during the transfer, then SIGCONT (0: none).",
        valueName: "ms"))
    var stallProviderMillis = 0
    @Option(name: .customLong("stall-after-ms"), help: ArgumentHelp(
        "With --stall-provider-ms: how long after the joiner is ready the stall starts; negative: how long before the joiner is started (the join then meets a silent provider).",
        valueName: "ms"))
    var stallAfterMillis = 200
    @Flag(help: "Print the report as JSON.")
    var json = false

    func validate() throws {
        guard fillMiB >= 0, (64...(60 << 10)).contains(fillValueSize) else {
            throw ValidationError("--fill-mib ≥ 0, --fill-value-size is 64...61440")
        }
        guard (1...256).contains(loadClients), (1...64).contains(depth), (0...100).contains(writes) else {
            throw ValidationError("--load-clients 1...256, --depth 1...64, --writes a percentage")
        }
        guard (1...(60 << 10)).contains(valueSize), keys >= 1, before >= 1, after >= 1 else {
            throw ValidationError("--value-size 1...61440, --keys ≥ 1, --before and --after ≥ 1")
        }
        guard suffixMiB >= 1, (1...1023).contains(chunkKiB) || chunkKiB == 1024, snapshotRateMiB >= 0, learnerRateMiB >= 0,
              (0...19).contains(snapshotNice) else {
            throw ValidationError("--suffix-mib ≥ 1, --chunk-kib 1...1024, --snapshot-rate-mib ≥ 0, --learner-rate-mib ≥ 0, --snapshot-nice 0...19")
        }
        guard (0...600_000).contains(stallProviderMillis), (-600_000...600_000).contains(stallAfterMillis) else {
            throw ValidationError("--stall-provider-ms is 0...600000, --stall-after-ms -600000...600000")
        }
        _ = try parseIDs(loadOn)
    }

    private func parseIDs(_ text: String) throws -> [Int] {
        try text.split(separator: ",").map { item in
            guard let id = Int(item.trimmingCharacters(in: .whitespaces)), (0...2).contains(id) else {
                throw ValidationError("--load-on lists replicas 0, 1, 2")
            }
            return id
        }
    }

    /// The fault of issue #12: the provider (replica 0) stopped with SIGSTOP for longer than the suspicion timeout,
    /// `afterMillis` from now, then continued.
    static func stallProvider(_ group: JoinGroup, afterMillis: Int, forMillis: Int, when: String) -> Task<Void, Never> {
        Task.detached {
            try? await Task.sleep(for: .milliseconds(afterMillis))
            let pid = group.pid(0)
            kill(pid, SIGSTOP)
            joinBenchLog("replica 0 (the provider) stopped for \(forMillis) ms\(when)")
            try? await Task.sleep(for: .milliseconds(forMillis))
            kill(pid, SIGCONT)
            joinBenchLog("replica 0 continued")
        }
    }

    func run() async throws {
        let work = try WorkDirectory(prefix: "ringcast-kv-join")
        var passed = false
        defer { work.finish(passed: passed) }
        let directory = work.path
        let group = try JoinGroup(directory: directory, members: 4, extraArguments: [
            "--suspect-ms", "\(suspectMillis)", "--suffix-mib", "\(suffixMiB)", "--snapshot-chunk-kib", "\(chunkKiB)",
            "--snapshot-rate-mib", "\(snapshotRateMiB)", "--snapshot-nice", "\(snapshotNice)",
            "--learner-feed-mib", "\(learnerFeedMiB)", "--learner-rate-mib", "\(learnerRateMiB)"]
            + (spill ? ["--work-dir", directory] : []) + [snapshotIdle ? "--snapshot-idle" : "--no-snapshot-idle"])
        defer { group.stop() }
        for id in 0..<3 { try group.spawn(id, view: "0,1,2") }
        try group.waitReady([0, 1, 2])
        joinBenchLog("replicas 0, 1, 2 ready; output in \(directory)")

        // 1. Fill.
        let fillStarted = monotonicNow()
        let fillKeys = fillMiB << 20 / fillValueSize
        let stateBytes = try await fill(group, keys: fillKeys)
        let fillSeconds = Double(monotonicNow() - fillStarted) / 1e9
        joinBenchLog(String(format: "filled %d keys, %.1f MiB in %.1f s", fillKeys, Double(stateBytes) / 1_048_576, fillSeconds))

        // 2. Sampler and load.
        let sampler = Sampler()
        for id in 0..<3 { try await sampler.attach(id, address: group.clientAddress(id), pid: group.pid(id)) }
        let box = LoadCounters()
        let loadIDs = try parseIDs(loadOn)
        let addresses = (0..<3).map { group.clientAddress($0) }
        let settings = (valueSize: valueSize, keys: keys, writes: writes)
        let depth = depth
        let loadClients = loadClients
        let loadTask = Task {
            await withTaskGroup(of: Void.self) { clients in
                for client in 0..<loadClients {
                    clients.addTask {
                        var options = KVClient.Options(replicas: addresses)
                        options.preferred = loadIDs[client % loadIDs.count]
                        options.windowMax = depth
                        options.timeoutMillis = 30_000
                        guard let session = try? await KVClient.connect(options) else {
                            box.failures.add(1, ordering: .relaxed)
                            return
                        }
                        defer { session.close() }
                        await withTaskGroup(of: Void.self) { lanes in
                            for lane in 0..<depth {
                                lanes.addTask {
                                    var random = SystemRandomNumberGenerator()
                                    var value = [UInt8](repeating: UInt8(truncatingIfNeeded: client &+ lane), count: settings.valueSize)
                                    while !box.stop.load(ordering: .relaxed) {
                                        let key = Array("load-\(Int.random(in: 0..<settings.keys, using: &random))".utf8)
                                        do {
                                            if Int.random(in: 0..<100, using: &random) < settings.writes {
                                                value[0] &+= 1
                                                _ = try await session.submit(.put(key: key, value: value))
                                            } else {
                                                _ = try await session.read(KVQuery(key: key))
                                            }
                                            box.progress.add(1, ordering: .relaxed)
                                        } catch {
                                            box.failures.add(1, ordering: .relaxed)
                                            // A timeout is a request nobody answered for 30 s: the hang of issue #12.
                                            if (error as? SMRClientError) == .timeout { box.timeouts.add(1, ordering: .relaxed) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let sampling = Task { await sampler.run(clientOps: { box.progress.load(ordering: .relaxed) }) }
        let cpuStart = (monotonicNow(), (0..<3).map { ProcStatus.cpuSeconds(group.pid($0)) })
        try await Task.sleep(for: .seconds(before))
        let cpuAtJoin = (monotonicNow(), (0..<3).map { ProcStatus.cpuSeconds(group.pid($0)) })

        // 3. Join.
        let rssBefore = ProcStatus.read(group.pid(0))
        ProcStatus.resetPeak(group.pid(0))
        let joinSecond = await sampler.second
        let joinStartedUnixMillis = unixMillisNow()
        // A negative --stall-after-ms stops the provider before the joiner starts.
        let stallTask = stallProviderMillis > 0 && stallAfterMillis < 0
            ? Self.stallProvider(group, afterMillis: 0, forMillis: stallProviderMillis, when: ", before the join") : nil
        if stallTask != nil { try await Task.sleep(for: .milliseconds(-stallAfterMillis)) }
        let learnFrom = (0..<3).map { "127.0.0.1:\(group.clientAddress($0).port)" }.joined(separator: ",")
        try group.spawn(3, view: "0,1,2", arguments: learner ? ["--learn-from", learnFrom] : [])
        try group.waitReady([3])
        let joinerBaseline = ProcStatus.read(group.pid(3))
        ProcStatus.resetPeak(group.pid(3))
        joinBenchLog("replica 3 started (joining)")
        let stall = stallProviderMillis > 0
            ? stallTask ?? Self.stallProvider(group, afterMillis: stallAfterMillis, forMillis: stallProviderMillis, when: "")
            : nil
        // The joiner prints `state_restored unix_ms=…` and `caught_up unix_ms=…` (a client of it would wait: its
        // session opening is an ordered command, applied after the suffix).
        var restoredNanos: UInt64?
        var caughtUpNanos: UInt64?
        var learnerRestoredNanos: UInt64?
        var learnerJoiningNanos: UInt64?
        let deadline = monotonicNow() + 600_000_000_000
        while caughtUpNanos == nil && monotonicNow() < deadline {
            let lines = group.output(3).split(separator: "\n")
            func stamp(_ prefix: String) -> UInt64? {
                guard let line = lines.first(where: { $0.hasPrefix(prefix) }),
                      let field = line.split(separator: " ").first(where: { $0.hasPrefix("unix_ms=") }),
                      let millis = UInt64(field.dropFirst("unix_ms=".count)) else { return nil }
                return millis > joinStartedUnixMillis ? (millis - joinStartedUnixMillis) * 1_000_000 : 0
            }
            restoredNanos = stamp("state_restored")
            learnerRestoredNanos = stamp("learner_restored")
            learnerJoiningNanos = stamp("learner_joining")
            caughtUpNanos = stamp("caught_up")
            if caughtUpNanos == nil && group.errorOutput(3).contains("excluded from the group: this replica") {
                // It will never catch up (e.g. its provider stalled before sending the state): say so, do not wait.
                joinBenchLog("replica 3 was excluded from the group before it caught up; see \(directory)/replica3.err")
                throw ExitCode(1)
            }
            if caughtUpNanos == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        do {
            try await sampler.attach(3, address: group.clientAddress(3), pid: group.pid(3))
        } catch {
            // E.g. the group excluded the joiner (its provider stalled before sending the state): it serves nobody.
            joinBenchLog("replica 3 does not serve (\(error)); see \(directory)/replica3.err")
            throw ExitCode(1)
        }
        let caughtUpSecond = await sampler.second
        let cpuAtCatchUp = (monotonicNow(), (0..<4).map { ProcStatus.cpuSeconds(group.pid($0)) })
        // Peaks over the transfer (join → caught up): VmHWM was reset at the join.
        let providerTransferPeak = ProcStatus.read(group.pid(0))
        let joinerTransferPeak = ProcStatus.read(group.pid(3))
        joinBenchLog(String(format: "replica 3: state restored after %.2f s, suffix applied after %.2f s",
                   Double(restoredNanos ?? 0) / 1e9, Double(caughtUpNanos ?? 0) / 1e9))
        try await Task.sleep(for: .seconds(after))
        await stall?.value
        box.stop.store(true, ordering: .relaxed)
        let stopped = monotonicNow()
        await loadTask.value
        // Every client ends its current request and stops: long only if a request waits for its timeout.
        let loadDrainSeconds = Double(monotonicNow() - stopped) / 1e9
        sampling.cancel()
        let series = await sampler.series
        let clientOps = await sampler.clientOps
        let providerPeak = ProcStatus.read(group.pid(0))
        let joinerPeak = ProcStatus.read(group.pid(3))
        let providerCounters = await sampler.transferCounters(0)
        let joinerCounters = await sampler.transferCounters(3)

        // 4. Digests, once the load stopped and every member applied the same index (an excluded replica applies
        // nothing more: it is left out of the comparison, and reported).
        var excluded = Set<Int>()
        for id in 0..<4 where await sampler.transferCounters(id)?.excluded == true { excluded.insert(id) }
        var digests: [(index: UInt64, digest: UInt64)] = []
        for _ in 0..<200 {
            digests = []
            for id in 0..<4 { digests.append(try await sampler.digest(id)) }
            let members = digests.enumerated().filter { !excluded.contains($0.offset) }.map(\.element)
            if Set(members.map(\.index)).count == 1 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        await sampler.close()

        let report = JoinReport(
            fillMiB: fillMiB, fillKeys: fillKeys, stateBytes: stateBytes, fillSeconds: fillSeconds,
            joinSecond: joinSecond, caughtUpSecond: caughtUpSecond, restoredSeconds: restoredNanos.map { Double($0) / 1e9 },
            caughtUpSeconds: caughtUpNanos.map { Double($0) / 1e9 },
            learnerRestoredSeconds: learnerRestoredNanos.map { Double($0) / 1e9 },
            learnerJoiningSeconds: learnerJoiningNanos.map { Double($0) / 1e9 }, snapshotBytes: providerCounters?.bytesSent ?? 0,
            providerSuffixPeak: providerCounters?.suffixPeak ?? 0, providerSuffixWaits: providerCounters?.suffixWaits ?? 0,
            providerLearnerFeedPeak: providerCounters?.learnerFeedPeak ?? 0,
            joinerSuffixPeak: joinerCounters?.suffixPeak ?? 0, joinerSuffixWaits: joinerCounters?.suffixWaits ?? 0,
            joinerLearner: joinerCounters,
            providerRSSBefore: rssBefore.rss, providerHWM: providerTransferPeak.hwm, providerEndHWM: providerPeak.hwm,
            joinerBaselineRSS: joinerBaseline.rss, joinerHWM: joinerTransferPeak.hwm, joinerEndHWM: joinerPeak.hwm,
            providerAtCatchUp: providerTransferPeak, joinerAtCatchUp: joinerTransferPeak, series: series, clientOps: clientOps, digests: digests, failures: box.failures.load(ordering: .relaxed),
            timeouts: box.timeouts.load(ordering: .relaxed), excluded: excluded, loadDrainSeconds: loadDrainSeconds,
            cpu: JoinReport.CPU(beforeSeconds: Double(cpuAtJoin.0 - cpuStart.0) / 1e9,
                                before: zip(cpuAtJoin.1, cpuStart.1).map { $0 - $1 },
                                joinSeconds: Double(cpuAtCatchUp.0 - cpuAtJoin.0) / 1e9,
                                join: (0..<4).map { $0 < 3 ? cpuAtCatchUp.1[$0] - cpuAtJoin.1[$0] : cpuAtCatchUp.1[3] }),
            configuration: (learner ? "learner first, " : "no learner, ") + "load-clients \(loadClients) × depth \(depth), value-size \(valueSize), writes \(writes) %, "
                + "load-on \(loadOn), suffix \(suffixMiB) MiB, learner feed \(learnerFeedMiB) MiB, chunk \(chunkKiB) KiB, "
                + "snapshot rate \(snapshotRateMiB == 0 ? "unpaced" : "\(snapshotRateMiB) MiB/s"), transfer threads nice \(snapshotNice)\(snapshotIdle ? ", learner's restore SCHED_IDLE above 16 MiB/s" : ""), "
                + (spill ? "learner backlog spilled to a file, learner rate \(learnerRateMiB == 0 ? "unpaced" : "\(learnerRateMiB) MiB/s")"
                    : "learner backlog in memory, learner unpaced"))
        if json { print(report.json()) } else { print(report.text()) }
        if !report.digestsEqual { throw ExitCode(1) }
        passed = true
    }

    /// Puts `keys` distinct fill values (pipelined, over the three replicas); returns the logical state size.
    private func fill(_ group: JoinGroup, keys: Int) async throws -> Int {
        let addresses = (0..<3).map { group.clientAddress($0) }
        let valueSize = fillValueSize
        let box = LoadCounters()
        let lanes = 8
        try await withThrowingTaskGroup(of: Void.self) { clients in
            for client in 0..<3 {
                clients.addTask {
                    var options = KVClient.Options(replicas: addresses)
                    options.preferred = client
                    options.windowMax = lanes
                    options.timeoutMillis = 30_000
                    let session = try await KVClient.connect(options)
                    defer { session.close() }
                    try await withThrowingTaskGroup(of: Void.self) { workers in
                        for _ in 0..<lanes {
                            workers.addTask {
                                while true {
                                    let index = box.progress.add(1, ordering: .relaxed).oldValue
                                    guard index < keys else { return }
                                    let value = [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: valueSize)
                                    _ = try await session.submit(.put(key: Self.fillKey(index), value: value))
                                    if index % 4096 == 0 { joinBenchLog("fill: \(index) / \(keys)") }
                                }
                            }
                        }
                        try await workers.waitForAll()
                    }
                }
            }
            try await clients.waitForAll()
        }
        return keys * (fillKey(0).count + valueSize)
    }

    static func fillKey(_ index: Int) -> [UInt8] { Array(String(format: "fill-%09d", index).utf8) }
    private func fillKey(_ index: Int) -> [UInt8] { Self.fillKey(index) }
}

/// Counters the load tasks share.
final class LoadCounters: Sendable {
    let progress = Atomic<Int>(0)
    let failures = Atomic<Int>(0)
    let timeouts = Atomic<Int>(0)
    let stop = Atomic<Bool>(false)
}

func joinBenchLog(_ text: String) { FileHandle.standardError.write(Data("join-bench: \(text)\n".utf8)) }
