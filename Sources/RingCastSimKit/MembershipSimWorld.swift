import RingCastMembership

/// The membership simulator's world: members, the control network, the ring links, virtual time and
/// the fault schedule. One tick: scheduled events, messages due, every member's `onTick`, then every
/// running ring moves frames and delivers (the shell's duties of rc_lcr.h).
struct MembershipSimWorld {
    /// Ticks after the last scheduled event within which the correct members must have converged.
    static let quietTicksMax: UInt64 = 1_000
    /// How often each member's `onTick` runs.
    static let timerPeriodTicks: UInt64 = 2
    /// Rejoins (excluded members coming back as a new incarnation) per run at most.
    static let rejoinsMax = 2

    enum Action {
        /// The shell of `at` sees its connection to `peer` break; ignored once `at` left view `viewID`.
        case linkLost(at: Membership.MemberID, peer: Membership.MemberID, viewID: UInt64)
        /// `at`'s data-ring link to its neighbour `peer` of view `viewID` breaks (a cut, or `peer` froze that ring
        /// and closed its links); ignored once `at` left the view.
        case ringLinkLost(at: Membership.MemberID, peer: Membership.MemberID, viewID: UInt64)
        case heal(Membership.MemberID)
        case rejoin(Membership.MemberID)
    }

    struct Ring: Hashable {
        var from: Membership.MemberID
        var to: Membership.MemberID
    }

    /// A ring link of one view.
    struct Link: Hashable {
        var from: Membership.MemberID
        var to: Membership.MemberID
        var viewID: UInt64
    }

    struct BatchKey: Hashable {
        var viewID: UInt64
        var origin: UInt32
        var seq: UInt64
    }

    let seed: UInt64
    let plantedBug: MembershipSimulation.PlantedBug
    let tracing: Bool
    var prng: MembershipPrng
    let scenario: MembershipScenario
    var now: UInt64 = 0
    var members: [MembershipSimMember] = []
    var index: [Membership.MemberID: Int] = [:]
    var network = MembershipSimNetwork()
    /// Ring frames per directed link, FIFO; `broken` links (cut by a partition) drop every frame of
    /// their view, as a dead TCP connection would.
    var links: [Ring: [MembershipSimFrame]] = [:]
    var broken: Set<Link> = []
    /// Application messages of every LCR message sent, and where each one is.
    var batches: [[MembershipAppID]] = []
    var batchOf: [BatchKey: Int] = [:]
    var broadcastApps: Set<MembershipAppID> = []
    var scheduled: [(time: UInt64, order: Int, action: Action)] = []
    var scheduledCount = 0
    var nextEvent = 0
    var nextNode: UInt32
    var lastEventTicks: UInt64 = 0
    var violations: [MembershipSimulation.Violation] = []
    var digest: UInt64 = 0xCBF2_9CE4_8422_2325
    var counts = (crashes: 0, partitions: 0, joins: 0, leaves: 0, rejoins: 0, control: 0)
    var converged = false
    /// Quorum mode: the newest view lost its live majority, so the group rightly stopped.
    var quorumLost = false

    init(seed: UInt64, plantedBug: MembershipSimulation.PlantedBug, trace: Bool) {
        self.seed = seed
        self.plantedBug = plantedBug
        self.tracing = trace
        var prng = MembershipPrng(seed: seed)
        scenario = MembershipScenario.draw(&prng)
        self.prng = prng
        nextNode = UInt32(scenario.members) + 1
        lastEventTicks = scenario.events.last?.time ?? 0
        let founders = Membership.View(id: 1, members: (1...UInt32(scenario.members)).map { Membership.MemberID(node: $0) })
        for id in founders.members {
            let instance = try! Membership.Instance(settings: settings(id), view: founders, nowTicks: 0)
            let member = add(MembershipSimMember(id: id, instance: instance, founder: true))
            member.views = [founders]
            startCore(member, view: founders)
        }
        self.trace("seed \(seed): \(scenario.mode) mode, \(scenario.recovery) recovery, \(scenario.members) members, send \(scenario.sendQueueMax), batch \(scenario.batchCountMax), fairness \(scenario.fairness), \(scenario.events.count) events")
    }

