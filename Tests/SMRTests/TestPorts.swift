import RingCastLocalPorts

/// Loopback ports p with p + 1 free too (a member's ring and control ports, or a client port), for the clusters of
/// this test process: from `LocalPorts`' pool for tests (10000–25999), never handed out twice in this process.
/// ringcast-kv's spawned clusters draw from the tools' pool, so the two never meet.
func freePortPairs(_ count: Int) -> [UInt16] {
    guard let ports = LocalPorts.free(count: count, run: 2, pool: .tests) else {
        preconditionFailure("no \(count) free pairs of loopback ports in \(LocalPorts.Pool.tests.range)")
    }
    return ports
}
