// LCRRing: n LCR cores joined in a ring inside one process, driven in the synchronous round model
// (thesis 001_…, §2.2.2): in one round every process may send one frame to its successor and receive
// one from its predecessor. Every byte the harness touches is allocated in `init`, so the measured
// rounds allocate nothing (the core itself allocates only at init, rc_lcr.h).

import CRingCast
import RingCastLCR

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A ring of `nodes` rc_lcr cores, every process a continuous sender (§2.2.3), batching off, fairness on.
final class LCRRing {
    /// Bytes each application message claims to carry. The core never reads payloads (only their sizes),
    /// so no payload memory exists at all.
    static let applicationMessageBytes: UInt32 = 100

    let nodes: Int
    let sendQueueMax: UInt32
    /// The cores and their memory (the one Swift wrapper, RingCastLCR); the rounds call C on `cores` directly,
    /// so that they allocate nothing.
    private let owners: [LCRCore]
    private let cores: UnsafeMutablePointer<OpaquePointer>
    /// One frame in flight per link p → p+1: what the successor sees, copied out of the sender's core
    /// memory (as the wire decoder would write it) because rc_lcr_next_frame's pointers are valid only
    /// until the sender's next call.
    private let linkFrames: UnsafeMutablePointer<rc_lcr_frame>
    private let linkFull: UnsafeMutablePointer<Bool>
    private let linkAcks: UnsafeMutablePointer<rc_lcr_ack>
    private let linkClocks: UnsafeMutablePointer<UInt64>
    private let deliveryBuffer: UnsafeMutablePointer<rc_lcr_message>
    private let deliveryBufferCount: UInt32 = 64
    private var nextRef: rc_ref = 1

    /// LCR messages delivered, summed over every process (one LCR message counts n times).
    private(set) var deliveries: UInt64 = 0
    /// Rounds driven since init.
    private(set) var rounds: UInt64 = 0

    /// Creates the ring; settings obey rc_lcr.h's sizing rules (forward_queue_max > send_queue_max,
    /// pending_max ≥ nodes × (send_queue_max + forward_queue_max)).
    init(nodes: Int, sendQueueMax: UInt32 = 8, forwardQueueMax: UInt32 = 16) {
        precondition(nodes >= 2 && nodes <= Int(RC_LCR_NODES_MAX), "nodes out of range")
        precondition(forwardQueueMax > sendQueueMax, "rc_lcr.h sizing rule 1")
        self.nodes = nodes
        self.sendQueueMax = sendQueueMax
        cores = .allocate(capacity: nodes)
        linkFrames = .allocate(capacity: nodes)
        linkFrames.initialize(repeating: rc_lcr_frame(), count: nodes)
        linkFull = .allocate(capacity: nodes)
        linkFull.initialize(repeating: false, count: nodes)
        linkAcks = .allocate(capacity: nodes * nodes)
        linkAcks.initialize(repeating: rc_lcr_ack(), count: nodes * nodes)
        linkClocks = .allocate(capacity: nodes * nodes)
        linkClocks.initialize(repeating: 0, count: nodes * nodes)
        deliveryBuffer = .allocate(capacity: Int(deliveryBufferCount))
        deliveryBuffer.initialize(repeating: rc_lcr_message(), count: Int(deliveryBufferCount))
        owners = (0..<nodes).map { position in
            // rc_lcr.h's rule 2 at its minimum: pending_max = nodes × (send_queue_max + forward_queue_max).
            let settings = LCRCore.settings(
                nodes: UInt32(nodes), self: UInt32(position), window: sendQueueMax,
                forwardExtra: forwardQueueMax - sendQueueMax,
                batchCount: 1, // one application message = one LCR message
                batchBytes: 64 * 1024, fairness: true)
            do {
                return try LCRCore(settings)
            } catch {
                preconditionFailure("rc_lcr_init refused the settings: \(error)")
            }
        }
        for position in 0..<nodes { cores[position] = owners[position].pointer }
    }

