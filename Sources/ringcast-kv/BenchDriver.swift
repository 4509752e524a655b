import ArgumentParser
import Foundation
import Histogram
import RingCast
import RingCastSMR

/// `ringcast-kv bench-driver` (internal to `bench --lan`): the clients of one emulated client host. Runs the
/// closed-loop sessions against the given replicas from `--start-at` (CLOCK_MONOTONIC, which every namespace of
/// the machine shares) for `--duration`, then writes its histograms, counters and recorded history to `--out`.
/// The lead driver also reads every replica's statistics at the start and the end of the measurement.
struct BenchDriver: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-driver",
        abstract: "Internal to bench --lan: the client sessions of one client host.",
        shouldDisplay: false)

    @Option var replicas: String
    @Option var clients: Int
    @Option(name: .customLong("client-offset")) var clientOffset: Int
    @Option var depth: Int
    @Option var writes: Int
    @Option(name: .customLong("value-size")) var valueSize: Int
    @Option var keys: Int
    @Option var workload: String
    @Option var counters: Int
    @Option(name: .customLong("start-at")) var startAt: UInt64
    @Option var duration: Double
    @Option var timeout: Int
    @Option var out: String
    @Option(name: .customLong("client-api")) var clientAPI = "completions"
    @Flag var record = false
    @Flag var lead = false

    func run() async throws {
        let addresses = try parseAddresses(replicas, "--replicas")
        let endNanos = startAt + UInt64(duration * 1e9)
        var settings = WorkerSettings(writesPercent: writes, valueSize: valueSize, keys: keys, endNanos: endNanos,
                                      record: record, incrementOnly: workload == "incr", counters: counters)
        settings.completions = clientAPI == "completions"
        // The lead's statistics connections: one per replica, opened before the start.
        var connected: [KVClient?] = []
        if lead {
            for address in addresses {
                var options = KVClient.Options(replicas: [address])
                options.timeoutMillis = 2_000
                connected.append(try? await KVClient.connect(options))
            }
        }
        let statsClients = connected
        defer { for client in statsClients { client?.close() } }
        let now = monotonicNow()
        if startAt > now { try await Task.sleep(for: .nanoseconds(Int(startAt - now))) }
        let statsBefore = await Self.statistics(statsClients)
        let cpuBefore = processCPUNanos()
        let progress = ProgressCounter()
        let progressTask = Task {
            var second = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                second += 1
                FileHandle.standardError.write(Data("progress second=\(second) ops=\(progress.count) failed=\(progress.failures)\n".utf8))
            }
        }
        // The end-of-measurement statistics are read when the window closes, not when the last worker returns
        // (a request stuck behind a fault may take up to --timeout longer).
        let statsAfterTask = Task { () -> (cpu: UInt64, stats: [[UInt64]]) in
            let now = monotonicNow()
            if endNanos > now { try? await Task.sleep(for: .nanoseconds(Int(endNanos - now))) }
            return (processCPUNanos(), await Self.statistics(statsClients))
        }
        FileHandle.standardOutput.write(Data("measuring\n".utf8))
        let results = try await runSessions(addresses: addresses, clients: clients, clientOffset: clientOffset,
                                            depth: depth, timeoutMillis: timeout, settings: settings, progress: progress)
        let (cpuAfter, statsAfter) = await statsAfterTask.value
        progressTask.cancel()
        var output = DriverOutput()
        for result in results { output.add(result) }
        output.statsBefore = statsBefore
        output.statsAfter = statsAfter
        output.cpuNanos = cpuAfter &- cpuBefore
        output.seconds = Double(max(monotonicNow(), endNanos) - startAt) / 1e9
        try output.write(to: out, events: results.flatMap(\.events))
        print("done ops=\(output.puts.totalCount + output.gets.totalCount + output.incrs.totalCount) failed=\(output.failures)")
    }

    /// Every replica's statistics (empty where a replica does not answer).
    static func statistics(_ clients: [KVClient?]) async -> [[UInt64]] {
        var all: [[UInt64]] = []
        for client in clients {
            all.append((try? await client?.replicaStatistics()) ?? [])
        }
        return all
    }
}

/// What a driver hands back: histograms and counters (JSON, HdrHistogram is Codable), then the recorded history
/// in the SMR codec (compact: a history holds every value written).
struct DriverOutput: Codable {
    var puts = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var gets = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var incrs = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var failures = 0
    var incrementsAcknowledged = 0
    var incrementsInDoubt = 0
    var statsBefore: [[UInt64]] = []
    var statsAfter: [[UInt64]] = []
    var seconds = 0.0
    /// This driver's process CPU (every thread) over the measurement window.
    var cpuNanos: UInt64 = 0

