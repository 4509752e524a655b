import Foundation

/// Renders reports as readable text or as one JSON object (ARCHITECTURE §3.2).
public enum SimOutput {
    /// One JSON object, keys sorted so that equal reports print equal bytes.
    public static func json<Report: Encodable>(_ report: Report) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(report), let text = String(data: data, encoding: .utf8) else {
            preconditionFailure("reports hold only numbers, strings and maps: encoding cannot fail")
        }
        return text
    }

    public static func text(_ report: RoundModel.Report) -> String {
        let shares = report.senderSet.map { sender in
            "p\(sender) \(percent(report.senderShares[String(sender)] ?? 0))"
        }.joined(separator: "  ")
        let verdict = report.firstViolation.map { "VIOLATED — \($0)" } ?? "pass"
        return """
        ringcast-sim round model (§2.2.2): \(report.nodes) nodes, \(report.senders) sender(s) \(report.senderSet), fairness \(report.fairness ? "on" : "off")\(bugNote(report.plantedBug))
          rounds          \(report.rounds): first \(report.warmupRounds) warm-up, \(report.measuredRounds) measured
          queues          send \(report.sendQueueMax), forward \(report.forwardQueueMax), pending \(report.pendingMax), batch \(report.batchCountMax) (one application message per LCR message)
          throughput      \(fixed(report.throughputPerRound)) complete broadcasts per round (\(report.completedBroadcasts) in the measured rounds)
          bound           \(fixed(report.boundPerRound)) (Theorem 2.5.1: \(report.senders == report.nodes ? "n/(n-1), all n send" : "1, fewer than n send"))
          efficiency      \(percent(report.efficiency))
          shares          \(shares)
          max |share-1/K| \(percent(report.shareDeviationMax))
          lone latency    \(report.loneLatencyRounds) rounds (§2.5.3: 2n-2 = \(report.loneLatencyBoundRounds))
          frames          \(report.ackOnlyFrames) carried only ACKs, \(report.framesRefused) refused by backpressure
          safety checks   \(verdict) (integrity, total order, uniformity on the final logs)
        """
    }

    public static func text(_ report: RandomSimulation.SeedReport) -> String {
        let verdict = report.firstViolation.map { "VIOLATED — \($0)" } ?? "pass"
        return """
        ringcast-sim random seed \(report.seed)\(bugNote(report.plantedBug))
          ring            \(report.nodes) nodes, fairness \(report.fairness ? "on" : "off")
          queues          send \(report.sendQueueMax), forward \(report.forwardQueueMax), pending \(report.pendingMax), batch \(report.batchCountMax) messages / \(report.batchBytesMax) bytes
          links           \(report.linkCapacityFrames) frame(s) each, delays up to \(report.linkDelayMaxTicks) ticks, FIFO
          broadcasts      \(report.broadcasts) of \(report.messagesPlanned) planned (\(report.broadcastsRefused) refused by a full send queue, retried)
          deliveries      \(report.deliveries) in \(report.steps) steps (\(report.framesRefused) frames refused by backpressure, held)
          trace digest    \(report.traceDigest)
          checks          \(verdict)
        """
    }

    public static func text(_ sweep: RandomSimulation.SweepReport) -> String {
        let last = sweep.firstSeed &+ UInt64(max(sweep.seedsRun, 1) - 1)
        var lines = [
            "ringcast-sim random seeds \(sweep.firstSeed)...\(last)\(bugNote(sweep.plantedBug))",
            "  seeds run       \(sweep.seedsRun) (\(sweep.deliveries) deliveries in \(sweep.steps) steps)",
            "  violations      \(sweep.violations)",
        ]
        for (property, count) in sweep.violationsByProperty.sorted(by: { $0.key < $1.key }) {
            lines.append("    \(property): \(count) seed(s)")
        }
        if let failure = sweep.firstFailure {
            lines.append("  first failure   seed \(failure.seed): \(failure.violation)")
            lines.append("  replay          \(failure.replay)")
        }
        return lines.joined(separator: "\n")
    }

    private static func bugNote(_ bug: PlantedBug) -> String {
        bug == .none ? "" : " [planted bug: \(bug.rawValue)]"
    }

    private static func fixed(_ value: Double) -> String { String(format: "%.4f", value) }
    private static func percent(_ value: Double) -> String { String(format: "%.2f %%", value * 100) }
}
