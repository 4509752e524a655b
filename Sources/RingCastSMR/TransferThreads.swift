#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import RingCast
/// The state transfer's threads and their shutdown (SnapshotTransfer.swift, SnapshotRestore.swift, Learner.swift),
/// and its counters in the statistics frame.
extension ReplicaCore {
    /// Transfer counters appended to the statistics frame after a marker (so that tools find them whatever other
    /// counters come before): snapshots sent, bytes sent, restored, suffix deliveries, suffix peak bytes, suffix
    /// bytes now, waits for room, held now (1/0), has state (1/0), transfers expired, excluded (1/0); then the
    /// learner's: its in-memory stash peak bytes, spill file peak bytes, spilled batches, pacing waits, fallbacks;
    /// then the provider's peak of a learner's feed queue, bytes; the learner's restores raised from SCHED_IDLE.
    func transferCounters() -> [UInt64] {
        lock.withLock {
            [Self.transferCountersMarker, statistics.snapshotsSent, statistics.snapshotBytesSent,
             statistics.snapshotsRestored, statistics.suffixDeliveries, statistics.suffixBytesPeak, UInt64(suffix.bytes),
             statistics.suffixFullWaits, stateHeld || !suffix.isEmpty ? 1 : 0, hasState ? 1 : 0,
             statistics.transfersExpired, excluded ? 1 : 0, statistics.learnerStashBytesPeak,
             statistics.learnerSpillBytesPeak, statistics.learnerSpilledBatches, statistics.learnerPacingWaits,
             statistics.learnerFallbacks, statistics.learnerFeedBytesPeak, statistics.learnerRestoresRaised]
        }
    }

    /// Shutdown: a delivery waiting for room in the suffix store, and the transfer threads, give up.
    func stopApplying() {
        lock.withLock {
            shuttingDown = true
            lock.broadcast()
        }
    }

    /// Shutdown, first step: a paced stream stops waiting, a joiner's pull stops reading (its socket is shut down),
    /// so that neither keeps the transfer threads or a connection thread alive.
    func stopTransfers() {
        pacing.withLock {
            transfersStopping = true
            if pullSocket >= 0 { shutdown(pullSocket, Int32(SHUT_RDWR)) }
            pacing.broadcast()
        }
    }

    /// Starts a transfer thread (tracked, joined by ``joinTransferThreads()``); joins those that ended before.
    func startTransferThread(_ body: @escaping @Sendable () -> Void) throws(SMRError) {
        let (ended, id): ([Thread], Int) = lock.withLock {
            var handles: [Thread] = []
            transferThreadsEnded.removeAll { id in
                guard let handle = transferThreads.removeValue(forKey: id) else { return false }
                handles.append(handle)
                return true
            }
            nextTransferThread += 1
            transferThreadsRunning += 1
            return (handles, nextTransferThread)
        }
        for handle in ended { handle.join() } // they ended: returns at once
        do {
            let thread = try Thread { [self] in
                body()
                lock.withLock {
                    transferThreadsEnded.append(id)
                    transferThreadsRunning -= 1
                    lock.broadcast()
                }
            }
            lock.withLock { transferThreads[id] = thread }
        } catch {
            lock.withLock { transferThreadsRunning -= 1 }
            throw error
        }
    }

    /// Shutdown, last step (after the group stopped): waits at most `timeoutMillis` for the transfer threads, then
    /// joins those that ended. Why bounded: shutdown may run on a thread of Swift's cooperative pool (two on this
    /// machine); the transfer threads are threads of their own and need none of it, but a pull stuck in `connect`
    /// (at most 5 s) must not hold the caller longer than the broadcaster's wait does (``joinBroadcaster()``).
    /// - Returns: the transfer threads still running (not joined).
    @discardableResult
    func joinTransferThreads(timeoutMillis: Int = 2_000) -> Int {
        let (handles, running): ([Thread], Int) = lock.withLock {
            let deadline = monotonicNanos() + UInt64(timeoutMillis) * 1_000_000
            while transferThreadsRunning > 0 && monotonicNanos() < deadline { _ = lock.wait(untilNanos: deadline) }
            var handles: [Thread] = []
            for id in transferThreadsEnded {
                if let handle = transferThreads.removeValue(forKey: id) { handles.append(handle) }
            }
            transferThreadsEnded.removeAll { transferThreads[$0] == nil }
            return (handles, transferThreadsRunning)
        }
        for handle in handles { handle.join() }
        if running > 0 {
            logger.notice("state-transfer threads had not ended in time after shutdown; not waiting",
                          metadata: ["running": "\(running)", "waited_ms": "\(timeoutMillis)"])
        }
        return running
    }

    /// "TRANSFER" in ASCII.
    static var transferCountersMarker: UInt64 { 0x5452_414E_5346_4552 }
}

/// SO_SNDTIMEO / SO_RCVTIMEO on a blocking socket: a send or receive that makes no progress this long fails.
func setSocketTimeout(_ fd: Int32, _ option: Int32, millis: Int) {
    var value = timeval(tv_sec: millis / 1000, tv_usec: (millis % 1000) * 1000)
    setsockopt(fd, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<timeval>.size))
}
