import ArgumentParser
import Dispatch
import Foundation
import Logging
import RingCast
import RingCastSMR

typealias KVClient = SMRClient<KVCommand, KVQuery, KVResult>

/// `ringcast-kv`: a replicated key-value service on RingCastSMR, the example to copy.
@main
struct KVCommandLine: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ringcast-kv",
        abstract: "A replicated key-value service on a RingCast group: serve a replica, talk to one, benchmark.",
        discussion: """
        Every replica takes writes (LCR's delivery is uniform: no leader). Clients connect to any replica over TCP \
        and fail over to the next one with the same session: a retried write is applied once.

        Three replicas on one host:
          ringcast-kv serve --id 0 --members 127.0.0.1:7000,127.0.0.1:7010,127.0.0.1:7020 --client-port 7100 &
          ringcast-kv serve --id 1 --members … --client-port 7101 &
          ringcast-kv serve --id 2 --members … --client-port 7102 &
          ringcast-kv put --replicas 127.0.0.1:7100,127.0.0.1:7101 greeting hello
          ringcast-kv get --replicas 127.0.0.1:7101 greeting
        """,
        subcommands: [Serve.self, Put.self, Get.self, Delete.self, CompareAndSwap.self, Increment.self, Bench.self, JoinBench.self, BenchDriver.self, BenchProbe.self]
    )
}

