/// The two ends of a test: the control dialogue around one C data phase, every step with a deadline.
///
/// Dialogue (one TCP connection to the server's HOST:PORT, text lines):
///   client → `RINGPERF/1 test=… size=… duration_ns=… zerocopy=… verify=… congestion=…`
///   server → `OK` (or `ERR <reason>`); the client then opens the data connection to the same HOST:PORT
///   both   → data phase (C, io_uring)
///   server → `RESULT error=… bytes_received=… cpu_process_ns=… …` (its side's numbers)
enum Session {
    static let negotiateSeconds = 10.0
    /// Slack after --duration for draining, EOF and the results.
    static let drainSeconds = 20.0

    /// Runs one test against `endpoint` and returns both ends' numbers.
    static func runClient(endpoint: Endpoint, request: TestRequest, cpuScope: String = "process") throws(RingPerfError) -> Report {
        var control = try ControlSocket.connect(to: endpoint, deadline: .after(seconds: negotiateSeconds))
        try control.send(line: request.line, deadline: .after(seconds: negotiateSeconds))
        let reply = try control.readLine(deadline: .after(seconds: negotiateSeconds), phase: "waiting for the server's OK")
        guard reply == "OK" else {
            throw .protocolViolation(reply.hasPrefix("ERR ") ? "server refused the test: \(reply.dropFirst(4))" : "unexpected reply '\(reply.prefix(80))'")
        }
        let role = DataPhase.roles(for: request.test).client
        let (local, latency) = try DataPhase.run(role: role, fd: nil, peer: endpoint, request: request,
                                                 timeoutSeconds: request.durationSeconds + drainSeconds)
        if local.error != 0 && local.bytesSent == 0 && local.bytesReceived == 0 {
            throw RingPerfError.fromErrno(local.error, endpoint: endpoint.description, call: "data connection to")
        }
        let line = try control.readLine(deadline: .after(seconds: drainSeconds), phase: "waiting for the server's results")
        let remote = try SideResult.parse(line)
        return Report(request: request, local: local, remote: remote, latency: latency, cpuScope: cpuScope)
    }

    /// Serves one test on an accepted control connection; the data connection is the listener's next one.
    /// Every step ends by `life` at the latest (the server's --timeout).
    static func serveOne(control: consuming ControlSocket, listener: borrowing ControlSocket,
                         life: Deadline?) throws(RingPerfError) -> SideResult {
        func within(_ seconds: Double) -> Deadline { Deadline.after(seconds: seconds).capped(by: life) }
        let line = try control.readLine(deadline: within(negotiateSeconds), phase: "reading the request")
        let request: TestRequest
        do {
            request = try TestRequest.parse(line)
        } catch {
            try? control.send(line: "ERR \(error)", deadline: .after(seconds: 1))
            throw error
        }
        try control.send(line: "OK", deadline: within(negotiateSeconds))
        guard let data = try listener.accept(until: within(negotiateSeconds)) else {
            throw .timedOut("waiting for the data connection")
        }
        let role = DataPhase.roles(for: request.test).server
        let phase = within(request.durationSeconds + drainSeconds)
        let (result, _) = try DataPhase.run(role: role, fd: data.take(), peer: nil, request: request,
                                            timeoutSeconds: max(0.001, Double(phase.remainingNanoseconds) / 1e9))
        try control.send(line: result.line, deadline: within(negotiateSeconds))
        return result
    }

    /// Accepts and serves tests until `tests` were served (nil: forever) or `deadline` passes.
    /// - Returns: how many tests were served.
    static func serve(listener: borrowing ControlSocket, tests: Int?, deadline: Deadline?,
                      log: (String) -> Void) throws(RingPerfError) -> Int {
        var served = 0
        while tests.map({ served < $0 }) ?? true {
            if let deadline, deadline.expired { break }
            guard let control = try listener.accept(until: Deadline.after(seconds: 1).capped(by: deadline)) else { continue }
            do {
                let result = try serveOne(control: control, listener: listener, life: deadline)
                log("served a test: sent \(result.bytesSent) B, received \(result.bytesReceived) B, error \(result.error)")
            } catch {
                log("test failed: \(error)")
                if tests != nil { throw error }
            }
            served += 1
        }
        return served
    }
}
