import RingCastSMR

/// A write to the key-value store.
enum KVCommand: SMRCodable, Sendable, Hashable {
    case put(key: [UInt8], value: [UInt8])
    case delete(key: [UInt8])
    /// `expected` nil means "the key is absent".
    case cas(key: [UInt8], expected: [UInt8]?, new: [UInt8])
    /// The value is an 8-byte little-endian Int64 (absent = 0); wrapping add.
    case incr(key: [UInt8], delta: Int64)

    func encode(into writer: inout ByteWriter) {
        switch self {
        case let .put(key, value):
            writer.uint8(1)
            writer.lengthPrefixed(key)
            writer.lengthPrefixed(value)
        case let .delete(key):
            writer.uint8(2)
            writer.lengthPrefixed(key)
        case let .cas(key, expected, new):
            writer.uint8(3)
            writer.lengthPrefixed(key)
            writer.optionalBytes(expected)
            writer.lengthPrefixed(new)
        case let .incr(key, delta):
            writer.uint8(4)
            writer.lengthPrefixed(key)
            writer.int64(delta)
        }
    }

    init(from reader: inout ByteReader) throws(SMRCodecError) {
        switch try reader.uint8() {
        case 1: self = .put(key: try reader.lengthPrefixed(), value: try reader.lengthPrefixed())
        case 2: self = .delete(key: try reader.lengthPrefixed())
        case 3: self = .cas(key: try reader.lengthPrefixed(), expected: try reader.optionalBytes(), new: try reader.lengthPrefixed())
        case 4: self = .incr(key: try reader.lengthPrefixed(), delta: try reader.int64())
        case let kind: throw SMRCodecError("unknown KV command \(kind)")
        }
    }
}

/// A read of the key-value store.
struct KVQuery: SMRCodable, Sendable, Hashable {
    var key: [UInt8]
    func encode(into writer: inout ByteWriter) { writer.lengthPrefixed(key) }
    init(key: [UInt8]) { self.key = key }
    init(from reader: inout ByteReader) throws(SMRCodecError) { key = try reader.lengthPrefixed() }
}

/// What a command or a read returns.
enum KVResult: SMRCodable, Sendable, Hashable {
    case ok
    case value([UInt8]?)
    case deleted(existed: Bool)
    case swapped(Bool)
    case counter(Int64)
    case notACounter

    func encode(into writer: inout ByteWriter) {
        switch self {
        case .ok: writer.uint8(1)
        case let .value(value):
            writer.uint8(2)
            writer.optionalBytes(value)
        case let .deleted(existed):
            writer.uint8(3)
            writer.bool(existed)
        case let .swapped(swapped):
            writer.uint8(4)
            writer.bool(swapped)
        case let .counter(value):
            writer.uint8(5)
            writer.int64(value)
        case .notACounter: writer.uint8(6)
        }
    }

    init(from reader: inout ByteReader) throws(SMRCodecError) {
        switch try reader.uint8() {
        case 1: self = .ok
        case 2: self = .value(try reader.optionalBytes())
        case 3: self = .deleted(existed: try reader.bool())
        case 4: self = .swapped(try reader.bool())
        case 5: self = .counter(try reader.int64())
        case 6: self = .notACounter
        case let kind: throw SMRCodecError("unknown KV result \(kind)")
        }
    }
}

/// The replicated key-value store: a hash map of byte strings.
struct KVStore: StateMachine {
    var entries: [[UInt8]: [UInt8]] = [:]
    /// A dictionary of byte arrays is a value: a copy taken at a transfer's cut stays the cut's state while apply
    /// changes the original (copy-on-write copies the table of references once; the values' bytes are shared).
    static var copyIsSnapshot: Bool { true }
    /// Keys and values at most (bytes), checked by the snapshot reader.
    static let fieldBytesMax = 16 << 20

    mutating func apply(_ batch: CommandBatch<KVCommand>, into outputs: inout [KVResult]) {
        for (command, _) in batch { outputs.append(apply(command)) }
    }

    private mutating func apply(_ command: KVCommand) -> KVResult {
        switch command {
        case let .put(key, value):
            entries[key] = value
            return .ok
        case let .delete(key):
            return .deleted(existed: entries.removeValue(forKey: key) != nil)
        case let .cas(key, expected, new):
            guard entries[key] == expected else { return .swapped(false) }
            entries[key] = new
            return .swapped(true)
        case let .incr(key, delta):
            let current: Int64
            if let bytes = entries[key] {
                guard bytes.count == 8 else { return .notACounter }
                current = bytes.enumerated().reduce(Int64(0)) { $0 | Int64($1.element) << (8 * $1.offset) }
            } else {
                current = 0
            }
            let next = current &+ delta
            entries[key] = withUnsafeBytes(of: next.littleEndian) { Array($0) }
            return .counter(next)
        }
    }

    func query(_ query: KVQuery) -> KVResult { .value(entries[query.key]) }

    /// Sorted by key: the same state gives the same bytes on every replica (Swift's hashing is seeded per
    /// process, so the map's own order differs). The sort holds the keys' references, not a copy of the values.
    func snapshot(into writer: inout SnapshotWriter) throws(SnapshotError) {
        try writer.uint64(UInt64(entries.count))
        for key in entries.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            try writer.lengthPrefixed(key)
            try writer.lengthPrefixed(entries[key]!)
        }
    }

    mutating func restore(from reader: inout SnapshotReader) throws(SnapshotError) {
        let count = try reader.uint64()
        entries = [:]
        entries.reserveCapacity(Int(min(count, 1 << 24)))
        for _ in 0..<count {
            let key = try reader.lengthPrefixed(limit: Self.fieldBytesMax)
            entries[key] = try reader.lengthPrefixed(limit: Self.fieldBytesMax)
        }
    }
}
