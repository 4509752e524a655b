internal import CRingCast
import RingCastMembership
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where a member's deliveries go, for every ring it runs: the application (its synchronous handler, or the
/// bounded ``DeliveryBatches`` buffer) and the ``Outbox``, which drops the payloads of own messages once they are
/// delivered back. A ring's engine calls it on its thread; a view change calls ``deliverRecovered(_:viewID:memberIDs:)``
/// on the group's shell thread — never both at once, because the ring is frozen before the view change delivers.
final class DeliverySink: Sendable {
    enum Target: Sendable {
        /// Zero copies: the handler sees views of the engine's memory during the call.
        case handler(@Sendable (borrowing Deliveries) -> Void)
        /// One copy per delivery (counted), then a bounded buffer the application reads at its pace.
        case buffer(DeliveryBuffer)
    }

    let target: Target
    let outbox: Outbox
    let deliveredMessages = Atomic<UInt64>(0)
    let deliveredBytes = Atomic<UInt64>(0)
    /// Set while this member must not deliver (excluded): a delivery then is a bug, never half-applied.
    let muted = Atomic<Bool>(false)
    /// pthread_self() of the thread that last delivered to the handler: shutdown() from inside the handler would
    /// make that thread wait for itself.
    let deliveringThread = Atomic<UInt>(0)
    /// Sequence mode: payload copies made for the buffer, and the most deliveries one peek saw.
    let copies = Atomic<UInt64>(0)
    let peekHighWater = Atomic<Int>(0)

    init(target: Target, outbox: Outbox) {
        self.target = target
        self.outbox = outbox
    }

    /// A batch of a ring's deliveries (handler mode; engine thread).
    func deliver(_ batch: UnsafePointer<rc_engine_delivery>, count: Int, mapping: OriginMapping?) {
        precondition(!muted.load(ordering: .relaxed), "a delivery after this member was excluded")
        guard case let .handler(handler) = target else { preconditionFailure("a handler delivery in sequence mode") }
        deliveringThread.store(UInt(pthread_self()), ordering: .relaxed)
        handler(Deliveries(base: batch, count: count, mapping: mapping))
        account(batch, count: count)
    }

    /// Fig. 2.7 line 6 (forceDeliver): the application messages of one old-view LCR message the view change
    /// delivers, numbered by the engine that exported them (`firstOriginSeq`), in the shape of any other delivery.
    func deliverRecovered(_ entry: Membership.Recovery<RecoveredPayload>.Entry, viewID: UInt64, memberIDs: [UInt32]) {
        let payload = entry.payload
        precondition(payload.tokens.isEmpty || payload.tokens.count == payload.lengths.count)
        precondition(Int(entry.origin) < memberIDs.count, "a recovered message of an origin outside the view")
        var batch: [rc_engine_delivery] = []
        batch.reserveCapacity(payload.lengths.count)
        payload.bytes.withUnsafeBytes { raw in
            var offset = 0
            for (index, length) in payload.lengths.enumerated() {
                batch.append(rc_engine_delivery(
                    bytes: raw.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) + offset }, length: length,
                    origin: entry.origin, origin_seq: payload.firstOriginSeq + UInt64(index), view_id: viewID,
                    token: payload.tokens.isEmpty ? 0 : payload.tokens[index], own: !payload.tokens.isEmpty))
                offset += Int(length)
            }
            memberIDs.withUnsafeBufferPointer { ids in
                batch.withUnsafeBufferPointer { deliveries in
                    deliver(deliveries.baseAddress!, count: deliveries.count,
                            mapping: OriginMapping(memberIDs: ids.baseAddress!))
                }
            }
        }
    }

    private func account(_ batch: UnsafePointer<rc_engine_delivery>, count: Int) {
        var bytes: UInt64 = 0
        for index in 0..<count { bytes += UInt64(batch[index].length) }
        deliveredMessages.add(UInt64(count), ordering: .relaxed)
        deliveredBytes.add(bytes, ordering: .relaxed)
        outbox.releaseOwn(batch: batch, count: count)
    }

    /// Sequence mode, the ring's consumer thread: peeks the delivery ring, copies, releases, hands batches to the
    /// buffer; ends the buffer when the ring stops or fails (with its error).
    func consume(from ring: Ring, into buffer: DeliveryBuffer, stopFD: Int32) {
        let engine = ring.engine.pointer
        let deliveryFD = rc_engine_delivery_fd(engine)
        let capacity = ring.configuration.limits.deliveryBatchCountMax
        let scratch = UnsafeMutablePointer<rc_engine_delivery>.allocate(capacity: capacity)
        defer { scratch.deallocate() }
        var failure: RingCastError?
        consuming: while true {
            let count = Int(rc_engine_deliveries_peek(engine, scratch, UInt32(capacity)))
            if count == 0 {
                switch ring.status {
                case let .failed(error):
                    failure = error
                    break consuming
                case .stopped: break consuming
                default: break
                }
                let ready = waitReadable([deliveryFD, stopFD], timeoutMillis: 100)
                if ready[1] { break consuming }
                if ready[0] { clearEventFD(deliveryFD) }
                continue
            }
            if count > peekHighWater.load(ordering: .relaxed) { peekHighWater.store(count, ordering: .relaxed) }
            var batch: [Delivery] = []
            batch.reserveCapacity(count)
            for index in 0..<count {
                // The one user-space copy of this path, by design (counted).
                batch.append(UnsafeDelivery(scratch[index]).copied())
            }
            copies.add(UInt64(count), ordering: .relaxed)
            rc_engine_deliveries_release(engine, UInt32(count))
            account(scratch, count: count)
            if !buffer.push(batch, stopFD: stopFD) { break }
        }
        buffer.finish(failure)
    }
}
