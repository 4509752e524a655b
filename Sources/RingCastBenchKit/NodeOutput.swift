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
    /// Everything the node printed, so that fields beyond the contract reach the report.
    public var raw: JSONValue

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
                raw: JSONValue = .object([])) {
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
            raw: value)
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
