#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
internal import CRingCast
internal import RingCastLCR
import RingCastMembership

/// The simulator's shell: what the RingCast engine does with the membership core's directives, and
/// the duties of rc_lcr.h for every running ring.
extension MembershipSimWorld {
    mutating func apply(_ directives: [Membership.Directive], at member: MembershipSimMember) {
        for directive in directives {
            guard member.status == .alive else { return }
            switch directive {
            case .send(let message, let to):
                if let left = member.sendsBeforeCrash {
                    // A crash in the middle of a step: the sends after this point never happen.
                    if left == 0 {
                        if crash(member, linkLost: prng.chance(50)) { return }
                    } else {
                        member.sendsBeforeCrash = left - 1
                    }
                }
                sendControl(message, from: member, to: to)
            case .freeze: freeze(member)
            case .supply(let origin, let seqs, let to): supply(origin: origin, seqs: seqs, to: to, from: member)
            case .install(let installation): install(installation, at: member)
            case .excluded(let view): stop(member, .excluded, "excluded by \(view)")
            case .left: stop(member, .left, "left")
            case .suspect(let suspect, let cause): trace("\(member.id) suspects \(suspect): \(cause)")
            }
        }
    }

    private mutating func sendControl(_ message: Membership.Message, from member: MembershipSimMember, to: Membership.MemberID) {
        counts.control += 1
        guard !member.partitioned else { return }
        var delay = prng.ticks(1...scenario.controlDelayMaxTicks)
        if now <= MembershipScenario.faultWindowTicks && scenario.spikePercent > 0 && prng.chance(scenario.spikePercent) {
            delay += prng.ticks(scenario.spikeTicks)
        }
        network.send(.control(message.encoded()), from: member.id, to: to, due: now + delay)
    }

    private mutating func stop(_ member: MembershipSimMember, _ status: MembershipSimMember.Status, _ why: String) {
        member.status = status
        member.core = nil
        member.recovery = nil
        event(6, UInt64(member.id.node), status == .left ? 1 : 0)
        trace("\(member.id) \(why)")
        if status == .excluded && scenario.rejoin && counts.rejoins + pendingRejoins < Self.rejoinsMax {
            schedule(.rejoin(member.id), at: now + prng.ticks(5...30))
        }
    }

    private var pendingRejoins: Int {
        scheduled.filter { if case .rejoin = $0.action { return true } else { return false } }.count
    }

    // MARK: Fig. 2.7's data side

    /// `.freeze`: stop the ring, keep the clock and the pending list as the recovery set, and hand the
    /// broadcasts that never left the core back to the waiting list (they go into the next view).
    private mutating func freeze(_ member: MembershipSimMember) {
        guard let core = member.core, let view = member.coreView else {
            return violation(.protocol, "\(member.id) was told to freeze without a running ring")
        }
        var ownPending = 0
        var pending: [Membership.Recovery<[MembershipAppID]>.Entry] = []
        for entry in core.pending() {
            guard let batch = batchOf[BatchKey(viewID: view.id, origin: entry.origin, seq: entry.seq)] else {
                return violation(.protocol, "\(member.id) holds an LCR message nobody sent")
            }
            if entry.own { ownPending += Int(entry.count) }
            pending.append(.init(origin: entry.origin, seq: entry.seq, clock: entry.clock, payload: batches[batch]))
        }
        let recovery = Membership.Recovery(nodes: view.members.count, frozen: core.clock, pending: pending)
        let unsent = core.sendQueueCount - ownPending
        precondition(unsent >= 0 && unsent <= member.ownApps.count, "the send queue holds own messages only")
        member.waiting = Array(member.ownApps.suffix(unsent)) + member.waiting
        member.core = nil
        member.ownApps = []
        member.recovery = recovery
        member.recoveryView = view
        event(7, UInt64(member.id.node), recovery.received.reduce(0, +))
        trace("\(member.id) freezes v\(view.id) at \(recovery.received), \(recovery.count) entries")
        // The shell retires a frozen ring: its TCP links close, and the ring neighbours see that close at about
        // the time this member's `change` messages reach them, before or after (GroupShell.freeze, retire).
        if view.members.count > 1, let position = view.position(of: member.id) {
            let count = view.members.count
            for neighbour in Set([view.members[(position + 1) % count], view.members[(position + count - 1) % count]]).sorted()
            where neighbour != member.id {
                schedule(.ringLinkLost(at: neighbour, peer: member.id, viewID: view.id), at: now + prng.ticks(0...3))
            }
        }
        apply(member.instance.onFrozen(received: recovery.received, nowTicks: now), at: member)
    }