/// Parses `host:port,host:port`.
func parseAddresses(_ text: String, _ flag: String) throws -> [Address] {
    let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    guard !items.isEmpty else { throw ValidationError("\(flag) lists no address") }
    return try items.map { item in
        do { return try Address(item) } catch { throw ValidationError("\(flag): \(error)") }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one replica (a group member with a client port) until SIGTERM or SIGINT.",
        discussion: """
        Prints `ready client_port=PORT` on stdout once the client port listens. The control plane of member i \
        listens on its data port + 1, so leave that port free too. A member not in --view joins the running group \
        and receives its state (session table and store) from a member before its first delivery, streamed in \
        chunks over that member's client port: on several hosts, give --client-host an address the other replicas \
        reach (0.0.0.0 advertises the --members address of this replica).
        """)

    @Option(help: "This replica's node id (its index in --members).")
    var id: UInt32
    @Option(help: ArgumentHelp("Every member's ring (data) address, in node-id order.", valueName: "host:port,…"))
    var members: String
    @Option(help: ArgumentHelp("The founding view's node ids (default: every member).", valueName: "id,…"))
    var view: String?
    @Option(help: ArgumentHelp("""
        Bump it each time this id comes back after the group excluded it (its log says so): it then rejoins as a new \
        member and receives the group's state. Give it a --view that does not list this id, so that it joins.
        """, valueName: "n"))
    var incarnation: UInt32 = 0
    @Option(name: .customLong("client-host"), help: "Where clients connect (an IPv4 address of this host).")
    var clientHost = "127.0.0.1"
    @Option(name: .customLong("client-port"), help: "The client port (0: any free one; see the ready line).")
    var clientPort: UInt16 = 0
    @Option(name: .customLong("clients-max"), help: "Connected clients at most.")
    var clientsMax = 256
    @Option(name: .customLong("sessions-max"), help: "Open client sessions at most (the same on every replica).")
    var sessionsMax = 4096
    @Option(name: .customLong("session-timeout"), help: ArgumentHelp("A session unused this long (ordered time) expires.", valueName: "seconds"))
    var sessionTimeout = 600
    @Option(help: ArgumentHelp("View agreement: quorum (default) or perfect.", valueName: "quorum|perfect"))
    var mode = "quorum"
    @Option(name: .customLong("suspect-ms"), help: "A member silent this long is suspected.")
    var suspectMillis = 200
    @Option(name: .customLong("plant-bug"), help: ArgumentHelp("Fault injection for the checker: stale-read answers linearizable reads locally without the barrier.", valueName: "stale-read"))
    var plantBug: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"
    @Option(name: .customLong("suffix-mib"), help: "Deliveries queued while a state transfer holds the state, MiB at most (then the ring waits).")
    var suffixMiB = 32
    @Option(name: .customLong("snapshot-chunk-kib"), help: "Snapshot chunk size when this replica provides the state, KiB (≤ 1024).")
    var snapshotChunkKiB = 1024
    @Option(name: .customLong("snapshot-rate-mib"), help: "When this replica provides the state: stream it at most this many MiB/s (0: unpaced).")
    var snapshotRateMiB = 0
    @Option(name: .customLong("snapshot-nice"), help: "Nice value (0...19, SCHED_BATCH on Linux) of the state-transfer threads: the provider's stream, the joiner's restore.")
    var snapshotNice = 10
    @Flag(name: .customLong("snapshot-idle"), inversion: .prefixedNo, help: "A learner restores at SCHED_IDLE (only on CPU nothing else wants) while it progresses at ≥ 16 MiB/s, then at SCHED_BATCH with --snapshot-nice; only where this process may leave SCHED_IDLE again (RLIMIT_NICE or CAP_SYS_NICE), else SCHED_BATCH throughout (--no-snapshot-idle: SCHED_BATCH throughout; see Replica.Options.snapshotThreadIdle for the trade-off).")
    var snapshotIdle = true
    @Option(name: .customLong("learn-from"), help: ArgumentHelp("A joiner first catches up as a learner from these replicas' client ports (tried in order), then joins the ring.", valueName: "host:port,…"))
    var learnFrom: String?
    @Option(name: .customLong("learner-feed-mib"), help: "A provider drops a learner whose feed queue exceeds this many MiB.")
    var learnerFeedMiB = 16
    @Option(name: .customLong("learner-lag"), help: "A learner joins the ring once it is at most this many log entries behind its provider.")
    var learnerLag = 4_096
    @Option(name: .customLong("work-dir"), help: ArgumentHelp("A directory for temporary files: a learner spills the feed backlog of its restore there (one file, unlinked at once; without it the backlog stays in memory, at most --suffix-mib, and the learner is not paced).", valueName: "dir"))
    var workDirectory: String?
    @Option(name: .customLong("learner-rate-mib"), help: "A learner with --work-dir reads its provider's copy at most this many MiB/s (0: unpaced).")
    var learnerRateMiB = 48
    @Option(name: .customLong("learner-spill-mib"), help: "A learner's spilled feed backlog at most, MiB (beyond: the attempt fails).")
    var learnerSpillMiB = 4096
    @Option(name: .customLong("ring-window-kib"), help: ArgumentHelp("The ring's byte window per member, KiB: the most the adaptive window grows to. The ring's receive buffer is 8 × members × (window + a frame), all of it resident once traffic wrapped around it: 256 KiB keeps it near 11 MiB for 4 members (1 MiB, the library's default, costs 35 MiB) and is several times what the adaptive window used in the kv benchmarks.", valueName: "KiB"))
    var ringWindowKiB = 256
    @OptionGroup var links: ServeSecurityFlags
    @Option(name: .customLong("protocol"), help: ArgumentHelp("lcr (crash-tolerant, default) or chain (Chain BFT: 3f+1 members in chain order, clients connect to the member ports).", valueName: "lcr|chain"))
    var protocolName = "lcr"
    @Option(help: ArgumentHelp("--protocol chain: the directory of key files (ringcast-keys chain --out DIR).", valueName: "dir"))
    var keys: String?
    @Option(name: .customLong("batch-count"), help: "--protocol chain: requests per batch at the head at most.")
    var batchCount: UInt32 = 64
    @Option(name: .customLong("byzantine-after-ms"), help: ArgumentHelp("--protocol chain, fault injection for tests and the bench: this many ms after start, this replica's outgoing batches of instance 1 carry forged ordering MACs (a transient Byzantine replica: its successor stops, clients panic and switch to instance 2, where it behaves).", valueName: "ms"))
    var byzantineAfterMillis: UInt64?

    func validate() throws {
        guard ["lcr", "chain"].contains(protocolName) else { throw ValidationError("--protocol is lcr or chain") }
        if protocolName == "chain" && links.clusterKey != nil {
            throw ValidationError("--cluster-key is for --protocol lcr: Chain authenticates every message with the keys of --keys")
        }
        _ = try links.security()
        guard suffixMiB >= 1, (1...1024).contains(snapshotChunkKiB), snapshotRateMiB >= 0, (0...19).contains(snapshotNice) else {
            throw ValidationError("--suffix-mib ≥ 1, --snapshot-chunk-kib 1...1024, --snapshot-rate-mib ≥ 0, --snapshot-nice 0...19")
        }
        if let plantBug, plantBug != "stale-read" { throw ValidationError("--plant-bug knows only stale-read") }
        guard (16...(1 << 20)).contains(ringWindowKiB) else { throw ValidationError("--ring-window-kib is 16...1048576") }
        guard ["quorum", "perfect"].contains(mode) else { throw ValidationError("--mode is quorum or perfect") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        guard (1...86_400).contains(sessionTimeout) else { throw ValidationError("--session-timeout is 1...86400") }
    }

    func run() async throws {
        if protocolName == "chain" {
            return try await ChainServe.run(id: id, members: members, keys: keys, batchCount: batchCount,
                                            clientsMax: UInt32(clientsMax), byzantineAfterMillis: byzantineAfterMillis)
        }
        let addresses = try parseAddresses(members, "--members")
        var map: [UInt32: Address] = [:]
        for (index, address) in addresses.enumerated() { map[UInt32(index)] = address }
        let initialView = try view.map { text in
            try text.split(separator: ",").map { item in
                guard let id = UInt32(item.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("--view: \(item)") }
                return id
            }
        } ?? map.keys.sorted()
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        var configuration = Group.Configuration(me: id, addresses: map, initialView: initialView)
        configuration.incarnation = incarnation
        configuration.mode = mode == "perfect" ? .perfect : .quorum
        configuration.suspectMillis = suspectMillis
        configuration.limits.windowBytes = ringWindowKiB << 10
        configuration.name = links.clusterName
        configuration.security = try links.security()
        configuration.logger.logLevel = Logger.Level(rawValue: logLevel)!
        var options = Replica<KVStore>.Options(clientHost: clientHost, clientPort: clientPort)
        options.clientsMax = clientsMax
        options.sessions = SessionTable.Limits(sessionsMax: sessionsMax, windowMax: 128,
                                               timeoutMillis: UInt64(sessionTimeout) * 1000)
        options.plantStaleReadBug = plantBug == "stale-read"
        options.suffixBytesMax = suffixMiB << 20
        options.snapshotBytesPerSecondMax = max(0, snapshotRateMiB) << 20
        options.snapshotThreadNice = snapshotNice
        options.snapshotThreadIdle = snapshotIdle
        if let learnFrom { options.learnFrom = try parseAddresses(learnFrom, "--learn-from") }
        options.learnerFeedBytesMax = max(1, learnerFeedMiB) << 20
        options.learnerLagEntriesMax = max(0, learnerLag)
        options.workDirectory = workDirectory
        options.learnerBytesPerSecondMax = max(0, learnerRateMiB) << 20
        options.learnerSpillBytesMax = max(0, learnerSpillMiB) << 20
        // A chunk frame (chunk + 16 bytes of framing) must fit the client frame limit.
        options.snapshotChunkBytes = min(snapshotChunkKiB << 10, options.frameBytesMax - 16)
        options.logger.logLevel = Logger.Level(rawValue: logLevel)!
        let replica = try Replica(configuration: configuration, machine: KVStore(), options: options)
        try replica.start()
        FileHandle.standardOutput.write(Data("ready client_port=\(replica.clientPort) id=\(id)\n".utf8))
        // A joiner reports when its state arrived and when it caught up (join-bench reads these lines).
        let watcher = initialView.contains(id) ? nil : Task {
            var restored = false
            var learned = false
            var joined = false
            while !Task.isCancelled {
                let statistics = replica.statistics
                // A learner: its copy restored (phase 1), its group member started (phase 2).
                if !learned && statistics.learnerRestores >= 1 {
                    learned = true
                    FileHandle.standardOutput.write(Data("learner_restored unix_ms=\(unixMillisNow()) applied_index=\(statistics.appliedIndex)\n".utf8))
                }
                if !joined && statistics.learnerJoins >= 1 {
                    joined = true
                    FileHandle.standardOutput.write(Data("learner_joining unix_ms=\(unixMillisNow()) applied_index=\(statistics.appliedIndex)\n".utf8))
                }
                if !restored && statistics.snapshotsRestored >= 1 {
                    restored = true
                    FileHandle.standardOutput.write(Data("state_restored unix_ms=\(unixMillisNow()) bytes_applied_index=\(statistics.appliedIndex)\n".utf8))
                }
                if restored && !replica.isTransferring {
                    FileHandle.standardOutput.write(Data("caught_up unix_ms=\(unixMillisNow()) applied_index=\(replica.appliedIndex)\n".utf8))
                    return
                }
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
        await waitForTermination()
        watcher?.cancel()
        replica.shutdown()
        let statistics = replica.statistics
        print("stopped applied_index=\(statistics.appliedIndex) commands=\(statistics.commandsApplied) "
            + "duplicates=\(statistics.duplicates) malformed_client_frames=\(statistics.clientFramesMalformed)")
    }
}

/// CLOCK_REALTIME, milliseconds (the joiner's progress lines, compared by join-bench on the same host).
func unixMillisNow() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
}

/// Returns on SIGTERM or SIGINT.
func waitForTermination() async {
    signal(SIGTERM, SIG_IGN)
    signal(SIGINT, SIG_IGN)
    let queue = DispatchQueue(label: "ringcast-kv.signals")
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let resumed = ResumeOnce(continuation)
        for number in [SIGTERM, SIGINT] {
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { resumed.resume() }
            source.resume()
            resumed.keep(source)
        }
    }
}

final class ResumeOnce: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<Void, Never>?
    private var sources: [any DispatchSourceSignal] = []
    init(_ continuation: CheckedContinuation<Void, Never>) { self.continuation = continuation }
    func keep(_ source: any DispatchSourceSignal) { lock.withLock { sources.append(source) } }
    func resume() {
        let continuation = lock.withLock { () -> CheckedContinuation<Void, Never>? in
            defer { self.continuation = nil }
            return self.continuation
        }
        continuation?.resume()
    }
}

