internal import CRingCast
import Synchronization

/// Own payloads the engine may still read: handed to `rc_engine_broadcast` and not yet delivered back.
///
/// The engine sends from the broadcaster's memory and delivers its own messages as views of that same memory
/// (rc_engine.h, "Memory"), so each payload array is retained here — a reference, not a copy of the bytes —
/// from just before the hand-over until its own delivery is released. Own deliveries come back in token order
/// (LCR delivers an origin's messages in its sequence order), so a FIFO suffices.
final class InFlight: Sendable {
    private struct Entry {
        let token: UInt64
        let payload: [UInt8]
    }

    private let entries = Mutex(FIFO<Entry>())

    var count: Int { entries.withLock { $0.count } }

    func append(token: UInt64, payload: [UInt8]) {
        entries.withLock { $0.append(Entry(token: token, payload: payload)) }
    }

    /// Undoes the last `append` when the engine refused the hand-over.
    func removeLast(token: UInt64) {
        entries.withLock { queue in
            let entry = queue.removeLast()
            precondition(entry?.token == token, "in-flight table out of step with the broadcast producer")
        }
    }

    /// Drops the payloads of the own deliveries in `batch` (after their views were released).
    func release(batch: UnsafePointer<rc_engine_delivery>, count: Int) {
        var ownSeen = false
        for index in 0..<count where batch[index].own {
            ownSeen = true
            break
        }
        guard ownSeen else { return }
        entries.withLock { queue in
            for index in 0..<count where batch[index].own {
                let entry = queue.popFirst()
                precondition(entry?.token == batch[index].token,
                             "own delivery token \(batch[index].token) is not the oldest in flight (\(entry?.token ?? 0))")
            }
        }
    }

    /// Frees everything (only once the engine thread has ended).
    func removeAll() {
        let all = entries.withLock { $0.removeAll() }
        _ = all
    }
}
