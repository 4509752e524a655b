import ArgumentParser
import ChainBFT
import Foundation
import Histogram
import RingCastChain
import RingCastLocalPorts
import RingCastSMR

/// `ringcast-kv bench --protocol chain`: the same closed-loop workload and `--check` as the LCR bench, through
/// ChainClient against `ringcast-kv serve --protocol chain` processes. Keys: a fresh key directory per run
/// (the files of `ringcast-keys chain`, written by ChainKeyDirectory.generate).
extension Bench {
    func runChain() async throws {
        guard replicas >= 4, (replicas - 1) % 3 == 0 else {
            throw ValidationError("--protocol chain needs --replicas 3f+1 (4, 7, …), not \(replicas)")
        }
        guard ["kv", "incr"].contains(workload) else { throw ValidationError("--protocol chain runs --workload kv or incr") }
        guard plantBug == nil else { throw ValidationError("--plant-bug is an LCR replica fault") }
        let f = UInt32((replicas - 1) / 3)
        let work = try WorkDirectory(prefix: "ringcast-kv-chain-bench")
        var passed = false
        defer { work.finish(passed: passed) }
        let directory = work.path
        let keyDirectory = directory + "/keys"
        try FileManager.default.createDirectory(atPath: keyDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        // One client more than the workers: the reader of the incr workload's counters.
        try ChainKeyDirectory.generate(directory: keyDirectory, f: f, clients: UInt32(clients) + 1, overwrite: true)
        let cluster = try ChainSpawnedCluster.start(replicas: replicas, directory: directory, keys: keyDirectory,
                                                    byzantineHeadAfterMillis: byzantineAt.map { UInt64($0 * 1000) })
        defer { cluster.stop() }

        let progress = ProgressCounter()
        let startNanos = monotonicNow()
        let endNanos = startNanos + UInt64(duration * 1e9)
        let settings = WorkerSettings(writesPercent: writes, valueSize: valueSize, keys: keys, endNanos: endNanos,
                                      record: check, incrementOnly: workload == "incr", counters: counters)
        let victim = killReplica ?? replicas - 1
        guard victim >= 0, victim < replicas else { throw ValidationError("--kill-replica \(victim) is not a replica") }
        let killTask = killAfter.map { seconds in
            Task {
                try? await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
                if !Task.isCancelled { cluster.kill(victim) }
            }
        }
        let (depth, endpoints, timeoutMillis) = (depth, cluster.endpoints, timeoutMillis)
        let results: [WorkerResult] = try await withThrowingTaskGroup(of: [WorkerResult].self) { group in
            for client in 0..<clients {
                group.addTask {
                    let session = try ChainKV(replicas: endpoints, keys: keyDirectory, clientID: UInt32(client),
                                              windowMax: depth, timeoutMillis: timeoutMillis)
                    defer { session.close() }
                    return await withTaskGroup(of: WorkerResult.self) { workers in
                        for lane in 0..<depth {
                            workers.addTask {
                                await runChainWorker(id: client * depth + lane, session: session, settings: settings,
                                                     progress: progress)
                            }
                        }
                        var all: [WorkerResult] = []
                        for await result in workers { all.append(result) }
                        return all
                    }
                }
            }
            var all: [WorkerResult] = []
            for try await some in group { all += some }
            return all
        }
        let elapsed = Double(monotonicNow() - startNanos) / 1e9
        killTask?.cancel()
        var report = BenchReport(replicas: replicas, clients: clients, depth: depth, writesPercent: writes,
                                 valueSize: valueSize, keys: keys, seconds: elapsed)
        for result in results { report.add(result) }
        if workload == "incr" {
            // The counters' sum, read through the chain (an ordered read) before the replicas stop.
            report.counter = await readChainCounter(endpoints: endpoints, keys: keyDirectory, client: UInt32(clients),
                                                    counters: counters)
        }
        let finals = cluster.stopAndCollect()
        let live = finals.filter { $0.executed != nil }
        if let top = live.map({ $0.executed! }).max() {
            let same = live.filter { $0.executed == top }
            report.digests = DigestComparison(equal: Set(same.map(\.digest)).count == 1, index: top, replicas: same.count,
                                              digests: same.map(\.digest))
        }
        if check { report.check = checkHistory(results.flatMap(\.events)) }
        if let killAfter, check {
            // Throughput on either side of the kill, from the recorded completions (Backup's cost shows here).
            let kill = startNanos + UInt64(killAfter * 1e9)
            let done = results.flatMap(\.events).compactMap(\.returnNanos)
            let before = Double(done.filter { $0 < kill }.count) / killAfter
            let after = Double(done.filter { $0 >= kill }.count) / max(0.001, elapsed - killAfter)
            FileHandle.standardError.write(Data(String(format: "ops/s before the kill %.0f, after it %.0f\n", before, after).utf8))
        }
        print(json ? report.json() : report.text())
        if report.digests?.equal == false { throw ExitCode(4) }
        if let check = report.check, !check.linearizable { throw ExitCode(2) }
        if report.exactlyOnce == false { throw ExitCode(3) }
        passed = true
    }
}

/// The incr workload's counters summed through a fresh ChainKV session of client `client` (one no worker used; it
/// starts in instance 1 and is told the current one by the replicas); nil if the read fails.
func readChainCounter(endpoints: [ChainEndpoint], keys: String, client: UInt32, counters: Int) async -> Int64? {
    do {
        let session = try ChainKV(replicas: endpoints, keys: keys, clientID: client, timeoutMillis: 10_000, requireAll: false)
        defer { session.close() }
        var sum: Int64 = 0
        for index in 0..<counters {
            switch try await session.read(KVQuery(key: WorkerSettings.counterKey(index, of: counters))) {
            case let .value(bytes?) where bytes.count == 8:
                sum &+= bytes.enumerated().reduce(Int64(0)) { $0 | Int64($1.element) << (8 * $1.offset) }
            case .value(nil): break
            default: return nil
            }
        }
        return sum
    } catch {
        FileHandle.standardError.write(Data("reading the counters failed: \(error)\n".utf8))
        return nil
    }
}

/// A closed loop over a ChainKV session. A failed operation (timeout or abort) is in doubt when it is a write (its
/// history stays open: the worker stops); a read that failed had no effect and is left out.
func runChainWorker(id: Int, session: ChainKV, settings: WorkerSettings, progress: ProgressCounter) async -> WorkerResult {
    var random = SplitMix64(state: UInt64(id) &* 0x1234_5678_9ABC_DEF1 &+ 1)
    var result = WorkerResult()
    var value = [UInt8](repeating: 0, count: settings.valueSize)
    var sequence: UInt64 = 0
    while monotonicNow() < settings.endNanos {
        if settings.incrementOnly {
            // incr: one increment of a counter; acknowledged or in doubt (the report checks the sum: exactly once).
            let key = WorkerSettings.counterKey(Int(random.next() % UInt64(settings.counters)), of: settings.counters)
            let invoke = monotonicNow()
            do {
                let output = try await session.submit(.incr(key: key, delta: 1))
                let done = monotonicNow()
                _ = result.incrs.record((done - invoke) / 1000)
                result.incrementsAcknowledged += 1
                if settings.record {
                    result.events.append(RecordedOperation(client: id, input: .incr(key, 1), output: output,
                                                           invokeNanos: invoke, returnNanos: done))
                }
                progress.add(ok: true)
                continue
            } catch {
                result.failures += 1
                result.incrementsInDoubt += 1
                progress.add(ok: false)
                progress.note(error)
                if settings.record {
                    result.events.append(RecordedOperation(client: id, input: .incr(key, 1), output: nil,
                                                           invokeNanos: invoke, returnNanos: nil))
                }
                return result
            }
        }
        let key = Array("k\(random.next() % UInt64(settings.keys))".utf8)
        let isWrite = Int(random.next() % 100) < settings.writesPercent
        let invoke = monotonicNow()
        if isWrite {
            sequence += 1
            withUnsafeBytes(of: (UInt64(id).littleEndian, sequence.littleEndian)) { raw in
                for index in 0..<min(16, value.count) { value[index] = raw[index] }
            }
        }
        do {
            let output = isWrite ? try await session.submit(.put(key: key, value: value)) : try await session.read(KVQuery(key: key))
            let done = monotonicNow()
            _ = isWrite ? result.puts.record((done - invoke) / 1000) : result.gets.record((done - invoke) / 1000)
            if settings.record {
                result.events.append(RecordedOperation(client: id, input: isWrite ? .put(key, value) : .get(key),
                                                       output: output, invokeNanos: invoke, returnNanos: done))
            }
            progress.add(ok: true)
        } catch {
            result.failures += 1
            progress.add(ok: false)
            progress.note(error)
            // A write the chain aborted without ordering it (not in the abort history) had no effect either.
            let noEffect: Bool
            switch error as? ChainBFTError {
            case .aborted(_, inAbortHistory: false)?, .instancesExhausted(_, inAbortHistory: false)?: noEffect = true
            default: noEffect = false
            }
            if settings.record && isWrite && !noEffect {
                result.events.append(RecordedOperation(client: id, input: .put(key, value), output: nil,
                                                       invokeNanos: invoke, returnNanos: nil))
            }
            // This instance is over (abort) or unreachable (timeout): with no next instance yet, the worker stops.
            return result
        }
    }
    return result
}

/// The `ringcast-kv serve --protocol chain` children of the chain bench.
final class ChainSpawnedCluster: @unchecked Sendable {
    private let lock = NSLock()
    private var children: [SpawnedCluster.Child] = []
    private(set) var endpoints: [ChainEndpoint] = []

