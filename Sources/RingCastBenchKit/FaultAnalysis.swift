import Foundation

/// A fault as it happened: what was scheduled and when it took effect on the benchmark's clock.
public struct InjectedFault: Sendable, Equatable {
    public var fault: Fault
    /// CLOCK_REALTIME ns (the clock of the nodes' `views` and `timeline`) taken just before the kill(2) or
    /// SIGSTOP, just after `tools/lan cut` returned (the cut has happened by then), or just before the joiner
    /// was spawned.
    public var unixNanos: Int64
    /// How much later than scheduled it took effect (the run loop polls, and a cut runs a tool).
    public var lateMillis: Double

    public init(fault: Fault, unixNanos: Int64, lateMillis: Double = 0) {
        self.fault = fault
        self.unixNanos = unixNanos
        self.lateMillis = lateMillis
    }
}

/// One view change as the survivors saw it (the `view_changes` entries of ARCHITECTURE §3.2).
public struct ViewChange: Sendable, Equatable {
    public var viewID: Int
    public var members: [Int]
    /// Every cause any survivor gave, in the order first seen.
    public var causes: [String]
    /// Median over the survivors that installed it of installed − change started.
    public var detectToViewMillis: Double?
    /// The median installation time over survivors − the time the attributed fault took effect.
    public var faultToViewMillis: Double?
    /// The fault this change answers; nil for a change no injected fault explains (a false suspicion).
    public var fault: Fault?
    /// "cause" when a cause names the faulted node, "time" when only the most recent earlier fault fits.
    public var attribution: String?
    /// The change started before the measurement ended. Later ones are mostly nodes leaving as they finish
    /// their cool-down at different times, which is no fault's doing.
    public var duringMeasurement: Bool
    /// Survivors that installed the view, and how far apart their installations were.
    public var installedBy: [Int]
    public var installSpreadMillis: Double

    /// `cause` of the contract: the causes joined, e.g. "link_lost 2" or "silent 1, silent 3".
    public var cause: String { causes.joined(separator: ", ") }
}

/// Merges the survivors' `views` and checks that they agree (same view id, same members).
public enum ViewChanges {
    /// A change whose causes name no faulted node is attributed to the most recent fault only if it started
    /// within this long after it (a suspicion the fault's disturbance caused), and during the measurement.
    public static let attributionByTimeNanos: Int64 = 2_000_000_000

    public struct Merged: Sendable, Equatable {
        public var changes: [ViewChange]
        /// Disagreements and missing views: any makes `views_agreed` false.
        public var problems: [String]
        /// Liveness hints that are not disagreements (a killed node still in the last view, a joiner that never
        /// appeared in one).
        public var notes: [String]
        public var agreed: Bool { problems.isEmpty }
    }

