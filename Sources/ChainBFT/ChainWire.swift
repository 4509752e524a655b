public import CRingCastCore
public import RingCastChain
public import RingCastBackup
import RingCastSMR

/// Who opened a connection, as its first frame (HELLO) says. Not authenticated: every frame that matters carries
/// its own MACs (ordering MACs, client MACs, checkpoint MACs, PANIC MACs) or a signature (ABORT), which the core or
/// the client checks, so a false HELLO can only get its own frames rejected.
public enum ChainPeer: Hashable, Sendable {
    /// A replica's data link to its successor: batches only (spec §3: a FIFO stream between consecutive replicas).
    case replicaData(UInt32)
    /// A replica's control link to another replica: CHECKPOINTs. Apart from the data link so that a batch the
    /// receiver holds back (-EAGAIN) never blocks the votes that would free it (rc_chain.h, caller's duties).
    case replicaControl(UInt32)
    /// A client: requests (to the head), PANICs (to all); replies (from the tail) and ABORTs come back on it.
    case client(UInt32)
}

/// What the tail sends a client for one request (spec C3 at the tail, C4): the reply of the tail, the tail's
/// history digest H_sn, and the f+1 reply MACs ρ of Σlast.
public struct ChainReply: Hashable, Sendable {
    public var client: UInt32
    public var timestamp: UInt64
    public var sn: UInt64
    public var reply: [UInt8]
    public var historyDigest: ChainDigest
    public var replyMACs: [ChainMAC]

    public init(client: UInt32, timestamp: UInt64, sn: UInt64, reply: [UInt8], historyDigest: ChainDigest,
                replyMACs: [ChainMAC]) {
        self.client = client; self.timestamp = timestamp; self.sn = sn; self.reply = reply
        self.historyDigest = historyDigest; self.replyMACs = replyMACs
    }
}

/// One frame of the Chain wire. Layout: `u32 length` (little-endian, of what follows), `u8 kind`, the body.
/// Integers are little-endian; byte strings are `u32 length` + bytes; MACs 16 bytes, digests 32, signatures 64.
public enum ChainFrame: Sendable {
    case hello(ChainPeer, instance: UInt64)
    case request(ChainRequest, clientMACs: [ChainMAC])
    case batch(ChainBatch)
    case reply(ChainReply)
    case checkpoint(ChainCheckpointFrame)
    case panic(ChainPanicFrame)
    case abort(ChainAbort)
    // Switching (spec §12; ChainSwitchWire.swift): INIT, FETCH, a FETCH answer, Σlast's direct reply for an IH request.
    case initHistory(ChainInitHistory)
    case fetch(ChainFetchFrame)
    case fetched(ChainFetchedFrame)
    case initReply(ChainInitReply)
    // Backup (spec §13.1; BackupWire.swift): a PBFT envelope between replicas, a client's request to every replica,
    // a replica's reply. A Backup abort history goes to the client as an ``abort(_:)`` (the same signed record).
    case pbft(instance: UInt64, PBFT.Envelope)
    case backupRequest(instance: UInt64, PBFT.ClientRequest)
    case backupReply(instance: UInt64, PBFT.Reply)

    enum Kind: UInt8 {
        case hello = 1, request = 2, batch = 3, reply = 4, checkpoint = 5, panic = 6, abort = 7
        case initHistory = 8, fetch = 9, fetched = 10, initReply = 11
        case pbft = 12, backupRequest = 13, backupReply = 14
    }
}

/// rc_chain_checkpoint as a Sendable value.
public struct ChainCheckpointFrame: Sendable, Hashable {
    public var c: rc_chain_checkpoint
    public init(_ c: rc_chain_checkpoint) { self.c = c }
    public static func == (a: Self, b: Self) -> Bool { a.encodedBody == b.encodedBody }
    public func hash(into hasher: inout Hasher) { hasher.combine(encodedBody) }
    var encodedBody: [UInt8] {
        ChainWire.bytes { ChainWire.putCheckpoint(c, &$0) }
    }
}

/// rc_chain_panic as a Sendable value.
public struct ChainPanicFrame: Sendable, Hashable {
    public var c: rc_chain_panic
    public init(_ c: rc_chain_panic) { self.c = c }
    public static func == (a: Self, b: Self) -> Bool { a.encodedBody == b.encodedBody }
    public func hash(into hasher: inout Hasher) { hasher.combine(encodedBody) }
    var encodedBody: [UInt8] {
        ChainWire.bytes { ChainWire.putPanic(c, &$0) }
    }
}