/// What the client commands share.
struct ClientOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Replicas' client addresses (the client fails over in this order).", valueName: "host:port,…"))
    var replicas = "127.0.0.1:7100"
    @Option(help: ArgumentHelp("Give up after this long.", valueName: "ms"))
    var timeout = 5_000
    @Option(name: .customLong("protocol"), help: ArgumentHelp("lcr (default) or chain.", valueName: "lcr|chain"))
    var protocolName = "lcr"
    @Option(help: ArgumentHelp("--protocol chain: the key directory (this client's client-<id>.chainkey).", valueName: "dir"))
    var keys: String?
    @Option(name: .customLong("client-id"), help: "--protocol chain: this client's id (its key file).")
    var clientID: UInt32 = 0
    @OptionGroup var links: ClientSecurityFlags

    func validate() throws { _ = try links.security() }

    func connect() async throws -> KVClient {
        var options = KVClient.Options(replicas: try parseAddresses(replicas, "--replicas"))
        options.timeoutMillis = timeout
        options.security = try links.security()
        options.clusterName = links.clusterName
        return try await KVClient.connect(options)
    }
}

func describe(_ result: KVResult) -> String {
    switch result {
    case .ok: "OK"
    case let .value(value?): String(decoding: value, as: UTF8.self)
    case .value(nil): "(absent)"
    case let .deleted(existed): existed ? "deleted" : "(absent)"
    case let .swapped(swapped): swapped ? "swapped" : "not swapped"
    case let .counter(value): "\(value)"
    case .notACounter: "error: the value is not an 8-byte counter"
    }
}

