import RingCastMembership

/// The checkers, run after every seed over what every incarnation delivered in which view (thesis
/// §2.4's properties, extended across views, plus view synchrony and primary-partition rules).
extension MembershipSimWorld {
    mutating func check() {
        checkIntegrity()
        checkViewAgreement()
        for viewID in Set(members.flatMap { $0.views.map(\.id) }).sorted() { checkView(viewID) }
        checkOneViewPerMessage()
        checkGapFree()
        checkValidity()
    }

    /// No duplicates; only broadcast messages.
    private mutating func checkIntegrity() {
        for member in members {
            var seen = Set<MembershipAppID>()
            for delivery in member.log {
                if !broadcastApps.contains(delivery.app) {
                    return violation(.integrity, "\(member.id) delivered \(delivery.app), never broadcast")
                }
                if !seen.insert(delivery.app).inserted {
                    return violation(.integrity, "\(member.id) delivered \(delivery.app) twice")
                }
            }
        }
    }

    /// One view per id.
    private mutating func checkViewAgreement() {
        var views: [UInt64: Membership.View] = [:]
        for member in members {
            for view in member.views {
                if let known = views[view.id], known != view {
                    return violation(.viewAgreement, "\(member.id) installed \(view), another member \(known)")
                }
                views[view.id] = view
            }
        }
    }

    /// Within one view: every member's deliveries are a prefix of the longest (total order); members
    /// that went on to the next view delivered the same (view synchrony); a member that went on delivered
    /// everything any member delivered in the view — crashed or left out — (uniform agreement, and in
    /// quorum mode: a minority delivered nothing the majority did not); so did the correct members of a
    /// final view.
    private mutating func checkView(_ viewID: UInt64) {
        var sequences: [(member: MembershipSimMember, apps: [MembershipAppID], survived: Bool)] = []
        for member in members where member.views.contains(where: { $0.id == viewID }) {
            let apps = member.log.filter { $0.viewID == viewID }.map(\.app)
            let survived = member.views.contains { $0.id == viewID + 1 }
            let final = converged && member.isCorrect && member.views.last?.id == viewID
            sequences.append((member, apps, survived || final))
        }
        guard let longest = sequences.max(by: { $0.apps.count < $1.apps.count }) else { return }
        for sequence in sequences where !sequence.apps.elementsEqual(longest.apps.prefix(sequence.apps.count)) {
            return violation(.totalOrder, "v\(viewID): \(sequence.member.id) delivered \(sequence.apps), \(longest.member.id) \(longest.apps)")
        }
        let survivors = sequences.filter(\.survived)
        for survivor in survivors where survivor.apps.count != longest.apps.count {
            let missing = longest.apps.dropFirst(survivor.apps.count).first.map { "\($0)" } ?? "?"
            let property: MembershipSimulation.Property = survivors.allSatisfy({ $0.apps.count == survivor.apps.count })
                ? .uniformAgreement : .viewSynchrony
            return violation(property, "v\(viewID): \(longest.member.id) delivered \(missing), \(survivor.member.id) went on without it")
        }
    }

    /// Every message is delivered in one view only, by everybody.
    private mutating func checkOneViewPerMessage() {
        var viewOf: [MembershipAppID: (UInt64, Membership.MemberID)] = [:]
        for member in members {
            for delivery in member.log {
                if let (viewID, other) = viewOf[delivery.app], viewID != delivery.viewID {
                    return violation(.uniformAgreement, "\(delivery.app): \(other) delivered it in v\(viewID), \(member.id) in v\(delivery.viewID)")
                }
                viewOf[delivery.app] = (delivery.viewID, member.id)
            }
        }
    }

    /// Each origin's messages in broadcast order without gaps: from 1 for a founder, from wherever it
    /// joined for a joiner.
    private mutating func checkGapFree() {
        for member in members {
            var last: [Membership.MemberID: UInt32] = [:]
            for delivery in member.log {
                let app = delivery.app
                let expected = last[app.origin].map { $0 + 1 } ?? (member.founder ? 1 : app.counter)
                if app.counter != expected {
                    return violation(.gapFree, "\(member.id) delivered \(app) after \(app.origin)#\(expected - 1)")
                }
                last[app.origin] = app.counter
            }
        }
    }

    /// A correct member delivered every one of its broadcasts, once the group converged.
    private mutating func checkValidity() {
        guard converged else { return }
        for member in members where member.isCorrect {
            let delivered = Set(member.log.map(\.app))
            if let missing = member.broadcasts.first(where: { !delivered.contains($0) }) {
                return violation(.validity, "correct \(member.id) never delivered its own \(missing)")
            }
        }
    }

    func report() -> MembershipSimulation.SeedReport {
        let correct = members.filter(\.isCorrect)
        let digits = String(digest, radix: 16)
        return MembershipSimulation.SeedReport(
            seed: seed, mode: scenario.mode.rawValue, recovery: scenario.recovery.rawValue, members: scenario.members, broadcasts: broadcastApps.count,
            deliveries: members.reduce(0) { $0 + $1.log.count }, crashes: counts.crashes,
            partitions: counts.partitions, joins: counts.joins - counts.rejoins, leaves: counts.leaves,
            rejoins: counts.rejoins, installs: members.reduce(0) { $0 + $1.views.count - ($1.founder ? 1 : 0) },
            finalViewID: converged ? correct.first?.instance.view?.id ?? 0 : 0, ticks: now,
            controlMessages: counts.control,
            quorumLost: quorumLost, traceDigest: String(repeating: "0", count: 16 - digits.count) + digits,
            violations: violations.count, firstViolation: violations.first, plantedBug: plantedBug)
    }
}
