/// The service a ``Replica`` replicates. The application implements it; the replica calls it from one thread.
///
/// Rules (the replica relies on them; a violation makes replicas diverge):
/// - ``apply(_:into:)`` is deterministic: the same state and the same commands give the same state and the
///   same outputs on every replica. No clock, no randomness, no I/O, no iteration over unordered containers
///   whose order can affect the result. Time comes in ``ApplyContext/orderedTimeMillis`` (the same on every
///   replica), anything random in the command itself.
/// - ``query(_:)`` does not change the state.
/// - ``snapshot(into:)`` writes the state as a canonical byte stream (the same state gives the same bytes: sort
///   what a hash table would iterate in random order), in pieces: the ``SnapshotWriter`` hands each bounded chunk
///   on, so the state is never serialized whole into memory. ``restore(from:)`` reads it back the same way.
public protocol StateMachine: SendableMetatype {
    associatedtype Command: SMRCodable
    associatedtype Query: SMRCodable
    associatedtype Output: SMRCodable

    /// Applies commands in total order; appends exactly one output per command, in order.
    mutating func apply(_ batch: CommandBatch<Command>, into outputs: inout [Output])
    /// Answers a read from the current state (never modifies it).
    func query(_ query: Query) -> Output
    /// Writes the whole state (with ``SnapshotWriter``'s bounded chunks).
    func snapshot(into writer: inout SnapshotWriter) throws(SnapshotError)
    /// Replaces the state with the one a snapshot wrote.
    mutating func restore(from reader: inout SnapshotReader) throws(SnapshotError)
    /// Whether a copy of this value is a consistent snapshot of it that costs little to take: value semantics all
    /// the way down (structs, enums and Swift's copy-on-write collections of them; no class instance, file or
    /// pointer that ``apply(_:into:)`` changes in place), so that a copy does not change when the original does.
    ///
    /// When true, a replica providing the state to a joiner streams a copy taken at the cut while it goes on
    /// applying (its clients are served during the transfer); when false (the default), it holds its state at the
    /// cut and queues its deliveries until the joiner pulled it. The price of true: while the copy streams, what
    /// apply changes exists twice — each collection that is modified is copied once (for a `Dictionary`, its table
    /// of keys and values, which for array values is references, not the values' bytes), and replaced or removed
    /// values stay alive until the stream ends. With a write rate `w` (bytes/s) and a transfer of `t` seconds, that
    /// is at most the table plus `w × t`, never more than the state itself. See the article *Replicating a service*.
    static var copyIsSnapshot: Bool { get }
}

extension StateMachine {
    /// By default a replica makes no assumption about copies: it holds the state at the cut while it streams it.
    public static var copyIsSnapshot: Bool { false }
}

/// What every replica knows identically about one command when it applies it.
public struct ApplyContext: Sendable, Hashable {
    /// Position of the command in the replicated log (1, 2, …; also counts the replica's own entries such as read
    /// barriers and session openings, so it is not dense in commands).
    public let index: UInt64
    /// The ordered clock: the largest wall-clock stamp (Unix milliseconds) the submitting replicas put on the ring
    /// so far, never decreasing. Use it instead of a local clock.
    public let orderedTimeMillis: UInt64
    /// The session that submitted the command.
    public let session: UInt64
    /// The command's number within its session.
    public let sequence: UInt64

    /// For other shells that order commands (ChainBFT's replica); RingCastSMR's replica makes its own.
    public init(index: UInt64, orderedTimeMillis: UInt64, session: UInt64, sequence: UInt64) {
        self.index = index; self.orderedTimeMillis = orderedTimeMillis; self.session = session; self.sequence = sequence
    }
}

/// A batch of ordered commands handed to ``StateMachine/apply(_:into:)``.
public struct CommandBatch<Command>: RandomAccessCollection {
    public private(set) var commands: [Command] = []
    public private(set) var contexts: [ApplyContext] = []

    public init() {}

    public var startIndex: Int { 0 }
    public var endIndex: Int { commands.count }
    public subscript(position: Int) -> (command: Command, context: ApplyContext) {
        (commands[position], contexts[position])
    }

    /// Appends one ordered command (public for other shells that order commands, such as ChainBFT's replica).
    public mutating func append(_ command: Command, _ context: ApplyContext) {
        commands.append(command)
        contexts.append(context)
    }

    mutating func removeAll() {
        commands.removeAll(keepingCapacity: true)
        contexts.removeAll(keepingCapacity: true)
    }
}

/// A snapshot could not be written or read.
public struct SnapshotError: Error, Sendable, Hashable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "snapshot: \(reason)" }
}

/// Where a state machine writes its snapshot: bytes collect in one chunk of at most ``chunkBytesMax``; each full
/// chunk goes to the sink (a socket, a file, a digest) and the buffer is reused. Memory: one chunk.
public struct SnapshotWriter {
    public let chunkBytesMax: Int
    private var chunk: [UInt8]
    private let sink: (ArraySlice<UInt8>) throws(SnapshotError) -> Void
    /// Bytes written so far (all chunks).
    public private(set) var bytesWritten: UInt64 = 0

