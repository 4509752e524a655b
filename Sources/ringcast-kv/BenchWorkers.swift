import Foundation
import Histogram
import RingCast
import RingCastSMR
import Synchronization

// The bench's closed-loop workers and what they share: the workload's draws, the outcome recording, the two client
// APIs they run on (completions by default, `--client-api async`).

struct WorkerSettings: Sendable {
    /// The incr workload's counter `index` of `count` ("counter" when there is one).
    static func counterKey(_ index: Int, of count: Int) -> [UInt8] {
        count == 1 ? Array("counter".utf8) : Array("counter\(index)".utf8)
    }
    let incrementOnly: Bool
    let counters: Int
    let writesPercent: Int
    let valueSize: Int
    let keys: Int
    let endNanos: UInt64
    let record: Bool
    /// The workers use the client's completions (default) or its async calls, one task per worker (`--client-api`).
    var completions = true

    init(writesPercent: Int, valueSize: Int, keys: Int, endNanos: UInt64, record: Bool, incrementOnly: Bool,
         counters: Int = 1) {
        self.counters = counters
        self.writesPercent = writesPercent
        self.valueSize = valueSize
        self.keys = keys
        self.endNanos = endNanos
        self.record = record
        self.incrementOnly = incrementOnly
    }
}

final class ProgressCounter: Sendable {
    private let done = Atomic<Int>(0)
    private let failed = Atomic<Int>(0)
    func add(ok: Bool) {
        if ok { done.add(1, ordering: .relaxed) } else { failed.add(1, ordering: .relaxed) }
    }
    var count: Int { done.load(ordering: .relaxed) }
    private let noted = Atomic<Int>(0)
    /// Prints the first few failures (why ops fail matters more than how many).
    func note(_ error: any Error) {
        guard noted.add(1, ordering: .relaxed).newValue <= 5 else { return }
        FileHandle.standardError.write(Data("request failed: \(error)\n".utf8))
    }
    var failures: Int { failed.load(ordering: .relaxed) }
}

/// One operation of the history, as the bench saw it (converted to `KVEvent` for the checker).
struct RecordedOperation: Sendable {
    enum Input: Sendable { case put([UInt8], [UInt8]), get([UInt8]), incr([UInt8], Int64) }
    let client: Int
    let input: Input
    let output: KVResult?
    let invokeNanos: UInt64
    let returnNanos: UInt64?
}

struct WorkerResult: Sendable {
    var puts = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var gets = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var incrs = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var failures = 0
    var incrementsAcknowledged = 0
    var incrementsInDoubt = 0
    var events: [RecordedOperation] = []
}

func monotonicNow() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// SplitMix64: the workers' deterministic choice of operations and values.
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// `clients` sessions (global numbers `clientOffset…`), each with `depth` closed-loop workers, against `addresses`
/// (session c prefers replica c mod R and fails over round-robin); returns when every worker is done.
///
/// The workers use the client's non-waiting calls (``SMRClient/submit(_:completion:)``): a reply's completion,
/// on the session's reader thread, records it and issues the worker's next request, so one batch of replies
/// leads to one `send` of the next requests and no task resumes per operation (profiled: with one task per
/// worker, the resumptions and their thread hand-offs were most of the clients' CPU per operation).
func runSessions(addresses: [Address], clients: Int, clientOffset: Int, depth: Int, timeoutMillis: Int,
                 settings: WorkerSettings, progress: ProgressCounter) async throws -> [WorkerResult] {
    let keyNames = KeyNames(count: settings.keys)
    return try await withThrowingTaskGroup(of: [WorkerResult].self) { group in
        for local in 0..<clients {
            let client = clientOffset + local
            group.addTask {
                var options = KVClient.Options(replicas: addresses)
                options.preferred = client % addresses.count
                options.windowMax = depth
                options.timeoutMillis = timeoutMillis
                let session = try await KVClient.connect(options)
                defer { session.close() }
                if !settings.completions {
                    return await withTaskGroup(of: WorkerResult.self) { workers in
                        for lane in 0..<depth {
                            workers.addTask {
                                await runAsyncWorker(id: client * depth + lane, session: session, settings: settings,
                                                     keys: keyNames, progress: progress)
                            }
                        }
                        var all: [WorkerResult] = []
                        for await result in workers { all.append(result) }
                        return all
                    }
                }
                let finished = LoopsFinished(count: depth)
                let latencies = SessionLatencies()
                let workers = (0..<depth).map { lane in
                    LoopWorker(id: client * depth + lane, session: session, settings: settings, keys: keyNames,
                               progress: progress, finished: finished, latencies: latencies)
                }
                for worker in workers { worker.next() }
                await finished.wait()
                // The workers' counters and histories, and the session's latencies (its workers' histograms are
                // empty), added up by the caller.
                return workers.map(\.result) + [latencies.result]
            }
        }
        var all: [WorkerResult] = []
        for try await some in group { all += some }
        return all
    }
}

