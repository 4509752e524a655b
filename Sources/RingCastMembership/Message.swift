extension Membership {
    /// A Paxos ballot: compared by round, then by coordinator, so two coordinators never share one.
    public struct Ballot: Hashable, Comparable, Sendable, CustomStringConvertible {
        public var round: UInt64
        public var coordinator: MemberID

        public init(round: UInt64, coordinator: MemberID) {
            self.round = round
            self.coordinator = coordinator
        }

        public static func < (lhs: Ballot, rhs: Ballot) -> Bool {
            lhs.round != rhs.round ? lhs.round < rhs.round : lhs.coordinator < rhs.coordinator
        }

        public var description: String { "b(\(round),\(coordinator))" }
    }

    /// What one view change decides: the next view, and up to where every origin's messages of the
    /// previous view are force-delivered (Fig. 2.7 line 6, bounded so every survivor delivers the same set).
    public struct Value: Hashable, Sendable {
        /// id = previous id + 1; members = promisers − leavers + joiners.
        public var newView: View
        /// Per ring position of the previous view: force-deliver seqs 1...target[o] of origin o.
        public var target: [UInt64]
        public var joiners: [MemberID]
        public var leavers: [MemberID]
        /// Why: one cause per removed member and per joiner, as the coordinator saw it.
        public var causes: [Cause]

        public init(newView: View, target: [UInt64], joiners: [MemberID], leavers: [MemberID], causes: [Cause]) {
            self.newView = newView
            self.target = target
            self.joiners = joiners
            self.leavers = leavers
            self.causes = causes
        }
    }

    /// A value an acceptor accepted, reported in its promise so a later coordinator adopts it.
    public struct AcceptedValue: Hashable, Sendable {
        public var ballot: Ballot
        public var value: Value

        public init(ballot: Ballot, value: Value) {
            self.ballot = ballot
            self.value = value
        }
    }

    /// One line of a fill plan: `supplier` sends `receiver` the LCR messages `seqs` of `origin` (a ring
    /// position of the previous view). This is Fig. 2.7's RECOVER exchange, narrowed to what is missing.
    public struct Transfer: Hashable, Sendable {
        public var supplier: MemberID
        public var receiver: MemberID
        public var origin: UInt32
        public var seqs: ClosedRange<UInt64>

        public init(supplier: MemberID, receiver: MemberID, origin: UInt32, seqs: ClosedRange<UInt64>) {
            self.supplier = supplier
            self.receiver = receiver
            self.origin = origin
            self.seqs = seqs
        }
    }

    /// The control messages. `fromView` is the id of the installed view being left: one Paxos instance
    /// per view.
    public enum Message: Sendable, Hashable {
        case heartbeat(viewID: UInt64)
        /// A new member asks to be let in.
        case join(MemberID)
        /// A member asks to be let out.
        case leave(MemberID)
        /// The sender started a view change of `viewID`; `suspects` are the members it suspects. Fig. 2.7
        /// has no such message: it tells the coordinator about a failure only the sender saw (a lost
        /// link), so the coordinator need not wait for its own timeout.
        case change(viewID: UInt64, suspects: [MemberID])
        case prepare(fromView: UInt64, ballot: Ballot)
        /// `received`: the acceptor's clock — frozen clock plus what fills brought (§2.4.1 positions).
        case promise(fromView: UInt64, ballot: Ballot, received: [UInt64], accepted: AcceptedValue?)
        case fill(fromView: UInt64, ballot: Ballot, target: [UInt64], plan: [Transfer])
        case filled(fromView: UInt64, ballot: Ballot)
        case accept(fromView: UInt64, ballot: Ballot, value: Value)
        case accepted(fromView: UInt64, ballot: Ballot)
        case decide(fromView: UInt64, value: Value)

        /// The view the message is about (nil for join and leave, which are about no view).
        public var viewID: UInt64? {
            switch self {
            case .heartbeat(let id), .change(let id, _): return id
            case .join, .leave: return nil
            case .prepare(let id, _), .promise(let id, _, _, _), .fill(let id, _, _, _), .filled(let id, _),
                 .accept(let id, _, _), .accepted(let id, _), .decide(let id, _):
                return id
            }
        }
    }
}
