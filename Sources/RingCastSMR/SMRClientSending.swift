#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import RingCast

/// The client's window and send path (SMRClient.swift): a bounded number of requests in flight (callers wait for a
/// slot), each request's frame (a command carries its session number and the lowest one still in flight, so the
/// replica can drop cached replies below it), and the writes — one send per burst of queued requests, resent in
/// order after a failover (SMRClientReader.swift).
extension SMRClient {
    func acquireSlot() async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let immediate: Bool? = monitor.withLock {
                if closed { return false }
                if slots > 0 {
                    slots -= 1
                    return true
                }
                slotWaiters.append(continuation)
                return nil
            }
            if let immediate { continuation.resume(returning: immediate) }
        }
    }

    func releaseSlot() {
        let waiter: CheckedContinuation<Bool, Never>? = monitor.withLock {
            if !slotWaiters.isEmpty { return slotWaiters.removeFirst() }
            slots += 1
            return nil
        }
        waiter?.resume(returning: true)
    }

    func call(_ kind: Kind) async throws(SMRClientError) -> SMRRawReply {
        let result = await withCheckedContinuation { continuation in
            enqueue(kind, waiter: .continuation(continuation))
        }
        return try result.get()
    }

    /// Puts a request in flight and queues it for sending; on a closed client it finishes at once.
    func enqueue(_ kind: Kind, waiter: SMRWaiter) {
        let deadline = monotonicNanos() + UInt64(options.timeoutMillis) * 1_000_000
        // One lock per request: in flight and queued for sending together (``queueForSendingLocked(_:)``).
        let schedule: Bool? = monitor.withLock {
            if closed { return nil }
            defer { nextRequest += 1 }
            var kind = kind
            if case let .command(_, bytes) = kind {
                kind = .command(sequence: nextSequence, bytes: bytes)
                insertCommandNumberLocked(nextSequence)
                nextSequence += 1
            }
            inflight[nextRequest] = Inflight(kind: kind, deadlineNanos: deadline, waiter: waiter)
            return queueForSendingLocked(nextRequest) && !sendTaskWithheld
        }
        guard let schedule else { return waiter.finish(.failure(.closed)) }
        // The send is left to a task queued behind the tasks that are runnable now (typically the callers a
        // batch of replies just resumed), so their requests leave in one `send`: profiled, a `send` per
        // request was a third of a loaded client's CPU. While the reader thread hands out a batch of replies, it
        // sends what their completions queued itself, once it is done (``runReader()``).
        if schedule { Task { self.sendQueued() } }
    }

    /// The frame of an in-flight request (under `monitor`).
    func frame(_ id: UInt64, _ kind: Kind) -> ClientFrame {
        switch kind {
        case .open:
            return .openSession(request: id)
        case let .command(sequence, bytes):
            // The lowest command number still in flight (this one is among them).
            let firstUnacknowledged = min(sequence, commandNumbers.first ?? sequence)
            return .command(request: id, session: session ?? 0, sequence: sequence,
                            firstUnacknowledged: firstUnacknowledged, command: bytes)
        case let .read(consistency, bytes):
            return .read(request: id, consistency: consistency, minIndex: seenIndex, query: bytes)
        case .statistics:
            return .statistics(request: id)
        case .digest:
            return .digest(request: id)
        }
    }

    /// Records a command number entering `inflight` (under `monitor`): appended (numbers grow), or inserted in
    /// order after a new session restarted them.
    func insertCommandNumberLocked(_ number: UInt64) {
        guard let last = commandNumbers.last, last > number else { return commandNumbers.append(number) }
        commandNumbers.insert(number, at: Self.position(of: number, in: commandNumbers))
    }

    /// Takes a request out of `inflight` (under `monitor`), and its command number out of `commandNumbers`.
    func removeInflightLocked(_ id: UInt64) -> Inflight? {
        guard let request = inflight.removeValue(forKey: id) else { return nil }
        if case let .command(number, _) = request.kind {
            let at = Self.position(of: number, in: commandNumbers)
            precondition(at < commandNumbers.count && commandNumbers[at] == number,
                         "an in-flight command's number is not tracked")
            commandNumbers.remove(at: at)
        }
        return request
    }

    /// The first position in ascending `numbers` whose value is ≥ `number` (binary search).
    static func position(of number: UInt64, in numbers: [UInt64]) -> Int {
        var low = 0
        var high = numbers.count
        while low < high {
            let middle = (low + high) / 2
            if numbers[middle] < number { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// Queues request `id` for sending (under `monitor`); true when the caller is to schedule ``sendQueued()`` (no one is sending
    /// and no send is scheduled: otherwise that one takes it along).
    func queueForSendingLocked(_ id: UInt64) -> Bool {
        outgoing.append(id)
        guard !sending, !sendScheduled, !dispatching else { return false }
        sendScheduled = true
        return true
    }

    /// Appends request `id`'s frame to `sendBuffer` unless it left the window or was sent on this connection
    /// (under `monitor` and `sendMonitor`). Marked sent in place: no copy of the request in and out of the table.
    func encodeUnsentLocked(_ id: UInt64, resent: Bool) {
        guard let position = inflight.index(forKey: id),
              inflight.values[position].sentGeneration != generation else { return }
        if resent { stats.resent += 1 }
        inflight.values[position].sentGeneration = generation
        // The kind alone (not the whole request with its waiter: fewer retains per request).
        frame(id, inflight.values[position].kind).encode(into: &sendBuffer)
    }

    /// Sends every in-flight request not yet sent on the current connection (after a reconnection).
    func sendPending() {
        monitor.withLock { resendAll = true }
        sendQueued()
    }

    /// Sends the queued requests. Combining: one thread sends at a time, and it looks again before it stops, so
    /// requests queued meanwhile leave together in its next `send`. `sendMonitor` still covers every write, so
    /// the descriptor is never closed or replaced under one.
    func sendQueued() {
        let proceed: Bool = monitor.withLock {
            sendScheduled = false
            guard !sending else { return false }
            sending = true
            return true
        }
        guard proceed else { return }
        while true {
            let finished: Bool = sendMonitor.withLock {
                sendBuffer.removeAll(keepingCapacity: true)
                let (target, more): (Int32, Bool) = monitor.withLock {
                    guard !outgoing.isEmpty || resendAll else {
                        sending = false
                        return (-1, false)
                    }
                    let all = resendAll
                    resendAll = false
                    // Not connected: they stay unsent, and the reconnection resends every unsent request.
                    guard fd >= 0 else {
                        outgoing.removeAll(keepingCapacity: true)
                        return (-1, true)
                    }
                    if all {
                        for id in inflight.keys.sorted() { encodeUnsentLocked(id, resent: true) }
                    } else {
                        for id in outgoing { encodeUnsentLocked(id, resent: false) }
                    }
                    // After the loop (its copy of `outgoing` is gone): the buffer is unique and keeps its capacity.
                    outgoing.removeAll(keepingCapacity: true)
                    return (fd, true)
                }
                guard more else { return true }
                // A failed send is seen by the reader (the connection broke) and everything is resent elsewhere.
                if target >= 0, sendBuffer.count > 0 {
                    _ = Socket.sendAll(target, sendBuffer.bytes)
                }
                return false
            }
            if finished { return }
        }
    }
}
