import Foundation
import Histogram
import Logging
import Prometheus
import RingCast
import ServiceLifecycle

struct NodeRunError: Error, CustomStringConvertible {
    let description: String
    static func failed(_ description: String) -> NodeRunError { NodeRunError(description: description) }
}

/// CPU time of the whole process (user + system), getrusage(2).
func processCPUNanos() -> UInt64 {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    func nanos(_ time: timeval) -> UInt64 { UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_usec) * 1000 }
    return nanos(usage.ru_utime) + nanos(usage.ru_stime)
}

/// Sleeps until CLOCK_REALTIME reaches `unixNanos` (in steps of at most 20 ms, so a clock step or SIGTERM is
/// followed).
func sleep(untilRealtime unixNanos: UInt64) async {
    while !Termination.requested.load(ordering: .relaxed) {
        let now = realtimeNanos()
        guard now < unixNanos else { return }
        let step = min(unixNanos - now, 20_000_000)
        try? await Task.sleep(for: .nanoseconds(Int64(step)))
    }
}

/// One node's run: connect, start at the agreed time, send until the window ends, drain, report.
struct NodeRun {
    let settings: RunSettings

    func run() async -> Outcome {
        var outcome = Outcome(settings: settings)
        var log: DeliveryLogWriter?
        do {
            if let path = settings.deliveryLogPath { log = try DeliveryLogWriter(path: path) }
        } catch {
            outcome.error = error.description
            return outcome
        }
        let recorder = DeliveryRecorder(nodes: settings.nodes, hashPayloads: settings.digestPayloads, log: log,
                                        timelineSeconds: settings.warmupSeconds + settings.durationSeconds
                                            + settings.cooldownSeconds + settings.connectTimeoutSeconds + 5)
        let current = CurrentMember()
        let registry = PrometheusCollectorRegistry()
        var endpoint: HTTPEndpoint?
        if let address = settings.metricsListen {
            do {
                endpoint = try HTTPEndpoint(listen: address) { [id = settings.id, grouped = settings.members != nil] path in
                    switch path {
                    case "/metrics" where grouped:
                        HTTPEndpoint.Response(contentType: "text/plain; version=0.0.4; charset=utf-8", body: registry.emitToString())
                    case "/metrics":
                        HTTPEndpoint.Response(status: "404 Not Found", body: "a static ring (no --members) publishes no metrics; try /status\n")
                    case "/status": HTTPEndpoint.Response(body: NodeStatus.text(id: id, member: current.value))
                    default: nil
                    }
                }
                endpoint?.start()
                if let endpoint {
                    settings.logger.info("serving GET /metrics and GET /status", metadata: ["address": "\(endpoint.address)"])
                }
            } catch {
                outcome.error = "\(error)"
                return outcome
            }
        }
        defer { endpoint?.stop() }
        let node: Member
        let lifecycle: Task<Void, any Error>?
        do {
            (node, lifecycle) = try await start(recorder: recorder, metrics: PrometheusMetricsFactory(registry: registry),
                                                current: current)
        } catch {
            outcome.error = "could not join the ring (listen \(settings.listen), successor \(settings.successor)): \(error)"
            outcome.finish(recorder: recorder, node: nil)
            return outcome
        }
        let startAt = settings.startAtNanos ?? realtimeNanos()
        let windowStart = startAt + UInt64(settings.warmupSeconds * 1e9)
        let windowEnd = windowStart + UInt64(settings.durationSeconds * 1e9)
        recorder.windowStart.store(windowStart, ordering: .relaxed)
        recorder.windowEnd.store(windowEnd, ordering: .relaxed)
        outcome.windowStartNanos = windowStart
        outcome.windowEndNanos = windowEnd
        await sleep(untilRealtime: startAt)

        let sender: Task<SendResult, Never>? = settings.send ? Task {
            await Self.send(node: node, settings: settings, until: windowEnd)
        } : nil

        // CPU over the window: sampled at its edges by this task (the sender runs on another thread).
        await sleep(untilRealtime: windowStart)
        let cpuStart = processCPUNanos()
        let wallStart = realtimeNanos()
        await sleep(untilRealtime: windowEnd)
        let cpuEnd = processCPUNanos()
        let wallEnd = realtimeNanos()
        outcome.cpuPercent = wallEnd > wallStart ? Double(cpuEnd - cpuStart) / Double(wallEnd - wallStart) * 100 : 0
        outcome.recordWindowEnd(node)

        if let sender {
            let result = await sender.value
            outcome.sentMessages = result.sent
            if let error = result.error { outcome.error = "broadcast failed during the run: \(error)" }
        }
        if let failure = node.failure, outcome.error == nil, !(settings.members != nil && failure.contains("excluded")) {
            outcome.error = "the engine failed during the run: \(failure)"
        }
        if outcome.error == nil { outcome.endedBy = await coolDown(node: node, recorder: recorder, sendEnd: windowEnd) }
        if let lifecycle {
            // After SIGTERM the Group service is leaving the group: let it finish before stopping the member.
            if Termination.requested.load(ordering: .relaxed) { _ = await lifecycle.result }
            node.shutdown()
            lifecycle.cancel()
            _ = await lifecycle.result
        }
        node.shutdown()
        outcome.finish(recorder: recorder, node: node)
        return outcome
    }

