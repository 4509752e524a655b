import CoreMetrics
import Logging
import RingCast
import ServiceLifecycle
import Synchronization
import Testing

/// A `LogHandler` that keeps every line, so that a test can read what the library said.
struct RecordingLogHandler: LogHandler {
    struct Line: Sendable {
        let level: Logger.Level
        let message: String
        let metadata: [String: String]
    }

    final class Lines: Sendable {
        let all = Mutex<[Line]>([])
        func matching(_ message: String) -> [Line] { all.withLock { $0.filter { $0.message == message } } }
    }

    let lines: Lines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        lines.all.withLock {
            $0.append(Line(level: event.level, message: "\(event.message)", metadata: merged.mapValues { "\($0)" }))
        }
    }
}

/// A `MetricsFactory` that keeps the running value of every counter, the last value of every gauge and every
/// recorded timer value, by label and dimensions.
final class RecordingMetrics: MetricsFactory {
    struct Key: Hashable, Sendable, CustomStringConvertible {
        let label: String
        let dimensions: [String]
        init(_ label: String, _ dimensions: [(String, String)]) {
            self.label = label
            self.dimensions = dimensions.map { "\($0.0)=\($0.1)" }.sorted()
        }
        var description: String { "\(label){\(dimensions.joined(separator: ","))}" }
    }

    struct Values: Sendable {
        var counters: [Key: Int64] = [:]
        var gauges: [Key: Double] = [:]
        var timers: [Key: [Int64]] = [:]
    }

    let values = Mutex(Values())

    final class Handler: CounterHandler, RecorderHandler, TimerHandler {
        let key: Key
        let owner: RecordingMetrics
        init(_ key: Key, _ owner: RecordingMetrics) {
            self.key = key
            self.owner = owner
        }
        func increment(by amount: Int64) { owner.values.withLock { $0.counters[key, default: 0] += amount } }
        func reset() { owner.values.withLock { $0.counters[key] = 0 } }
        func record(_ value: Int64) { record(Double(value)) }
        func record(_ value: Double) { owner.values.withLock { $0.gauges[key] = value } }
        func recordNanoseconds(_ duration: Int64) { owner.values.withLock { $0.timers[key, default: []].append(duration) } }
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        values.withLock { $0.counters[Key(label, dimensions)] = $0.counters[Key(label, dimensions)] ?? 0 }
        return Handler(Key(label, dimensions), self)
    }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        Handler(Key(label, dimensions), self)
    }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { Handler(Key(label, dimensions), self) }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}

    func counter(_ label: String, _ dimensions: [(String, String)]) -> Int64? {
        values.withLock { $0.counters[Key(label, dimensions)] }
    }
    func gauge(_ label: String, _ dimensions: [(String, String)]) -> Double? {
        values.withLock { $0.gauges[Key(label, dimensions)] }
    }
    func timer(_ label: String, _ dimensions: [(String, String)]) -> [Int64] {
        values.withLock { $0.timers[Key(label, dimensions)] ?? [] }
    }
}

/// Nested in `GroupTests` so that it is serialized with the other loopback group clusters: ports the kernel handed
/// out as free can be taken by another cluster's connections when clusters start at the same time.
extension GroupTests {
@Suite("Observability: swift-log, swift-metrics, swift-service-lifecycle", .serialized)
struct ObservabilityTests {
    @Test("a crash of one of three: the survivor logs the suspicion and the view change, and its metrics count them")
    func crashIsLoggedAndCounted() async throws {
        let cluster = try GroupCluster(size: 3)
        defer { cluster.stopAll() }
        let lines = RecordingLogHandler.Lines()
        let metrics = RecordingMetrics()
        try cluster.start(0, initialView: [0, 1, 2]) { configuration in
            configuration.name = "test"
            configuration.logger = Logger(label: "ringcast") { _ in RecordingLogHandler(lines: lines) }
            configuration.metricsFactory = metrics
        }
        for me: UInt32 in 1..<3 { try cluster.start(me, initialView: [0, 1, 2]) }
        for me: UInt32 in 0..<3 { try await cluster.group(me).waitUntilRunning() }
        for index in 0..<100 { try await cluster.group(1).broadcast(testPayload(origin: 1, index: index, size: 1000)) }
        try await cluster.wait(20, "deliveries before the crash") { cluster.entries(0).count == 100 }
        cluster.stop(2)
        try await cluster.wait(20, "a view without 2") { cluster.group(0).currentView?.members == [0, 1] }
        for index in 0..<100 { try await cluster.group(1).broadcast(testPayload(origin: 1, index: 100 + index, size: 1000)) }
        try await cluster.wait(20, "deliveries in the new view") { cluster.entries(0).count == 200 }

        let dimensions = [("group", "test"), ("member", "0")]
        // The metrics follow the statistics within metricsIntervalMillis (100 ms).
        try await cluster.wait(5, "the metrics catch up") {
            metrics.counter("ringcast_delivered_messages_total", dimensions) == 200
        }
        #expect(metrics.counter("ringcast_delivered_bytes_total", dimensions) == 200_000)
        #expect(metrics.counter("ringcast_view_changes_total", dimensions) == 1)
        #expect(metrics.gauge("ringcast_view_members", dimensions) == 2)
        #expect(metrics.gauge("ringcast_view_id", dimensions).map { $0 >= 2 } == true)
        #expect((metrics.counter("ringcast_control_frames_total", dimensions + [("direction", "in")]) ?? 0) > 0)
        #expect((metrics.counter("ringcast_ring_bytes_total", dimensions + [("direction", "in")]) ?? 0) >= 100_000,
                "the ring's counters accumulate over views")
        #expect(metrics.counter("ringcast_payload_copies_total", dimensions) == 0)
        let durations = metrics.timer("ringcast_view_change_duration_seconds", dimensions)
        #expect(durations.count == 1)
        #expect(durations.allSatisfy { $0 > 0 && $0 < 10_000_000_000 }, "detect to view: \(durations) ns")

