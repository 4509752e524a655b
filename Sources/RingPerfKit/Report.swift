import RingCastJSON
import Foundation
import Histogram

/// The results of one test, computed from both ends, printed as a table or one JSON object (ARCHITECTURE §3.2).
public struct Report: Sendable {
    let request: TestRequest
    let local: SideResult
    let remote: SideResult
    let latencyMicrosP50: Double?
    let latencyMicrosP99: Double?
    let latencyMicrosMax: Double?
    /// "process" (separate processes) or "thread" (the self-test runs both ends in one process).
    let cpuScope: String

    init(request: TestRequest, local: SideResult, remote: SideResult, latency: Histogram<UInt64>?, cpuScope: String) {
        self.request = request
        self.local = local
        self.remote = remote
        self.cpuScope = cpuScope
        if let latency, latency.totalCount > 0 {
            latencyMicrosP50 = Double(latency.valueAtPercentile(50)) / 1000
            latencyMicrosP99 = Double(latency.valueAtPercentile(99)) / 1000
            latencyMicrosMax = Double(max(latency.max, local.latencyMaxNanos)) / 1000
        } else {
            latencyMicrosP50 = nil
            latencyMicrosP99 = nil
            latencyMicrosMax = request.test == .rr ? Double(local.latencyMaxNanos) / 1000 : nil
        }
    }

    /// The end that receives the measured stream (stream: the server; maerts and rr: the client).
    var receiver: SideResult { request.test == .stream ? remote : local }
    /// The end that sends it.
    var sender: SideResult { request.test == .stream ? local : remote }

    public var measuredSeconds: Double { Double(receiver.measuredNanos) / 1e9 }

    /// Mbit/s (10^6 bits) at the receiver over its measured interval.
    public var throughputMbitPerSecond: Double {
        receiver.measuredNanos == 0 ? 0 : Double(receiver.bytesReceived) * 8 / Double(receiver.measuredNanos) * 1000
    }

    public var transactionsPerSecond: Double {
        local.measuredNanos == 0 ? 0 : Double(local.transactions) / (Double(local.measuredNanos) / 1e9)
    }

    private func cpuNanos(_ side: SideResult) -> UInt64 { cpuScope == "thread" ? side.cpuThreadNanos : side.cpuProcessNanos }

    func cpuPercent(_ side: SideResult) -> Double {
        side.wallNanos == 0 ? 0 : Double(cpuNanos(side)) / Double(side.wallNanos) * 100
    }

    /// CPU-seconds per GB (10^9 bytes) this end moved (sent + received).
    func cpuSecondsPerGigabyte(_ side: SideResult) -> Double {
        let moved = Double(side.bytesSent + side.bytesReceived)
        return moved == 0 ? 0 : (Double(cpuNanos(side)) / 1e9) / (moved / 1e9)
    }

    /// Share of sends the kernel really did without copying, over every end that sent.
    public var zerocopyFraction: Double {
        let ends = request.test == .rr ? [local, remote] : [sender]
        let sends = ends.reduce(0) { $0 + $1.sends }
        let real = ends.reduce(0) { $0 + ($1.zeroCopyNotifications - $1.zeroCopyCopied) }
        return sends == 0 ? 0 : Double(real) / Double(sends)
    }

    static func stateName(_ state: Int32) -> String {
        switch state {
        case 1: "on"
        case 2: "probing"
        default: "off"
        }
    }

    /// Every byte arrived exactly (pattern check) and the counts of both ends agree.
    public var verified: Bool {
        guard local.error == 0, remote.error == 0, local.verifyErrors == 0, remote.verifyErrors == 0 else { return false }
        switch request.test {
        case .stream, .maerts:
            return receiver.bytesReceived > 0 && receiver.bytesReceived == sender.bytesSent
        case .rr:
            let size = UInt64(request.sizeBytes)
            return local.transactions > 0 && local.bytesReceived == local.transactions * size &&
                remote.bytesReceived == local.bytesSent
        }
    }

    /// Why ``verified`` is false, for the error message.
    var verificationProblem: String {
        if local.error != 0 { return "local end: \(RingPerfError.message(local.error))" }
        if remote.error != 0 { return "remote end: \(RingPerfError.message(remote.error))" }
        if local.verifyErrors + remote.verifyErrors > 0 {
            return "\(local.verifyErrors + remote.verifyErrors) chunk(s) differed from the pattern " +
                "(first at stream offset \(max(local.verifyFirstOffset, remote.verifyFirstOffset)))"
        }
        return "byte counts disagree: sent \(sender.bytesSent), received \(receiver.bytesReceived)"
    }

