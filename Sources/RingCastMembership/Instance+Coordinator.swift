/// The coordinator's side: one ballot of the Paxos instance of the installed view, in three rounds —
/// prepare, fill, accept — each ending when every awaited member answered or was suspected, or at
/// `roundTimeoutTicks` (ReSync-style rounds, seeds/000_…: the accumulator decides when a round ends).
extension Membership.Instance {
    struct Coordination: Sendable {
        enum Phase: Sendable { case prepare, fill, accept, failed }

        var ballot: Membership.Ballot
        var phase: Phase
        var startedTicks: UInt64
        /// Indexed by ring position: whom the current round waits for, and who answered.
        var awaited: [Bool]
        var answered: [Bool]
        /// Promises of phase 1, by ring position.
        var promises: [Promise?]
        var value: Membership.Value?
        var plan: [Membership.Transfer] = []
    }

    struct Promise: Sendable {
        var received: [UInt64]
        var accepted: Membership.AcceptedValue?
    }

    /// Starts a ballot if this member is the coordinator and follows nobody else.
    mutating func lead() {
        guard state == .changing, coordination == nil, expectedCoordinator() == me else { return }
        if let leader = acceptor.leader, leader != me, !isSuspected(leader) { return }
        startBallot()
    }

    /// Step 3: a ballot one round above every round seen, prepared to every member not suspected.
    private mutating func startBallot() {
        guard let view = installed else { preconditionFailure("a member has a view") }
        roundSeen += 1
        let ballot = Membership.Ballot(round: roundSeen, coordinator: me)
        let prepared = view.members.indices.map { view.members[$0] == me || suspicions[$0] == nil }
        let none = Array(repeating: false, count: view.members.count)
        coordination = Coordination(ballot: ballot, phase: .prepare, startedTicks: nowTicks, awaited: prepared,
                                    answered: none, promises: Array(repeating: nil, count: view.members.count))
        statistics.ballotsStarted += 1
        acceptor.leader = me
        for (position, member) in view.members.enumerated() where prepared[position] {
            send(.prepare(fromView: view.id, ballot: ballot), to: member)
        }
    }

    // MARK: answers

    mutating func receivePromise(_ ballot: Membership.Ballot, received: [UInt64], accepted: Membership.AcceptedValue?,
                                 from sender: Membership.MemberID) {
        if let reason = ignorePromise(ballot, received: received, accepted: accepted, from: sender) { return ignore(reason) }
        guard let position = installed?.position(of: sender), var round = coordination else {
            preconditionFailure("ignorePromise checked the sender and the round")
        }
        precondition(round.phase == .prepare && round.ballot == ballot && round.promises[position] == nil)
        round.promises[position] = Promise(received: received, accepted: accepted)
        round.answered[position] = true
        coordination = round
    }

    mutating func receiveFilled(_ ballot: Membership.Ballot, from sender: Membership.MemberID) {
        answer(.fill, ballot, from: sender)
    }

    mutating func receiveAccepted(_ ballot: Membership.Ballot, from sender: Membership.MemberID) {
        answer(.accept, ballot, from: sender)
    }

    /// Why a promise is not counted (Paxos phase 1b at the coordinator): not an answer to the current
    /// prepare from a member asked, a second one, a clock of the wrong size, or an accepted value that
    /// cannot follow the view.
    private func ignorePromise(_ ballot: Membership.Ballot, received: [UInt64], accepted: Membership.AcceptedValue?,
                               from sender: Membership.MemberID) -> Membership.IgnoreReason? {
        if let reason = ignoreAnswer(.prepare, ballot, from: sender) { return reason }
        guard let view = installed, let position = view.position(of: sender), let round = coordination else { return .notAwaited }
        if round.promises[position] != nil { return .duplicateAnswer }
        if received.count != view.members.count { return .invalidClock }
        return accepted.map({ isValid($0.value, from: view) }) ?? true ? nil : .invalidValue
    }

    /// Why an answer (promise, filled, accepted) is not for the coordinator's round in `phase`: no round,
    /// another phase or ballot, or a sender the round does not wait for.
    private func ignoreAnswer(_ phase: Coordination.Phase, _ ballot: Membership.Ballot,
                              from sender: Membership.MemberID) -> Membership.IgnoreReason? {
        guard let position = installed?.position(of: sender), let round = coordination, round.phase == phase,
              round.ballot == ballot, round.awaited[position]
        else { return .notAwaited }
        return nil
    }

