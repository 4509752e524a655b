public import RingCastChain

/// What a Backup replica executes: PBFT hands it each committed request once, in sequence-number order.
public protocol PBFTApplication {
    /// Executes `request` at `sn` and returns the result the client gets (cached for retransmissions).
    mutating func execute(sn: UInt64, request: PBFT.Request) -> [UInt8]
}

extension PBFT {
    /// An event for ``Replica/handle(_:app:)``.
    public enum Event: Sendable {
        /// A client's request, sent to every replica.
        case request(ClientRequest)
        /// A replica message (the envelope names and signs its sender).
        case message(Envelope)
        /// One timer tick: the core has no clock, timers count ticks.
        case tick
    }

    /// What the caller does after an event, in order.
    public enum Action: Hashable, Sendable {
        case send(to: UInt32, Envelope)
        /// To every other replica.
        case broadcast(Envelope)
        case reply(Reply)
        /// sn executed (nil: the null request). For observers: the application has already run it.
        case executed(sn: UInt64, Request?)
        /// The replica entered this view (its NEW-VIEW installed).
        case enteredView(UInt64)
    }

    /// Why an event was refused; the replica is unchanged and keeps working.
    public enum EventError: Error, Equatable, Sendable {
        case clientOutOfRange(UInt32)
        case opTooLarge(Int)
        /// This replica's entry of the client authenticator does not verify.
        case clientMAC
        /// The pending table is full: the client retries later (backpressure, never silent loss).
        case pendingFull
        case signature
        /// A sender that is not a replica, or that may not send this message (a PREPARE from the primary, a
        /// PRE-PREPARE from a backup, a NEW-VIEW from another than the new primary).
        case sender(UInt32)
        /// A VIEW-CHANGE or NEW-VIEW whose proofs do not check (a forged certificate).
        case certificate(String)
        /// A PRE-PREPARE whose digest is not its request's, or which conflicts with one accepted for (v, n).
        case conflict
    }

    /// Counters (deterministic, for tests and the simulator).
    public struct Stats: Equatable, Sendable {
        public var executed: UInt64 = 0
        public var nullExecuted: UInt64 = 0
        public var cachedReplies: UInt64 = 0
        public var checkpointsStable: UInt64 = 0
        public var viewChangesSent: UInt64 = 0
        public var newViewsInstalled: UInt64 = 0
        public var refused: UInt64 = 0
        public var signatures: UInt64 = 0
        public var signatureVerifications: UInt64 = 0
        /// Slots the log holds now, and the most it ever held (never above L).
        public var slots: Int = 0
        public var slotsHighest: Int = 0
        /// Stable checkpoints whose digest differed from this replica's (possible only under a planted test fault).
        public var divergedCheckpoints: UInt64 = 0
    }

    /// One sequence number's state in the log.
    struct Slot {
        /// The PRE-PREPARE accepted for the current view, and its batch (empty: the null request).
        var prePrepare: Envelope?
        var requests: [ClientRequest] = []
        var digest: ChainDigest?
        var prepares: [UInt32: Envelope] = [:]
        var commits: [UInt32: Envelope] = [:]
        /// Prepared / committed-local in the current view.
        var prepared = false
        var committed = false
        /// The prepared certificate of the highest view this replica prepared sn in (kept across views, §4.4).
        var certificate: PreparedCertificate?
    }

    struct ClientRow {
        var timestamp: UInt64
        var reply: [UInt8]
    }

    struct RequestKey: Hashable {
        var client: UInt32
        var timestamp: UInt64
    }

    /// One PBFT replica, sans-IO: ``handle(_:app:)`` takes an event and returns actions. No clock, no randomness,
    /// no sockets; deterministic for given events. Bounded: the log holds at most L = ``Settings/logWindow`` slots
    /// above the stable checkpoint, the client table `clientsMax` rows, pending requests `pendingMax`, view changes
    /// `viewsAheadMax` views × n.
    ///
    /// Not implemented: state transfer (PBFT §4.3 "fetch the state"). A replica that learns a stable checkpoint it has
    /// not executed up to stops executing (``behind``); in Backup it rejoins at the next instance, whose init history
    /// carries the order (spec §12).
    public final class Replica {
        public let settings: Settings
        let crypto: BackupCrypto
        public internal(set) var stats = Stats()

