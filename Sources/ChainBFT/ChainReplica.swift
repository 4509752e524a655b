public import RingCastChain
public import RingCastBackup
public import RingCastSMR
internal import CRingCastCore
import Glibc
import Synchronization

/// Where a replica listens (replicas and clients connect to the same port; the HELLO says who is who).
public struct ChainEndpoint: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: UInt16
    public init(host: String, port: UInt16) { self.host = host; self.port = port }

    /// Parses `host:port`.
    public init?(_ text: some StringProtocol) {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else { return nil }
        host = String(text[..<colon])
        self.port = port
    }

    public var description: String { "\(host):\(port)" }
}

/// One Chain BFT replica as a network node (spec §3; rc_chain.h's caller's duties): it owns a ``ChainCore``, an
/// io_uring transport and a ``StateMachine``, all on one engine thread (no locks on the path of a request).
///
/// Links (TCP, length-prefixed ``ChainFrame``s): a data link to the successor (batches), a control link to every other
/// replica (CHECKPOINTs, apart so that a held batch never blocks them), and one connection per client (requests at the
/// head, PANICs everywhere; replies from the tail and ABORTs back on it).
///
/// Every replica executes every logged request in sn order (Σlast must, spec C3; the others may, D3; doing it at
/// once keeps every replica's state machine current, which the tests compare). Σlast hands each reply to the core,
/// which MACs it over this replica's own reply and history digest (D1); the tail sends each client its reply.
public final class ChainReplica<Machine: StateMachine>: @unchecked Sendable {
    public struct Settings: Sendable {
        public var f: UInt32
        public var position: UInt32
        public var instance: UInt64 = 1
        /// Every replica's endpoint, in chain order (position 0 is the head).
        public var replicas: [ChainEndpoint]
        /// Where this replica listens (default: its own entry of ``replicas``; port 0 picks a free one).
        public var listen: ChainEndpoint?
        public var clientsMax: UInt32 = 1024
        /// b_max: requests per batch at the head (1 turns batching off).
        public var batchCountMax: UInt32 = 64
        public var batchBytesMax: UInt32 = 256 << 10
        /// CHK (spec §14).
        public var checkpointInterval: UInt32 = 128
        public var historyMax: UInt32?
        public var outBatchesMax: UInt32 = 16
        /// The core's timer period; CHECKPOINTs are retransmitted every `checkpointRetransmitTicks`.
        public var tickNanos: UInt64 = 10_000_000
        public var checkpointRetransmitTicks: UInt32 = 50
        /// Requests the head holds back (client connections paused) while its history is full.
        public var heldRequestsMax: Int = 1024
        public var limits = ChainWireLimits()
        public var receiveBufferBytes: UInt32 = 4 << 20
        public var connectionsMax: UInt32 = 256
        /// Test hook (the Byzantine wrapper of the tests): rewrites or drops every frame this replica sends, after
        /// its correct core produced it. Never set in production.
        public var outbound: (@Sendable (ChainFrame) -> ChainFrame?)?
        /// Test hook: rewrites the reply this replica computed before the core MACs it (a lying member of Σlast).
        public var replyTamper: (@Sendable (UInt64, [UInt8]) -> [UInt8])?
        /// Test hook: on entering a later instance, supply none of the init history's bodies from this replica's own
        /// log, so that it FETCHes all of them (a replica that lost its request store, spec §12). Never set in production.
        public var forgetBodiesOnEnter = false
        /// Backup (Aliph's order Chain → Backup → Chain → …, spec §13.1): k = ⌈C·2^m⌉ per Backup instance.
        public var backupSchedule = Backup.Schedule()
        /// PBFT inside each Backup instance: K, L, held requests, and the view-change timer in ticks of ``tickNanos``.
        public var backupCheckpointInterval: UInt64 = 16
        public var backupLogWindow: UInt64 = 64
        public var backupPendingMax = 256
        public var backupViewChangeTimeoutTicks: UInt64 = 50
        /// PBFT envelopes of a Backup instance this replica has not entered yet (a peer entered first), kept until it
        /// enters; beyond: dropped and counted.
        public var backupEarlyEnvelopesMax = 1024

        public init(f: UInt32, position: UInt32, replicas: [ChainEndpoint]) {
            self.f = f; self.position = position; self.replicas = replicas
        }

        func validate() throws(ChainBFTError) {
            guard f >= 1, f <= RC_CHAIN_F_MAX else { throw .invalidSettings("f is 1...\(RC_CHAIN_F_MAX)") }
            guard replicas.count == Int(3 * f + 1) else {
                throw .invalidSettings("\(replicas.count) replica endpoints for f = \(f) (n = 3f+1 = \(3 * f + 1))")
            }
            guard position < 3 * f + 1 else { throw .invalidSettings("position \(position) ≥ n") }
            guard instance >= 1, !Backup.Order.isBackup(instance) else {
                throw .invalidSettings("the first instance is a Chain instance: odd and ≥ 1 (Aliph's order, even ones are Backup)")
            }
            guard limits.frameBytesMax + 4 <= Int(receiveBufferBytes) else {
                throw .invalidSettings("a frame (\(limits.frameBytesMax) bytes) must fit the receive buffer")
            }
            guard Int(batchBytesMax) + 64 * Int(batchCountMax) + (1 << 16) <= limits.frameBytesMax else {
                throw .invalidSettings("a full batch must fit a frame: raise frameBytesMax or lower batchBytesMax")
            }
            guard tickNanos >= 1_000_000 else { throw .invalidSettings("tickNanos ≥ 1 ms") }
        }
    }

