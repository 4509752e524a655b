import CRingCast

/// Owns one sans-IO LCR core and its caller-provided memory, for tests.
final class LCRCore {
    let core: OpaquePointer
    let memory: UnsafeMutableRawPointer
    let nodes: UInt32

    /// Settings that satisfy rc_lcr.h's sizing rules unless a test overrides them.
    static func settings(
        nodes: UInt32, self position: UInt32, window: UInt32 = 8, batchCount: UInt32 = 1,
        batchBytes: UInt32 = 1 << 20, fairness: Bool = true
    ) -> rc_lcr_settings {
        rc_lcr_settings(
            nodes: nodes, self: position, send_queue_max: window, forward_queue_max: window + 1,
            pending_max: nodes * (2 * window + 1), batch_count_max: batchCount,
            batch_bytes_max: batchBytes, fairness: fairness, test_fault: 0)
    }

    init(_ settings: rc_lcr_settings) throws(LCRError) {
        var settings = settings
        let size = rc_lcr_memory_size(&settings)
        guard size > 0 else { throw LCRError.code(-22) }
        memory = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        var out: OpaquePointer?
        let rc = rc_lcr_init(&out, memory, size, &settings)
        guard rc == 0, let out else {
            memory.deallocate()
            throw LCRError.code(rc)
        }
        core = out
        nodes = settings.nodes
    }

    deinit { memory.deallocate() }

    func broadcast(_ ref: UInt64, bytes: UInt32 = 100) -> Int32 { rc_lcr_broadcast(core, ref, bytes) }

    /// The next frame, copied out of core memory so that it outlives the next call.
    func nextFrame() -> Frame? {
        var frame = rc_lcr_frame()
        guard rc_lcr_next_frame(core, &frame) == 1 else { return nil }
        return Frame(frame, nodes: Int(nodes))
    }

    func receive(_ frame: Frame) -> (rc: Int32, forwarded: Bool) {
        let outcome = receiveReporting(frame)
        return (outcome.rc, outcome.forwarded)
    }

    /// rc_lcr_on_frame with both out-parameters: will the message be forwarded, was it a duplicate.
    func receiveReporting(_ frame: Frame) -> (rc: Int32, forwarded: Bool, duplicate: Bool) {
        var forwarded = false, duplicate = false
        let rc = frame.withCFrame { rc_lcr_on_frame(core, $0, &forwarded, &duplicate) }
        return (rc, forwarded, duplicate)
    }

    func deliveries() -> [Frame.Message] {
        var out = [rc_lcr_message](repeating: rc_lcr_message(), count: 64)
        var all: [Frame.Message] = []
        while true {
            let count = out.withUnsafeMutableBufferPointer { rc_lcr_next_deliveries(core, $0.baseAddress, 64) }
            if count == 0 { return all }
            all += out[0..<Int(count)].map { Frame.Message($0, nodes: Int(nodes)) }
        }
    }

    var stats: rc_lcr_stats { rc_lcr_stats_get(core) }
    var pendingCount: UInt32 { rc_lcr_pending_count(core) }
    var forwardQueueCount: UInt32 { rc_lcr_forward_queue_count(core) }
}

enum LCRError: Error, Equatable { case code(Int32) }

/// A frame with its message clock and ACKs copied into Swift arrays.
struct Frame {
    struct Message: Equatable {
        var origin: UInt32
        var seq: UInt64
        var burstSize: UInt32
        var count: UInt32
        var bytes: UInt64
        var clock: [UInt64]
        var own: Bool
        var ref: UInt64

        init(_ m: rc_lcr_message, nodes: Int) {
            origin = m.origin; seq = m.seq; burstSize = m.burst_size; count = m.count; bytes = m.bytes
            clock = Array(UnsafeBufferPointer(start: m.clock, count: nodes)); own = m.own; ref = m.ref
        }

        init(origin: UInt32, seq: UInt64, clock: [UInt64], count: UInt32 = 1, burstSize: UInt32 = 0, ref: UInt64 = 0) {
            self.origin = origin; self.seq = seq; self.burstSize = burstSize; self.count = count
            bytes = 100 * UInt64(count); self.clock = clock; own = false; self.ref = ref
        }
    }

    var message: Message?
    var acks: [rc_lcr_ack]

    init(message: Message?, acks: [rc_lcr_ack] = []) {
        self.message = message
        self.acks = acks
    }

    init(_ frame: rc_lcr_frame, nodes: Int) {
        message = frame.has_message ? Message(frame.message, nodes: nodes) : nil
        acks = Array(UnsafeBufferPointer(start: frame.acks, count: Int(frame.ack_count)))
    }

    func withCFrame<R>(_ body: (UnsafePointer<rc_lcr_frame>) -> R) -> R {
        var clock = message?.clock ?? []
        return clock.withUnsafeMutableBufferPointer { clockBuffer in
            acks.withUnsafeBufferPointer { ackBuffer in
                var frame = rc_lcr_frame()
                frame.has_message = message != nil
                if let m = message {
                    frame.message = rc_lcr_message(
                        origin: m.origin, seq: m.seq, burst_size: m.burstSize, count: m.count, bytes: m.bytes,
                        clock: UnsafePointer(clockBuffer.baseAddress), own: false, ref: m.ref)
                }
                frame.ack_count = UInt32(acks.count)
                frame.acks = ackBuffer.baseAddress
                return body(&frame)
            }
        }
    }
}
