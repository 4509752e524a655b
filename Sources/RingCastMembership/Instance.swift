extension Membership {
    /// One member's membership protocol: failure detection by heartbeats, and view change as one Paxos
    /// instance per view left, with a data-fill round between its two phases (thesis §2.4.3, Fig. 2.7).
    ///
    /// Every `on…` method takes the current time and returns the directives the shell must carry out,
    /// in order. Messages the instance sends to itself never leave it.
    public struct Instance: Sendable {
        let settings: Settings
        public internal(set) var state: State
        /// The installed view; nil while joining.
        var installed: View?
        /// The view installed before `installed` (nil for founders and joiners).
        var previous: View?
        /// Whom a joiner asks.
        let contacts: [MemberID]
        /// The decision that made `installed`, sent again to whoever speaks of an older view.
        var lastDecision: Decision?
        var nowTicks: UInt64
        /// Indexed by ring position of `installed`.
        var heardTicks: [UInt64] = []
        var suspicions: [Suspicion?] = []
        /// Broken data-ring links not yet taken as suspicions: ring position → the tick at which they are.
        var ringLosses: [Int: UInt64] = [:]
        /// Join and leave requests seen for the change of `installed` (sorted).
        var joiners: [MemberID] = []
        var leavers: [MemberID] = []
        /// This member asked to leave.
        var leaving = false
        /// The frozen clock plus what fills brought; nil until the shell reports the freeze.
        var recovered: [UInt64]?
        var changeStartedTicks: UInt64
        var nextHeartbeatTicks: UInt64
        /// A follower waits this long from the last sign of progress before suspecting the coordinator.
        var patienceStartTicks: UInt64 = 0
        var acceptor = Acceptor()
        var coordination: Coordination?
        /// The highest ballot round seen in this view change: a new ballot goes one above it.
        var roundSeen: UInt64 = 0
        var outbox: [Directive] = []
        var selfInbox: [Message] = []
        public internal(set) var statistics = Statistics()
        /// Simulator self-tests only: a bug planted on purpose to prove the checkers catch it.
        package var plantedFault: Membership.PlantedFault = .none

        /// A founding member of `view`.
        /// - Throws: ``Membership/Error/invalidSettings(_:)`` for bad settings or when `me` is not in `view`.
        public init(settings: Settings, view: View, nowTicks: UInt64) throws(Membership.Error) {
            try settings.validate()
            guard view.contains(settings.me) else {
                throw .invalidSettings("\(settings.me) is not a member of \(view)")
            }
            self.settings = settings
            self.state = .normal
            self.contacts = []
            self.nowTicks = nowTicks
            self.changeStartedTicks = nowTicks
            self.nextHeartbeatTicks = nowTicks
            enter(view)
            heardTicks = Array(repeating: nowTicks + settings.startupGraceTicks, count: view.members.count)
        }

        /// A new member that asks `contacts` (members of the group) to let it in.
        /// - Throws: ``Membership/Error/invalidSettings(_:)`` for bad settings, no contacts, more than 64,
        ///   or `me` among them.
        public init(settings: Settings, joiningVia contacts: [MemberID], nowTicks: UInt64) throws(Membership.Error) {
            try settings.validate()
            guard !contacts.isEmpty && contacts.count <= Membership.membersMax else {
                throw .invalidSettings("a joiner needs 1...64 contacts, got \(contacts.count)")
            }
            guard !contacts.contains(settings.me) else { throw .invalidSettings("a joiner cannot contact itself") }
            self.settings = settings
            self.state = .joining
            self.contacts = contacts
            self.nowTicks = nowTicks
            self.changeStartedTicks = nowTicks
            self.nextHeartbeatTicks = nowTicks
        }

        public var view: View? { installed }
        var me: MemberID { settings.me }

        // MARK: events

        public mutating func onTick(nowTicks: UInt64) -> [Directive] {
            begin(nowTicks)
            switch state {
            case .joining: joinerTick()
            case .normal, .changing: memberTick()
            case .excluded, .left: break
            }
            return finish()
        }

        public mutating func onMessage(_ message: Message, from sender: MemberID, nowTicks: UInt64) -> [Directive] {
            begin(nowTicks)
            statistics.messagesIn += 1
            if sender == me { ignore(.fromSelf) } else { receive(message, from: sender) }
            return finish()
        }

        /// The shell lost its connection to `peer` (§2.2.1: taken as a crash).
        public mutating func onLinkLost(_ peer: MemberID, nowTicks: UInt64) -> [Directive] {
            begin(nowTicks)
            if state == .normal || state == .changing { suspect(peer, .linkLost(peer), local: true) }
            return finish()
        }

        /// The shell's data-ring link to the neighbour `peer` broke. In a view change every member freezes its
        /// ring and closes its ring links (Fig. 2.7 line 1), and a neighbour's close can reach this member before
        /// that neighbour's `change` message, which travels on the control link: taken at once as a crash, it
        /// would exclude a live member (seen at load: the member that first suspected a third one was excluded
        /// with it). So in a normal view the break becomes a suspicion only if no view change starts within
        /// ``Membership/Settings/ringLossGraceTicks``. A crashed process loses its control link too, which
        /// ``onLinkLost(_:nowTicks:)`` takes at once; a ring broken between two live members still ends in a
        /// change, one grace later. During a change the ring is frozen or being replaced: a break means nothing.
        public mutating func onRingLinkLost(_ peer: MemberID, nowTicks: UInt64) -> [Directive] {
            begin(nowTicks)
            if state == .normal, let position = installed?.position(of: peer), peer != me, ringLosses[position] == nil {
                ringLosses[position] = nowTicks + settings.ringLossGraceTicks
            }
            return finish()
        }

        /// The shell froze the data ring after `.freeze`; `received` is the LCR core's clock.
        /// - Precondition: one entry per member of the installed view.
        public mutating func onFrozen(received: [UInt64], nowTicks: UInt64) -> [Directive] {
            begin(nowTicks)
            if state == .changing { frozen(received) }
            return finish()
        }

        /// Recovery data arrived; `received` is ``Membership/Recovery/received`` now.
        /// - Precondition: one entry per member of the installed view.
        public mutating func onRecoveryReceived(received: [UInt64], nowTicks: UInt64) -> [Directive] {
            begin(nowTicks)
            if state == .changing && recovered != nil { recoveryReceived(received) }
            return finish()
        }

        /// Asks to leave the group; `.left` follows once a decided view leaves this member out.
        public mutating func leave(nowTicks: UInt64) -> [Directive] {
            begin(nowTicks)
            requestLeave()
            return finish()
        }

        // MARK: plumbing

        mutating func begin(_ now: UInt64) {
            precondition(now >= nowTicks, "ticks go backwards: \(now) after \(nowTicks)")
            precondition(outbox.isEmpty && selfInbox.isEmpty, "an event began inside another")
            nowTicks = now
        }

        /// Handles what this member sent itself, lets the coordinator's round advance, and hands the
        /// directives over.
        mutating func finish() -> [Directive] {
            var steps = 0
            repeat {
                while !selfInbox.isEmpty {
                    steps += 1
                    precondition(steps <= 64, "messages to self do not settle")
                    receive(selfInbox.removeFirst(), from: me)
                }
                advanceCoordination(timedOut: false)
            } while !selfInbox.isEmpty
            let directives = outbox
            outbox.removeAll(keepingCapacity: true)
            return directives
        }

        mutating func send(_ message: Message, to member: MemberID) {
            if member == me {
                selfInbox.append(message)
                return
            }
            statistics.messagesOut += 1
            outbox.append(.send(message, to: member))
        }

        /// Drops a message unread, counting why.
        mutating func ignore(_ reason: IgnoreReason) {
            statistics.messagesIgnored += 1
            statistics.messagesIgnoredBy[reason, default: 0] += 1
        }

        /// Makes `view` the installed view and resets everything that belongs to one view change.
        mutating func enter(_ view: View) {
            installed = view
            heardTicks = Array(repeating: nowTicks, count: view.members.count)
            suspicions = Array(repeating: nil, count: view.members.count)
            ringLosses = [:]
            joiners = []
            leavers = []
            recovered = nil
            acceptor = Acceptor()
            coordination = nil
            roundSeen = 0
            nextHeartbeatTicks = nowTicks
        }
    }
}

extension Membership.Instance {
    /// A value decided for the view `fromView`.
    struct Decision: Sendable {
        var fromView: UInt64
        var value: Membership.Value
    }

    struct Suspicion: Sendable {
        var cause: Membership.Cause
        var sinceTicks: UInt64
    }

    /// The acceptor's side of the Paxos instance of the installed view.
    struct Acceptor: Sendable {
        var promised: Membership.Ballot?
        var accepted: Membership.AcceptedValue?
        /// A prepare that came before the freeze: answered by `onFrozen` (a promise needs the clock).
        var deferredPrepare: Membership.Ballot?
        var fill: FillTask?
        /// The coordinator whose ballot this member follows.
        var leader: Membership.MemberID?
    }

    struct FillTask: Sendable {
        var ballot: Membership.Ballot
        var target: [UInt64]
        var answered: Bool
    }
}

extension Membership {
    /// Bugs planted in the core on purpose, to prove the simulator's checkers catch them (never set in
    /// production; `package` so only this package's simulator can reach it).
    package enum PlantedFault: String, Sendable, CaseIterable {
        case none
        /// The coordinator skips the fill round: a member may install without the data up to the target.
        case installWithoutFill = "install-without-fill"
    }
}
