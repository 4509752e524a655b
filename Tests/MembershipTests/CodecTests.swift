import RingCastMembership
import Testing

/// The wire form of the control messages: every kind round-trips, and bad bytes are refused, never
/// trusted (ARCHITECTURE §1, `wire`).
@Suite struct CodecTests {
    static let ballot = Membership.Ballot(round: 7, coordinator: member(2, 3))
    static let value = Membership.Value(
        newView: Membership.View(id: 9, members: [member(1), member(2, 3), member(8)]),
        target: [4, 0, UInt64.max], joiners: [member(8)], leavers: [member(5)],
        causes: [.linkLost(member(3)), .silent(member(4)), .joined(member(8)), .left(member(5)), .roundTimeout(member(6))])

    static let messages: [Message] = [
        .heartbeat(viewID: 42),
        .join(member(9, 1)),
        .leave(member(2)),
        .change(viewID: 8, suspects: [member(3), member(4)]),
        .change(viewID: 8, suspects: []),
        .prepare(fromView: 8, ballot: ballot),
        .promise(fromView: 8, ballot: ballot, received: [1, 2, 3], accepted: nil),
        .promise(fromView: 8, ballot: ballot, received: [1, 2, 3], accepted: .init(ballot: ballot, value: value)),
        .fill(fromView: 8, ballot: ballot, target: [4, 0, 9], plan: [
            .init(supplier: member(1), receiver: member(2, 3), origin: 2, seqs: 5...9),
            .init(supplier: member(1), receiver: member(8), origin: 0, seqs: 1...1),
        ]),
        .fill(fromView: 8, ballot: ballot, target: [], plan: []),
        .filled(fromView: 8, ballot: ballot),
        .accept(fromView: 8, ballot: ballot, value: value),
        .accepted(fromView: 8, ballot: ballot),
        .decide(fromView: 8, value: value),
    ]

    @Test(arguments: messages)
    func roundTrip(message: Message) throws {
        let bytes = message.encoded()
        #expect(bytes.first == Message.wireVersion)
        #expect(try Message.decode(bytes) == message)
    }

    /// Every proper prefix of every message is refused as truncated, and so is one extra byte.
    @Test(arguments: messages)
    func truncatedAndTrailingBytesAreRefused(message: Message) {
        let bytes = message.encoded()
        for length in 0..<bytes.count {
            #expect(throws: Membership.Error.self) { try Message.decode(Array(bytes.prefix(length))) }
        }
        #expect(throws: Membership.Error.self) { try Message.decode(bytes + [0]) }
    }

    @Test func wrongVersionAndUnknownKindAreRefused() {
        var bytes = Message.heartbeat(viewID: 1).encoded()
        bytes[0] = 1 // the big-endian version 1
        #expect(throws: Membership.Error.malformed("version 1, expected 2")) { try Message.decode(bytes) }
        bytes[0] = Message.wireVersion
        bytes[1] = 99
        #expect(throws: Membership.Error.malformed("unknown kind 99")) { try Message.decode(bytes) }
    }

    /// Counts above their bounds are refused before anything is read or allocated.
    @Test func countsAboveTheirBoundsAreRefused() {
        // change with 65 suspects
        var bytes: [UInt8] = [1, 4] + [UInt8](repeating: 0, count: 8) + [65] + [UInt8](repeating: 0, count: 65 * 8)
        #expect(throws: Membership.Error.self) { try Message.decode(bytes) }
        // a count that claims more members than bytes follow
        bytes = [1, 4] + [UInt8](repeating: 0, count: 8) + [3] + [UInt8](repeating: 0, count: 8)
        #expect(throws: Membership.Error.self) { try Message.decode(bytes) }
        // a fill whose plan claims 4097 entries
        let fill = Message.fill(fromView: 1, ballot: Self.ballot, target: [], plan: []).encoded()
        let oversized = Array(fill.dropLast(2)) + [0x01, 0x10] // 0x1001, little-endian
        #expect(throws: Membership.Error.self) { try Message.decode(oversized) }
    }

    @Test func unsortedViewsReversedRangesAndBadCausesAreRefused() {
        var decide = Message.decide(fromView: 8, value: Self.value).encoded()
        // Swap the first two view members (bytes after version, kind, fromView, view id, count).
        let first = 2 + 8 + 8 + 1
        let swapped = Array(decide[(first + 8)..<(first + 16)]) + Array(decide[first..<(first + 8)])
        decide.replaceSubrange(first..<(first + 16), with: swapped)
        #expect(throws: Membership.Error.malformed("view members not sorted or repeated")) { try Message.decode(decide) }

        var fill = Message.fill(fromView: 8, ballot: Self.ballot, target: [9],
                                plan: [.init(supplier: member(1), receiver: member(2), origin: 0, seqs: 5...9)]).encoded()
        let lower = fill.count - 16
        fill.replaceSubrange(lower..<(lower + 8), with: [10, 0, 0, 0, 0, 0, 0, 0]) // 10, little-endian
        #expect(throws: Membership.Error.malformed("plan range 10...9")) { try Message.decode(fill) }

        var accept = Message.accept(fromView: 8, ballot: Self.ballot, value: Self.value).encoded()
        accept[accept.count - 9] = 77
        #expect(throws: Membership.Error.malformed("unknown cause 77")) { try Message.decode(accept) }
    }

    /// Random bytes never crash the decoder.
    @Test func randomBytesNeverCrash() {
        var generator = SplitMix(seed: 7)
        for _ in 0..<20_000 {
            let length = Int(generator.next() % 80)
            var bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            if length > 1 {
                bytes[0] = 1
                bytes[1] = UInt8(1 + generator.next() % 11)
            }
            _ = try? Message.decode(bytes)
        }
    }
}

/// A tiny seeded generator for tests (splitmix64).
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