        public internal(set) var view: UInt64 = 0
        /// False from sending a VIEW-CHANGE until the NEW-VIEW of that view is installed.
        public internal(set) var viewActive = true
        /// h: the last stable checkpoint; the log holds (h, h+L].
        public internal(set) var lowWaterMark: UInt64 = 0
        var stableDigest: ChainDigest = .zero
        var stableProof: [Envelope] = []
        public internal(set) var lastExecuted: UInt64 = 0
        /// H at lastExecuted.
        public internal(set) var historyDigest: ChainDigest = .zero
        /// A stable checkpoint above what this replica executed: it needs a state transfer (not implemented).
        public internal(set) var behind = false
        var slots: [UInt64: Slot] = [:]
        /// The primary's next sequence number.
        var nextSn: UInt64 = 1
        /// Requests received and not executed, oldest first, and the ones the primary already assigned in this view.
        var pending: [ClientRequest] = []
        var assigned: Set<RequestKey> = []
        var clients: [ClientRow?]
        /// Own checkpoint digests and CHECKPOINT votes for multiples of K in (h, h+L].
        var ownCheckpoints: [UInt64: ChainDigest] = [:]
        var checkpointVotes: [UInt64: [UInt32: Envelope]] = [:]
        var viewChanges: [UInt64: [UInt32: Envelope]] = [:]
        var newViewSent: Set<UInt64> = []
        var ticks: UInt64 = 0
        /// When the view-change timer started (nil: not running), and consecutive view changes without a NEW-VIEW.
        var timerStart: UInt64?
        var viewChangeAttempts: UInt32 = 0

        /// - Parameter keyRing: this replica's (its signing key, every replica's public key, its client MAC keys).
        public init(settings: Settings, keyRing: ChainKeyRing) throws(SettingsError) {
            try settings.validate()
            self.settings = settings
            crypto = BackupCrypto(keyRing: keyRing)
            clients = [ClientRow?](repeating: nil, count: Int(settings.clientsMax))
        }

        public var n: UInt32 { settings.n }
        public var me: UInt32 { settings.replica }
        public var primary: UInt32 { PBFT.primary(view, n: n) }
        public var isPrimary: Bool { primary == me }
        public var highWaterMark: UInt64 { lowWaterMark + settings.logWindow }
        public var pendingCount: Int { pending.count }

        /// The last timestamp executed for `client` (0: none), from the reply table.
        public func lastExecutedTimestamp(client: UInt32) -> UInt64 {
            client < settings.clientsMax ? clients[Int(client)]?.timestamp ?? 0 : 0
        }

        /// Handles one event. Operating errors (bad input) throw and leave the replica unchanged.
        public func handle<A: PBFTApplication>(_ event: Event, app: inout A) throws(EventError) -> [Action] {
            var out: [Action] = []
            defer {
                stats.signatures = crypto.signatures
                stats.signatureVerifications = crypto.signatureVerifications
                stats.slots = slots.count
                stats.slotsHighest = max(stats.slotsHighest, slots.count)
                precondition(slots.keys.allSatisfy { $0 > lowWaterMark && $0 <= highWaterMark }, "the log stays in (h, h+L]")
            }
            do throws(EventError) {
                switch event {
                case .request(let r): try onRequest(r, app: &app, &out)
                case .tick: onTick(&out)
                case .message(let e):
                    guard e.sender < n, e.sender != me else { throw EventError.sender(e.sender) }
                    guard e.verify(crypto: crypto) else { throw EventError.signature }
                    try onMessage(e, app: &app, &out)
                }
            } catch {
                stats.refused += 1
                throw error
            }
            return out
        }

        func onMessage<A: PBFTApplication>(_ e: Envelope, app: inout A, _ out: inout [Action]) throws(EventError) {
            switch e.message {
            case .prePrepare(let p): try onPrePrepare(p, e, app: &app, &out)
            case .prepare(let v): try onPrepare(v, e, app: &app, &out)
            case .commit(let v): onCommit(v, e, app: &app, &out)
            case .checkpoint(let c): onCheckpoint(c, e, &out)
            case .viewChange(let vc): try onViewChange(vc, e, app: &app, &out)
            case .newView(let nv): try onNewView(nv, e, app: &app, &out)
            }
        }

        /// Signs `message`, counts it as received from itself, and returns the broadcast.
        func broadcast(_ message: Message, _ out: inout [Action]) -> Envelope {
            let e = Envelope.signed(message, by: me, crypto: crypto)
            out.append(.broadcast(e))
            return e
        }
    }
}
