public import CRingCastCore

/// One instance of the Abstract framework as the switching composer sees it (spec §2.1, §2.3; thesis §3.2): it has
/// a number i, a fixed next(i) > i, and it can be entered with an init history. Chain (``ChainCore``) is one; a
/// later Backup instance (spec §13.1) conforms the same way and the composer needs no change.
public protocol AbstractInstance: AnyObject {
    /// i.
    var instanceNumber: UInt64 { get }
    /// next(i): a function of i, the same in every abort indication of this instance (§2.1).
    var nextInstanceNumber: UInt64 { get }
    /// C2+/C3+/P2+: validates `initHistory` against its proof and installs it.
    /// - Throws: ``ChainInitRefusal``; the instance is unchanged.
    func install(_ initHistory: ChainInitHistory) throws(ChainInitRefusal) -> ChainInitOutcome
    /// The replica entered a later instance: this one is abandoned for good (§2.3).
    func leave()
}

/// Makes the replica side of instance i (not yet initialised). The composition's order of protocols lives here:
/// until Backup exists every instance is a new Chain instance and next(i) = i+1 ([T] fixes i+1, Aliph's order is
/// Quorum → Chain → Backup → …, spec §13.1).
public protocol AbstractInstanceFactory {
    func makeInstance(_ instance: UInt64) throws(ChainError) -> any AbstractInstance
}

extension ChainCore: AbstractInstance {
    public var instanceNumber: UInt64 { settings.instance }
    /// next(i) = i+1 (spec §2.3; ABORTs sign it, rc_chain_abort.next_instance).
    public var nextInstanceNumber: UInt64 { settings.instance + 1 }
}

/// Every instance a new Chain instance of one replica, with the same settings and key ring.
public struct ChainInstanceFactory: AbstractInstanceFactory {
    public let settings: rc_chain_settings
    public let keyRing: ChainKeyRing

    /// - Parameter settings: a template; `instance` is replaced per instance, `crypto` by `keyRing`'s.
    public init(settings: rc_chain_settings, keyRing: ChainKeyRing) {
        self.settings = settings
        self.keyRing = keyRing
    }

    public func makeInstance(_ instance: UInt64) throws(ChainError) -> any AbstractInstance {
        try makeChain(instance)
    }

    public func makeChain(_ instance: UInt64) throws(ChainError) -> ChainCore {
        var s = settings
        s.instance = instance
        return try ChainCore(s, keyRing: keyRing)
    }
}


/// Why a replica did not enter an instance.
public enum AbstractEnterError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The init history is for this instance or an earlier one: switching is monotonic, and an initialised
    /// instance ignores later init histories (spec §2.3, §12).
    case stale(current: UInt64, offered: UInt64)
    /// The new instance refused the init history; the replica stays where it was.
    case refused(ChainInitRefusal)
    /// The factory could not make the instance (settings, memory).
    case factory(ChainError)

    public var description: String {
        switch self {
        case let .stale(current, offered): "init history for instance \(offered) ignored: already in instance \(current)"
        case .refused(let reason): "init history refused: \(reason)"
        case .factory(let error): "could not make the instance: \(error)"
        }
    }
}

/// The replica side of switching (spec §2.3, §12): owns the current instance number and enters a later instance
/// when a valid init history for it arrives. The instance left keeps answering PANICs of late clients (they need
/// 2f+1 ABORTs of it), so the last `retained` instances are kept. Sans-IO: the caller delivers INIT messages and
/// routes other messages by instance with ``instance(_:)``.
public final class AbstractReplica {
    public let factory: any AbstractInstanceFactory
    /// The current instance, and the init history it was entered with (nil for instance 1).
    public private(set) var current: any AbstractInstance
    public private(set) var currentInitHistory: ChainInitHistory?
    /// Earlier instances kept for late PANICs, oldest first (bounded by `retained`).
    public private(set) var previous: [any AbstractInstance] = []
    public let retained: Int

