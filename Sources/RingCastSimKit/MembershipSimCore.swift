internal import CRingCastCore
internal import RingCastLCR

/// One real LCR core (`rc_lcr.h`, through the shared wrapper ``LCRCore``) for one member in one view. The
/// membership simulator starts a fresh one at every install: LCR seqs restart at 1 per view. This adapter adds
/// only what the simulator needs: its settings, its payload size, and frames tagged for its links.
final class MembershipSimCore {
    private let core: LCRCore

    /// A core for ring position `position` of a ring of `nodes`, with queues sized by rc_lcr.h's rules.
    init(nodes: Int, position: Int, sendQueueMax: Int, forwardExtra: Int, batchCountMax: Int, fairness: Bool) {
        precondition(nodes >= 1 && position < nodes, "a ring position inside the ring")
        let settings = LCRCore.settings(
            nodes: UInt32(nodes), self: UInt32(position), window: UInt32(sendQueueMax), forwardExtra: UInt32(forwardExtra),
            batchCount: UInt32(batchCountMax), batchBytes: UInt32(batchCountMax * MembershipSimCore.appBytes),
            fairness: fairness)
        do {
            core = try LCRCore(settings)
        } catch {
            preconditionFailure("rc_lcr.h sizing rules hold by construction: \(error)")
        }
    }

    /// Payload size of every simulated application message.
    static let appBytes = 100

    /// utoBroadcast: 0, or -EAGAIN when the send queue (the window) is full.
    func broadcast(ref: UInt64) -> Int32 { core.broadcast(ref, bytes: UInt32(MembershipSimCore.appBytes)) }

    /// The next frame for the successor. An own message's `ref` is the index of its first application
    /// message in the send queue; a forwarded one's is the batch handle it arrived with.
    func nextFrame() -> LCRFrame? { core.nextFrame() }

    /// Rreceive from the predecessor: 0, -EAGAIN (hold it), or -EPROTO.
    func receive(_ frame: MembershipSimFrame) -> Int32 {
        var message: LCRFrame.Message?
        if let sent = frame.message {
            message = sent
            message?.ref = UInt64(frame.batch)
        }
        return core.receive(LCRFrame(message: message, acks: frame.acks)).rc
    }

    func deliveries() -> [LCRFrame.Message] { core.deliveries() }

    /// The core's clock C (§2.4.1): received[o] = LCR messages of o accepted.
    var clock: [UInt64] { core.clock }

    /// The pending list, first in ≺ order first.
    func pending() -> [LCRCore.PendingEntry] { core.pending() }

    /// Application messages broadcast and not yet delivered locally.
    var sendQueueCount: Int { Int(core.sendQueueCount) }
    var pendingCount: Int { Int(core.pendingCount) }
    var forwardQueueCount: Int { Int(core.forwardQueueCount) }
}

/// A ring frame on a simulated link, tagged with its view: frames of another view are not for this
/// ring (ARCHITECTURE §2: every frame carries its view id).
struct MembershipSimFrame {
    var viewID: UInt64
    var due: UInt64
    /// The LCR message, if any, as it left the sender's core.
    var message: LCRFrame.Message?
    /// Index of the batch's application messages in the world's batch store.
    var batch: Int
    var acks: [rc_lcr_ack]
}
