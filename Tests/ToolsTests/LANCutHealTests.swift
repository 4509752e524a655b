import Foundation
import Testing

/// Tests of `tools/lan cut` and `tools/lan heal`, the silent partition behind `ringcast-bench --partition` on
/// the emulated LAN. They build a tiny LAN under their own prefix `rcx` (the other suites use `rct`, `rcbt`,
/// `rcft`; developers `rcl`, `rcb`), every command bounded by `timeout(1)`, and take it down again.
@Suite(
    "tools/lan cut and heal",
    .serialized,
    .enabled(if: LANHarness.canBuildNamespaces, "needs root and a working `ip netns` (iproute2)")
)
struct LANCutHealTests {
    let lan = LANHarness(prefix: "rcx")

    @Test func cutAndHeal_checkTheLANTheHostAndTheDeviceFirst() throws {
        try lan.downForSure()
        defer { try? lan.downForSure() }
        for command in ["cut", "heal"] {
            let noLAN = lan.tool([command, "1", "--prefix", lan.prefix])
            #expect(noLAN.status == 1 && noLAN.stderr.contains("no LAN with prefix 'rcx'"), "\(command): \(noLAN.stderr)")
        }
        try #require(lan.tool(["up", "--hosts", "2", "--rate", "none", "--prefix", lan.prefix]).status == 0)
        for (arguments, message) in [(["cut"], "usage: tools/lan cut I"), (["cut", "3"], "no host 3"), (["heal", "x"], "must be a number"),
                                     (["cut", "1", "--", "x"], "unexpected arguments"), (["heal", "1", "--prefix", "Bad"], "invalid --prefix")] {
            let refused = lan.tool(arguments + (arguments.contains("--prefix") ? [] : ["--prefix", lan.prefix]))
            #expect(refused.status != 0 && refused.stderr.contains(message), "\(arguments): \(refused.stderr)")
        }
        // A bridge port that vanished, or a host namespace: refuse rather than act on something else.
        #expect(LANHarness.run(["ip", "-n", "rcx-sw", "link", "del", "h2"]).status == 0)
        for command in ["cut", "heal"] {
            let gone = lan.tool([command, "2", "--prefix", lan.prefix])
            #expect(gone.status == 1 && gone.stderr.contains("device h2 does not exist in namespace rcx-sw"), "\(command): \(gone.stderr)")
        }
        #expect(LANHarness.run(["ip", "netns", "del", "rcx-h1"]).status == 0)
        let noHost = lan.tool(["cut", "1", "--prefix", lan.prefix])
        #expect(noHost.status == 1 && noHost.stderr.contains("host namespace rcx-h1 does not exist"), "\(noHost.stderr)")
    }