    /// - Parameters:
    ///   - survivors: outputs of the nodes neither killed, partitioned nor excluded.
    ///   - faults: the faults that took effect; attribution and fault→view use them.
    ///   - requireViews: whether a survivor without `views` is a problem (it is when faults were injected).
    ///   - measurementEndUnixNanos: when the measurement ended; nil if unknown (every change counts as during it).
    public static func merge(survivors: [NodeOutput], faults: [InjectedFault], requireViews: Bool,
                             measurementEndUnixNanos: Int64? = nil) -> Merged {
        struct Seen {
            var members: [Int]
            var firstNode: Int
            var causes: [String] = []
            var detectMillis: [Double] = []
            var installs: [(node: Int, unixNanos: Int64)] = []
            var changeStarts: [Int64] = []
            var initialEverywhere = true
        }
        var seen: [Int: Seen] = [:]
        var problems: [String] = []
        var notes: [String] = []
        for node in survivors.sorted(by: { $0.id < $1.id }) {
            guard let views = node.views else {
                if requireViews { problems.append("node \(node.id) reported no 'views'") }
                continue
            }
            for (previous, next) in zip(views, views.dropFirst()) where next.viewID <= previous.viewID {
                problems.append("node \(node.id) installed view \(next.viewID) after view \(previous.viewID)")
            }
            for view in views {
                let members = view.members.sorted()
                var entry = seen[view.viewID] ?? Seen(members: members, firstNode: node.id)
                if entry.members != members {
                    problems.append("view \(view.viewID): node \(entry.firstNode) has members \(entry.members), node \(node.id) has \(members)")
                }
                for cause in view.causes where !entry.causes.contains(cause) { entry.causes.append(cause) }
                entry.initialEverywhere = entry.initialEverywhere && view.isInitial
                if !view.isInitial {
                    entry.detectMillis.append(Double(view.installedUnixNanos - view.changeStartedUnixNanos) / 1e6)
                    entry.changeStarts.append(view.changeStartedUnixNanos)
                }
                entry.installs.append((node.id, view.installedUnixNanos))
                seen[view.viewID] = entry
            }
        }
        var changes: [ViewChange] = []
        for (viewID, entry) in seen.sorted(by: { $0.key < $1.key }) where !entry.initialEverywhere {
            // Offsets from the first installation: unix nanoseconds (~1.7e18) lose precision as Doubles.
            let base = entry.installs[0].unixNanos
            let offsets = entry.installs.map { Double($0.unixNanos - base) }
            let installedOffset = median(offsets)!
            let installed = base + Int64(installedOffset.rounded())
            let started = entry.changeStarts.min() ?? installed
            let during = measurementEndUnixNanos.map { started <= $0 } ?? true
            let (fault, attribution) = attribute(causes: entry.causes, startedUnixNanos: started, installedUnixNanos: installed,
                                                 duringMeasurement: during, faults: faults)
            changes.append(ViewChange(
                viewID: viewID, members: entry.members, causes: entry.causes,
                detectToViewMillis: median(entry.detectMillis),
                faultToViewMillis: fault.map { (Double(base - $0.unixNanos) + installedOffset) / 1e6 },
                fault: fault?.fault, attribution: attribution, duringMeasurement: during, installedBy: entry.installs.map(\.node),
                installSpreadMillis: ((offsets.max() ?? 0) - (offsets.min() ?? 0)) / 1e6))
        }
        if let last = seen.max(by: { $0.key < $1.key }) {
            for injected in faults {
                let id = injected.fault.nodeID
                switch injected.fault.kind {
                case .kill, .partition:
                    if last.value.members.contains(id) {
                        notes.append("node \(id) (\(injected.fault)) is still a member of the survivors' last view \(last.key)")
                    }
                case .join:
                    if !seen.values.contains(where: { $0.members.contains(id) }) {
                        notes.append("node \(id) (\(injected.fault)) never appeared in a survivor's view")
                    }
                }
            }
        }
        return Merged(changes: changes, problems: problems, notes: notes)
    }

    /// The fault a change answers: the earliest fault on a node its causes name ("link_lost 2" names 2) that took
    /// effect before the change was installed; failing that, for a change during the measurement, the most recent
    /// fault at most ``attributionByTimeNanos`` before the change started.
    static func attribute(causes: [String], startedUnixNanos: Int64, installedUnixNanos: Int64, duringMeasurement: Bool,
                          faults: [InjectedFault]) -> (InjectedFault?, String?) {
        let named = Set(causes.compactMap { $0.split(separator: " ").last.flatMap { Int($0) } })
        if let byCause = faults.filter({ named.contains($0.fault.nodeID) && $0.unixNanos <= installedUnixNanos })
            .min(by: { $0.unixNanos < $1.unixNanos }) {
            return (byCause, "cause")
        }
        if duringMeasurement, let byTime = faults.filter({ $0.unixNanos <= startedUnixNanos }).max(by: { $0.unixNanos < $1.unixNanos }),
           startedUnixNanos - byTime.unixNanos <= attributionByTimeNanos {
            return (byTime, "time")
        }
        return (nil, nil)
    }

    /// The median (mean of the two middle values for an even count); nil when empty.
    public static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
}

