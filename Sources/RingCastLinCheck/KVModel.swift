/// An operation on the replicated key-value store (`ringcast-kv`), as a client issues it.
public enum KVInput: Sendable, Hashable {
    /// → ``KVOutput/ok``.
    case put(key: [UInt8], value: [UInt8])
    /// → ``KVOutput/value(_:)`` with the current value, or `nil` when the key is absent.
    case get(key: [UInt8])
    /// → ``KVOutput/deleted(existed:)``.
    case delete(key: [UInt8])
    /// Sets `new` if the key holds `expected` (`nil`: the key is absent). → ``KVOutput/swapped(_:)``.
    case cas(key: [UInt8], expected: [UInt8]?, new: [UInt8])
    /// Adds `delta` (wrapping) to the value read as an 8-byte little-endian Int64 (absent = 0) and stores the
    /// sum. → ``KVOutput/counter(_:)`` with the new value, or ``KVOutput/notACounter`` (unchanged) when the
    /// value is not 8 bytes long.
    case incr(key: [UInt8], delta: Int64)

    /// The key the operation acts on.
    public var key: [UInt8] {
        switch self {
        case .put(let key, _), .get(let key), .delete(let key), .cas(let key, _, _), .incr(let key, _):
            return key
        }
    }
}

/// What the key-value store answered.
public enum KVOutput: Sendable, Hashable {
    case ok
    case value([UInt8]?)
    case deleted(existed: Bool)
    case swapped(Bool)
    /// The counter after the addition (wrapping add, `&+`).
    case counter(Int64)
    case notACounter
}

/// The sequential specification of one key of the key-value store: its state is the key's value, `nil`
/// when absent.
///
/// One key only: `checkKV` partitions a history by key first (Herlihy & Wing 1990, Theorem 1), so the model
/// never sees two keys, and its state stays a single value (small memo entries, cheap hashing).
public struct KVModel: SequentialModel {
    public typealias State = [UInt8]?

    public init() {}

    public var initialState: [UInt8]? { nil }

    public func step(_ state: [UInt8]?, _ input: KVInput) -> (output: KVOutput, next: [UInt8]?) {
        switch input {
        case .put(_, let value):
            return (.ok, value)
        case .get:
            return (.value(state), state)
        case .delete:
            return (.deleted(existed: state != nil), nil)
        case .cas(_, let expected, let new):
            return state == expected ? (.swapped(true), new) : (.swapped(false), state)
        case .incr(_, let delta):
            guard let current = Self.counter(state) else { return (.notACounter, state) }
            let sum = current &+ delta
            return (.counter(sum), Self.bytes(sum))
        }
    }

    public func isReadOnly(_ input: KVInput) -> Bool {
        if case .get = input { return true }
        return false
    }

    /// The counter a value holds: absent is 0, 8 bytes are a little-endian Int64, anything else is not a
    /// counter.
    public static func counter(_ value: [UInt8]?) -> Int64? {
        guard let value else { return 0 }
        guard value.count == 8 else { return nil }
        var bits: UInt64 = 0
        for (shift, byte) in value.enumerated() {
            bits |= UInt64(byte) << (8 * UInt64(shift))
        }
        return Int64(bitPattern: bits)
    }

    /// The 8-byte little-endian encoding of a counter.
    public static func bytes(_ counter: Int64) -> [UInt8] {
        let bits = UInt64(bitPattern: counter)
        return (0..<8).map { UInt8(truncatingIfNeeded: bits >> (8 * UInt64($0))) }
    }
}