/// Input that is not a well-formed frame: the connection it came on is closed and the event counted.
public struct ChainWireError: Error, Sendable, Hashable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "malformed Chain frame: \(reason)" }
}

/// Limits every decoder enforces before it allocates (a frame never makes the receiver allocate more than its
/// own length, and its length is bounded).
public struct ChainWireLimits: Sendable, Hashable {
    /// Largest frame (after the length field). Must fit the transport's receive buffer (a frame is parsed in place).
    public var frameBytesMax: Int = 2 << 20
    /// Requests per batch (RC_CHAIN_BATCH_COUNT_MAX).
    public var batchCountMax: Int = Int(RC_CHAIN_BATCH_COUNT_MAX)
    /// MACs in one frame's arrays.
    public var macsMax: Int = 1 << 16
    /// Entries of one ABORT.
    public var abortEntriesMax: Int = Int(RC_CHAIN_HISTORY_MAX)
    public init() {}
}

/// Encoder and decoder of ``ChainFrame``.
public enum ChainWire {
    static let headerBytes = 4

    /// The frame with its length prefix.
    public static func encode(_ frame: ChainFrame) -> [UInt8] {
        let size = encodedSize(frame)
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            initialized = encode(frame, into: UnsafeMutableRawBufferPointer(buffer))
        }
    }

    /// Bytes ``encode(_:into:)`` writes for `frame` (a counting pass: no byte is copied).
    static func encodedSize(_ frame: ChainFrame) -> Int {
        var w = FrameWriter(nil)
        put(frame, &w)
        return w.count
    }

    /// Writes the frame with its length prefix into `buffer` (at least ``encodedSize(_:)`` bytes); returns the count.
    /// The transport encodes straight into the buffer it hands the kernel: each request's bytes are copied once on
    /// the way out (one memcpy), not into an array and then again into a send buffer.
    static func encode(_ frame: ChainFrame, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        var w = FrameWriter(buffer)
        put(frame, &w)
        return w.count
    }

    private static func put(_ frame: ChainFrame, _ w: inout FrameWriter) {
        w.uint32(0)
        switch frame {
        case let .hello(peer, instance):
            w.uint8(ChainFrame.Kind.hello.rawValue)
            switch peer {
            case .replicaData(let p): w.uint8(0); w.uint32(p)
            case .replicaControl(let p): w.uint8(1); w.uint32(p)
            case .client(let c): w.uint8(2); w.uint32(c)
            }
            w.uint64(instance)
        case let .request(request, macs):
            w.uint8(ChainFrame.Kind.request.rawValue)
            w.uint32(request.client)
            w.uint64(request.timestamp)
            w.lengthPrefixed(request.op)
            w.uint32(UInt32(macs.count))
            for mac in macs { w.tag(mac) }
        case let .batch(batch):
            w.uint8(ChainFrame.Kind.batch.rawValue)
            putBatch(batch, &w)
        case let .reply(reply):
            w.uint8(ChainFrame.Kind.reply.rawValue)
            w.uint32(reply.client)
            w.uint64(reply.timestamp)
            w.uint64(reply.sn)
            w.lengthPrefixed(reply.reply)
            w.tag(reply.historyDigest)
            w.uint32(UInt32(reply.replyMACs.count))
            for mac in reply.replyMACs { w.tag(mac) }
        case let .checkpoint(checkpoint):
            w.uint8(ChainFrame.Kind.checkpoint.rawValue)
            putCheckpoint(checkpoint.c, &w)
        case let .panic(panic):
            w.uint8(ChainFrame.Kind.panic.rawValue)
            putPanic(panic.c, &w)
        case let .abort(abort):
            w.uint8(ChainFrame.Kind.abort.rawValue)
            putAbort(abort, &w)
        case .initHistory, .fetch, .fetched, .initReply:
            putSwitch(frame, &w)
        case .pbft, .backupRequest, .backupReply:
            putBackup(frame, &w)
        }
        w.patchUInt32(UInt32(w.count - headerBytes), at: 0)
    }

    static func putBatch(_ b: ChainBatch, _ w: inout FrameWriter) {
        w.uint64(b.instance)
        w.uint64(b.snFirst)
        w.uint32(UInt32(b.requests.count))
        for r in b.requests {
            w.uint32(r.client)
            w.uint64(r.timestamp)
            w.lengthPrefixed(r.op)
        }
        w.uint32(UInt32(b.window.count))
        for mac in b.window { w.tag(mac) }
        w.uint32(UInt32(b.clientMACsPerRequest))
        w.uint32(UInt32(b.clientMACs.count))
        for mac in b.clientMACs { w.tag(mac) }
        w.uint32(UInt32(b.replyMACsPerRequest))
        w.uint32(UInt32(b.replyMACs.count))
        for mac in b.replyMACs { w.tag(mac) }
        w.uint32(UInt32(b.historyDigests.count))
        for digest in b.historyDigests { w.tag(digest) }
    }

    static func putCheckpoint(_ c: rc_chain_checkpoint, _ w: inout FrameWriter) {
        w.uint64(c.instance)
        w.uint32(c.from)
        w.uint32(c.to)
        w.uint64(c.number)
        w.tag(ChainDigest(c.digest))
        w.tag(ChainMAC(c.mac))
        w.uint32(c.kind)
    }

    static func putPanic(_ p: rc_chain_panic, _ w: inout FrameWriter) {
        w.uint64(p.instance)
        w.uint32(p.client)
        w.uint64(p.timestamp)
        w.uint32(p.replica)
        w.tag(ChainMAC(p.mac))
    }

    static func putAbort(_ a: ChainAbort, _ w: inout FrameWriter) {
        w.uint32(a.replica)
        w.uint32(a.client)
        w.uint64(a.timestamp)
        w.uint64(a.instance)
        w.uint64(a.nextInstance)
        w.uint64(a.checkpointNumber)
        w.tag(a.checkpointDigest)
        w.uint32(UInt32(a.entries.count))
        for e in a.entries {
            w.uint64(e.sn)
            w.uint32(e.client)
            w.uint64(e.timestamp)
            w.tag(e.requestDigest)
            w.tag(e.historyDigest)
        }
        w.raw(a.signature)
    }

    /// The length of the first frame in `bytes` (prefix included) when it is complete, nil when more bytes are
    /// needed. Throws for a length no correct sender writes (0, or above the limit): the stream cannot be resynchronised.
    public static func frameLength(_ bytes: UnsafeRawBufferPointer, limits: ChainWireLimits) throws(ChainWireError) -> Int? {
        guard bytes.count >= headerBytes else { return nil }
        let length = Int(bytes.loadUnaligned(as: UInt32.self).littleEndian)
        guard length >= 1 else { throw ChainWireError("an empty frame") }
        guard length <= limits.frameBytesMax else {
            throw ChainWireError("a frame of \(length) bytes exceeds the limit of \(limits.frameBytesMax)")
        }
        return bytes.count >= headerBytes + length ? headerBytes + length : nil
    }

    /// Decodes one whole frame (prefix included, as ``frameLength(_:limits:)`` delimited it).
    public static func decode(_ bytes: UnsafeRawBufferPointer, limits: ChainWireLimits) throws(ChainWireError) -> ChainFrame {
        var r = RawReader(bytes, offset: headerBytes)
        guard let kind = ChainFrame.Kind(rawValue: try r.u8()) else { throw ChainWireError("unknown kind \(bytes[headerBytes])") }
        let frame: ChainFrame
        switch kind {
        case .hello:
            let role = try r.u8(), id = try r.u32()
            let peer: ChainPeer
            switch role {
            case 0: peer = .replicaData(id)
            case 1: peer = .replicaControl(id)
            case 2: peer = .client(id)
            default: throw ChainWireError("HELLO with unknown role \(role)")
            }
            frame = .hello(peer, instance: try r.u64())
        case .request:
            let client = try r.u32(), timestamp = try r.u64()
            let op = try r.byteString()
            let macs = try r.macs(limits)
            frame = .request(ChainRequest(client: client, timestamp: timestamp, op: op), clientMACs: macs)
        case .batch:
            frame = .batch(try batch(&r, limits))
        case .reply:
            let client = try r.u32(), timestamp = try r.u64(), sn = try r.u64()
            let reply = try r.byteString()
            let digest = try r.digest()
            frame = .reply(ChainReply(client: client, timestamp: timestamp, sn: sn, reply: reply, historyDigest: digest,
                                      replyMACs: try r.macs(limits)))
        case .checkpoint:
            var c = rc_chain_checkpoint()
            c.instance = try r.u64(); c.from = try r.u32(); c.to = try r.u32(); c.number = try r.u64()
            c.digest = try r.digest().c; c.mac = try r.mac().c; c.kind = try r.u32()
            frame = .checkpoint(ChainCheckpointFrame(c))
        case .panic:
            var p = rc_chain_panic()
            p.instance = try r.u64(); p.client = try r.u32(); p.timestamp = try r.u64(); p.replica = try r.u32()
            p.mac = try r.mac().c
            frame = .panic(ChainPanicFrame(p))
        case .abort:
            frame = .abort(try abort(&r, limits))
        case .initHistory, .fetch, .fetched, .initReply:
            frame = try switchFrame(kind, &r, limits)
        case .pbft, .backupRequest, .backupReply:
            frame = try backupFrame(kind, &r, limits)
        }
        guard r.atEnd else { throw ChainWireError("\(r.remaining) trailing bytes after a \(kind) frame") }
        return frame
    }

    static func batch(_ r: inout RawReader, _ limits: ChainWireLimits) throws(ChainWireError) -> ChainBatch {
        let instance = try r.u64(), snFirst = try r.u64()
        let count = Int(try r.u32())
        guard count <= limits.batchCountMax else { throw ChainWireError("a batch of \(count) requests") }
        var requests: [ChainRequest] = []
        requests.reserveCapacity(count)
        for _ in 0..<count {
            let client = try r.u32(), timestamp = try r.u64()
            requests.append(ChainRequest(client: client, timestamp: timestamp, op: try r.byteString()))
        }
        let window = try r.macs(limits)
        let clientPer = Int(try r.u32())
        let clientMACs = try r.macs(limits)
        let replyPer = Int(try r.u32())
        let replyMACs = try r.macs(limits)
        let digestCount = Int(try r.u32())
        guard digestCount == 0 || digestCount == count else { throw ChainWireError("\(digestCount) history digests for \(count) requests") }
        var digests: [ChainDigest] = []
        for _ in 0..<digestCount { digests.append(try r.digest()) }
        // The arrays' shapes are checked here so that withCBatch never reads out of bounds; whether the shape is the
        // one this hop must carry is the core's check (C3), which stops the replica on a wrong one.
        guard clientMACs.count == count * clientPer, replyMACs.count == count * replyPer else {
            throw ChainWireError("MAC arrays do not match \(count) requests")
        }
        return ChainBatch(instance: instance, snFirst: snFirst, requests: requests, window: window,
                          clientMACsPerRequest: clientPer, clientMACs: clientMACs, replyMACsPerRequest: replyPer,
                          replyMACs: replyMACs, historyDigests: digests)
    }

    static func abort(_ r: inout RawReader, _ limits: ChainWireLimits) throws(ChainWireError) -> ChainAbort {
        var a = rc_chain_abort()
        a.replica = try r.u32(); a.client = try r.u32(); a.timestamp = try r.u64(); a.instance = try r.u64()
        a.next_instance = try r.u64(); a.checkpoint_number = try r.u64(); a.checkpoint_digest = try r.digest().c
        let count = Int(try r.u32())
        guard count <= limits.abortEntriesMax, count <= r.remaining / 84 else { throw ChainWireError("an ABORT of \(count) entries") }
        var entries: [rc_chain_abort_entry] = []
        entries.reserveCapacity(count)
        for _ in 0..<count {
            entries.append(rc_chain_abort_entry(sn: try r.u64(), client: try r.u32(), timestamp: try r.u64(),
                                                request_digest: try r.digest().c, history_digest: try r.digest().c))
        }
        let signature = try r.raw(Int(RC_CRYPTO_SIGNATURE_BYTES))
        withUnsafeMutableBytes(of: &a.signature.bytes) { $0.copyBytes(from: signature) }
        a.entry_count = UInt32(count)
        return entries.withUnsafeBufferPointer { e in
            a.entries = e.baseAddress
            return ChainAbort(a)
        }
    }
}

