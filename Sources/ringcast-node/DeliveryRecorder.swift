import Foundation
import Histogram
import RingCast
import Synchronization

// Clocks: RingCast's `monotonicNanos()` and `realtimeNanos()` (package access). The send time in the payload and the
// delivery time are CLOCK_REALTIME: one clock for every process on a host (across hosts, latency is only as good as
// their clock synchronisation).

/// What the delivery handler counts, on the engine thread, one lock per batch.
final class DeliveryRecorder: Sendable {
    struct State {
        var totalMessages: UInt64 = 0
        var totalBytes: UInt64 = 0
        var orderDigest = FNV1a64.basis
        var windowMessages: UInt64 = 0
        var windowBytes: UInt64 = 0
        var windowPerOrigin: [UInt64]
        /// Latency in µs, deliveries inside the window only.
        var latency = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000,
                                        numberOfSignificantValueDigits: .three)
        /// Messages too short to carry the payload header (not ours: counted, not timed).
        var headerlessMessages: UInt64 = 0
        /// Deliveries whose send time lies in the future (clocks of different hosts); recorded as 0 µs.
        var sendTimesAhead: UInt64 = 0
        var log: DeliveryLogWriter?
        /// The longest time without a delivery between the first delivery and the end of the window (ms):
        /// a stalled ring shows here before it shows anywhere else.
        var deliveryGapMaxNanos: UInt64 = 0
        var lastBatchMonotonic: UInt64 = 0
        /// Bytes delivered per 50 ms from `timelineStart` (CLOCK_REALTIME), preallocated for the whole run.
        var timeline: [UInt64]
        var timelineStart: UInt64 = 0
        var timelineUsed = 0
        /// Group mode: every view installed, in order.
        var views: [Group.View] = []
    }

    static let timelineBucketNanos: UInt64 = 50_000_000
    /// The task that follows the group's views (cancelled at the end of the run).
    let viewsTask = Mutex<Task<Void, Never>?>(nil)

    func noteView(_ view: Group.View) {
        state.withLock { $0.views.append(view) }
    }

    let state: Mutex<State>
    let hashPayloads: Bool
    /// CLOCK_MONOTONIC of the last delivery (the cool-down's quiet detector).
    let lastDeliveryMonotonic = Atomic<UInt64>(0)
    /// The measurement window in CLOCK_REALTIME ns; empty until set.
    let windowStart = Atomic<UInt64>(.max)
    let windowEnd = Atomic<UInt64>(0)

    init(nodes: Int, hashPayloads: Bool, log: DeliveryLogWriter?, timelineSeconds: Double = 60) {
        self.hashPayloads = hashPayloads
        let buckets = max(1, min(1 << 20, Int(timelineSeconds * 1e9 / Double(Self.timelineBucketNanos)) + 1))
        var initial = State(windowPerOrigin: Array(repeating: 0, count: nodes), log: log,
                            timeline: Array(repeating: 0, count: buckets))
        initial.timelineStart = realtimeNanos()
        state = Mutex(initial)
    }

    func record(_ batch: borrowing Deliveries) {
        let now = realtimeNanos()
        let inWindow = now >= windowStart.load(ordering: .relaxed) && now <= windowEnd.load(ordering: .relaxed)
        let hashPayloads = hashPayloads
        let monotonic = monotonicNanos()
        state.withLock { state in
            if state.lastBatchMonotonic != 0 && now <= windowEnd.load(ordering: .relaxed) {
                state.deliveryGapMaxNanos = max(state.deliveryGapMaxNanos, monotonic - state.lastBatchMonotonic)
            }
            state.lastBatchMonotonic = monotonic
            let bucket = min(state.timeline.count - 1,
                             Int((now > state.timelineStart ? now - state.timelineStart : 0) / Self.timelineBucketNanos))
            state.timelineUsed = max(state.timelineUsed, bucket + 1)
            batch.forEach { delivery in
                state.timeline[bucket] += UInt64(delivery.payload.count)
                let length = delivery.payload.count
                state.totalMessages += 1
                state.totalBytes += UInt64(length)
                let payloadHash = hashPayloads ? FNV1a64.hash(delivery.payload) : 0
                state.orderDigest = digest(state.orderDigest, origin: delivery.origin, originSeq: delivery.originSeq,
                                           length: length, payloadHash: payloadHash)
                state.log?.append(viewId: delivery.viewId, origin: delivery.origin, originSeq: delivery.originSeq,
                                  length: length, payloadHash: payloadHash)
                guard inWindow else { return }
                state.windowMessages += 1
                state.windowBytes += UInt64(length)
                if delivery.origin < state.windowPerOrigin.count { state.windowPerOrigin[delivery.origin] += 1 }
                guard length >= RunSettings.headerBytes else {
                    state.headerlessMessages += 1
                    return
                }
                let sent = delivery.payload.loadUnaligned(fromByteOffset: 16, as: UInt64.self).littleEndian
                if sent > now { state.sendTimesAhead += 1 }
                _ = state.latency.record(sent > now ? 0 : (now - sent) / 1000)
            }
        }
        lastDeliveryMonotonic.store(monotonic, ordering: .relaxed)
    }
}

