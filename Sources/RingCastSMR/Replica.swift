import Logging
import RingCast

/// One replica of a service: a ``Group`` member, the application's ``StateMachine``, the replicated
/// ``SessionTable``, and a TCP port where ``SMRClient``s connect.
///
/// Any replica takes writes: LCR's delivery is uniform (a command delivered at one member is delivered at every
/// member of the view, in the same order), so the replica a client is connected to broadcasts its command, applies
/// it when the ring delivers it, and answers at once — no leader to find, no forwarding.
///
/// Threads and bounded queues (backpressure end to end):
/// - per client connection a reader and a writer thread; a client has at most `windowMax` requests outstanding
///   (a client exceeding it is disconnected), so its reply queue never holds more than that;
/// - the ingress queue (at most ``Options/ingressBytesMax``) between the readers and one broadcaster task,
///   which packs what waits into one ring message (a batch); a full queue blocks the readers, hence the clients;
/// - the ring (`Group`'s own bounded window and outbox);
/// - the apply thread is the group's delivery thread: it decodes, checks sessions, applies in batches and queues
///   the replies (written at the end of each delivered batch, one write per connection). While a state transfer
///   holds the state, deliveries wait in the bounded suffix store instead. A slow `apply` slows the ring (LCR's backpressure), never grows a queue;
/// - during a state transfer, the suffix store (at most ``Options/suffixBytesMax``): deliveries wait there while
///   the state is held at the cut (provider) or not restored yet (joiner), and are applied in order afterwards.
public final class Replica<Machine: StateMachine>: Sendable {
    /// Limits and ports.
    public struct Options: Sendable {
        /// Where clients connect: an IPv4 address of this host (`0.0.0.0` for all). Joining replicas pull their state
        /// from this port too, so it must be reachable from the other replicas; with `0.0.0.0` the host of this
        /// member's group address is advertised to them.
        public var clientHost: String
        /// The client port; 0 picks a free one (see ``Replica/clientPort``).
        public var clientPort: UInt16
        /// Connected clients at most; one more is refused with an error frame (counted).
        public var clientsMax = 256
        /// Longest client frame (length prefix), bytes.
        public var frameBytesMax = 1 << 20
        /// Bytes of entries waiting to be broadcast.
        public var ingressBytesMax = 4 << 20
        /// Reads waiting for a barrier or for the local state to catch up, at most; beyond, `busy`.
        public var readsWaitingMax = 16_384
        /// The replicated session table's limits (must be the same on every replica).
        public var sessions = SessionTable.Limits()
        /// Snapshot chunk size (also bounded by `frameBytesMax`).
        public var snapshotChunkBytes = 1 << 20
        /// A provider streams its snapshot at most this fast (bytes per second, a token bucket of one chunk; 0: as
        /// fast as the joiner reads and the scheduler lets it, see ``snapshotThreadNice``). Pacing protects the
        /// link (a snapshot and the ring share the provider's uplink and the joiner's downlink) and the CPU: a
        /// slower transfer takes less of both at any moment — at the price of a longer transfer, during which the
        /// joiner queues its deliveries, so size the joiner's ``suffixBytesMax`` for the load × (state size ÷ this
        /// rate) or its full suffix store slows the ring. Default 0 (unpaced): for CPU the lower thread priority
        /// already yields under contention and runs at full speed otherwise, while a rate lengthens every transfer;
        /// set a rate to leave link bandwidth to the ring (e.g. a joiner on a link the ring saturates).
        public var snapshotBytesPerSecondMax = 0
        /// The nice value (0...19) of the state-transfer threads — the provider's stream, the joiner's pull and
        /// restore — which also run `SCHED_BATCH` on Linux: the transfer takes the CPU the ring and the clients
        /// leave. 0 keeps the normal priority.
        public var snapshotThreadNice = 10
        /// A learner restores its provider's copy at `SCHED_IDLE` (Linux; sched(7)) for as long as it progresses at
        /// ``snapshotIdleFloorBytesPerSecond`` or more and its spilled feed backlog stays within half of
        /// ``learnerSpillBytesMax`` (an idle-class restore lasts longer, so more feed waits, and the attempt must not
        /// fail for that), then at `SCHED_BATCH` with ``snapshotThreadNice``. Why: under a latency-bound load a
        /// restore at `SCHED_BATCH` still delays the ring's threads that wake up behind it (up to the scheduler's
        /// wake-up granularity), while an idle-class thread runs only on CPU nothing else wants. The feed has a
        /// connection of its own, read at normal priority (Learner.swift), so a starved restore does not leave the
        /// feed in the provider's queue. Only where the process may leave `SCHED_IDLE` again (RLIMIT_NICE or
        /// CAP_SYS_NICE; `idleClassCanBeLeft`): otherwise a restore starved by a saturating load would never end, so
        /// it runs `SCHED_BATCH` from the start (an info message says so). The provider's stream stays `SCHED_BATCH`.
        ///
        /// The default since the eighth session (2026-12-07). join-bench `--fill-mib 512 --before 8 --after 5`,
        /// replica 0's rate during ÷ before, runs interleaved with `SCHED_BATCH` ones:
        /// - 6 clients × 4 in flight, on a VM that returns free memory to its host at once (first touches are slow):
        ///   0.64–0.86, median 0.77 (13 runs), against 0.65–1.00, median 0.70 (13; the two highest after a slow
        ///   "before"); with the guest's memory kept warm (an experiment): median 0.81 against 0.72 (6 and 7 runs).
        /// - 16 clients × 16 in flight: 0.67–1.01, median 0.79, against 0.60–0.92, median 0.77 (9 runs each).
        ///
        /// The price: a longer join (14–24 s to catch up instead of 13–16 s at 6 × 4) and a larger spilled feed
        /// backlog (at 16 × 16, 671–1001 MiB instead of 543–634). Earlier sessions, on fewer runs, saw no gain.
        public var snapshotThreadIdle = true
        /// See ``snapshotThreadIdle``; measured over one-second windows of the restore, pacing waits included.
        public var snapshotIdleFloorBytesPerSecond = 16 << 20
        /// A provider keeps its state at the cut for at most this long until the joiner starts pulling.
        public var snapshotPullTimeoutMillis = 5_000
        /// A snapshot stream that makes no progress this long (the joiner stops reading, the provider stops
        /// sending) fails, so that neither side holds its state forever.
        public var snapshotStallTimeoutMillis = 10_000
        /// Bytes of ring deliveries queued while a state transfer holds the state (the provider streaming it at the
        /// cut, a joiner restoring it), applied in order when the transfer ends (the suffix store). When it is full
        /// the delivery thread waits: the ring slows down to what this replica can take (backpressure, no loss).
        /// Size it for the load × the transfer's duration; it is the memory a transfer costs beyond one chunk.
        public var suffixBytesMax = 32 << 20
        /// Client addresses of replicas to learn from (Learner.swift): a joining replica whose machine's copy is a
        /// snapshot (``StateMachine/copyIsSnapshot``) first restores a copy of one's state and applies its feed
        /// outside the view, and joins the ring only once its lag is small. Tried in order, at most
        /// ``learnerAttemptsMax`` attempts; empty (the default): the joiner receives the state at the view change.
        public var learnFrom: [Address] = []
        /// Attempts of a learner (one provider each, in ``learnFrom``'s order, round robin) before it joins the
        /// ordinary way.
        public var learnerAttemptsMax = 3
        /// A learner joins the ring once the provider's applied index is at most this many log entries ahead of
        /// its own (or the feed is idle for 200 ms). What is left is applied in the second phase, from a backlog
        /// of at most ``suffixBytesMax``.
        public var learnerLagEntriesMax = 4_096
        /// A provider's feed queue per learner, bytes: a learner that falls this far behind is dropped (it tries
        /// again, or joins the ordinary way); the provider never waits for a learner.
        public var learnerFeedBytesMax = 16 << 20
        /// Learners a provider feeds at once; one more is refused.
        public var learnersMax = 2
        /// A directory this replica may write temporary files to (nil: none). A learner spills the feed backlog of
        /// its restore there beyond ``learnerStashMemoryBytes`` (FeedStash.swift: one file, created with `mkstemp`
        /// and unlinked at once, so it never outlives the process; at most ``learnerSpillBytesMax``). Without it
        /// the backlog stays in memory, at most ``suffixBytesMax``, and the learner's restore is not paced.
        public var workDirectory: String?
        /// A learner's feed backlog in memory at most, bytes, when it has a ``workDirectory`` (the rest is spilled).
        public var learnerStashMemoryBytes = 4 << 20
        /// A learner's spilled feed backlog at most, bytes: beyond it the attempt fails with a clear error (the next
        /// attempt, or the ordinary join, follows). 4 GiB: room for a multi-GiB state under load, e.g. a 2 GiB copy at
        /// 48 MiB/s takes 43 s, in which a 50 MB/s feed (50 000 commands of 1 KB per second) adds 2.1 GB. 1 GiB before
        /// the restore went idle-class by default: at 16 clients × 16 in flight, a 512 MiB join's backlog reached
        /// 1 001 MiB. Disk in ``workDirectory``, unlinked, freed when the attempt ends.
        public var learnerSpillBytesMax = 4 << 30
        /// A learner with a ``workDirectory`` reads its provider's copy at most this fast (bytes per second, a token
        /// bucket of one chunk at the learner; TCP's flow control slows the provider's stream to match). Why: the
        /// join then takes a small, bounded share of the machine — the provider's serialising and sending, the
        /// learner's decoding and inserting — at the price of a longer restore, whose feed backlog the work
        /// directory takes. 0: as fast as the provider sends. Ignored without a work directory (the backlog would
        /// outgrow memory).
        public var learnerBytesPerSecondMax = 48 << 20
        /// A fault injection for the linearizability checker's own test: linearizable reads are answered from the
        /// local state without a barrier. Never set it outside that test.
        public var plantStaleReadBug = false
        public var logger = Logger(label: "ringcast.smr")

