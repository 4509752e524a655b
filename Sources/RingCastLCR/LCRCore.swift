public import CRingCastCore

/// One sans-IO LCR core (`rc_lcr.h`, thesis §2.4 Fig. 2.5) with the memory it lives in: the one Swift wrapper
/// of the C core that the membership simulator and the tests drive. Frames and deliveries are copied out of
/// core memory into Swift values, so they outlive the next call; code that must not allocate per event (the
/// Benchmarks package's `LCRRing`) calls the C functions on ``pointer`` directly.
///
/// Not `Sendable`: a core belongs to one caller at a time, like the value type it would be in Swift.
public final class LCRCore {
    /// The core, for the C functions this wrapper does not cover.
    public let pointer: OpaquePointer
    public let settings: rc_lcr_settings
    private let memory: UnsafeMutableRawPointer

    /// Settings that satisfy rc_lcr.h's sizing rules: the forward queue `forwardExtra` above the window, and
    /// pending at nodes × (window + forward queue), the rules' minimum.
    public static func settings(
        nodes: UInt32, self position: UInt32, window: UInt32 = 8, forwardExtra: UInt32 = 1, batchCount: UInt32 = 1,
        batchBytes: UInt32 = 1 << 20, fairness: Bool = true
    ) -> rc_lcr_settings {
        rc_lcr_settings(
            nodes: nodes, self: position, send_queue_max: window, forward_queue_max: window + forwardExtra,
            pending_max: nodes * (2 * window + forwardExtra), batch_count_max: batchCount,
            batch_bytes_max: batchBytes, fairness: fairness, test_fault: 0)
    }

    /// - Throws: ``LCRError/code(_:)`` with -EINVAL (22) for settings outside rc_lcr.h's rules.
    public init(_ settings: rc_lcr_settings) throws(LCRError) {
        var settings = settings
        let size = rc_lcr_memory_size(&settings)
        guard size > 0 else { throw LCRError.code(-22) }
        memory = UnsafeMutableRawPointer.allocate(byteCount: (size + 15) & ~15, alignment: 16)
        var out: OpaquePointer?
        let rc = rc_lcr_init(&out, memory, size, &settings)
        guard rc == 0, let out else {
            memory.deallocate()
            throw LCRError.code(rc)
        }
        pointer = out
        self.settings = settings
    }

    deinit { memory.deallocate() }

    public var nodes: Int { Int(settings.nodes) }

    /// utoBroadcast: 0; -EAGAIN when the send queue (the window) is full; -EMSGSIZE above batch_bytes_max.
    public func broadcast(_ ref: UInt64, bytes: UInt32 = 100) -> Int32 { rc_lcr_broadcast(pointer, ref, bytes) }

    /// The next frame for the successor, or nil when there is nothing to send.
    public func nextFrame() -> LCRFrame? {
        var frame = rc_lcr_frame()
        guard rc_lcr_next_frame(pointer, &frame) == 1 else { return nil }
        return LCRFrame(frame, nodes: nodes)
    }

    /// Rreceive from the predecessor: 0, -EAGAIN (hold it, nothing changed) or -EPROTO; whether the message
    /// will be forwarded.
    public func receive(_ frame: LCRFrame) -> (rc: Int32, forwarded: Bool) {
        let outcome = receiveReporting(frame)
        return (outcome.rc, outcome.forwarded)
    }

    /// rc_lcr_on_frame with both out-parameters: will the message be forwarded, was it a duplicate (line 10).
    public func receiveReporting(_ frame: LCRFrame) -> (rc: Int32, forwarded: Bool, duplicate: Bool) {
        var forwarded = false, duplicate = false
        let rc = frame.withCFrame { rc_lcr_on_frame(pointer, $0, &forwarded, &duplicate) }
        return (rc, forwarded, duplicate)
    }

    /// Every delivery that is ready, in total order (tryDeliver, Fig. 2.5 lines 24–27).
    public func deliveries() -> [LCRFrame.Message] {
        var out = [rc_lcr_message](repeating: rc_lcr_message(), count: 64)
        var all: [LCRFrame.Message] = []
        while true {
            let count = out.withUnsafeMutableBufferPointer { rc_lcr_next_deliveries(pointer, $0.baseAddress, 64) }
            all += out[0..<Int(count)].map { LCRFrame.Message($0, nodes: nodes) }
            if count < 64 { return all }
        }
    }

