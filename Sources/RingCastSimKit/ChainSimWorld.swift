internal import CRingCastCore
import RingCastChain

/// One message in flight in the Chain simulator. Every protocol message names its Abstract instance.
enum ChainSimMessage {
    case request(ChainRequest, [ChainMAC], instance: UInt64)
    case batch(ChainBatch)
    case reply(ChainSimReply)
    case checkpoint(rc_chain_checkpoint)
    /// P1, and P1+: a PANIC in an instance entered with an init history carries it.
    case panic(rc_chain_panic, ChainInitHistory?)
    case abort(ChainAbort)
    /// INIT (spec §12, D8): client → head with its first request of a new instance; replica → successor ahead of
    /// the instance's first batch.
    case initHistory(ChainInitHistory)
    case fetch(rc_chain_fetch)
    /// A FETCH answer: the body for IH entry `sn`, or nil when the replica has none.
    case fetched(instance: UInt64, sn: UInt64, ChainRequest?)
    /// Σlast's reply to a request of an init history, straight to its client (rc_chain_init_reply).
    case initReply(ChainSimInitReply)
}

enum ChainSimEndpoint: Hashable {
    case replica(Int)
    case client(Int)
}

/// What the tail sends a client for one request (spec C3 at the tail, C4).
struct ChainSimReply {
    var instance: UInt64
    var client: UInt32
    var timestamp: UInt64
    var sn: UInt64
    var reply: [UInt8]
    var history: ChainDigest
    var replyMACs: [ChainMAC]
}

/// One member of Σlast's reply to an init-history request.
struct ChainSimInitReply {
    var instance: UInt64
    var replica: Int
    var client: UInt32
    var timestamp: UInt64
    var sn: UInt64
    var reply: [UInt8]
    var history: ChainDigest
    var mac: ChainMAC
}

/// One executed request at a replica, as the checkers read it.
struct ChainSimLogEntry {
    var sn: UInt64
    var client: UInt32
    var timestamp: UInt64
    var op: [UInt8]
    var requestDigest: ChainDigest
    /// H_sn, followed by the simulator beside the core (checked against the core's while it keeps the entry).
    var historyDigest: ChainDigest
    /// The application state after this request, for rollback on entering an instance (D10).
    var stateAfter: UInt64
}

/// Operation counters summed over the instances a replica went through.
struct ChainSimCounters {
    var macGenerations: UInt64 = 0
    var macVerifications: UInt64 = 0
    var requestsLogged: UInt64 = 0
    var batchesOut: UInt64 = 0
    var checkpointsStable: UInt64 = 0
    var checkpointsSent: UInt64 = 0
    var checkpointsRefused: UInt64 = 0
    var initsRefused: UInt64 = 0
    var fetchesSent: UInt64 = 0
    var fetchedRejected: UInt64 = 0

    mutating func add(_ s: rc_chain_stats) {
        macGenerations += s.mac_generations
        macVerifications += s.mac_verifications
        requestsLogged += s.requests_logged
        batchesOut += s.batches_out
        checkpointsStable += s.checkpoints_stable
        checkpointsSent += s.checkpoints_sent
        checkpointsRefused += s.checkpoints_bad_mac + s.checkpoints_conflicting + s.checkpoints_out_of_window
        initsRefused += s.inits_refused
        fetchesSent += s.fetches_sent
        fetchedRejected += s.fetched_rejected
    }
}