    /// Ordered JSON fields: snake_case, units last.
    var fields: [(String, JSONValue)] {
        var fields: [(String, JSONValue)] = [
            ("test", .string(request.test.rawValue)), ("size_bytes", .integer(Int64(request.sizeBytes))),
            ("duration_s", .number(request.durationSeconds)), ("measured_s", .number(measuredSeconds)),
            ("throughput_mbit_s", .number(throughputMbitPerSecond)),
        ]
        if request.test == .rr {
            fields.append(("transactions_per_s", .number(transactionsPerSecond)))
            fields.append(("latency_us_p50", latencyMicrosP50.map(JSONValue.number) ?? .null))
            fields.append(("latency_us_p99", latencyMicrosP99.map(JSONValue.number) ?? .null))
            fields.append(("latency_us_max", latencyMicrosMax.map(JSONValue.number) ?? .null))
        }
        fields += [
            ("cpu_local_percent", .number(cpuPercent(local))), ("cpu_remote_percent", .number(cpuPercent(remote))),
            ("cpu_local_s_per_gb", .number(cpuSecondsPerGigabyte(local))),
            ("cpu_remote_s_per_gb", .number(cpuSecondsPerGigabyte(remote))), ("cpu_scope", .string(cpuScope)),
            ("zerocopy_mode", .string(request.zerocopy.rawValue)), ("zerocopy_fraction", .number(zerocopyFraction)),
            ("zerocopy_local_state", .string(Self.stateName(local.zerocopyState))),
            ("zerocopy_remote_state", .string(Self.stateName(remote.zerocopyState))),
            ("bytes_sent", .integer(Int64(sender.bytesSent))), ("bytes_received", .integer(Int64(receiver.bytesReceived))),
            ("verified", .bool(verified)), ("verify_errors", .integer(Int64(local.verifyErrors + remote.verifyErrors))),
            ("sends", .integer(Int64(sender.sends))), ("sends_zc", .integer(Int64(sender.sendsZeroCopy))),
            ("zc_copied", .integer(Int64(sender.zeroCopyCopied))),
            ("iovecs_per_send", .number(sender.sends == 0 ? 0 : Double(sender.sendIovecs) / Double(sender.sends))),
            ("recv_bytes_avg", .number(receiver.recvs == 0 ? 0 : Double(receiver.bytesIn) / Double(receiver.recvs))),
            ("ring_taskrun", .string(local.deferTaskrun == 1 ? "defer" : "coop")),
            ("congestion", .string(request.congestion.isEmpty ? "default" : request.congestion)),
        ]
        if request.test == .rr { fields.append(("transactions", .integer(Int64(local.transactions)))) }
        return fields
    }

    /// Exactly one JSON object, one line.
    public var json: String {
        JSONValue.object(fields).text
    }

    /// netperf-like table rows for people.
    public func table(title: String, header: Bool = true) -> String {
        var lines: [String] = []
        let zc = "\(request.zerocopy.rawValue)→\(Self.stateName(sender.zerocopyState))"
        if header {
            lines.append(title)
            lines.append(Self.row(["Test", "Size", "Elapsed", "Throughput", "Trans.", "p50", "p99", "max",
                                   "CPU loc", "CPU rem", "loc", "rem", "Zero-copy", "ZC", "Verified"]))
            lines.append(Self.row(["", "bytes", "s", "Mbit/s", "/s", "µs", "µs", "µs", "%", "%",
                                   "s/GB", "s/GB", "mode", "fraction", ""]))
        }
        func format(_ value: Double?, _ digits: Int = 1) -> String {
            value.map { String(format: "%.\(digits)f", $0) } ?? "-"
        }
        let isRR = request.test == .rr
        lines.append(Self.row([
            request.test.rawValue, "\(request.sizeBytes)", format(measuredSeconds, 2), format(throughputMbitPerSecond),
            isRR ? format(transactionsPerSecond, 0) : "-", format(latencyMicrosP50), format(latencyMicrosP99),
            format(latencyMicrosMax), format(cpuPercent(local)), format(cpuPercent(remote)),
            format(cpuSecondsPerGigabyte(local), 3), format(cpuSecondsPerGigabyte(remote), 3), zc,
            format(zerocopyFraction, 2), verified ? "yes" : "NO",
        ]))
        return lines.joined(separator: "\n")
    }

    private static let widths = [7, 9, 8, 11, 8, 8, 8, 9, 8, 8, 9, 9, 14, 9, 9]

    private static func row(_ cells: [String]) -> String {
        zip(cells, widths).map { cell, width in
            cell.count >= width ? cell + " " : String(repeating: " ", count: width - cell.count) + cell
        }.joined()
    }
}