/// The keys' bytes ("k0", "k1", …), made once for all workers (no string per operation) up to 65 536 keys.
struct KeyNames: Sendable {
    let count: Int
    private let names: [[UInt8]]

    init(count: Int) {
        self.count = count
        names = count <= 65_536 ? (0..<count).map { Array("k\($0)".utf8) } : []
    }

    subscript(index: Int) -> [UInt8] { names.isEmpty ? Array("k\(index)".utf8) : names[index] }
}

/// Counts a session's workers down; ``wait()`` returns once all of them finished.
final class LoopsFinished: Sendable {
    private let state: Mutex<(remaining: Int, waiter: CheckedContinuation<Void, Never>?)>

    init(count: Int) { state = Mutex((count, nil)) }

    func finishOne() {
        let waiter: CheckedContinuation<Void, Never>? = state.withLock { state in
            state.remaining -= 1
            precondition(state.remaining >= 0, "a worker finished twice")
            guard state.remaining == 0 else { return nil }
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done: Bool = state.withLock { state in
                guard state.remaining > 0 else { return true }
                state.waiter = continuation
                return false
            }
            if done { continuation.resume() }
        }
    }
}

/// One operation of the closed-loop workload.
enum BenchOperation {
    case incr(key: [UInt8])
    case put(key: [UInt8], value: [UInt8])
    case get(key: [UInt8])

    var recorded: RecordedOperation.Input {
        switch self {
        case let .incr(key): .incr(key, 1)
        case let .put(key, value): .put(key, value)
        case let .get(key): .get(key)
        }
    }
}

/// What a worker does next: the same deterministic draws whichever client API runs it (`--client-api`).
struct OperationSource {
    let id: Int
    let settings: WorkerSettings
    let keys: KeyNames
    private var random: SplitMix64
    private var value: [UInt8]
    private var sequence: UInt64 = 0

    init(id: Int, settings: WorkerSettings, keys: KeyNames) {
        self.id = id
        self.settings = settings
        self.keys = keys
        random = SplitMix64(state: UInt64(id) &* 0x1234_5678_9ABC_DEF1 &+ 1)
        value = [UInt8](repeating: 0, count: settings.valueSize)
    }

    mutating func next() -> BenchOperation {
        if settings.incrementOnly {
            return .incr(key: WorkerSettings.counterKey(Int(random.next() % UInt64(settings.counters)),
                                                        of: settings.counters))
        }
        let key = keys[Int(random.next() % UInt64(settings.keys))]
        guard Int(random.next() % 100) < settings.writesPercent else { return .get(key: key) }
        // A value unique per write (worker id and sequence up front), so the checker can tell writes apart.
        sequence += 1
        withUnsafeBytes(of: (UInt64(id).littleEndian, sequence.littleEndian)) { raw in
            for index in 0..<min(16, value.count) { value[index] = raw[index] }
        }
        return .put(key: key, value: value)
    }
}

/// The latency histograms of one session's workers, shared (one lock per record). Profiled: with three histograms
/// per worker (256 workers × ~128 KiB each at 3 significant digits up to 60 s), every record missed the cache, and
/// the bench's recording was a sixteenth of the clients' CPU; a session's workers record into one set instead.
final class SessionLatencies: Sendable {
    private let histograms = Mutex(WorkerResult())

    func record(_ operation: BenchOperation, micros: UInt64) {
        histograms.withLock { result in
            switch operation {
            case .incr: _ = result.incrs.record(micros)
            case .put: _ = result.puts.record(micros)
            case .get: _ = result.gets.record(micros)
            }
        }
    }

    /// The histograms alone (no counters, no events), to add to the workers' results.
    var result: WorkerResult { histograms.withLock { $0 } }
}

