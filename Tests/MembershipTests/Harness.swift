import RingCastMembership

typealias MemberID = Membership.MemberID
typealias Directive = Membership.Directive
typealias Message = Membership.Message

func member(_ node: UInt32, _ incarnation: UInt32 = 0) -> MemberID { MemberID(node: node, incarnation: incarnation) }

/// Members m1...mN of view `id`.
func view(_ nodes: ClosedRange<UInt32>, id: UInt64 = 1) -> Membership.View {
    Membership.View(id: id, members: nodes.map { member($0) })
}

func settings(_ me: MemberID, _ mode: Membership.Mode = .quorum) -> Membership.Settings {
    var settings = Membership.Settings(me: me)
    settings.mode = mode
    return settings
}

extension Array where Element == Directive {
    /// The messages sent, as (message, to).
    var sends: [(Message, MemberID)] {
        compactMap { if case .send(let message, let to) = $0 { return (message, to) } else { return nil } }
    }

    func sent(to member: MemberID) -> [Message] { sends.filter { $0.1 == member }.map(\.0) }

    var installation: Membership.Installation? {
        for directive in self { if case .install(let installation) = directive { return installation } }
        return nil
    }

    var freezes: Int { filter { $0 == .freeze }.count }

    /// The members suspected, in order.
    var suspects: [MemberID] {
        compactMap { if case .suspect(let member, _) = $0 { return member } else { return nil } }
    }
}

extension Message {
    var kind: String {
        switch self {
        case .heartbeat: return "heartbeat"
        case .join: return "join"
        case .leave: return "leave"
        case .change: return "change"
        case .prepare: return "prepare"
        case .promise: return "promise"
        case .fill: return "fill"
        case .filled: return "filled"
        case .accept: return "accept"
        case .accepted: return "accepted"
        case .decide: return "decide"
        }
    }
}

/// A tiny in-memory cluster for transcript tests: messages are delivered in FIFO order, one at a time,
/// crashed members drop everything, and the data side is modelled by clocks only (a `.supply` raises
/// the receiver's clock at once, as if the entries had arrived).
struct Cluster {
    var instances: [MemberID: Membership.Instance] = [:]
    /// Every directive each member returned, in order.
    var log: [MemberID: [Directive]] = [:]
    var queue: [(message: Message, from: MemberID, to: MemberID)] = []
    var crashed: Set<MemberID> = []
    /// The frozen clock each member reports when told to freeze.
    var clocks: [MemberID: [UInt64]] = [:]
    /// What each member holds now (clock of its recovery).
    var recovered: [MemberID: [UInt64]] = [:]
    /// Members whose shell does not freeze by itself (the test calls onFrozen).
    var manualFreeze: Set<MemberID> = []
    /// Partition: a message between members of different groups is dropped. Empty: no partition.
    var blocked: [Set<MemberID>] = []
    /// When set, `.supply` directives wait in `heldSupplies` until `releaseSupplies()`.
    var holdSupplies = false
    var heldSupplies: [(origin: UInt32, seqs: ClosedRange<UInt64>, to: MemberID)] = []
    var now: UInt64 = 0

    init(founders: Membership.View, mode: Membership.Mode = .quorum, clocks: [MemberID: [UInt64]] = [:]) throws {
        for id in founders.members {
            instances[id] = try Membership.Instance(settings: settings(id, mode), view: founders, nowTicks: 0)
            self.clocks[id] = clocks[id] ?? Array(repeating: 0, count: founders.members.count)
        }
    }

    mutating func add(joiner: MemberID, contacts: [MemberID], mode: Membership.Mode = .quorum) throws {
        instances[joiner] = try Membership.Instance(settings: settings(joiner, mode), joiningVia: contacts, nowTicks: now)
    }

    /// Runs an event at `id` and carries out its directives.
    mutating func event(_ id: MemberID, _ body: (inout Membership.Instance) -> [Directive]) {
        guard !crashed.contains(id), var instance = instances[id] else { return }
        let directives = body(&instance)
        instances[id] = instance
        log[id, default: []] += directives
        for directive in directives { carry(directive, at: id) }
    }

    private mutating func carry(_ directive: Directive, at id: MemberID) {
        switch directive {
        case .send(let message, let to): queue.append((message, id, to))
        case .freeze:
            // The given clock is for the founders' view; later views start from zero.
            let nodes = instances[id]?.view?.members.count ?? 0
            if clocks[id]?.count != nodes { clocks[id] = Array(repeating: 0, count: nodes) }
            recovered[id] = clocks[id]
            if !manualFreeze.contains(id) { freeze(id) }
        case .supply(let origin, let seqs, let to) where holdSupplies:
            heldSupplies.append((origin, seqs, to))
        case .supply(let origin, let seqs, let to):
            supply(origin: origin, seqs: seqs, to: to)
        default: break
        }
    }

    mutating func releaseSupplies() {
        let supplies = heldSupplies
        heldSupplies = []
        for supply in supplies { self.supply(origin: supply.origin, seqs: supply.seqs, to: supply.to) }
    }

    private mutating func supply(origin: UInt32, seqs: ClosedRange<UInt64>, to: MemberID) {
            var clock = recovered[to] ?? []
            guard Int(origin) < clock.count, clock[Int(origin)] + 1 >= seqs.lowerBound else { return }
            clock[Int(origin)] = max(clock[Int(origin)], seqs.upperBound)
            recovered[to] = clock
            let now = self.now
            event(to) { $0.onRecoveryReceived(received: clock, nowTicks: now) }
    }

    mutating func freeze(_ id: MemberID) {
        let clock = clocks[id] ?? []
        let now = self.now
        event(id) { $0.onFrozen(received: clock, nowTicks: now) }
    }

    /// Delivers queued messages until none is left (or `limit`).
    mutating func run(limit: Int = 10_000) {
        var steps = 0
        while !queue.isEmpty && steps < limit {
            steps += 1
            let (message, from, to) = queue.removeFirst()
            if isBlocked(from, to) { continue }
            let now = self.now
            event(to) { $0.onMessage(message, from: from, nowTicks: now) }
        }
    }

    /// Advances time to `until` in steps, ticking every live member and delivering messages.
    mutating func advance(to until: UInt64, step: UInt64 = 10) {
        while now < until {
            now = min(until, now + step)
            for id in instances.keys.sorted() {
                let now = self.now
                event(id) { $0.onTick(nowTicks: now) }
            }
            run()
        }
    }

    func isBlocked(_ from: MemberID, _ to: MemberID) -> Bool {
        !blocked.isEmpty && !blocked.contains { $0.contains(from) && $0.contains(to) }
    }

    mutating func crash(_ id: MemberID) {
        crashed.insert(id)
        queue.removeAll { $0.to == id }
    }

    func state(_ id: MemberID) -> Membership.State? { instances[id]?.state }
    func view(of id: MemberID) -> Membership.View? { instances[id]?.view }
    func directives(_ id: MemberID) -> [Directive] { log[id] ?? [] }

    /// Forgets the logs so a test can look at what comes next only.
    mutating func clearLogs() { log = [:] }
}
