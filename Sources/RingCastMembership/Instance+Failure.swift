/// Receiving, failure detection and the start of a view change.
extension Membership.Instance {
    // MARK: receiving

    mutating func receive(_ message: Membership.Message, from sender: Membership.MemberID) {
        switch state {
        case .joining: receiveAsJoiner(message, from: sender)
        case .normal, .changing: receiveAsMember(message, from: sender)
        case .excluded, .left: ignore(.notAMember)
        }
    }

    private mutating func receiveAsMember(_ message: Membership.Message, from sender: Membership.MemberID) {
        guard let view = installed else { preconditionFailure("a member has a view") }
        if isStaleIncarnation(sender) { return ignore(.staleIncarnation) }
        if let position = view.position(of: sender) { heard(position) }
        switch message {
        case .join(let joiner): return receiveJoin(joiner, from: sender)
        case .leave(let leaver): return receiveLeave(leaver, from: sender)
        default: break
        }
        guard let id = message.viewID else { preconditionFailure("only join and leave are about no view") }
        if id < view.id { return answerStale(message, from: sender) }
        if id > view.id { return receiveNewer(message) }
        guard view.contains(sender) || sender == me else { return ignore(.notInView) }
        receiveCurrent(message, from: sender)
    }

    /// A message of the installed view.
    private mutating func receiveCurrent(_ message: Membership.Message, from sender: Membership.MemberID) {
        switch message {
        case .heartbeat: break
        case .change(_, let suspects): receiveChange(suspects: suspects)
        case .prepare(_, let ballot): receivePrepare(ballot, from: sender)
        case .promise(_, let ballot, let received, let accepted):
            receivePromise(ballot, received: received, accepted: accepted, from: sender)
        case .fill(_, let ballot, let target, let plan): receiveFill(ballot, target: target, plan: plan, from: sender)
        case .filled(_, let ballot): receiveFilled(ballot, from: sender)
        case .accept(_, let ballot, let value): receiveAccept(ballot, value: value, from: sender)
        case .accepted(_, let ballot): receiveAccepted(ballot, from: sender)
        case .decide(_, let value): receiveDecide(value, from: sender)
        case .join, .leave: preconditionFailure("handled before")
        }
    }

    /// Incarnations (§2.4.3 rejoin): once a newer incarnation of a node is a member or asks to join, the
    /// older one is a crashed process whose late messages must not count.
    func isStaleIncarnation(_ sender: Membership.MemberID) -> Bool {
        for member in installed?.members ?? [] where member.node == sender.node && member.incarnation > sender.incarnation {
            return true
        }
        for member in joiners where member.node == sender.node && member.incarnation > sender.incarnation { return true }
        return false
    }

    /// Any message from a member counts as heard. In quorum mode a suspicion is withdrawn when the member
    /// speaks again a heartbeat interval after it (so a message in flight before a crash does not count):
    /// quorum mode only needs an eventually perfect detector, and a permanent false suspicion could leave
    /// a majority of live members that never agree on a coordinator. The member was left out of this
    /// change's `change` messages while suspected, so it is told now: otherwise it could stay `normal`
    /// (its ring stalled, its heartbeats fine) while this member waits for it forever.
    mutating func heard(_ position: Int) {
        heardTicks[position] = nowTicks
        guard settings.mode == .quorum, let suspicion = suspicions[position], let view = installed else { return }
        guard nowTicks >= suspicion.sinceTicks + settings.heartbeatIntervalTicks else { return }
        suspicions[position] = nil
        patienceStartTicks = nowTicks
        if state == .changing {
            send(.change(viewID: view.id, suspects: suspectedMembers), to: view.members[position])
        }
    }

    // MARK: ticks

    mutating func joinerTick() {
        guard nowTicks >= nextHeartbeatTicks else { return }
        nextHeartbeatTicks = nowTicks + settings.heartbeatIntervalTicks
        for contact in contacts { send(.join(me), to: contact) }
    }

    mutating func memberTick() {
        guard let view = installed else { preconditionFailure("a member has a view") }
        if nowTicks >= nextHeartbeatTicks {
            nextHeartbeatTicks = nowTicks + settings.heartbeatIntervalTicks
            for member in view.members where member != me { send(.heartbeat(viewID: view.id), to: member) }
        }
        if state == .normal {
            for (position, dueTicks) in ringLosses.sorted(by: { $0.key < $1.key }) where state == .normal && nowTicks >= dueTicks {
                ringLosses[position] = nil
                suspect(view.members[position], .linkLost(view.members[position]), local: true)
            }
        }
        for position in view.members.indices where suspicions[position] == nil {
            let member = view.members[position]
            // heardTicks may lie ahead (the founding view's start-up grace): compare without subtracting.
            if member != me && nowTicks >= heardTicks[position] + settings.suspectTimeoutTicks {
                suspect(member, .silent(member), local: true)
            }
        }
        guard state == .changing else { return }
        coordinationTick()
        patienceTick()
    }

    /// A follower that sees no progress from the coordinator it waits for suspects it (step 2). The
    /// patience is two rounds, not one: each of the coordinator's rounds may rightly last a full
    /// `roundTimeoutTicks`, and one round would race the coordinator's own timeout.
    private mutating func patienceTick() {
        guard coordination == nil, state == .changing else { return }
        let awaited = leaderAwaited()
        guard awaited != me else { return }
        guard nowTicks >= patienceStartTicks + 2 * settings.roundTimeoutTicks else { return }
        acceptor.leader = nil
        patienceStartTicks = nowTicks
        suspect(awaited, .roundTimeout(awaited), local: true)
    }

    /// The coordinator this member waits for: the one it follows, else the lowest it does not suspect.
    func leaderAwaited() -> Membership.MemberID {
        if let leader = acceptor.leader, leader != me, !isSuspected(leader) { return leader }
        return expectedCoordinator()
    }