/// One step of the order digest: FNV-1a 64 over (origin u32, origin_seq u64, length u32, payload hash u64), LE.
func digest(_ state: UInt64, origin: Int, originSeq: UInt64, length: Int, payloadHash: UInt64) -> UInt64 {
    var record: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) = (
        UInt32(truncatingIfNeeded: origin).littleEndian,
        UInt32(truncatingIfNeeded: originSeq).littleEndian, UInt32(truncatingIfNeeded: originSeq >> 32).littleEndian,
        UInt32(truncatingIfNeeded: length).littleEndian,
        UInt32(truncatingIfNeeded: payloadHash).littleEndian, UInt32(truncatingIfNeeded: payloadHash >> 32).littleEndian)
    return withUnsafeBytes(of: &record) { FNV1a64.hash($0, state: state) }
}

/// The delivery log of ARCHITECTURE §3.3, written through a 1 MiB buffer (one write(2) per MiB, not per line).
struct DeliveryLogWriter {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private static let flushBytes = 1 << 20
    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
    /// The first write error (errno), reported at exit.
    private(set) var writeError: Int32 = 0

    init(path: String) throws(NodeRunError) {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .failed("cannot create the delivery log '\(path)': \(String(cString: strerror(errno)))") }
        buffer.reserveCapacity(Self.flushBytes + 128)
    }

    mutating func append(viewId: UInt64, origin: Int, originSeq: UInt64, length: Int, payloadHash: UInt64) {
        appendDecimal(viewId)
        buffer.append(0x20)
        appendDecimal(UInt64(origin))
        buffer.append(0x20)
        appendDecimal(originSeq)
        buffer.append(0x20)
        appendDecimal(UInt64(length))
        buffer.append(0x20)
        for shift in stride(from: 60, through: 0, by: -4) {
            buffer.append(Self.hexDigits[Int((payloadHash >> UInt64(shift)) & 0xf)])
        }
        buffer.append(0x0a)
        if buffer.count >= Self.flushBytes { flush() }
    }

    private mutating func appendDecimal(_ value: UInt64) {
        if value < 10 {
            buffer.append(0x30 + UInt8(value))
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0) // 24 bytes ≥ 20 decimal digits of a UInt64
        var count = 0
        var rest = value
        withUnsafeMutableBytes(of: &digits) { scratch in
            while rest > 0 {
                scratch[count] = 0x30 + UInt8(rest % 10)
                rest /= 10
                count += 1
            }
            for index in stride(from: count - 1, through: 0, by: -1) { buffer.append(scratch[index]) }
        }
    }

    mutating func flush() {
        var offset = 0
        while offset < buffer.count && writeError == 0 {
            let written = buffer.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                writeError = errno
            } else {
                offset += written
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Flushes and closes; returns the first write error's description, if any.
    mutating func close() -> String? {
        flush()
        _ = Foundation.close(fd)
        return writeError == 0 ? nil : String(cString: strerror(writeError))
    }
}