        let suspected = lines.matching("member suspected")
        #expect(suspected.contains { $0.metadata["suspect"] == "2" && $0.level == .warning })
        let installed = lines.matching("view installed")
        let change = try #require(installed.last)
        #expect(change.level == .info)
        #expect(change.metadata["members"] == "[0, 1]")
        #expect(change.metadata["group"] == "test" && change.metadata["member"] == "0")
        #expect(change.metadata["cause"].map { $0.contains("2") } == true, "cause: \(change.metadata["cause"] ?? "-")")
        #expect(change.metadata["detect_to_view_ms"] != nil)
        #expect(!lines.matching("installing view").isEmpty, "the view change's steps are logged at .debug")
        let messagesLogged = lines.all.withLock { $0.count }
        #expect(messagesLogged < 50, "nothing is logged per message (\(messagesLogged) lines for 200 messages)")
    }

    @Test("a static ring: each Node reports its engine's counters to its MetricsFactory, under the same names")
    func nodeMetrics() async throws {
        let members = loopbackMembers(2)
        let metrics = RecordingMetrics()
        let delivered = Mutex(0)
        let nodes = try members.indices.map { position in
            var configuration = try Node.Configuration(position: position, members: members, limits: testLimits())
            configuration.metricsFactory = metrics
            configuration.name = "static"
            return try Node(configuration: configuration) { batch in delivered.withLock { $0 += batch.count } }
        }
        try await startRing(nodes)
        for index in 0..<50 {
            for (position, node) in nodes.enumerated() {
                try await node.broadcast(testPayload(origin: position, index: index, size: 500))
            }
        }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(20))
        while delivered.withLock({ $0 }) < 200 && clock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        for node in nodes { node.shutdown() }
        for position in 0..<2 {
            let dimensions = [("group", "static"), ("member", "\(position)")]
            #expect(metrics.counter("ringcast_delivered_messages_total", dimensions) == 100)
            #expect(metrics.counter("ringcast_delivered_bytes_total", dimensions) == 50_000)
            #expect(metrics.counter("ringcast_broadcasts_total", dimensions) == 50)
            #expect(metrics.counter("ringcast_payload_copies_total", dimensions) == 0)
            #expect((metrics.counter("ringcast_ring_bytes_total", dimensions + [("direction", "out")]) ?? 0) >= 25_000)
            #expect(metrics.gauge("ringcast_broadcasts_in_flight", dimensions) == 0)
        }
    }

    @Test("a Group in a ServiceGroup: graceful shutdown leaves the group, the others install a view without it")
    func serviceGracefulShutdownLeaves() async throws {
        let cluster = try GroupCluster(size: 3)
        defer { cluster.stopAll() }
        for me: UInt32 in 0..<2 { try cluster.start(me, initialView: [0, 1, 2]) }
        let service = try cluster.start(2, initialView: [0, 1, 2], start: false)
        let services = ServiceGroup(configuration: .init(services: [service], logger: Logger(label: "test-services")))
        let running = Task { try await services.run() }
        for me: UInt32 in 0..<3 { try await cluster.group(me).waitUntilRunning() }
        await services.triggerGracefulShutdown()
        try await running.value
        #expect(service.state == .left)
        try await cluster.wait(20, "a view without 2") { cluster.group(0).currentView?.members == [0, 1] }
        #expect(cluster.group(0).currentView?.causes == ["left 2"])
    }
}
}