/// `recovery_ms`: how long the survivors' delivery throughput takes to come back after a fault.
///
/// The survivors' timelines are summed on one grid; the baseline is their mean rate over the second before the
/// first fault. Throughput at time t is the mean over the trailing ``windowMillis`` [t − 500 ms, t), the way a
/// rate is read off a moving average. Throughput is back at the first 50 ms boundary t, not before the last
/// fault, from which it stays at ≥ 95 % of the baseline for ``holdMillis`` (every boundary in [t, t + 1 s]).
///
/// Why this shape, from runs on the emulated LAN: single 50 ms buckets swing between a fifth and 1.5 times the
/// mean in steady state (batched delivery), and a view change first flushes the old view's backlog in a burst
/// and may then stall again while the ring reconnects. A window that looks ahead, or one without the hold,
/// takes the flush for a recovery while the group is still stalled. The trailing window is conservative: it
/// reports recovery up to one window after the instant deliveries resumed (less when they resume faster
/// than before, as after a crash, where each survivor's share of the ring grows).
public enum Recovery {
    public static let thresholdFraction = 0.95
    public static let baselineNanos: Int64 = 1_000_000_000
    public static let windowMillis = 500
    public static let holdMillis = 1000

    public struct Result: Sendable, Equatable {
        public enum Status: String, Sendable {
            case recovered
            case notRecovered = "not recovered"
            case noFaults = "no faults"
            case unknown
        }

        public var status: Status
        public var millis: Double?
        public var baselineMbitPerSecond: Double?
        /// Why it is unknown or not recovered, or how it recovered, in words.
        public var detail: String

        public static let noFaults = Result(status: .noFaults, millis: nil, baselineMbitPerSecond: nil, detail: "no faults injected")
    }

    /// Timelines summed on the grid of the earliest one; bytes of a bucket that straddles two grid buckets are
    /// split between them in proportion (delivery assumed even within a bucket).
    public struct Series: Sendable, Equatable {
        public var originUnixNanos: Int64
        public var bucketNanos: Int64
        public var bytes: [Double]

        public var endUnixNanos: Int64 { originUnixNanos + bucketNanos * Int64(bytes.count) }

        /// Bytes delivered in [from, to), clipped to the series.
        public func bytes(from: Int64, to: Int64) -> Double {
            let low = max(from, originUnixNanos), high = min(to, endUnixNanos)
            guard high > low else { return 0 }
            var total = 0.0
            let first = Int((low - originUnixNanos) / bucketNanos)
            let last = Int((high - 1 - originUnixNanos) / bucketNanos)
            for index in first...last {
                let start = originUnixNanos + Int64(index) * bucketNanos
                let overlap = min(high, start + bucketNanos) - max(low, start)
                total += bytes[index] * Double(overlap) / Double(bucketNanos)
            }
            return total
        }

        /// Mbit/s over [from, to).
        public func mbitPerSecond(from: Int64, to: Int64) -> Double {
            to > from ? bytes(from: from, to: to) * 8 / (Double(to - from) / 1e9) / 1e6 : 0
        }
    }

    /// Sums timelines; nil without any, or when their bucket widths differ (no common grid).
    public static func sum(_ timelines: [NodeOutput.Timeline]) -> Series? {
        guard let origin = timelines.map(\.startUnixNanos).min(), let width = timelines.first?.bucketMillis,
              timelines.allSatisfy({ $0.bucketMillis == width }) else { return nil }
        let bucket = Int64(width) * 1_000_000
        var bytes: [Double] = []
        for timeline in timelines {
            let offset = timeline.startUnixNanos - origin
            for (index, count) in timeline.deliveredBytes.enumerated() where count > 0 {
                let start = offset + Int64(index) * bucket
                let slot = Int(start / bucket)
                let into = start % bucket
                let needed = slot + (into == 0 ? 1 : 2)
                if bytes.count < needed { bytes += Array(repeating: 0, count: needed - bytes.count) }
                let share = Double(bucket - into) / Double(bucket)
                bytes[slot] += Double(count) * share
                if into != 0 { bytes[slot + 1] += Double(count) * (1 - share) }
            }
            let end = Int((offset + Int64(timeline.deliveredBytes.count) * bucket + bucket - 1) / bucket)
            if bytes.count < end { bytes += Array(repeating: 0, count: end - bytes.count) }
        }
        return Series(originUnixNanos: origin, bucketNanos: bucket, bytes: bytes)
    }