        public init(clientHost: String = "127.0.0.1", clientPort: UInt16) {
            self.clientHost = clientHost
            self.clientPort = clientPort
        }
    }

    /// Counters (read any time).
    public struct Statistics: Sendable, Hashable {
        /// Log entries applied (commands, session openings, barriers): the replica's applied index.
        public var appliedIndex: UInt64 = 0
        public var commandsApplied: UInt64 = 0
        /// Requests answered from the session table instead of applied again.
        public var duplicates: UInt64 = 0
        public var notApplied: UInt64 = 0
        public var barriersDelivered: UInt64 = 0
        public var readsLinearizable: UInt64 = 0
        public var readsSequential: UInt64 = 0
        public var readsStale: UInt64 = 0
        public var ringBatchesBroadcast: UInt64 = 0
        public var ringBatchesMalformed: UInt64 = 0
        public var clientsConnected = 0
        public var clientsRefused: UInt64 = 0
        public var clientFramesMalformed: UInt64 = 0
        /// Client-port connections that proved the cluster key, and those refused for failing the handshake
        /// (authenticated groups only; snapshot pulls included).
        public var clientHandshakes: UInt64 = 0
        public var clientHandshakesFailed: UInt64 = 0
        public var busyReplies: UInt64 = 0
        public var sessionsOpen = 0
        public var sessionsExpired: UInt64 = 0
        public var sessionsEvicted: UInt64 = 0
        public var snapshotsSent: UInt64 = 0
        public var snapshotBytesSent: UInt64 = 0
        public var snapshotsRestored: UInt64 = 0
        /// Announced transfers no joiner started to pull in time.
        public var transfersExpired: UInt64 = 0
        /// Deliveries queued in the suffix store while a transfer held the state, and applied from it since.
        public var suffixDeliveries: UInt64 = 0
        public var suffixApplied: UInt64 = 0
        /// The most bytes the suffix store held (at most ``Options/suffixBytesMax``, or one delivery).
        public var suffixBytesPeak: UInt64 = 0
        /// Times the delivery thread waited for room in a full suffix store (backpressure on the ring).
        public var suffixFullWaits: UInt64 = 0
        /// Paced snapshot streams (``Options/snapshotBytesPerSecondMax``): times a chunk waited for the token
        /// bucket, and the most bytes sent between two refills of it (at most one chunk when the pacing holds).
        public var snapshotPacingWaits: UInt64 = 0
        public var snapshotBytesPerRefillMax: UInt64 = 0
        /// Provider: learners admitted, dropped for falling behind, ring batches fed to them; announced transfers a
        /// joiner declined (it caught up through its feed).
        public var learnersServed: UInt64 = 0
        public var learnersDropped: UInt64 = 0
        public var learnerBatchesFed: UInt64 = 0
        public var transfersDeclined: UInt64 = 0
        /// Provider: the most bytes one learner's feed queue held (batches applied here and not yet sent to it; at
        /// most ``Options/learnerFeedBytesMax``).
        public var learnerFeedBytesPeak: UInt64 = 0
        /// Learner: copies restored, fed batches applied, failed attempts, and fallbacks to the ordinary join.
        public var learnerRestores: UInt64 = 0
        public var learnerBatchesApplied: UInt64 = 0
        public var learnerAttemptsFailed: UInt64 = 0
        public var learnerFallbacks: UInt64 = 0
        /// Learner: restores raised from `SCHED_IDLE` to `SCHED_BATCH` for progressing below the floor
        /// (``Options/snapshotIdleFloorBytesPerSecond``).
        public var learnerRestoresRaised: UInt64 = 0
        /// Learner: the most bytes of feed batches kept in memory while it restored the copy (at most
        /// ``Options/learnerStashMemoryBytes`` with a work directory, else ``Options/suffixBytesMax``).
        public var learnerStashBytesPeak: UInt64 = 0
        /// Learner: the most bytes of feed batches its spill file held (at most ``Options/learnerSpillBytesMax``), and
        /// the batches that went through it.
        public var learnerSpillBytesPeak: UInt64 = 0
        public var learnerSpilledBatches: UInt64 = 0
        /// Learner: times a chunk of the provider's copy waited for the learner's pace
        /// (``Options/learnerBytesPerSecondMax``).
        public var learnerPacingWaits: UInt64 = 0
        /// Learner: times it started its group member after catching up (its second phase began).
        public var learnerJoins: UInt64 = 0
        public init() {}
    }

