import RingCastJSON
import Foundation

/// What one `ringcast-node --json` printed at exit. The window fields (delivered_*, throughput, CPU,
/// fractions, latency) cover the measurement phase; `totalDelivered` and `orderDigest` cover the whole run.
public struct NodeOutput: Sendable, Equatable {
    public var id: Int
    public var deliveredMessages: Int
    public var deliveredBytes: Int
    public var throughputMbitPerSecond: Double
    public var cpuPercent: Double?
    /// Sender id → fraction of this node's deliveries in the window.
    public var senderFractions: [Int: Double]
    public var latencyMicrosP50: Double?
    public var latencyMicrosP99: Double?
    public var latencyMicrosMax: Double?
    /// (value in µs, count) buckets, if the node printed `latency_histogram`.
    public var latencyHistogram: [LatencyBucket]?
    public var totalDelivered: Int?
    public var orderDigest: String?
    /// The views the node installed, in order (`views`); nil if the node printed none.
    public var views: [View]?
    /// The node found itself excluded from the group while alive (quorum mode) and stopped delivering.
    public var excluded: Bool
    /// Bytes delivered per bucket over the whole run (`timeline`); nil if the node printed none.
    public var timeline: Timeline?
    /// Everything the node printed, so that fields beyond the contract reach the report.
    public var raw: JSONValue

    /// One installed view (`views[i]` of the node's JSON). Times are CLOCK_REALTIME ns, like the benchmark's.
    public struct View: Sendable, Equatable {
        public var viewID: Int
        public var members: [Int]
        /// "initial", "link_lost ID", "silent ID", "joined ID", "left ID", "round_timeout ID", …
        public var causes: [String]
        /// When the node started the change (0 for the initial view).
        public var changeStartedUnixNanos: Int64
        public var installedUnixNanos: Int64

        public init(viewID: Int, members: [Int], causes: [String], changeStartedUnixNanos: Int64, installedUnixNanos: Int64) {
            self.viewID = viewID
            self.members = members
            self.causes = causes
            self.changeStartedUnixNanos = changeStartedUnixNanos
            self.installedUnixNanos = installedUnixNanos
        }

        /// The initial view is not a change: it has the cause "initial" (or no start time).
        public var isInitial: Bool { causes.contains("initial") || changeStartedUnixNanos == 0 }
    }

    /// Delivered bytes per `bucketMillis` bucket, the first starting at `startUnixNanos`.
    public struct Timeline: Sendable, Equatable {
        public var bucketMillis: Int
        public var startUnixNanos: Int64
        public var deliveredBytes: [Int64]

        public init(bucketMillis: Int, startUnixNanos: Int64, deliveredBytes: [Int64]) {
            self.bucketMillis = bucketMillis
            self.startUnixNanos = startUnixNanos
            self.deliveredBytes = deliveredBytes
        }
    }

    public struct LatencyBucket: Sendable, Equatable {
        public var valueMicros: Double
        public var count: UInt64
        public init(valueMicros: Double, count: UInt64) {
            self.valueMicros = valueMicros
            self.count = count
        }
    }

    public init(id: Int, deliveredMessages: Int, deliveredBytes: Int, throughputMbitPerSecond: Double,
                cpuPercent: Double? = nil, senderFractions: [Int: Double] = [:], latencyMicrosP50: Double? = nil,
                latencyMicrosP99: Double? = nil, latencyMicrosMax: Double? = nil,
                latencyHistogram: [LatencyBucket]? = nil, totalDelivered: Int? = nil, orderDigest: String? = nil,
                views: [View]? = nil, excluded: Bool = false, timeline: Timeline? = nil, raw: JSONValue = .object([])) {
        self.id = id
        self.deliveredMessages = deliveredMessages
        self.deliveredBytes = deliveredBytes
        self.throughputMbitPerSecond = throughputMbitPerSecond
        self.cpuPercent = cpuPercent
        self.senderFractions = senderFractions
        self.latencyMicrosP50 = latencyMicrosP50
        self.latencyMicrosP99 = latencyMicrosP99
        self.latencyMicrosMax = latencyMicrosMax
        self.latencyHistogram = latencyHistogram
        self.totalDelivered = totalDelivered
        self.orderDigest = orderDigest
        self.views = views
        self.excluded = excluded
        self.timeline = timeline
        self.raw = raw
    }

    /// Reads the last line of `stdout` that is a JSON object (a node may print other lines first).
    public static func parse(stdout: String) throws(NodeOutputError) -> NodeOutput {
        let candidates = stdout.split(separator: "\n").reversed().map { $0.trimmingCharacters(in: .whitespaces) }
        var whole = stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        if !whole.hasPrefix("{") { whole = "" }
        for text in ([whole] + candidates) where text.hasPrefix("{") {
            if let value = try? JSONValue.parse(text), case .object = value { return try decode(value) }
        }
        throw NodeOutputError("no JSON object on stdout")
    }