    /// Starts in instance `first` (1, with no init history).
    public init(factory: any AbstractInstanceFactory, first: UInt64 = 1, retained: Int = 2) throws(ChainError) {
        precondition(retained >= 1, "keep at least the instance just left")
        self.factory = factory
        self.retained = retained
        current = try factory.makeInstance(first)
    }

    public var currentNumber: UInt64 { current.instanceNumber }

    /// The current or a retained instance with this number.
    public func instance(_ number: UInt64) -> (any AbstractInstance)? {
        if current.instanceNumber == number { return current }
        return previous.last { $0.instanceNumber == number }
    }

    /// Enters `initHistory.instance` (> current): makes the instance, installs IH (which checks the proof), and makes
    /// it current. Nothing changes when it is refused.
    @discardableResult
    public func enter(_ initHistory: ChainInitHistory) throws(AbstractEnterError) -> any AbstractInstance {
        guard initHistory.instance > current.instanceNumber else {
            throw .stale(current: current.instanceNumber, offered: initHistory.instance)
        }
        let next: any AbstractInstance
        do { next = try factory.makeInstance(initHistory.instance) } catch { throw .factory(error) }
        do { _ = try next.install(initHistory) } catch { throw .refused(error) }
        // The instance left is abandoned for good (§2.3): a Chain replica stops in it and answers late clients with
        // its ABORT (D13), from which they learn where to go.
        current.leave()
        previous.append(current)
        if previous.count > retained { previous.removeFirst(previous.count - retained) }
        current = next
        currentInitHistory = initHistory
        return next
    }
}

/// Why a client did not count an ABORT towards P3.
public enum AbstractAbortRejection: Error, Equatable, Sendable {
    /// Not signed by its replica.
    case signature
    /// Not well formed (rc_chain_abort_well_formed): a Byzantine replica signed it; wait for another.
    case shape
    /// For another instance, another next(i), or another request than the one that panicked.
    case mismatch
    /// A second ABORT of one replica.
    case duplicate
}

/// The client side of switching (spec §2.3, §11.4, §12): gathers the ABORTs of the current instance for the request
/// that panicked, and on the 2f+1-th valid one of distinct replicas turns them into the next instance's init
/// history (P3) and its proof. Sans-IO; bounded (at most 3f+1 ABORTs per instance).
public struct AbstractAbortCollector {
    public let f: UInt32
    public let checkpointInterval: UInt32
    /// The instance the client is in, and next(i) (i+1 while every instance is Chain).
    public private(set) var instance: UInt64
    public private(set) var aborts: [ChainAbort] = []

    public init(f: UInt32, checkpointInterval: UInt32, instance: UInt64 = 1) {
        self.f = f
        self.checkpointInterval = checkpointInterval
        self.instance = instance
    }

    public var nextInstance: UInt64 { instance + 1 }

    /// Counts `abort` if it is a valid ABORT of this instance for (client, timestamp). Returns the init history of
    /// next(i) once 2f+1 are in (and moves to next(i): later ABORTs of i are refused as a mismatch), else nil.
    /// - Throws: ``AbstractAbortRejection``.
    public mutating func add(_ abort: ChainAbort, client: UInt32, timestamp: UInt64,
                             keyRing: ChainKeyRing) throws(AbstractAbortRejection) -> ChainInitHistory? {
        guard abort.instance == instance, abort.nextInstance == nextInstance, abort.client == client,
              abort.timestamp == timestamp else { throw .mismatch }
        guard abort.isWellFormed(f: f, checkpointInterval: checkpointInterval) else { throw .shape }
        guard !aborts.contains(where: { $0.replica == abort.replica }) else { throw .duplicate }
        guard abort.verify(with: keyRing) else { throw .signature }
        aborts.append(abort)
        guard aborts.count == Int(2 * f + 1) else { return nil }
        // P3 over exactly these 2f+1; capacity: every entry of every ABORT could be distinct.
        // A position needs f+1 ABORTs holding it, so IH ends by the last sn any ABORT holds and starts after the
        // lowest checkpoint any ABORT names (base is at least that, or no position has f+1 votes).
        let chk = UInt64(checkpointInterval)
        let end = aborts.map { $0.checkpointNumber * chk + UInt64($0.entries.count) }.max() ?? 0
        let start = aborts.map { $0.checkpointNumber * chk }.min() ?? 0
        let capacity = UInt32(min(UInt64(RC_CHAIN_HISTORY_MAX), max(1, end - start)))
        guard let ih = ChainInitHistory.extract(proof: aborts, f: f, checkpointInterval: checkpointInterval,
                                                instance: nextInstance, capacity: capacity) else {
            preconditionFailure("P3 over 2f+1 well-formed ABORTs cannot fail")
        }
        instance = nextInstance
        aborts = []
        return ih
    }

