/// Applying the suffix store (SuffixStore.swift) of a state transfer: deliveries queue while the state is held (a
/// provider streaming it at the cut, a joiner restoring it) and are applied in order once the hold ends (see
/// SnapshotTransfer.swift for the whole transfer).
extension ReplicaCore {
    /// Whether the state must not move (under `lock`): a provider's transfer is announced or streaming (unless it
    /// streams a copy, ``StateMachine/copyIsSnapshot``), or this joiner restores.
    var stateHeld: Bool { restoring || streamsActive > 0 || transfersPending.values.contains { !$0.byCopy } }

    /// Queues one delivery while the state is held (delivery thread, under `lock`); waits while the store is full.
    func enqueueSuffix(_ payload: [UInt8]) {
        var waited = false
        while !suffix.admits(payload.count) && !failed && !shuttingDown {
            // The hold ended and the drainer left while this thread was queueing: nobody else makes room.
            if !stateHeld && !draining {
                applySuffixHere()
                continue
            }
            if !waited {
                statistics.suffixFullWaits += 1
                waited = true
            }
            lock.wait()
        }
        // A failed joiner's state is not the group's, and a stopping replica applies nothing more: nothing to keep.
        guard !failed && !shuttingDown else { return }
        suffix.append(payload)
        statistics.suffixDeliveries += 1
        statistics.suffixBytesPeak = UInt64(suffix.peakBytes)
    }

    /// The delivery thread, after queueing (under `lock`): if the hold ended and no drainer is at work (it may
    /// have found the store empty and left between two deliveries of this thread), nobody else would apply what
    /// this thread just queued, so it applies the whole suffix itself, in order.
    func applyQueuedIfReleased() {
        if !stateHeld && !draining && !failed && !shuttingDown && !suffix.isEmpty { applySuffixHere() }
    }

    /// Applies everything queued, in order, on the calling thread (under `lock`; the state not held).
    private func applySuffixHere() {
        let taken = applyGroupOffThread { suffix.popFirst() }
        statistics.suffixApplied += UInt64(taken)
    }

    /// Applies the queued suffix in order once nothing holds the state, a few deliveries per `lock` hold, so that
    /// clients and the delivery thread (which queues behind it) get the lock in between. One drainer at a time.
    func drainSuffix() {
        let claimed: Bool = lock.withLock {
            guard !draining else { return false }
            draining = true
            return true
        }
        guard claimed else { return }
        var more = true
        while more {
            more = lock.withLock {
                guard !stateHeld, !failed, !shuttingDown, !suffix.isEmpty else {
                    draining = false
                    lock.broadcast()
                    return false
                }
                var room = Self.offThreadGroupMax
                let taken = applyGroupOffThread {
                    guard room > 0 else { return nil }
                    room -= 1
                    return suffix.popFirst()
                }
                statistics.suffixApplied += UInt64(taken)
                lock.broadcast() // room in the suffix for a waiting delivery; a waiting next transfer
                return true
            }
        }
    }
}