    public let group: Group
    let core: ReplicaCore<Machine>
    let server: ClientServer

    /// - Parameters:
    ///   - configuration: the group member (every replica of the service is one member).
    ///   - machine: the state machine (empty state; a joiner receives the group's state before its first delivery).
    /// - Throws: ``SMRError/group(_:)`` for an invalid group configuration, ``SMRError/addressInUse(_:)``.
    public init(configuration: Group.Configuration, machine: consuming sending Machine, options: Options) throws(SMRError) {
        guard options.clientsMax >= 1, options.frameBytesMax >= 64, options.ingressBytesMax >= options.frameBytesMax,
              options.readsWaitingMax >= 1, options.snapshotChunkBytes >= 64, options.suffixBytesMax >= 4096, options.snapshotBytesPerSecondMax >= 0,
              (0...19).contains(options.snapshotThreadNice), options.snapshotIdleFloorBytesPerSecond >= 1,
              options.snapshotPullTimeoutMillis >= 1, options.snapshotStallTimeoutMillis >= 1,
              options.learnerAttemptsMax >= 1, options.learnerLagEntriesMax >= 0, options.learnerFeedBytesMax >= 4096,
              options.learnersMax >= 0, options.learnerStashMemoryBytes >= 4096, options.learnerSpillBytesMax >= 0,
              options.learnerBytesPerSecondMax >= 0, options.workDirectory.map({ !$0.isEmpty }) ?? true else {
            throw .invalidConfiguration("clientsMax, readsWaitingMax ≥ 1; frameBytesMax, snapshotChunkBytes ≥ 64; "
                + "ingressBytesMax ≥ frameBytesMax; suffixBytesMax ≥ 4096; snapshot timeouts ≥ 1 ms; snapshotThreadNice 0...19; "
                + "snapshotIdleFloorBytesPerSecond ≥ 1; "
                + "learnerAttemptsMax ≥ 1, learnerLagEntriesMax ≥ 0, learnerFeedBytesMax ≥ 4096, learnersMax ≥ 0; "
                + "learnerStashMemoryBytes ≥ 4096, learnerSpillBytesMax ≥ 0, learnerBytesPerSecondMax ≥ 0; workDirectory not empty")
        }
        let core = ReplicaCore(machine: machine, me: configuration.me, options: options,
                               ringBatchBytesMax: configuration.limits.batchBytesMax,
                               hasState: configuration.initialView.contains(configuration.me),
                               advertisedHost: options.clientHost == "0.0.0.0"
                                   ? configuration.addresses[configuration.me]?.host ?? "127.0.0.1" : options.clientHost)
        self.core = core
        let server = try ClientServer(host: options.clientHost, port: options.clientPort, clientsMax: options.clientsMax,
                                      frameBytesMax: options.frameBytesMax, logger: options.logger,
                                      handler: { frames, connection in core.handle(frames, from: connection) },
                                      onMalformed: { core.countMalformedFrame() },
                                      onRefused: { core.countRefused() })
        server.cpu = core.cpu
        if configuration.security.isAuthenticated {
            let security = configuration.security, name = configuration.name, me = configuration.me
            server.authenticate = { fd throws(RingCastError) in
                try security.authenticateClientLink(socket: fd, role: .acceptor, clusterName: name, selfID: me)
            }
            server.onHandshake = { accepted in core.countHandshake(accepted: accepted) }
            // The joiner's pull of a snapshot dials a provider's client port: the same handshake.
            core.dialProvider = { fd throws(RingCastError) in
                try security.authenticateClientLink(socket: fd, role: .dialer, clusterName: name, selfID: me)
            }
        }
        self.server = server
        let clientPort = server.port
        // The group's transfer carries only the cut; the state streams over the client port (SnapshotTransfer.swift).
        let transfer = Group.StateTransfer(snapshot: { core.snapshotForTransfer(clientPort: clientPort) },
                                           restore: { bytes in core.restoreFromTransfer(bytes) })
        do {
            group = try Group(configuration: configuration, stateTransfer: transfer) { batch in core.apply(batch) }
        } catch {
            throw .group(error)
        }
        core.group = group
        server.windowMax = options.sessions.windowMax + 16
    }

