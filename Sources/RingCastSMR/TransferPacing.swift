import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The pace of a snapshot stream: a token bucket in bytes. Sans-IO — the caller passes the time, the bucket says how
/// long to wait — so that it can be tested with a clock of the test's own, and the stream's thread does the waiting.
///
/// Why pace at all: a provider that streams as fast as the joiner reads takes CPU (serialising, copying, the TCP
/// stack) and link bandwidth from the ring for the transfer's duration; on a machine or a link the ring needs, the
/// others' throughput drops (issue #12, Done-when 4). The bucket spreads the same bytes over a longer time. The
/// price: a longer transfer, hence a longer suffix at the joiner (its deliveries wait in the bounded
/// ``SuffixStore`` until its restore ends) — size ``Replica/Options/suffixBytesMax`` for the load × (state size ÷
/// rate), or the joiner's full suffix store stops the ring (backpressure, no loss).
///
/// The bucket holds at most ``burstBytes`` tokens (one chunk), so the stream is never ahead of `rate × elapsed +
/// burst` whatever the scheduling; a thread that was descheduled for a while does not get a larger burst.
struct TokenBucket {
    /// Bytes per second; > 0.
    let bytesPerSecond: UInt64
    /// Tokens the bucket holds at most (a full bucket is the largest burst).
    let burstBytes: UInt64
    private(set) var tokens: UInt64
    private var lastRefillNanos: UInt64
    /// Sub-token remainder of the last refill (nanoseconds × rate not yet worth one byte), so that many small
    /// refills add up to exactly the rate.
    private var remainder: UInt64 = 0
    /// Refills that added tokens, and the tokens taken since the last of them (counters for the tests: at most
    /// ``burstBytes`` are taken between two refills).
    private(set) var refills: UInt64 = 0
    private(set) var takenSinceRefill: UInt64 = 0
    private(set) var takenSinceRefillMax: UInt64 = 0
    /// Every byte taken, and times a take had to wait.
    private(set) var takenBytes: UInt64 = 0
    private(set) var waits: UInt64 = 0

    /// Starts full (one burst may go at once).
    init(bytesPerSecond: UInt64, burstBytes: UInt64, nowNanos: UInt64) {
        precondition(bytesPerSecond > 0 && burstBytes > 0, "a token bucket needs a positive rate and burst")
        self.bytesPerSecond = bytesPerSecond
        self.burstBytes = burstBytes
        tokens = burstBytes
        lastRefillNanos = nowNanos
    }

    /// Adds the tokens earned since the last refill (never beyond ``burstBytes``).
    mutating func refill(nowNanos: UInt64) {
        guard nowNanos > lastRefillNanos else { return }
        // 128-bit product: nanoseconds × bytes/s overflows 64 bits after a few seconds at GB/s rates.
        let product = (nowNanos - lastRefillNanos).multipliedFullWidth(by: bytesPerSecond)
        lastRefillNanos = nowNanos
        // The quotient would not fit 64 bits (an absurd rate × a long pause): far more than a burst was earned.
        let (earned, rest) = product.high >= 1_000_000_000
            ? (UInt64.max / 2, 0) : UInt64(1_000_000_000).dividingFullWidth(product)
        let extra = (rest + remainder) / 1_000_000_000
        remainder = (rest + remainder) % 1_000_000_000
        let added = min(burstBytes - tokens, earned + extra)
        guard added > 0 else { return }
        tokens += added
        if tokens == burstBytes { remainder = 0 }
        refills += 1
        takenSinceRefill = 0
    }

    /// How long (nanoseconds) until `bytes` may be taken; 0 when they may be taken now. A request above the burst is
    /// served once the bucket is full (it is the caller's chunk; the bucket never holds more).
    func waitNanos(for bytes: UInt64) -> UInt64 {
        let needed = min(bytes, burstBytes)
        guard tokens < needed else { return 0 }
        let missing = needed - tokens
        return (missing * 1_000_000_000 + bytesPerSecond - 1) / bytesPerSecond
    }

    /// Refills, and takes `bytes` if they are there; otherwise returns how long to wait before asking again.
    mutating func take(_ bytes: UInt64, nowNanos: UInt64) -> UInt64 {
        refill(nowNanos: nowNanos)
        let wait = waitNanos(for: bytes)
        if wait > 0 {
            waits += 1
            return wait
        }
        let taken = min(bytes, burstBytes)
        tokens -= taken
        takenBytes += bytes
        takenSinceRefill += bytes
        takenSinceRefillMax = max(takenSinceRefillMax, takenSinceRefill)
        return 0
    }
}

