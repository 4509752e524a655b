import RingCastMembership
import Testing

/// Settings are validated at construction (operating errors throw); broken invariants trap
/// (programmer errors), proven by exit tests.
@Suite struct InvariantTests {
    @Test func settingsAreValidated() throws {
        var bad = Membership.Settings(me: member(1))
        bad.heartbeatIntervalTicks = 0
        #expect(throws: Membership.Error.self) { try bad.validate() }
        bad.heartbeatIntervalTicks = 100
        bad.suspectTimeoutTicks = 150
        #expect(throws: Membership.Error.invalidSettings("suspectTimeoutTicks must be at least 2 × heartbeatIntervalTicks")) {
            try bad.validate()
        }
        bad.suspectTimeoutTicks = 200
        bad.roundTimeoutTicks = 0
        #expect(throws: Membership.Error.self) { try bad.validate() }
        try Membership.Settings(me: member(1)).validate()
    }

    @Test func constructionRefusesWhatCannotWork() {
        #expect(throws: Membership.Error.self) {
            try Membership.Instance(settings: settings(member(9)), view: view(1...3), nowTicks: 0)
        }
        #expect(throws: Membership.Error.self) {
            try Membership.Instance(settings: settings(member(9)), joiningVia: [], nowTicks: 0)
        }
        #expect(throws: Membership.Error.self) {
            try Membership.Instance(settings: settings(member(9)), joiningVia: [member(9)], nowTicks: 0)
        }
    }

    @Test func viewsAreInRingOrder() {
        let view = Membership.View(id: 1, members: [member(3), member(1, 2), member(1)])
        #expect(view.members == [member(1), member(1, 2), member(3)])
        #expect(view.position(of: member(3)) == 2)
        #expect(view.position(of: member(4)) == nil)
        #expect(member(1, 2).description == "m1.2")
    }

    @Test func aJoinerLeavingBeforeItIsInJustGoes() throws {
        var joiner = try Membership.Instance(settings: settings(member(4)), joiningVia: [member(1)], nowTicks: 0)
        #expect(joiner.onTick(nowTicks: 0).sent(to: member(1)).map(\.kind) == ["join"])
        #expect(joiner.leave(nowTicks: 1) == [.left])
        #expect(joiner.state == .left)
    }

    @Test func timeNeverGoesBackwards() async {
        await #expect(processExitsWith: .failure) {
            var instance = try Membership.Instance(settings: Membership.Settings(me: .init(node: 1)),
                                                   view: .init(id: 1, members: [.init(node: 1), .init(node: 2)]), nowTicks: 10)
            _ = instance.onTick(nowTicks: 5)
        }
    }

    /// The shell must report one clock entry per member of the view being left.
    @Test func aFrozenClockOfTheWrongSizeTraps() async {
        await #expect(processExitsWith: .failure) {
            var instance = try Membership.Instance(settings: Membership.Settings(me: .init(node: 1)),
                                                   view: .init(id: 1, members: [.init(node: 1), .init(node: 2)]), nowTicks: 0)
            _ = instance.onLinkLost(.init(node: 2), nowTicks: 1)
            _ = instance.onFrozen(received: [1, 2, 3], nowTicks: 2)
        }
    }

    @Test func aViewWithARepeatedMemberTraps() async {
        await #expect(processExitsWith: .failure) {
            _ = Membership.View(id: 1, members: [.init(node: 1), .init(node: 1)])
        }
    }
}
