import Foundation
import Testing

/// Tests of `tools/lan`, the emulated switched LAN (thesis §2.6.1: hosts on a Fast Ethernet switch).
///
/// They build a real LAN of network namespaces under the prefix `rct`, so a developer's LAN (prefix
/// `rcl`) is never touched, and take it down again. Every command runs under `timeout(1)`.
@Suite(
    "tools/lan emulated LAN",
    .serialized,
    // Network namespaces, veth pairs and tc qdiscs need root (CAP_NET_ADMIN) and iproute2's `ip netns`.
    // Without them the tool can only refuse, so there is nothing to test: skip rather than fail.
    .enabled(if: LANHarness.canBuildNamespaces, "needs root and a working `ip netns` (iproute2)")
)
struct LANTests {
    let lan = LANHarness(prefix: "rct")

    @Test func section2_6_1_twoHostsAt100mbit_areConnectedIsolatedAndShaped() throws {
        try lan.downForSure()
        defer { try? lan.downForSure() }
        let up = lan.tool(["up", "--hosts", "2", "--rate", "100mbit", "--prefix", lan.prefix])
        try #require(up.status == 0, "up failed: \(up.stderr)")

        let namespaces = lan.namespacesOfPrefix()
        #expect(namespaces == ["rct-h1", "rct-h2", "rct-sw"])

        let address = lan.tool(["exec", "1", "--prefix", lan.prefix, "--", "ip", "-o", "-4", "addr", "show", "dev", "eth0"])
        #expect(address.status == 0)
        #expect(address.stdout.contains("198.18.0.1/24"))
        #expect(lan.tool(["addr", "2", "--prefix", lan.prefix]).stdout == "198.18.0.2\n")

        let ping = try #require(LANHarness.pingPath, "ping not found; install iputils-ping")
        let reply = lan.tool(["exec", "1", "--prefix", lan.prefix, "--", ping, "-c", "1", "-W", "1", "198.18.0.2"])
        #expect(reply.status == 0, "ping 198.18.0.2 from host 1 failed: \(reply.stdout) \(reply.stderr)")

        for namespace in namespaces {
            let routes = LANHarness.run(["ip", "-n", namespace, "route", "show", "default"])
            #expect(routes.status == 0)
            #expect(routes.stdout.isEmpty, "default route in \(namespace): \(routes.stdout)")
        }

        // Full duplex: tbf on the host's egress (upload) and on the bridge-side egress (download).
        for host in 1...2 {
            let upload = LANHarness.run(["ip", "netns", "exec", "rct-h\(host)", "tc", "qdisc", "show", "dev", "eth0"])
            #expect(upload.stdout.contains("tbf") && upload.stdout.contains("rate 100Mbit"), "upload qdisc: \(upload.stdout)")
            let download = LANHarness.run(["ip", "netns", "exec", "rct-sw", "tc", "qdisc", "show", "dev", "h\(host)"])
            #expect(download.stdout.contains("tbf") && download.stdout.contains("rate 100Mbit"), "download qdisc: \(download.stdout)")
        }

        let status = lan.tool(["status", "--prefix", lan.prefix])
        #expect(status.status == 0, "status: \(status.stdout) \(status.stderr)")
    }

    @Test func exec_refusesHostsThatDoNotExistOrAreBroken() throws {
        try lan.downForSure()
        defer { try? lan.downForSure() }

        let noLAN = lan.tool(["exec", "1", "--prefix", lan.prefix, "--", "true"])
        #expect(noLAN.status != 0)
        #expect(noLAN.stderr.contains("no LAN with prefix 'rct'"))

        try #require(lan.tool(["up", "--hosts", "2", "--rate", "none", "--prefix", lan.prefix]).status == 0)
        for index in ["3", "0", "x"] {
            let refused = lan.tool(["exec", index, "--prefix", lan.prefix, "--", "true"])
            #expect(refused.status != 0, "exec \(index) ran")
            #expect(refused.stderr.contains("error"), "exec \(index): \(refused.stderr)")
        }

        // A host whose eth0 is down, or which gained a default route, must not run anything.
        #expect(LANHarness.run(["ip", "-n", "rct-h2", "link", "set", "eth0", "down"]).status == 0)
        let down = lan.tool(["exec", "2", "--prefix", lan.prefix, "--", "true"])
        #expect(down.status != 0)
        #expect(down.stderr.contains("not up"))

        #expect(LANHarness.run(["ip", "-n", "rct-h1", "route", "add", "default", "via", "198.18.0.2"]).status == 0)
        let routed = lan.tool(["exec", "1", "--prefix", lan.prefix, "--", "true"])
        #expect(routed.status != 0)
        #expect(routed.stderr.contains("default route"))
    }

    @Test func up_refusesAnExistingLANUnlessForced() throws {
        try lan.downForSure()
        defer { try? lan.downForSure() }
        try #require(lan.tool(["up", "--hosts", "2", "--rate", "none", "--prefix", lan.prefix]).status == 0)

        let again = lan.tool(["up", "--hosts", "3", "--rate", "none", "--prefix", lan.prefix])
        #expect(again.status != 0)
        #expect(again.stderr.contains("already up"))
        #expect(lan.namespacesOfPrefix() == ["rct-h1", "rct-h2", "rct-sw"])

        let forced = lan.tool(["up", "--hosts", "3", "--rate", "1gbit", "--prefix", lan.prefix, "--force"])
        #expect(forced.status == 0, "up --force: \(forced.stderr)")
        #expect(lan.namespacesOfPrefix() == ["rct-h1", "rct-h2", "rct-h3", "rct-sw"])
    }

