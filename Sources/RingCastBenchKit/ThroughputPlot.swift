import Foundation

/// `ringcast-bench --plot FILE.svg`: delivered throughput of every node over time, from the 50 ms timelines the
/// nodes report, with the optimal line, the warm-up and cool-down shaded, and every injected fault and installed view
/// marked, so that a dip and its recovery are seen at a glance.
public enum ThroughputPlot {
    /// One colour per node id (ids past the palette wrap around).
    static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
    static let faultColor = "#d62728"
    static let viewColor = "#555555"
    /// 50 ms buckets are jagged (a batch lands in one bucket or the next); a centred mean over this many buckets
    /// (250 ms) keeps a 200 ms dip visible and the steady state readable.
    static let smoothingBuckets = 5

    public static func make(_ result: BenchResult) -> SVGPlot {
        let config = result.config
        let origin = result.faults.measurementStartUnixNanos
        let start = -config.warmupSeconds
        let end = config.durationSeconds + config.cooldownSeconds
        var plot = SVGPlot(title: "Delivered throughput per node over time",
                           xLabel: "seconds since the measurement started",
                           yLabel: "delivered throughput (Mbit/s)")
        let senders = config.allSend ? "all \(config.nodeCount) send" : "\(config.senderCount) of \(config.nodeCount) send"
        let faultsText = result.faults.injected.isEmpty ? "no faults"
            : result.faults.injected.map { "\($0.fault)" }.joined(separator: ", ")
        plot.subtitle = "n = \(config.nodeCount), \(senders), \(config.messageSizeBytes)-byte messages, "
            + "\(config.lanRate.map { "emulated LAN \($0)" } ?? "loopback"); \(faultsText)"
        plot.width = 900
        plot.height = 500
        plot.xMin = start
        plot.xMax = end
        plot.bands = [SVGPlot.Band(from: start, to: 0, label: "warm-up"),
                      SVGPlot.Band(from: config.durationSeconds, to: end, label: "cool-down")]
        for node in result.nodes {
            guard let timeline = node.timeline else { continue }
            let points = series(timeline, origin: origin, from: start, to: end)
            guard !points.isEmpty else { continue }
            let role = config.broadcastingIDs.contains(node.id) ? "" : " (receives)"
            plot.series.append(SVGPlot.Series(name: "node \(node.id)\(role)", color: palette[node.id % palette.count],
                                              dots: false, points: points))
        }
        // On loopback the raw link is a memory copy, many times what the ring reaches with every node on the same
        // cores: drawn, the optimal line would squash the curves into the bottom of the plot, so it is only named.
        let peak = plot.series.flatMap { $0.points.map { $0[1] } }.max() ?? 0
        var optimalOffScale: Double?
        if let optimal = result.optimalMbitPerSecond, peak > 0, optimal > 2 * peak {
            optimalOffScale = optimal
        } else if let optimal = result.optimalMbitPerSecond {
            plot.series.append(SVGPlot.Series(name: "optimal (\(String(format: "%.0f", optimal)) Mbit/s)", color: "#333333",
                                              dashed: true, points: [[start, optimal], [end, optimal]]))
        }
        for injected in result.faults.injected {
            let seconds = Double(injected.unixNanos - origin) / 1e9
            let what = switch injected.fault.kind {
            case .kill: "kill -9 node \(injected.fault.nodeID)"
            case .partition: "partition node \(injected.fault.nodeID)"
            case .join: "node \(injected.fault.nodeID) joins"
            }
            plot.markers.append(SVGPlot.Marker(x: seconds, label: what, color: faultColor))
        }
        for (viewID, installed) in installations(result) {
            let members = result.views.changes.first { $0.viewID == viewID }?.members
                ?? result.survivors.compactMap { $0.views?.first { $0.viewID == viewID }?.members }.first ?? []
            plot.markers.append(SVGPlot.Marker(x: Double(installed - origin) / 1e9,
                                               label: "view \(viewID): \(members.map(String.init).joined(separator: " "))",
                                               color: viewColor, dashed: true))
        }
        plot.legend = (result.faults.injected.isEmpty ? [] : [SVGPlot.LegendEntry(name: "fault injected", color: faultColor, style: "line")])
            + (plot.markers.contains { $0.color == viewColor } ? [SVGPlot.LegendEntry(name: "view installed", color: viewColor, style: "dashed")] : [])
        plot.caption = caption(result)
        if let optimalOffScale {
            plot.caption[0] += String(format: " The optimal line (%.0f Mbit/s) is off this scale, not drawn: on loopback the ", optimalOffScale)
                + "raw link is a memory copy, and the nodes share the cores (use --lan RATE for §2.6's setting)."
        }
        let silent = result.faults.killed.filter { id in !result.nodes.contains { $0.id == id } }
        if !silent.isEmpty {
            plot.caption[0] += silent.count == 1 ? " Node \(silent[0]) was killed and reported nothing: it has no line."
                : " Nodes \(silent.map(String.init).joined(separator: ", ")) were killed and reported nothing: they have no line."
        }
        return plot
    }