    private mutating func supply(origin: UInt32, seqs: ClosedRange<UInt64>, to: Membership.MemberID,
                                 from member: MembershipSimMember) {
        guard let recovery = member.recovery, let view = member.recoveryView else {
            return violation(.protocol, "\(member.id) asked to supply without a recovery set")
        }
        let entries = recovery.entries(origin: origin, seqs: seqs)
        if entries.count != seqs.count {
            // The plan names the supplier as holding these: nobody delivered them (§2.4.2).
            violation(.protocol, "\(member.id) supplies \(entries.count) of origin \(origin) \(seqs), holds \(recovery.received)")
        }
        trace("\(member.id) supplies \(to) origin \(origin) \(seqs)")
        guard !member.partitioned else { return }
        network.send(.data(viewID: view.id, entries: entries), from: member.id, to: to,
                     due: now + prng.ticks(1...scenario.controlDelayMaxTicks))
    }

    mutating func receiveData(_ entries: [Membership.Recovery<[MembershipAppID]>.Entry], viewID: UInt64,
                              at member: MembershipSimMember) {
        guard member.recoveryView?.id == viewID, var recovery = member.recovery else { return }
        member.recovery = nil
        for entry in entries { recovery.add(entry) }
        member.recovery = recovery
        event(8, UInt64(member.id.node), recovery.received.reduce(0, +))
        apply(member.instance.onRecoveryReceived(received: recovery.received, nowTicks: now), at: member)
    }

    /// `.install`: force-deliver up to the target in ≺ order (Fig. 2.7 line 6), then a fresh core.
    private mutating func install(_ installation: Membership.Installation, at member: MembershipSimMember) {
        if let previous = installation.previousView {
            guard let recovery = member.recovery, member.recoveryView == previous else {
                return violation(.protocol, "\(member.id) installs \(installation.view) without the data of \(previous)")
            }
            resend(beyond: installation.target, of: previous, from: recovery, at: member)
            if plantedBug != .skipForceDelivery {
                for entry in recovery.forceDeliveryOrder(target: installation.target) {
                    for app in entry.payload { deliver(app, viewID: previous.id, at: member) }
                }
            }
        }
        member.recovery = nil
        member.recoveryView = nil
        member.views.append(installation.view)
        event(9, UInt64(member.id.node), installation.view.id)
        trace("\(member.id) installs \(installation.view) target \(installation.target) causes \(installation.causes)")
        startCore(member, view: installation.view)
    }

    /// Own messages sent in the view left but above the target: `commonPrefix` drops them from that view,
    /// so they go first into the new one (before those that never left the old core), in order. Under
    /// `union` the target covers every promiser's clock, so there are none.
    private mutating func resend(beyond target: [UInt64], of previous: Membership.View,
                                 from recovery: Membership.Recovery<[MembershipAppID]>, at member: MembershipSimMember) {
        guard let position = previous.position(of: member.id), member.ownSentSeq > target[position] else { return }
        if scenario.recovery == .union {
            return violation(.validity, "\(member.id) sent \(member.ownSentSeq) LCR messages in v\(previous.id), target keeps \(target[position])")
        }
        let seqs = (target[position] + 1)...member.ownSentSeq
        let entries = recovery.entries(origin: UInt32(position), seqs: seqs)
        guard entries.count == seqs.count else {
            return violation(.protocol, "\(member.id) holds \(entries.count) of its own messages \(seqs) of v\(previous.id)")
        }
        member.waiting = entries.flatMap(\.payload) + member.waiting
        trace("\(member.id) sends its \(seqs) of v\(previous.id) again")
    }

    // MARK: rings

    mutating func startCore(_ member: MembershipSimMember, view: Membership.View) {
        guard let position = view.position(of: member.id) else { preconditionFailure("installed a view without us") }
        member.core = MembershipSimCore(nodes: view.members.count, position: position,
                                        sendQueueMax: scenario.sendQueueMax, forwardExtra: scenario.forwardExtra,
                                        batchCountMax: scenario.batchCountMax, fairness: scenario.fairness)
        member.coreView = view
        member.ownApps = []
        member.ownSentSeq = 0
        drainWaiting(member)
    }

