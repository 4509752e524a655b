internal import CRingCast
import Histogram

/// One end's numbers after the data phase (the C `rc_perf_result`, plus the latency histogram).
struct SideResult: Sendable, Equatable {
    var error: Int32 = 0
    var zerocopyState: Int32 = 0
    var bytesSent: UInt64 = 0
    var bytesReceived: UInt64 = 0
    var transactions: UInt64 = 0
    var wallNanos: UInt64 = 0
    var measuredNanos: UInt64 = 0
    var cpuProcessNanos: UInt64 = 0
    var cpuThreadNanos: UInt64 = 0
    var verifyErrors: UInt64 = 0
    var verifyFirstOffset: UInt64 = 0
    var latencyMaxNanos: UInt64 = 0
    var sends: UInt64 = 0
    var sendsZeroCopy: UInt64 = 0
    var zeroCopyNotifications: UInt64 = 0
    var zeroCopyCopied: UInt64 = 0
    var recvs: UInt64 = 0
    var bytesIn: UInt64 = 0
    var sendIovecs: UInt64 = 0
    var deferTaskrun: UInt64 = 0

    /// Field names on the control connection (snake_case, units last).
    private static var keys: [(String, WritableKeyPath<SideResult, UInt64>)] { [
        ("bytes_sent", \.bytesSent), ("bytes_received", \.bytesReceived), ("transactions", \.transactions),
        ("wall_ns", \.wallNanos), ("measured_ns", \.measuredNanos), ("cpu_process_ns", \.cpuProcessNanos),
        ("cpu_thread_ns", \.cpuThreadNanos), ("verify_errors", \.verifyErrors),
        ("verify_first_offset", \.verifyFirstOffset), ("latency_max_ns", \.latencyMaxNanos), ("sends", \.sends),
        ("sends_zc", \.sendsZeroCopy), ("zc_notifications", \.zeroCopyNotifications),
        ("zc_copied", \.zeroCopyCopied), ("recvs", \.recvs), ("bytes_in", \.bytesIn),
        ("send_iovecs", \.sendIovecs), ("defer_taskrun", \.deferTaskrun),
    ] }

    var line: String {
        var words = ["RESULT", "error=\(error)", "zerocopy_state=\(zerocopyState)"]
        for (key, path) in Self.keys { words.append("\(key)=\(self[keyPath: path])") }
        return words.joined(separator: " ")
    }

    static func parse(_ line: String) throws(RingPerfError) -> SideResult {
        let words = line.split(separator: " ")
        guard words.first == "RESULT" else { throw .protocolViolation("expected RESULT, got '\(line.prefix(80))'") }
        let fields = KeyValues(words.dropFirst())
        var result = SideResult()
        guard let error = fields["error"].flatMap({ Int32($0) }),
              let state = fields["zerocopy_state"].flatMap({ Int32($0) })
        else { throw .protocolViolation("RESULT without error/zerocopy_state") }
        result.error = error
        result.zerocopyState = state
        for (key, path) in keys {
            guard let value = fields[key].flatMap({ UInt64($0) }) else {
                throw .protocolViolation("RESULT without \(key)")
            }
            result[keyPath: path] = value
        }
        return result
    }
}

/// Runs one side of a test through `rc_perf_run` (the hot loop is C; Swift only sets up and summarises).
enum DataPhase {
    /// Most latency samples kept (4 Mi × 4 bytes); later transactions still count and update the max.
    static let latencySamplesMax = 4 << 20

    enum Role {
        case streamSender, streamReceiver, requestResponseClient, requestResponseServer

        var cValue: UInt32 {
            switch self {
            case .streamSender: 0
            case .streamReceiver: 1
            case .requestResponseClient: 2
            case .requestResponseServer: 3
            }
        }
    }

    /// The role of each end for a test.
    static func roles(for test: TestKind) -> (client: Role, server: Role) {
        switch test {
        case .stream: (.streamSender, .streamReceiver)
        case .maerts: (.streamReceiver, .streamSender)
        case .rr: (.requestResponseClient, .requestResponseServer)
        }
    }

    /// Runs the data phase on the calling thread.
    /// - Parameters:
    ///   - fd: a connected socket to adopt (closed by the call), or nil to connect to `peer`.
    ///   - timeoutSeconds: bound of the whole phase.
    /// - Returns: the result and, for the rr client, the latency histogram in nanoseconds.
    static func run(role: Role, fd: Int32?, peer: Endpoint?, request: TestRequest,
                    timeoutSeconds: Double) throws(RingPerfError) -> (SideResult, Histogram<UInt64>?) {
        var params = rc_perf_params()
        params.role = role.cValue
        params.fd = fd ?? -1
        if let peer { params.peer = try peer.address() }
        params.size_bytes = UInt32(request.sizeBytes)
        params.zerocopy = request.zerocopy.cValue
        params.verify = request.verify ? 1 : 0
        params.duration_ns = UInt64(request.durationSeconds * 1e9)
        params.timeout_ns = UInt64(timeoutSeconds * 1e9)
        withUnsafeMutableBytes(of: &params.congestion) { raw in
            for (index, byte) in request.congestion.utf8.prefix(raw.count - 1).enumerated() { raw[index] = byte }
        }
        let wantsLatency = role == .requestResponseClient
        let capacity = wantsLatency ? min(latencySamplesMax, Int(request.durationSeconds * 200_000) + 1024) : 0
        var samples = [UInt32](repeating: 0, count: capacity)
        var raw = rc_perf_result()
        samples.withUnsafeMutableBufferPointer { buffer in
            params.latency_ns = buffer.baseAddress
            params.latency_capacity = UInt64(buffer.count)
            _ = rc_perf_run(&params, &raw)
        }
        var histogram: Histogram<UInt64>?
        if wantsLatency {
            var recorded = Histogram<UInt64>(highestTrackableValue: 3_600_000_000_000, numberOfSignificantValueDigits: .three)
            for sample in samples.prefix(Int(raw.latency_count)) { _ = recorded.record(UInt64(sample)) }
            histogram = recorded
        }
        return (SideResult(raw), histogram)
    }
}

extension SideResult {
    init(_ raw: rc_perf_result) {
        self.init()
        error = raw.error
        zerocopyState = raw.zerocopy_state
        bytesSent = raw.bytes_sent
        bytesReceived = raw.bytes_received
        transactions = raw.transactions
        wallNanos = raw.wall_ns
        measuredNanos = raw.measured_ns
        cpuProcessNanos = raw.cpu_process_ns
        cpuThreadNanos = raw.cpu_thread_ns
        verifyErrors = raw.verify_errors
        verifyFirstOffset = raw.verify_first_offset
        latencyMaxNanos = raw.latency_max_ns
        sends = raw.io.sends
        sendsZeroCopy = raw.io.sends_zc
        zeroCopyNotifications = raw.io.zc_notifications
        zeroCopyCopied = raw.io.zc_copied
        recvs = raw.io.recvs
        bytesIn = raw.io.bytes_in
        sendIovecs = raw.io.send_iovecs
        deferTaskrun = UInt64(raw.io.defer_taskrun)
    }
}
