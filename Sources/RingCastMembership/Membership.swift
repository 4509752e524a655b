/// Group membership and view change for the LCR ring (thesis 001_…, §2.4.3, Fig. 2.7), sans-IO.
///
/// ``Membership/Instance`` is a value: the shell (the RingCast engine or the simulator) feeds it
/// events — ticks, messages, lost links, the frozen clock — and carries out the ``Membership/Directive``s
/// it returns. It owns no sockets, reads no clock and draws no random numbers, so the simulator and the
/// engine drive the very same code (ARCHITECTURE §2).
public enum Membership {}

extension Membership {
    /// Largest view: LCR vector clocks carry one entry per member (rc_lcr.h, `RC_LCR_NODES_MAX`).
    public static let membersMax = 64
    /// Largest fill plan: one entry per (receiver, origin).
    public static let planEntriesMax = membersMax * membersMax
    /// Largest list of causes in a value: one per old member and one per joiner.
    public static let causesMax = 2 * membersMax

    /// One incarnation of a process. A process that restarts joins again with a higher incarnation, so
    /// messages of its previous life can be told apart and ignored (§2.4.3: faulty processes are
    /// excluded; a recovered one is a new member).
    public struct MemberID: Hashable, Comparable, Sendable, CustomStringConvertible {
        public var node: UInt32
        public var incarnation: UInt32

        public init(node: UInt32, incarnation: UInt32 = 0) {
            self.node = node
            self.incarnation = incarnation
        }

        public static func < (lhs: MemberID, rhs: MemberID) -> Bool {
            lhs.node != rhs.node ? lhs.node < rhs.node : lhs.incarnation < rhs.incarnation
        }

        /// `m3`, or `m3.1` for incarnation 1.
        public var description: String { incarnation == 0 ? "m\(node)" : "m\(node).\(incarnation)" }
    }

    /// An installed view: its members in ring order (sorted by ``MemberID``), so that position `i` is
    /// p_i of §2.4 and every member computes the same successor.
    public struct View: Hashable, Sendable, CustomStringConvertible {
        public var id: UInt64
        /// Sorted, without duplicates: the ring order.
        public var members: [MemberID]

        /// - Precondition: 1...``Membership/membersMax`` distinct members.
        public init(id: UInt64, members: [MemberID]) {
            let sorted = members.sorted()
            precondition(!sorted.isEmpty && sorted.count <= Membership.membersMax, "a view has 1...64 members")
            precondition(zip(sorted, sorted.dropFirst()).allSatisfy { $0 < $1 }, "a member appears twice")
            self.id = id
            self.members = sorted
        }

        /// The ring position of `member`, or nil if it is not in the view.
        public func position(of member: MemberID) -> Int? { members.firstIndex(of: member) }

        public func contains(_ member: MemberID) -> Bool { members.contains(member) }

        public var description: String { "v\(id)\(members)" }
    }

    /// How much of the previous view a new view needs (ARCHITECTURE §2).
    public enum Mode: String, Sendable, Hashable {
        /// Primary partition: a view is decided by a strict majority of the previous view, so a false
        /// suspicion can never split the group.
        case quorum
        /// The paper's assumption of a perfect failure detector (§2.2.1): tolerates n − 1 crashes, but a
        /// false suspicion may split the group.
        case perfect
    }

    /// Which messages of the view being left the survivors deliver at a view change.
    public enum RecoveryRule: String, Sendable, Hashable, CaseIterable {
        /// Fig. 2.7 as written: the union of the survivors' `pending` lists. Messages some survivor lacks are
        /// first copied to it (the fill), which moves up to a window of payload per origin over the network.
        case union
        /// Only what every survivor already holds (the per-origin minimum of their clocks). Anything beyond
        /// was delivered by nobody — delivery needs a full round of the ring (§2.4.2) — so it is dropped from
        /// the old view, and a surviving origin sends its own such messages again in the new view. Validity
        /// and uniform agreement hold as in `union`, and a view change moves no payload at all.
        case commonPrefix
    }

    /// Settings of one member. Ticks are whatever unit the shell counts in (milliseconds in RingCast).
    public struct Settings: Sendable, Hashable {
        public var me: MemberID
        public var mode: Mode = .quorum
        /// A member sends a heartbeat to every other member of its view this often.
        public var heartbeatIntervalTicks: UInt64 = 20
        /// A member not heard from for this long is suspected.
        public var suspectTimeoutTicks: UInt64 = 200
        /// A round of the view change (prepare, fill, accept) ends at the latest after this long.
        public var roundTimeoutTicks: UInt64 = 200
        /// A broken data-ring link of a member in a normal view is a suspicion only if no view change starts
        /// within this long (see ``Membership/Instance/onRingLinkLost(_:nowTicks:)``).
        public var ringLossGraceTicks: UInt64 = 40
        /// Which old-view messages a view change delivers (see ``Membership/RecoveryRule``).
        public var recovery: RecoveryRule = .union
        /// Founders only: how long a member of the founding view may stay silent before its first message
        /// (processes of a group start at slightly different times; a slow start is not a crash).
        public var startupGraceTicks: UInt64 = 0

        public init(me: MemberID) { self.me = me }

        /// - Throws: ``Membership/Error/invalidSettings(_:)`` naming the rule a setting breaks.
        public func validate() throws(Membership.Error) {
            guard heartbeatIntervalTicks >= 1 else {
                throw .invalidSettings("heartbeatIntervalTicks must be at least 1")
            }
            // Two heartbeats per timeout, so that one late heartbeat is not yet a suspicion.
            guard suspectTimeoutTicks >= 2 * heartbeatIntervalTicks else {
                throw .invalidSettings("suspectTimeoutTicks must be at least 2 × heartbeatIntervalTicks")
            }
            guard roundTimeoutTicks >= 1 else { throw .invalidSettings("roundTimeoutTicks must be at least 1") }
            let limit = UInt64.max / 8
            guard suspectTimeoutTicks <= limit && roundTimeoutTicks <= limit && startupGraceTicks <= limit
                    && ringLossGraceTicks <= limit else {
                throw .invalidSettings("timeouts must be below \(limit) ticks")
            }
        }
    }

    /// Why a view changed.
    public enum Cause: Sendable, Hashable, CustomStringConvertible {
        /// The shell lost its connection to the member (§2.2.1: a broken TCP link means a crash).
        case linkLost(MemberID)
        /// Nothing heard from the member for `suspectTimeoutTicks`.
        case silent(MemberID)
        case joined(MemberID)
        case left(MemberID)
        /// The member did not answer within a round of the view change.
        case roundTimeout(MemberID)

        /// `silent(m3)`, `joined(m4.1)`…
        public var description: String {
            switch self {
            case .linkLost(let member): return "linkLost(\(member))"
            case .silent(let member): return "silent(\(member))"
            case .joined(let member): return "joined(\(member))"
            case .left(let member): return "left(\(member))"
            case .roundTimeout(let member): return "roundTimeout(\(member))"
            }
        }

        public var member: MemberID {
            switch self {
            case .linkLost(let member), .silent(let member), .joined(let member), .left(let member),
                 .roundTimeout(let member):
                return member
            }
        }
    }

    /// Operating errors: bad settings, bad bytes. Programmer errors trap instead.
    public enum Error: Swift.Error, Sendable, Hashable, CustomStringConvertible {
        case invalidSettings(String)
        case malformed(String)

        public var description: String {
            switch self {
            case .invalidSettings(let message): return "invalid membership settings: \(message)"
            case .malformed(let message): return "malformed membership message: \(message)"
            }
        }
    }
}
