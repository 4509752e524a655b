internal import CRingCast
import RingCastMembership
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One view's LCR ring: a C engine started for the view's members, delivering to the group's handler with
/// origins translated to member ids and counts across views (`OriginMapping`).
///
/// Lifetime: created and started when the view is installed; frozen (its pending taken out) when the next
/// view change starts; destroyed right after. The engine thread calls `deliver`; everything else is the
/// group shell's thread.
final class ViewEngine: @unchecked Sendable {
    let view: Membership.View
    let position: Int
    let engine: EngineHandle
    let listen: Address
    private let context: ViewDeliveryContext
    private var frozen = false

    /// Ring-position → node id, and per position the origin's messages delivered before this view.
    var memberIDs: [UInt32] { view.members.map(\.node) }

    init(view: Membership.View, me: Membership.MemberID, configuration: Group.Configuration,
         seqBases: [UInt64], sink: DeliverySink) throws(RingCastError) {
        guard let position = view.position(of: me) else { preconditionFailure("installing a view without me") }
        self.view = view
        self.position = position
        let members = view.members.map(\.node)
        guard let listen = configuration.addresses[members[position]],
              let successor = configuration.addresses[members[(position + 1) % members.count]] else {
            throw .invalidConfiguration("a member of view \(view.id) has no address")
        }
        self.listen = listen
        let ringConfiguration = try Node.Configuration(position: position, nodeCount: members.count, listen: listen,
                                                       successor: successor, viewId: view.id, limits: configuration.limits)
        context = ViewDeliveryContext(memberIDs: members, seqBases: seqBases, sink: sink)
        var settings = ringConfiguration.engineSettings
        configuration.security.apply(to: &settings, clusterName: configuration.name, node: me.node,
                                     incarnation: me.incarnation, predecessor: members[(position + members.count - 1) % members.count],
                                     successor: members[(position + 1) % members.count])
        settings.deliver = ViewDeliveryContext.callback
        settings.deliver_context = Unmanaged.passUnretained(context).toOpaque()
        var pointer: OpaquePointer?
        let result = rc_engine_create(&pointer, &settings)
        guard result == 0, let pointer else {
            if result == -EINVAL { throw .invalidConfiguration("the engine refused the settings of view \(view.id)") }
            throw .system(call: "rc_engine_create", errno: -result)
        }
        engine = EngineHandle(pointer: pointer)
    }

    deinit { rc_engine_destroy(engine.pointer) }

    func start() throws(RingCastError) {
        let result = rc_engine_start(engine.pointer)
        guard result == 0 else {
            if result == -EADDRINUSE { throw .addressInUse(listen) }
            throw .engine(code: result)
        }
    }

    /// The neighbour whose link broke the ring, once the engine failed.
    var lostNeighbour: Int? {
        var error: Int32 = 0
        guard rc_engine_status(engine.pointer, &error) == RC_ENGINE_FAILED else { return nil }
        let count = view.members.count
        switch rc_engine_lost_link(engine.pointer) {
        case RC_ENGINE_LINK_PREDECESSOR: return (position + count - 1) % count
        case RC_ENGINE_LINK_SUCCESSOR: return (position + 1) % count
        default: return (position + 1) % count // a malformed frame or a transport error: blame the successor's link
        }
    }

    var statistics: rc_engine_stats { rc_engine_stats_get(engine.pointer) }

    /// Per position, this view's last delivered origin_seq (read after the engine thread ended).
    var deliveredPerPosition: [UInt64] { context.lastSeq }

    /// Freezes the ring (rc_engine_freeze) and returns C with every pending message, copied.
    func freeze(timeoutMillis: Int) -> FrozenState {
        precondition(!frozen, "a view engine is frozen once")
        frozen = true
        let sink = ExportSink()
        let unmanaged = Unmanaged.passRetained(sink)
        defer { unmanaged.release() }
        let result = rc_engine_freeze(engine.pointer, ExportSink.callback, unmanaged.toOpaque(), UInt32(timeoutMillis))
        if result != 0 { sink.clock = [] }
        return FrozenState(clock: sink.clock, pending: sink.pending, copies: sink.copies, error: result)
    }
}

/// What a frozen engine handed out: C (per position) and pending, with the payloads copied.
struct FrozenState {
    var clock: [UInt64]
    var pending: [Membership.Recovery<RecoveredPayload>.Entry]
    var copies: UInt64
    var error: Int32
}

/// The application messages of one LCR message kept for a view change: one contiguous copy of the bytes.
struct RecoveredPayload: Sendable, Hashable {
    var bytes: [UInt8]
    var lengths: [UInt32]
    /// Own messages: the broadcast tokens (this member's in-flight entries); empty otherwise.
    var tokens: [UInt64]
}