    @Test func down_removesEveryNamespaceAndDeviceAndIsIdempotent() throws {
        try lan.downForSure()
        try #require(lan.tool(["up", "--hosts", "2", "--rate", "100mbit", "--prefix", lan.prefix]).status == 0)
        #expect(!lan.namespacesOfPrefix().isEmpty)

        let first = lan.tool(["down", "--prefix", lan.prefix])
        #expect(first.status == 0, "down: \(first.stderr)")
        #expect(lan.namespacesOfPrefix().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: "/run/ringcast-lan/rct"))
        // The veth pairs were created inside the namespaces and die with them; none may be in the root.
        let rootLinks = LANHarness.run(["ip", "-o", "link", "show"]).stdout
        for name in ["h1", "h2"] {
            #expect(!rootLinks.contains(": \(name)@") && !rootLinks.contains(": \(name):"), "leftover \(name)")
        }

        let second = lan.tool(["down", "--prefix", lan.prefix])
        #expect(second.status == 0, "second down: \(second.stderr)")
    }

    @Test func delay_failsClearlyWithoutNetemOrAddsIt() throws {
        try lan.downForSure()
        defer { try? lan.downForSure() }
        let up = lan.tool(["up", "--hosts", "2", "--rate", "100mbit", "--delay", "1", "--prefix", lan.prefix])
        if LANHarness.kernelHasNetem {
            #expect(up.status == 0, "up --delay: \(up.stderr)")
            let qdiscs = LANHarness.run(["ip", "netns", "exec", "rct-h1", "tc", "qdisc", "show", "dev", "eth0"])
            #expect(qdiscs.stdout.contains("netem"))
        } else {
            #expect(up.status == 1)
            #expect(up.stderr.contains("--delay needs the 'netem' qdisc"), "stderr: \(up.stderr)")
            #expect(lan.namespacesOfPrefix().isEmpty, "a failed up left namespaces behind")
        }
    }

    @Test func up_rejectsBadArguments() {
        for arguments in [["--hosts", "1"], ["--hosts", "17"], ["--hosts", "2", "--rate", "fast"],
                          ["--hosts", "2", "--prefix", "Bad-Prefix"], ["--hosts", "2", "--delay", "soon"]] {
            let prefixed = arguments.contains("--prefix") ? arguments : arguments + ["--prefix", lan.prefix]
            let result = lan.tool(["up"] + prefixed)
            #expect(result.status != 0, "up \(arguments) succeeded")
            #expect(result.stderr.contains("error"), "up \(arguments): \(result.stderr)")
        }
        #expect(lan.namespacesOfPrefix().isEmpty)
    }
}

/// Runs `tools/lan` and `ip` for the tests, each bounded by `timeout(1)`.
struct LANHarness: Sendable {
    /// The LAN prefix these tests own.
    let prefix: String

    /// The repository root, found from this file's path (Tests/ToolsTests/LANTests.swift).
    static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Whether we can create network namespaces: root, and `ip netns list` works.
    static let canBuildNamespaces: Bool = getuid() == 0 && run(["ip", "netns", "list"]).status == 0

    /// Whether this kernel offers the netem qdisc, found by trying it in a throw-away namespace.
    static let kernelHasNetem: Bool = {
        let probe = "rct-netem-probe"
        _ = run(["ip", "netns", "add", probe])
        defer { _ = run(["ip", "netns", "del", probe]) }
        _ = run(["ip", "-n", probe, "link", "set", "lo", "up"])
        return run(["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]).status == 0
    }()

    /// Path of ping(8), if installed.
    static let pingPath: String? = ["/usr/bin/ping", "/bin/ping"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Result of one command.
    struct Outcome: Sendable {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    /// Runs `tools/lan` with `arguments`.
    func tool(_ arguments: [String]) -> Outcome {
        Self.run([Self.repositoryRoot.appendingPathComponent("tools/lan").path] + arguments)
    }

    /// Namespaces named `<prefix>-…` that exist now, sorted.
    func namespacesOfPrefix() -> [String] {
        Self.run(["ip", "netns", "list"]).stdout
            .split(separator: "\n")
            .compactMap { $0.split(separator: " ").first.map(String.init) }
            .filter { $0.hasPrefix("\(prefix)-") }
            .sorted()
    }

    /// Takes the test LAN down and checks that nothing of it is left.
    func downForSure() throws {
        let down = tool(["down", "--prefix", prefix])
        try #require(down.status == 0, "down failed: \(down.stderr)")
        try #require(namespacesOfPrefix().isEmpty)
    }

    /// Runs a command (looked up in PATH) under `timeout 30`, and collects its output.
    static func run(_ arguments: [String]) -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["timeout", "--kill-after=5", "30"] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin:" + (environment["PATH"] ?? "")
        process.environment = environment
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        do {
            try process.run()
        } catch {
            return Outcome(status: -1, stdout: "", stderr: "could not start \(arguments): \(error)")
        }
        // Outputs here are small (well under a pipe buffer), so reading one after the other cannot block.
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        let errors = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus,
                       stdout: String(decoding: output, as: UTF8.self),
                       stderr: String(decoding: errors, as: UTF8.self))
    }
}
