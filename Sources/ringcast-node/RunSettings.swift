import ArgumentParser
import Foundation
import Logging
import RingCast

/// Everything a node run needs, resolved from the command line, the --config file and the defaults.
struct RunSettings: Sendable {
    var id: Int
    var nodes: Int
    var listen: Address
    var successor: Address
    var viewId: UInt64
    var send: Bool
    var sizeBytes: Int
    var startAtNanos: UInt64?
    var warmupSeconds: Double
    var durationSeconds: Double
    var cooldownSeconds: Double
    var limits: Node.Limits
    /// Open loop (--rate): payload bits per second this node offers; nil sends as fast as backpressure allows.
    var rateBitsPerSecond: Double?
    var deliveryLogPath: String?
    var digestPayloads: Bool
    var connectTimeoutSeconds: Double
    var json: Bool
    /// The cool-down ends after this long without a delivery (once the senders stopped).
    var quietNanos: UInt64
    /// Group mode (--members): every node id's data address; nil runs one static ring (Node).
    var members: [Address]?
    /// Group mode: the founding view's ids (default all); a node outside it joins.
    var initialView: [Int] = []
    var mode: Group.Mode = .quorum
    var heartbeatMillis = 20
    var suspectMillis = 200
    /// Where GET /metrics and GET /status are served, if anywhere.
    var metricsListen: Address?
    var logLevel: Logger.Level = .info
    /// --cluster-key / --auth: the links' authentication (open by default, with the library's warning).
    var security = Security()

    /// stderr from `logLevel` on; the label is the library's, so that its lines read "ringcast" (the library adds the
    /// member's id as metadata).
    var logger: Logger {
        var logger = Logger(label: "ringcast") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = logLevel
        return logger
    }

    static let headerBytes = 24

    var groupConfiguration: Group.Configuration? {
        get throws(RingCastError) {
            guard let members else { return nil }
            var addresses: [UInt32: Address] = [:]
            for (index, address) in members.enumerated() { addresses[UInt32(index)] = address }
            var configuration = Group.Configuration(me: UInt32(id), addresses: addresses,
                                                    initialView: initialView.map { UInt32($0) })
            configuration.mode = mode
            configuration.heartbeatMillis = heartbeatMillis
            configuration.suspectMillis = suspectMillis
            configuration.roundTimeoutMillis = suspectMillis
            configuration.limits = limits
            configuration.logger = logger
            configuration.security = security
            try configuration.validate()
            return configuration
        }
    }

    var configuration: Node.Configuration {
        get throws(RingCastError) {
            var configuration = try Node.Configuration(position: id, nodeCount: nodes, listen: listen, successor: successor,
                                                       viewId: viewId, limits: limits)
            configuration.logger = logger
            configuration.security = security
            return configuration
        }
    }
}

/// The option names a --config file may use (the long options without dashes).
let configKeys: Set<String> = [
    "id", "nodes", "listen", "successor", "view-id", "send", "size", "start-at", "warmup", "duration", "cooldown",
    "window", "window-bytes", "window-adaptive", "staging-bytes", "rate", "batch-count", "batch-bytes", "fairness", "zerocopy", "congestion", "delivery-log",
    "digest-payloads", "connect-timeout", "quiet-ms", "json", "members", "view", "mode", "heartbeat-ms", "suspect-ms",
    "metrics-listen", "log-level", "cluster-key", "auth", "encrypt",
]

/// Reads a --config file: `key=value` lines (blank lines and `#` comments ignored) or one JSON object.
func readConfigFile(_ path: String) throws(ValidationError) -> [String: String] {
    guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
        throw ValidationError("--config: cannot read '\(path)'")
    }
    var values: [String: String] = [:]
    if text.trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix("{") {
        guard let object = try? JSONDecoder().decode([String: ConfigValue].self, from: data) else {
            throw ValidationError("--config: '\(path)' is not a JSON object of strings, numbers and booleans")
        }
        values = object.mapValues(\.text)
    } else {
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw ValidationError("--config \(path):\(index + 1): expected key=value")
            }
            let key = trimmed[..<equals].trimmingCharacters(in: .whitespaces)
            values[key.hasPrefix("--") ? String(key.dropFirst(2)) : key] =
                trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        }
    }
    if let unknown = values.keys.sorted().first(where: { !configKeys.contains($0) }) {
        throw ValidationError("--config: unknown key '\(unknown)' (known: \(configKeys.sorted().joined(separator: ", ")))")
    }
    return values
}

