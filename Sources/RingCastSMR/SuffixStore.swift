/// The ordered suffix of a state transfer: ring deliveries that arrived while this replica's state cannot move — a
/// provider streaming its state at the cut, or a joiner whose state is not restored yet — kept in delivery order
/// until apply takes them. It is what decouples delivery from apply during a transfer, so that the ring keeps
/// delivering (issue #12: "without stopping the ring for the duration of the transfer").
///
/// Why a suffix store and not copy-on-write: the provider must stream the state *at the cut* while the ring goes
/// on. Copy-on-write (hashicorp/raft's `FSMSnapshot.Persist` runs concurrently with `Apply`) needs every state
/// machine to keep old versions of what changes during the transfer — a contract the ``StateMachine`` protocol does
/// not have, and for a multi-GB state whose whole hot set changes during a long transfer, as much memory as a copy.
/// Queueing the suffix costs at most ``bytesMax`` whatever the state's size, needs nothing from the application,
/// and is the same mechanism at the joiner, which must hold the suffix anyway until its restore ends.
///
/// Bounded: at most ``bytesMax`` bytes (payload bytes plus ``entryOverheadBytes`` per delivery); the delivery
/// thread waits for room when it is full, which is backpressure on the ring (LCR's delivery stops, the origins'
/// windows fill, `Group.broadcast` waits), never loss. One delivery larger than the bound is still admitted into
/// an empty store, since it has nowhere else to go (the bound then is that delivery's size, at most the ring's
/// `batchBytesMax`).
struct SuffixStore {
    /// What one queued delivery costs beyond its payload (the array's header and the slot), for the bound.
    static let entryOverheadBytes = 48

    let bytesMax: Int
    private var entries: [[UInt8]] = []
    private var head = 0
    /// Bytes held now (payload plus overhead per delivery).
    private(set) var bytes = 0
    /// The most bytes ever held (a counter for ``Replica/Statistics/suffixBytesPeak``).
    private(set) var peakBytes = 0
    /// Deliveries ever queued.
    private(set) var appended: UInt64 = 0

    init(bytesMax: Int) {
        precondition(bytesMax >= 1, "the suffix store needs a positive bound")
        self.bytesMax = bytesMax
    }

    var isEmpty: Bool { head == entries.count }
    var count: Int { entries.count - head }

    /// Whether a delivery of `payloadBytes` fits now.
    func admits(_ payloadBytes: Int) -> Bool {
        bytes == 0 || bytes + payloadBytes + Self.entryOverheadBytes <= bytesMax
    }

    mutating func append(_ payload: [UInt8]) {
        precondition(admits(payload.count), "a delivery queued beyond the suffix store's bound")
        entries.append(payload)
        bytes += payload.count + Self.entryOverheadBytes
        peakBytes = max(peakBytes, bytes)
        appended += 1
    }

    /// The oldest queued delivery.
    mutating func popFirst() -> [UInt8]? {
        guard head < entries.count else { return nil }
        let payload = entries[head]
        entries[head] = []
        head += 1
        bytes -= payload.count + Self.entryOverheadBytes
        if head == entries.count {
            entries.removeAll(keepingCapacity: false)
            head = 0
        } else if head >= 4096 && head * 2 >= entries.count {
            entries.removeFirst(head)
            head = 0
        }
        assert(bytes >= 0)
        return payload
    }

    /// Forgets everything (a joiner whose transfer failed: its state is not the group's, the suffix is useless).
    mutating func removeAll() {
        entries = []
        head = 0
        bytes = 0
    }
}