    deinit { shutdown() }

    /// The port clients connect to.
    public var clientPort: UInt16 { server.port }

    /// Starts the group member, the broadcaster and the client port.
    public func start() throws(SMRError) {
        if core.learnsFirst {
            // A learner first (Learner.swift): the client port now (statistics, digests; reads are refused until
            // the state is the group's), the group member once the learner caught up, from the learner's thread.
            try server.start()
            try core.startLearning { [group, core] () throws(SMRError) in
                do throws(RingCastError) { try group.start() } catch { throw .group(error) }
                try core.startBroadcaster()
            }
            return
        }
        do { try group.start() } catch { throw .group(error) }
        try core.startBroadcaster()
        try server.start()
        core.startExclusionWatch()
    }

    /// Stops serving clients, the broadcaster and the group member (idempotent).
    public func shutdown() {
        core.stopTransfers() // before the client port: a paced stream holds a connection thread
        server.shutdown()
        core.stop()
        core.stopApplying()
        group.shutdown()
        core.joinBroadcaster()
        core.joinTransferThreads()
    }

    /// State-transfer threads running now (the provider's release thread, the joiner's pull); 0 after
    /// ``shutdown()`` unless one was stuck past its bounded wait (logged).
    public var transferThreadsRunning: Int { core.lock.withLock { core.transferThreadsRunning } }

