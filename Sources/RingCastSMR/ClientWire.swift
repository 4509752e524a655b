/// How a read is served (the DocC article *Replicating a service* states each guarantee).
public enum ReadConsistency: UInt8, Sendable, Hashable, CaseIterable {
    /// Linearizable: the replica broadcasts a read barrier through the ring (many reads share one) and answers
    /// from its state once the barrier is delivered, so the read sees every write acknowledged before it started.
    case linearizable = 0
    /// Sequential: local state, once it includes everything this session has seen (its writes' and reads' log
    /// indexes); read-your-writes and monotonic reads within a session, also across failover. No barrier.
    case sequential = 1
    /// Stale: local state now; no wait, no guarantee beyond a prefix of the total order.
    case stale = 2
}

/// The status of a reply to a client.
public enum ReplyStatus: UInt8, Sendable, Hashable {
    case ok = 0
    /// The session expired (ordered time) or was evicted; the request was not applied.
    case unknownSession = 1
    /// The request was below the session's `firstUnacknowledged`; not applied.
    case alreadyAcknowledged = 2
    /// The request broke the session's window; not applied.
    case outsideWindow = 3
    /// The command or query did not decode; not applied (deterministically, on every replica).
    case malformedCommand = 4
    /// The replica's bounded queues are full; not submitted, try again.
    case busy = 5
    /// The replica is not in a running view (joining, changing view, excluded, stopping).
    case notRunning = 6
}

/// Frames between a client and a replica. Every frame: `length u32` (of what follows, ≤ the replica's
/// `frameBytesMax`), `version u8 = 1`, `kind u8`, the body (little-endian). Malformed input closes the connection
/// after an ``ClientFrame/error(code:message:)`` frame; the replica keeps serving the others.
enum ClientFrame: Sendable, Hashable {
    // client → replica
    case hello
    case openSession(request: UInt64)
    case command(request: UInt64, session: UInt64, sequence: UInt64, firstUnacknowledged: UInt64, command: [UInt8])
    case read(request: UInt64, consistency: ReadConsistency, minIndex: UInt64, query: [UInt8])
    case statistics(request: UInt64)
    case closeSession(request: UInt64, session: UInt64)
    /// A joining replica pulls the snapshot of transfer `transfer` from its provider.
    case snapshotRequest(transfer: UInt64)
    /// The replica's state digest and applied index (reply payload: index u64, digest u64).
    case digest(request: UInt64)
    /// A replica that will join asks to *learn* (Learner.swift): the provider streams a copy of its state (the
    /// ``snapshotChunk(_:)`` frames, then ``snapshotEnd(bytes:)``), then feeds every ring batch it applies
    /// (``learnerEntry(index:providerIndex:payload:)``) until the learner closes the connection.
    case learnRequest
    /// A joiner that caught up through its feed does not need the snapshot of transfer `transfer`: the provider
    /// counts it as pulled (and stops keeping the copy at the cut).
    case snapshotDecline(transfer: UInt64)
    /// A learner asks to learn with the feed on a connection of its own (Learner.swift): the provider answers
    /// ``learnerAdmitted(learner:)`` on this connection, then streams the copy here (``snapshotChunk(_:)`` frames,
    /// ``snapshotEnd(bytes:)``) and nothing else; the feed goes to the connection that sends ``learnFeed(learner:)``.
    /// Why apart: a learner whose restore runs idle-class (``Replica/Options/snapshotThreadIdle``) may not read the
    /// copy for a while, and on one connection the feed's batches would wait behind it at the provider (issue #12).
    /// (``learnRequest`` keeps the feed between the chunks, for learners that do not send this frame.)
    case learnRequestFeedApart
    /// The learner's second connection: the provider sends learner `learner`'s feed
    /// (``learnerEntry(index:providerIndex:payload:)``) here until the learner closes it. An unknown id, or one
    /// that has a feed connection already, is refused with an ``error(code:message:)`` frame.
    case learnFeed(learner: UInt64)
    // replica → client
    /// The answer to ``learnRequestFeedApart``: the id the learner's ``learnFeed(learner:)`` names.
    case learnerAdmitted(learner: UInt64)
    case welcome(replica: UInt32, windowMax: UInt32, appliedIndex: UInt64)
    case reply(request: UInt64, status: ReplyStatus, index: UInt64, payload: [UInt8])
    case error(code: UInt8, message: String)
    /// One chunk of a snapshot stream.
    case snapshotChunk([UInt8])
    /// The end of a snapshot stream, with its length in bytes.
    case snapshotEnd(bytes: UInt64)
    /// One ring batch the provider applied, as delivered: `index` is the provider's applied index after it,
    /// `providerIndex` its applied index when it sent the frame (the learner's lag is the difference).
    case learnerEntry(index: UInt64, providerIndex: UInt64, payload: [UInt8])