    func settings(_ id: Membership.MemberID) -> Membership.Settings {
        var settings = Membership.Settings(me: id)
        settings.mode = scenario.mode
        settings.recovery = scenario.recovery
        settings.heartbeatIntervalTicks = MembershipScenario.heartbeatIntervalTicks
        settings.suspectTimeoutTicks = MembershipScenario.suspectTimeoutTicks
        settings.roundTimeoutTicks = MembershipScenario.roundTimeoutTicks
        settings.ringLossGraceTicks = 2 * MembershipScenario.heartbeatIntervalTicks
        return settings
    }

    @discardableResult
    mutating func add(_ member: MembershipSimMember) -> MembershipSimMember {
        if plantedBug == .installWithoutFill { member.instance.plantedFault = .installWithoutFill }
        index[member.id] = members.count
        members.append(member)
        return member
    }

    func member(_ id: Membership.MemberID) -> MembershipSimMember? { index[id].map { members[$0] } }

    // MARK: the loop

    mutating func run() {
        while now <= lastEventTicks + Self.quietTicksMax {
            fireEvents()
            deliverMessages()
            // The shell's timer fires every other tick: finer than the heartbeat interval, and half the calls.
            if now % Self.timerPeriodTicks == 0 {
                for member in members where member.status == .alive {
                    apply(member.instance.onTick(nowTicks: now), at: member)
                }
            }
            for member in members where member.status == .alive && member.core != nil { pump(member) }
            if now >= lastEventTicks && isConverged() {
                converged = true
                break
            }
            now += 1
        }
        if !converged {
            if scenario.mode == .quorum && !latestViewHasLiveMajority(losing: nil) {
                // Primary partition (ARCHITECTURE §2): without a live majority of the last view nothing may
                // be decided, so waiting forever is the correct outcome, not a liveness violation.
                quorumLost = true
                trace("the last view lost its live majority: no liveness owed")
            } else {
                violation(.liveness, "the correct members did not converge within \(Self.quietTicksMax) ticks of the last event")
            }
        }
        check()
    }

    /// The newest view anybody installed keeps a strict majority of running members (partitioned
    /// ones count: they heal) even without `losing`.
    func latestViewHasLiveMajority(losing: Membership.MemberID?) -> Bool {
        guard let latest = members.flatMap(\.views).max(by: { $0.id < $1.id }) else { return true }
        let live = latest.members.filter { $0 != losing && member($0)?.status == .alive }
        return live.count * 2 > latest.members.count
    }

    /// Every correct member in one view made of exactly the correct members, with its ring idle and
    /// nothing left to broadcast.
    func isConverged() -> Bool {
        // A crash armed for the middle of a step is a fault still to come.
        guard !members.contains(where: { $0.status == .alive && $0.sendsBeforeCrash != nil }) else { return false }
        let correct = members.filter(\.isCorrect)
        guard let view = correct.first?.instance.view else { return false }
        guard view.members == correct.map(\.id).sorted() else { return false }
        for member in correct {
            guard member.instance.state == .normal, member.instance.view == view, member.coreView == view,
                  let core = member.core, member.waiting.isEmpty, core.sendQueueCount == 0,
                  core.pendingCount == 0, core.forwardQueueCount == 0
            else { return false }
        }
        return true
    }

    mutating func deliverMessages() {
        while let envelope = network.next(dueBy: now) {
            guard let receiver = member(envelope.to), receiver.status == .alive else { continue }
            if receiver.partitioned || member(envelope.from)?.partitioned == true { continue }
            switch envelope.packet {
            case .control(let bytes): receiveControl(bytes, from: envelope.from, at: receiver)
            case .data(let viewID, let entries): receiveData(entries, viewID: viewID, at: receiver)
            }
        }
    }