    public var statistics: Statistics { core.statisticsSnapshot() }

    /// True while a state transfer holds this replica's state (a provider streaming it at the cut, a joiner
    /// restoring it) or deliveries queued meanwhile are not applied yet; false once it applies deliveries directly.
    public var isTransferring: Bool { core.lock.withLock { core.stateHeld || !core.suffix.isEmpty } }

    /// True once the group excluded this member: it applies nothing more and refuses clients (Exclusion.swift).
    /// Stop it and start it again as a joiner, with a new incarnation, to rejoin.
    public var isExcluded: Bool { core.lock.withLock { core.excluded } }

    /// The applied index (log entries applied so far).
    public var appliedIndex: UInt64 { core.lock.withLock { core.appliedIndex } }

    /// FNV-1a 64 of the canonical snapshot (session table and state machine) at the current applied index:
    /// replicas that applied the same log have the same digest. Streams through the hash; no copy of the state.
    public func stateDigest() throws(SMRError) -> (index: UInt64, digest: UInt64) {
        try core.digest()
    }

    /// Runs `body` with the state machine, under the apply lock (for tests and tools; keep it short). On a joiner
    /// whose state is not restored yet, `body` sees the empty state; during a transfer, the state at the cut.
    public func withMachine<T>(_ body: (Machine) -> T) -> T {
        core.lock.withLock { body(core.machine) }
    }
}