    private mutating func answer(_ phase: Coordination.Phase, _ ballot: Membership.Ballot, from sender: Membership.MemberID) {
        if let reason = ignoreAnswer(phase, ballot, from: sender) { return ignore(reason) }
        guard let position = installed?.position(of: sender), var round = coordination else {
            preconditionFailure("ignoreAnswer checked the sender and the round")
        }
        precondition(round.phase == phase && round.ballot == ballot && round.awaited[position])
        round.answered[position] = true
        coordination = round
    }

    // MARK: rounds

    mutating func coordinationTick() {
        guard let round = coordination else { return }
        let due = nowTicks >= round.startedTicks + settings.roundTimeoutTicks
        if round.phase == .failed {
            // Without quorum: retry with a higher ballot once the round's time is up (step 3).
            guard due else { return }
            coordination = nil
            return lead()
        }
        if due { advanceCoordination(timedOut: true) }
    }

    /// Ends the current round if every awaited member answered or is suspected, or if it timed out.
    mutating func advanceCoordination(timedOut: Bool) {
        guard let round = coordination, round.phase != .failed else { return }
        let complete = round.awaited.indices.allSatisfy {
            !round.awaited[$0] || round.answered[$0] || suspicions[$0] != nil
        }
        switch round.phase {
        case .prepare: if complete || timedOut { endPrepare(timedOut: timedOut) }
        case .fill: advanceFill(complete: complete, timedOut: timedOut)
        case .accept: if complete || timedOut { endAccept(timedOut: timedOut) }
        case .failed: break
        }
    }

    /// Members awaited by the round that did not answer become suspected (steps 3–5).
    private mutating func suspectSilent() {
        guard let view = installed, let round = coordination else { return }
        for (position, member) in view.members.enumerated() where round.awaited[position] && !round.answered[position] {
            suspect(member, .roundTimeout(member), local: true)
        }
    }

    private mutating func fail() {
        coordination?.phase = .failed
    }

    private mutating func endPrepare(timedOut: Bool) {
        guard let view = installed else { preconditionFailure("a member has a view") }
        if timedOut { suspectSilent() }
        guard let round = coordination, round.phase == .prepare else { return }
        let promisers = view.members.indices.filter { round.promises[$0] != nil }
        let quorum = settings.mode == .quorum
            ? promisers.count * 2 > view.members.count
            : round.promises[view.position(of: me)!] != nil
        guard quorum else { return fail() }
        let adopted = promisers.compactMap { round.promises[$0]?.accepted }.max { $0.ballot < $1.ballot }
        if let adopted {
            // Paxos: a value some acceptor accepted may have been decided; its fill already happened.
            return startAccept(adopted.value, promisers: promisers)
        }
        let value = proposal(promisers: promisers)
        startFill(value, plan: fillPlan(value, promisers: promisers), promisers: promisers)
    }

    /// Step 4: every promiser supplies what its plan lines ask; the old members of the new view report
    /// `filled` once they hold everything up to the target.
    private mutating func startFill(_ value: Membership.Value, plan: [Membership.Transfer], promisers: [Int]) {
        guard let view = installed, var round = coordination else { preconditionFailure("a round runs") }
        if plantedFault == .installWithoutFill { return startAccept(value, promisers: promisers) }
        round.phase = .fill
        round.startedTicks = nowTicks
        round.value = value
        round.plan = plan
        round.awaited = view.members.map { value.newView.contains($0) && round.promises[view.position(of: $0)!] != nil }
        round.answered = Array(repeating: false, count: view.members.count)
        coordination = round
        for position in promisers {
            send(.fill(fromView: view.id, ballot: round.ballot, target: value.target, plan: plan),
                 to: view.members[position])
        }
    }

    private mutating func advanceFill(complete: Bool, timedOut: Bool) {
        guard let round = coordination, let value = round.value else { preconditionFailure("a fill has a value") }
        let waiting = round.awaited.indices.contains { round.awaited[$0] && !round.answered[$0] }
        if !waiting { return startAccept(value, promisers: promiserPositions(round)) }
        // A suspected receiver or supplier cannot finish this plan: a new ballot makes a new one.
        let supplierLost = round.plan.contains { isSuspected($0.supplier) }
        guard complete || supplierLost || timedOut else { return }
        if timedOut { suspectSilent() }
        fail()
    }

    private func promiserPositions(_ round: Coordination) -> [Int] {
        round.promises.indices.filter { round.promises[$0] != nil }
    }

    /// Step 5: the value to every promiser not suspected.
    private mutating func startAccept(_ value: Membership.Value, promisers: [Int]) {
        guard let view = installed, var round = coordination else { preconditionFailure("a round runs") }
        round.phase = .accept
        round.startedTicks = nowTicks
        round.value = value
        round.awaited = view.members.indices.map { promisers.contains($0) && suspicions[$0] == nil }
        round.answered = Array(repeating: false, count: view.members.count)
        coordination = round
        for (position, member) in view.members.enumerated() where round.awaited[position] {
            send(.accept(fromView: view.id, ballot: round.ballot, value: value), to: member)
        }
    }