    private mutating func receiveControl(_ bytes: [UInt8], from sender: Membership.MemberID, at receiver: MembershipSimMember) {
        let message: Membership.Message
        do {
            message = try Membership.Message.decode(bytes)
        } catch {
            return violation(.protocol, "\(receiver.id) could not decode a message from \(sender): \(error)")
        }
        event(3, UInt64(bytes.count), UInt64(receiver.id.node))
        if tracing { trace("\(receiver.id) <- \(sender) \(Self.describe(message))") }
        apply(receiver.instance.onMessage(message, from: sender, nowTicks: now), at: receiver)
    }

    // MARK: scheduled events

    mutating func schedule(_ action: Action, at time: UInt64) {
        scheduledCount += 1
        // After every action due at the same time: actions of one time run in the order scheduled.
        let position = scheduled.firstIndex { $0.time > time } ?? scheduled.count
        scheduled.insert((time, scheduledCount, action), at: position)
        lastEventTicks = max(lastEventTicks, time)
    }

    private mutating func fireEvents() {
        while nextEvent < scenario.events.count && scenario.events[nextEvent].time <= now {
            let event = scenario.events[nextEvent]
            nextEvent += 1
            switch event.kind {
            case .broadcast: broadcast()
            case .fault(let fault): inject(fault)
            }
        }
        while let first = scheduled.first, first.time <= now {
            scheduled.removeFirst()
            perform(first.action)
        }
    }

    private mutating func perform(_ action: Action) {
        switch action {
        case .linkLost(let at, let peer, let viewID):
            guard let member = member(at), member.status == .alive, member.instance.view?.id == viewID else { return }
            trace("\(at) lost its link to \(peer)")
            apply(member.instance.onLinkLost(peer, nowTicks: now), at: member)
        case .ringLinkLost(let at, let peer, let viewID):
            guard let member = member(at), member.status == .alive, member.instance.view?.id == viewID else { return }
            trace("\(at) lost its ring link to \(peer)")
            apply(member.instance.onRingLinkLost(peer, nowTicks: now), at: member)
        case .heal(let id):
            trace("\(id) partition heals")
            member(id)?.partitioned = false
        case .rejoin(let id):
            join(Membership.MemberID(node: id.node, incarnation: id.incarnation + 1))
            counts.rejoins += 1
        }
    }

    /// A random member that is in the group: alive, reachable, installed.
    private mutating func randomInstalled() -> MembershipSimMember? {
        prng.pick(members.filter { $0.isCorrect && $0.instance.view != nil && $0.instance.state != .joining })
    }

    private mutating func broadcast() {
        guard let member = randomInstalled(), member.waiting.count < MembershipSimMember.waitingMax else { return }
        let app = MembershipAppID(origin: member.id, counter: member.nextCounter)
        member.nextCounter += 1
        member.broadcasts.append(app)
        broadcastApps.insert(app)
        member.waiting.append(app)
        event(1, UInt64(member.id.node), UInt64(app.counter))
        trace("\(member.id) broadcasts \(app)")
        drainWaiting(member)
    }

    private mutating func inject(_ fault: MembershipScenario.Fault) {
        switch fault {
        case .crash(let coordinator, let linkLost, let midSend):
            let changing = members.filter { $0.isCorrect && $0.instance.state == .changing }
            guard let victim = coordinator ? (changing.min { $0.id < $1.id } ?? randomInstalled()) : randomInstalled()
            else { return }
            if midSend {
                victim.sendsBeforeCrash = prng.int(0...4)
                trace("\(victim.id) will crash after \(victim.sendsBeforeCrash!) more sends")
            } else {
                crash(victim, linkLost: linkLost)
            }
        case .partition(let duration):
            guard let victim = randomInstalled() else { return }
            victim.partitioned = true
            counts.partitions += 1
            trace("\(victim.id) partitioned for \(duration) ticks")
            schedule(.heal(victim.id), at: now + duration)
        case .leave:
            guard let leaver = randomInstalled(), let view = leaver.instance.view, view.members.count > 1 else { return }
            counts.leaves += 1
            trace("\(leaver.id) leaves")
            apply(leaver.instance.leave(nowTicks: now), at: leaver)
        case .join:
            join(Membership.MemberID(node: nextNode))
            nextNode += 1
        }
    }

