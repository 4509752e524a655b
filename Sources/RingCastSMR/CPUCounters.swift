import Synchronization

/// Where a replica's CPU goes, by stage (thread CPU time, measured per batch or per received chunk, never per
/// operation): what `ringcast-kv bench` divides by the operations to report CPU per operation, broken down.
final class CPUCounters: Sendable {
    /// The client port's event loop (``ClientServer``), all of it but its wait in `poll` and its `POLLOUT` writes:
    /// accepting, receiving, decoding client frames, registering and queueing requests, answering what is answered
    /// at once (welcome, stale reads, statistics) and writing those answers.
    let ingestNanos = Atomic<UInt64>(0)
    /// The broadcaster (one task): packing entries into ring batches and encoding them.
    let broadcastNanos = Atomic<UInt64>(0)
    /// The delivery thread: decoding ring batches and commands.
    let decodeNanos = Atomic<UInt64>(0)
    /// The delivery thread: the state machine's `apply`.
    let applyNanos = Atomic<UInt64>(0)
    /// The delivery thread: encoding and queueing replies, answering reads, and writing a delivered batch's
    /// replies (one non-blocking send per connection, ``Connection/flushDeferred()``).
    let replyNanos = Atomic<UInt64>(0)
    /// The delivery thread, all of it (decode, sessions, apply, replies).
    let deliveryNanos = Atomic<UInt64>(0)
    /// The client port's event loop, writing what the delivery thread's non-blocking write left (a full socket,
    /// `POLLOUT`).
    let writerNanos = Atomic<UInt64>(0)

    init() {}

    /// Adds the thread CPU time since `start` to `counter`; returns now (the next start).
    @discardableResult
    static func charge(_ counter: borrowing Atomic<UInt64>, since start: UInt64) -> UInt64 {
        let now = threadCPUNanos()
        counter.add(now &- start, ordering: .relaxed)
        return now
    }
}