    /// Recovery after the faults that took effect at `firstFaultUnixNanos` … `lastFaultUnixNanos`, searched until
    /// `measurementEndUnixNanos` (a recovery must be held within the measurement: senders stop after it).
    public static func compute(series: Series, firstFaultUnixNanos: Int64, lastFaultUnixNanos: Int64,
                               measurementEndUnixNanos: Int64) -> Result {
        precondition(lastFaultUnixNanos >= firstFaultUnixNanos, "faults out of order")
        func unknown(_ why: String) -> Result { Result(status: .unknown, millis: nil, baselineMbitPerSecond: nil, detail: why) }
        let baselineStart = max(firstFaultUnixNanos - baselineNanos, series.originUnixNanos)
        guard firstFaultUnixNanos - baselineStart >= baselineNanos / 2 else {
            return unknown("less than 0.5 s of timeline before the fault to take a baseline from")
        }
        let baseline = series.mbitPerSecond(from: baselineStart, to: firstFaultUnixNanos)
        guard baseline > 0 else { return unknown("nothing was delivered in the second before the fault") }
        let threshold = thresholdFraction * baseline
        let end = min(measurementEndUnixNanos, series.endUnixNanos)
        let bucket = series.bucketNanos
        let window = Int64(windowMillis) * 1_000_000
        let hold = Int64(holdMillis) * 1_000_000
        func boundary(_ index: Int) -> Int64 { series.originUnixNanos + Int64(index) * bucket }
        func good(_ index: Int) -> Bool { series.mbitPerSecond(from: boundary(index) - window, to: boundary(index)) >= threshold }
        func ceilingIndex(_ unixNanos: Int64) -> Int { Int((unixNanos - series.originUnixNanos + bucket - 1) / bucket) }
        let earliestStart = ceilingIndex(lastFaultUnixNanos)
        let holdBuckets = Int(hold / bucket)
        // One scan from the first fault: `run` counts consecutive good boundaries from `earliestStart` on; the
        // recovery is the start of the first run that spans the hold.
        var run = 0
        var everBad = false
        var index = ceilingIndex(firstFaultUnixNanos)
        while boundary(index) <= end {
            if !good(index) {
                everBad = true
                run = 0
            } else if index >= earliestStart {
                run += 1
                if run > holdBuckets {
                    let start = index - holdBuckets
                    return Result(status: .recovered,
                                  millis: everBad ? Double(boundary(start) - firstFaultUnixNanos) / 1e6 : 0,
                                  baselineMbitPerSecond: baseline,
                                  detail: everBad ? "trailing \(windowMillis) ms mean back to ≥ 95 % and held for \(holdMillis) ms"
                                                  : "the trailing \(windowMillis) ms mean never fell below 95 %")
                }
            }
            index += 1
        }
        // The measurement ended during a good run that is too short to count as held.
        if run > 0 {
            let heldMillis = (run - 1) * Int(bucket / 1_000_000)
            if !everBad {
                return Result(status: .recovered, millis: 0, baselineMbitPerSecond: baseline,
                              detail: "the trailing \(windowMillis) ms mean never fell below 95 % (seen for \(heldMillis) ms only)")
            }
            let back = Double(boundary(index - run) - firstFaultUnixNanos) / 1e6
            return Result(status: .unknown, millis: nil, baselineMbitPerSecond: baseline,
                          detail: "back \(Int(back)) ms after the fault, but the measurement ended \(heldMillis) ms later, before it held for \(holdMillis) ms (lengthen --duration)")
        }
        return Result(status: .notRecovered, millis: nil, baselineMbitPerSecond: baseline,
                      detail: "the trailing \(windowMillis) ms mean did not stay at ≥ 95 % of the baseline for \(holdMillis) ms before the measurement ended")
    }
}
