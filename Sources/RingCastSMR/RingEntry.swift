/// What replicas put on the ring: one broadcast carries a batch of entries from one replica (its clients'
/// commands, session openings and read barriers), so that many small commands share one ring message.
///
/// Wire (little-endian): `version u8 = 1, replica u32, stampMillis u64, count u16`, then `count` entries, each
/// `kind u8` and its fields. `stampMillis` is the submitting replica's wall clock; the ordered clock every replica
/// applies with is the largest stamp delivered so far (``ApplyContext/orderedTimeMillis``).
enum RingEntry: Sendable, Hashable {
    /// A client's command: its session, number, the client's `firstUnacknowledged`, and the encoded command.
    case command(session: UInt64, sequence: UInt64, firstUnacknowledged: UInt64, command: [UInt8])
    /// Opens a session; `tag` tells the submitting replica which client asked.
    case openSession(tag: UInt64)
    /// A read barrier: reads queued at the submitting replica before it was sent are served when it is delivered.
    case barrier(number: UInt64)
    /// Closes a session (a client that is done).
    case closeSession(session: UInt64)

    static let version: UInt8 = 1
    static let headerBytes = 1 + 4 + 8 + 2

    /// Bytes this entry adds to a batch.
    var encodedBytes: Int {
        switch self {
        case let .command(_, _, _, command): 1 + 24 + 4 + command.count
        case .openSession, .barrier, .closeSession: 1 + 8
        }
    }

    func encode(into writer: inout ByteWriter) {
        switch self {
        case let .command(session, sequence, firstUnacknowledged, command):
            writer.uint8(1)
            writer.uint64(session)
            writer.uint64(sequence)
            writer.uint64(firstUnacknowledged)
            writer.lengthPrefixed(command)
        case let .openSession(tag):
            writer.uint8(2)
            writer.uint64(tag)
        case let .barrier(number):
            writer.uint8(3)
            writer.uint64(number)
        case let .closeSession(session):
            writer.uint8(4)
            writer.uint64(session)
        }
    }

    static func decode(from reader: inout ByteReader) throws(SMRCodecError) -> RingEntry {
        switch try reader.uint8() {
        case 1:
            return .command(session: try reader.uint64(), sequence: try reader.uint64(),
                            firstUnacknowledged: try reader.uint64(), command: try reader.lengthPrefixed())
        case 2: return .openSession(tag: try reader.uint64())
        case 3: return .barrier(number: try reader.uint64())
        case 4: return .closeSession(session: try reader.uint64())
        case let kind: throw SMRCodecError("unknown ring entry kind \(kind)")
        }
    }
}

/// One ring message: the batch header and its entries.
struct RingBatch: Sendable, Hashable {
    var replica: UInt32
    var stampMillis: UInt64
    var entries: [RingEntry]

    func encoded() -> [UInt8] {
        precondition(entries.count <= Int(UInt16.max), "a ring batch holds at most 65535 entries")
        var writer = ByteWriter(capacity: RingEntry.headerBytes + entries.reduce(0) { $0 + $1.encodedBytes })
        writer.uint8(RingEntry.version)
        writer.uint32(replica)
        writer.uint64(stampMillis)
        writer.uint16(UInt16(entries.count))
        for entry in entries { entry.encode(into: &writer) }
        return writer.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(SMRCodecError) -> RingBatch {
        var reader = ByteReader(bytes)
        let version = try reader.uint8()
        guard version == RingEntry.version else { throw SMRCodecError("ring batch version \(version), expected 1") }
        let replica = try reader.uint32()
        let stamp = try reader.uint64()
        let count = Int(try reader.uint16())
        var entries: [RingEntry] = []
        entries.reserveCapacity(count)
        for _ in 0..<count { entries.append(try RingEntry.decode(from: &reader)) }
        try reader.expectEnd()
        return RingBatch(replica: replica, stampMillis: stamp, entries: entries)
    }
}

/// A delivered entry as the apply loop reads it: a command's bytes are a slice of the delivered batch's bytes, so
/// decoding a ring batch costs no array per command (profiled: the copy per command was a visible part of a
/// replica's decode stage). Only lives while its batch is applied.
enum RingEntrySlice {
    case command(session: UInt64, sequence: UInt64, firstUnacknowledged: UInt64, command: ArraySlice<UInt8>)
    case openSession(tag: UInt64)
    case barrier(number: UInt64)
    case closeSession(session: UInt64)

    /// Reads one entry (the checks of ``RingEntry/decode(from:)``, the command not copied).
    static func decode(from reader: inout ByteReader) throws(SMRCodecError) -> RingEntrySlice {
        switch try reader.uint8() {
        case 1:
            let session = try reader.uint64()
            let sequence = try reader.uint64()
            let firstUnacknowledged = try reader.uint64()
            let count = Int(try reader.uint32())
            return .command(session: session, sequence: sequence, firstUnacknowledged: firstUnacknowledged,
                            command: try reader.raw(count))
        case 2: return .openSession(tag: try reader.uint64())
        case 3: return .barrier(number: try reader.uint64())
        case 4: return .closeSession(session: try reader.uint64())
        case let kind: throw SMRCodecError("unknown ring entry kind \(kind)")
        }
    }
}

extension RingBatch {
    /// Decodes a delivered batch's header and entries into `entries` (emptied first, its capacity reused): the same
    /// checks as ``decode(_:)`` — a batch that does not decode in full leaves no entry to apply.
    static func decode(_ bytes: [UInt8], into entries: inout [RingEntrySlice])
        throws(SMRCodecError) -> (replica: UInt32, stampMillis: UInt64) {
        entries.removeAll(keepingCapacity: true)
        var reader = ByteReader(bytes)
        do throws(SMRCodecError) {
            let version = try reader.uint8()
            guard version == RingEntry.version else { throw SMRCodecError("ring batch version \(version), expected 1") }
            let replica = try reader.uint32()
            let stamp = try reader.uint64()
            let count = Int(try reader.uint16())
            for _ in 0..<count { entries.append(try RingEntrySlice.decode(from: &reader)) }
            try reader.expectEnd()
            return (replica, stamp)
        } catch {
            entries.removeAll(keepingCapacity: true)
            throw error
        }
    }
}
