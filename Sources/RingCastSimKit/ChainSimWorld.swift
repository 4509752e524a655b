internal import CRingCastCore
import RingCastChain

/// One message in flight in the Chain simulator.
enum ChainSimMessage {
    case request(ChainRequest, [ChainMAC])
    case batch(ChainBatch)
    case reply(ChainSimReply)
    case checkpoint(rc_chain_checkpoint)
    case panic(rc_chain_panic)
    case abort(ChainAbort)
}

enum ChainSimEndpoint: Hashable {
    case replica(Int)
    case client(Int)
}

/// What the tail sends a client for one request (spec C3 at the tail, C4).
struct ChainSimReply {
    var client: UInt32
    var timestamp: UInt64
    var sn: UInt64
    var reply: [UInt8]
    var history: ChainDigest
    var replyMACs: [ChainMAC]
}

/// One executed request at a replica, as the checkers read it.
struct ChainSimLogEntry {
    var sn: UInt64
    var client: UInt32
    var timestamp: UInt64
    var op: [UInt8]
    /// D(req) and H_sn when the core still held the entry at execution (always at Σlast).
    var requestDigest: ChainDigest?
    var historyDigest: ChainDigest?
}

/// A replica: a correct core, its application state and its message bytes (the caller's, rc_chain.h).
final class ChainSimNode {
    let position: Int
    let core: ChainCore
    var state: UInt64 = 0
    var ops: [UInt64: [UInt8]] = [:]
    var nextRef: UInt64 = 1
    var replies: [UInt64: [UInt8]] = [:]
    var log: [ChainSimLogEntry] = []
    var batchesOut = 0

    init(position: Int, core: ChainCore) {
        self.position = position
        self.core = core
    }

    /// Stores the bytes under a fresh local handle, as the engine would keep a received buffer.
    func localize(_ request: ChainRequest) -> ChainRequest {
        var local = request
        local.ref = nextRef
        nextRef += 1
        ops[local.ref] = request.op
        return local
    }
}

/// A client: sequential, one outstanding request (Abstract's well-formed clients, spec §6).
final class ChainSimClient {
    let id: Int
    let byzantine: Bool
    let auth: ChainClientAuthenticator
    var nextTimestamp: UInt64 = 1
    var remaining: Int
    var outstanding: (timestamp: UInt64, op: [UInt8], sentAt: UInt64)?
    var panicking = false
    var aborts: [ChainAbort] = []
    var aborted = false
    var commits = 0

    init(id: Int, byzantine: Bool, auth: ChainClientAuthenticator, requests: Int) {
        self.id = id
        self.byzantine = byzantine
        self.auth = auth
        remaining = requests
    }

    var finished: Bool { aborted || (remaining == 0 && outstanding == nil) }
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
    var timestamp: UInt64
    var sn: UInt64
    var reply: [UInt8]
    var history: ChainDigest
}
