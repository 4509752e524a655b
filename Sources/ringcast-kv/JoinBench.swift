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
    @Option(name: .customLong("suspect-ms"), help: "Passed to the replicas.")
    var suspectMillis = 1_000
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
        guard suffixMiB >= 1, (1...1023).contains(chunkKiB) || chunkKiB == 1024, snapshotRateMiB >= 0, (0...19).contains(snapshotNice) else {
            throw ValidationError("--suffix-mib ≥ 1, --chunk-kib 1...1024, --snapshot-rate-mib ≥ 0, --snapshot-nice 0...19")
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

    func run() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ringcast-kv-join-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let group = try JoinGroup(directory: directory, members: 4, extraArguments: [
            "--suspect-ms", "\(suspectMillis)", "--suffix-mib", "\(suffixMiB)", "--snapshot-chunk-kib", "\(chunkKiB)",
            "--snapshot-rate-mib", "\(snapshotRateMiB)", "--snapshot-nice", "\(snapshotNice)"])
        defer { group.stop() }
        for id in 0..<3 { try group.spawn(id, view: "0,1,2") }
        try group.waitReady([0, 1, 2])
        log("replicas 0, 1, 2 ready; output in \(directory)")

        // 1. Fill.
        let fillStarted = monotonicNow()
        let fillKeys = fillMiB << 20 / fillValueSize
        let stateBytes = try await fill(group, keys: fillKeys)
        let fillSeconds = Double(monotonicNow() - fillStarted) / 1e9
        log(String(format: "filled %d keys, %.1f MiB in %.1f s", fillKeys, Double(stateBytes) / 1_048_576, fillSeconds))

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
        try await Task.sleep(for: .seconds(before))

        // 3. Join.
        let rssBefore = ProcStatus.read(group.pid(0))
        ProcStatus.resetPeak(group.pid(0))
        let joinSecond = await sampler.second
        let joinStartedUnixMillis = unixMillisNow()
        try group.spawn(3, view: "0,1,2")
        try group.waitReady([3])
        let joinerBaseline = ProcStatus.read(group.pid(3))
        ProcStatus.resetPeak(group.pid(3))
        log("replica 3 started (joining)")
        // The joiner prints `state_restored unix_ms=…` and `caught_up unix_ms=…` (a client of it would wait: its
        // session opening is an ordered command, applied after the suffix).
        var restoredNanos: UInt64?
        var caughtUpNanos: UInt64?
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
            caughtUpNanos = stamp("caught_up")
            if caughtUpNanos == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        try await sampler.attach(3, address: group.clientAddress(3), pid: group.pid(3))
        let caughtUpSecond = await sampler.second
        // Peaks over the transfer (join → caught up): VmHWM was reset at the join.
        let providerTransferPeak = ProcStatus.read(group.pid(0))
        let joinerTransferPeak = ProcStatus.read(group.pid(3))
        log(String(format: "replica 3: state restored after %.2f s, suffix applied after %.2f s",
                   Double(restoredNanos ?? 0) / 1e9, Double(caughtUpNanos ?? 0) / 1e9))
        try await Task.sleep(for: .seconds(after))
        box.stop.store(true, ordering: .relaxed)
        await loadTask.value
        sampling.cancel()
        let series = await sampler.series
        let clientOps = await sampler.clientOps
        let providerPeak = ProcStatus.read(group.pid(0))
        let joinerPeak = ProcStatus.read(group.pid(3))
        let providerCounters = await sampler.transferCounters(0)
        let joinerCounters = await sampler.transferCounters(3)

        // 4. Digests, once the load stopped and every replica applied the same index.
        var digests: [(index: UInt64, digest: UInt64)] = []
        for _ in 0..<200 {
            digests = []
            for id in 0..<4 { digests.append(try await sampler.digest(id)) }
            if Set(digests.map(\.index)).count == 1 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        await sampler.close()

        let report = JoinReport(
            fillMiB: fillMiB, fillKeys: fillKeys, stateBytes: stateBytes, fillSeconds: fillSeconds,
            joinSecond: joinSecond, caughtUpSecond: caughtUpSecond, restoredSeconds: restoredNanos.map { Double($0) / 1e9 },
            caughtUpSeconds: caughtUpNanos.map { Double($0) / 1e9 }, snapshotBytes: providerCounters?.bytesSent ?? 0,
            providerSuffixPeak: providerCounters?.suffixPeak ?? 0, providerSuffixWaits: providerCounters?.suffixWaits ?? 0,
            joinerSuffixPeak: joinerCounters?.suffixPeak ?? 0, joinerSuffixWaits: joinerCounters?.suffixWaits ?? 0,
            providerRSSBefore: rssBefore.rss, providerHWM: providerTransferPeak.hwm, providerEndHWM: providerPeak.hwm,
            joinerBaselineRSS: joinerBaseline.rss, joinerHWM: joinerTransferPeak.hwm, joinerEndHWM: joinerPeak.hwm, series: series, clientOps: clientOps, digests: digests, failures: box.failures.load(ordering: .relaxed),
            configuration: "load-clients \(loadClients) × depth \(depth), value-size \(valueSize), writes \(writes) %, "
                + "load-on \(loadOn), suffix \(suffixMiB) MiB, chunk \(chunkKiB) KiB, "
                + "snapshot rate \(snapshotRateMiB == 0 ? "unpaced" : "\(snapshotRateMiB) MiB/s"), transfer threads nice \(snapshotNice)")
        if json { print(report.json()) } else { print(report.text()) }
        if !report.digestsEqual { throw ExitCode(1) }
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
                                    if index % 4096 == 0 { log("fill: \(index) / \(keys)") }
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
    let stop = Atomic<Bool>(false)
}

private func log(_ text: String) { FileHandle.standardError.write(Data("join-bench: \(text)\n".utf8)) }

/// VmRSS and VmHWM of a process, bytes (/proc/PID/status).
struct ProcStatus {
    var rss = 0
    var hwm = 0

    static func read(_ pid: pid_t) -> ProcStatus {
        var result = ProcStatus()
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return result }
        for line in text.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2, let kib = Int(fields[1]) else { continue }
            if fields[0] == "VmRSS:" { result.rss = kib * 1024 }
            if fields[0] == "VmHWM:" { result.hwm = kib * 1024 }
        }
        return result
    }

    /// Resets VmHWM to the current RSS (Linux ≥ 4.0: "5" to clear_refs; the process is our child).
    static func resetPeak(_ pid: pid_t) {
        try? "5".write(toFile: "/proc/\(pid)/clear_refs", atomically: false, encoding: .utf8)
    }
}