    static func start(replicas: Int, directory: String, keys: String,
                      byzantineHeadAfterMillis: UInt64? = nil) throws -> ChainSpawnedCluster {
        let cluster = ChainSpawnedCluster()
        guard let ports = LocalPorts.free(count: replicas, pool: .tools) else {
            throw ValidationError("found fewer than \(replicas) free loopback ports in \(LocalPorts.Pool.tools.range)")
        }
        cluster.endpoints = ports.map { ChainEndpoint(host: "127.0.0.1", port: $0) }
        let members = cluster.endpoints.map(\.description).joined(separator: ",")
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        do {
            for id in 0..<replicas {
                let child = try SpawnedCluster.spawn(
                    executable: executable,
                    arguments: ["serve", "--protocol", "chain", "--id", "\(id)", "--members", members, "--keys", keys]
                        + (id == 0 ? byzantineHeadAfterMillis.map { ["--byzantine-after-ms", "\($0)"] } ?? [] : []),
                    stdoutPath: "\(directory)/replica\(id).out", stderrPath: "\(directory)/replica\(id).err")
                cluster.lock.withLock { cluster.children.append(child) }
            }
            try cluster.waitReady(timeoutSeconds: 20)
        } catch {
            cluster.stop()
            throw error
        }
        return cluster
    }

