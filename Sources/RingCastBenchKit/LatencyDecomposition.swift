/// Where the senders' own messages spent their time, from the engine's timestamps (`rc_engine_stats`, reported by
/// each node as `own_latency_ms_mean`): waiting in the broadcast ring for the byte window, in the core's send
/// queue, round the ring until stable (socket buffers, qdiscs, links, the other processes), and stable until
/// delivered (pending, behind the messages before it in ≺). Means weighted by each node's own message count.
public struct LatencyDecomposition: Sendable, Equatable {
    public var senders = 0
    public var admitWaitMillis = 0.0
    public var sendWaitMillis = 0.0
    public var ringTripMillis = 0.0
    public var deliverWaitMillis = 0.0
    /// The byte window each sender had at the end of its run, averaged; and the smallest round trip any saw.
    public var windowBytesMean = 0.0
    public var ringRoundTripMinMillis = 0.0

    init?(_ senders: [NodeOutput]) {
        var samples = 0.0
        var windows: [Double] = []
        var rttMin = Double.infinity
        for node in senders {
            guard let own = node.raw["own_latency_ms_mean"], let count = own["samples"]?.doubleValue, count > 0 else { continue }
            samples += count
            self.senders += 1
            admitWaitMillis += (own["admit_wait"]?.doubleValue ?? 0) * count
            sendWaitMillis += (own["send_wait"]?.doubleValue ?? 0) * count
            ringTripMillis += (own["ring_trip"]?.doubleValue ?? 0) * count
            deliverWaitMillis += (own["deliver_wait"]?.doubleValue ?? 0) * count
            if let window = node.raw["engine"]?["window_bytes_now"]?.doubleValue { windows.append(window) }
            if let rtt = node.raw["engine"]?["ring_rtt_min_ms"]?.doubleValue, rtt > 0 { rttMin = min(rttMin, rtt) }
        }
        guard samples > 0 else { return nil }
        admitWaitMillis /= samples
        sendWaitMillis /= samples
        ringTripMillis /= samples
        deliverWaitMillis /= samples
        windowBytesMean = windows.isEmpty ? 0 : windows.reduce(0, +) / Double(windows.count)
        ringRoundTripMinMillis = rttMin.isFinite ? rttMin : 0
    }
}
