/// A value that travels as bytes: commands, queries and outputs of a replicated service.
///
/// The encoding must be canonical (the same value always gives the same bytes): replies are cached in the
/// replicated session table and compared across replicas by digest, and Chain-BFT mode will compare them byte for
/// byte. Little-endian fixed-width integers and length-prefixed byte strings (``ByteWriter``) give that for free.
public protocol SMRCodable: SendableMetatype {
    /// Appends the value's canonical encoding.
    func encode(into writer: inout ByteWriter)
    /// Reads one value; throws on truncated or invalid input (never traps: the bytes come from the network).
    init(from reader: inout ByteReader) throws(SMRCodecError)
}

/// Input that does not decode.
public struct SMRCodecError: Error, Sendable, Hashable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "malformed encoding: \(reason)" }
}

/// Appends little-endian integers and length-prefixed byte strings to a growing array.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func uint8(_ value: UInt8) { bytes.append(value) }
    public mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }
    public mutating func uint16(_ value: UInt16) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func uint32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func uint64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func int64(_ value: Int64) { uint64(UInt64(bitPattern: value)) }
    /// Raw bytes, no length (the reader must know where they end).
    public mutating func raw(_ value: some Collection<UInt8>) { bytes.append(contentsOf: value) }
    /// A u32 length, then the bytes.
    public mutating func lengthPrefixed(_ value: some Collection<UInt8>) {
        precondition(value.count <= Int(UInt32.max), "a byte string must fit a u32 length")
        uint32(UInt32(value.count))
        bytes.append(contentsOf: value)
    }
    /// A u32 length, then the bytes: the same as the generic one, for arrays. A caller in another module (a
    /// service's codec) would otherwise run the generic `append(contentsOf:)` unspecialized (profiled: most of a
    /// client's command encoding).
    public mutating func lengthPrefixed(_ value: [UInt8]) {
        precondition(value.count <= Int(UInt32.max), "a byte string must fit a u32 length")
        uint32(UInt32(value.count))
        bytes.append(contentsOf: value)
    }
    /// Raw bytes of an array, no length (the generic one's fast path, for the same reason).
    public mutating func raw(_ value: [UInt8]) { bytes.append(contentsOf: value) }
    /// A presence byte, then the length-prefixed bytes when present.
    public mutating func optionalBytes(_ value: [UInt8]?) {
        bool(value != nil)
        if let value { lengthPrefixed(value) }
    }
    /// Overwrites a u32 written earlier at `offset` (a length known only afterwards).
    public mutating func patchUInt32(_ value: UInt32, at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { raw in
            for index in 0..<4 { bytes[offset + index] = raw[index] }
        }
    }
    public mutating func removeAll(keepingCapacity: Bool = true) { bytes.removeAll(keepingCapacity: keepingCapacity) }
    public var count: Int { bytes.count }
}

/// Reads what ``ByteWriter`` wrote, from a slice of an array; every read is bounds-checked and throws.
public struct ByteReader: Sendable {
    public let bytes: ArraySlice<UInt8>
    public private(set) var offset: Int

    public init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        offset = bytes.startIndex
    }

    public init(_ bytes: [UInt8]) { self.init(bytes[...]) }

    public var remaining: Int { bytes.endIndex - offset }
    public var isAtEnd: Bool { offset == bytes.endIndex }

    private mutating func take(_ count: Int) throws(SMRCodecError) -> ArraySlice<UInt8> {
        guard count >= 0, remaining >= count else {
            throw SMRCodecError("needs \(count) bytes at offset \(offset - bytes.startIndex), \(remaining) left")
        }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    private mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(SMRCodecError) -> T {
        let slice = try take(MemoryLayout<T>.size)
        var value: T = 0
        for (shift, byte) in slice.enumerated() { value |= T(byte) << (shift * 8) }
        return value
    }

    public mutating func uint8() throws(SMRCodecError) -> UInt8 { try take(1).first! }
    public mutating func bool() throws(SMRCodecError) -> Bool {
        switch try uint8() {
        case 0: return false
        case 1: return true
        case let other: throw SMRCodecError("\(other) is not a boolean")
        }
    }
    public mutating func uint16() throws(SMRCodecError) -> UInt16 { try integer(UInt16.self) }
    public mutating func uint32() throws(SMRCodecError) -> UInt32 { try integer(UInt32.self) }
    public mutating func uint64() throws(SMRCodecError) -> UInt64 { try integer(UInt64.self) }
    public mutating func int64() throws(SMRCodecError) -> Int64 { Int64(bitPattern: try uint64()) }
    public mutating func raw(_ count: Int) throws(SMRCodecError) -> ArraySlice<UInt8> { try take(count) }
    /// The rest of the input.
    public mutating func rest() -> ArraySlice<UInt8> {
        defer { offset = bytes.endIndex }
        return bytes[offset...]
    }
    public mutating func lengthPrefixed() throws(SMRCodecError) -> [UInt8] {
        let count = Int(try uint32())
        return Array(try take(count))
    }
    public mutating func optionalBytes() throws(SMRCodecError) -> [UInt8]? {
        try bool() ? try lengthPrefixed() : nil
    }
    /// Throws unless every byte was read (trailing garbage is malformed input too).
    public func expectEnd() throws(SMRCodecError) {
        guard isAtEnd else { throw SMRCodecError("\(remaining) trailing bytes") }
    }
}

extension SMRCodable {
    /// The value's encoding as one array.
    public func encoded() -> [UInt8] {
        var writer = ByteWriter()
        encode(into: &writer)
        return writer.bytes
    }

    /// Decodes exactly one value from `bytes` (trailing bytes are an error).
    public static func decode(_ bytes: ArraySlice<UInt8>) throws(SMRCodecError) -> Self {
        var reader = ByteReader(bytes)
        let value = try Self(from: &reader)
        try reader.expectEnd()
        return value
    }
}

/// FNV-1a 64 over a byte stream: the state digest replicas compare (not a cryptographic hash).
public struct FNV1a64: Sendable, Hashable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    public init() {}
    public mutating func combine(_ bytes: some Sequence<UInt8>) {
        for byte in bytes {
            value ^= UInt64(byte)
            value = value &* 0x0000_0100_0000_01b3
        }
    }
}