    deinit {
        cores.deallocate()
        linkFrames.deallocate()
        linkFull.deallocate()
        linkAcks.deallocate()
        linkClocks.deallocate()
        deliveryBuffer.deallocate()
    }

    /// Drives rounds until `deliveries` reaches `target`. Traps if a round moves nothing (a stalled ring).
    @inline(__always)
    func run(untilDeliveries target: UInt64) {
        while deliveries < target { round() }
    }

    /// One synchronous round: top up every send queue, every process offers one frame, every frame is
    /// received, then every process delivers what became deliverable (rc_lcr.h's duties 1 and 2).
    func round() {
        let before = deliveries
        var framesMoved = 0
        for position in 0..<nodes { topUp(position) }
        for position in 0..<nodes where !linkFull[position] {
            if takeFrame(from: position) { linkFull[position] = true }
        }
        for position in 0..<nodes where linkFull[position] {
            let successor = cores[(position + 1) % nodes]
            let status = rc_lcr_on_frame(successor, linkFrames + position, nil, nil)
            if status == 0 {
                linkFull[position] = false
                framesMoved += 1
            } else {
                // Backpressure: the frame stays on the link and is offered again next round.
                precondition(status == -EAGAIN, "rc_lcr_on_frame: \(status)")
            }
        }
        for position in 0..<nodes { drainDeliveries(position) }
        rounds += 1
        precondition(framesMoved > 0 || deliveries > before, "ring stalled in round \(rounds)")
    }

    /// Continuous broadcasting: keep the send queue (the origin's window) full.
    @inline(__always)
    private func topUp(_ position: Int) {
        let core = cores[position]
        while rc_lcr_send_queue_count(core) < sendQueueMax {
            let status = rc_lcr_broadcast(core, nextRef, Self.applicationMessageBytes)
            precondition(status == 0, "rc_lcr_broadcast: \(status)")
            nextRef &+= 1
        }
    }

    /// Pulls the next frame of `position` and copies it onto the link; false when there is nothing to send.
    @inline(__always)
    private func takeFrame(from position: Int) -> Bool {
        var frame = rc_lcr_frame()
        guard rc_lcr_next_frame(cores[position], &frame) == 1 else { return false }
        let acks = linkAcks + position * nodes
        let clock = linkClocks + position * nodes
        if frame.ack_count > 0 {
            acks.update(from: frame.acks, count: Int(frame.ack_count))
            frame.acks = UnsafePointer(acks)
        }
        if frame.has_message {
            clock.update(from: frame.message.clock, count: nodes)
            frame.message.clock = UnsafePointer(clock)
            // The receiver names the bytes by its own handle; own is output-only.
            frame.message.ref = frame.message.seq
            frame.message.own = false
        }
        linkFrames[position] = frame
        return true
    }

    @inline(__always)
    private func drainDeliveries(_ position: Int) {
        let core = cores[position]
        while true {
            let count = rc_lcr_next_deliveries(core, deliveryBuffer, deliveryBufferCount)
            if count == 0 { return }
            deliveries &+= UInt64(count)
        }
    }

    /// Sum of one counter over every core.
    func statsSum(_ counter: (rc_lcr_stats) -> UInt64) -> UInt64 {
        var total: UInt64 = 0
        for position in 0..<nodes { total &+= counter(rc_lcr_stats_get(cores[position])) }
        return total
    }

    /// Checks that every process delivered the same number of LCR messages give or take what is in
    /// flight, and that no frame was ever rejected: the harness drove a correct ring.
    func checkHealthy() {
        precondition(statsSum { $0.frames_rejected } == 0, "a core rejected a frame")
        var least = UInt64.max
        var most: UInt64 = 0
        for position in 0..<nodes {
            let delivered = rc_lcr_stats_get(cores[position]).delivered_messages
            least = min(least, delivered)
            most = max(most, delivered)
        }
        precondition(least > 0, "a process delivered nothing")
        precondition(most - least <= UInt64(nodes) * UInt64(sendQueueMax) * 4, "deliveries diverge")
    }
}