    private mutating func endAccept(timedOut: Bool) {
        guard let view = installed else { preconditionFailure("a member has a view") }
        if timedOut { suspectSilent() }
        guard let round = coordination, round.phase == .accept, let value = round.value else { return }
        let acceptors = round.answered.filter { $0 }.count
        let chosen: Bool
        switch settings.mode {
        case .quorum:
            chosen = acceptors * 2 > view.members.count
        case .perfect:
            // Every promiser still not suspected accepted.
            chosen = promiserPositions(round).allSatisfy { round.answered[$0] || suspicions[$0] != nil }
                && acceptors >= 1
        }
        guard chosen else { return fail() }
        decide(value)
    }

    // MARK: the value and the plan

    /// Step 3's value: promisers − leavers + known joiners; target[o] by the recovery rule.
    func proposal(promisers: [Int]) -> Membership.Value {
        guard let view = installed, coordination != nil else { preconditionFailure("a round runs") }
        let promised = promisers.map { view.members[$0] }
        var staying = promised.filter { !leavers.contains($0) }
        // The last old member cannot leave: joiners would have nobody to take the state from.
        if staying.isEmpty { staying = [promised[0]] }
        let room = Membership.membersMax - staying.count
        let admitted = Array(joiners.filter { !view.contains($0) }.prefix(room))
        let newView = Membership.View(id: view.id + 1, members: staying + admitted)
        let target = view.members.indices.map { origin in
            recoveryTarget(origin: origin, promisers: promisers, staying: Set(staying))
        }
        var causes: [Membership.Cause] = []
        for (position, member) in view.members.enumerated() where !newView.contains(member) {
            causes.append(leavers.contains(member) ? .left(member) : suspicions[position]?.cause ?? .roundTimeout(member))
        }
        causes += admitted.map { .joined($0) }
        let gone = view.members.filter { leavers.contains($0) && !newView.contains($0) }
        return Membership.Value(newView: newView, target: target, joiners: admitted, leavers: gone, causes: causes)
    }

    /// target[o] under the settings' rule (``Membership/RecoveryRule``): the largest clock entry promised
    /// (`union`, Fig. 2.7), or the smallest among the promisers that stay (`commonPrefix`). Every message
    /// above the smallest entry is missing at some survivor, so nobody delivered it (delivery needs a full
    /// round, §2.4.2): dropping it from the old view is safe, and its origin, if it stays, sends it again.
    func recoveryTarget(origin: Int, promisers: [Int], staying: Set<Membership.MemberID>) -> UInt64 {
        guard let view = installed, let round = coordination else { preconditionFailure("a round runs") }
        let received = { (position: Int) in round.promises[position]!.received[origin] }
        switch settings.recovery {
        case .union:
            return promisers.map(received).max() ?? 0
        case .commonPrefix:
            let stayers = promisers.filter { staying.contains(view.members[$0]) }
            return (stayers.isEmpty ? promisers : stayers).map(received).min() ?? 0
        }
    }

    /// For every old member r of the new view and origin o with received_r[o] < target[o]: the promiser
    /// with the largest received[o] (lowest MemberID on ties) supplies (received_r[o], target[o]].
    /// Anything a member lacks was delivered by nobody (delivery needs a full round, §2.4.2), so the
    /// supplier still holds it in its pending list.
    func fillPlan(_ value: Membership.Value, promisers: [Int]) -> [Membership.Transfer] {
        guard let view = installed, let round = coordination else { preconditionFailure("a round runs") }
        var plan: [Membership.Transfer] = []
        for origin in view.members.indices {
            let received = { (position: Int) in round.promises[position]!.received[origin] }
            // Largest received[o]; on ties the lowest position, which is the lowest MemberID.
            guard let supplier = promisers.min(by: { received($0) > received($1) || (received($0) == received($1) && $0 < $1) })
            else { continue }
            for receiver in promisers where value.newView.contains(view.members[receiver]) {
                let has = received(receiver)
                guard has < value.target[origin] else { continue }
                plan.append(Membership.Transfer(supplier: view.members[supplier], receiver: view.members[receiver],
                                                origin: UInt32(origin), seqs: (has + 1)...value.target[origin]))
            }
        }
        precondition(plan.count <= Membership.planEntriesMax, "one plan line per (receiver, origin)")
        return plan
    }
}