/// A bounds-checked little-endian reader over borrowed bytes (the transport's receive buffer).
struct RawReader {
    let bytes: UnsafeRawBufferPointer
    var offset: Int

    init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) { self.bytes = bytes; self.offset = offset }

    var remaining: Int { bytes.count - offset }
    var atEnd: Bool { offset == bytes.count }

    mutating func need(_ count: Int) throws(ChainWireError) {
        guard count >= 0, remaining >= count else {
            throw ChainWireError("needs \(count) bytes at offset \(offset), \(remaining) left")
        }
    }

    mutating func u8() throws(ChainWireError) -> UInt8 {
        try need(1)
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func u32() throws(ChainWireError) -> UInt32 {
        try need(4)
        defer { offset += 4 }
        return bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian
    }

    mutating func u64() throws(ChainWireError) -> UInt64 {
        try need(8)
        defer { offset += 8 }
        return bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self).littleEndian
    }

    mutating func raw(_ count: Int) throws(ChainWireError) -> [UInt8] {
        try need(count)
        defer { offset += count }
        // One memcpy (UnsafeRawBufferPointer's contiguous copy), not a byte-by-byte walk over a Slice.
        return [UInt8](UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)]))
    }

    mutating func byteString() throws(ChainWireError) -> [UInt8] { try raw(Int(try u32())) }
    /// A MAC read straight into its inline storage (no intermediate array).
    mutating func mac() throws(ChainWireError) -> ChainMAC {
        let count = Int(RC_CRYPTO_MAC_BYTES)
        try need(count)
        defer { offset += count }
        var mac = rc_crypto_mac()
        withUnsafeMutableBytes(of: &mac.bytes) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])) }
        return ChainMAC(mac)
    }

    mutating func digest() throws(ChainWireError) -> ChainDigest {
        let count = Int(RC_CRYPTO_DIGEST_BYTES)
        try need(count)
        defer { offset += count }
        var digest = rc_crypto_digest()
        withUnsafeMutableBytes(of: &digest.bytes) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])) }
        return ChainDigest(digest)
    }

    mutating func macs(_ limits: ChainWireLimits) throws(ChainWireError) -> [ChainMAC] {
        let count = Int(try u32())
        guard count <= limits.macsMax else { throw ChainWireError("\(count) MACs") }
        try need(count * Int(RC_CRYPTO_MAC_BYTES))
        var out: [ChainMAC] = []
        out.reserveCapacity(count)
        for _ in 0..<count { out.append(try mac()) }
        return out
    }
}

