import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Loopback ports for the clusters that tests, benches and `ringcast-kv` start on one machine.
///
/// Why not "bind port 0, read the port, close": that port comes from the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`, 32768–60999 by default), which every outgoing connection draws
/// its source port from. Between the pick and the member's own bind, a connect — a ring member retrying towards
/// a successor that is not up yet does so every few milliseconds — can take it, and the member fails with
/// "address already in use". CI failed that way on 2026-12-07 (`section2_4_sameSequenceWithDefaultLimits`,
/// node 1's port 58905). Ports outside the ephemeral range are only ever taken by an explicit bind.
///
/// So ports come from two pools outside that range, one per kind of caller:
/// - ``Pool/tests`` (10000–25999): the clusters test suites start;
/// - ``Pool/tools`` (26000 up to the ephemeral range, or above it when that starts too low): the clusters
///   `ringcast-bench` and `ringcast-kv` start, in their own process or as child processes. A test that runs
///   such a tool therefore never hands out a port that the tool's own search may pick at the same moment.
///
/// Between processes, a pool is handed out in blocks of ``blockPorts`` ports: a process claims a block with an
/// exclusive `flock(2)` on a file of its own in ``lockDirectory`` and holds it until it exits (the kernel releases it
/// at a crash or kill -9 too), then hands out that block's ports in order, each once. So two benches or test
/// processes started together never get the same port, however close their searches start (the likely cause of
/// one failed test run: two `ringcast-kv` benches that the SMR suites start at the same moment). The search for a free block starts
/// at the process id scattered over the pool (Fibonacci hashing). A port that cannot be bound now (some other
/// program holds it) is skipped. When every block was tried, the process reuses its own blocks from the first; when
/// the lock directory cannot be used, the blocks are taken unclaimed (only the bind check remains).
public enum LocalPorts {
    /// Which range to draw from; see ``LocalPorts``.
    public enum Pool: Sendable {
        /// Clusters that test suites start.
        case tests
        /// Clusters that the tools (`ringcast-bench`, `ringcast-kv`) start.
        case tools
    }

    /// The first port of each of `count` runs of `run` consecutive loopback ports, all bindable now.
    ///
    /// - Parameters:
    ///   - count: how many runs (members).
    ///   - run: consecutive ports per member (1; 2 for a RingCast member's data and control ports; 3 with a
    ///     client port).
    ///   - pool: where to search.
    /// - Returns: `nil` when a whole pass over the pool found fewer runs (the machine holds nearly all of them).
    public static func free(count: Int, run: Int = 1, pool: Pool) -> [UInt16]? {
        precondition(count >= 0 && (1...16).contains(run), "count \(count), run \(run)")
        return portsState.withLock { (state: inout PortsState) -> [UInt16]? in
            var result: [UInt16] = []
            var examined = 0
            while result.count < count {
                guard examined < pool.range.count else { return nil }
                guard let first = state.next(run: run, pool: pool) else { return nil }
                examined += run
                if (first..<first + run).allSatisfy({ isBindable(UInt16($0)) }) { result.append(UInt16(first)) }
            }
            return result
        }
    }

    /// Ports per block: what one process claims from a pool at a time.
    public static let blockPorts = 64

    /// Where the claims' lock files are (`tests-B.lock`, `tools-B.lock` for block B); world-writable, sticky.
    public static let lockDirectory = "/tmp/ringcast-local-ports"

    /// Whether `port` can be bound on 127.0.0.1 right now (bound, then closed at once).
    public static func isBindable(_ port: UInt16) -> Bool {
        #if canImport(Glibc) || canImport(Musl)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    /// The kernel's ephemeral port range, or Linux's default when it cannot be read.
    public static let ephemeralRange: ClosedRange<Int> = {
        guard let file = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r") else { return 32_768...60_999 }
        defer { fclose(file) }
        var low: Int32 = 0, high: Int32 = 0
        guard readTwoIntegers(file, &low, &high), low > 0, high >= low else { return 32_768...60_999 }
        return Int(low)...Int(high)
    }()
}

extension LocalPorts.Pool {
    /// The ports of this pool, none in the kernel's ephemeral range.
    public var range: Range<Int> {
        switch self {
        case .tests:
            return 10_000..<26_000
        case .tools:
            let ephemeral = LocalPorts.ephemeralRange
            if ephemeral.lowerBound >= 27_000 { return 26_000..<ephemeral.lowerBound }
            // An ephemeral range that starts low (a tuned machine): above it, if there is room.
            if ephemeral.upperBound < 64_500 { return (ephemeral.upperBound + 1)..<65_500 }
            return 26_000..<32_000  // no room outside it: the old behaviour, the bind check still applies
        }
    }

