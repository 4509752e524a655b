import ArgumentParser

/// `ringcast-sim --membership`: the options it shares with randomized mode, checked and run.
extension SimCommand {
    func validateMembership() throws {
        if random { throw ValidationError("--membership and --random exclude each other") }
        if seed != nil && seeds != nil { throw ValidationError("--seed and --seeds exclude each other") }
        if let seeds, seeds < 1 { throw ValidationError("--seeds must be at least 1, got \(seeds)") }
        if trace && seed == nil { throw ValidationError("--trace needs --seed (one run)") }
        if trace && json { throw ValidationError("--trace and --json exclude each other") }
        if plantBug != .none { throw ValidationError("--plant-bug plants into the LCR core; use --membership-bug") }
        let roundModelOnly = [("--senders", senders != nil), ("--sender-set", senderSet != nil),
                              ("--warmup-rounds", warmupRounds != nil), ("--send-queue-max", sendQueueMax != nil),
                              ("--forward-queue-max", forwardQueueMax != nil), ("--pending-max", pendingMax != nil)]
        for (name, given) in roundModelOnly where given {
            throw ValidationError("\(name) belongs to the round model; --membership draws its own settings per seed")
        }
    }

    /// One seed (`--seed`) or a sweep; passes when nothing is violated (with a planted bug: when it is caught).
    func executeMembership() -> (output: String, passed: Bool) {
        let expectViolations = membershipBug != .none
        if let seed {
            let report = MembershipSimulation.run(seed: seed, plantedBug: membershipBug, trace: trace)
            let text = json ? SimOutput.json(report) : MembershipSimOutput.text(report)
            return (text, (report.violations > 0) == expectViolations)
        }
        let sweep = MembershipSimulation.sweep(firstSeed: firstSeed, count: seeds ?? 100, plantedBug: membershipBug)
        let text = json ? SimOutput.json(sweep) : MembershipSimOutput.text(sweep)
        return (text, (sweep.violations > 0) == expectViolations)
    }
}

/// Readable reports of membership mode.
enum MembershipSimOutput {
    static func text(_ report: MembershipSimulation.SeedReport) -> String {
        let verdict = report.firstViolation.map { "VIOLATED — \($0)" } ?? "pass"
        return """
        ringcast-sim membership seed \(report.seed)\(bugNote(report.plantedBug))
          group           \(report.members) members, \(report.mode) mode
          faults          \(report.crashes) crash(es), \(report.partitions) partition(s), \(report.leaves) leave(s), \(report.joins) join(s), \(report.rejoins) rejoin(s)
          views           \(report.installs) installs, final view \(report.finalViewID)
          traffic         \(report.broadcasts) broadcasts, \(report.deliveries) deliveries, \(report.controlMessages) control messages, \(report.ticks) ticks
          trace digest    \(report.traceDigest)
          checks          \(verdict)
        """
    }

    static func text(_ sweep: MembershipSimulation.SweepReport) -> String {
        let last = sweep.firstSeed &+ UInt64(max(sweep.seedsRun, 1) - 1)
        let modes = sweep.seedsByMode.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        var lines = [
            "ringcast-sim membership seeds \(sweep.firstSeed)...\(last)\(bugNote(sweep.plantedBug))",
            "  seeds run       \(sweep.seedsRun) (\(modes); \(sweep.installs) installs, \(sweep.deliveries) deliveries)",
            "  violations      \(sweep.violations)",
            "  quorum lost     \(sweep.seedsQuorumLost) seed(s) rightly stopped without a live majority (safety still checked)",
        ]
        for (property, count) in sweep.violationsByProperty.sorted(by: { $0.key < $1.key }) {
            lines.append("    \(property): \(count) seed(s)")
        }
        if let failure = sweep.firstFailure {
            lines.append("  first failure   seed \(failure.seed): \(failure.violation)")
            lines.append("  replay          \(failure.replay)")
            lines.append("  failing seeds   \(sweep.failingSeeds.map(String.init).joined(separator: " "))")
        }
        return lines.joined(separator: "\n")
    }

    private static func bugNote(_ bug: MembershipSimulation.PlantedBug) -> String {
        bug == .none ? "" : " [planted bug: \(bug.rawValue)]"
    }
}
