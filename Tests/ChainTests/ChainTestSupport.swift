import CRingCastCore
import RingCastChain

/// n cores of one cluster and its clients' authenticators, wired by hand for transcript tests.
final class ChainFixture {
    let f: UInt32
    let keys: ChainKeys
    let cores: [ChainCore]
    var ops: [UInt64: [UInt8]] = [:]
    var nextRef: UInt64 = 1
    /// Batches sent to each position and not yet taken (-EAGAIN).
    var inbox: [[ChainBatch]]
    /// Σlast's replies to init-history requests, by sn: (position, ρ, H_sn, reply).
    var initReplies: [UInt64: [(position: Int, mac: ChainMAC, history: ChainDigest, reply: [UInt8])]] = [:]

    let instance: UInt64

    init(f: UInt32, clients: UInt32 = 4, batchCount: UInt32 = 8, checkpointInterval: UInt32 = 128,
         historyMax: UInt32? = nil, outBatches: UInt32 = 8, keys: ChainKeys? = nil, instance: UInt64 = 1,
         retransmitTicks: UInt32 = 0) throws {
        self.f = f
        self.instance = instance
        self.keys = try keys ?? ChainKeys.generate(f: f, clients: clients)
        var cores: [ChainCore] = []
        for position in 0..<(3 * f + 1) {
            let settings = ChainCore.settings(
                f: f, self: position, instance: instance, clients: clients, batchCount: batchCount,
                checkpointInterval: checkpointInterval, historyMax: historyMax, outBatches: outBatches,
                checkpointRetransmitTicks: retransmitTicks, crypto: rc_crypto())
            cores.append(try ChainCore(settings, keyRing: self.keys.keyRing(for: .replica(position))))
        }
        self.cores = cores
        inbox = Array(repeating: [], count: cores.count)
    }

    var n: Int { cores.count }

    func client(_ id: UInt32) throws -> ChainClientAuthenticator {
        ChainClientAuthenticator(keyRing: try keys.keyRing(for: .client(id)), f: f, client: id, instance: instance)
    }

    func request(client: UInt32, timestamp: UInt64, op: String) -> ChainRequest {
        let bytes = Array(op.utf8)
        let ref = nextRef
        nextRef += 1
        ops[ref] = bytes
        return ChainRequest(client: client, timestamp: timestamp, op: bytes, ref: ref)
    }

    func next(_ position: Int) -> ChainBatch? { cores[position].nextBatch { self.ops[$0] ?? [] } }

    /// The test application: a running state over ops, so replies depend on the order.
    static func apply(_ state: inout UInt64, _ op: [UInt8]) -> [UInt8] {
        for byte in op { state = (state ^ UInt64(byte)) &* 1_099_511_628_211 }
        return withUnsafeBytes(of: state.littleEndian) { Array($0) }
    }

    /// Runs duty 1 at `position`: executions, and at Σlast the replies. Returns the sns executed.
    @discardableResult
    func execute(_ position: Int, state: inout UInt64, lie: Bool = false) -> [UInt64] {
        let core = cores[position]
        var sns: [UInt64] = []
        let initRange = core.initRange
        for e in core.executions() {
            var reply = Self.apply(&state, ops[e.ref] ?? [])
            if lie { reply[0] ^= 0xff }
            if e.reply_needed {
                precondition(core.reply(sn: e.sn, reply) == 0)
            } else if core.inSigmaLast, let initRange, initRange.contains(e.sn) {
                // An init-history request: Σlast's ρ goes straight to the client (rc_chain_init_reply).
                let (mac, history) = core.initReply(sn: e.sn, reply)!
                initReplies[e.sn, default: []].append((Int(position), mac, history, reply))
            }
            sns.append(e.sn)
        }
        return sns
    }
}

extension ChainFixture {
    /// Submits one request from `client` at the head (C1, C2); returns the head's answer.
    @discardableResult
    func submit(client: UInt32, timestamp: UInt64, op: String? = nil) throws -> Int32 {
        let r = request(client: client, timestamp: timestamp, op: op ?? "c\(client)-t\(timestamp)")
        return cores[0].request(r, clientMACs: try self.client(client).authenticate(timestamp: timestamp, op: r.op))
    }

    /// Moves everything along the chain until nothing moves: executions (Σlast replies), batches hop by hop (held
    /// while the receiver answers -EAGAIN), and CHECKPOINTs when `checkpoints`. Returns the tail's reply batches.
    func pump(states: inout [UInt64], checkpoints: Bool = true, lieAt: Int? = nil) -> [ChainBatch] {
        var out: [ChainBatch] = []
        var moved = true
        while moved {
            moved = false
            for p in 0..<n {
                if !execute(p, state: &states[p], lie: lieAt == p).isEmpty { moved = true }
                while let held = inbox[p].first {
                    let rc = cores[p].receive(held)
                    if rc == -11 { break } // EAGAIN: hold it
                    precondition(rc >= 0, "r\(p) refused a correct batch: \(rc)")
                    inbox[p].removeFirst()
                    moved = true
                }
                while let b = next(p) {
                    moved = true
                    if p == n - 1 { out.append(b) } else { inbox[p + 1].append(b) }
                }
                if checkpoints {
                    for c in cores[p].checkpoints() {
                        moved = true
                        _ = cores[Int(c.to)].receive(checkpoint: c)
                    }
                }
            }
        }
        return out
    }
}

extension ChainMAC {
    static let zero = ChainMAC(bytes: [UInt8](repeating: 0, count: 16))
}
