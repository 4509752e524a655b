import Dispatch
import Logging
import RingCast

/// The replica's way into the ring (ReplicaCore.swift): the readers queue entries in the bounded ingress, one
/// broadcaster task packs them into ring batches and hands each to the group; a full ingress blocks the readers
/// (backpressure), never drops.
extension ReplicaCore {
    /// Queues an entry (blocks while the ingress is full). False once stopped.
    func push(_ entry: RingEntry) -> Bool {
        let (admitted, waiting): (Bool, CheckedContinuation<Void, Never>?) = ingressMonitor.withLock {
            while !stopped && ingressBytes > 0 && ingressBytes + entry.encodedBytes > options.ingressBytesMax {
                producersWaiting += 1
                ingressMonitor.wait()
                producersWaiting -= 1
            }
            guard !stopped else { return (false, nil) }
            ingress.append(entry)
            ingressBytes += entry.encodedBytes
            // Wake the broadcaster only when it waits (a wake-up per request otherwise).
            defer { consumer = nil }
            return (true, consumer)
        }
        waiting?.resume()
        return admitted
    }

    /// Queues entries in order under one lock (blocks while the ingress is full). Returns how many were queued:
    /// fewer than all once stopped.
    func push(_ entries: [RingEntry]) -> Int {
        let (queued, waiting): (Int, CheckedContinuation<Void, Never>?) = ingressMonitor.withLock {
            var queued = 0
            for entry in entries {
                while !stopped && ingressBytes > 0 && ingressBytes + entry.encodedBytes > options.ingressBytesMax {
                    // The broadcaster must take what this thread queued before it waits for room.
                    if let waiting = consumer {
                        consumer = nil
                        waiting.resume()
                    }
                    producersWaiting += 1
                    ingressMonitor.wait()
                    producersWaiting -= 1
                }
                guard !stopped else { break }
                ingress.append(entry)
                ingressBytes += entry.encodedBytes
                queued += 1
            }
            defer { consumer = nil }
            return (queued, consumer)
        }
        waiting?.resume()
        return queued
    }

    /// Takes what fits one ring message (waits while empty). Nil once stopped.
    private func popBatch() async -> [RingEntry]? {
        while true {
            let empty: Bool = ingressMonitor.withLock { !stopped && ingressHead == ingress.count }
            guard empty else { break }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready: Bool = ingressMonitor.withLock {
                    guard !stopped && ingressHead == ingress.count else { return true }
                    precondition(consumer == nil, "one broadcaster waits at a time")
                    consumer = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        }
        return ingressMonitor.withLock { () -> [RingEntry]? in
            guard !stopped else { return nil }
            var entries: [RingEntry] = []
            var bytes = RingEntry.headerBytes
            while ingressHead < ingress.count, entries.count < Int(UInt16.max) {
                let entry = ingress[ingressHead]
                guard entries.isEmpty || bytes + entry.encodedBytes <= ringBatchBytesMax else { break }
                entries.append(entry)
                bytes += entry.encodedBytes
                ingressBytes -= entry.encodedBytes
                ingressHead += 1
            }
            if ingressHead == ingress.count {
                ingress.removeAll(keepingCapacity: true)
                ingressHead = 0
            } else if ingressHead > 4096 {
                ingress.removeFirst(ingressHead)
                ingressHead = 0
            }
            if producersWaiting > 0 { ingressMonitor.broadcast() }
            return entries
        }
    }

    func startBroadcaster() throws(SMRError) {
        broadcasterStarted = true
        Task.detached { [self] in
            await runBroadcaster()
            broadcasterDone.signal()
        }
    }

    /// One task for the replica's life: packs what the readers queued into ring messages and hands each to the
    /// group. `Group.broadcast` takes its fast path without suspending when the ring's queue has room, so a ring
    /// message costs no thread hop (profiled: a task and a semaphore per message were ~6 % of a replica's CPU);
    /// when the queue is full it suspends, and the ingress fills up behind it (backpressure to the readers).
    private func runBroadcaster() async {
        guard let group else { return }
        // One ring message in CPUCounters.sampleEvery is timed (one task: the sampler is its own).
        var sampler = CPUCounters.Sampler()
        while var entries = await popBatch() {
            let weight = sampler.next()
            let packStarted = weight > 0 ? threadCPUNanos() : 0
            // Barriers take their number now: the reads queued so far are served when this one is delivered.
            for position in entries.indices {
                guard case .barrier = entries[position] else { continue }
                let number: UInt64 = reads.withLock {
                    let number = nextBarrier
                    nextBarrier += 1
                    barriersInFlight[number] = readsForNextBarrier
                    readsForNextBarrier = []
                    barrierQueued = false
                    return number
                }
                entries[position] = .barrier(number: number)
            }
            let payload = RingBatch(replica: me, stampMillis: unixMillis(), entries: entries).encoded()
            if weight > 0 { CPUCounters.charge(cpu.broadcastNanos, since: packStarted, weight: weight) }
            do {
                try await group.broadcast(payload)
            } catch {
                logger.error("broadcast failed; the replica stops serving clients", metadata: ["error": "\(error)"])
                stop()
                return
            }
            lock.withLock { statistics.ringBatchesBroadcast += 1 }
        }
    }

    func stop() {
        let waiting: CheckedContinuation<Void, Never>? = ingressMonitor.withLock {
            stopped = true
            ingressMonitor.broadcast()
            defer { consumer = nil }
            return consumer
        }
        waiting?.resume()
    }

    /// Waits (at most 2 s) for the broadcaster task to end. Bounded because `shutdown()` is synchronous and may be
    /// called from a task: blocking a cooperative thread without bound while the broadcaster needs one to finish
    /// deadlocks on a small pool (seen in CI on 2 cores, when other suites' tests held the other thread). The task
    /// ends on its own anyway: `stop()` resumed it, and the group's shutdown fails a broadcast it waits in.
    func joinBroadcaster() {
        guard broadcasterStarted else { return }
        broadcasterStarted = false
        if broadcasterDone.wait(timeout: .now() + .seconds(2)) == .timedOut {
            logger.notice("the broadcaster task had not ended 2 s after shutdown (no thread free to run it); not waiting")
        }
    }
}
