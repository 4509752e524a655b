import RingCastSimKit
import Testing

/// The four-process run of Fig. 2.6 (§2.4.2), replayed on real cores in the round model: p1 and p3
/// broadcast m1 and m3 at the start of round A, and `pending` is compared, round by round, with the
/// arrays the figure draws and the prose describes.
@Suite struct Figure2_6Tests {
    /// `origin` / `stable` of each pending entry, first (next to deliver) first. The LCR seq of both
    /// messages is 1: each is its origin's first broadcast.
    struct Expected: Equatable, CustomStringConvertible {
        var entries: [(origin: Int, stable: Bool)]
        static func == (a: Expected, b: Expected) -> Bool {
            a.entries.map(\.origin) == b.entries.map(\.origin) && a.entries.map(\.stable) == b.entries.map(\.stable)
        }
        var description: String {
            "[" + entries.map { "m\($0.origin)\($0.stable ? " stable" : "")" }.joined(separator: ", ") + "]"
        }
    }

    static let m1 = (origin: 1, stable: false), m1Stable = (origin: 1, stable: true)
    static let m3 = (origin: 3, stable: false), m3Stable = (origin: 3, stable: true)

    /// pending of p0...p3 at the end of rounds A...F, from §2.4.2.
    static let pendingAtEndOfRound: [[Expected]] = [
        // A: p1 and p2 (resp. p3 and p0) have m1 (resp. m3).
        [Expected(entries: [m3]), Expected(entries: [m1]), Expected(entries: [m1]), Expected(entries: [m3])],
        // B: p0 forwards m3 to p1, p2 forwards m1 to p3; at p1 and p3, m3 ≺ m1.
        [Expected(entries: [m3]), Expected(entries: [m3, m1]), Expected(entries: [m1]), Expected(entries: [m3, m1])],
        // C: everyone has both; p0 sets m1 stable (it is p1's predecessor) but m3 is first and not
        // stable; p2 sets m3 stable and delivers it (stable and first).
        [Expected(entries: [m3, m1Stable]), Expected(entries: [m3, m1]), Expected(entries: [m1]), Expected(entries: [m3, m1])],
        // D: p0's ACK for m1 reaches p1 (m3 still blocks it); p2's ACK for m3 reaches p3, which delivers m3.
        [Expected(entries: [m3, m1Stable]), Expected(entries: [m3, m1Stable]), Expected(entries: [m1]), Expected(entries: [m1])],
        // E: the ACKs go on: p2 learns m1 stable and delivers it; p0 learns m3 stable and delivers m3, m1.
        [Expected(entries: []), Expected(entries: [m3, m1Stable]), Expected(entries: []), Expected(entries: [m1])],
        // F: the ACK for m1 reaches p3, the ACK for m3 reaches p1: everything is delivered.
        [Expected(entries: []), Expected(entries: []), Expected(entries: []), Expected(entries: [])],
    ]

    @Test func figure2_6_fourProcessRun() throws {
        let ring = try RoundModel.Ring(nodes: 4, fairness: true)
        #expect(ring.broadcast(at: 1))
        #expect(ring.broadcast(at: 3))
        for (index, expected) in Self.pendingAtEndOfRound.enumerated() {
            try ring.step()
            let round = "round \(["A", "B", "C", "D", "E", "F"][index])"
            for process in 0..<4 {
                let pending = ring.pending(at: process)
                let observed = Expected(entries: pending.map { ($0.origin, $0.stable) })
                #expect(observed == expected[process], "\(round), p\(process): pending \(pending)")
                #expect(pending.allSatisfy { $0.sequence == 1 }, "\(round), p\(process): both are first broadcasts")
            }
        }
        // The stamps of §2.4.2: C_m1 = [0, 1, 0, 0], C_m3 = [0, 0, 0, 1] (seen where both were pending).
        let fresh = try RoundModel.Ring(nodes: 4, fairness: true)
        fresh.broadcast(at: 1)
        fresh.broadcast(at: 3)
        try fresh.step()
        try fresh.step()
        let atP1 = fresh.pending(at: 1)
        #expect(atP1.map(\.clock) == [[0, 0, 0, 1], [0, 1, 0, 0]], "p1 after round B holds m3 then m1")
    }

    /// Deliveries of Fig. 2.6: which process delivers what at the end of which round (A = 1).
    @Test func figure2_6_deliveryRounds() throws {
        let ring = try RoundModel.Ring(nodes: 4, fairness: true)
        ring.broadcast(at: 1)
        ring.broadcast(at: 3)
        for _ in 1...6 { try ring.step() }
        let m1 = MessageID(origin: 1, sequence: 1), m3 = MessageID(origin: 3, sequence: 1)
        let expected: [[(MessageID, Int)]] = [
            [(m3, 5), (m1, 5)], // p0: both at the end of E
            [(m3, 6), (m1, 6)], // p1: both at the end of F
            [(m3, 3), (m1, 5)], // p2: m3 at the end of C ("p2 can deliver m3"), m1 at E
            [(m3, 4), (m1, 6)], // p3: m3 at D, m1 at F
        ]
        for process in 0..<4 {
            let observed = ring.deliveries(at: process)
            #expect(observed.map(\.message) == expected[process].map(\.0), "p\(process) delivers m3 then m1")
            #expect(observed.map(\.round) == expected[process].map(\.1), "p\(process) delivery rounds")
        }
        #expect(try ring.check(quiescent: true).holds)
    }
}
