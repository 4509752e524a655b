import Foundation
import Synchronization

/// Plain `ringperf`: a server thread on 127.0.0.1 (ephemeral port) and the three tests against it.
enum SelfTest {
    struct Outcome {
        var reports: [Report]
        var problems: [String]
        var table: String
        var passed: Bool { problems.isEmpty && reports.count == TestKind.allCases.count && reports.allSatisfy(\.verified) }
    }

    /// Runs stream, maerts and rr for `durationSeconds` each. Both ends share this process, so CPU is
    /// reported per thread (the data-phase thread of each end) rather than per process.
    static func run(durationSeconds: Double, zerocopy: ZeroCopyMode, congestion: String) throws(RingPerfError) -> Outcome {
        let listener = try ControlSocket.listen(on: Endpoint(host: "127.0.0.1", port: 0))
        let endpoint = Endpoint(host: "127.0.0.1", port: listener.localPort)
        let listenerFd = listener.take()
        let serverError = Mutex<String?>(nil)
        let finished = DispatchSemaphore(value: 0)
        let tests = TestKind.allCases.count
        let lifeSeconds = Double(tests) * (durationSeconds + Session.drainSeconds + Session.negotiateSeconds)
        let thread = Thread {
            let listener = ControlSocket(adopting: listenerFd, peer: endpoint.description)
            do {
                _ = try Session.serve(listener: listener, tests: tests, deadline: .after(seconds: lifeSeconds)) { _ in }
            } catch {
                serverError.withLock { $0 = "server: \(error)" }
            }
            finished.signal()
        }
        thread.start()
        var outcome = Outcome(reports: [], problems: [], table: "")
        for test in TestKind.allCases {
            let request = TestRequest(test: test, sizeBytes: test.defaultSizeBytes, durationSeconds: durationSeconds,
                                      zerocopy: zerocopy, verify: true, congestion: congestion)
            do {
                let report = try Session.runClient(endpoint: endpoint, request: request, cpuScope: "thread")
                outcome.reports.append(report)
                if !report.verified { outcome.problems.append("\(test.rawValue): \(report.verificationProblem)") }
            } catch {
                outcome.problems.append("\(test.rawValue): \(error)")
            }
        }
        if finished.wait(timeout: .now() + lifeSeconds) == .timedOut { outcome.problems.append("server thread did not finish") }
        if let message = serverError.withLock({ $0 }) { outcome.problems.append(message) }
        let rows = outcome.reports.enumerated().map { index, report in
            report.table(title: "RINGPERF SELF-TEST over \(endpoint) (CPU per thread; both ends in this process)", header: index == 0)
        }
        outcome.table = rows.joined(separator: "\n")
        return outcome
    }
}
