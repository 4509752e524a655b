import ArgumentParser
import ChainBFT
import Dispatch
import Foundation
import Histogram
import RingCastChain
import RingCastJSON
import Synchronization

/// `ringcast-bench chain-replica` (internal, started by `ringcast-bench chain --lan`): one Chain replica as its own
/// process on its own emulated host, serving ``ChainBenchMachine``. It prints `ready port=P` once it listens and
/// `linked` once its own links are up; at each instant of `--sample-at` (CLOCK_MONOTONIC nanoseconds, the clock every
/// namespace of the machine shares) one JSON line of its counters; it stops by itself at `--until` (time-bounded).
public struct ChainBenchReplicaCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "chain-replica", abstract: "Internal: one Chain replica of `ringcast-bench chain --lan`.",
        shouldDisplay: false)

    @Option(help: "Faults tolerated: n = 3f+1 replicas.") var f: UInt32 = 1
    @Option(help: "This replica's chain position (0 = head).") var position: UInt32
    @Option(help: "Every replica's host:port, in chain order.") var replicas: String
    @Option(help: "The key directory (ringcast-keys chain).") var keys: String
    @Option(help: "Clients in the key directory.") var clients: Int
    @Option(name: .customLong("request-size")) var requestSize = 8
    @Option(name: .customLong("reply-size")) var replySize = 8
    @Option(name: .customLong("batch-count")) var batchCount: UInt32 = 64
    @Option(name: .customLong("batch-bytes")) var batchBytes: UInt32 = 256 << 10
    @Option(name: .customLong("checkpoint-interval")) var checkpointInterval: UInt32 = 128
    @Option(name: .customLong("sample-at"), help: "Comma-separated CLOCK_MONOTONIC ns at which to print the counters.")
    var sampleAt: String
    @Option(help: "CLOCK_MONOTONIC ns at which the replica stops by itself.") var until: UInt64

    public init() {}

    public func validate() throws {
        guard let endpoints = Self.endpoints(replicas), endpoints.count == Int(3 * f + 1) else {
            throw ValidationError("--replicas needs 3f+1 = \(3 * f + 1) host:port entries")
        }
        guard position < 3 * f + 1 else { throw ValidationError("--position is 0...\(3 * f)") }
        guard Self.instants(sampleAt) != nil else { throw ValidationError("--sample-at: comma-separated nanoseconds") }
    }

    static func endpoints(_ text: String) -> [ChainEndpoint]? {
        let parsed = text.split(separator: ",").map { ChainEndpoint($0) }
        guard !parsed.isEmpty, parsed.allSatisfy({ $0 != nil }) else { return nil }
        return parsed.compactMap { $0 }
    }

    static func instants(_ text: String) -> [UInt64]? {
        let parsed = text.split(separator: ",").map { UInt64($0) }
        guard !parsed.isEmpty, parsed.allSatisfy({ $0 != nil }) else { return nil }
        return parsed.compactMap { $0 }
    }

    public func run() throws {
        let endpoints = Self.endpoints(replicas)!
        let loaded = try ChainKeyDirectory.load(directory: keys, principal: .replica(position))
        guard loaded.f == f else { throw ValidationError("the key file is for f = \(loaded.f), not \(f)") }
        let settings = ChainBenchCommand.replicaSettings(
            f: f, position: position, endpoints: endpoints, clients: clients, batchCount: batchCount,
            batchBytes: batchBytes, checkpointInterval: checkpointInterval, requestSize: requestSize)
        let replica = try ChainReplica(settings: settings, keyRing: loaded.ring, machine: ChainBenchMachine(replyBytes: replySize))
        let port = try replica.start()
        Self.say("ready port=\(port)")
        if replica.waitForLinks(timeoutNanos: 30_000_000_000) { Self.say("linked") }
        for (index, instant) in Self.instants(sampleAt)!.enumerated() {
            sleepUntil(instant)
            Self.say(Self.sample(index: index, replica.statistics).text)
        }
        sleepUntil(until)
        replica.stop()
        let final = replica.statistics
        Self.say(JSONValue.object([("final", .bool(true)), ("executed", .integer(Int64(final.executed))),
                                   ("frames_dropped", .integer(Int64(final.framesDropped))),
                                   ("malformed_frames", .integer(Int64(final.malformedFrames))),
                                   ("stopped", .bool(final.stopped))]).text)
    }

    static func sample(index: Int, _ s: ChainReplica<ChainBenchMachine>.Statistics) -> JSONValue {
        .object([
            ("sample", .integer(Int64(index))), ("nanos", .integer(Int64(chainBenchNow()))),
            ("position", .integer(Int64(s.position))), ("links_up", .bool(s.linksUp)), ("stopped", .bool(s.stopped)),
            ("executed", .integer(Int64(s.executed))),
            ("mac_ops", .integer(Int64(s.macGenerations + s.macVerifications))),
            ("batches_out", .integer(Int64(s.batchesOut))), ("requests_logged", .integer(Int64(s.requestsLogged))),
            ("stable_checkpoint", .integer(Int64(s.stableCheckpoint))),
            ("frames_dropped", .integer(Int64(s.framesDropped))),
            ("payload_copies", .integer(Int64(s.payloadCopies))),
            ("cpu_ns", .integer(Int64(processCPUNanos()))),
        ])
    }

    static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}