    /// One entry of pending (rc_lcr_pending_view, copied).
    public struct PendingEntry: Equatable {
        public var origin: UInt32
        public var seq: UInt64
        public var count: UInt32
        public var stable: Bool
        public var own: Bool
        public var clock: [UInt64]
        public var ref: UInt64
    }

    /// The pending list, first in ≺ order first.
    public func pending() -> [PendingEntry] {
        var out: [PendingEntry] = []
        var view = rc_lcr_pending_view()
        var position: UInt32 = 0
        while rc_lcr_pending_at(pointer, position, &view) == 0 {
            out.append(PendingEntry(origin: view.origin, seq: view.seq, count: view.count, stable: view.stable, own: view.own,
                                    clock: Array(UnsafeBufferPointer(start: view.clock, count: nodes)), ref: view.ref))
            position += 1
        }
        return out
    }

    /// The clock C (§2.4.1): clock[o] = LCR messages of o accepted.
    public var clock: [UInt64] { Array(UnsafeBufferPointer(start: rc_lcr_clock(pointer), count: nodes)) }
    public var stats: rc_lcr_stats { rc_lcr_stats_get(pointer) }
    public var pendingCount: UInt32 { rc_lcr_pending_count(pointer) }
    public var forwardQueueCount: UInt32 { rc_lcr_forward_queue_count(pointer) }
    /// Application messages broadcast and not yet delivered locally.
    public var sendQueueCount: UInt32 { rc_lcr_send_queue_count(pointer) }
}

/// A refusal of rc_lcr_init: its negative errno.
public enum LCRError: Error, Equatable { case code(Int32) }

/// A frame with its message clock and ACKs copied into Swift arrays.
public struct LCRFrame {
    /// One LCR message: a batch of `count` application messages of one origin under one stamp.
    public struct Message: Equatable {
        public var origin: UInt32
        public var seq: UInt64
        public var burstSize: UInt32
        public var count: UInt32
        public var bytes: UInt64
        public var clock: [UInt64]
        public var own: Bool
        /// Received: the caller's handle; own: the index of the batch's first application message.
        public var ref: UInt64

        public init(_ m: rc_lcr_message, nodes: Int) {
            origin = m.origin; seq = m.seq; burstSize = m.burst_size; count = m.count; bytes = m.bytes
            clock = Array(UnsafeBufferPointer(start: m.clock, count: nodes)); own = m.own; ref = m.ref
        }

        public init(origin: UInt32, seq: UInt64, clock: [UInt64], count: UInt32 = 1, burstSize: UInt32 = 0,
                    bytes: UInt64? = nil, own: Bool = false, ref: UInt64 = 0) {
            self.origin = origin; self.seq = seq; self.burstSize = burstSize; self.count = count
            self.bytes = bytes ?? 100 * UInt64(count); self.clock = clock; self.own = own; self.ref = ref
        }
    }

    public var message: Message?
    public var acks: [rc_lcr_ack]

    public init(message: Message?, acks: [rc_lcr_ack] = []) {
        self.message = message
        self.acks = acks
    }

    public init(_ frame: rc_lcr_frame, nodes: Int) {
        message = frame.has_message ? Message(frame.message, nodes: nodes) : nil
        acks = frame.ack_count > 0 ? Array(UnsafeBufferPointer(start: frame.acks, count: Int(frame.ack_count))) : []
    }

    /// The frame as rc_lcr_on_frame takes it, valid inside `body`. The message goes in as received (`own` false).
    public func withCFrame<R>(_ body: (UnsafePointer<rc_lcr_frame>) -> R) -> R {
        let clock = message?.clock ?? []
        return clock.withUnsafeBufferPointer { clockBuffer in
            acks.withUnsafeBufferPointer { ackBuffer in
                var frame = rc_lcr_frame()
                frame.has_message = message != nil
                if let m = message {
                    frame.message = rc_lcr_message(
                        origin: m.origin, seq: m.seq, burst_size: m.burstSize, count: m.count, bytes: m.bytes,
                        clock: clockBuffer.baseAddress, own: false, ref: m.ref)
                }
                frame.ack_count = UInt32(acks.count)
                frame.acks = ackBuffer.baseAddress
                return body(&frame)
            }
        }
    }
}

