import RingCastMembership

/// The shell's side of a join (ARCHITECTURE §3.3): the member chosen as provider sends each joiner the application's
/// state and every member's delivered count (so that origin_seq continues across views); the joiner starts its
/// first ring once it holds both the decision and that state, whichever arrives first.
extension GroupShell {
    /// At the provider, once it delivered everything of the old view (the install's force-delivery came first).
    func provideState(to joiners: [Membership.MemberID], of view: Membership.View) {
        let snapshot = stateTransfer?.snapshot() ?? []
        let frame = GroupFrame.state(viewID: view.id, seqBases: seqBases, snapshot: snapshot).encoded()
        for joiner in joiners { channel.send(frame, to: peer(joiner)) }
    }

    /// At the joiner: the provider may be faster than the decision reaching it, so the state is kept until then.
    func stateReceived(viewID: UInt64, seqBases bases: [UInt32: UInt64], snapshot: [UInt8]) {
        receivedState = (viewID, bases, snapshot)
        startJoinedViewIfReady()
    }

    /// A joiner starts its first ring once it has both the decision and the provider's state for that view.
    func startJoinedViewIfReady() {
        guard let installation = waitingForState, let state = receivedState, state.viewID == installation.view.id else {
            return
        }
        if let stateTransfer { stateTransfer.restore(state.snapshot) }
        for (node, base) in state.seqBases { seqBases[node] = base }
        waitingForState = nil
        receivedState = nil
        logger.info("state transferred from the group", metadata: ["view_id": "\(installation.view.id)",
                                                                  "bytes": "\(state.snapshot.count)"])
        startView(installation)
    }
}
