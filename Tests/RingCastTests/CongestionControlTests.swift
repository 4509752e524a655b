import RingCast
import Testing

/// ``Node/Limits/congestionControl``: the name reaches the ring's sockets (a name the kernel does not know is
/// refused there, counted, and the ring still runs on the system's congestion control), and bad names are
/// refused at configuration.
@Suite("RingCast congestion control", .serialized)
struct CongestionControlTests {
    @Test func defaultIsCubicAsRingperfMeasures() {
        #expect(Node.Limits().congestionControl == "cubic")
    }

    @Test(arguments: ["reno", ""])
    func knownNameIsApplied(name: String) async throws {
        let refused = try await runTwoNodeRing(congestionControl: name)
        #expect(refused == [0, 0], "reno is in every kernel and allowed to unprivileged processes; \"\" sets nothing")
    }

    @Test func unknownNameFallsBackAndIsCounted() async throws {
        let refused = try await runTwoNodeRing(congestionControl: "nosuchcc")
        // Each node configures at least its socket to the successor and the one its predecessor connected.
        for count in refused { #expect(count >= 2) }
    }

    @Test(arguments: ["Cubic", "cu bic", "sixteen-letters-", "c\u{e9}"])
    func badNamesAreRefused(name: String) {
        var limits = Node.Limits()
        limits.congestionControl = name
        #expect(throws: RingCastError.self) {
            try Node.Configuration(position: 0, members: ["127.0.0.1:7000", "127.0.0.1:7001"], limits: limits)
        }
    }

    /// Starts a two-node ring with `congestionControl`, sends 20 messages each way round and returns each node's
    /// ``Node/Statistics/congestionRefused`` once all 40 are delivered everywhere.
    private func runTwoNodeRing(congestionControl: String) async throws -> [UInt64] {
        let ring = try TestRing(members: loopbackMembers(2), way: .handler) { $0.congestionControl = congestionControl }
        defer { ring.shutdown() }
        try await startRing(ring.nodes)
        try await withDeadline(20, "2 × 20 broadcasts") {
            for index in 0..<20 {
                for (position, node) in ring.nodes.enumerated() {
                    _ = try await node.broadcast(testPayload(origin: position, index: index, size: 100))
                }
            }
            try await ring.waitForDeliveries(40)
            return ()
        }
        let seen = ring.seen()
        #expect(seen[0].entries.count == 40 && seen[1].entries == seen[0].entries)
        return ring.nodes.map(\.statistics.congestionRefused)
    }
}