extension WorkerResult {
    /// Records one operation's outcome: latency (in `latencies` when given, else in this result's histograms),
    /// counters, progress and (`recording`) the history. Returns false when the worker must stop: an in-doubt write
    /// leaves its recorded history open, and a closed loop must not invoke again. A failed read has no effect and is
    /// left out of the history.
    mutating func record(_ operation: BenchOperation, client: Int, invoke: UInt64, recording: Bool,
                         _ outcome: Result<KVResult, SMRClientError>, progress: ProgressCounter,
                         latencies: SessionLatencies? = nil) -> Bool {
        switch outcome {
        case let .success(output):
            let done = monotonicNow()
            if let latencies {
                latencies.record(operation, micros: (done - invoke) / 1000)
                if case .incr = operation { incrementsAcknowledged += 1 }
            } else {
                switch operation {
                case .incr:
                    _ = incrs.record((done - invoke) / 1000)
                    incrementsAcknowledged += 1
                case .put: _ = puts.record((done - invoke) / 1000)
                case .get: _ = gets.record((done - invoke) / 1000)
                }
            }
            if recording {
                events.append(RecordedOperation(client: client, input: operation.recorded, output: output,
                                                invokeNanos: invoke, returnNanos: done))
            }
            progress.add(ok: true)
            return true
        case let .failure(error):
            failures += 1
            progress.add(ok: false)
            progress.note(error)
            if case .get = operation { return true }
            if case .incr = operation { incrementsInDoubt += 1 }
            guard recording else { return true }
            events.append(RecordedOperation(client: client, input: operation.recorded, output: nil,
                                            invokeNanos: invoke, returnNanos: nil))
            return false
        }
    }
}

/// A closed loop: one request at a time until the end of the run, each issued by the previous one's completion.
/// Its state is touched by one request's chain at a time (the kick-off, then each completion in turn, ordered by
/// the client's lock), so it needs no lock of its own.
final class LoopWorker: @unchecked Sendable {
    let session: KVClient
    let progress: ProgressCounter
    let finished: LoopsFinished
    let latencies: SessionLatencies
    private(set) var result = WorkerResult()
    private var source: OperationSource

    init(id: Int, session: KVClient, settings: WorkerSettings, keys: KeyNames, progress: ProgressCounter,
         finished: LoopsFinished, latencies: SessionLatencies) {
        self.latencies = latencies
        self.session = session
        self.progress = progress
        self.finished = finished
        source = OperationSource(id: id, settings: settings, keys: keys)
    }

    /// Issues the next request, or finishes once the run is over (or the client refuses: it is closed).
    func next() {
        guard monotonicNow() < source.settings.endNanos else { return finished.finishOne() }
        let operation = source.next()
        let invoke = monotonicNow()
        do {
            switch operation {
            case let .incr(key):
                try session.submit(.incr(key: key, delta: 1)) { [self] in complete(operation, invoke, $0.map(\.output)) }
            case let .put(key, value):
                try session.submit(.put(key: key, value: value)) { [self] in complete(operation, invoke, $0.map(\.output)) }
            case let .get(key):
                try session.read(KVQuery(key: key)) { [self] in complete(operation, invoke, $0) }
            }
        } catch {
            // The client is closed (or its window full, which a closed loop within the window never is).
            result.failures += 1
            progress.add(ok: false)
            progress.note(error)
            finished.finishOne()
        }
    }

    private func complete(_ operation: BenchOperation, _ invoke: UInt64, _ outcome: Result<KVResult, SMRClientError>) {
        guard result.record(operation, client: source.id, invoke: invoke, recording: source.settings.record, outcome,
                            progress: progress, latencies: latencies) else { return finished.finishOne() }
        next()
    }
}

/// A closed loop on the async calls (`--client-api async`): one request at a time until the end of the run, one
/// task per worker, resumed per reply.
func runAsyncWorker(id: Int, session: KVClient, settings: WorkerSettings, keys: KeyNames,
                    progress: ProgressCounter) async -> WorkerResult {
    var source = OperationSource(id: id, settings: settings, keys: keys)
    var result = WorkerResult()
    while monotonicNow() < settings.endNanos {
        let operation = source.next()
        let invoke = monotonicNow()
        let outcome: Result<KVResult, SMRClientError>
        do {
            switch operation {
            case let .incr(key): outcome = .success(try await session.submit(.incr(key: key, delta: 1)))
            case let .put(key, value): outcome = .success(try await session.submit(.put(key: key, value: value)))
            case let .get(key): outcome = .success(try await session.read(KVQuery(key: key)))
            }
        } catch {
            outcome = .failure(error)
        }
        guard result.record(operation, client: id, invoke: invoke, recording: settings.record, outcome,
                            progress: progress) else { break }
    }
    return result
}
