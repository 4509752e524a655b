internal import CRingCast
import RingCastMembership
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One LCR ring: the C engine and where its deliveries go. The one Swift adapter of `rc_engine`: a ``Node`` is one
/// ring with a fixed view; a ``Group`` starts one per view (created and started when the view is installed, frozen
/// when the next view change starts, destroyed right after) and feeds every one from the same ``Outbox``.
///
/// The engine emits final values: `origin_seq` continues across views from `originSeqBases` (rc_engine.h), so
/// nothing above counts deliveries. Threads: the engine thread calls the sink (handler mode); in sequence mode the
/// ring's *delivery consumer* thread peeks, copies, releases; everything else is the owner's thread.
final class Ring: @unchecked Sendable {
    let configuration: Node.Configuration
    /// The group view this ring runs (nil for a ``Node``).
    let view: Membership.View?
    let engine: EngineHandle
    let sink: DeliverySink
    private let context: RingDeliveryContext
    /// Level-triggered stop signal for the consumer thread (written once, never drained).
    private let stopPipe: WakePipe
    private var consumer: OSThread?
    private var frozen = false

    /// - Parameters:
    ///   - view: the group view (member ids by ring position) or nil (origins are ring positions).
    ///   - originSeqBases: per ring position, the origin's messages delivered before this ring (empty = none).
    init(configuration: Node.Configuration, view: Membership.View?, originSeqBases: [UInt64],
         sink: DeliverySink) throws(RingCastError) {
        precondition(originSeqBases.isEmpty || originSeqBases.count == configuration.nodeCount,
                     "one origin_seq base per ring position")
        precondition(view.map { $0.members.count == configuration.nodeCount } ?? true, "one ring position per member")
        self.configuration = configuration
        self.view = view
        self.sink = sink
        context = RingDeliveryContext(memberIDs: view?.members.map(\.node), sink: sink)
        stopPipe = try WakePipe()
        var settings = configuration.engineSettings
        if let view {
            // A group's ring authenticates members by node id (and binds their incarnations into the handshake), not
            // by ring position as a node's does.
            let members = view.members, count = members.count, position = configuration.position
            configuration.security.apply(to: &settings, clusterName: configuration.name, node: members[position].node,
                                         incarnation: members[position].incarnation,
                                         predecessor: members[(position + count - 1) % count].node,
                                         successor: members[(position + 1) % count].node)
        }
        if case .handler = sink.target {
            settings.deliver = RingDeliveryContext.callback
            settings.deliver_context = Unmanaged.passUnretained(context).toOpaque()
        }
        var pointer: OpaquePointer?
        let result = originSeqBases.withUnsafeBufferPointer { bases in
            settings.origin_seq_bases = bases.isEmpty ? nil : bases.baseAddress // an empty array's address is not nil
            return rc_engine_create(&pointer, &settings)
        }
        guard result == 0, let pointer else {
            stopPipe.close()
            if result == -EINVAL {
                throw .invalidConfiguration("the engine refused the settings (\(RingCastError.describe(code: result)))")
            }
            throw .system(call: "rc_engine_create", errno: -result)
        }
        engine = EngineHandle(pointer: pointer)
    }

    deinit {
        // The owner stopped the consumer (stop()) or never started it; the engine goes before the delivery context.
        precondition(consumer == nil, "a ring destroyed with its consumer thread running")
        rc_engine_destroy(engine.pointer)
        stopPipe.close()
    }

    /// Listens and starts the engine thread (and, in sequence mode, the consumer thread).
    func start() throws(RingCastError) {
        let result = rc_engine_start(engine.pointer)
        guard result == 0 else {
            if result == -EADDRINUSE { throw .addressInUse(configuration.listen) }
            throw .engine(code: result)
        }
        if case let .buffer(buffer) = sink.target {
            do {
                consumer = try OSThread { [self] in sink.consume(from: self, into: buffer, stopFD: stopPipe.readFD) }
            } catch {
                rc_engine_stop(engine.pointer)
                throw error
            }
        }
    }

    /// Stops the engine thread and the consumer (idempotent; bounded by the engine's stop time).
    func stop() {
        stopPipe.signal()
        rc_engine_stop(engine.pointer)
        consumer?.join()
        consumer = nil
    }

    var status: Node.Status {
        var error: Int32 = 0
        switch rc_engine_status(engine.pointer, &error) {
        case RC_ENGINE_CREATED: return .created
        case RC_ENGINE_CONNECTING: return .connecting
        case RC_ENGINE_RUNNING: return .running
        case RC_ENGINE_STOPPED: return .stopped
        default: return .failed(.engine(code: error))
        }
    }

    var statistics: rc_engine_stats { rc_engine_stats_get(engine.pointer) }

    /// The ring position of the neighbour whose link broke the ring, once the engine failed.
    var lostNeighbour: Int? {
        var error: Int32 = 0
        guard rc_engine_status(engine.pointer, &error) == RC_ENGINE_FAILED else { return nil }
        let count = configuration.nodeCount, position = configuration.position
        switch rc_engine_lost_link(engine.pointer) {
        case RC_ENGINE_LINK_PREDECESSOR: return (position + count - 1) % count
        case RC_ENGINE_LINK_SUCCESSOR: return (position + 1) % count
        default: return (position + 1) % count // a malformed frame or a transport error: blame the successor's link
        }
    }

    /// Per ring position, the last origin_seq delivered (the base if none); once frozen or stopped.
    var deliveredPerPosition: [UInt64] {
        var out = [UInt64](repeating: 0, count: configuration.nodeCount)
        out.withUnsafeMutableBufferPointer { rc_engine_origin_delivered(engine.pointer, $0.baseAddress, UInt32($0.count)) }
        return out
    }

    /// Freezes the ring (rc_engine_freeze) and returns C with every pending message, copied.
    func freeze(timeoutMillis: Int) -> FrozenState {
        precondition(!frozen, "a ring is frozen once")
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
    /// The origin_seq of the first application message (the engine numbers them; the rest follow by one).
    var firstOriginSeq: UInt64
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
        precondition(message.count >= 1)
        var payload = RecoveredPayload(bytes: [], lengths: [], firstOriginSeq: message.apps[0].origin_seq, tokens: [])
        for index in 0..<Int(message.count) {
            let app = message.apps[index]
            precondition(app.origin_seq == payload.firstOriginSeq + UInt64(index), "an LCR message's origin_seqs are consecutive")
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

/// The engine's synchronous handler for one ring (the C `deliver_context`): keeps the member ids by ring position
/// in memory the deliveries can point at for the ring's life.
private final class RingDeliveryContext: @unchecked Sendable {
    let memberIDs: UnsafeMutablePointer<UInt32>?
    let sink: DeliverySink

    init(memberIDs: [UInt32]?, sink: DeliverySink) {
        if let memberIDs {
            let pointer = UnsafeMutablePointer<UInt32>.allocate(capacity: memberIDs.count)
            pointer.initialize(from: memberIDs, count: memberIDs.count)
            self.memberIDs = pointer
        } else {
            self.memberIDs = nil
        }
        self.sink = sink
    }

    deinit { memberIDs?.deallocate() }

    /// The C callback (no captures: the context pointer carries the Swift object, unretained — the engine is
    /// destroyed before the context is released).
    static let callback: rc_engine_deliver_fn = { context, batch, count in
        guard let context, let batch, count > 0 else { return }
        let ring = Unmanaged<RingDeliveryContext>.fromOpaque(context).takeUnretainedValue()
        ring.sink.deliver(batch, count: Int(count), mapping: ring.memberIDs.map { OriginMapping(memberIDs: UnsafePointer($0)) })
    }
}
