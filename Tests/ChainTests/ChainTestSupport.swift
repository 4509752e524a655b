import CRingCastCore
import RingCastChain

/// n cores of one cluster and its clients' authenticators, wired by hand for transcript tests.
final class ChainFixture {
    let f: UInt32
    let keys: ChainKeys
    let cores: [ChainCore]
    var ops: [UInt64: [UInt8]] = [:]
    var nextRef: UInt64 = 1

    init(f: UInt32, clients: UInt32 = 4, batchCount: UInt32 = 8, checkpointInterval: UInt32 = 128,
         historyMax: UInt32? = nil, outBatches: UInt32 = 8) throws {
        self.f = f
        keys = try ChainKeys.generate(f: f, clients: clients)
        var cores: [ChainCore] = []
        for position in 0..<(3 * f + 1) {
            let settings = ChainCore.settings(
                f: f, self: position, clients: clients, batchCount: batchCount, checkpointInterval: checkpointInterval,
                historyMax: historyMax, outBatches: outBatches, crypto: rc_crypto())
            cores.append(try ChainCore(settings, keyRing: keys.keyRing(for: .replica(position))))
        }
        self.cores = cores
    }

    var n: Int { cores.count }

    func client(_ id: UInt32) throws -> ChainClientAuthenticator {
        ChainClientAuthenticator(keyRing: try keys.keyRing(for: .client(id)), f: f, client: id)
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
        for e in core.executions() {
            var reply = Self.apply(&state, ops[e.ref] ?? [])
            if lie { reply[0] ^= 0xff }
            if e.reply_needed { precondition(core.reply(sn: e.sn, reply) == 0) }
            sns.append(e.sn)
        }
        return sns
    }
}

extension ChainMAC {
    static let zero = ChainMAC(bytes: [UInt8](repeating: 0, count: 16))
}
