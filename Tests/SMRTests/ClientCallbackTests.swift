import RingCast
@testable import RingCastSMR
import Synchronization
import Testing

/// ``SMRClient/submit(_:completion:)`` and ``SMRClient/read(_:consistency:completion:)``: every accepted call's
/// completion runs exactly once — with the reply, on a timeout, across a failover — in the order the replica
/// answered; and the client-side bookkeeping the hot path uses (the in-flight command numbers, sampled CPU timing).
@Suite(.serialized) struct ClientCallbackTests {
    /// Counts how many times each request's completion ran, and in which order (completions may run on the reader
    /// thread while the test submits from its own).
    final class Calls: Sendable {
        let counts: Mutex<[Int]>
        let order = Mutex<[Int]>([])
        let outcomes = Mutex<[Int: Result<Int64, SMRClientError>]>([:])
        init(_ count: Int) { counts = Mutex([Int](repeating: 0, count: count)) }

        func completed(_ request: Int, _ outcome: Result<Int64, SMRClientError>) {
            counts.withLock { $0[request] += 1 }
            order.withLock { $0.append(request) }
            outcomes.withLock { $0[request] = outcome }
        }
        var total: Int { counts.withLock { $0.reduce(0, +) } }
    }

    /// A replica that never answers: each completion runs once, with `timeout`, and never again.
    @Test func completions_noReply_eachCompletedOnceWithTimeout() async throws {
        let silent = try SilentReplica()
        defer { silent.stop() }
        var options = CounterClient.Options(replicas: [try Address(host: "127.0.0.1", port: silent.port)])
        options.windowMax = 8
        options.timeoutMillis = 200
        // Opening the session has the same 200 ms: on a loaded machine (CI runs the other suites beside this one)
        // that can pass before the reader thread runs, so the connection is retried; the requests are the subject.
        let client = try await connectRetrying(options)
        defer { client.close() }
        let calls = Calls(5)
        for request in 0..<4 {
            try client.submit(Counter.Add(delta: 1)) { calls.completed(request, $0.map(\.output.value)) }
        }
        try client.read(Counter.Get()) { calls.completed(4, $0.map(\.value)) }
        let deadline = ContinuousClock.now.advanced(by: .seconds(10))
        while calls.total < 5 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        // Longer than another timeout and scan: nothing completes twice.
        try await Task.sleep(for: .milliseconds(500))
        #expect(calls.counts.withLock { $0 } == [1, 1, 1, 1, 1])
        for request in 0..<5 {
            guard case .failure(.timeout)? = calls.outcomes.withLock({ $0[request] }) else {
                Issue.record("request \(request): \(String(describing: calls.outcomes.withLock { $0[request] }))")
                continue
            }
        }
        #expect(client.statistics.timeouts == 5)
        // The window is free again: a timed-out request gave its slot back before its completion ran.
        try client.submit(Counter.Add(delta: 1)) { _ in }
    }

