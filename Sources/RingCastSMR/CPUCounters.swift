import Synchronization

/// Where a replica's CPU goes, by stage (thread CPU time, measured per batch or per received chunk, never per
/// operation): what `ringcast-kv bench` divides by the operations to report CPU per operation, broken down.
///
/// Sampled: reading a thread's CPU clock is a system call (`CLOCK_THREAD_CPUTIME_ID` has no vDSO path), and timing
/// every batch and stage cost ~5 % of a loaded replica's CPU (profiled). So the hot loops time one unit in
/// ``sampleEvery`` — the delivery thread one group of deliveries, the client port's loop one round, the broadcaster
/// one ring message — and charge it ``sampleEvery`` times (``charge(_:since:weight:)``). Deterministic 1-in-N
/// sampling of units that follow each other under a steady load: the totals are estimates whose error shrinks with
/// the number of units (thousands per second at load), and the stages of one sampled unit are measured together,
/// so the breakdown stays consistent (decode + apply + reply ≤ delivery). Groups of ring batches applied off the
/// delivery thread (a learner's feed, a state transfer's suffix) are sampled the same way
/// (``ReplicaCore/applyGroupOffThread(_:)``); the loop's `POLLOUT` writes, a rare path, are timed every time.
final class CPUCounters: Sendable {
    /// One unit in this many is timed (and charged this many times).
    static let sampleEvery: UInt64 = 16

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
        charge(counter, since: start, weight: 1)
    }

    /// Adds `weight` times the thread CPU time since `start` to `counter` (a sampled unit stands for `weight`);
    /// returns now.
    @discardableResult
    static func charge(_ counter: borrowing Atomic<UInt64>, since start: UInt64, weight: UInt64) -> UInt64 {
        let now = threadCPUNanos()
        counter.add((now &- start) &* weight, ordering: .relaxed)
        return now
    }

    /// Counts units and says which to time: every ``CPUCounters/sampleEvery``-th (one owner thread at a time).
    struct Sampler {
        private var count: UInt64 = 0
        init() {}
        /// The weight to charge this unit with: ``CPUCounters/sampleEvery`` when it is timed, 0 when it is not.
        mutating func next() -> UInt64 {
            count &+= 1
            // The first unit is timed (a short run still gets figures), then every N-th.
            return (count &- 1) % CPUCounters.sampleEvery == 0 ? CPUCounters.sampleEvery : 0
        }
    }
}