    /// Counters, refreshed by the engine thread after every round of events.
    public struct Statistics: Sendable, Hashable {
        public var position: UInt32 = 0
        /// Every link this replica opens (control to each replica, data to the successor) is connected.
        public var linksUp = false
        public var lastSN: UInt64 = 0
        /// Executions, re-executions after a switch's rollback (D10) included.
        public var executed: UInt64 = 0
        /// Calls of the state machine's `apply` for runs of consecutive commands (one per run, not per request: the
        /// engine batches them; queries and re-executions after a rollback are not counted).
        public var executeRuns: UInt64 = 0
        /// The sn the state machine's state is at (every request up to it applied once, in sn order).
        public var stateSN: UInt64 = 0
        public var stableCheckpoint: UInt64 = 0
        public var stopped = false
        /// rc_chain_stop_reason's raw value (0: running).
        public var stopReason: UInt32 = 0
        public var batchesIn: UInt64 = 0
        public var batchesOut: UInt64 = 0
        public var requestsLogged: UInt64 = 0
        public var macGenerations: UInt64 = 0
        public var macVerifications: UInt64 = 0
        public var aborts: UInt64 = 0
        public var framesIn: UInt64 = 0
        public var framesOut: UInt64 = 0
        /// Frames that did not decode, or that no correct peer sends on that link: the connection was closed.
        public var malformedFrames: UInt64 = 0
        /// Frames dropped because the link was full or down (checkpoints are retransmitted; replies are not: the client panics).
        public var framesDropped: UInt64 = 0
        public var repliesUnroutable: UInt64 = 0
        /// Copies of request payloads made in user space on the forwarding path (decoding a REQUEST or batch, the
        /// core's contiguous view of a batch, encoding into the send buffer), one per request per copy: divided by the
        /// requests this replica logged it is the copies per request per hop. Kernel copies (recv, send) not included.
        public var payloadCopies: UInt64 = 0
        /// FNV-1a 64 of the state machine's snapshot, computed when the replica stops.
        public var stateDigest: UInt64?
        /// Switching: the instance, INITs entered, refused and ignored, FETCHes (ChainInstanceLifecycle.swift).
        public var switching = ChainSwitchStatistics()
    }

    public let settings: Settings
    private let keyRing: UncheckedBox<ChainKeyRing>
    private let machine: UncheckedBox<Machine>
    private let shared = Mutex(SharedState())
    private var thread: ChainThread?
    private let stopFlag = Atomic<Bool>(false)
    private let wakeBox = Mutex<(@Sendable () -> Void)?>(nil)

    struct SharedState: Sendable {
        var statistics = Statistics()
        var port: UInt16?
        var startError: ChainBFTError?
        var started = false
    }

    /// - Parameters:
    ///   - keyRing: this replica's key ring (`.replica(position)`): handed to the engine thread, not to be used elsewhere.
    ///   - machine: the initial state.
    public init(settings: Settings, keyRing: ChainKeyRing, machine: Machine) throws(ChainBFTError) {
        try settings.validate()
        self.settings = settings
        self.keyRing = UncheckedBox(keyRing)
        self.machine = UncheckedBox(machine)
    }

    /// Starts the engine thread; returns once it listens (the port bound) or throws why it could not.
    @discardableResult
    public func start() throws(ChainBFTError) -> UInt16 {
        precondition(thread == nil, "a replica starts once")
        thread = try ChainThread { [self] in runEngine() }
        while true {
            let state = shared.withLock { $0 }
            if let error = state.startError { throw error }
            if let port = state.port { return port }
            usleep(1000)
        }
    }

    /// Stops the engine thread and waits for it.
    public func stop() {
        stopFlag.store(true, ordering: .releasing)
        wakeBox.withLock { $0?() }
        thread?.join()
        thread = nil
    }

    public var statistics: Statistics { shared.withLock { $0.statistics } }

    /// Waits until this replica's own links are connected (true), or `timeoutNanos` passed (false).
    public func waitForLinks(timeoutNanos: UInt64 = 10_000_000_000) -> Bool {
        let deadline = monotonicNanos() + timeoutNanos
        while !statistics.linksUp {
            if monotonicNanos() > deadline { return false }
            usleep(2000)
        }
        return true
    }

    private func runEngine() {
        do throws(ChainBFTError) {
            let engine = try ChainReplicaEngine(settings: settings, keyRing: keyRing.value, machine: machine.value)
            let port = engine.port
            let transport = UncheckedBox(engine.transport)
            wakeBox.withLock { $0 = { transport.value.wake() } }
            shared.withLock { $0.port = port }
            while !stopFlag.load(ordering: .acquiring) {
                try engine.round()
                let statistics = engine.statistics
                shared.withLock { $0.statistics = statistics }
            }
            wakeBox.withLock { $0 = nil }
            engine.finish()
            let statistics = engine.statistics
            shared.withLock { $0.statistics = statistics }
        } catch {
            shared.withLock { $0.startError = error }
        }
    }
}

/// A value handed from one thread to another that then owns it alone.
struct UncheckedBox<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}
