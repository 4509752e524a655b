import ArgumentParser
import ChainBFT
import Foundation
import Histogram
import RingCastChain
internal import CRingCastCore
import RingCastJSON

/// `ringcast-bench chain --lan RATE`: the replicas as processes on emulated hosts 1…n of tools/lan (chain position p
/// on host p+1), the clients in `--client-hosts` driver processes on hosts n+1…, the raw link measured first in the
/// same run. This process stays in the root namespace and only orchestrates; every replica and client runs through
/// `tools/lan exec`, so all their traffic stays on the emulated LAN. Every child is stopped and the LAN taken down
/// (unless --lan-keep) on every way out; every wait is bounded.
///
/// The bound (spec §16.2, "Bytes per hop"): every request crosses the head's downlink once (from its client) and each
/// replica's link to its successor once; nothing fans out. On the head's downlink a request costs its REQUEST frame
/// (payload, client id, timestamp and the f+1 client MACs); on a chain link its share of a batch (payload, id,
/// timestamp, at most f client-MAC residues or f+1 reply MACs and a history digest, plus the batch's window of MACs
/// divided by b). For f = 1 and 4 kB requests both are about 4.15 kB (MACs are 16 B), so the head's downlink and the
/// chain links are equally loaded, and the ceiling is raw link × payload ÷ frame bytes = 4096/4154 ≈ 98.6 % of the
/// raw TCP stream
/// (`link_bound_mbit_s` in the report, from the encoded REQUEST frame).
extension ChainBenchCommand {
    /// Ports on every emulated host (each host has its own address, so they do not collide).
    static let lanReplicaPort = 7300
    static let lanRawLinkPort = 7200
    /// Seconds the replicas and the client drivers get to start, connect and link up before the clients start.
    static let lanSetupSeconds = 8.0

