import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The next candidate of ``freePortPairs(_:)``, counted in pairs from the process's own start.
private let portPairCursor = Atomic<Int>(0)

/// Loopback ports p with p + 1 free too (a member's ring and control ports, or a client port), for the clusters of
/// this test process.
///
/// Swift Testing runs the suites of a target in parallel in one process, and a cluster picks its ports when it is
/// made but binds a member's only when that member starts (a joiner: later). So no port is handed out twice: one
/// atomic cursor walks 10000–25999 a pair at a time, each candidate to one caller only, and a candidate some other
/// process holds is skipped. Before, there were two pickers: one started each call 200 ports past the last (and
/// wrapped after 39 calls), the other (TransferTests, TransferPacingTests) started every call at the same
/// pid-derived port, so two clusters made at once could be handed a joiner's ports before it bound them.
/// Below the kernel's ephemeral ports (32768 and up by default), which outgoing connections take at any time;
/// ringcast-kv's spawned clusters use 26000 and up.
func freePortPairs(_ count: Int) -> [UInt16] {
    let first = 10_000, pairs = 8_000
    let start = Int(getpid()) % pairs
    var result: [UInt16] = []
    var examined = 0
    while result.count < count {
        precondition(examined < pairs, "no free pair of loopback ports in 10000–25999")
        examined += 1
        let index = (start + portPairCursor.add(1, ordering: .relaxed).oldValue) % pairs
        let candidate = UInt16(first + 2 * index)
        if bindable(candidate) && bindable(candidate + 1) { result.append(candidate) }
    }
    return result
}

private func bindable(_ port: UInt16) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
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