    /// Offers waiting broadcasts to the core while its window has room.
    mutating func drainWaiting(_ member: MembershipSimMember) {
        guard let core = member.core else { return }
        while let app = member.waiting.first {
            guard core.broadcast(ref: UInt64(member.ownApps.count)) == 0 else { return }
            member.ownApps.append(app)
            member.waiting.removeFirst()
        }
    }

    private mutating func deliver(_ app: MembershipAppID, viewID: UInt64, at member: MembershipSimMember) {
        member.log.append(.init(viewID: viewID, app: app))
        event(4, UInt64(member.id.node), UInt64(app.origin.node) << 32 | UInt64(app.counter))
    }

    /// rc_lcr.h duties for one member: take what the predecessor sent, deliver, refill the window, and
    /// send while the link to the successor has room.
    mutating func pump(_ member: MembershipSimMember) {
        guard let view = member.coreView, let position = view.position(of: member.id) else { return }
        let count = view.members.count
        let predecessor = view.members[(position + count - 1) % count], successor = view.members[(position + 1) % count]
        var moved = true
        var rounds = 0
        while moved && rounds < 8 && member.core != nil {
            rounds += 1
            moved = count > 1 && receiveFrame(from: predecessor, at: member, view: view)
            if sendFrame(from: member, to: successor, view: view) { moved = true }
            pullDeliveries(member, view: view)
            drainWaiting(member)
        }
    }

    private mutating func receiveFrame(from predecessor: Membership.MemberID, at member: MembershipSimMember,
                                       view: Membership.View) -> Bool {
        let ring = Ring(from: predecessor, to: member.id)
        guard let core = member.core, let frame = links[ring]?.first, frame.due <= now else { return false }
        if frame.viewID > view.id { return false }  // the predecessor is ahead: wait for our install
        if frame.viewID < view.id || isCut(predecessor, member.id, viewID: view.id) {
            links[ring]!.removeFirst()
            return true
        }
        let result = core.receive(frame)
        if result == -EAGAIN { return false }
        links[ring]!.removeFirst()
        if result != 0 { violation(.protocol, "\(member.id) refused a frame of \(predecessor) in v\(view.id): \(result)") }
        return true
    }

    /// A partition cuts the ring links of its member for good in that view, as it kills a TCP
    /// connection: after a while both ends see the link lost (§2.2.1), which starts a view change.
    private mutating func isCut(_ from: Membership.MemberID, _ to: Membership.MemberID, viewID: UInt64) -> Bool {
        let link = Link(from: from, to: to, viewID: viewID)
        if member(from)?.partitioned == true || member(to)?.partitioned == true, broken.insert(link).inserted {
            trace("ring link \(from) -> \(to) of v\(viewID) cut")
            let noticed = now + MembershipScenario.suspectTimeoutTicks
            schedule(.ringLinkLost(at: from, peer: to, viewID: viewID), at: noticed)
            schedule(.ringLinkLost(at: to, peer: from, viewID: viewID), at: noticed)
        }
        return broken.contains(link)
    }

    private mutating func sendFrame(from member: MembershipSimMember, to successor: Membership.MemberID,
                                    view: Membership.View) -> Bool {
        let ring = Ring(from: member.id, to: successor)
        guard let core = member.core, (links[ring]?.count ?? 0) < scenario.linkCapacityFrames || view.members.count == 1,
              let out = core.nextFrame() else { return false }
        var batch = Int(out.message?.ref ?? 0)
        if let message = out.message, message.own {
            // rc_lcr.h: an own message names its batch by send-queue index; the ring carries our handle.
            let apps = Array(member.ownApps[Int(message.ref)..<(Int(message.ref) + Int(message.count))])
            batch = batches.count
            batches.append(apps)
            batchOf[BatchKey(viewID: view.id, origin: message.origin, seq: message.seq)] = batch
            member.ownSentSeq = message.seq
        }
        guard !isCut(member.id, successor, viewID: view.id) else { return true }
        let frame = MembershipSimFrame(viewID: view.id, due: now + prng.ticks(1...scenario.frameDelayMaxTicks),
                                       message: out.message, batch: batch, acks: out.acks)
        links[ring, default: []].append(frame)
        return true
    }

    private mutating func pullDeliveries(_ member: MembershipSimMember, view: Membership.View) {
        guard let core = member.core else { return }
        for delivered in core.deliveries() {
            let apps = delivered.own
                ? Array(member.ownApps[Int(delivered.ref)..<(Int(delivered.ref) + Int(delivered.count))])
                : batches[Int(delivered.ref)]
            for app in apps { deliver(app, viewID: view.id, at: member) }
        }
    }
}