/// The four `ringcast-kv serve` children (own process groups, output to files), stopped with SIGTERM then SIGKILL.
final class JoinGroup: @unchecked Sendable {
    private let directory: String
    private let ports: [UInt16]
    private let members: String
    private let extraArguments: [String]
    private var pids: [Int: pid_t] = [:]
    private let lock = NSLock()

    init(directory: String, members count: Int, extraArguments: [String]) throws {
        self.directory = directory
        self.extraArguments = extraArguments
        let ports = JoinGroup.freePorts(count * 3)
        self.ports = ports
        members = (0..<count).map { "127.0.0.1:\(ports[3 * $0])" }.joined(separator: ",")
    }

    /// What replica `id` printed on stdout so far.
    func output(_ id: Int) -> String {
        (try? String(contentsOfFile: "\(directory)/replica\(id).out", encoding: .utf8)) ?? ""
    }

    func clientAddress(_ id: Int) -> Address { try! Address(host: "127.0.0.1", port: ports[3 * id + 2]) }
    func pid(_ id: Int) -> pid_t { lock.withLock { pids[id] ?? 0 } }

    func spawn(_ id: Int, view: String) throws {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let arguments = [executable, "serve", "--id", "\(id)", "--members", members, "--view", view,
                         "--client-port", "\(ports[3 * id + 2])", "--log-level", "info"] + extraArguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "\(directory)/replica\(id).out", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, "\(directory)/replica\(id).err", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid = pid_t()
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard result == 0 else { throw ValidationError("posix_spawn \(executable): errno \(result)") }
        lock.withLock { pids[id] = pid }
    }

    func waitReady(_ ids: [Int], timeoutSeconds: Double = 30) throws {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        for id in ids {
            while true {
                let text = (try? String(contentsOfFile: "\(directory)/replica\(id).out", encoding: .utf8)) ?? ""
                if text.contains("ready client_port=") { break }
                var status: Int32 = 0
                if waitpid(pid(id), &status, WNOHANG) == pid(id) {
                    throw ValidationError("replica \(id) exited before it was ready; see \(directory)/replica\(id).err")
                }
                guard Date() < deadline else { throw ValidationError("replica \(id) was not ready in time") }
                usleep(20_000)
            }
        }
    }