/// Runs the calling thread at a lower scheduling priority for the rest of its life (Linux: per thread).
///
/// Why: a state transfer is bulk work. On a machine whose CPU the ring needs, the provider's stream and the joiner's
/// restore should take what the ring and the clients leave, not an equal share. `SCHED_BATCH` (sched(7)) tells the
/// scheduler the thread is CPU-bound and non-interactive: it does not preempt a thread that wakes up (a ring or
/// client thread woken by a packet runs first). `setpriority` (per thread on Linux: setpriority(2), NOTES) gives
/// it less CPU under contention — nice 10 weighs 110 against 1024 for nice 0
/// (kernel `sched_prio_to_weight`), about a tenth. Neither starves the transfer: with idle CPU it runs at full speed,
/// and a transfer that falls behind fills the joiner's suffix store, which slows the ring and frees CPU (the
/// backpressure closes the loop). Unprivileged processes may lower priority, not raise it back, so only threads
/// that do nothing else afterwards are lowered (the transfer threads, and a connection used for a snapshot pull).
///
/// With `idle`, `SCHED_IDLE` instead (``Replica/Options/snapshotThreadIdle``): the nice value does not apply, and
/// ``IdleTransferPriority`` raises the thread to `SCHED_BATCH` when it progresses too slowly.
///
/// - Returns: 0, or the `-errno` of the first call that failed (the transfer goes on at normal priority).
@discardableResult
func lowerTransferThreadPriority(nice: Int, idle: Bool = false) -> Int32 {
    guard nice > 0 || idle else { return 0 }
    #if os(Linux)
    // SCHED_BATCH is 3, SCHED_IDLE 5 (Linux uapi `linux/sched.h`; Glibc hides the names without _GNU_SOURCE). Both
    // calls act on the calling thread only: pthread_setschedparam by definition, setpriority with `who` 0 because
    // Linux keeps the nice value per thread (setpriority(2), NOTES).
    let policy: Int32 = idle ? 5 : 3
    var parameters = sched_param(sched_priority: 0)
    let scheduled = pthread_setschedparam(pthread_self(), policy, &parameters)
    if idle { return -scheduled }
    if scheduled != 0 { return -scheduled }
    if setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, Int32(min(nice, 19))) != 0 { return -errno }
    return 0
    #else
    return 0
    #endif
}

/// Whether a thread of this process may leave `SCHED_IDLE` for `SCHED_BATCH` at `nice` (sched(7): an unprivileged
/// thread may, since Linux 2.6.39, when its nice value is within its RLIMIT_NICE; otherwise it needs CAP_SYS_NICE).
///
/// Why ask: an idle-class restore (``Replica/Options/snapshotThreadIdle``) is raised when starved
/// (``IdleTransferPriority``). If the raise were refused, a restore on a machine with no idle CPU would never finish,
/// so without the right the learner restores at `SCHED_BATCH` from the start. Asked by trying, on a thread of its own
/// that does nothing else (the caller's policy is untouched): the kernel's rule has several inputs (the limit, the
/// capability, a user namespace's), and only the call itself applies all of them. Linux only; false elsewhere.
func idleClassCanBeLeft(nice: Int) -> Bool {
    #if os(Linux)
    let answer = Atomic<Bool>(false)
    let probe = { @Sendable in
        var parameters = sched_param(sched_priority: 0)
        guard pthread_setschedparam(pthread_self(), 5, &parameters) == 0 else { return } // SCHED_IDLE
        // The raise, as `lowerTransferThreadPriority(nice:)` makes it: the policy, then the nice value.
        guard pthread_setschedparam(pthread_self(), 3, &parameters) == 0 else { return } // SCHED_BATCH
        answer.store(setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, Int32(min(max(nice, 1), 19))) == 0,
                     ordering: .relaxed)
    }
    guard let thread = try? Thread(probe) else { return false }
    thread.join()
    return answer.load(ordering: .relaxed)
    #else
    return false
    #endif
}

/// A transfer thread that runs `SCHED_IDLE` while it keeps a floor rate, raised once to `SCHED_BATCH` (at
/// ``Replica/Options/snapshotThreadNice``, which the caller passes) when a one-second window falls below it
/// (``Replica/Options/snapshotThreadIdle``): idle-class, it costs the ring no latency; starved by a load that leaves
/// no CPU idle, it would never finish.
struct IdleTransferPriority {
    let floorBytesPerSecond: UInt64
    private(set) var raised = false
    private var windowStartNanos: UInt64
    private var windowBytes: UInt64 = 0

    init(floorBytesPerSecond: UInt64, nowNanos: UInt64) {
        self.floorBytesPerSecond = floorBytesPerSecond
        windowStartNanos = nowNanos
    }

    /// Counts `bytes` of progress; at the end of a window below the floor, or at once with `backlogHigh` (the
    /// learner's feed backlog passed half its spill bound), decides the raise. True when this call decided it (the
    /// caller's thread then calls ``lowerTransferThreadPriority(nice:idle:)`` without `idle`).
    mutating func progressed(_ bytes: Int, nowNanos: UInt64, backlogHigh: Bool = false) -> Bool {
        guard !raised else { return false }
        if backlogHigh {
            raised = true
            return true
        }
        windowBytes += UInt64(bytes)
        let elapsed = nowNanos &- windowStartNanos
        guard elapsed >= 1_000_000_000 else { return false }
        // bytes × 10⁹ / elapsed < floor, without overflow: bytes × 10⁹ < floor × elapsed.
        let progressed = windowBytes.multipliedFullWidth(by: 1_000_000_000)
        let needed = floorBytesPerSecond.multipliedFullWidth(by: elapsed)
        windowStartNanos = nowNanos
        windowBytes = 0
        guard progressed.high < needed.high || (progressed.high == needed.high && progressed.low < needed.low) else {
            return false
        }
        raised = true
        return true
    }
}

