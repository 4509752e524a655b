internal import CRingCast

/// One delivered message, with its payload copied into Swift-owned storage (``DeliveryBatches``).
public struct Delivery: Sendable, Hashable {
    /// Ring position of the broadcaster.
    public let origin: Int
    /// The origin's broadcast count, from 1; unique per origin across views (the delivery log's `origin_seq`).
    public let originSeq: UInt64
    /// The view the message was delivered in.
    public let viewId: UInt64
    /// True when this node broadcast the message.
    public let isOwn: Bool
    /// For own messages, the value ``Node/broadcast(_:)`` returned; 0 otherwise.
    public let token: UInt64
    /// The payload (a copy: ``DeliveryBatches`` copies by design, and counts it in ``Node/Statistics/payloadCopies``).
    public let payload: [UInt8]

    public init(origin: Int, originSeq: UInt64, viewId: UInt64, isOwn: Bool, token: UInt64, payload: [UInt8]) {
        self.origin = origin
        self.originSeq = originSeq
        self.viewId = viewId
        self.isOwn = isOwn
        self.token = token
        self.payload = payload
    }
}

/// One delivered message as a view into the engine's memory: valid only during the delivery handler call.
///
/// Do not keep `payload` (or a pointer derived from it) after the handler returns: the engine reuses the memory.
public struct UnsafeDelivery {
    /// Ring position of the broadcaster.
    public let origin: Int
    /// The origin's broadcast count, from 1.
    public let originSeq: UInt64
    /// The view the message was delivered in.
    public let viewId: UInt64
    /// True when this node broadcast the message.
    public let isOwn: Bool
    /// For own messages, the value ``Node/broadcast(_:)`` returned; 0 otherwise.
    public let token: UInt64
    /// The payload in place (receive buffer, or the broadcaster's own array): no copy was made.
    public let payload: UnsafeRawBufferPointer

    init(_ delivery: rc_engine_delivery, mapping: OriginMapping? = nil) {
        // A group's engine numbers origins by ring position; the application sees member ids (ARCHITECTURE §3.3).
        // origin_seq is final as the engine emits it (it continues across views from the ring's bases).
        origin = mapping.map { Int($0.memberIDs[Int(delivery.origin)]) } ?? Int(delivery.origin)
        originSeq = delivery.origin_seq
        viewId = delivery.view_id
        isOwn = delivery.own
        token = delivery.token
        payload = UnsafeRawBufferPointer(start: delivery.bytes, count: Int(delivery.length))
    }

    /// Copies the payload into Swift-owned storage (the caller's choice; the library does not count it).
    public func copied() -> Delivery {
        Delivery(origin: origin, originSeq: originSeq, viewId: viewId, isOwn: isOwn, token: token,
                 payload: Array(payload))
    }
}

/// A batch of deliveries in total order, lent to the synchronous delivery handler for the duration of the call.
///
/// `~Copyable` and passed `borrowing`, so the handler cannot keep the batch; the views it hands out are valid
/// until the handler returns.
public struct Deliveries: ~Copyable {
    private let base: UnsafePointer<rc_engine_delivery>
    /// The number of deliveries in the batch (≥ 1).
    public let count: Int

    private let mapping: OriginMapping?

    init(base: UnsafePointer<rc_engine_delivery>, count: Int, mapping: OriginMapping? = nil) {
        self.base = base
        self.count = count
        self.mapping = mapping
    }

    /// The delivery at `index` (0..<count), in delivery order.
    public subscript(index: Int) -> UnsafeDelivery {
        precondition(index >= 0 && index < count, "delivery index \(index) outside 0..<\(count)")
        return UnsafeDelivery(base[index], mapping: mapping)
    }

    /// Calls `body` with every delivery, in order.
    public func forEach<E: Error>(_ body: (UnsafeDelivery) throws(E) -> Void) throws(E) {
        for index in 0..<count { try body(UnsafeDelivery(base[index], mapping: mapping)) }
    }
}

/// How a group's view translates engine origins (ring positions) to member ids. Immutable for the life of one
/// view's ring.
struct OriginMapping: @unchecked Sendable {
    let memberIDs: UnsafePointer<UInt32>
}
