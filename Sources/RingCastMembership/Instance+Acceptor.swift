/// The acceptor's side: every member of the installed view that has frozen (steps 3–5).
extension Membership.Instance {
    /// Why a coordinator's message (prepare, fill, accept) is dropped before it counts as a coordinator at
    /// work: a ballot that names someone else.
    private func ignoreCoordinatorMessage(_ ballot: Membership.Ballot, from sender: Membership.MemberID) -> Membership.IgnoreReason? {
        ballot.coordinator == sender ? nil : .notTheCoordinator
    }

    /// Why a prepare is not promised (Paxos phase 1b): its ballot is not above the one promised.
    private func ignorePrepare(_ ballot: Membership.Ballot) -> Membership.IgnoreReason? {
        acceptor.promised.map({ ballot > $0 }) ?? true ? nil : .ballotTooLow
    }

    mutating func receivePrepare(_ ballot: Membership.Ballot, from sender: Membership.MemberID) {
        if let reason = ignoreCoordinatorMessage(ballot, from: sender) { return ignore(reason) }
        startChange()
        noteProgress(ballot)
        if let own = coordination?.ballot, own < ballot, sender != me {
            // Preempted: a higher ballot runs; follow it rather than duel with it.
            coordination = nil
        }
        if let reason = ignorePrepare(ballot) { return ignore(reason) }
        precondition(ballot.coordinator == sender && acceptor.promised.map({ ballot > $0 }) ?? true)
        acceptor.leader = sender
        guard recovered != nil else {
            // A promise carries the frozen clock: answer once the shell has frozen (onFrozen).
            acceptor.deferredPrepare = max(acceptor.deferredPrepare ?? ballot, ballot)
            return
        }
        promise(ballot)
    }

    private mutating func promise(_ ballot: Membership.Ballot) {
        guard let view = installed, let recovered else { preconditionFailure("a promise needs the frozen clock") }
        acceptor.promised = ballot
        acceptor.deferredPrepare = nil
        send(.promise(fromView: view.id, ballot: ballot, received: recovered, accepted: acceptor.accepted),
             to: ballot.coordinator)
    }

    /// The shell froze: keep the clock, and answer a prepare that was waiting for it.
    mutating func frozen(_ received: [UInt64]) {
        guard let view = installed else { preconditionFailure("a member has a view") }
        precondition(received.count == view.members.count, "one clock entry per member of \(view)")
        recovered = recovered.map { zip($0, received).map { max($0, $1) } } ?? received
        if let waiting = acceptor.deferredPrepare, acceptor.promised.map({ waiting > $0 }) ?? true {
            promise(waiting)
        }
        acceptor.deferredPrepare = nil
        reportFilled()
    }

    mutating func recoveryReceived(_ received: [UInt64]) {
        guard let view = installed, let current = recovered else { preconditionFailure("recovery after the freeze") }
        precondition(received.count == view.members.count, "one clock entry per member of \(view)")
        recovered = zip(current, received).map { max($0, $1) }
        reportFilled()
    }

    /// Step 4, at a member: supply what the plan asks of it, and report `filled` once its clock reaches
    /// the target (at once if it already does).
    mutating func receiveFill(_ ballot: Membership.Ballot, target: [UInt64], plan: [Membership.Transfer], from sender: Membership.MemberID) {
        if let reason = ignoreCoordinatorMessage(ballot, from: sender) { return ignore(reason) }
        guard let view = installed else { preconditionFailure("a member has a view") }
        startChange()
        noteProgress(ballot)
        if let reason = ignoreFill(ballot, target: target, plan: plan, in: view) { return ignore(reason) }
        precondition(acceptor.promised == ballot && target.count == view.members.count)
        acceptor.leader = sender
        for transfer in plan where transfer.supplier == me {
            outbox.append(.supply(origin: transfer.origin, seqs: transfer.seqs, to: transfer.receiver))
        }
        acceptor.fill = FillTask(ballot: ballot, target: target, answered: false)
        reportFilled()
    }

    /// Why a fill is not carried out: not for the ballot promised, or a target or plan that does not fit the view.
    private func ignoreFill(_ ballot: Membership.Ballot, target: [UInt64], plan: [Membership.Transfer],
                            in view: Membership.View) -> Membership.IgnoreReason? {
        acceptor.promised == ballot && isValidFill(target: target, plan: plan, in: view) ? nil : .invalidFill
    }

    private func isValidFill(target: [UInt64], plan: [Membership.Transfer], in view: Membership.View) -> Bool {
        guard target.count == view.members.count else { return false }
        return plan.allSatisfy { transfer in
            Int(transfer.origin) < target.count && transfer.seqs.upperBound <= target[Int(transfer.origin)]
                && view.contains(transfer.supplier) && view.contains(transfer.receiver)
        }
    }

    private mutating func reportFilled() {
        guard var fill = acceptor.fill, !fill.answered, let recovered, let view = installed else { return }
        guard zip(recovered, fill.target).allSatisfy({ $0 >= $1 }) else { return }
        fill.answered = true
        acceptor.fill = fill
        send(.filled(fromView: view.id, ballot: fill.ballot), to: fill.ballot.coordinator)
    }

    /// Step 5, at an acceptor.
    mutating func receiveAccept(_ ballot: Membership.Ballot, value: Membership.Value, from sender: Membership.MemberID) {
        if let reason = ignoreCoordinatorMessage(ballot, from: sender) { return ignore(reason) }
        guard let view = installed else { preconditionFailure("a member has a view") }
        startChange()
        noteProgress(ballot)
        if let reason = ignoreAccept(ballot, value: value, in: view) { return ignore(reason) }
        precondition(value.newView.id == view.id + 1 && acceptor.promised.map({ ballot >= $0 }) ?? true)
        acceptor.promised = ballot
        acceptor.accepted = Membership.AcceptedValue(ballot: ballot, value: value)
        acceptor.leader = sender
        send(.accepted(fromView: view.id, ballot: ballot), to: sender)
    }

    /// Why an accept is not accepted (Paxos phase 2b): a value that cannot follow `view`, or a ballot
    /// below the one promised.
    private func ignoreAccept(_ ballot: Membership.Ballot, value: Membership.Value, in view: Membership.View) -> Membership.IgnoreReason? {
        if !isValid(value, from: view) { return .invalidValue }
        return acceptor.promised.map({ ballot >= $0 }) ?? true ? nil : .ballotTooLow
    }

    /// A value for the change of `view`: the next id, one target entry per member, bounded lists.
    func isValid(_ value: Membership.Value, from view: Membership.View) -> Bool {
        value.newView.id == view.id + 1 && value.target.count == view.members.count
            && value.joiners.allSatisfy { value.newView.contains($0) && !view.contains($0) }
    }

    /// A coordinator is at work: restart the follower's patience, and keep ballots above all seen.
    private mutating func noteProgress(_ ballot: Membership.Ballot) {
        roundSeen = max(roundSeen, ballot.round)
        patienceStartTicks = nowTicks
    }
}