    /// The promise of `--partition` on the LAN: the peer of a cut host sees silence, never a reset or an end of
    /// stream, and the very same TCP connection carries on after heal.
    @Test(.enabled(if: LANHarness.python3 != nil, "needs /usr/bin/python3 for the TCP peers"))
    func cut_isSilentAndHealResumesTheSameConnection() throws {
        try lan.downForSure()
        defer { try? lan.downForSure() }
        try #require(lan.tool(["up", "--hosts", "2", "--rate", "100mbit", "--prefix", lan.prefix]).status == 0)
        let work = try LANHarness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let script = work + "/peer.py"
        try Self.peerScript.write(toFile: script, atomically: true, encoding: .utf8)
        let trigger = work + "/trigger"
        let python = LANHarness.python3!

        let server = try LANHarness.start([lan.toolPath, "exec", "2", "--prefix", lan.prefix, "--", python, script, "server", trigger],
                                          output: work + "/server.out")
        defer { server.terminate(); server.waitUntilExit() }
        usleep(300_000)
        let client = try LANHarness.start([lan.toolPath, "exec", "1", "--prefix", lan.prefix, "--", python, script, "client", trigger],
                                          output: work + "/client.out")
        defer { client.terminate(); client.waitUntilExit() }
        try LANHarness.waitFor(seconds: 10) { ((try? String(contentsOfFile: work + "/client.out", encoding: .utf8)) ?? "").contains("connected") }

        let cut = lan.tool(["cut", "2", "--prefix", lan.prefix])
        #expect(cut.status == 0 && cut.stdout.contains("host 2 cut"), "\(cut.stderr)")
        #expect(LANHarness.run(["ip", "-n", "rcx-sw", "-o", "link", "show", "h2"]).stdout.contains("state DOWN"))
        let refused = lan.tool(["exec", "2", "--prefix", lan.prefix, "--", "true"])
        #expect(refused.status != 0 && refused.stderr.contains("host 2 is cut off"), "\(refused.stderr)")
        let status = lan.tool(["status", "--prefix", lan.prefix])
        #expect(status.status != 0 && status.stdout.contains("cut off"))
        let again = lan.tool(["cut", "2", "--prefix", lan.prefix])
        #expect(again.status == 0 && again.stdout.contains("already cut"))
        _ = FileManager.default.createFile(atPath: trigger + ".cut", contents: nil)
        try LANHarness.waitFor(seconds: 10) { FileManager.default.fileExists(atPath: trigger + ".asked") }

        let heal = lan.tool(["heal", "2", "--prefix", lan.prefix])
        #expect(heal.status == 0 && heal.stdout.contains("host 2 healed"), "\(heal.stderr)")
        _ = FileManager.default.createFile(atPath: trigger + ".healed", contents: nil)
        try LANHarness.waitFor(seconds: 15) { !client.isRunning }
        let said = try String(contentsOfFile: work + "/client.out", encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(said == ["connected", "silent", "resumed"], "the client saw: \(said)")

        // Shaping survives the cut, and the host is usable again.
        let qdisc = LANHarness.run(["ip", "netns", "exec", "rcx-sw", "tc", "qdisc", "show", "dev", "h2"])
        #expect(qdisc.stdout.contains("tbf") && qdisc.stdout.contains("rate 100Mbit"), "\(qdisc.stdout)")
        #expect(lan.tool(["status", "--prefix", lan.prefix]).status == 0)
        #expect(lan.tool(["heal", "2", "--prefix", lan.prefix]).status == 0, "healing a connected host is a no-op")
    }

    /// A TCP client and server. The client connects and exchanges one ping, says "connected", waits for
    /// `<trigger>.cut`, sends again and reports what the cut link gave it within 1.5 s ("silent" expected;
    /// "reset", "eof" or an error would mean the cut was not silent), then waits for `<trigger>.healed` and says
    /// "resumed" if the answer arrives on the same connection (TCP retransmits the ping).
    static let peerScript = """
    import os, socket, sys, time
    role, trigger = sys.argv[1], sys.argv[2]
    def wait_for(path, seconds=12):
        deadline = time.time() + seconds
        while not os.path.exists(path):
            if time.time() > deadline:
                print("no-trigger", flush=True); sys.exit(2)
            time.sleep(0.02)
    if role == "server":
        listener = socket.socket(); listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("198.18.0.2", 7599)); listener.listen(1); listener.settimeout(10)
        peer, _ = listener.accept(); peer.settimeout(20)
        while True:
            data = peer.recv(100)
            if not data: break
            peer.sendall(b"pong")
        sys.exit(0)
    peer = socket.create_connection(("198.18.0.2", 7599), timeout=5)
    peer.sendall(b"ping"); assert peer.recv(4) == b"pong"
    print("connected", flush=True)
    wait_for(trigger + ".cut")
    peer.sendall(b"ping"); peer.settimeout(1.5)
    try:
        data = peer.recv(4); print("eof" if not data else "answered", flush=True)
    except socket.timeout: print("silent", flush=True)
    except ConnectionResetError: print("reset", flush=True)
    except OSError as error: print("error", error.errno, flush=True)
    open(trigger + ".asked", "w").close()
    wait_for(trigger + ".healed")
    peer.settimeout(8)
    try: print("resumed" if peer.recv(4) == b"pong" else "eof", flush=True)
    except OSError as error: print("not-resumed", type(error).__name__, flush=True)
    """
}

extension LANHarness {
    /// /usr/bin/python3 if installed (an absolute path: `ip netns exec` keeps PATH, but pyenv shims need HOME).
    static let python3: String? = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") ? "/usr/bin/python3" : nil

    var toolPath: String { Self.repositoryRoot.appendingPathComponent("tools/lan").path }

    static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "ringcast-tools-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Starts a command in the background under `timeout 60`, stdout and stderr into `output`.
    static func start(_ arguments: [String], output: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["timeout", "--kill-after=5", "60"] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin:" + (environment["PATH"] ?? "")
        process.environment = environment
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    /// Polls `condition` every 20 ms for up to `seconds`; fails the test if it never holds.
    static func waitFor(seconds: Double, _ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() {
            try #require(Date() < deadline, "condition not met within \(seconds) s")
            usleep(20_000)
        }
    }
}