    static let version: UInt8 = 1
    static let lengthBytes = 4

    /// The frame with its length prefix.
    func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 32)
        encode(into: &writer)
        return writer.bytes
    }

    /// Appends the frame with its length prefix (many frames into one buffer: one `send`, no array per frame).
    func encode(into writer: inout ByteWriter) {
        let start = writer.count
        writer.uint32(0)
        writer.uint8(Self.version)
        switch self {
        case .hello:
            writer.uint8(1)
        case let .openSession(request):
            writer.uint8(2)
            writer.uint64(request)
        case let .command(request, session, sequence, firstUnacknowledged, command):
            writer.uint8(3)
            writer.uint64(request)
            writer.uint64(session)
            writer.uint64(sequence)
            writer.uint64(firstUnacknowledged)
            writer.raw(command)
        case let .read(request, consistency, minIndex, query):
            writer.uint8(4)
            writer.uint64(request)
            writer.uint8(consistency.rawValue)
            writer.uint64(minIndex)
            writer.raw(query)
        case let .statistics(request):
            writer.uint8(5)
            writer.uint64(request)
        case let .closeSession(request, session):
            writer.uint8(6)
            writer.uint64(request)
            writer.uint64(session)
        case let .snapshotRequest(transfer):
            writer.uint8(7)
            writer.uint64(transfer)
        case let .digest(request):
            writer.uint8(8)
            writer.uint64(request)
        case .learnRequest:
            writer.uint8(9)
        case let .snapshotDecline(transfer):
            writer.uint8(10)
            writer.uint64(transfer)
        case .learnRequestFeedApart:
            writer.uint8(11)
        case let .learnFeed(learner):
            writer.uint8(12)
            writer.uint64(learner)
        case let .learnerAdmitted(learner):
            writer.uint8(0x87)
            writer.uint64(learner)
        case let .learnerEntry(index, providerIndex, payload):
            writer.uint8(0x86)
            writer.uint64(index)
            writer.uint64(providerIndex)
            writer.raw(payload)
        case let .snapshotChunk(bytes):
            writer.uint8(0x84)
            writer.raw(bytes)
        case let .snapshotEnd(bytes):
            writer.uint8(0x85)
            writer.uint64(bytes)
        case let .welcome(replica, windowMax, appliedIndex):
            writer.uint8(0x81)
            writer.uint32(replica)
            writer.uint32(windowMax)
            writer.uint64(appliedIndex)
        case let .reply(request, status, index, payload):
            writer.uint8(Self.replyKind)
            writer.uint64(request)
            writer.uint8(status.rawValue)
            writer.uint64(index)
            writer.raw(payload)
        case let .error(code, message):
            writer.uint8(Self.errorKind)
            writer.uint8(code)
            writer.raw(Array(message.utf8.prefix(512)))
        }
        writer.patchUInt32(UInt32(writer.count - start - Self.lengthBytes), at: start)
    }

    /// Appends the frame with its length prefix to a byte buffer.
    func encode(into bytes: inout [UInt8]) {
        // A reply (answers to reads, refusals) goes straight into the buffer: no writer of its own per frame.
        if case let .reply(request, status, index, payload) = self {
            withUnsafeBytes(of: UInt32(2 + 8 + 1 + 8 + payload.count).littleEndian) { bytes.append(contentsOf: $0) }
            bytes.append(Self.version)
            bytes.append(Self.replyKind)
            withUnsafeBytes(of: request.littleEndian) { bytes.append(contentsOf: $0) }
            bytes.append(status.rawValue)
            withUnsafeBytes(of: index.littleEndian) { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: payload)
            return
        }
        var writer = ByteWriter(capacity: 64)
        encode(into: &writer)
        bytes.append(contentsOf: writer.bytes)
    }

    /// Kind byte of ``reply(request:status:index:payload:)``.
    static let replyKind: UInt8 = 0x82
    /// Kind byte of ``error(code:message:)``.
    static let errorKind: UInt8 = 0x83

    /// Appends `.reply(request, status, index, output)` where `cached` is a command's cached reply as the session
    /// table holds it (``ReplicaCore/cachedReply(_:index:output:)``: status u8, index u64, output): the frame's body
    /// after the request number is those bytes verbatim, so a reply costs no decoding and no array of its own.
    static func appendReply(request: UInt64, cached: [UInt8], to bytes: inout [UInt8]) {
        precondition(cached.count >= 9, "a cached reply holds a status and an index")
        withUnsafeBytes(of: UInt32(2 + 8 + cached.count).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(version)
        bytes.append(replyKind)
        withUnsafeBytes(of: request.littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: cached)
    }

    /// Decodes one frame's body (after the length prefix).
    static func decode(_ body: ArraySlice<UInt8>) throws(SMRCodecError) -> ClientFrame {
        var reader = ByteReader(body)
        let version = try reader.uint8()
        guard version == Self.version else { throw SMRCodecError("protocol version \(version), this side speaks 1") }
        let frame: ClientFrame
        switch try reader.uint8() {
        case 1: frame = .hello
        case 2: frame = .openSession(request: try reader.uint64())
        case 3:
            frame = .command(request: try reader.uint64(), session: try reader.uint64(), sequence: try reader.uint64(),
                             firstUnacknowledged: try reader.uint64(), command: Array(reader.rest()))
        case 4:
            let request = try reader.uint64()
            let raw = try reader.uint8()
            guard let consistency = ReadConsistency(rawValue: raw) else { throw SMRCodecError("read consistency \(raw)") }
            frame = .read(request: request, consistency: consistency, minIndex: try reader.uint64(), query: Array(reader.rest()))
        case 5: frame = .statistics(request: try reader.uint64())
        case 6: frame = .closeSession(request: try reader.uint64(), session: try reader.uint64())
        case 7: frame = .snapshotRequest(transfer: try reader.uint64())
        case 8: frame = .digest(request: try reader.uint64())
        case 9: frame = .learnRequest
        case 10: frame = .snapshotDecline(transfer: try reader.uint64())
        case 11: frame = .learnRequestFeedApart
        case 12: frame = .learnFeed(learner: try reader.uint64())
        case 0x87: frame = .learnerAdmitted(learner: try reader.uint64())
        case 0x86:
            frame = .learnerEntry(index: try reader.uint64(), providerIndex: try reader.uint64(), payload: Array(reader.rest()))
        case 0x84: frame = .snapshotChunk(Array(reader.rest()))
        case 0x85: frame = .snapshotEnd(bytes: try reader.uint64())
        case 0x81: frame = .welcome(replica: try reader.uint32(), windowMax: try reader.uint32(), appliedIndex: try reader.uint64())
        case Self.replyKind:
            let request = try reader.uint64()
            let raw = try reader.uint8()
            guard let status = ReplyStatus(rawValue: raw) else { throw SMRCodecError("reply status \(raw)") }
            frame = .reply(request: request, status: status, index: try reader.uint64(), payload: Array(reader.rest()))
        case Self.errorKind: frame = .error(code: try reader.uint8(), message: String(decoding: reader.rest(), as: UTF8.self))
        case let kind: throw SMRCodecError("unknown frame kind \(kind)")
        }
        try reader.expectEnd()
        return frame
    }
}