    /// Decodes one node object; the six contract fields are required, the rest optional.
    public static func decode(_ value: JSONValue) throws(NodeOutputError) -> NodeOutput {
        func required<T>(_ key: String, _ read: (JSONValue) -> T?) throws(NodeOutputError) -> T {
            guard let field = value[key], let result = read(field) else { throw NodeOutputError("missing or bad '\(key)'") }
            return result
        }
        var fractions: [Int: Double] = [:]
        if case .object(let fields)? = value["sender_fractions"] {
            for (key, fraction) in fields {
                guard let sender = Int(key), let share = fraction.doubleValue else {
                    throw NodeOutputError("bad sender_fractions entry '\(key)'")
                }
                fractions[sender] = share
            }
        }
        let digest: String? = switch value["order_digest"] {
        case .string(let text)?: text
        case .integer(let number)?: String(number)
        case .number(let number)?: JSONValue.format(number)
        default: nil
        }
        return NodeOutput(
            id: try required("id") { $0.intValue },
            deliveredMessages: try required("delivered_messages") { $0.intValue },
            deliveredBytes: try required("delivered_bytes") { $0.intValue },
            throughputMbitPerSecond: try required("throughput_mbit_s") { $0.doubleValue },
            cpuPercent: value["cpu_percent"]?.doubleValue,
            senderFractions: fractions,
            latencyMicrosP50: value["latency_us_p50"]?.doubleValue,
            latencyMicrosP99: value["latency_us_p99"]?.doubleValue,
            latencyMicrosMax: value["latency_us_max"]?.doubleValue,
            latencyHistogram: try value["latency_histogram"].flatMap(histogram),
            totalDelivered: value["total_delivered"]?.intValue,
            orderDigest: digest,
            views: try value["views"].flatMap(views),
            excluded: try excludedFlag(value["excluded"]),
            timeline: try value["timeline"].flatMap(timeline),
            raw: value)
    }

    static func excludedFlag(_ value: JSONValue?) throws(NodeOutputError) -> Bool {
        switch value {
        case nil, .null?: return false
        case .bool(let flag)?: return flag
        default: throw NodeOutputError("'excluded' is not true or false")
        }
    }

    /// `views`: a list of `{view_id, members, causes, change_started_unix_ns, installed_unix_ns}`.
    static func views(_ value: JSONValue) throws(NodeOutputError) -> [View]? {
        if case .null = value { return nil }
        guard case .array(let entries) = value else { throw NodeOutputError("'views' is not a list") }
        var views: [View] = []
        for (index, entry) in entries.enumerated() {
            func field<T>(_ key: String, _ read: (JSONValue) -> T?) throws(NodeOutputError) -> T {
                guard let raw = entry[key], let result = read(raw) else {
                    throw NodeOutputError("views[\(index)]: missing or bad '\(key)'")
                }
                return result
            }
            let members: [Int] = try field("members") { raw in
                guard case .array(let ids) = raw else { return nil }
                let parsed = ids.compactMap(\.intValue)
                return parsed.count == ids.count ? parsed : nil
            }
            let causes: [String] = try field("causes") { raw in
                guard case .array(let texts) = raw else { return nil }
                let parsed = texts.compactMap(\.stringValue)
                return parsed.count == texts.count ? parsed : nil
            }
            views.append(View(viewID: try field("view_id") { $0.intValue }, members: members, causes: causes,
                              changeStartedUnixNanos: try field("change_started_unix_ns") { $0.int64Value },
                              installedUnixNanos: try field("installed_unix_ns") { $0.int64Value }))
        }
        return views
    }

    /// `timeline`: `{bucket_ms, start_unix_ns, delivered_bytes: [...]}`.
    static func timeline(_ value: JSONValue) throws(NodeOutputError) -> Timeline? {
        if case .null = value { return nil }
        guard let bucket = value["bucket_ms"]?.intValue, bucket > 0 else { throw NodeOutputError("timeline: missing or bad 'bucket_ms'") }
        guard let start = value["start_unix_ns"]?.int64Value else { throw NodeOutputError("timeline: missing or bad 'start_unix_ns'") }
        guard case .array(let counts)? = value["delivered_bytes"] else { throw NodeOutputError("timeline: missing 'delivered_bytes' list") }
        let bytes = counts.compactMap(\.int64Value)
        guard bytes.count == counts.count, bytes.allSatisfy({ $0 >= 0 }) else {
            throw NodeOutputError("timeline: 'delivered_bytes' must hold non-negative integers")
        }
        return Timeline(bucketMillis: bucket, startUnixNanos: start, deliveredBytes: bytes)
    }

    /// Accepted shapes of `latency_histogram` (values in µs unless `unit` says "ns"):
    /// `[[value, count], …]`, `{"<value>": count, …}`, or `{"unit": "us"|"ns", "buckets": <either>}`.
    /// A value is a bucket's representative (e.g. its upper bound, as HdrHistogram iterates them).
    static func histogram(_ value: JSONValue) throws(NodeOutputError) -> [LatencyBucket]? {
        if case .null = value { return nil }
        var scale = 1.0
        var body = value
        if let buckets = value["buckets"] {
            if value["unit"]?.stringValue == "ns" { scale = 1e-3 }
            body = buckets
        }
        var result: [LatencyBucket] = []
        switch body {
        case .array(let pairs):
            for pair in pairs {
                guard case .array(let two) = pair, two.count == 2, let v = two[0].doubleValue,
                      let c = two[1].intValue, c >= 0 else { throw NodeOutputError("bad latency_histogram bucket") }
                result.append(LatencyBucket(valueMicros: v * scale, count: UInt64(c)))
            }
        case .object(let fields):
            for (key, count) in fields {
                guard let v = Double(key), let c = count.intValue, c >= 0 else {
                    throw NodeOutputError("bad latency_histogram bucket '\(key)'")
                }
                result.append(LatencyBucket(valueMicros: v * scale, count: UInt64(c)))
            }
        default:
            throw NodeOutputError("latency_histogram has an unknown shape")
        }
        return result.sorted { $0.valueMicros < $1.valueMicros }
    }
}

public struct NodeOutputError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ description: String) { self.description = description }
}
