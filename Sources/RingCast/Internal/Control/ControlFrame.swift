import RingCastMembership

/// Identity of a peer on the control plane. (The membership module has its own member identity; the shell maps.)
///
/// A restarted process is a new incarnation, hence a new peer: frames are never attributed across incarnations.
/// Defined with the wire format (the hello carries it), so that this file builds alone (tools/fuzz/fuzz_control.swift).
struct ControlPeer: Hashable, Sendable, CustomStringConvertible {
    var node: UInt32
    var incarnation: UInt32

    var description: String { "\(node).\(incarnation)" }
}

/// The control plane's wire format: length-prefixed frames, and the hello that opens every connection.
///
/// A frame is a 4-byte little-endian length followed by that many bytes. Every TCP connection starts with one hello
/// frame whose 16-byte payload is:
///
/// | bytes | field |
/// | --- | --- |
/// | 0..<4 | magic `"RCCT"` |
/// | 4..<8 | version, little-endian (2; 1 was big-endian) |
/// | 8..<12 | the sender's node, little-endian |
/// | 12..<16 | the sender's incarnation, little-endian |
///
/// Little-endian like every RingCast wire (the C wire, the membership and group messages inside these frames), written
/// and read with the control plane's one codec (`WireWriter`, `WireReader`).
///
/// Pure functions and a value-type reader, so the parsing is tested without sockets.
enum ControlFrame {
    /// Bytes of the length prefix.
    static let headerBytes = 4
    /// The hello's first four bytes.
    static let helloMagic: [UInt8] = Array("RCCT".utf8)
    /// The only version spoken (a peer with another version is refused, not negotiated with).
    static let helloVersion: UInt32 = 2
    /// Bytes of the hello's payload (the frame is `headerBytes` more).
    static let helloBytes = 16
    /// The largest frame length the wire can carry; settings are validated against it.
    static let lengthMax = Int(Int32.max)

    /// Why a hello was refused.
    enum HelloError: Error, Equatable, CustomStringConvertible {
        case length(Int)
        case magic([UInt8])
        case version(UInt32)

        var description: String {
            switch self {
            case let .length(bytes): "hello of \(bytes) bytes (expected \(ControlFrame.helloBytes))"
            case let .magic(bytes): "bad magic \(bytes) (expected \"RCCT\")"
            case let .version(version): "unsupported version \(version) (speaking \(ControlFrame.helloVersion))"
            }
        }
    }

    /// Appends the length prefix for a frame of `length` bytes.
    /// - Precondition: `length` fits the wire (`0...lengthMax`).
    static func appendHeader(length: Int, to buffer: inout [UInt8]) {
        precondition(length >= 0 && length <= lengthMax, "a frame length must fit 31 bits")
        var writer = WireWriter()
        writer.u32(UInt32(length))
        buffer += writer.bytes
    }

    /// The complete hello frame (length prefix included) that `peer` sends first on its outgoing connections.
    static func hello(from peer: ControlPeer) -> [UInt8] {
        var writer = WireWriter()
        writer.u32(UInt32(helloBytes))
        writer.raw(helloMagic)
        writer.u32(helloVersion)
        writer.u32(peer.node)
        writer.u32(peer.incarnation)
        assert(writer.bytes.count == headerBytes + helloBytes)
        return writer.bytes
    }

    /// Reads a hello frame's payload.
    /// - Throws: ``HelloError`` for a wrong length, magic or version.
    static func parseHello(_ payload: [UInt8]) throws(HelloError) -> ControlPeer {
        guard payload.count == helloBytes else { throw .length(payload.count) }
        guard Array(payload[0..<4]) == helloMagic else { throw .magic(Array(payload[0..<4])) }
        var reader = WireReader(Array(payload[4...]))
        // The length was checked: 12 bytes remain for the three fields.
        guard let version = try? reader.u32(), let node = try? reader.u32(), let incarnation = try? reader.u32() else {
            preconditionFailure("a checked hello is shorter than its fields")
        }
        guard version == helloVersion else { throw .version(version) }
        return ControlPeer(node: node, incarnation: incarnation)
    }
}

/// Cuts a byte stream into frames, however the stream was split into reads.
///
/// Memory: at most one frame is held, and it grows with the bytes that actually arrived (a peer announcing a large
/// frame and sending nothing costs nothing). The length is checked against ``lengthMax`` as soon as the prefix is
/// complete, before any of the body is buffered.
struct ControlFrameReader {
    /// A length prefix above this fails the stream. May be changed between frames (the hello is read with a
    /// tighter bound than the frames after it).
    var lengthMax: Int

    /// Bytes that follow every frame's body (an authenticated channel's frame tag, ``ControlAuth``); 0 = none.
    /// May be changed between frames.
    var trailerBytes = 0
    /// The trailer of the frame ``consume(_:)`` returned last.
    private(set) var lastTrailer: [UInt8] = []

    private var header: UInt32 = 0
    private var headerFilled = 0
    private var body: [UInt8] = []
    private var bodyLength = 0
    private var trailer: [UInt8] = []

    /// The stream announced a frame longer than ``lengthMax``; nothing after it can be trusted.
    struct TooLong: Error, Equatable, CustomStringConvertible {
        var length: Int
        var limit: Int
        var description: String { "frame of \(length) bytes exceeds the limit of \(limit)" }
    }

    init(lengthMax: Int) {
        precondition(lengthMax >= 0 && lengthMax <= ControlFrame.lengthMax, "lengthMax must fit the wire")
        self.lengthMax = lengthMax
    }

    /// True when no frame is partly read (a clean place for the stream to end).
    var isBetweenFrames: Bool { headerFilled == 0 }

    /// Consumes bytes from the front of `bytes` until one frame completes or the bytes run out.
    /// - Returns: how many bytes were used, and the frame if one completed (call again with the rest).
    /// - Throws: ``TooLong`` when a length prefix exceeds ``lengthMax``.
    mutating func consume(_ bytes: UnsafeRawBufferPointer) throws(TooLong) -> (used: Int, frame: [UInt8]?) {
        var used = 0
        while headerFilled < ControlFrame.headerBytes {
            guard used < bytes.count else { return (used, nil) }
            header |= UInt32(bytes[used]) << (8 * headerFilled) // little-endian, as ControlFrame writes it
            headerFilled += 1
            used += 1
            if headerFilled == ControlFrame.headerBytes {
                bodyLength = Int(header)
                guard bodyLength <= lengthMax else { throw TooLong(length: bodyLength, limit: lengthMax) }
                body = []
                body.reserveCapacity(min(bodyLength, 64 << 10))
            }
        }
        let take = min(bodyLength - body.count, bytes.count - used)
        if take > 0 {
            body.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[used..<(used + take)]))
            used += take
        }
        guard body.count == bodyLength else { return (used, nil) }
        if trailer.count < trailerBytes {
            let more = min(trailerBytes - trailer.count, bytes.count - used)
            trailer.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[used..<(used + more)]))
            used += more
            guard trailer.count == trailerBytes else { return (used, nil) }
        }
        lastTrailer = trailer
        trailer = []
        let frame = body
        body = []
        header = 0
        headerFilled = 0
        bodyLength = 0
        return (used, frame)
    }
}