    func measureLAN() throws -> String {
        StopSignals.install()
        let rate = lan!
        let n = Int(3 * f + 1)
        let hosts = n + clientHosts
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("ringcast-bench-chain-lan-\(getpid())").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let keyDirectory = work + "/keys"
        try FileManager.default.createDirectory(atPath: keyDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        // The files `ringcast-keys chain --f F --clients C --out DIR` writes (the same generator, ChainKeyFile), mode 0600.
        try ChainKeyDirectory.generate(directory: keyDirectory, f: f, clients: UInt32(clients), overwrite: true)
        let executable = try Locator.binary("ringcast-bench", override: nil, flag: "")
        let ringperf = try Locator.binary("ringperf", override: nil, flag: "")
        let controller = LANController(tool: try Locator.lanTool(override: lanTool), prefix: lanPrefix, workDirectory: work)
        let children = ChildGroup()
        func note(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }
        func checkStop() throws(BenchError) { if StopSignals.pending != 0 { throw .interrupted(signal: StopSignals.pending) } }
        var passed = false
        defer {
            children.stopAll()
            if !lanKeep, let problem = controller.down() { note(problem) }
            // The keys go with the work directory after a good run; after a failed one the logs (and keys) are kept.
            if passed { try? FileManager.default.removeItem(atPath: work) } else { note("logs kept in \(work)") }
        }

        note("bringing up the LAN '\(lanPrefix)': \(hosts) hosts at \(rate)")
        _ = try controller.upOrReuse(hosts: hosts, rate: rate)
        var addresses: [String] = []
        for host in 1...hosts { addresses.append(try controller.address(host: host)) }
        let clientHost = { (index: Int) in n + 1 + index }

        note("measuring the raw link: ringperf stream \(addresses[n]) → \(addresses[0]) (client host → head), \(rawLinkSeconds) s")
        let rawLink = try RawLinkTest.measure(
            ringperf: ringperf, serverEndpoint: "\(addresses[0]):\(Self.lanRawLinkPort)", seconds: rawLinkSeconds,
            congestion: nil, work: work, children: children,
            serverCommand: { controller.exec(host: 1, $0) }, clientCommand: { controller.exec(host: clientHost(0), $0) }
        ) { (_: Double) throws(BenchError) in try checkStop() }
        let rawMbit = rawLink["throughput_mbit_s"]?.doubleValue ?? 0

        // One schedule for every process (CLOCK_MONOTONIC is the machine's, the same in every namespace).
        let replicaList = (0..<n).map { "\(addresses[$0]):\(Self.lanReplicaPort)" }.joined(separator: ",")
        let startAt = chainBenchNow() + UInt64(Self.lanSetupSeconds * 1e9)
        let measureFrom = startAt + UInt64(warmup * 1e9)
        let measureUntil = measureFrom + UInt64(duration * 1e9)
        let replicasUntil = measureUntil + 3_000_000_000
        var replicaProcesses: [ChildProcess] = []
        for p in 0..<n {
            let arguments = [executable, "chain-replica", "--f", "\(f)", "--position", "\(p)", "--replicas", replicaList,
                             "--keys", keyDirectory, "--clients", "\(clients)", "--request-size", "\(requestSize)",
                             "--reply-size", "\(replySize)", "--batch-count", "\(batchCount)", "--batch-bytes", "\(batchBytes)",
                             "--checkpoint-interval", "\(checkpointInterval)", "--sample-at", "\(measureFrom),\(measureUntil)",
                             "--until", "\(replicasUntil)"]
            let (tool, toolArguments) = controller.exec(host: p + 1, arguments)
            let child = try ChildProcess.spawn(name: "replica \(p)", executable: tool, arguments: toolArguments,
                                               stdoutPath: "\(work)/replica\(p).out", stderrPath: "\(work)/replica\(p).err")
            children.add(child)
            replicaProcesses.append(child)
        }
        func waitFor(_ word: String, _ child: ChildProcess, by deadline: UInt64) throws {
            while !child.stdoutText().contains(word) {
                try checkStop()
                guard child.poll() else {
                    throw ValidationError("\(child.name) exited (\(child.exitDescription ?? "?")) before '\(word)':\n" + ChildProcess.tail(child.stderrText()))
                }
                guard chainBenchNow() < deadline else { throw ValidationError("\(child.name) did not say '\(word)' in time:\n" + ChildProcess.tail(child.stderrText())) }
                usleep(20_000)
            }
        }
        for child in replicaProcesses { try waitFor("ready", child, by: startAt) }
        note("\(n) replicas listening on hosts 1…\(n); \(clients) clients × depth \(depth) on hosts \(n + 1)…\(n + clientHosts)")
        var drivers: [ChildProcess] = []
        var offset = 0
        for index in 0..<clientHosts {
            let count = clients / clientHosts + (index < clients % clientHosts ? 1 : 0)
            let arguments = [executable, "chain-driver", "--f", "\(f)", "--replicas", replicaList, "--keys", keyDirectory,
                             "--clients", "\(count)", "--client-offset", "\(offset)", "--depth", "\(depth)",
                             "--request-size", "\(requestSize)", "--checkpoint-interval", "\(checkpointInterval)",
                             "--start-at", "\(startAt)", "--measure-from", "\(measureFrom)", "--measure-until", "\(measureUntil)",
                             "--submit", driverSubmit]
            let (tool, toolArguments) = controller.exec(host: clientHost(index), arguments)
            let child = try ChildProcess.spawn(name: "driver \(index)", executable: tool, arguments: toolArguments,
                                               stdoutPath: "\(work)/driver\(index).out", stderrPath: "\(work)/driver\(index).err")
            children.add(child)
            drivers.append(child)
            offset += count
        }
        for child in replicaProcesses { try waitFor("linked", child, by: startAt) }
        let driversDeadline = replicasUntil + 25_000_000_000
        while drivers.contains(where: { $0.poll() }) || replicaProcesses.contains(where: { $0.poll() }) {
            try checkStop()
            guard chainBenchNow() < driversDeadline else {
                throw BenchError.timedOut(phase: "chain measurement", seconds: Double(driversDeadline - startAt) / 1e9,
                                          stillRunning: (drivers + replicaProcesses).filter { $0.poll() }.map(\.name), stderrTails: "")
            }
            usleep(50_000)
        }
        for child in drivers + replicaProcesses where !child.exitedCleanly {
            throw ValidationError("\(child.name) \(child.exitDescription ?? "?"):\n" + ChildProcess.tail(child.stderrText()))
        }

        // The replicas' two samples → the same Sample pair the loopback run reads in-process.
        var samples: [[JSONValue]] = []
        for child in replicaProcesses {
            let lines = child.stdoutText().split(separator: "\n").compactMap { try? JSONValue.parse(String($0)) }
                .filter { $0["sample"] != nil }
            guard lines.count == 2 else { throw ValidationError("\(child.name) printed \(lines.count) samples, not 2:\n" + ChildProcess.tail(child.stdoutText())) }
            samples.append(lines)
        }
        func value(_ p: Int, _ k: Int, _ key: String) -> UInt64 { UInt64(samples[p][k][key]?.doubleValue ?? 0) }
        func sample(_ k: Int) -> Sample {
            Sample(executed: (0..<n).map { value($0, k, "executed") }, macOps: (0..<n).map { value($0, k, "mac_ops") },
                   headBatches: value(0, k, "batches_out"), headRequests: value(0, k, "requests_logged"),
                   checkpointsStable: (0..<n).map { value($0, k, "stable_checkpoint") }, nanos: value(n - 1, k, "nanos"),
                   copies: (0..<n).map { value($0, k, "payload_copies") }, logged: (0..<n).map { value($0, k, "requests_logged") })
        }
        let first = sample(0), last = sample(1)

        var histograms: [Histogram<UInt64>] = []
        var driverErrors = 0
        var firstError: String?
        var driverCPU: UInt64 = 0
        for child in drivers {
            guard let line = child.stdoutText().split(separator: "\n").last, let answer = try? JSONValue.parse(String(line)) else {
                throw ValidationError("\(child.name) printed no result:\n" + ChildProcess.tail(child.stderrText()))
            }
            var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
            if case .array(let pairs)? = answer["latency_us"] {
                for pair in pairs {
                    if case .array(let vc) = pair, vc.count == 2, let v = vc[0].doubleValue, let c = vc[1].doubleValue {
                        _ = histogram.record(UInt64(v), count: UInt64(c))
                    }
                }
            }
            histograms.append(histogram)
            driverErrors += Int(answer["errors"]?.doubleValue ?? 0)
            if firstError == nil, case .string(let text)? = answer["first_error"] { firstError = text }
            driverCPU += UInt64(answer["cpu_ns"]?.doubleValue ?? 0)
        }

        let seconds = Double(last.nanos - first.nanos) / 1e9
        let committed = last.executed[n - 1] - first.executed[n - 1]
        let payloadMbit = Double(committed) / seconds * Double(requestSize) * 8 / 1e6
        let frameBytes = Self.requestFrameBytes(f: f, requestSize: requestSize)
        let bound = rawMbit * Double(requestSize) / Double(frameBytes)
        var cpu: [(String, JSONValue)] = []
        var cpuText: [String] = []
        for p in 0..<n {
            let executed = last.executed[p] - first.executed[p]
            let micros = executed == 0 ? 0 : Double(value(p, 1, "cpu_ns") - value(p, 0, "cpu_ns")) / 1000 / Double(executed)
            cpu.append(("\(p)", .number(micros)))
            cpuText.append(String(format: "r%d %.1f", p + 1, micros))
        }
        let clientCPU = committed == 0 ? 0 : Double(driverCPU) / 1000 / Double(committed)
        let efficiency = rawMbit > 0 ? payloadMbit / rawMbit : 0
        // tbf's TCP ceiling is 95.6 % of the rate (tools/lan); a raw link far below it means the raw-link test itself was
        // starved of CPU (a busy machine), and the efficiency against it is not meaningful: said, not hidden.
        let nominal = Self.nominalMbit(rate) ?? 0
        let rawSuspect = nominal > 0 && rawMbit < 0.8 * nominal
        if rawSuspect {
            note(String(format: "warning: the raw link measured %.1f Mbit/s, below 80 %% of the nominal %@: the machine was busy; link_efficiency is not meaningful", rawMbit, rate))
        }
        let extraFields: [(String, JSONValue)] = [
            ("lan_rate", .string(rate)), ("lan_prefix", .string(lanPrefix)), ("client_hosts", .integer(Int64(clientHosts))),
            ("raw_link_mbit_s", .number(rawMbit)), ("link_efficiency", .number(efficiency)),
            ("lan_rate_mbit_s", .number(nominal)), ("raw_link_suspect", .bool(rawSuspect)),
            ("request_frame_bytes", .integer(Int64(frameBytes))), ("link_bound_mbit_s", .number(bound)),
            ("replica_cpu_us_per_request", .object(cpu)), ("client_cpu_us_per_request", .number(clientCPU)),
            ("client_errors", .integer(Int64(driverErrors))), ("client_first_error", firstError.map { .string($0) } ?? .null),
        ]
        let extraLines = [
            String(format: "LAN %@ (%@): raw link %.1f Mbit/s (ringperf stream, client host → head); request payload %.1f Mbit/s = %.1f %% of it; bound raw × %d/%d B = %.1f Mbit/s",
                   rate, lanPrefix, rawMbit, payloadMbit, efficiency * 100, requestSize, frameBytes, bound),
            "CPU µs per request: " + cpuText.joined(separator: ", ") + String(format: ", clients %.1f (all hosts)", clientCPU)
                + (driverErrors > 0 ? "; \(driverErrors) client lanes failed: \(firstError ?? "?")" : ""),
        ] + (rawSuspect ? ["warning: raw link below 80 % of the nominal rate (a busy machine starved the raw-link test): link_efficiency is not meaningful"] : [])
        let text = report(histograms: histograms, first: first, last: last,
                          transport: "tools/lan \(rate): one process per replica on its own host, clients on \(clientHosts) host(s)",
                          extraFields: extraFields, extraLines: extraLines)
        passed = driverErrors == 0
        return text
    }

    /// Bytes of one REQUEST frame on the head's downlink (length prefix included): the payload as the client encodes
    /// it, the client id, timestamp and f+1 client MACs (ChainWire).
    static func requestFrameBytes(f: UInt32, requestSize: Int) -> Int {
        let op = ChainOperation.command(ChainBenchMachine.Payload(bytes: [UInt8](repeating: 0, count: requestSize)))
        let macs = [ChainMAC](repeating: ChainMAC(bytes: [UInt8](repeating: 0, count: Int(RC_CRYPTO_MAC_BYTES))), count: Int(f) + 1)
        return ChainWire.encode(.request(ChainRequest(client: 0, timestamp: 0, op: op), clientMACs: macs)).count
    }
}