    /// Starts the static ring or the group member and waits until it runs. A group member runs as a `Service` in a
    /// `ServiceGroup` (the returned task) that turns SIGTERM and SIGINT into a graceful shutdown: leave, then stop.
    func start(recorder: DeliveryRecorder, metrics: PrometheusMetricsFactory,
               current: CurrentMember) async throws -> (Member, Task<Void, any Error>?) {
        let timeout = Duration.seconds(settings.connectTimeoutSeconds + 1)
        if var configuration = try settings.groupConfiguration {
            configuration.metricsFactory = metrics
            let group = try Group(configuration: configuration) { batch in recorder.record(batch) }
            current.value = .group(group)
            let viewsTask = Task { for await view in group.views { recorder.noteView(view) } }
            recorder.viewsTask.withLock { $0 = viewsTask }
            try group.start()
            let services = ServiceGroup(configuration: .init(services: [group, TerminationService()],
                                                             gracefulShutdownSignals: [.sigterm, .sigint],
                                                             logger: settings.logger))
            let lifecycle = Task { try await services.run() }
            do {
                try await group.waitUntilRunning(timeout: timeout)
            } catch {
                lifecycle.cancel()
                _ = await lifecycle.result
                throw error
            }
            return (.group(group), lifecycle)
        }
        let node = try Node(configuration: try settings.configuration) { batch in recorder.record(batch) }
        current.value = .node(node)
        try node.start()
        try await node.waitUntilRunning(timeout: timeout)
        return (.node(node), nil)
    }

    struct SendResult: Sendable {
        var sent: UInt64 = 0
        var error: RingCastError?
    }

    /// Broadcasts as fast as backpressure allows (closed loop), or on a fixed schedule at --rate (open loop), until
    /// CLOCK_REALTIME passes `end`. Open loop stamps each message with its scheduled time, so that time spent
    /// waiting for backpressure counts in its latency (no coordinated omission); a sender that falls behind its
    /// schedule sends back to back until it catches up.
    static func send(node: Member, settings: RunSettings, until end: UInt64) async -> SendResult {
        var result = SendResult()
        var template = [UInt8](repeating: 0, count: settings.sizeBytes)
        for index in RunSettings.headerBytes..<settings.sizeBytes {
            template[index] = UInt8(truncatingIfNeeded: index &* 131 &+ settings.id &* 17 &+ 7)
        }
        let intervalNanos = settings.rateBitsPerSecond.map { Double(settings.sizeBytes) * 8 / $0 * 1e9 }
        let scheduleStart = realtimeNanos()
        while !Termination.requested.load(ordering: .relaxed) {
            var now = realtimeNanos()
            guard now < end else { break }
            if let intervalNanos {
                let scheduled = scheduleStart + UInt64(Double(result.sent) * intervalNanos)
                if scheduled >= end { break }
                if scheduled > now {
                    try? await Task.sleep(for: .nanoseconds(Int64(scheduled - now)))
                }
                now = scheduled
            }
            var payload = template // one allocation + the application's own fill; the library copies nothing
            payload.withUnsafeMutableBytes { bytes in
                bytes.storeBytes(of: UInt32(settings.id).littleEndian, toByteOffset: 0, as: UInt32.self)
                bytes.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
                bytes.storeBytes(of: (result.sent + 1).littleEndian, toByteOffset: 8, as: UInt64.self)
                bytes.storeBytes(of: now.littleEndian, toByteOffset: 16, as: UInt64.self)
            }
            do {
                try await node.broadcast(payload)
                result.sent += 1
            } catch {
                // After SIGTERM a group member leaves the group while this task may still wait in broadcast():
                // the broadcast it waited for is refused, which is the shutdown, not a failure.
                if !Termination.requested.load(ordering: .relaxed) { result.error = error }
                break
            }
        }
        return result
    }

    /// Delivers until no delivery arrived for --quiet-ms (500 ms) after the senders stopped and this node's own
    /// messages all came back, at most --cooldown.
    func coolDown(node: Member, recorder: DeliveryRecorder, sendEnd: UInt64) async -> String {
        let deadline = sendEnd + UInt64(settings.cooldownSeconds * 1e9)
        let (nowMonotonic, nowRealtime) = (monotonicNanos(), realtimeNanos())
        let sendEndMonotonic = nowMonotonic - min(nowMonotonic, nowRealtime > sendEnd ? nowRealtime - sendEnd : 0)
        while true {
            if Termination.requested.load(ordering: .relaxed) { return "sigterm" }
            if node.failure != nil { return "peer_closed" }
            let last = max(recorder.lastDeliveryMonotonic.load(ordering: .relaxed), sendEndMonotonic)
            let now = monotonicNanos()
            // Quiet only counts once this node's own messages all came back: until then the ring still owes it
            // deliveries (a stalled or starved ring is not a drained one).
            if now > last && now - last >= settings.quietNanos && node.ownOutstanding == 0 {
                return "quiet"
            }
            if realtimeNanos() >= deadline { return "cooldown_elapsed" }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
}
