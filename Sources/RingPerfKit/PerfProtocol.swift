import ArgumentParser

/// The three tests of ARCHITECTURE §3.1 (netperf's TCP_STREAM, TCP_MAERTS, TCP_RR).
public enum TestKind: String, CaseIterable, Sendable, ExpressibleByArgument {
    /// client → server for the duration.
    case stream
    /// server → client for the duration ("stream" reversed, netperf's name).
    case maerts
    /// request/response of `--size` bytes, one outstanding.
    case rr

    /// The default `--size` for this test: 64 KiB for bulk transfer, 1 byte for request/response (netperf's TCP_RR).
    public var defaultSizeBytes: Int { self == .rr ? 1 : 65536 }
}

/// `--zerocopy`: the transport's per-connection zero-copy mode.
public enum ZeroCopyMode: String, CaseIterable, Sendable, ExpressibleByArgument {
    case auto, on, off

    var cValue: Int32 {
        switch self {
        case .auto: 0
        case .on: 1
        case .off: 2
        }
    }
}

/// What the client asks the server for, sent as one line on the control connection.
struct TestRequest: Equatable, Sendable {
    static let magic = "RINGPERF/1"
    var test: TestKind
    var sizeBytes: Int
    var durationSeconds: Double
    var zerocopy: ZeroCopyMode
    var verify: Bool
    var congestion: String

    var line: String {
        "\(Self.magic) test=\(test.rawValue) size=\(sizeBytes) duration_ns=\(Int64(durationSeconds * 1e9)) " +
            "zerocopy=\(zerocopy.rawValue) verify=\(verify ? 1 : 0) congestion=\(congestion.isEmpty ? "-" : congestion)"
    }

    static func parse(_ line: String) throws(RingPerfError) -> TestRequest {
        let words = line.split(separator: " ")
        guard words.first.map(String.init) == magic else {
            throw .protocolViolation("not a ringperf request: '\(line.prefix(60))'")
        }
        let fields = KeyValues(words.dropFirst())
        guard let test = fields["test"].flatMap(TestKind.init(rawValue:)),
              let size = fields["size"].flatMap({ Int($0) }),
              let duration = fields["duration_ns"].flatMap({ Int64($0) }),
              let zerocopy = fields["zerocopy"].flatMap(ZeroCopyMode.init(rawValue:)),
              let verify = fields["verify"], let congestion = fields["congestion"]
        else { throw .protocolViolation("incomplete request: '\(line.prefix(120))'") }
        try RunLimits.validate(sizeBytes: size, durationSeconds: Double(duration) / 1e9)
        return TestRequest(test: test, sizeBytes: size, durationSeconds: Double(duration) / 1e9,
                           zerocopy: zerocopy, verify: verify == "1", congestion: congestion == "-" ? "" : congestion)
    }
}

/// `key=value` words of a control line.
struct KeyValues {
    private var values: [String: String] = [:]

    init<S: Sequence>(_ words: S) where S.Element == Substring {
        for word in words {
            guard let equals = word.firstIndex(of: "=") else { continue }
            values[String(word[..<equals])] = String(word[word.index(after: equals)...])
        }
    }

    subscript(key: String) -> String? { values[key] }
}

/// Limits shared by the CLI validation and the server (which must not trust the client).
public enum RunLimits {
    /// Largest `--size` (the C side's RC_PERF_SIZE_BYTES_MAX).
    public static let sizeBytesMax = 16 << 20
    /// Longest `--duration`: one day.
    public static let durationSecondsMax = 86_400.0

    /// Throws ``RingPerfError/badArgument(_:)`` for a size or duration outside the limits.
    public static func validate(sizeBytes: Int, durationSeconds: Double) throws(RingPerfError) {
        guard sizeBytes >= 1 && sizeBytes <= sizeBytesMax else {
            throw .badArgument("--size must be 1...\(sizeBytesMax) bytes, got \(sizeBytes)")
        }
        guard durationSeconds.isFinite && durationSeconds > 0 && durationSeconds <= durationSecondsMax else {
            throw .badArgument("--duration must be > 0 and ≤ \(Int(durationSecondsMax)) seconds, got \(durationSeconds)")
        }
    }
}
