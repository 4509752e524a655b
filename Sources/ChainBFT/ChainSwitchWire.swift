public import CRingCastCore
public import RingCastChain
import RingCastSMR

/// rc_chain_fetch as a Sendable value: replica `from` asks replica `to` for the body of IH entry `sn` (spec §12).
public struct ChainFetchFrame: Sendable, Hashable {
    public var instance: UInt64
    public var from: UInt32
    public var to: UInt32
    public var sn: UInt64
    public var client: UInt32
    public var timestamp: UInt64
    public var requestDigest: ChainDigest

    public init(_ c: rc_chain_fetch) {
        instance = c.instance; from = c.from; to = c.to; sn = c.sn; client = c.client; timestamp = c.timestamp
        requestDigest = ChainDigest(c.request_digest)
    }
}

/// The answer to a FETCH: the body the answering replica holds for (client, t_c), or none. The receiver's core
/// accepts it only when its D(req) is the digest IH holds at `sn` (rc_chain_on_fetched), so a lying answer is refused.
public struct ChainFetchedFrame: Sendable, Hashable {
    public var instance: UInt64
    public var sn: UInt64
    public var request: ChainRequest?
    public init(instance: UInt64, sn: UInt64, request: ChainRequest?) {
        self.instance = instance; self.sn = sn; self.request = request
    }
}

/// A member of Σlast's reply for a request of the init history (rc_chain_init_reply) or one the checkpoint base
/// covers: its reply, H_sn and ρ, straight to the client, which commits when all f+1 members agree and verify (C4's
/// evidence without the tail: IH requests were ordered in the earlier instance, so no batch carries their ρ).
public struct ChainInitReply: Sendable, Hashable {
    public var instance: UInt64
    public var replica: UInt32
    public var client: UInt32
    public var timestamp: UInt64
    public var sn: UInt64
    public var reply: [UInt8]
    public var historyDigest: ChainDigest
    public var mac: ChainMAC

    public init(instance: UInt64, replica: UInt32, client: UInt32, timestamp: UInt64, sn: UInt64, reply: [UInt8],
                historyDigest: ChainDigest, mac: ChainMAC) {
        self.instance = instance; self.replica = replica; self.client = client; self.timestamp = timestamp; self.sn = sn
        self.reply = reply; self.historyDigest = historyDigest; self.mac = mac
    }
}

extension ChainWire {
    /// ABORTs in one init history's proof: exactly 2f+1 for any supported f (the core refuses other counts).
    static var proofAbortsMax: Int { Int(2 * RC_CHAIN_F_MAX + 1) }

    static func putSwitch(_ frame: ChainFrame, _ w: inout FrameWriter) {
        switch frame {
        case .initHistory(let ih):
            w.uint8(ChainFrame.Kind.initHistory.rawValue)
            putInitHistory(ih, &w)
        case .fetch(let f):
            w.uint8(ChainFrame.Kind.fetch.rawValue)
            w.uint64(f.instance); w.uint32(f.from); w.uint32(f.to); w.uint64(f.sn); w.uint32(f.client)
            w.uint64(f.timestamp); w.tag(f.requestDigest)
        case .fetched(let f):
            w.uint8(ChainFrame.Kind.fetched.rawValue)
            w.uint64(f.instance); w.uint64(f.sn)
            if let r = f.request {
                w.uint8(1); w.uint32(r.client); w.uint64(r.timestamp); w.lengthPrefixed(r.op)
            } else {
                w.uint8(0)
            }
        case .initReply(let r):
            w.uint8(ChainFrame.Kind.initReply.rawValue)
            w.uint64(r.instance); w.uint32(r.replica); w.uint32(r.client); w.uint64(r.timestamp); w.uint64(r.sn)
            w.lengthPrefixed(r.reply); w.tag(r.historyDigest); w.tag(r.mac)
        default:
            preconditionFailure("putSwitch takes the switching frames only")
        }
    }

    static func putInitHistory(_ ih: ChainInitHistory, _ w: inout FrameWriter) {
        w.uint64(ih.instance)
        w.uint64(ih.base)
        w.tag(ih.baseDigest)
        w.uint32(UInt32(ih.entries.count))
        for e in ih.entries { putEntry(e, &w) }
        w.uint32(UInt32(ih.proof.count))
        for a in ih.proof { putAbort(a, &w) }
    }

    static func initHistory(_ r: inout RawReader, _ limits: ChainWireLimits) throws(ChainWireError) -> ChainInitHistory {
        let instance = try r.u64(), base = try r.u64(), baseDigest = try r.digest()
        let count = Int(try r.u32())
        guard count <= limits.abortEntriesMax, count <= r.remaining / 84 else {
            throw ChainWireError("an init history of \(count) entries")
        }
        var entries: [ChainAbort.Entry] = []
        entries.reserveCapacity(count)
        for _ in 0..<count {
            entries.append(ChainAbort.Entry(sn: try r.u64(), client: try r.u32(), timestamp: try r.u64(),
                                            requestDigest: try r.digest(), historyDigest: try r.digest()))
        }
        let proofCount = Int(try r.u32())
        guard proofCount <= proofAbortsMax else { throw ChainWireError("a proof of \(proofCount) ABORTs") }
        var proof: [ChainAbort] = []
        for _ in 0..<proofCount { proof.append(try abort(&r, limits)) }
        return ChainInitHistory(instance: instance, base: base, baseDigest: baseDigest, entries: entries, proof: proof)
    }

    static func putEntry(_ e: ChainAbort.Entry, _ w: inout FrameWriter) {
        w.uint64(e.sn); w.uint32(e.client); w.uint64(e.timestamp); w.tag(e.requestDigest); w.tag(e.historyDigest)
    }

    static func switchFrame(_ kind: ChainFrame.Kind, _ r: inout RawReader,
                            _ limits: ChainWireLimits) throws(ChainWireError) -> ChainFrame {
        switch kind {
        case .initHistory:
            return .initHistory(try initHistory(&r, limits))
        case .fetch:
            var c = rc_chain_fetch()
            c.instance = try r.u64(); c.from = try r.u32(); c.to = try r.u32(); c.sn = try r.u64(); c.client = try r.u32()
            c.timestamp = try r.u64(); c.request_digest = try r.digest().c
            return .fetch(ChainFetchFrame(c))
        case .fetched:
            let instance = try r.u64(), sn = try r.u64()
            let present = try r.u8()
            guard present <= 1 else { throw ChainWireError("a FETCH answer with flag \(present)") }
            var request: ChainRequest?
            if present == 1 {
                let client = try r.u32(), timestamp = try r.u64()
                request = ChainRequest(client: client, timestamp: timestamp, op: try r.byteString())
            }
            return .fetched(ChainFetchedFrame(instance: instance, sn: sn, request: request))
        case .initReply:
            let instance = try r.u64(), replica = try r.u32(), client = try r.u32(), timestamp = try r.u64(), sn = try r.u64()
            let reply = try r.byteString()
            return .initReply(ChainInitReply(instance: instance, replica: replica, client: client, timestamp: timestamp,
                                             sn: sn, reply: reply, historyDigest: try r.digest(), mac: try r.mac()))
        default:
            throw ChainWireError("not a switching frame: \(kind)")
        }
    }
}