struct Put: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Set KEY to VALUE.")
    @OptionGroup var client: ClientOptions
    @Argument var key: String
    @Argument var value: String
    func run() async throws {
        if let chain = try client.chain() {
            defer { chain.close() }
            print(describe(try await chain.submit(.put(key: Array(key.utf8), value: Array(value.utf8)))))
            return
        }
        let session = try await client.connect()
        defer { session.close() }
        print(describe(try await session.submit(.put(key: Array(key.utf8), value: Array(value.utf8)))))
    }
}

struct Get: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print KEY's value.")
    @OptionGroup var client: ClientOptions
    @Option(help: ArgumentHelp("linearizable (default), sequential or stale.", valueName: "mode"))
    var consistency = "linearizable"
    @Argument var key: String
    func validate() throws {
        guard ["linearizable", "sequential", "stale"].contains(consistency) else {
            throw ValidationError("--consistency is linearizable, sequential or stale")
        }
    }
    func run() async throws {
        if let chain = try client.chain() {
            defer { chain.close() }
            print(describe(try await chain.read(KVQuery(key: Array(key.utf8)))))
            return
        }
        let mode: ReadConsistency = consistency == "stale" ? .stale : consistency == "sequential" ? .sequential : .linearizable
        let session = try await client.connect()
        defer { session.close() }
        print(describe(try await session.read(KVQuery(key: Array(key.utf8)), consistency: mode)))
    }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "del", abstract: "Delete KEY.")
    @OptionGroup var client: ClientOptions
    @Argument var key: String
    func run() async throws {
        if let chain = try client.chain() {
            defer { chain.close() }
            print(describe(try await chain.submit(.delete(key: Array(key.utf8)))))
            return
        }
        let session = try await client.connect()
        defer { session.close() }
        print(describe(try await session.submit(.delete(key: Array(key.utf8)))))
    }
}

