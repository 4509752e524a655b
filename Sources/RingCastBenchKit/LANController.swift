import Foundation

/// Drives `tools/lan` (the emulated switched LAN in network namespaces): up or reuse, addresses, exec, down.
package struct LANController {
    package let tool: String
    package let prefix: String
    package let workDirectory: String

    package init(tool: String, prefix: String, workDirectory: String) {
        self.tool = tool
        self.prefix = prefix
        self.workDirectory = workDirectory
    }

    /// Brings up `hosts` hosts at `rate`, or reuses a LAN with this prefix that already has at least that many
    /// hosts at that rate (tools/figures runs many points on one LAN). Returns true if it created the LAN.
    package func upOrReuse(hosts: Int, rate: String) throws(BenchError) -> Bool {
        let status = try run(["status", "--prefix", prefix], name: "lan-status", timeoutSeconds: 20)
        if status.ok, let line = status.stdout.split(separator: "\n").first,
           let existing = Self.parseStatus(String(line)), existing.hosts >= hosts, existing.rate == rate {
            return false
        }
        let up = try run(["up", "--hosts", String(hosts), "--rate", rate, "--prefix", prefix, "--force"],
                         name: "lan-up", timeoutSeconds: 90)
        guard up.ok else {
            throw .lanFailed("tools/lan up --hosts \(hosts) --rate \(rate) --prefix \(prefix): \(up.status)\n" +
                             ChildProcess.tail(up.stderr + up.stdout))
        }
        return true
    }

    /// "LAN rcb: 5 hosts, rate 100mbit (…)" → (5, "100mbit").
    package static func parseStatus(_ line: String) -> (hosts: Int, rate: String)? {
        let words = line.split(separator: " ").map(String.init)
        guard words.count >= 6, words[0] == "LAN", let hosts = Int(words[2]), words[4] == "rate" else { return nil }
        return (hosts, words[5].trimmingCharacters(in: CharacterSet(charactersIn: ",")))
    }

    /// The address of host `index` (1-based), e.g. 198.18.0.3.
    package func address(host index: Int) throws(BenchError) -> String {
        let result = try run(["addr", String(index), "--prefix", prefix], name: "lan-addr-\(index)", timeoutSeconds: 10)
        let address = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard result.ok, !address.isEmpty else {
            throw .lanFailed("tools/lan addr \(index): \(result.status) \(ChildProcess.tail(result.stderr, lines: 3))")
        }
        return address
    }

    /// The command that runs `arguments` inside host `index`.
    package func exec(host index: Int, _ arguments: [String]) -> (executable: String, arguments: [String]) {
        (tool, ["exec", String(index), "--prefix", prefix, "--"] + arguments)
    }

    /// Cuts host `index` off the switch silently (`tools/lan cut`: its bridge port goes down, so frames are
    /// dropped in both directions and no FIN or RST reaches anyone).
    package func cut(host index: Int) throws(BenchError) {
        let result = try run(["cut", String(index), "--prefix", prefix], name: "lan-cut-\(index)", timeoutSeconds: 15)
        guard result.ok else {
            throw .lanFailed("tools/lan cut \(index) --prefix \(prefix): \(result.status) \(ChildProcess.tail(result.stderr, lines: 3))")
        }
    }

    /// Reconnects host `index` (`tools/lan heal`); bounded, and never throws (it runs during cleanup).
    package func heal(host index: Int) -> String? {
        guard let result = try? run(["heal", String(index), "--prefix", prefix], name: "lan-heal-\(index)", timeoutSeconds: 15) else {
            return "could not run tools/lan heal \(index)"
        }
        return result.ok ? nil : "tools/lan heal \(index) --prefix \(prefix): \(result.status) \(ChildProcess.tail(result.stderr, lines: 3))"
    }

    /// Takes the LAN down; bounded, and never throws (it runs during cleanup).
    package func down() -> String? {
        guard let result = try? run(["down", "--prefix", prefix], name: "lan-down", timeoutSeconds: 60) else {
            return "could not run tools/lan down"
        }
        return result.ok ? nil : "tools/lan down --prefix \(prefix): \(result.status) \(ChildProcess.tail(result.stderr, lines: 3))"
    }

    package struct Result {
        package var ok: Bool
        package var status: String
        package var stdout: String
        package var stderr: String
    }

    private func run(_ arguments: [String], name: String, timeoutSeconds: Double) throws(BenchError) -> Result {
        try ToolRun.run(name: name, executable: tool, arguments: arguments, workDirectory: workDirectory,
                        timeoutSeconds: timeoutSeconds)
    }
}

/// Runs a short helper command to completion, bounded in time.
package enum ToolRun {
    package static func run(name: String, executable: String, arguments: [String], workDirectory: String,
                    timeoutSeconds: Double) throws(BenchError) -> LANController.Result {
        let base = (workDirectory as NSString).appendingPathComponent(name)
        let child = try ChildProcess.spawn(name: name, executable: executable, arguments: arguments,
                                           stdoutPath: base + ".out", stderrPath: base + ".err")
        let deadline = Clock.now + timeoutSeconds
        while child.poll() {
            if Clock.now > deadline {
                ChildGroup.stop([child])
                return .init(ok: false, status: "timed out after \(Int(timeoutSeconds)) s",
                             stdout: child.stdoutText(), stderr: child.stderrText())
            }
            usleep(20_000)
        }
        return .init(ok: child.exitedCleanly, status: child.exitDescription ?? "?", stdout: child.stdoutText(),
                     stderr: child.stderrText())
    }
}