private final class ExportSink {
    var clock: [UInt64] = []
    var pending: [Membership.Recovery<RecoveredPayload>.Entry] = []
    var copies: UInt64 = 0

    static let callback: rc_engine_export_fn = { context, clock, nodes, message in
        guard let context, let clock else { return }
        let sink = Unmanaged<ExportSink>.fromOpaque(context).takeUnretainedValue()
        guard let message else {
            sink.clock = Array(UnsafeBufferPointer(start: clock, count: Int(nodes)))
            return
        }
        sink.add(message.pointee, nodes: Int(nodes))
    }

    private func add(_ message: rc_engine_pending, nodes: Int) {
        var payload = RecoveredPayload(bytes: [], lengths: [], tokens: [])
        for index in 0..<Int(message.count) {
            let app = message.apps[index]
            // A view change copies pending out of the engine (rare; counted as recovery copies).
            payload.bytes.append(contentsOf: UnsafeRawBufferPointer(start: app.bytes, count: Int(app.length)))
            payload.lengths.append(app.length)
            if message.own { payload.tokens.append(app.token) }
        }
        copies += UInt64(message.count)
        let clock = Array(UnsafeBufferPointer(start: message.clock, count: nodes))
        pending.append(.init(origin: message.origin, seq: message.seq, clock: clock, payload: payload))
    }
}

/// Receives a view's deliveries (engine thread) and the view change's forced ones (shell thread); never both
/// at once, because the engine is frozen before the view change delivers.
final class DeliverySink: Sendable {
    let handler: @Sendable (borrowing Deliveries) -> Void
    let outbox: GroupOutbox
    let deliveredMessages = Atomic<UInt64>(0)
    let deliveredBytes = Atomic<UInt64>(0)
    /// Set while this member must not deliver (excluded): deliveries are then dropped, never half-applied.
    let muted = Atomic<Bool>(false)

    init(handler: @escaping @Sendable (borrowing Deliveries) -> Void, outbox: GroupOutbox) {
        self.handler = handler
        self.outbox = outbox
    }

    func deliver(_ batch: UnsafePointer<rc_engine_delivery>, count: Int, mapping: OriginMapping) {
        precondition(!muted.load(ordering: .relaxed), "a delivery after this member was excluded")
        handler(Deliveries(base: batch, count: count, mapping: mapping))
        var bytes: UInt64 = 0
        for index in 0..<count { bytes += UInt64(batch[index].length) }
        deliveredMessages.add(UInt64(count), ordering: .relaxed)
        deliveredBytes.add(bytes, ordering: .relaxed)
        outbox.releaseOwn(batch: batch, count: count)
    }
}

/// The engine's synchronous handler for one view: keeps the mapping's memory and each origin's last seq.
private final class ViewDeliveryContext: @unchecked Sendable {
    let memberIDs: UnsafeMutablePointer<UInt32>
    let seqBases: UnsafeMutablePointer<UInt64>
    let lastSeqs: UnsafeMutablePointer<UInt64>
    let count: Int
    let sink: DeliverySink

    init(memberIDs: [UInt32], seqBases: [UInt64], sink: DeliverySink) {
        precondition(memberIDs.count == seqBases.count)
        count = memberIDs.count
        self.memberIDs = .allocate(capacity: count)
        self.memberIDs.initialize(from: memberIDs, count: count)
        self.seqBases = .allocate(capacity: count)
        self.seqBases.initialize(from: seqBases, count: count)
        lastSeqs = .allocate(capacity: count)
        lastSeqs.initialize(repeating: 0, count: count)
        self.sink = sink
    }

    deinit {
        memberIDs.deallocate()
        seqBases.deallocate()
        lastSeqs.deallocate()
    }

    var lastSeq: [UInt64] { Array(UnsafeBufferPointer(start: lastSeqs, count: count)) }

    func deliver(_ batch: UnsafePointer<rc_engine_delivery>, count: Int) {
        for index in 0..<count { lastSeqs[Int(batch[index].origin)] = batch[index].origin_seq }
        sink.deliver(batch, count: count, mapping: OriginMapping(memberIDs: memberIDs, seqBases: seqBases))
    }

    static let callback: rc_engine_deliver_fn = { context, batch, count in
        guard let context, let batch, count > 0 else { return }
        Unmanaged<ViewDeliveryContext>.fromOpaque(context).takeUnretainedValue().deliver(batch, count: Int(count))
    }
}