    /// The send task of queued requests never runs (as when an application blocks every thread of the cooperative
    /// pool; in CI, tests shutting replicas down synchronously did): the client's reader thread sends them after one
    /// receive timeout, and their completions come on it. The task is withheld by the client itself rather than by
    /// blocking the pool: on a loaded 2-core runner, blocking the pool from a test timed out for other reasons.
    @Test func sendTaskNeverRuns_readerSendsTheQueuedRequests() async throws {
        // A stand-in replica on threads (a Replica's broadcaster is a task).
        let answering = try SilentReplica(answersCommands: true)
        defer { answering.stop() }
        var options = CounterClient.Options(replicas: [try Address(host: "127.0.0.1", port: answering.port)])
        options.timeoutMillis = testTimeoutMillis
        let client = try await CounterClient.connect(options)
        defer { client.close() }
        // Past the session opening's reply: after handling a receive the reader sends what is queued, so requests
        // queued before it got there would leave that way (seen once in a full test run), not by the fallback under
        // test. An idle wake-up means it is back waiting in `recv`, and the stand-in sends nothing unasked.
        let idle = ContinuousClock.now.advanced(by: .seconds(20))
        while client.statistics.readerIdleWakeUps == 0 && ContinuousClock.now < idle {
            try await Task.sleep(for: .milliseconds(5))
        }
        client.monitor.withLock { client.sendTaskWithheld = true }
        let count = 8
        let calls = Calls(count)
        for request in 0..<count {
            try client.submit(Counter.Add(delta: 1)) { calls.completed(request, $0.map(\.output.value)) }
        }
        let end = ContinuousClock.now.advanced(by: .seconds(20))
        while calls.total < count && ContinuousClock.now < end { try await Task.sleep(for: .milliseconds(5)) }
        let statistics = client.statistics
        #expect(calls.counts.withLock { $0 } == [Int](repeating: 1, count: count),
                "sendsByReader \(statistics.sendsByReader), commands received \(answering.commandsReceived)")
        #expect(statistics.sendsByReader >= 1)
        let values = (0..<count).map { request in (try? calls.outcomes.withLock { $0[request] }?.get()) ?? -1 }
        #expect(Set(values) == Set((1...Int64(count)).map { $0 }))
    }

    /// Pipelined on one connection, the replies (and so the completions) come in submission order: the replica
    /// applies one client's commands in the order it received them, and the outputs of the counter grow with it.
    @Test func completions_pipelinedOnOneConnection_runInSubmissionOrder() async throws {
        let cluster = try CounterCluster(size: 1)
        defer { cluster.shutdownAll() }
        let replica = try cluster.start(0, initialView: [0])
        try await replica.group.waitUntilRunning()
        var options = CounterClient.Options(replicas: try cluster.clientAddresses([0]))
        options.windowMax = 32
        options.timeoutMillis = testTimeoutMillis
        let clientOptions = options
        let count = 32
        let calls = Calls(count)
        try await withDeadline(60) {
            let client = try await CounterClient.connect(clientOptions)
            defer { client.close() }
            for request in 0..<count {
                try client.submit(Counter.Add(delta: 1)) { calls.completed(request, $0.map(\.output.value)) }
            }
            let deadline = ContinuousClock.now.advanced(by: .seconds(30))
            while calls.total < count && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        }
        #expect(calls.counts.withLock { $0 } == [Int](repeating: 1, count: count))
        #expect(calls.order.withLock { $0 } == Array(0..<count))
        let values = (0..<count).map { request in (try? calls.outcomes.withLock { $0[request] }?.get()) ?? -1 }
        #expect(values == (1...Int64(count)).map { $0 })
    }

    /// Closed loops on completions through the shutdown of the replica half of them are connected to: every
    /// completion runs once, the clients fail over, and the counter is the acknowledged increments plus at most the
    /// in-doubt ones (never a double apply).
    @Test func completions_failover_eachCompletedOnce_counterIsAcknowledgedPlusAtMostInDoubt() async throws {
        let cluster = try CounterCluster(size: 3)
        defer { cluster.shutdownAll() }
        for id in UInt32(0)..<3 { try cluster.start(id, initialView: [0, 1, 2]) }
        for id in UInt32(0)..<3 { try await cluster.replica(id).group.waitUntilRunning() }
        let addresses = try cluster.clientAddresses([0, 1, 2])
        let clients = 2, loops = 4, perLoop = 100
        let total = clients * loops * perLoop
        let calls = Calls(total)
        let issued = Atomic<Int>(0)
        let failovers = try await withDeadline(60) {
            var sessions: [CounterClient] = []
            for client in 0..<clients {
                var options = CounterClient.Options(replicas: addresses)
                options.preferred = client == 0 ? 0 : 1  // one on the replica that stops
                options.windowMax = loops
                options.timeoutMillis = 10_000
                sessions.append(try await CounterClient.connect(options))
            }
            defer { for session in sessions { session.close() } }
            /// One closed loop: request `next` … `end - 1`, each issued by the previous one's completion.
            final class Loop: @unchecked Sendable {
                var next: Int
                let end: Int
                init(_ start: Int, _ end: Int) { next = start; self.end = end }
            }
            @Sendable func step(_ loop: Loop, _ session: CounterClient) {
                guard loop.next < loop.end else { return }
                let request = loop.next
                loop.next += 1
                issued.add(1, ordering: .relaxed)
                do {
                    try session.submit(Counter.Add(delta: 1)) { outcome in
                        calls.completed(request, outcome.map(\.output.value))
                        step(loop, session)
                    }
                } catch {
                    Issue.record("submit refused: \(error)")
                }
            }
            for (client, session) in sessions.enumerated() {
                for lane in 0..<loops {
                    let start = (client * loops + lane) * perLoop
                    step(Loop(start, start + perLoop), session)
                }
            }
            while issued.load(ordering: .relaxed) < total / 3 { try await Task.sleep(for: .milliseconds(2)) }
            cluster.replica(0).shutdown()
            let deadline = ContinuousClock.now.advanced(by: .seconds(45))
            while calls.total < total && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            return sessions.reduce(0) { $0 + $1.statistics.failovers }
        }
        #expect(calls.counts.withLock { $0 } == [Int](repeating: 1, count: total), "a completion ran twice or never")
        let outcomes = calls.outcomes.withLock { Array($0.values) }
        let acknowledged = outcomes.filter { if case .success = $0 { true } else { false } }.count
        let inDoubt = outcomes.count - acknowledged
        let digests = try await cluster.settledDigests([1, 2])
        #expect(digests[0] == digests[1], "the survivors diverged: \(digests)")
        let value = cluster.replica(1).withMachine { $0.value }
        #expect(value >= Int64(acknowledged), "an acknowledged increment was lost: \(value) < \(acknowledged)")
        #expect(value <= Int64(acknowledged + inDoubt), "applied twice: \(value) > \(acknowledged) + \(inDoubt)")
        #expect(acknowledged > total / 2)
        #expect(failovers >= 1)
    }

    /// The in-flight command numbers stay sorted (a multiset) and give the lowest one: what every command frame
    /// carries as `firstUnacknowledged`.
    @Test func commandNumbers_binarySearchPosition() {
        let numbers: [UInt64] = [1, 3, 3, 7]
        #expect(CounterClient.position(of: 0, in: numbers) == 0)
        #expect(CounterClient.position(of: 1, in: numbers) == 0)
        #expect(CounterClient.position(of: 3, in: numbers) == 1)
        #expect(CounterClient.position(of: 4, in: numbers) == 3)
        #expect(CounterClient.position(of: 8, in: numbers) == 4)
        #expect(CounterClient.position(of: 5, in: []) == 0)
    }

    /// Sampled CPU timing: the first unit is timed, then one in `sampleEvery`, each with weight `sampleEvery`, so
    /// the weights of N × sampleEvery units add up to as many units.
    @Test func cpuSampler_timesOneInN_weightsAddUpToTheUnits() {
        var sampler = CPUCounters.Sampler()
        let every = CPUCounters.sampleEvery
        var weights: [UInt64] = []
        for _ in 0..<(4 * every) { weights.append(sampler.next()) }
        #expect(weights[0] == every)
        #expect(weights.filter { $0 > 0 }.count == 4)
        #expect(weights.reduce(0, +) == 4 * every)
        #expect(weights.enumerated().allSatisfy { $0.element == ($0.offset % Int(every) == 0 ? every : 0) })
    }
}

/// Connects, retrying a connection whose session opening timed out (a test with a short request timeout on a loaded
/// machine); any other error, or 20 timeouts in a row, is thrown.
func connectRetrying(_ options: CounterClient.Options) async throws -> CounterClient {
    for _ in 1..<20 {
        do {
            return try await CounterClient.connect(options)
        } catch .timeout {
            continue
        }
    }
    return try await CounterClient.connect(options)
}
