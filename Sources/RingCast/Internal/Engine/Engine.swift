internal import CRingCast
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The C engine handle.
///
/// `@unchecked Sendable` because a raw pointer cannot say what rc_engine.h guarantees: the handle is fixed from
/// `rc_engine_create` to `rc_engine_destroy` (which its owner's deinit calls — `EngineCore` for a `Node`,
/// `ViewEngine` for each view of a `Group` — when no thread can use it any more); `rc_engine_status`,
/// `rc_engine_stats_get`, the fd getters and `rc_engine_stop` may be called from any thread;
/// `rc_engine_broadcast` only under one lock per engine (`EngineCore.producer`'s, or `GroupOutbox`'s state lock:
/// one producer at a time, the lock's happens-before making it one logical producer thread); peek/release only
/// on the delivery consumer thread.
struct EngineHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// The synchronous delivery handler and what it needs on the engine thread (the C `deliver_context`).
final class HandlerContext: Sendable {
    let handler: @Sendable (borrowing Deliveries) -> Void
    let inFlight: InFlight
    /// pthread_self() of the engine thread, once it delivered: shutdown() from inside the handler would
    /// make the engine thread wait for itself.
    let engineThread = Atomic<UInt>(0)

    init(handler: @escaping @Sendable (borrowing Deliveries) -> Void, inFlight: InFlight) {
        self.handler = handler
        self.inFlight = inFlight
    }

    func deliver(_ batch: UnsafePointer<rc_engine_delivery>, count: Int) {
        engineThread.store(UInt(pthread_self()), ordering: .relaxed)
        handler(Deliveries(base: batch, count: count))
        inFlight.release(batch: batch, count: count)
    }

    /// The C callback (no captures: the context pointer carries the Swift object, unretained — the engine is
    /// destroyed before the context is released).
    static let callback: rc_engine_deliver_fn = { context, batch, count in
        guard let context, let batch, count > 0 else { return }
        Unmanaged<HandlerContext>.fromOpaque(context).takeUnretainedValue().deliver(batch, count: Int(count))
    }
}

/// How a broadcast attempt ended.
enum SubmitOutcome {
    case submitted(UInt64)
    case full
    case failed(RingCastError)
}

/// The state of the broadcast producer, under one lock.
struct ProducerState {
    struct Waiter {
        let id: UInt64
        let payload: [UInt8]
        let continuation: CheckedContinuation<Result<UInt64, RingCastError>, Never>
    }

    var stopping = false
    var nextToken: UInt64 = 1
    var waiters = FIFO<Waiter>()
    var nextWaiterID: UInt64 = 1
    var broadcastWaits: UInt64 = 0
}

enum Lifecycle {
    case created
    case started(threads: [OSThread])
    case failedToStart
    case shutDown
}