/// `ringcast-bench chain-driver` (internal, started by `ringcast-bench chain --lan` on a client host): `--clients`
/// closed-loop ChainClients (ids from `--client-offset`), each with `--depth` requests in flight, from `--start-at`
/// until `--measure-until`; it counts the commits and records the latency of the requests started at or after
/// `--measure-from`, and prints one JSON line (the latency histogram as [µs, count] pairs, so that the parent merges
/// the hosts' histograms exactly).
public struct ChainBenchDriverCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "chain-driver", abstract: "Internal: the clients of one host of `ringcast-bench chain --lan`.",
        shouldDisplay: false)

    @Option(help: "Faults tolerated: n = 3f+1 replicas.") var f: UInt32 = 1
    @Option(help: "Every replica's host:port, in chain order.") var replicas: String
    @Option(help: "The key directory (ringcast-keys chain).") var keys: String
    @Option(help: "Clients in this process.") var clients = 1
    @Option(name: .customLong("client-offset")) var clientOffset = 0
    @Option var depth = 16
    @Option(name: .customLong("request-size")) var requestSize = 8
    @Option(name: .customLong("checkpoint-interval")) var checkpointInterval: UInt32 = 128
    @Option(name: .customLong("start-at")) var startAt: UInt64
    @Option(name: .customLong("measure-from")) var measureFrom: UInt64
    @Option(name: .customLong("measure-until")) var measureUntil: UInt64
    @Option(name: .customLong("timeout-ms")) var timeoutMillis = 10_000
    @Option(help: "callback: ChainClient.submit(_:completion:) closed loops; async: one Task per loop awaiting submit.")
    var submit = "callback"

    public init() {}

    public func validate() throws {
        guard let endpoints = ChainBenchReplicaCommand.endpoints(replicas), endpoints.count == Int(3 * f + 1) else {
            throw ValidationError("--replicas needs 3f+1 = \(3 * f + 1) host:port entries")
        }
        guard clients >= 1, depth >= 1, startAt <= measureFrom, measureFrom < measureUntil else {
            throw ValidationError("--clients, --depth ≥ 1 and --start-at ≤ --measure-from < --measure-until")
        }
    }

    public func run() throws {
        if submit == "async" {
            final class Outcome: @unchecked Sendable {
                var result: Result<String, any Error>?
                let command: ChainBenchDriverCommand
                let done = DispatchSemaphore(value: 0)
                init(_ command: ChainBenchDriverCommand) { self.command = command }
            }
            let outcome = Outcome(self)
            Task {
                do { outcome.result = .success(try await outcome.command.driveAsync()) } catch { outcome.result = .failure(error) }
                outcome.done.signal()
            }
            outcome.done.wait()
            print(try outcome.result!.get())
        } else {
            print(try drive())
        }
    }

    struct Lane: Sendable {
        var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000,
                                          numberOfSignificantValueDigits: .three)
        var commits: UInt64 = 0
        var error: String?
    }

    /// One of a client's `--depth` closed loops: each outcome (delivered on the client's engine thread by
    /// ``ChainClient/submit(_:completion:)``) records the latency and submits the next request from there, so a
    /// request costs no Task, no continuation and no thread switch in the driver (docs/chain-bft.md, "Where the CPU
    /// goes"). The loops of one client share its lane (one engine thread: the lock is never contended).
    /// A client's lane behind its lock (a class: Mutex is noncopyable).
    final class LaneBox: Sendable {
        let lane = Mutex(Lane())
    }

    final class ClosedLoop: Sendable {
        let session: ChainClient
        let op: [UInt8]
        let measureFrom: UInt64
        let measureUntil: UInt64
        let lane: LaneBox
        let done: DispatchSemaphore

        init(session: ChainClient, op: [UInt8], measureFrom: UInt64, measureUntil: UInt64, lane: LaneBox,
             done: DispatchSemaphore) {
            self.session = session; self.op = op; self.measureFrom = measureFrom; self.measureUntil = measureUntil
            self.lane = lane; self.done = done
        }

        func next() {
            let start = chainBenchNow()
            guard start < measureUntil else {
                done.signal()
                return
            }
            session.submit(op) { [self] result in
                let end = chainBenchNow()
                switch result {
                case .success:
                    if start >= measureFrom, end <= measureUntil {
                        lane.lane.withLock { lane in
                            lane.commits += 1
                            _ = lane.histogram.record((end - start) / 1000)
                        }
                    }
                    next()
                case .failure(let error):
                    lane.lane.withLock { lane in if lane.error == nil { lane.error = "\(error)" } }
                    done.signal()
                }
            }
        }
    }

    func startSessions() throws -> [ChainClient] {
        let endpoints = ChainBenchReplicaCommand.endpoints(replicas)!
        var sessions: [ChainClient] = []
        for c in clientOffset..<(clientOffset + clients) {
            let loaded = try ChainKeyDirectory.load(directory: keys, principal: .client(UInt32(c)))
            var settings = ChainClient.Settings(f: f, client: UInt32(c), replicas: endpoints)
            settings.windowMax = depth
            settings.checkpointInterval = checkpointInterval
            settings.timeoutNanos = UInt64(timeoutMillis) * 1_000_000
            let session = try ChainClient(settings: settings, keyRing: loaded.ring)
            do { try session.start(connectTimeoutNanos: 10_000_000_000) } catch {
                session.close()
                for s in sessions { s.close() }
                throw error
            }
            sessions.append(session)
        }
        return sessions
    }

    /// The earlier driver (kept for comparison, `--submit async`): one Task per closed loop, awaiting each submit.
    func driveAsync() async throws -> String {
        let sessions = try startSessions()
        defer { for session in sessions { session.close() } }
        let cpuBefore = processCPUNanos()
        sleepUntil(startAt)
        let op = ChainOperation.command(ChainBenchMachine.Payload(bytes: [UInt8](repeating: 0xa5, count: requestSize)))
        let (measureFrom, measureUntil) = (measureFrom, measureUntil)
        let lanes = await withTaskGroup(of: Lane.self) { group -> [Lane] in
            for session in sessions {
                for _ in 0..<depth {
                    group.addTask {
                        var lane = Lane()
                        while true {
                            let start = chainBenchNow()
                            guard start < measureUntil else { break }
                            do { _ = try await session.submit(op) } catch {
                                lane.error = "\(error)"
                                break
                            }
                            let end = chainBenchNow()
                            if start >= measureFrom, end <= measureUntil {
                                lane.commits += 1
                                _ = lane.histogram.record((end - start) / 1000)
                            }
                        }
                        return lane
                    }
                }
            }
            var all: [Lane] = []
            for await lane in group { all.append(lane) }
            return all
        }
        return report(lanes, cpuBefore: cpuBefore)
    }

    func report(_ collected: [Lane], cpuBefore: UInt64) -> String {
        var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000,
                                          numberOfSignificantValueDigits: .three)
        for lane in collected { histogram.add(lane.histogram) }
        let pairs = histogram.recordedValues().map { JSONValue.array([.integer(Int64($0.value)), .integer(Int64($0.count))]) }
        let errors: [String] = collected.compactMap { $0.error }
        let commits: UInt64 = collected.reduce(0) { $0 + $1.commits }
        return JSONValue.object([
            ("commits", .integer(Int64(commits))),
            ("errors", .integer(Int64(errors.count))), ("first_error", errors.first.map { .string($0) } ?? .null),
            ("cpu_ns", .integer(Int64(processCPUNanos() - cpuBefore))),
            ("latency_us", .array(pairs)),
        ]).text
    }

    func drive() throws -> String {
        let sessions = try startSessions()
        defer { for session in sessions { session.close() } }
        let cpuBefore = processCPUNanos()
        sleepUntil(startAt)
        let op = ChainOperation.command(ChainBenchMachine.Payload(bytes: [UInt8](repeating: 0xa5, count: requestSize)))
        let done = DispatchSemaphore(value: 0)
        let lanes = sessions.map { _ in LaneBox() }
        var loops: [ClosedLoop] = []
        for (session, lane) in zip(sessions, lanes) {
            for _ in 0..<depth {
                loops.append(ClosedLoop(session: session, op: op, measureFrom: measureFrom, measureUntil: measureUntil,
                                        lane: lane, done: done))
            }
        }
        for loop in loops { loop.next() }
        // Every loop ends by itself (the measurement ends, or an error); each request is bounded by the client's timer
        // and abort wait, so this wait is bounded too.
        for _ in loops { done.wait() }
        let collected: [Lane] = lanes.map { box in box.lane.withLock { $0 } }
        return report(collected, cpuBefore: cpuBefore)
    }
}

/// Sleeps until CLOCK_MONOTONIC reaches `instant` (ns); returns at once if it passed.
func sleepUntil(_ instant: UInt64) {
    while true {
        let now = chainBenchNow()
        guard now < instant else { return }
        let left = instant - now
        usleep(UInt32(min(left / 1000, 100_000)))
    }
}

/// This process's user + system CPU time (getrusage), in ns.
func processCPUNanos() -> UInt64 {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    func nanos(_ t: timeval) -> UInt64 { UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_usec) * 1000 }
    return nanos(usage.ru_utime) + nanos(usage.ru_stime)
}
