import RingCastMembership

/// One incarnation in the membership simulator: its `Membership.Instance`, and the shell state around
/// it that the real engine keeps too — the LCR core of the current view, the recovery set while a view
/// change runs, broadcasts waiting for a ring — plus what the checkers read (deliveries, views).
final class MembershipSimMember {
    enum Status: Equatable {
        case alive, crashed, excluded, left
    }

    struct Delivery {
        var viewID: UInt64
        var app: MembershipAppID
    }

    /// Broadcasts that wait for a ring (during a view change, or while the window is full) at most.
    static let waitingMax = 32

    let id: Membership.MemberID
    var instance: Membership.Instance
    var status: Status = .alive
    var partitioned = false
    /// The LCR core of `coreView`; nil while frozen, and once stopped.
    var core: MembershipSimCore?
    var coreView: Membership.View?
    /// Own application messages broadcast into `core`, by the core's send-queue index (rc_lcr.h: own
    /// messages name their batch by that index).
    var ownApps: [MembershipAppID] = []
    /// The highest seq of an own LCR message that left `core`.
    var ownSentSeq: UInt64 = 0
    /// Fig. 2.7's data for the view being left, from the freeze to the install.
    var recovery: Membership.Recovery<[MembershipAppID]>?
    var recoveryView: Membership.View?
    /// Broadcast, not yet in a core: they enter the next core, in order.
    var waiting: [MembershipAppID] = []
    var nextCounter: UInt32 = 1
    var broadcasts: [MembershipAppID] = []
    var log: [Delivery] = []
    /// Views installed, in order (a founder's first is the founding view).
    var views: [Membership.View] = []
    var founder: Bool
    /// Mid-send crash: the member crashes once it has made this many more sends.
    var sendsBeforeCrash: Int?

    init(id: Membership.MemberID, instance: Membership.Instance, founder: Bool) {
        self.id = id
        self.instance = instance
        self.founder = founder
    }

    /// Running, reachable, and neither out of the group nor on its way out.
    var isCorrect: Bool { status == .alive && !partitioned }
}