    /// Blocks in this pool (the last one may be short).
    var blockCount: Int { (range.count + LocalPorts.blockPorts - 1) / LocalPorts.blockPorts }

    /// Where this process starts looking for a block: the pid scattered over the pool (Fibonacci hashing).
    var startBlock: Int {
        Int((UInt64(UInt32(bitPattern: getpid())) &* 2_654_435_761) % UInt64(blockCount))
    }

    var name: String {
        switch self {
        case .tests: return "tests"
        case .tools: return "tools"
        }
    }
}

/// What this process holds of each pool: the blocks it claimed and how far it handed out the current one.
private struct PoolState {
    /// Claimed blocks, in the order they were claimed, with their lock file (-1: taken unclaimed).
    var blocks: [(index: Int, fd: Int32)] = []
    /// Blocks looked at so far (claimed or found held), from the start block on.
    var scanned = 0
    /// The block handed out now (an index into `blocks`), and the next port's offset in it.
    var current: Int?
    var offset = 0
    /// After every block was tried: which of this process's own blocks is reused next.
    var reuse = 0
}

private struct PortsState {
    var tests = PoolState()
    var tools = PoolState()
    var directoryUsable: Bool?

    /// The first of the next `run` ports of `pool` for this process, nil when the pool has no block left to try.
    mutating func next(run: Int, pool: LocalPorts.Pool) -> Int? {
        var state = pool == .tests ? tests : tools
        defer { if pool == .tests { tests = state } else { tools = state } }
        while true {
            if let current = state.current {
                let block = state.blocks[current].index
                let first = pool.range.lowerBound + block * LocalPorts.blockPorts + state.offset
                let end = min(pool.range.lowerBound + (block + 1) * LocalPorts.blockPorts, pool.range.upperBound)
                if first + run <= end {
                    state.offset += run
                    return first
                }
                state.current = nil
            }
            guard let claimed = claimBlock(&state, pool: pool) else { return nil }
            state.current = claimed
            state.offset = 0
        }
    }

    /// Claims the next free block (its index in `state.blocks`); after a whole pass, reuses this process's own.
    private mutating func claimBlock(_ state: inout PoolState, pool: LocalPorts.Pool) -> Int? {
        while state.scanned < pool.blockCount {
            let block = (pool.startBlock + state.scanned) % pool.blockCount
            state.scanned += 1
            if let fd = lock(block, pool: pool) {
                state.blocks.append((block, fd))
                return state.blocks.count - 1
            }
        }
        guard !state.blocks.isEmpty else { return nil }
        defer { state.reuse = (state.reuse + 1) % state.blocks.count }
        return state.reuse
    }

    /// An exclusive, non-blocking `flock` on the block's lock file: its descriptor, -1 when locking is not possible
    /// here (the block is taken unclaimed), nil when another process holds it.
    private mutating func lock(_ block: Int, pool: LocalPorts.Pool) -> Int32? {
        if directoryUsable == nil { directoryUsable = Self.prepareDirectory() }
        guard directoryUsable == true else { return -1 }
        let path = "\(LocalPorts.lockDirectory)/\(pool.name)-\(block).lock"
        // Read-only is enough for flock, and lets another user's process claim a block whose file this one made.
        let fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return -1 }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    /// Creates the lock directory (mode 1777, like /tmp: every user's processes claim blocks in it).
    private static func prepareDirectory() -> Bool {
        if mkdir(LocalPorts.lockDirectory, 0o777) == 0 { _ = chmod(LocalPorts.lockDirectory, 0o1777) }
        return access(LocalPorts.lockDirectory, W_OK | X_OK) == 0
    }
}

private let portsState = Mutex(PortsState())

/// Reads two integers ("low high") from `file`.
private func readTwoIntegers(_ file: UnsafeMutablePointer<FILE>, _ low: inout Int32, _ high: inout Int32) -> Bool {
    var buffer = [CChar](repeating: 0, count: 64)
    guard fgets(&buffer, Int32(buffer.count), file) != nil else { return false }
    let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
    guard fields.count >= 2, let first = Int32(fields[0]), let second = Int32(fields[1]) else { return false }
    low = first
    high = second
    return true
}
