import RingCastJSON
import Foundation

/// Samples the emulated LAN's queues during the measurement (`tc -s qdisc` in the LAN's namespaces): each host's
/// upload queue (tbf on its eth0) and the switch's port towards it (tbf on hI in the switch namespace). A queue
/// adds its backlog ÷ the link rate to every frame that passes, which is what the latency decomposition needs
/// and the engine cannot see. One `ip -all netns exec` per sample, at most every `intervalSeconds`; reading
/// qdisc counters sends nothing.
final class QdiscSampler {
    struct Queue: Equatable {
        var samples = 0
        var backlogBytesSum: Double = 0
        var backlogBytesMax = 0
        var meanBytes: Double { samples > 0 ? backlogBytesSum / Double(samples) : 0 }
    }

    let prefix: String
    let intervalSeconds: Double
    let workDirectory: String
    private(set) var upload: [Int: Queue] = [:]   // host index (1-based) → its NIC's queue
    private(set) var download: [Int: Queue] = [:] // host index → the switch port's queue towards it
    private(set) var failures = 0
    private var nextSample = 0.0

    init(prefix: String, workDirectory: String, intervalSeconds: Double = 0.5) {
        self.prefix = prefix
        self.workDirectory = workDirectory
        self.intervalSeconds = intervalSeconds
    }

    /// Takes a sample if the interval has passed.
    func sampleIfDue(now: Double) {
        guard now >= nextSample else { return }
        nextSample = now + intervalSeconds
        let result = try? ToolRun.run(name: "qdisc-sample", executable: "/usr/bin/env",
                                      arguments: ["ip", "-all", "netns", "exec", "tc", "-s", "qdisc", "show"],
                                      workDirectory: workDirectory, timeoutSeconds: 2)
        guard let result, !result.stdout.isEmpty else {
            failures += 1
            return
        }
        add(Self.parse(result.stdout, prefix: prefix))
    }

    /// Adds one parsed sample (tests feed these directly).
    func add(_ sample: [(namespace: String, device: String, backlogBytes: Int)]) {
        for entry in sample {
            if entry.namespace.hasPrefix(prefix + "-h"), entry.device == "eth0",
               let host = Int(entry.namespace.dropFirst(prefix.count + 2)) {
                upload[host, default: Queue()].record(entry.backlogBytes)
            } else if entry.namespace == prefix + "-sw", entry.device.hasPrefix("h"), let host = Int(entry.device.dropFirst()) {
                download[host, default: Queue()].record(entry.backlogBytes)
            }
        }
    }

    /// `ip -all netns exec tc -s qdisc show` output → (namespace, device, backlog bytes) of every tbf qdisc.
    static func parse(_ text: String, prefix: String) -> [(namespace: String, device: String, backlogBytes: Int)] {
        var entries: [(namespace: String, device: String, backlogBytes: Int)] = []
        var namespace = ""
        var device: String?
        for raw in text.split(separator: "\n") {
            let words = raw.split(separator: " ").map(String.init)
            guard let first = words.first else { continue }
            if first == "netns:", words.count >= 2 {
                namespace = words[1]
                device = nil
            } else if first == "qdisc" {
                // "qdisc tbf 1: dev eth0 root refcnt 3 rate …": only the shaping qdiscs are queues of the LAN.
                device = nil
                if words.count > 4, words[1] == "tbf", let index = words.firstIndex(of: "dev"), index + 1 < words.count {
                    device = words[index + 1]
                }
            } else if first == "backlog", let current = device, words.count >= 2, words[1].hasSuffix("b"),
                      let bytes = Int(words[1].dropLast()) {
                entries.append((namespace, current, bytes))
                device = nil
            }
        }
        return entries
    }

    /// JSON for the report: mean and largest backlog of each queue, and the mean as time at `rateMbit`.
    func json(rateMbit: Double?) -> JSONValue {
        func queues(_ map: [Int: Queue]) -> JSONValue {
            .array(map.sorted { $0.key < $1.key }.map { host, queue in
                var fields: [(String, JSONValue)] = [
                    ("host", .integer(Int64(host))),
                    ("samples", .integer(Int64(queue.samples))),
                    ("backlog_bytes_mean", .number(queue.meanBytes)),
                    ("backlog_bytes_max", .integer(Int64(queue.backlogBytesMax))),
                ]
                if let rateMbit, rateMbit > 0 {
                    fields.append(("delay_ms_mean", .number(queue.meanBytes * 8 / (rateMbit * 1e6) * 1e3)))
                }
                return .object(fields)
            })
        }
        return .object([
            ("host_upload", queues(upload)),
            ("switch_port", queues(download)),
            ("failed_samples", .integer(Int64(failures))),
        ])
    }
}

private extension QdiscSampler.Queue {
    mutating func record(_ bytes: Int) {
        samples += 1
        backlogBytesSum += Double(bytes)
        backlogBytesMax = max(backlogBytesMax, bytes)
    }
}
