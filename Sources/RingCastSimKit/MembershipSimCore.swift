internal import CRingCast

/// One real LCR core (`rc_lcr.h`) for one member in one view, owning its memory. The membership
/// simulator starts a fresh one at every install: LCR seqs restart at 1 per view.
final class MembershipSimCore {
    /// One LCR message as it leaves a core, its clock and ACKs copied out of core memory.
    struct OutFrame {
        var hasMessage: Bool
        var origin: UInt32
        var seq: UInt64
        var burstSize: UInt32
        var count: UInt32
        var bytes: UInt64
        var clock: [UInt64]
        /// Own message: index of its first application message in the send queue; forwarded: our handle.
        var ref: UInt64
        var own: Bool
        var acks: [rc_lcr_ack]
    }

    struct Delivered {
        var origin: UInt32
        var seq: UInt64
        var count: UInt32
        var ref: UInt64
        var own: Bool
    }

    struct Pending {
        var origin: UInt32
        var seq: UInt64
        var count: UInt32
        var own: Bool
        var clock: [UInt64]
    }

    let nodes: Int
    private let memory: UnsafeMutableRawPointer
    private let core: OpaquePointer
    /// Deliveries are pulled in batches of this many into one buffer allocated at start.
    private static let deliveryBatchMax = 16
    private let deliveryBuffer = UnsafeMutablePointer<rc_lcr_message>.allocate(capacity: deliveryBatchMax)

    /// A core for ring position `position` of a ring of `nodes`, with queues sized by rc_lcr.h's rules.
    init(nodes: Int, position: Int, sendQueueMax: Int, forwardExtra: Int, batchCountMax: Int, fairness: Bool) {
        precondition(nodes >= 1 && position < nodes, "a ring position inside the ring")
        var settings = rc_lcr_settings()
        settings.nodes = UInt32(nodes)
        settings.`self` = UInt32(position)
        settings.send_queue_max = UInt32(sendQueueMax)
        settings.forward_queue_max = UInt32(sendQueueMax + forwardExtra)
        settings.pending_max = UInt32(nodes * (2 * sendQueueMax + forwardExtra))
        settings.batch_count_max = UInt32(batchCountMax)
        settings.batch_bytes_max = UInt32(batchCountMax * MembershipSimCore.appBytes)
        settings.fairness = fairness
        let size = rc_lcr_memory_size(&settings)
        precondition(size > 0, "rc_lcr.h sizing rules hold by construction")
        memory = UnsafeMutableRawPointer.allocate(byteCount: (size + 15) & ~15, alignment: 16)
        var handle: OpaquePointer?
        let result = rc_lcr_init(&handle, memory, size, &settings)
        precondition(result == 0 && handle != nil, "rc_lcr_init: \(result)")
        core = handle!
        self.nodes = nodes
    }

    deinit {
        memory.deallocate()
        deliveryBuffer.deallocate()
    }

    /// Payload size of every simulated application message.
    static let appBytes = 100

    /// utoBroadcast: 0, or -EAGAIN when the send queue (the window) is full.
    func broadcast(ref: UInt64) -> Int32 {
        rc_lcr_broadcast(core, ref, UInt32(MembershipSimCore.appBytes))
    }

    func nextFrame() -> OutFrame? {
        var frame = rc_lcr_frame()
        guard rc_lcr_next_frame(core, &frame) == 1 else { return nil }
        let message = frame.message
        let clock = frame.has_message ? Array(UnsafeBufferPointer(start: message.clock, count: nodes)) : []
        let acks = frame.ack_count > 0 ? Array(UnsafeBufferPointer(start: frame.acks, count: Int(frame.ack_count))) : []
        return OutFrame(hasMessage: frame.has_message, origin: message.origin, seq: message.seq,
                        burstSize: message.burst_size, count: message.count, bytes: message.bytes, clock: clock,
                        ref: message.ref, own: message.own, acks: acks)
    }

    /// Rreceive from the predecessor: 0, -EAGAIN (hold it), or -EPROTO.
    func receive(_ frame: MembershipSimFrame) -> Int32 {
        frame.clock.withUnsafeBufferPointer { clock in
            frame.acks.withUnsafeBufferPointer { acks in
                var input = rc_lcr_frame()
                input.has_message = frame.hasMessage
                if frame.hasMessage {
                    input.message = rc_lcr_message(
                        origin: frame.origin, seq: frame.seq, burst_size: frame.burstSize, count: frame.count,
                        bytes: frame.bytes, clock: clock.baseAddress, own: false, ref: UInt64(frame.batch))
                }
                input.ack_count = UInt32(frame.acks.count)
                input.acks = acks.baseAddress
                return rc_lcr_on_frame(core, &input, nil, nil)
            }
        }
    }

    func deliveries() -> [Delivered] {
        var out: [Delivered] = []
        while true {
            let count = Int(rc_lcr_next_deliveries(core, deliveryBuffer, UInt32(Self.deliveryBatchMax)))
            for index in 0..<count {
                let message = deliveryBuffer[index]
                out.append(Delivered(origin: message.origin, seq: message.seq, count: message.count,
                                     ref: message.ref, own: message.own))
            }
            if count < Self.deliveryBatchMax { return out }
        }
    }

    /// The core's clock C (§2.4.1): received[o] = LCR messages of o accepted.
    var clock: [UInt64] { Array(UnsafeBufferPointer(start: rc_lcr_clock(core), count: nodes)) }

    /// The pending list, first in ≺ order first.
    func pending() -> [Pending] {
        var out: [Pending] = []
        var view = rc_lcr_pending_view()
        var position: UInt32 = 0
        while rc_lcr_pending_at(core, position, &view) == 0 {
            out.append(Pending(origin: view.origin, seq: view.seq, count: view.count, own: view.own,
                               clock: Array(UnsafeBufferPointer(start: view.clock, count: nodes))))
            position += 1
        }
        return out
    }

    /// Application messages broadcast and not yet delivered locally.
    var sendQueueCount: Int { Int(rc_lcr_send_queue_count(core)) }
    var pendingCount: Int { Int(rc_lcr_pending_count(core)) }
    var forwardQueueCount: Int { Int(rc_lcr_forward_queue_count(core)) }
}

/// A ring frame on a simulated link, tagged with its view: frames of another view are not for this
/// ring (ARCHITECTURE §2: every frame carries its view id).
struct MembershipSimFrame {
    var viewID: UInt64
    var due: UInt64
    var hasMessage: Bool
    var origin: UInt32
    var seq: UInt64
    var burstSize: UInt32
    var count: UInt32
    var bytes: UInt64
    var clock: [UInt64]
    /// Index of the batch's application messages in the world's batch store.
    var batch: Int
    var acks: [rc_lcr_ack]
}
