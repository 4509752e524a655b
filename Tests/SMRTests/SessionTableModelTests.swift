@testable import RingCastSMR
import Testing

/// The session table's admission, checked against a model written the plain way (copy the session out, filter the
/// cached replies on each acknowledgement, look at every cached reply for one in flight): the table does the same
/// in place and looks only at the numbers an acknowledgement passes over, and must decide exactly alike.
@Suite struct SessionTableModelTests {
    struct ModelSession: Equatable {
        var firstUnacknowledged: UInt64 = 1
        var replies: [UInt64: [UInt8]?] = [:]
        var lastActiveMillis: UInt64 = 0
    }

    /// The admission as the table decided it before it worked in place (the same rules, written the plain way).
    static func modelAdmit(_ session: inout ModelSession, sequence: UInt64, firstUnacknowledged: UInt64,
                           nowMillis: UInt64, windowMax: Int) -> SessionTable.Admission {
        if firstUnacknowledged > session.firstUnacknowledged,
           session.replies.contains(where: { $0.key < firstUnacknowledged && $0.value == nil }) {
            return .duplicateInFlight
        }
        session.lastActiveMillis = max(session.lastActiveMillis, nowMillis)
        if firstUnacknowledged > session.firstUnacknowledged {
            session.firstUnacknowledged = firstUnacknowledged
            session.replies = session.replies.filter { $0.key >= firstUnacknowledged }
        }
        if sequence < session.firstUnacknowledged { return .alreadyAcknowledged }
        if let cached = session.replies[sequence] {
            guard let reply = cached else { return .duplicateInFlight }
            return .duplicate(reply: reply)
        }
        guard sequence - session.firstUnacknowledged < UInt64(windowMax) else { return .outsideWindow }
        session.replies[sequence] = .some(nil)
        return .apply
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8])
    func randomScripts_decideAsTheModel(seed: UInt64) {
        let windowMax = 8
        var table = SessionTable(limits: .init(sessionsMax: 4, windowMax: windowMax, timeoutMillis: 1 << 40))
        table.open(id: 1, nowMillis: 0)
        var model = ModelSession()
        var random = seed &* 0x9E37_79B9_7F4A_7C15
        func next(_ bound: UInt64) -> UInt64 {
            random = random &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return (random >> 33) % bound
        }
        var admitted: [UInt64] = []  // admitted, reply not recorded yet (a batch not applied yet)
        var acknowledgedUpTo: UInt64 = 1
        for step in 0..<4000 {
            // Mostly a client moving forward in order, sometimes a retry, a late copy, a jump, or the batch applied.
            if next(5) == 0, !admitted.isEmpty {
                for sequence in admitted {
                    table.record(session: 1, sequence: sequence, reply: [UInt8(truncatingIfNeeded: sequence)])
                    model.replies[sequence] = .some([UInt8(truncatingIfNeeded: sequence)])
                }
                admitted.removeAll()
                continue
            }
            if next(4) == 0 { acknowledgedUpTo += next(UInt64(windowMax) + 3) }
            let first = next(6) == 0 ? max(1, acknowledgedUpTo - min(acknowledgedUpTo - 1, next(4))) : acknowledgedUpTo
            let sequence = first + next(UInt64(windowMax) + 2) - min(first - 1, next(3))
            let now = UInt64(step)
            let expected = Self.modelAdmit(&model, sequence: sequence, firstUnacknowledged: first, nowMillis: now,
                                           windowMax: windowMax)
            let got = table.admit(session: 1, sequence: sequence, firstUnacknowledged: first, nowMillis: now)
            #expect(got == expected, "step \(step): admit(\(sequence), first \(first))")
            guard got == expected else { return }
            if got == .apply { admitted.append(sequence) }
            if got == .duplicateInFlight, !admitted.isEmpty {
                // What the replica does: apply the batch, then admit again.
                for pending in admitted {
                    table.record(session: 1, sequence: pending, reply: [UInt8(truncatingIfNeeded: pending)])
                    model.replies[pending] = .some([UInt8(truncatingIfNeeded: pending)])
                }
                admitted.removeAll()
            }
            let session = table.sessions[1]!
            #expect(session.firstUnacknowledged == model.firstUnacknowledged)
            #expect(session.replies == model.replies)
            #expect(session.lastActiveMillis == model.lastActiveMillis)
        }
    }
}
