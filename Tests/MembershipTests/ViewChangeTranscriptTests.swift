import RingCastMembership
import Testing

/// Transcript tests of the view change (thesis §2.4.3, Fig. 2.7, as one Paxos instance per view with a
/// fill round): a script of events, and the directives each member must return.
@Suite struct ViewChangeTranscriptTests {
    /// Clocks at the freeze when m3 (ring position 2) of m1...m5 crashes with four messages on their
    /// way around the ring m3 → m4 → m5 → m1 → m2: its successor m4 has all four, m2 only the first.
    static let clocks: [MemberID: [UInt64]] = [
        member(1): [5, 3, 2, 4, 6], member(2): [5, 3, 1, 4, 6], member(4): [5, 3, 4, 4, 6], member(5): [5, 3, 3, 4, 6],
    ]

    /// The kinds of view-change messages a member sent, in order, without repeats in a row.
    func transcript(_ cluster: Cluster, _ id: MemberID) -> [String] {
        let kinds = cluster.directives(id).sends.map(\.0.kind).filter { $0 != "heartbeat" && $0 != "change" }
        return kinds.enumerated().filter { $0.offset == 0 || kinds[$0.offset - 1] != $0.element }.map(\.element)
    }

    @Test func figure2_7_crashOfOneOfFive() throws {
        var cluster = try Cluster(founders: view(1...5), clocks: Self.clocks)
        cluster.crash(member(3))
        cluster.event(member(1)) { $0.onLinkLost(member(3), nowTicks: 0) }
        let first = cluster.directives(member(1))
        #expect(first.first == .suspect(member(3), .linkLost(member(3))))
        #expect(first.freezes == 1)
        #expect(first.sends.filter { $0.0.kind == "prepare" }.map(\.1) == [member(2), member(4), member(5)])
        cluster.run()

        #expect(transcript(cluster, member(1)) == ["prepare", "fill", "accept", "decide"])
        #expect(transcript(cluster, member(2)) == ["promise", "filled", "accepted", "decide"])
        let fill = try #require(cluster.directives(member(1)).sent(to: member(2)).first { $0.kind == "fill" })
        let ballot = Membership.Ballot(round: 1, coordinator: member(1))
        #expect(fill == .fill(fromView: 1, ballot: ballot, target: [5, 3, 4, 4, 6], plan: [
            .init(supplier: member(4), receiver: member(1), origin: 2, seqs: 3...4),
            .init(supplier: member(4), receiver: member(2), origin: 2, seqs: 2...4),
            .init(supplier: member(4), receiver: member(5), origin: 2, seqs: 4...4),
        ]))
        #expect(cluster.directives(member(4)).contains(.supply(origin: 2, seqs: 2...4, to: member(2))))
        for id in [1, 2, 4, 5].map({ member($0) }) {
            let installation = try #require(cluster.directives(id).installation, "\(id) installed")
            #expect(installation.view == Membership.View(id: 2, members: [member(1), member(2), member(4), member(5)]))
            #expect(installation.previousView == view(1...5))
            #expect(installation.target == [5, 3, 4, 4, 6])
            #expect(installation.causes == [.linkLost(member(3))])
            #expect(installation.stateProvider == nil)
            #expect(cluster.state(id) == .normal)
        }
    }

    /// The fill round gates the decision: until m2 holds everything up to the target, nothing is accepted.
    @Test func figure2_7_noAcceptBeforeEveryReceiverFilled() throws {
        var cluster = try Cluster(founders: view(1...3), clocks: [
            member(1): [2, 0, 0], member(2): [1, 0, 0], member(3): [2, 0, 0],
        ])
        cluster.holdSupplies = true
        cluster.event(member(1)) { $0.leave(nowTicks: 0) }
        cluster.run()
        #expect(!cluster.directives(member(1)).sends.contains { $0.0.kind == "accept" })
        #expect(cluster.heldSupplies.map(\.to) == [member(2)])
        #expect(cluster.heldSupplies.first?.seqs == 2...2)
        cluster.releaseSupplies()
        cluster.run()
        #expect(cluster.directives(member(1)).sends.contains { $0.0.kind == "accept" })
        #expect(cluster.state(member(1)) == .left)
        #expect(cluster.view(of: member(2)) == Membership.View(id: 2, members: [member(2), member(3)]))
    }

    /// A coordinator that crashes after its prepares: the next member restarts with a higher ballot.
    @Test func coordinatorCrashRestartsWithAHigherBallot() throws {
        var cluster = try Cluster(founders: view(1...5), clocks: Self.clocks)
        cluster.crash(member(3))
        cluster.event(member(1)) { $0.onLinkLost(member(3), nowTicks: 0) }
        cluster.crash(member(1))
        cluster.run()
        cluster.event(member(2)) { $0.onLinkLost(member(1), nowTicks: 0) }
        cluster.run()
        cluster.advance(to: 600)
        let prepares = cluster.directives(member(2)).sends.compactMap { message, _ -> Membership.Ballot? in
            if case .prepare(_, let ballot) = message { return ballot } else { return nil }
        }
        #expect(prepares.first == Membership.Ballot(round: 2, coordinator: member(2)))
        let installation = try #require(cluster.directives(member(4)).installation)
        #expect(installation.view.members == [member(2), member(4), member(5)])
        #expect(installation.target == [5, 3, 4, 4, 6])
    }

    /// A coordinator that crashes after one acceptor accepted: the next coordinator adopts that value
    /// unchanged (Paxos), skipping the fill that already happened.
    @Test func coordinatorCrashAfterAcceptAdoptsTheValue() throws {
        var cluster = try Cluster(founders: view(1...5), clocks: Self.clocks)
        cluster.crash(member(3))
        cluster.event(member(1)) { $0.onLinkLost(member(3), nowTicks: 0) }
        // Deliver until m1 has sent its accepts, then let only the one to m2 arrive.
        while !cluster.queue.contains(where: { $0.message.kind == "accept" }) && !cluster.queue.isEmpty {
            let (message, from, to) = cluster.queue.removeFirst()
            cluster.event(to) { $0.onMessage(message, from: from, nowTicks: 0) }
        }
        cluster.queue.removeAll { $0.message.kind == "accept" && $0.to != member(2) }
        cluster.crash(member(1))
        cluster.run()
        cluster.event(member(2)) { $0.onLinkLost(member(1), nowTicks: 0) }
        cluster.run()
        // Quorum mode adopts no suspicion from others: m2 waits out its round for the silent m3.
        cluster.advance(to: 600)
        // m2's own ballot for view 1 (m1's messages it relayed aside): prepare, then straight to accept.
        let m2 = cluster.directives(member(2)).sends.map(\.0).filter { $0.viewID == 1 }.map(\.kind)
        let restart = try #require(m2.firstIndex(of: "prepare"))
        #expect(!m2[restart...].contains("fill"), "an adopted value skips the fill")
        #expect(m2[restart...].contains("accept"))
        let installation = try #require(cluster.directives(member(4)).installation)
        #expect(installation.view.members == [member(1), member(2), member(4), member(5)], "m1's value, unchanged")
    }

    /// Quorum mode: two of five cannot install; the three decide, and the two learn they are out.
    @Test func quorumMinorityCannotInstallAndIsExcluded() throws {
        var cluster = try Cluster(founders: view(1...5))
        cluster.blocked = [[member(1), member(2)], [member(3), member(4), member(5)]]
        cluster.advance(to: 1_200)
        #expect(cluster.view(of: member(1))?.id == 1)
        #expect(cluster.state(member(1)) == .changing)
        #expect(cluster.directives(member(1)).installation == nil)
        #expect(cluster.view(of: member(3)) == Membership.View(id: 2, members: [member(3), member(4), member(5)]))
        cluster.blocked = []
        cluster.clearLogs()
        cluster.advance(to: 1_300)
        #expect(cluster.state(member(1)) == .excluded)
        #expect(cluster.directives(member(2)).contains(.excluded(Membership.View(id: 2, members: [member(3), member(4), member(5)]))))
    }

    /// Perfect mode (§2.2.1): n − 1 crashes are tolerated, down to one survivor.
    @Test(arguments: [1, 5] as [UInt32])
    func perfectModeDownToOneSurvivor(survivor: UInt32) throws {
        var cluster = try Cluster(founders: view(1...5), mode: .perfect)
        for node in 1...5 as ClosedRange<UInt32> where node != survivor { cluster.crash(member(node)) }
        cluster.advance(to: 800)
        #expect(cluster.view(of: member(survivor)) == Membership.View(id: 2, members: [member(survivor)]))
        #expect(cluster.state(member(survivor)) == .normal)
    }

    /// Perfect mode with one crash at a time: every change still decides.
    @Test func perfectModeCrashesOneAfterAnother() throws {
        var cluster = try Cluster(founders: view(1...4), mode: .perfect)
        for (index, node) in [2, 1, 4].enumerated() {
            cluster.crash(member(UInt32(node)))
            cluster.advance(to: UInt64(index + 1) * 1_000)
        }
        #expect(cluster.view(of: member(3)) == Membership.View(id: 4, members: [member(3)]))
    }

    @Test func joinLetsANewMemberIn() throws {
        var cluster = try Cluster(founders: view(1...3))
        try cluster.add(joiner: member(4), contacts: [member(1), member(2), member(3)])
        cluster.advance(to: 200)
        let installation = try #require(cluster.directives(member(4)).installation)
        #expect(installation.view == Membership.View(id: 2, members: (1...4).map { member($0) }))
        #expect(installation.previousView == nil)
        #expect(installation.joiners == [member(4)])
        #expect(installation.stateProvider == member(1))
        #expect(installation.causes == [.joined(member(4))])
        let old = try #require(cluster.directives(member(2)).installation)
        #expect(old.previousView == view(1...3))
        #expect(old.stateProvider == member(1))
        for node in 1...4 as ClosedRange<UInt32> { #expect(cluster.state(member(node)) == .normal) }
    }

    @Test func leaveLetsAMemberOut() throws {
        var cluster = try Cluster(founders: view(1...4))
        cluster.event(member(2)) { $0.leave(nowTicks: 0) }
        cluster.run()
        #expect(cluster.directives(member(2)).contains(.left))
        #expect(cluster.state(member(2)) == .left)
        let installation = try #require(cluster.directives(member(1)).installation)
        #expect(installation.view.members == [member(1), member(3), member(4)])
        #expect(installation.causes == [.left(member(2))])
    }

    /// The coordinator itself may leave: it decides, then goes.
    @Test func coordinatorLeaves() throws {
        var cluster = try Cluster(founders: view(1...3))
        cluster.event(member(1)) { $0.leave(nowTicks: 0) }
        cluster.run()
        #expect(cluster.state(member(1)) == .left)
        #expect(cluster.view(of: member(3))?.members == [member(2), member(3)])
    }

    /// A member that slept through a view change (its messages lost) gets the decision as the answer to
    /// its next message about the old view, and learns it is out.
    @Test func staleViewMessagesAreAnsweredWithTheDecision() throws {
        var cluster = try Cluster(founders: view(1...4))
        cluster.blocked = [[member(4)], [member(1), member(2), member(3)]]
        cluster.advance(to: 600)
        #expect(cluster.view(of: member(1))?.members == [member(1), member(2), member(3)])
        cluster.blocked = []
        cluster.clearLogs()
        cluster.event(member(1)) { $0.onMessage(.heartbeat(viewID: 1), from: member(4), nowTicks: 600) }
        let answer = cluster.directives(member(1)).sent(to: member(4))
        #expect(answer.map(\.kind) == ["decide"])
        cluster.run()
        #expect(cluster.state(member(4)) == .excluded)
        #expect(cluster.instances[member(1)]?.statistics.staleAnswered ?? 0 >= 1)
    }

    /// Messages of a stale incarnation or an unknown member are counted and ignored.
    @Test func unknownAndStaleSendersAreIgnored() throws {
        var instance = try Membership.Instance(settings: settings(member(1)), view: Membership.View(id: 3, members: [member(1), member(2, 1)]), nowTicks: 0)
        #expect(instance.onMessage(.prepare(fromView: 3, ballot: .init(round: 1, coordinator: member(2))), from: member(2), nowTicks: 0).isEmpty)
        #expect(instance.onMessage(.heartbeat(viewID: 3), from: member(9), nowTicks: 0).isEmpty)
        #expect(instance.statistics.messagesIgnored == 2)
        #expect(instance.statistics.messagesIgnoredBy == [.staleIncarnation: 1, .notInView: 1])
        #expect(instance.state == .normal)
    }

    /// Each refusal says why: a ballot that names another coordinator, a prepare below the promise, an
    /// answer nobody waits for, and a decision whose value cannot follow the view.
    @Test func refusalsAreCountedPerReason() throws {
        var instance = try Membership.Instance(settings: settings(member(2)), view: view(1...3), nowTicks: 0)
        let high = Membership.Ballot(round: 5, coordinator: member(1)), low = Membership.Ballot(round: 1, coordinator: member(1))
        _ = instance.onMessage(.prepare(fromView: 1, ballot: .init(round: 1, coordinator: member(3))), from: member(1), nowTicks: 0)
        _ = instance.onMessage(.prepare(fromView: 1, ballot: high), from: member(1), nowTicks: 0)
        _ = instance.onFrozen(received: [0, 0, 0], nowTicks: 0)
        _ = instance.onMessage(.prepare(fromView: 1, ballot: low), from: member(1), nowTicks: 0)
        _ = instance.onMessage(.filled(fromView: 1, ballot: high), from: member(3), nowTicks: 0)
        let badValue = Membership.Value(newView: Membership.View(id: 7, members: [member(1)]), target: [0, 0, 0],
                                        joiners: [], leavers: [], causes: [])
        _ = instance.onMessage(.decide(fromView: 1, value: badValue), from: member(1), nowTicks: 0)
        #expect(instance.statistics.messagesIgnoredBy == [.notTheCoordinator: 1, .ballotTooLow: 1, .notAwaited: 1, .invalidValue: 1])
        #expect(instance.statistics.messagesIgnored == 4)
    }

    /// Heartbeats go to every other member each interval; silence for the timeout is a suspicion.
    @Test func heartbeatsAndSilence() throws {
        var instance = try Membership.Instance(settings: settings(member(1)), view: view(1...3), nowTicks: 0)
        #expect(instance.onTick(nowTicks: 0).sends.map(\.1) == [member(2), member(3)])
        #expect(instance.onTick(nowTicks: 10).isEmpty)
        _ = instance.onMessage(.heartbeat(viewID: 1), from: member(2), nowTicks: 150)
        let directives = instance.onTick(nowTicks: 200)
        #expect(directives.contains(.suspect(member(3), .silent(member(3)))))
        #expect(!directives.contains(.suspect(member(2), .silent(member(2)))))
        #expect(directives.freezes == 1)
        #expect(instance.state == .changing)
    }

    /// A neighbour that starts a view change closes its ring links when it freezes, and that close can arrive
    /// before its `change` message: within the grace it is no suspicion (a kv-faults run excluded a live member so).
    @Test func ringLossFollowedByTheNeighboursChangeIsNoSuspicion() throws {
        var instance = try Membership.Instance(settings: settings(member(1)), view: view(1...5), nowTicks: 0)
        _ = instance.onTick(nowTicks: 0)
        #expect(instance.onRingLinkLost(member(5), nowTicks: 10).isEmpty)
        #expect(instance.onTick(nowTicks: 20).suspects.isEmpty)
        let change = instance.onMessage(.change(viewID: 1, suspects: [member(3)]), from: member(5), nowTicks: 25)
        #expect(change.freezes == 1)
        #expect(instance.state == .changing)
        var later: [Membership.Directive] = []
        for now in stride(from: 30 as UInt64, through: 120, by: 10) { later += instance.onTick(nowTicks: now) }
        #expect(!later.contains(.suspect(member(5), .linkLost(member(5)))))
        #expect(!later.suspects.contains(member(5)))
    }

    /// A ring link broken between two live members with no change in sight is a suspicion one grace later.
    @Test func ringLossWithoutAChangeIsASuspicionAfterTheGrace() throws {
        var instance = try Membership.Instance(settings: settings(member(1)), view: view(1...5), nowTicks: 0)
        _ = instance.onTick(nowTicks: 0)
        _ = instance.onRingLinkLost(member(2), nowTicks: 10)
        #expect(instance.onTick(nowTicks: 49).suspects.isEmpty)
        let due = instance.onTick(nowTicks: 50)
        #expect(due.first == .suspect(member(2), .linkLost(member(2))))
        #expect(due.freezes == 1)
        #expect(instance.state == .changing)
        // A control link lost (the process is gone) stays a suspicion at once.
        var other = try Membership.Instance(settings: settings(member(1)), view: view(1...5), nowTicks: 0)
        #expect(other.onLinkLost(member(4), nowTicks: 10).first == .suspect(member(4), .linkLost(member(4))))
    }
}
