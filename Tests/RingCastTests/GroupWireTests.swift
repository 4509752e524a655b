@testable import RingCast
import RingCastMembership
import Testing

// GroupFrame: the group's control-plane frames, on the control plane's one codec; a recovery entry travels as the
// C wire's message block, so its decoder (lengths, clock, checksum) checks what arrives.

@Suite struct GroupWireTests {
    static let entry = Membership.Recovery<RecoveredPayload>.Entry(
        origin: 1, seq: 3, clock: [2, 3, 0],
        payload: RecoveredPayload(bytes: Array("hello, world".utf8), lengths: [5, 0, 7], firstOriginSeq: 41, tokens: []))

    @Test func recoveryEntryRoundTripsAsAMessageBlock() throws {
        let bytes = GroupFrame.recovery(fromViewID: 9, entry: Self.entry).encoded()
        guard case let .recovery(view, entry)? = GroupFrame.decode(bytes) else {
            Issue.record("a recovery frame did not decode")
            return
        }
        #expect(view == 9)
        #expect(entry.origin == 1 && entry.seq == 3 && entry.clock == [2, 3, 0])
        #expect(entry.payload == Self.entry.payload)
    }

    @Test func aDamagedRecoveryEntryIsRefused() {
        let bytes = GroupFrame.recovery(fromViewID: 9, entry: Self.entry).encoded()
        for length in 0..<bytes.count {
            #expect(GroupFrame.decode(Array(bytes.prefix(length))) == nil, "a recovery frame cut at \(length) decoded")
        }
        // The block's checksum covers its header (rc_wire.h: payloads are TCP's and the delivery log's to check).
        let block = 1 + 8 + 8 + 4
        for offset in [block + 2, block + 12, block + 40] {
            var flipped = bytes
            flipped[offset] ^= 0x55
            #expect(GroupFrame.decode(flipped) == nil, "a recovery block damaged at \(offset - block) decoded")
        }
        var foreign = bytes
        foreign[1 + 8 + 8] = 4 // n = 4, while the block carries a clock of 3
        #expect(GroupFrame.decode(foreign) == nil)
    }

    @Test func stateAndMembershipFramesRoundTrip() {
        let state = GroupFrame.state(viewID: 4, seqBases: [7: 100, 2: 5], snapshot: [1, 2, 3]).encoded()
        guard case let .state(view, bases, snapshot)? = GroupFrame.decode(state) else {
            Issue.record("a state frame did not decode")
            return
        }
        #expect(view == 4 && bases == [7: 100, 2: 5] && snapshot == [1, 2, 3])
        let message = Membership.Message.heartbeat(viewID: 3).encoded()
        guard case let .membership(bytes)? = GroupFrame.decode(GroupFrame.membership(message).encoded()) else {
            Issue.record("a membership frame did not decode")
            return
        }
        #expect(bytes == message)
        #expect(GroupFrame.decode([]) == nil && GroupFrame.decode([9]) == nil)
    }
}