    /// Step 2: the lowest member of the installed view this member does not suspect (never a joiner).
    func expectedCoordinator() -> Membership.MemberID {
        guard let view = installed else { preconditionFailure("a member has a view") }
        for position in view.members.indices where suspicions[position] == nil || view.members[position] == me {
            return view.members[position]
        }
        preconditionFailure("a member never suspects itself")
    }

    func isSuspected(_ member: Membership.MemberID) -> Bool {
        guard let position = installed?.position(of: member) else { return false }
        return suspicions[position] != nil
    }

    /// The members suspected now, in ring order.
    var suspectedMembers: [Membership.MemberID] {
        guard let view = installed else { return [] }
        return view.members.indices.filter { suspicions[$0] != nil }.map { view.members[$0] }
    }

    // MARK: suspicion and the start of a change

    /// Suspects `member` of the installed view. `local` suspicions (this member's own detector) are told
    /// to the coordinator; adopted ones (from a `change` message) are not passed on again.
    mutating func suspect(_ member: Membership.MemberID, _ cause: Membership.Cause, local: Bool) {
        guard let view = installed, member != me, let position = view.position(of: member) else { return }
        guard suspicions[position] == nil else { return }
        suspicions[position] = Suspicion(cause: cause, sinceTicks: nowTicks)
        statistics.suspicions += 1
        outbox.append(.suspect(member, cause))
        patienceStartTicks = nowTicks
        if state == .normal {
            startChange()
        } else if local {
            let coordinator = expectedCoordinator()
            if coordinator != me { send(.change(viewID: view.id, suspects: suspectedMembers), to: coordinator) }
        }
        lead()
    }

    /// Step 1: freeze once, tell every member (so all freeze and the coordinator learns what this member
    /// suspects), and lead if this member is the coordinator.
    mutating func startChange() {
        guard state == .normal, let view = installed else { return }
        state = .changing
        ringLosses = [:]
        changeStartedTicks = nowTicks
        patienceStartTicks = nowTicks
        // The `change` messages go out before the freeze: the shell's freeze closes this member's ring links, and a
        // neighbour that sees that close before the `change` treats it as a failure after onRingLinkLost's grace.
        let suspects = suspectedMembers
        for member in view.members where member != me && !suspects.contains(member) {
            send(.change(viewID: view.id, suspects: suspects), to: member)
        }
        outbox.append(.freeze)
        lead()
    }

    /// Perfect mode adopts the sender's suspicions: they are accurate by assumption (§2.2.1), and the
    /// coordinator need not wait for its own timeout to learn of a crash only a neighbour saw. Quorum mode
    /// does not: there suspicions may be false and are withdrawn on hearing, and passing them around let
    /// them spread and come back without end (found by the simulator with late messages).
    private mutating func receiveChange(suspects: [Membership.MemberID]) {
        if settings.mode == .perfect {
            for suspect in suspects where suspect != me { self.suspect(suspect, .silent(suspect), local: false) }
        }
        startChange()
    }

    // MARK: joins and leaves (step 1: a join or a leave request triggers a change)

    /// A join request, from the joiner or relayed by a member (the joiner may not know the coordinator:
    /// its contacts are whoever it knew when it started).
    private mutating func receiveJoin(_ joiner: Membership.MemberID, from sender: Membership.MemberID) {
        if let reason = ignoreJoin(joiner, from: sender) { return ignore(reason) }
        guard let view = installed else { preconditionFailure("a member has a view") }
        if view.contains(joiner) {
            // Already let in, but the joiner missed the decision: send it again.
            guard let decision = lastDecision else { preconditionFailure("ignoreJoin checked the decision") }
            statistics.staleAnswered += 1
            return send(.decide(fromView: decision.fromView, value: decision.value), to: joiner)
        }
        if !joiners.contains(joiner) {
            precondition(view.members.count + joiners.count < Membership.membersMax, "ignoreJoin checked the room")
            joiners.append(joiner)
            joiners.sort()
        }
        startChange()
        let coordinator = expectedCoordinator()
        if joiner == sender && coordinator != me { send(.join(joiner), to: coordinator) }
    }

    /// Why a join request is dropped: a sender that may not speak for the joiner; a joiner already let in
    /// whose decision we no longer hold; a full group.
    private func ignoreJoin(_ joiner: Membership.MemberID, from sender: Membership.MemberID) -> Membership.IgnoreReason? {
        guard let view = installed, joiner == sender || view.contains(sender) else { return .notInView }
        if view.contains(joiner) {
            guard let decision = lastDecision, decision.value.newView.contains(joiner) else { return .joinRefused }
            return nil
        }
        if !joiners.contains(joiner) && view.members.count + joiners.count >= Membership.membersMax { return .joinRefused }
        return nil
    }

    private mutating func receiveLeave(_ leaver: Membership.MemberID, from sender: Membership.MemberID) {
        guard leaver == sender, let view = installed, view.contains(leaver) else { return ignore(.notInView) }
        if !leavers.contains(leaver) {
            leavers.append(leaver)
            leavers.sort()
        }
        startChange()
    }

    mutating func requestLeave() {
        switch state {
        case .joining:
            state = .left
            outbox.append(.left)
        case .normal, .changing:
            guard let view = installed else { preconditionFailure("a member has a view") }
            leaving = true
            if view.members == [me] {
                // The last member: there is nobody to agree with.
                state = .left
                return outbox.append(.left)
            }
            if !leavers.contains(me) {
                leavers.append(me)
                leavers.sort()
            }
            for member in view.members where member != me { send(.leave(me), to: member) }
            startChange()
        case .excluded, .left:
            break
        }
    }
}