    func stop() {
        let all: [pid_t] = lock.withLock {
            defer { pids = [:] }
            return Array(pids.values)
        }
        for pid in all { kill(-pid, SIGTERM) }
        let deadline = Date().addingTimeInterval(3)
        var live = all
        while !live.isEmpty && Date() < deadline {
            live = live.filter { pid in
                var status: Int32 = 0
                return waitpid(pid, &status, WNOHANG) == 0
            }
            if !live.isEmpty { usleep(20_000) }
        }
        for pid in live {
            kill(-pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
    }

    /// Ports p, p + 1, p + 2 free on loopback (data, control, client), per member.
    private static func freePorts(_ count: Int) -> [UInt16] {
        func bindable(_ port: UInt16) -> Bool {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = port.bigEndian
            return withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
        }
        var result: [UInt16] = []
        var candidate = UInt16(31_000 + Int(getpid() % 9_000) / 3 * 3)
        while result.count < count {
            candidate = candidate >= 59_990 ? 31_000 : candidate + 3
            if bindable(candidate) && bindable(candidate + 1) && bindable(candidate + 2) {
                result += [candidate, candidate + 1, candidate + 2]
            }
        }
        return Array(result.prefix(count))
    }
}

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
            log(line)
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

struct JoinReport {
    var fillMiB: Int
    var fillKeys: Int
    var stateBytes: Int
    var fillSeconds: Double
    var joinSecond: Int
    var caughtUpSecond: Int
    var restoredSeconds: Double?
    var caughtUpSeconds: Double?
    var snapshotBytes: UInt64
    var providerSuffixPeak: UInt64
    var providerSuffixWaits: UInt64
    var joinerSuffixPeak: UInt64
    var joinerSuffixWaits: UInt64
    var providerRSSBefore: Int
    /// VmHWM at the catch-up (the peak over the transfer) and at the end of the run (after --after s of load).
    var providerHWM: Int
    var providerEndHWM: Int
    var joinerBaselineRSS: Int
    var joinerHWM: Int
    var joinerEndHWM: Int
    var series: [Sample]
    /// The load clients' completed requests per second (element i is second i + 1).
    var clientOps: [Int]
    var digests: [(index: UInt64, digest: UInt64)]
    var failures: Int
    var configuration: String

    var digestsEqual: Bool {
        digests.count == 4 && Set(digests.map(\.index)).count == 1 && Set(digests.map(\.digest)).count == 1
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
        let phases = phases
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
            + "peak until the end of the run \(mib(providerEndHWM))")
        lines.append("joiner (replica 3): RSS when ready (empty) \(mib(joinerBaselineRSS)), peak over the transfer \(mib(joinerHWM)); "
            + "peak − state \(mib(joinerHWM - stateBytes)), peak − state − RSS when ready \(mib(joinerHWM - stateBytes - joinerBaselineRSS)); "
            + "suffix peak \(mib(Int(joinerSuffixPeak))), waits for room \(joinerSuffixWaits); "
            + "peak until the end of the run \(mib(joinerEndHWM))")
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
        if failures > 0 { lines.append("client request failures: \(failures)") }
        return lines.joined(separator: "\n")
    }

    func json() -> String {
        let phases = phases
        var fields: [(String, JSONValue)] = [
            ("state_bytes", .integer(Int64(stateBytes))), ("fill_keys", .integer(Int64(fillKeys))),
            ("fill_seconds", .number(fillSeconds)), ("snapshot_bytes", .integer(Int64(snapshotBytes))),
            ("restored_seconds", restoredSeconds.map { .number($0) } ?? .null),
            ("caught_up_seconds", caughtUpSeconds.map { .number($0) } ?? .null),
            ("provider_rss_before_join_bytes", .integer(Int64(providerRSSBefore))),
            ("provider_peak_rss_bytes", .integer(Int64(providerHWM))),
            ("provider_peak_minus_state_bytes", .integer(Int64(providerHWM - stateBytes))),
            ("provider_suffix_peak_bytes", .integer(Int64(providerSuffixPeak))),
            ("provider_suffix_waits", .integer(Int64(providerSuffixWaits))),
            ("joiner_suffix_peak_bytes", .integer(Int64(joinerSuffixPeak))),
            ("joiner_suffix_waits", .integer(Int64(joinerSuffixWaits))),
            ("joiner_ready_rss_bytes", .integer(Int64(joinerBaselineRSS))),
            ("joiner_peak_rss_bytes", .integer(Int64(joinerHWM))),
            ("joiner_peak_minus_state_bytes", .integer(Int64(joinerHWM - stateBytes))),
            ("provider_end_peak_rss_bytes", .integer(Int64(providerEndHWM))),
            ("joiner_end_peak_rss_bytes", .integer(Int64(joinerEndHWM))),
            ("digests_equal", .bool(digestsEqual)), ("client_failures", .integer(Int64(failures))),
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