    mutating func add(_ result: WorkerResult) {
        puts.add(result.puts)
        gets.add(result.gets)
        incrs.add(result.incrs)
        failures += result.failures
        incrementsAcknowledged += result.incrementsAcknowledged
        incrementsInDoubt += result.incrementsInDoubt
    }

    /// The results as one `WorkerResult` (for the report), with `events`.
    func workerResult(events: [RecordedOperation]) -> WorkerResult {
        var result = WorkerResult()
        result.puts = puts
        result.gets = gets
        result.incrs = incrs
        result.failures = failures
        result.incrementsAcknowledged = incrementsAcknowledged
        result.incrementsInDoubt = incrementsInDoubt
        result.events = events
        return result
    }

    static let magic: UInt32 = 0x4B56_4452  // "KVDR"

    func write(to path: String, events: [RecordedOperation]) throws {
        let summary = try JSONEncoder().encode(self)
        var writer = ByteWriter(capacity: summary.count + events.count * (32 + 2 * 16))
        writer.uint32(Self.magic)
        writer.lengthPrefixed(summary)
        writer.uint64(UInt64(events.count))
        for event in events {
            writer.uint32(UInt32(event.client))
            switch event.input {
            case let .put(key, value):
                writer.uint8(1)
                writer.lengthPrefixed(key)
                writer.lengthPrefixed(value)
            case let .get(key):
                writer.uint8(2)
                writer.lengthPrefixed(key)
            case let .incr(key, delta):
                writer.uint8(3)
                writer.lengthPrefixed(key)
                writer.int64(delta)
            }
            writer.bool(event.output != nil)
            event.output?.encode(into: &writer)
            writer.uint64(event.invokeNanos)
            writer.uint64(event.returnNanos ?? UInt64.max)
        }
        guard FileManager.default.createFile(atPath: path, contents: Data(writer.bytes)) else {
            throw ValidationError("cannot write \(path)")
        }
    }

    static func read(from path: String) throws -> (DriverOutput, [RecordedOperation]) {
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
        var reader = ByteReader([UInt8](data))
        do {
            guard try reader.uint32() == magic else { throw ValidationError("\(path) is not a driver output") }
            let output = try JSONDecoder().decode(DriverOutput.self, from: Data(try reader.lengthPrefixed()))
            let count = try reader.uint64()
            var events: [RecordedOperation] = []
            events.reserveCapacity(Int(min(count, 1 << 24)))
            for _ in 0..<count {
                let client = Int(try reader.uint32())
                let input: RecordedOperation.Input
                switch try reader.uint8() {
                case 1: input = .put(try reader.lengthPrefixed(), try reader.lengthPrefixed())
                case 2: input = .get(try reader.lengthPrefixed())
                case 3: input = .incr(try reader.lengthPrefixed(), try reader.int64())
                case let kind: throw ValidationError("\(path): unknown operation kind \(kind)")
                }
                let output = try reader.bool() ? try KVResult(from: &reader) : nil
                let invoke = try reader.uint64()
                let returned = try reader.uint64()
                events.append(RecordedOperation(client: client, input: input, output: output, invokeNanos: invoke,
                                                returnNanos: returned == UInt64.max ? nil : returned))
            }
            return (output, events)
        } catch let error as SMRCodecError {
            throw ValidationError("\(path): \(error)")
        }
    }
}

/// `ringcast-kv bench-probe` (internal to `bench --lan`): after the run, from a client host, the state digests of
/// the given replicas (once they applied the same index) and, with --counter, the incr workload's counter.
/// Prints one JSON line.
struct BenchProbe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-probe",
        abstract: "Internal to bench --lan: digests and the counter after the run.",
        shouldDisplay: false)

    @Option var replicas: String
    @Option var counters: Int?

    func run() async throws {
        let addresses = try parseAddresses(replicas, "--replicas")
        var fields: [String] = []
        if let digests = await compareDigests(addresses) {
            fields.append("\"digests_equal\":\(digests.equal),\"digests_index\":\(digests.index),"
                + "\"digests\":[\(digests.digests.map { "\"\(String(format: "%016llx", $0))\"" }.joined(separator: ","))]")
        }
        if let counters, let value = await readCounter(addresses, counters: counters) { fields.append("\"counter\":\(value)") }
        print("{" + fields.joined(separator: ",") + "}")
    }
}

/// CPU time of this whole process (every thread), nanoseconds.
func processCPUNanos() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}
