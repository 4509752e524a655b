import Foundation
import RingCastJSON

/// The raw-link test both benchmarks run before their measurement (ringcast-bench and `ringcast-kv bench --lan`):
/// a ringperf stream (64 KiB sends) from one host to another, so that a throughput figure is read against what
/// plain TCP gets on the same links in the same run (ARCHITECTURE §3.1).
package enum RawLinkTest {
    /// Runs `ringperf server` through `serverCommand` and `ringperf client` through `clientCommand` (each maps
    /// ringperf's arguments to the executable and arguments that run it on its host), bounded in time; returns
    /// the client's JSON report (`throughput_mbit_s` and the rest). `poll` is called while waiting, with the
    /// seconds elapsed, and may throw to abandon the test (a stop signal); the server is stopped on every way out.
    package static func measure(
        ringperf: String, serverEndpoint: String, seconds: Double, congestion: String?, work: String,
        children: ChildGroup,
        serverCommand: ([String]) -> (executable: String, arguments: [String]),
        clientCommand: ([String]) -> (executable: String, arguments: [String]),
        poll: (Double) throws(BenchError) -> Void
    ) throws(BenchError) -> JSONValue {
        let (serverExecutable, serverArguments) = serverCommand([
            ringperf, "server", "--listen", serverEndpoint, "--once", "--timeout", format(seconds + 20),
        ])
        let server = try ChildProcess.spawn(name: "ringperf server", executable: serverExecutable,
                                            arguments: serverArguments,
                                            stdoutPath: work + "/ringperf-server.out", stderrPath: work + "/ringperf-server.err")
        children.add(server)
        defer { ChildGroup.stop([server], graceSeconds: 1) }
        let readyDeadline = Clock.now + 10
        while !server.stderrText().contains("listening") {
            try poll(0)
            guard server.poll() else {
                throw .rawLinkFailed("ringperf server exited (\(server.exitDescription ?? "?")) before listening:\n" +
                                     ChildProcess.tail(server.stderrText()))
            }
            guard Clock.now < readyDeadline else { throw .rawLinkFailed("ringperf server did not listen within 10 s") }
            usleep(20_000)
        }
        let (clientExecutable, clientArguments) = clientCommand([
            ringperf, "client", "--connect", serverEndpoint, "--test", "stream", "--size", "65536", "--duration", format(seconds), "--json",
        ] + (congestion.map { ["--congestion", $0] } ?? []))
        let client = try ChildProcess.spawn(name: "ringperf client", executable: clientExecutable,
                                            arguments: clientArguments,
                                            stdoutPath: work + "/ringperf-client.out", stderrPath: work + "/ringperf-client.err")
        children.add(client)
        let started = Clock.now
        let deadline = started + seconds + 20
        while client.poll() {
            try poll(Clock.now - started)
            guard Clock.now < deadline else {
                ChildGroup.stop([client])
                throw .rawLinkFailed("ringperf client still running after \(Int(seconds + 20)) s; killed")
            }
            usleep(50_000)
        }
        guard client.exitedCleanly else {
            throw .rawLinkFailed("ringperf client \(client.exitDescription ?? "?"):\n" + ChildProcess.tail(client.stderrText()))
        }
        let text = client.stdoutText().trimmingCharacters(in: .whitespacesAndNewlines)
        guard let line = text.split(separator: "\n").last, let value = try? JSONValue.parse(String(line)),
              value["throughput_mbit_s"]?.doubleValue != nil else {
            throw .rawLinkFailed("no throughput_mbit_s in ringperf client output: \(ChildProcess.tail(text, lines: 3))")
        }
        return value
    }
}
