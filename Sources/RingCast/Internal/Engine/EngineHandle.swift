internal import CRingCast

/// The C engine handle.
///
/// `@unchecked Sendable` because a raw pointer cannot say what rc_engine.h guarantees: the handle is fixed from
/// `rc_engine_create` to `rc_engine_destroy` (which ``Ring``'s deinit calls, when no thread can use it any more);
/// `rc_engine_status`, `rc_engine_stats_get`, the fd getters and `rc_engine_stop` may be called from any thread;
/// `rc_engine_broadcast` only under the ``Outbox``'s state lock (one producer at a time, the lock's happens-before
/// making it one logical producer thread); peek/release only on the ring's delivery consumer thread.
struct EngineHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}