    /// - Parameter sink: called with each chunk, in order (the slice is valid during the call only).
    public init(chunkBytesMax: Int = 1 << 20, sink: @escaping (ArraySlice<UInt8>) throws(SnapshotError) -> Void) {
        precondition(chunkBytesMax >= 64, "a snapshot chunk must hold at least 64 bytes")
        self.chunkBytesMax = chunkBytesMax
        self.sink = sink
        chunk = []
        chunk.reserveCapacity(chunkBytesMax)
    }

    public mutating func write(_ bytes: some Collection<UInt8>) throws(SnapshotError) {
        var rest = bytes[...]
        while !rest.isEmpty {
            let room = chunkBytesMax - chunk.count
            let piece = rest.prefix(room)
            chunk.append(contentsOf: piece)
            rest = rest.dropFirst(piece.count)
            bytesWritten += UInt64(piece.count)
            if chunk.count == chunkBytesMax { try flush() }
        }
    }

    public mutating func uint64(_ value: UInt64) throws(SnapshotError) {
        try withUnsafeBytes(of: value.littleEndian) { raw throws(SnapshotError) in try write(raw) }
    }

    /// A u32 length, then the bytes.
    public mutating func lengthPrefixed(_ bytes: some Collection<UInt8>) throws(SnapshotError) {
        try withUnsafeBytes(of: UInt32(bytes.count).littleEndian) { raw throws(SnapshotError) in try write(raw) }
        try write(bytes)
    }

    /// Hands the partial chunk on (the replica calls it at the end).
    public mutating func flush() throws(SnapshotError) {
        guard !chunk.isEmpty else { return }
        try sink(chunk[...])
        chunk.removeAll(keepingCapacity: true)
    }
}

/// Where a state machine reads a snapshot from: chunks are pulled from the source as needed. Memory: one chunk.
public struct SnapshotReader {
    private var chunk: [UInt8] = []
    private var offset = 0
    private let refill: (inout [UInt8]) throws(SnapshotError) -> Bool
    public private(set) var bytesRead: UInt64 = 0

    /// - Parameter source: returns the next chunk, or nil at the end of the snapshot.
    public init(source: @escaping () throws(SnapshotError) -> [UInt8]?) {
        refill = { chunk throws(SnapshotError) in
            guard let next = try source() else { return false }
            chunk = next
            return true
        }
    }

    /// A source that refills the reader's own chunk buffer in place (false at the end of the snapshot). Why: a
    /// state transfer reads the whole state in chunks of up to 1 MiB; a fresh array per chunk is a fresh allocation
    /// that the allocator maps and the kernel zeroes again every time (perf, join-bench 512 MiB: page clearing was
    /// the joiner's largest cost), where one buffer reused is faulted in once.
    init(refill: @escaping (inout [UInt8]) throws(SnapshotError) -> Bool) { self.refill = refill }

    /// The next chunk into `chunk` (its capacity kept); false at the end.
    private mutating func nextChunk() throws(SnapshotError) -> Bool {
        let refill = self.refill
        offset = 0
        guard try refill(&chunk) else {
            chunk.removeAll(keepingCapacity: true) // nothing stale is read after the end
            return false
        }
        return true
    }

    /// Reads exactly `count` bytes; throws if the snapshot ends first.
    public mutating func read(_ count: Int) throws(SnapshotError) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(count)
        while result.count < count {
            if offset == chunk.count {
                guard try nextChunk() else { throw SnapshotError("ends \(count - result.count) bytes early") }
                continue
            }
            let take = min(count - result.count, chunk.count - offset)
            result.append(contentsOf: chunk[offset..<(offset + take)])
            offset += take
        }
        bytesRead += UInt64(count)
        return result
    }

    public mutating func uint64() throws(SnapshotError) -> UInt64 {
        let bytes = try read(8)
        var value: UInt64 = 0
        for (shift, byte) in bytes.enumerated() { value |= UInt64(byte) << (shift * 8) }
        return value
    }

    public mutating func lengthPrefixed(limit: Int = Int(UInt32.max)) throws(SnapshotError) -> [UInt8] {
        let header = try read(4)
        let length = Int(header[0]) | Int(header[1]) << 8 | Int(header[2]) << 16 | Int(header[3]) << 24
        guard length <= limit else { throw SnapshotError("a field of \(length) bytes exceeds \(limit)") }
        return try read(length)
    }

    /// True when every byte was consumed (checked by the replica after ``StateMachine/restore(from:)``).
    public mutating func isAtEnd() throws(SnapshotError) -> Bool {
        while offset == chunk.count {
            guard try nextChunk() else { return true }
        }
        return false
    }
}