    /// Crashes `victim`, unless (quorum mode) that would leave the newest view without a live majority:
    /// that stops the group for good (correctly), and false exclusions may have shrunk the view below the
    /// scenario's budget. Returns whether it crashed.
    @discardableResult
    mutating func crash(_ victim: MembershipSimMember, linkLost: Bool) -> Bool {
        guard victim.status == .alive else { return false }
        victim.sendsBeforeCrash = nil
        if scenario.mode == .quorum && !latestViewHasLiveMajority(losing: victim.id) {
            trace("\(victim.id) does not crash: the newest view would lose its live majority")
            return false
        }
        victim.status = .crashed
        victim.core = nil
        counts.crashes += 1
        event(5, UInt64(victim.id.node), 0)
        trace("\(victim.id) crashes")
        guard linkLost, let view = victim.coreView ?? victim.instance.view, let position = view.position(of: victim.id),
              view.members.count > 1 else { return true }
        // A killed process's TCP connections break (§2.2.1): its ring neighbours notice.
        let count = view.members.count
        for neighbour in Set([view.members[(position + 1) % count], view.members[(position + count - 1) % count]]).sorted() {
            schedule(.linkLost(at: neighbour, peer: victim.id, viewID: view.id), at: now + prng.ticks(1...2))
        }
        return true
    }

    private mutating func join(_ id: Membership.MemberID) {
        let contacts = members.filter { $0.status == .alive && $0.instance.view != nil }.map(\.id)
        guard !contacts.isEmpty, member(id) == nil else { return }
        let instance = try! Membership.Instance(settings: settings(id), joiningVia: contacts, nowTicks: now)
        add(MembershipSimMember(id: id, instance: instance, founder: false))
        counts.joins += 1
        trace("\(id) joins via \(contacts)")
    }

    // MARK: digest and trace

    mutating func event(_ kind: UInt64, _ a: UInt64, _ b: UInt64) {
        for value in [kind, now, a, b] {
            var word = value
            for _ in 0..<8 {
                digest = (digest ^ (word & 0xFF)) &* 0x100_0000_01B3
                word >>= 8
            }
        }
    }

    func trace(_ line: @autoclosure () -> String) {
        if tracing { print("\(now) \(line())") }
    }

    mutating func violation(_ property: MembershipSimulation.Property, _ detail: String) {
        violations.append(.init(property: property, detail: detail))
        trace("VIOLATION \(property.rawValue): \(detail)")
    }

    static func describe(_ message: Membership.Message) -> String {
        switch message {
        case .heartbeat(let id): return "heartbeat(v\(id))"
        case .join(let id): return "join(\(id))"
        case .leave(let id): return "leave(\(id))"
        case .change(let id, let suspects): return "change(v\(id), suspects \(suspects))"
        case .prepare(let id, let ballot): return "prepare(v\(id), \(ballot))"
        case .promise(let id, let ballot, let received, let accepted):
            return "promise(v\(id), \(ballot), received \(received)\(accepted.map { ", accepted \($0.ballot)" } ?? ""))"
        case .fill(let id, let ballot, let target, let plan):
            return "fill(v\(id), \(ballot), target \(target), plan \(plan.map { "\($0.supplier)->\($0.receiver) o\($0.origin) \($0.seqs)" }))"
        case .filled(let id, let ballot): return "filled(v\(id), \(ballot))"
        case .accept(let id, let ballot, let value): return "accept(v\(id), \(ballot), \(value.newView))"
        case .accepted(let id, let ballot): return "accepted(v\(id), \(ballot))"
        case .decide(let id, let value): return "decide(v\(id), \(value.newView), target \(value.target))"
        }
    }
}