    private func waitReady(timeoutSeconds: Double) throws {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        for child in lock.withLock({ children }) {
            while true {
                let text = (try? String(contentsOfFile: child.stdoutPath, encoding: .utf8)) ?? ""
                if text.contains("ready client_port=") { break }
                var status: Int32 = 0
                if waitpid(child.pid, &status, WNOHANG) == child.pid {
                    let stderr = (try? String(contentsOfFile: child.stderrPath, encoding: .utf8)) ?? ""
                    throw ValidationError("a chain replica exited before it was ready:\n\(stderr.suffix(2000))")
                }
                guard Date() < deadline else { throw ValidationError("a chain replica was not ready within \(timeoutSeconds) s") }
                usleep(20_000)
            }
        }
    }

    func kill(_ index: Int) {
        let child: SpawnedCluster.Child? = lock.withLock { index < children.count ? children[index] : nil }
        if let child {
            Foundation.kill(-child.pid, SIGKILL)
            FileHandle.standardError.write(Data("killed chain replica \(index) (pid \(child.pid))\n".utf8))
        }
    }

    /// SIGTERM to every replica, then each one's final line: executed requests and state digest (nil: none printed,
    /// e.g. killed).
    func stopAndCollect() -> [(executed: UInt64?, digest: UInt64)] {
        let all = lock.withLock { children }
        stop()
        return all.map { child in
            let text = (try? String(contentsOfFile: child.stdoutPath, encoding: .utf8)) ?? ""
            guard let line = text.split(separator: "\n").last(where: { $0.hasPrefix("stopped ") }) else { return (nil, 0) }
            var fields: [String: String] = [:]
            for pair in line.split(separator: " ") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
            }
            return (fields["executed"].flatMap { UInt64($0) }, fields["state_digest"].flatMap { UInt64($0, radix: 16) } ?? 0)
        }
    }

    func stop() {
        let all: [SpawnedCluster.Child] = lock.withLock {
            defer { children = [] }
            return children
        }
        for child in all { Foundation.kill(-child.pid, SIGTERM) }
        let deadline = Date().addingTimeInterval(3)
        var live = all
        while !live.isEmpty && Date() < deadline {
            live = live.filter { child in
                var status: Int32 = 0
                return waitpid(child.pid, &status, WNOHANG) == 0
            }
            if !live.isEmpty { usleep(20_000) }
        }
        for child in live {
            Foundation.kill(-child.pid, SIGKILL)
            var status: Int32 = 0
            waitpid(child.pid, &status, 0)
        }
    }
}

