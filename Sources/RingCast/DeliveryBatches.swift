import Synchronization

/// The deliveries of a ``Node`` as a bounded asynchronous sequence of batches, in total order.
///
/// A consumer thread takes deliveries from the engine's delivery ring, **copies** each payload into a Swift array
/// (counted in ``Node/Statistics/payloadCopies``: this path copies by design; use the synchronous handler of
/// ``Node/init(configuration:deliveryHandler:)`` for zero copies), releases them, and buffers at most
/// ``Node/Limits/deliveryBatchesBufferedMax`` batches. When the buffer is full the thread stops taking from the
/// ring; the ring fills, the engine stops delivering and reading from its predecessor, and the whole ring slows
/// to this consumer. That is the backpressure; nothing here grows without bound.
///
/// Iterate it from one task. The sequence ends (`nil`) after ``Node/shutdown()`` and throws when the engine fails,
/// after the batches delivered before the failure.
public struct DeliveryBatches: AsyncSequence, Sendable {
    public typealias Element = [Delivery]
    public typealias Failure = RingCastError

    let buffer: DeliveryBuffer

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(buffer: buffer) }

    public struct AsyncIterator: AsyncIteratorProtocol {
        public typealias Element = [Delivery]
        public typealias Failure = RingCastError

        let buffer: DeliveryBuffer

        public mutating func next() async throws(RingCastError) -> [Delivery]? {
            try await buffer.next().get()
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async throws(RingCastError) -> [Delivery]? {
            try await buffer.next().get()
        }
    }
}

/// The bounded hand-over between the delivery consumer thread and the tasks iterating ``DeliveryBatches``.
final class DeliveryBuffer: Sendable {
    typealias Outcome = Result<[Delivery]?, RingCastError>

    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Outcome, Never>
    }

    private struct State {
        var batches = FIFO<[Delivery]>()
        var waiters = FIFO<Waiter>()
        var end: RingCastError?? = .none
        var producerBlocked = false
        var nextWaiterID: UInt64 = 1
        var bufferedHighWater = 0
    }

    let capacity: Int
    private let state = Mutex(State())
    private let room: WakePipe

    init(capacity: Int) throws(RingCastError) {
        precondition(capacity >= 1)
        self.capacity = capacity
        room = try WakePipe()
    }

    deinit { room.close() }

    /// The most batches that were ever buffered at once (≤ capacity).
    var bufferedHighWater: Int { state.withLock { $0.bufferedHighWater } }

    /// Hands a batch over; blocks (in poll, not spinning) while the buffer is full. Returns false when `stopFD`
    /// became readable first (shutdown), dropping the batch.
    func push(_ batch: [Delivery], stopFD: Int32) -> Bool {
        while true {
            let accepted: Bool = state.withLock { state in
                if let waiter = state.waiters.popFirst() {
                    waiter.continuation.resume(returning: .success(batch))
                    return true
                }
                if state.batches.count < capacity {
                    state.batches.append(batch)
                    state.bufferedHighWater = max(state.bufferedHighWater, state.batches.count)
                    return true
                }
                state.producerBlocked = true
                return false
            }
            if accepted { return true }
            let ready = waitReadable([room.readFD, stopFD], timeoutMillis: 100)
            room.drain()
            if ready[1] { return false }
        }
    }

    /// Ends the sequence: `nil` for a clean end, else the failure (after the buffered batches).
    func finish(_ failure: RingCastError?) {
        state.withLock { state in
            guard case .none = state.end else { return }
            state.end = .some(failure)
            while let waiter = state.waiters.popFirst() {
                waiter.continuation.resume(returning: failure.map { .failure($0) } ?? .success(nil))
            }
        }
    }

    func next() async -> Outcome {
        let id = state.withLock { state in
            defer { state.nextWaiterID += 1 }
            return state.nextWaiterID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Outcome, Never>) in
                let immediate: Outcome? = state.withLock { state in
                    if let batch = state.batches.popFirst() {
                        if state.producerBlocked {
                            state.producerBlocked = false
                            room.signal()
                        }
                        return .success(batch)
                    }
                    if case let .some(failure) = state.end { return failure.map { .failure($0) } ?? .success(nil) }
                    if Task.isCancelled { return .success(nil) }
                    state.waiters.append(Waiter(id: id, continuation: continuation))
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.remove(where: { $0.id == id }) }
            waiter?.continuation.resume(returning: .success(nil))
        }
    }
}
