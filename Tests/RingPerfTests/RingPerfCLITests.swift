import ArgumentParser
import Foundation
import Testing
@testable import RingPerfKit

@Suite("ringperf command line")
struct RingPerfCLITests {
    /// The message ArgumentParser would print for these arguments, or nil when they parse.
    private func clientError(_ arguments: [String]) -> String? {
        do {
            _ = try RingPerfCommand.parseAsRoot(["client"] + arguments)
            return nil
        } catch {
            return RingPerfCommand.message(for: error)
        }
    }

    @Test(arguments: [
        (["--connect", "127.0.0.1:5201", "--size", "0"], "--size must be 1...16777216 bytes"),
        (["--connect", "127.0.0.1:5201", "--size", "16777217"], "--size must be 1...16777216 bytes"),
        (["--connect", "127.0.0.1:5201", "--duration", "0"], "--duration must be > 0"),
        (["--connect", "127.0.0.1:5201", "--duration=-3"], "--duration must be > 0"),
        (["--connect", "127.0.0.1:5201", "--zerocopy", "maybe"], "maybe"),
        (["--connect", "127.0.0.1:5201", "--test", "udp"], "udp"),
        (["--connect", "127.0.0.1"], "expected HOST:PORT"),
        (["--connect", "127.0.0.1:0"], "port must be a number in 1...65535"),
        (["--connect", "127.0.0.1:70000"], "port must be a number in 1...65535"),
        (["--connect", "::1:5201"], "write IPv6 addresses in brackets"),
        (["--connect", "example.com:5201"], "is not an IPv4/IPv6 literal or localhost"),
        (["--test", "rr"], "--connect"),
    ])
    func badClientArgumentsAreRejected(arguments: [String], expected: String) throws {
        let message = try #require(clientError(arguments))
        #expect(message.contains(expected), "message was: \(message)")
    }

    @Test func goodClientArgumentsParseWithDefaults() throws {
        let parsed = try RingPerfCommand.parseAsRoot(["client", "--connect", "[::1]:5201", "--test", "rr", "--json"])
        let client = try #require(parsed as? ClientCommand)
        #expect(client.sizeBytes == 1, "rr defaults to 1-byte requests like netperf TCP_RR")
        #expect(client.duration == 10)
        #expect(client.zerocopy == .auto)
        let stream = try #require(try RingPerfCommand.parseAsRoot(["client", "--connect", "localhost:1"]) as? ClientCommand)
        #expect(stream.sizeBytes == 65536)
    }

    @Test(arguments: [
        (["server", "--listen", "nonsense"], "expected HOST:PORT"),
        (["server", "--listen", "127.0.0.1:1", "--timeout", "0"], "--timeout must be > 0"),
        (["server"], "--listen"),
    ])
    func badServerArgumentsAreRejected(arguments: [String], expected: String) {
        do {
            _ = try RingPerfCommand.parseAsRoot(arguments)
            Issue.record("parsed: \(arguments)")
        } catch {
            #expect(RingPerfCommand.message(for: error).contains(expected))
            #expect(RingPerfCommand.exitCode(for: error) != .success)
        }
    }

    @Test func endpointsRoundTrip() throws {
        #expect(try Endpoint.parse("[::1]:80").description == "[::1]:80")
        #expect(try Endpoint.parse("localhost:7").host == "localhost")
        #expect(try Endpoint.parse("0.0.0.0:0", allowPortZero: true).port == 0)
    }

    @Test func controlLinesRoundTrip() throws {
        let request = TestRequest(test: .maerts, sizeBytes: 1000, durationSeconds: 1.5, zerocopy: .on, verify: false, congestion: "")
        #expect(try TestRequest.parse(request.line) == request)
        var result = SideResult()
        result.bytesReceived = 123
        result.error = -104
        result.cpuThreadNanos = 9
        #expect(try SideResult.parse(result.line) == result)
        #expect(throws: RingPerfError.self) { try TestRequest.parse("RINGPERF/1 test=stream size=0 duration_ns=1 zerocopy=on verify=1 congestion=-") }
        #expect(throws: RingPerfError.self) { try SideResult.parse("RESULT error=0") }
    }
}

@Suite("ringperf over loopback", .serialized, .timeLimit(.minutes(1)))
struct RingPerfLoopbackTests {
    /// Serves `tests` tests on an ephemeral loopback port in a thread; returns the endpoint.
    private func startServer(tests: Int) throws -> Endpoint {
        let listener = try ControlSocket.listen(on: Endpoint(host: "127.0.0.1", port: 0))
        let endpoint = Endpoint(host: "127.0.0.1", port: listener.localPort)
        let fd = listener.take()
        Thread {
            let listener = ControlSocket(adopting: fd, peer: "test")
            _ = try? Session.serve(listener: listener, tests: tests, deadline: .after(seconds: 30)) { _ in }
        }.start()
        return endpoint
    }

    @Test func clientToClosedPortFailsClearly() throws {
        let listener = try ControlSocket.listen(on: Endpoint(host: "127.0.0.1", port: 0))
        let port = listener.localPort
        _ = consume listener // closed: nothing listens on the port any more
        let request = TestRequest(test: .stream, sizeBytes: 100, durationSeconds: 1, zerocopy: .off, verify: true, congestion: "")
        #expect(throws: RingPerfError.refused("127.0.0.1:\(port)")) {
            _ = try Session.runClient(endpoint: Endpoint(host: "127.0.0.1", port: port), request: request)
        }
        #expect(RingPerfError.refused("x:1").description.contains("refused"))
    }

    @Test func serverOnBusyPortFailsClearly() throws {
        let listener = try ControlSocket.listen(on: Endpoint(host: "127.0.0.1", port: 0))
        let busy = Endpoint(host: "127.0.0.1", port: listener.localPort)
        #expect(throws: RingPerfError.addressInUse(busy.description)) { _ = try ControlSocket.listen(on: busy) }
    }

    @Test(arguments: TestKind.allCases)
    func shortRunMovesVerifiedData(test: TestKind) throws {
        let endpoint = try startServer(tests: 1)
        let request = TestRequest(test: test, sizeBytes: test == .rr ? 64 : 65536, durationSeconds: 0.3,
                                  zerocopy: .auto, verify: true, congestion: "")
        let report = try Session.runClient(endpoint: endpoint, request: request)
        #expect(report.verified, "\(report.verificationProblem)")
        #expect(report.throughputMbitPerSecond > 0)
        #expect(report.cpuPercent(report.local) > 0)
        if test == .rr {
            #expect(report.transactionsPerSecond > 0)
            #expect((report.latencyMicrosP50 ?? 0) > 0)
            #expect((report.latencyMicrosMax ?? 0) >= (report.latencyMicrosP99 ?? 0))
        }
        let json = report.json
        for key in ["\"test\"", "\"size_bytes\"", "\"duration_s\"", "\"throughput_mbit_s\"", "\"cpu_local_percent\"",
                    "\"cpu_remote_percent\"", "\"zerocopy_mode\"", "\"zerocopy_fraction\"", "\"cpu_local_s_per_gb\""] {
            #expect(json.contains(key))
        }
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        #expect(object?["zerocopy_fraction"] as? Double == 0, "loopback always copies")
        if test == .rr { #expect(object?["latency_us_p99"] != nil && object?["transactions_per_s"] != nil) }
    }
}