    /// Mbit/s per bucket, smoothed, as seconds since `origin`, within [from, to].
    static func series(_ timeline: NodeOutput.Timeline, origin: Int64, from: Double, to: Double) -> [[Double]] {
        let bucketSeconds = Double(timeline.bucketMillis) / 1000
        let counts = timeline.deliveredBytes
        let half = smoothingBuckets / 2
        var points: [[Double]] = []
        for index in counts.indices {
            // The bucket's middle, so that the line sits where the bytes arrived.
            let seconds = Double(timeline.startUnixNanos - origin) / 1e9 + (Double(index) + 0.5) * bucketSeconds
            guard seconds >= from && seconds <= to else { continue }
            let window = max(0, index - half)...min(counts.count - 1, index + half)
            let mean = Double(counts[window].reduce(0, +)) / Double(window.count)
            points.append([seconds, mean * 8 / bucketSeconds / 1e6])
        }
        return points
    }

    /// Every view change the survivors installed: view id → the median installation time (CLOCK_REALTIME ns).
    static func installations(_ result: BenchResult) -> [(Int, Int64)] {
        var times: [Int: [Int64]] = [:]
        for node in result.survivors {
            for view in node.views ?? [] where !view.isInitial {
                times[view.viewID, default: []].append(view.installedUnixNanos)
            }
        }
        return times.keys.sorted().map { id in
            let sorted = times[id]!.sorted()
            return (id, sorted[sorted.count / 2])
        }
    }

    static func caption(_ result: BenchResult) -> [String] {
        var lines = ["Each line: one node's delivered payload bytes per 50 ms bucket (ringcast-node's timeline), "
            + "mean over \(smoothingBuckets) buckets. Optimal: the raw link measured by ringperf in the same run × 1, or "
            + "× n/(n−1) when all n send (thesis §2.6.2). Mean over the measurement: "
            + String(format: "%.0f Mbit/s", result.meanThroughputMbitPerSecond)
            + (result.efficiency.map { String(format: ", efficiency %.3f", $0) } ?? "") + "."]
        if !result.faults.injected.isEmpty {
            let recovery = result.recovery.millis.map { String(format: "%.0f ms", $0) } ?? result.recovery.status.rawValue
            let detect = result.views.changes.compactMap(\.detectToViewMillis).map { String(format: "%.0f", $0) }
            lines.append("Recovery (first fault until the survivors' summed throughput is back to 95 % of before): \(recovery); "
                + "detect to view: \(detect.isEmpty ? "-" : detect.joined(separator: ", ") + " ms"). "
                + "Order agreed: \(result.orderAgreed ? "yes" : "NO"); views agreed: \(result.viewsAgreed ? "yes" : "NO").")
        }
        return lines
    }
}
