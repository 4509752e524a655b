extension Membership {
    /// What the shell must do, in the order returned.
    ///
    /// The shell's duties (etcd-raft `Ready` style):
    /// 1. `.send`: send the message (best effort; the protocol retries what matters).
    /// 2. `.freeze`: stop the data ring of the current view (no frame in or out), read the LCR core's
    ///    clock and pending list, keep them as a ``Membership/Recovery``, then call
    ///    ``Membership/Instance/onFrozen(received:nowTicks:)``.
    /// 3. `.supply`: send the receiver the recovery entries of `origin` with seqs in `seqs`; on data
    ///    received, `add` it and call ``Membership/Instance/onRecoveryReceived(received:nowTicks:)``.
    /// 4. `.install`: force-deliver ``Membership/Recovery/forceDeliveryOrder(target:)`` (Fig. 2.7 line 6),
    ///    then start the LCR core of the new view and broadcast again, in order, own messages above the
    ///    target (only under ``Membership/RecoveryRule/commonPrefix``) and those that never left the old core.
    /// 5. `.excluded` / `.left`: stop delivering. An excluded process may rejoin as a new incarnation.
    public enum Directive: Sendable, Hashable {
        case send(Message, to: MemberID)
        case freeze
        case supply(origin: UInt32, seqs: ClosedRange<UInt64>, to: MemberID)
        case install(Installation)
        case excluded(View)
        case left
        /// For the shell's log and metrics: this member now suspects `MemberID`.
        case suspect(MemberID, Cause)
    }

    public enum State: Sendable, Hashable {
        /// Asking to be let in; no view yet.
        case joining
        /// A view is installed and its data ring runs.
        case normal
        /// The data ring is frozen; a view change of the installed view is under way.
        case changing
        /// A decided view left this member out: it stops for good (a new incarnation may join).
        case excluded
        /// This member asked to leave and a decided view let it out.
        case left
    }

    /// A decided view, as one member installs it.
    public struct Installation: Sendable, Hashable {
        public var view: View
        /// The view left; nil for a joiner, which has no data of it and waits for the state instead.
        public var previousView: View?
        /// Per ring position of `previousView`: force-deliver up to this seq. Empty for a joiner.
        public var target: [UInt64]
        public var causes: [Cause]
        public var joiners: [MemberID]
        /// The lowest old member of the new view, which sends joiners the state; nil without joiners.
        public var stateProvider: MemberID?
        /// When this member entered the view change (for detect-to-view latency).
        public var changeStartedTicks: UInt64

        public init(view: View, previousView: View?, target: [UInt64], causes: [Cause], joiners: [MemberID],
                    stateProvider: MemberID?, changeStartedTicks: UInt64) {
            self.view = view
            self.previousView = previousView
            self.target = target
            self.causes = causes
            self.joiners = joiners
            self.stateProvider = stateProvider
            self.changeStartedTicks = changeStartedTicks
        }
    }

    /// Counters since the instance was made.
    public struct Statistics: Sendable, Hashable {
        public var messagesIn: UInt64 = 0
        public var messagesOut: UInt64 = 0
        /// Messages dropped unread: unknown sender, stale incarnation, wrong view or state, bad sizes.
        /// The sum of ``messagesIgnoredBy``.
        public var messagesIgnored: UInt64 = 0
        /// Messages dropped unread, per reason (absent: none).
        public var messagesIgnoredBy: [Membership.IgnoreReason: UInt64] = [:]
        /// Messages about an older view answered with the decision that ended it.
        public var staleAnswered: UInt64 = 0
        public var ballotsStarted: UInt64 = 0
        public var viewChanges: UInt64 = 0
        public var suspicions: UInt64 = 0
    }

    /// Why the instance dropped a message unread. Each handler asks one `ignore<Event>` predicate
    /// (TigerBeetle's `ignore_*` shape), which names the first reason that applies; the instance counts
    /// it in ``Statistics/messagesIgnoredBy``.
    public enum IgnoreReason: Sendable, Hashable, CaseIterable {
        /// A message from ourselves (the shell loops nothing back).
        case fromSelf
        /// This member was excluded or has left: it takes part in no view any more.
        case notAMember
        /// A joiner hears only the decision that lets it in.
        case joinerNotAdmitted
        /// An older incarnation of a current member.
        case staleIncarnation
        /// A sender outside the installed view (for a join or leave: one that may not speak for the member).
        case notInView
        /// A ballot whose coordinator is not the sender.
        case notTheCoordinator
        /// A prepare or accept whose ballot is below the one promised (Paxos phase 1b / 2b).
        case ballotTooLow
        /// A fill for a ballot this member did not promise, or with a malformed target or plan.
        case invalidFill
        /// A value that cannot follow the installed view (wrong next id, target size or joiners).
        case invalidValue
        /// An answer that is not for the coordinator's current round and phase, or from a member not asked.
        case notAwaited
        /// A second promise from the same member in one round.
        case duplicateAnswer
        /// A promise whose clock does not have one entry per member.
        case invalidClock
        /// A message about an older view when there is no decision to answer it with, or a decision of it.
        case staleView
        /// A message about a newer view other than a decision that leaves us out: we wait for the decision.
        case newerView
        /// A join when the group is full, or from a joiner already let in whose decision we do not hold.
        case joinRefused
    }
}
