import ArgumentParser
import Foundation

/// ringperf: a netperf-style link test over the RingCast io_uring transport (ARCHITECTURE §3.1).
public struct RingPerfCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "ringperf",
        abstract: "Measure a TCP link with RingCast's io_uring transport (netperf-style).",
        discussion: """
        Without a subcommand, runs a self-test over loopback: a server thread on 127.0.0.1 (ephemeral \
        port) and the stream, maerts and rr tests, each checking every byte against a pattern. Exits 0 \
        only if every test moved data and verified it.

        Measure a link: `ringperf server --listen HOST:PORT` on one end, \
        `ringperf client --connect HOST:PORT --test stream` on the other.
        """,
        subcommands: [ServerCommand.self, ClientCommand.self]
    )

    @Option(name: .long, help: "Seconds per self-test (stream, maerts, rr).")
    var secondsPerTest: Double = 2

    public init() {}

    public func validate() throws {
        guard secondsPerTest > 0 && secondsPerTest <= 9 else {
            throw ValidationError("--seconds-per-test must be in (0, 9] (the whole self-test stays under 30 s)")
        }
    }

    public func run() throws {
        let outcome = try SelfTest.run(durationSeconds: secondsPerTest, zerocopy: .auto, congestion: Defaults.congestion)
        print(outcome.table)
        if !outcome.passed { throw SelfTestFailure(problems: outcome.problems) }
        print("self-test passed: every test moved data and verified it byte-exact")
    }
}

/// Defaults shared by the commands.
enum Defaults {
    /// cubic per socket: the io_uring guide (§6) found loopback on this VM bimodal under BBR (the
    /// system default here); our own runs were steadier with it too (see the transport report).
    static let congestion = "cubic"
}

struct SelfTestFailure: Error, CustomStringConvertible {
    let problems: [String]
    var description: String { "self-test failed: " + problems.joined(separator: "; ") }
}

/// `ringperf server --listen HOST:PORT [--once] [--timeout SECONDS]`.
public struct ServerCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Serve ringperf tests until SIGINT/SIGTERM (or --once / --timeout)."
    )

    @Option(name: .long, help: ArgumentHelp("Address to listen on: IPv4, [IPv6] or localhost, with a port.", valueName: "host:port"))
    var listen: String

    @Flag(name: .long, help: "Exit after one test (non-zero if it failed or none came before --timeout).")
    var once = false

    @Option(name: .long, help: "Exit after this many seconds at the latest.")
    var timeout: Double?

    public init() {}

    public func validate() throws {
        do { _ = try Endpoint.parse(listen, allowPortZero: true) } catch { throw ValidationError("--listen: \(error)") }
        if let timeout, !(timeout > 0 && timeout.isFinite) { throw ValidationError("--timeout must be > 0 seconds") }
    }

    public func run() throws {
        let endpoint = try Endpoint.parse(listen, allowPortZero: true)
        let listener = try ControlSocket.listen(on: endpoint)
        let stderr = FileHandle.standardError
        stderr.write("ringperf server listening on \(Endpoint(host: endpoint.host, port: listener.localPort))\n".data(using: .utf8)!)
        let deadline = timeout.map { Deadline.after(seconds: $0) }
        let served = try Session.serve(listener: listener, tests: once ? 1 : nil, deadline: deadline) { message in
            stderr.write("ringperf server: \(message)\n".data(using: .utf8)!)
        }
        if once && served == 0 { throw RingPerfError.timedOut("no test arrived within --timeout") }
    }
}

/// `ringperf client --connect HOST:PORT --test stream|maerts|rr --size BYTES --duration SECONDS …`.
public struct ClientCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "client",
        abstract: "Run one test against a ringperf server."
    )

    @Option(name: .long, help: ArgumentHelp("The server: IPv4, [IPv6] or localhost, with a port.", valueName: "host:port"))
    var connect: String

    @Option(name: .long, help: "stream (client → server), maerts (server → client) or rr (request/response).")
    var test: TestKind = .stream

    @Option(name: .long, help: "Bytes per send (stream/maerts) or per request and response (rr). Default 65536, rr: 1.")
    var size: Int?

    @Option(name: .long, help: "Seconds of load.")
    var duration: Double = 10

    @Option(name: .long, help: "Zero-copy sends: auto (probe, keep only if the kernel really avoids the copy), on, off.")
    var zerocopy: ZeroCopyMode = .auto

    @Flag(name: .long, help: "Print exactly one JSON object on stdout.")
    var json = false

    @Flag(name: .long, inversion: .prefixedNo, help: "Check every received byte against the pattern.")
    var verify = true

    @Option(name: .long, help: "TCP congestion control per socket, e.g. cubic, bbr; 'default' = the system's.")
    var congestion: String = Defaults.congestion

    public init() {}

    var sizeBytes: Int { size ?? test.defaultSizeBytes }

    /// The name passed to TCP_CONGESTION ("" = leave the system default).
    var congestionName: String { congestion == "default" ? "" : congestion }

    public func validate() throws {
        do {
            _ = try Endpoint.parse(connect)
            try RunLimits.validate(sizeBytes: sizeBytes, durationSeconds: duration)
        } catch {
            throw ValidationError("\(error)")
        }
        guard congestion.utf8.count < 16 else { throw ValidationError("--congestion: name too long") }
        // Checked here so that a typo fails before connecting (setsockopt would say only ENOENT).
        if let available = try? String(contentsOfFile: "/proc/sys/net/ipv4/tcp_available_congestion_control", encoding: .utf8),
           !congestionName.isEmpty, !available.split(whereSeparator: \.isWhitespace).contains(Substring(congestionName)) {
            throw ValidationError("--congestion: '\(congestion)' is not available here (\(available.trimmingCharacters(in: .whitespacesAndNewlines)); or 'default')")
        }
    }

    public func run() throws {
        let endpoint = try Endpoint.parse(connect)
        let request = TestRequest(test: test, sizeBytes: sizeBytes, durationSeconds: duration, zerocopy: zerocopy,
                                  verify: verify, congestion: congestionName)
        let report = try Session.runClient(endpoint: endpoint, request: request)
        if json {
            print(report.json)
        } else {
            print(report.table(title: "RINGPERF \(test.rawValue.uppercased()) TEST to \(endpoint) (io_uring, \(report.fields.first { $0.0 == "ring_taskrun" }.map { $0.1.text } ?? ""))"))
        }
        if !report.verified { throw RingPerfError.verification(report.verificationProblem) }
    }
}