    /// Restarts collection (a new PANIC in the same instance).
    public mutating func reset() { aborts = [] }
}

/// What a switching client does with its pending requests (spec §2.3, §12 "unless req is already in IH").
public struct AbstractResubmission: Equatable, Sendable {
    /// Requests not in IH: invoke them again in next(i), the first carrying IH.
    public var resubmit: [ChainRequest]
    /// Requests in IH at these sns: they will execute in next(i) without being ordered again; the client commits
    /// them on the replies Σlast sends for IH entries (rc_chain_init_reply).
    public var inInitHistory: [(request: ChainRequest, sn: UInt64)]

    public static func == (a: Self, b: Self) -> Bool {
        a.resubmit == b.resubmit && a.inInitHistory.map(\.request) == b.inInitHistory.map(\.request)
            && a.inInitHistory.map(\.sn) == b.inInitHistory.map(\.sn)
    }

    /// Splits the client's uncommitted requests by whether IH holds them (by client, timestamp and D(req), so a
    /// request whose content a Byzantine party changed is resubmitted, not taken as done).
    public static func plan(pending: [ChainRequest], initHistory: ChainInitHistory,
                            digest: (ChainRequest) -> ChainDigest) -> AbstractResubmission {
        var plan = AbstractResubmission(resubmit: [], inInitHistory: [])
        for request in pending {
            if let entry = initHistory.entries.first(where: {
                $0.client == request.client && $0.timestamp == request.timestamp && $0.requestDigest == digest(request)
            }) {
                plan.inInitHistory.append((request, entry.sn))
            } else {
                plan.resubmit.append(request)
            }
        }
        return plan
    }
}

extension ChainClientAuthenticator {
    /// D(req) as the replicas compute it (rc_chain_request_digest).
    public func digest(_ request: ChainRequest) -> ChainDigest {
        var crypto = keyRing.crypto
        var out = rc_crypto_digest()
        let rc = request.op.withUnsafeBufferPointer {
            rc_chain_request_digest(&crypto, request.client, request.timestamp, $0.baseAddress, UInt32(request.op.count), &out)
        }
        precondition(rc == 0, "SHA-256 failed: \(rc)")
        return ChainDigest(out)
    }

    /// The same client in another instance (its MACs and commit checks are bound to the instance).
    public func switched(to instance: UInt64) -> ChainClientAuthenticator {
        ChainClientAuthenticator(keyRing: keyRing, f: f, client: client, instance: instance)
    }
}

extension ChainCore {
    /// Aliph's order (spec §13.1): the instance before this one is a Backup, so ``install(_:)`` takes a Backup proof
    /// (f+1 identical signed Backup abort histories, rc_chain_expect_backup_proof) instead of 2f+1 Chain ABORTs. The
    /// replica's composition calls it right after making the instance; never a client's choice.
    /// - Throws: ``ChainError/code(_:)`` -EBUSY once an init history is installed.
    public func expectBackupProof() throws(ChainError) {
        let rc = rc_chain_expect_backup_proof(pointer)
        guard rc == 0 else { throw .code(rc) }
    }
}