extension ChainWire {
    /// The bytes `body` writes (a counting pass, then the writing pass into the array's own storage).
    static func bytes(_ body: (inout FrameWriter) -> Void) -> [UInt8] {
        var counter = FrameWriter(nil)
        body(&counter)
        return [UInt8](unsafeUninitializedCapacity: counter.count) { buffer, initialized in
            var w = FrameWriter(UnsafeMutableRawBufferPointer(buffer))
            body(&w)
            initialized = w.count
        }
    }
}

/// A little-endian writer into caller-provided memory, or (no memory) a counter of the bytes it would write. Byte
/// strings go in with one memcpy each (RingCastSMR's ByteWriter takes `some Collection` through a generic, not inlinable
/// entry point, which does not promise a bulk copy), and the frame is sized first so that nothing regrows.
struct FrameWriter {
    private let base: UnsafeMutableRawPointer?
    private let capacity: Int
    private(set) var count = 0

    /// `buffer` nil: count only.
    init(_ buffer: UnsafeMutableRawBufferPointer?) {
        base = buffer?.baseAddress
        capacity = buffer?.count ?? Int.max
    }

    mutating func put(_ bytes: UnsafeRawBufferPointer) {
        precondition(count + bytes.count <= capacity, "a frame overran its buffer (the counting pass disagrees)")
        if let base, let source = bytes.baseAddress, !bytes.isEmpty {
            (base + count).copyMemory(from: source, byteCount: bytes.count)
        }
        count += bytes.count
    }

    mutating func uint8(_ value: UInt8) { withUnsafeBytes(of: value) { put($0) } }
    mutating func uint32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { put($0) } }
    mutating func uint64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { put($0) } }
    mutating func raw(_ value: [UInt8]) { value.withUnsafeBytes { put($0) } }
    /// A MAC or digest, straight from its inline storage (no array in between).
    mutating func tag(_ mac: ChainMAC) { mac.withUnsafeBytes { put($0) } }
    mutating func tag(_ digest: ChainDigest) { digest.withUnsafeBytes { put($0) } }
    mutating func lengthPrefixed(_ value: [UInt8]) {
        precondition(value.count <= Int(UInt32.max), "a byte string must fit a u32 length")
        uint32(UInt32(value.count))
        raw(value)
    }

    mutating func patchUInt32(_ value: UInt32, at offset: Int) {
        precondition(offset + 4 <= count)
        base?.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt32.self)
    }
}
