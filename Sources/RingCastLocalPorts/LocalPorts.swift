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
/// Within a process, one atomic cursor per pool walks the pool, so no port is handed out twice until the pool
/// wraps (16 000 ports). The cursor starts at the process id scattered over the pool (Fibonacci hashing), so
/// processes started together (test suites, benches with pids a few apart) search different places. A candidate
/// that cannot be bound now (another process holds it) is skipped.
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
        let range = pool.range
        let span = range.count
        var result: [UInt16] = []
        var examined = 0
        while result.count < count {
            guard examined < span else { return nil }
            let offset = pool.advance(by: run)
            examined += run
            let first = range.lowerBound + (pool.start + offset) % span
            guard first + run <= range.upperBound else { continue }  // the run would cross the pool's end
            if (first..<first + run).allSatisfy({ isBindable(UInt16($0)) }) { result.append(UInt16(first)) }
        }
        return result
    }

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

    /// Moves this pool's cursor on by `ports` and returns where it stood.
    fileprivate func advance(by ports: Int) -> Int {
        switch self {
        case .tests: return testsCursor.add(ports, ordering: .relaxed).oldValue
        case .tools: return toolsCursor.add(ports, ordering: .relaxed).oldValue
        }
    }

    /// Where this process starts searching: the pid scattered over the pool (Fibonacci hashing).
    fileprivate var start: Int {
        Int((UInt64(UInt32(bitPattern: getpid())) &* 2_654_435_761) % UInt64(range.count))
    }
}

private let testsCursor = Atomic<Int>(0)
private let toolsCursor = Atomic<Int>(0)

/// Reads two integers ("low high") from `file`.
private func readTwoIntegers(_ file: UnsafeMutablePointer<FILE>, _ low: inout Int32, _ high: inout Int32) -> Bool {
    var buffer = [CChar](repeating: 0, count: 64)
    guard fgets(&buffer, Int32(buffer.count), file) != nil else { return false }
    let text = String(cString: buffer)
    let fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
    guard fields.count >= 2, let first = Int32(fields[0]), let second = Int32(fields[1]) else { return false }
    low = first
    high = second
    return true
}