/// A replica: the switching composer over correct cores (one per instance), its application state and its message
/// bytes (the caller's, rc_chain.h).
final class ChainSimNode {
    let position: Int
    let composer: AbstractReplica
    let keyRing: ChainKeyRing
    var state: UInt64 = 0
    /// H of the executed log, followed beside the core.
    var history: ChainDigest = .zero
    var ops: [UInt64: [UInt8]] = [:]
    var nextRef: UInt64 = 1
    /// Every request body this replica received, by D(req): its own store for IH entries and FETCH answers.
    var bodies: [ChainDigest: ChainRequest] = [:]
    var replies: [UInt64: [UInt8]] = [:]
    var log: [ChainSimLogEntry] = []
    var batchesOut = 0
    /// Counters of the instances left.
    var retired = ChainSimCounters()
    /// Instance → the init history this replica installed there.
    var installed: [UInt64: ChainInitHistory] = [:]
    /// Paused (crashed) until this tick.
    var pausedUntil: UInt64 = 0
    /// Forgot its request bodies once (restarted).
    var wiped = false

    init(position: Int, composer: AbstractReplica, keyRing: ChainKeyRing) {
        self.position = position
        self.composer = composer
        self.keyRing = keyRing
    }

    /// The current instance's core (every instance is Chain until Backup exists).
    var core: ChainCore { composer.current as! ChainCore }
    var instance: UInt64 { composer.currentNumber }
    func core(_ instance: UInt64) -> ChainCore? { composer.instance(instance) as? ChainCore }

    var counters: ChainSimCounters {
        var total = retired
        total.add(core.stats)
        return total
    }

    /// Stores the bytes under a fresh local handle, as the engine would keep a received buffer.
    func localize(_ request: ChainRequest) -> ChainRequest {
        var local = request
        local.ref = nextRef
        nextRef += 1
        ops[local.ref] = request.op
        let digest = ChainDigest.request(client: request.client, timestamp: request.timestamp, op: request.op, keyRing: keyRing)
        if bodies[digest] == nil { bodies[digest] = request }
        return local
    }
}

/// A client: sequential, one outstanding request (Abstract's well-formed clients, spec §6), switching instances.
final class ChainSimClient {
    let id: Int
    let byzantine: Bool
    var auth: ChainClientAuthenticator
    var collector: AbstractAbortCollector
    var nextTimestamp: UInt64 = 1
    var remaining: Int
    var outstanding: (timestamp: UInt64, op: [UInt8], sentAt: UInt64)?
    var panicking = false
    /// The init history of the current instance, attached to the first invocation and to PANICs there (P1+).
    var initHistory: ChainInitHistory?
    /// The next invocation is the first in this instance: INIT goes ahead of it (C1+).
    var initPending = false
    /// The outstanding request is in the current instance's IH at this sn: it commits on Σlast's init replies.
    var awaitingInit: UInt64?
    /// Σlast's direct replies (init-history and cached ones) for the outstanding request, by (instance, sn), then replica.
    var initReplies: [ChainSimReplySlot: [Int: ChainSimInitReply]] = [:]
    /// The abort histories this client extracted, with their instance (the last one ends the client).
    var abortHistories: [ChainInitHistory] = []
    var aborted = false
    var commits = 0
    var switches = 0

    init(id: Int, byzantine: Bool, auth: ChainClientAuthenticator, collector: AbstractAbortCollector, requests: Int) {
        self.id = id
        self.byzantine = byzantine
        self.auth = auth
        self.collector = collector
        remaining = requests
    }

    var instance: UInt64 { auth.instance }
    var finished: Bool { aborted || (remaining == 0 && outstanding == nil) }
}

struct ChainSimReplySlot: Hashable {
    var instance: UInt64
    var sn: UInt64
}

/// A FIFO link: messages leave in the order sent, each no earlier than its drawn delivery tick.
struct ChainSimLink {
    let from: ChainSimEndpoint
    let to: ChainSimEndpoint
    var queue: [(at: UInt64, message: ChainSimMessage)] = []
    var head = 0
    var lastAt: UInt64 = 0

    var inFlight: Int { queue.count - head }
}

/// A committed request, as the client saw it.
struct ChainSimCommit {
    var client: Int
    var instance: UInt64
    var timestamp: UInt64
    var sn: UInt64
    var reply: [UInt8]
    var history: ChainDigest
}