extension NodeCommand {
    /// Merges flags, the --config file and defaults, and validates the result.
    func resolve() throws(ValidationError) -> RunSettings {
        let file = try config.map { path throws(ValidationError) in try readConfigFile(path) } ?? [:]

        func value<T>(_ flag: T?, _ key: String, _ parse: (String) -> T?) throws(ValidationError) -> T? {
            if let flag { return flag }
            guard let text = file[key] else { return nil }
            guard let parsed = parse(text) else { throw ValidationError("--config: bad value '\(text)' for \(key)") }
            return parsed
        }
        func boolean(_ text: String) -> Bool? {
            switch text.lowercased() {
            case "1", "true", "yes", "on": true
            case "0", "false", "no", "off": false
            default: nil
            }
        }
        func required<T>(_ flag: T?, _ key: String, _ parse: (String) -> T?) throws(ValidationError) -> T {
            guard let result = try value(flag, key, parse) else { throw ValidationError("--\(key) is required") }
            return result
        }
        func address(_ text: String, _ key: String) throws(ValidationError) -> Address {
            do { return try Address(text) } catch { throw ValidationError("--\(key): \(error)") }
        }

        let id = try required(id, "id") { Int($0) }
        var memberAddresses: [Address]?
        if let list = try value(members, "members", { $0 }) {
            var parsed: [Address] = []
            for item in list.split(separator: ",") {
                parsed.append(try address(item.trimmingCharacters(in: .whitespaces), "members"))
            }
            guard (1...Node.Configuration.nodeCountMax).contains(parsed.count) else {
                throw ValidationError("--members must list 1...\(Node.Configuration.nodeCountMax) addresses")
            }
            memberAddresses = parsed
        }
        let nodes: Int
        if let memberAddresses { nodes = memberAddresses.count } else { nodes = try required(self.nodes, "nodes") { Int($0) } }
        guard (1...Node.Configuration.nodeCountMax).contains(nodes) else {
            throw ValidationError("--nodes must be in 1...\(Node.Configuration.nodeCountMax)")
        }
        guard (0..<nodes).contains(id) else { throw ValidationError("--id must be in 0..<\(nodes)") }
        let listenAddress: Address
        let successorAddress: Address
        if let memberAddresses {
            listenAddress = memberAddresses[id]
            successorAddress = memberAddresses[(id + 1) % nodes]
        } else {
            listenAddress = try address(try required(listen, "listen") { $0 }, "listen")
            successorAddress = try address(try required(successor, "successor") { $0 }, "successor")
        }
        var initialView = Array(0..<nodes)
        if let list = try value(view, "view", { $0 }) {
            guard memberAddresses != nil else { throw ValidationError("--view needs --members") }
            initialView = []
            for item in list.split(separator: ",") {
                guard let member = Int(item.trimmingCharacters(in: .whitespaces)), (0..<nodes).contains(member) else {
                    throw ValidationError("--view: '\(item)' is not a node id in 0..<\(nodes)")
                }
                initialView.append(member)
            }
            guard !initialView.isEmpty, Set(initialView).count == initialView.count else {
                throw ValidationError("--view must list distinct ids")
            }
        }
        var groupMode = Group.Mode.quorum
        if let text = try value(mode, "mode", { $0 }) {
            guard let parsed = Group.Mode(rawValue: text.lowercased()) else {
                throw ValidationError("--mode must be quorum or perfect, not '\(text)'")
            }
            groupMode = parsed
        }
        let heartbeat = try value(heartbeatMillis, "heartbeat-ms") { Int($0) } ?? 20
        let suspect = try value(suspectMillis, "suspect-ms") { Int($0) } ?? 200
        guard (1...60_000).contains(heartbeat), (2...600_000).contains(suspect), suspect > heartbeat else {
            throw ValidationError("--heartbeat-ms must be in 1...60000 and --suspect-ms in 2...600000, above --heartbeat-ms")
        }
        let size = try value(size, "size") { Int($0) } ?? 10_000
        guard size >= RunSettings.headerBytes else {
            throw ValidationError("--size must be at least \(RunSettings.headerBytes) bytes (the payload header)")
        }
        let warmup = try value(warmup, "warmup") { Double($0) } ?? 1
        let duration = try value(duration, "duration") { Double($0) } ?? 5
        let cooldown = try value(cooldown, "cooldown") { Double($0) } ?? 2
        let connectTimeout = try value(connectTimeout, "connect-timeout") { Double($0) } ?? 10
        let quietMillis = try value(quietMillis, "quiet-ms") { Int($0) } ?? 500
        guard (1...600_000).contains(quietMillis) else { throw ValidationError("--quiet-ms must be in 1...600000") }
        for (name, seconds, minimum) in [("warmup", warmup, 0.0), ("duration", duration, 0.0), ("cooldown", cooldown, 0.0),
                                         ("connect-timeout", connectTimeout, 0.001)] {
            guard seconds.isFinite, seconds >= minimum, seconds <= 86_400 else {
                throw ValidationError("--\(name) must be a number of seconds in \(minimum)...86400")
            }
        }
        guard duration > 0 else { throw ValidationError("--duration must be > 0 seconds") }

        var limits = Node.Limits()
        limits.connectTimeoutMillis = max(1, Int((connectTimeout * 1000).rounded()))
        if let window = try value(window, "window", { Int($0) }) { limits.window = window }
        if let bytes = try value(windowBytes, "window-bytes", { Int($0) }) { limits.windowBytes = bytes }
        if let adaptive = try value(windowAdaptive, "window-adaptive", { Switch(rawValue: $0.lowercased()) }) {
            limits.windowAdaptive = adaptive.isOn
        }
        if let bytes = try value(stagingBytes, "staging-bytes", { Int($0) }) { limits.stagingBytes = bytes }
        let rateMbit = try value(rate, "rate") { Double($0) }
        if let rateMbit, !(rateMbit.isFinite && rateMbit > 0 && rateMbit <= 1_000_000) {
            throw ValidationError("--rate must be a number of Mbit/s in (0, 1000000]")
        }
        if let count = try value(batchCount, "batch-count", { Int($0) }) { limits.batchCountMax = count }
        if let bytes = try value(batchBytes, "batch-bytes", { Int($0) }) {
            limits.batchBytesMax = bytes
            guard bytes >= size else { throw ValidationError("--batch-bytes \(bytes) is smaller than --size \(size)") }
        } else {
            limits.batchBytesMax = max(limits.batchBytesMax, size)
        }
        limits.deliveryRingMax = max(limits.deliveryRingMax, limits.batchCountMax)
        if let fairness = try value(fairness, "fairness", { Switch(rawValue: $0.lowercased()) }) {
            limits.fairness = fairness.isOn
        }
        if let choice = try value(zerocopy, "zerocopy", { ZeroCopyChoice(rawValue: $0.lowercased()) }) {
            limits.zeroCopy = choice.mode
        }
        if let name = try value(congestion, "congestion", { $0 }) {
            limits.congestionControl = name == "default" ? "" : name
            do { try limits.validate() } catch {
                throw ValidationError("--congestion: '\(name)' is not a congestion control name such as cubic, bbr, reno or default")
            }
        }
        let deliveryLog = try value(deliveryLog, "delivery-log") { $0 }
        let metricsAddress = try value(metricsListen, "metrics-listen") { $0 }.map { text throws(ValidationError) in
            try address(text, "metrics-listen")
        }
        var level = Logger.Level.info
        if let text = try value(logLevel, "log-level", { $0 }) {
            guard let parsed = Logger.Level(rawValue: text.lowercased()) else {
                throw ValidationError("--log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            level = parsed
        }
        let digest = try value(digestPayloads, "digest-payloads") { Switch(rawValue: $0.lowercased()) }

        let keyPath = try value(clusterKey, "cluster-key") { $0 }, authMode = try value(auth, "auth") { $0 }
        let sealed = try value(encrypt, "encrypt", boolean) ?? false
        let security: Security
        do throws(RingCastError) {
            security = try Security.fromCommandLine(clusterKeyFile: keyPath, authentication: authMode, encrypt: sealed)
        } catch {
            if case let .invalidConfiguration(reason) = error { throw ValidationError(reason) }
            throw ValidationError("\(error)")
        }
        var settings = RunSettings(
            id: id, nodes: nodes, listen: listenAddress, successor: successorAddress,
            viewId: try value(viewId, "view-id") { UInt64($0) } ?? 1,
            send: try value(send, "send", boolean) ?? false,
            sizeBytes: size,
            startAtNanos: try value(startAt, "start-at") { UInt64($0) },
            warmupSeconds: warmup, durationSeconds: duration, cooldownSeconds: cooldown,
            limits: limits, rateBitsPerSecond: rateMbit.map { $0 * 1e6 }, deliveryLogPath: deliveryLog,
            digestPayloads: digest?.isOn ?? (deliveryLog != nil),
            connectTimeoutSeconds: connectTimeout,
            json: try value(json, "json", boolean) ?? false,
            quietNanos: UInt64(quietMillis) * 1_000_000,
            members: memberAddresses, initialView: initialView, mode: groupMode,
            heartbeatMillis: heartbeat, suspectMillis: suspect, metricsListen: metricsAddress, logLevel: level)
        settings.security = security
        do {
            if memberAddresses != nil { _ = try settings.groupConfiguration } else { _ = try settings.configuration }
        } catch {
            throw ValidationError("\(error)")
        }
        return settings
    }
}

/// One value of a JSON --config file, kept as the text the command line would have given.
private struct ConfigValue: Decodable {
    let text: String

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let string = try? container.decode(String.self) {
            text = string
        } else if let flag = try? container.decode(Bool.self) {
            text = flag ? "true" : "false"
        } else if let integer = try? container.decode(Int64.self) {
            text = String(integer)
        } else if let integer = try? container.decode(UInt64.self) {
            text = String(integer)
        } else {
            text = String(try container.decode(Double.self))
        }
    }
}