/// Splits a byte stream into frames. Bounded: a length above `frameBytesMax` is an error, and the buffer never
/// holds more than one frame plus one read.
struct FrameAssembler {
    let frameBytesMax: Int
    private var buffer: [UInt8] = []
    private var start = 0

    init(frameBytesMax: Int) { self.frameBytesMax = frameBytesMax }

    mutating func append(_ bytes: UnsafeRawBufferPointer) { buffer.append(contentsOf: bytes) }

    /// The next complete frame's body, nil when more bytes are needed.
    mutating func next() throws(SMRCodecError) -> ArraySlice<UInt8>? {
        let available = buffer.count - start
        guard available >= ClientFrame.lengthBytes else { compact(); return nil }
        let length = Int(buffer[start]) | Int(buffer[start + 1]) << 8 | Int(buffer[start + 2]) << 16
            | Int(buffer[start + 3]) << 24
        guard length >= 2, length <= frameBytesMax else {
            throw SMRCodecError("frame length \(length) outside 2...\(frameBytesMax)")
        }
        guard available >= ClientFrame.lengthBytes + length else { compact(); return nil }
        let bodyStart = start + ClientFrame.lengthBytes
        start = bodyStart + length
        return buffer[bodyStart..<start]
    }

    private mutating func compact() {
        if start > 0 {
            buffer.removeFirst(start)
            start = 0
        }
    }
}

/// The codes of ``ClientFrame/error(code:message:)``, the frame a replica sends before it closes a connection (or
/// refuses a transfer). The message says what happened; the code lets tools tell the cases apart. The client
/// library treats every one the same way: the connection is over, it fails over to another replica.
enum ClientErrorCode: UInt8 {
    case malformedFrame = 1
    case commandTooLarge = 2
    case tooManyClients = 3
    case windowExceeded = 4
    /// A joiner whose state transfer failed does not serve.
    case transferFailed = 5
    /// A snapshot pull refused or broken (unknown transfer, no thread, the stream failed).
    case snapshotRefused = 6
    /// The group excluded this replica (Exclusion.swift).
    case excluded = 7
    /// A learn request refused (the state cannot be copied cheaply, no state here, too many learners).
    case learnRefused = 8
    /// A learner fell behind its feed queue and was dropped (LearnerFeed.swift).
    case learnerDropped = 9
}