struct CompareAndSwap: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cas", abstract: "Set KEY to NEW if it holds --expected (or is absent with --absent).")
    @OptionGroup var client: ClientOptions
    @Option var expected: String?
    @Flag var absent = false
    @Argument var key: String
    @Argument var new: String
    func validate() throws {
        guard (expected == nil) == absent else { throw ValidationError("give exactly one of --expected and --absent") }
    }
    func run() async throws {
        if let chain = try client.chain() {
            defer { chain.close() }
            print(describe(try await chain.submit(.cas(key: Array(key.utf8), expected: expected.map { Array($0.utf8) }, new: Array(new.utf8)))))
            return
        }
        let session = try await client.connect()
        defer { session.close() }
        print(describe(try await session.submit(.cas(key: Array(key.utf8), expected: expected.map { Array($0.utf8) },
                                                      new: Array(new.utf8)))))
    }
}

struct Increment: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "incr", abstract: "Add DELTA (default 1) to the counter at KEY.")
    @OptionGroup var client: ClientOptions
    @Argument var key: String
    @Argument var delta: Int64 = 1
    func run() async throws {
        if let chain = try client.chain() {
            defer { chain.close() }
            print(describe(try await chain.submit(.incr(key: Array(key.utf8), delta: delta))))
            return
        }
        let session = try await client.connect()
        defer { session.close() }
        print(describe(try await session.submit(.incr(key: Array(key.utf8), delta: delta))))
    }
}
