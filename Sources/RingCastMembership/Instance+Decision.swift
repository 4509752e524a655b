/// Steps 6–7: the decision, its relay, and installing the new view.
extension Membership.Instance {
    /// The coordinator's decision: to every member of the new view and every acceptor.
    mutating func decide(_ value: Membership.Value) {
        guard let view = installed else { preconditionFailure("a member has a view") }
        var recipients = Set(value.newView.members).union(view.members)
        recipients.remove(me)
        for member in recipients.sorted() { send(.decide(fromView: view.id, value: value), to: member) }
        apply(Decision(fromView: view.id, value: value))
    }

    /// A decision for the installed view: relay it first, so that a coordinator that crashed halfway
    /// through its sends cannot leave the group split, then act on it.
    mutating func receiveDecide(_ value: Membership.Value, from sender: Membership.MemberID) {
        guard let view = installed else { preconditionFailure("a member has a view") }
        if !isValid(value, from: view) { return ignore(.invalidValue) }
        for member in value.newView.members where member != me && member != sender {
            send(.decide(fromView: view.id, value: value), to: member)
        }
        apply(Decision(fromView: view.id, value: value))
    }

    private mutating func apply(_ decision: Decision) {
        lastDecision = decision
        coordination = nil
        if decision.value.newView.contains(me) { return install(decision) }
        if leaving {
            state = .left
            return outbox.append(.left)
        }
        state = .excluded
        outbox.append(.excluded(decision.value.newView))
    }

    private mutating func install(_ decision: Decision) {
        guard let view = installed else { preconditionFailure("a member has a view") }
        // An old member of a decided view promised in some ballot, and a promise needs the freeze.
        precondition(recovered != nil, "\(me) installs \(decision.value.newView) without having frozen")
        let value = decision.value
        let installation = Membership.Installation(
            view: value.newView, previousView: view, target: value.target, causes: value.causes,
            joiners: value.joiners, stateProvider: stateProvider(of: value),
            changeStartedTicks: changeStartedTicks)
        previous = view
        state = .normal
        enter(value.newView)
        statistics.viewChanges += 1
        outbox.append(.install(installation))
        if leaving {
            // Our leave came too late for this value: ask again in the new view.
            leaving = false
            requestLeave()
        }
    }

    /// The lowest old member of the new view, when there are joiners to give the state to.
    private func stateProvider(of value: Membership.Value) -> Membership.MemberID? {
        guard !value.joiners.isEmpty else { return nil }
        return value.newView.members.first { !value.joiners.contains($0) }
    }

    /// A message about a view older than ours: its sender missed the decision that ended that view, so
    /// send it ours (step 6). If it missed more than one, ours tells it that it was left out.
    mutating func answerStale(_ message: Membership.Message, from sender: Membership.MemberID) {
        if case .decide = message { return ignore(.staleView) }
        guard let decision = lastDecision else { return ignore(.staleView) }
        statistics.staleAnswered += 1
        send(.decide(fromView: decision.fromView, value: decision.value), to: sender)
    }

    /// A message about a view newer than ours: we wait for the decision, unless it is one that leaves us
    /// out. A member of view v + 2 promised in view v + 1, so a later view without us means we are out.
    mutating func receiveNewer(_ message: Membership.Message) {
        guard case .decide(_, let value) = message, !value.newView.contains(me) else { return ignore(.newerView) }
        coordination = nil
        if leaving {
            state = .left
            return outbox.append(.left)
        }
        state = .excluded
        outbox.append(.excluded(value.newView))
    }

    // MARK: joiners (step 7: a joiner installs the decision that lets it in)

    mutating func receiveAsJoiner(_ message: Membership.Message, from sender: Membership.MemberID) {
        guard case .decide(let fromView, let value) = message, value.newView.contains(me),
              value.joiners.contains(me) else { return ignore(.joinerNotAdmitted) }
        let installation = Membership.Installation(
            view: value.newView, previousView: nil, target: [], causes: value.causes, joiners: value.joiners,
            stateProvider: stateProvider(of: value), changeStartedTicks: changeStartedTicks)
        lastDecision = Decision(fromView: fromView, value: value)
        state = .normal
        enter(value.newView)
        statistics.viewChanges += 1
        outbox.append(.install(installation))
    }
}
