public import CRingCastCore

/// One sans-IO Chain BFT replica core (`rc_chain.h`; spec chain-bft-spec.md, steps C2–C3, §9, §11, §14) with
/// the memory it lives in and the key ring it authenticates with: the one Swift wrapper of the C core that the
/// simulator and the tests drive. Batches and aborts are copied out of core memory into Swift values.
///
/// Not `Sendable`: a core belongs to one caller at a time.
public final class ChainCore {
    public let pointer: OpaquePointer
    public let settings: rc_chain_settings
    public let keyRing: ChainKeyRing
    private let memory: UnsafeMutableRawPointer

    /// Settings with the spec's defaults (CHK = 128 as [T§4.2.4]; history 384 as R-Aliph [T§6.3(a)], raised to
    /// CHK + batch when batches are larger).
    public static func settings(
        f: UInt32, self position: UInt32, instance: UInt64 = 1, clients: UInt32, batchCount: UInt32 = 16,
        batchBytes: UInt32 = 1 << 20, checkpointInterval: UInt32 = 128, historyMax: UInt32? = nil,
        outBatches: UInt32 = 8, checkpointRetransmitTicks: UInt32 = 0, crypto: rc_crypto
    ) -> rc_chain_settings {
        rc_chain_settings(
            f: f, self: position, instance: instance, clients_max: clients, batch_count_max: batchCount,
            batch_bytes_max: batchBytes, checkpoint_interval: checkpointInterval,
            history_max: historyMax ?? max(384, 2 * checkpointInterval + batchCount), out_batches_max: outBatches,
            checkpoint_retransmit_ticks: checkpointRetransmitTicks, crypto: crypto)
    }

    /// - Parameter settings: its `crypto` is replaced by `keyRing`'s table.
    /// - Throws: ``ChainError/code(_:)`` with -EINVAL (22) for settings outside rc_chain.h's rules.
    public init(_ settings: rc_chain_settings, keyRing: ChainKeyRing) throws(ChainError) {
        var settings = settings
        settings.crypto = keyRing.crypto
        let size = rc_chain_memory_size(&settings)
        guard size > 0 else { throw .code(-22) }
        memory = UnsafeMutableRawPointer.allocate(byteCount: (size + 15) & ~15, alignment: 16)
        var out: OpaquePointer?
        let rc = rc_chain_init(&out, memory, size, &settings)
        guard rc == 0, let out else {
            memory.deallocate()
            throw .code(rc)
        }
        pointer = out
        self.settings = settings
        self.keyRing = keyRing
    }

    deinit { memory.deallocate() }

    public var position: UInt32 { settings.`self` }
    public var nodes: UInt32 { 3 * settings.f + 1 }
    public var isHead: Bool { position == 0 }
    public var isTail: Bool { position == nodes - 1 }
    public var inSigmaLast: Bool { rc_chain_in_sigma_last(pointer) }

    /// C2 at the head: 0 ordered, 1 not new, -EBADMSG bad client MAC, -EAGAIN full, -ESHUTDOWN stopped.
    public func request(_ request: ChainRequest, clientMACs: [ChainMAC]) -> Int32 {
        precondition(clientMACs.count == Int(settings.f) + 1, "the client writes f+1 MACs")
        let macs = clientMACs.map(\.c)
        return request.op.withUnsafeBufferPointer { op in
            var r = rc_chain_request(client: request.client, timestamp: request.timestamp, op: op.baseAddress,
                                     op_bytes: UInt32(request.op.count), ref: request.ref)
            return macs.withUnsafeBufferPointer { rc_chain_on_request(pointer, &r, $0.baseAddress) }
        }
    }

    /// C3: 0 accepted, 1 duplicate, -EAGAIN full (hold it), -EPROTO stopped now, -ESHUTDOWN stopped before.
    /// - Parameter firstRef: when given, the refs the core keeps are firstRef, firstRef + 1, … (the batch's own otherwise).
    public func receive(_ batch: ChainBatch, firstRef: UInt64? = nil) -> Int32 {
        batch.withCBatch(firstRef: firstRef) { rc_chain_on_batch(pointer, $0) }
    }

    /// The next batch for the successor (the tail: the replies), with request bytes resolved by `op`.
    public func nextBatch(op: (UInt64) -> [UInt8]) -> ChainBatch? {
        var b = rc_chain_batch()
        guard rc_chain_next_batch(pointer, &b) == 1 else { return nil }
        return ChainBatch(b, op: op)
    }

    /// Every execution ready, in sn order.
    public func executions() -> [rc_chain_execution] {
        var all: [rc_chain_execution] = []
        var out = [rc_chain_execution](repeating: rc_chain_execution(), count: 64)
        while true {
            let count = out.withUnsafeMutableBufferPointer { rc_chain_next_executions(pointer, $0.baseAddress, 64) }
            all += out[0..<Int(count)]
            if count < 64 { return all }
        }
    }

    /// Σlast: the reply to execution `sn`. 0 or -EINVAL.
    public func reply(sn: UInt64, _ bytes: [UInt8]) -> Int32 {
        bytes.withUnsafeBufferPointer { rc_chain_on_reply(pointer, sn, $0.baseAddress, UInt32(bytes.count)) }
    }

    /// Every CHECKPOINT queued for sending.
    public func checkpoints() -> [rc_chain_checkpoint] {
        var all: [rc_chain_checkpoint] = []
        var c = rc_chain_checkpoint()
        while rc_chain_next_checkpoint(pointer, &c) == 1 { all.append(c) }
        return all
    }

    public func receive(checkpoint: rc_chain_checkpoint) -> Int32 {
        var c = checkpoint
        return rc_chain_on_checkpoint(pointer, &c)
    }

    /// P2: the signed ABORT for a valid PANIC, or the errno.
    public func panic(_ panic: rc_chain_panic) -> Result<ChainAbort, ChainError> {
        var p = panic
        var a = rc_chain_abort()
        let rc = rc_chain_on_panic(pointer, &p, &a)
        return rc == 0 ? .success(ChainAbort(a)) : .failure(.code(rc))
    }

    /// D13: the signed ABORT a stopped replica answers a CHAIN request with; -EBUSY (16) when not stopped.
    public func stoppedAbort(client: UInt32, timestamp: UInt64) -> Result<ChainAbort, ChainError> {
        var a = rc_chain_abort()
        let rc = rc_chain_stopped_abort(pointer, client, timestamp, &a)
        return rc == 0 ? .success(ChainAbort(a)) : .failure(.code(rc))
    }

    public func tick() { rc_chain_on_tick(pointer) }

    public var mode: rc_chain_mode { rc_chain_mode_get(pointer) }
    public var stopped: Bool { mode == RC_CHAIN_STOPPED }
    public var stopReason: rc_chain_stop_reason { rc_chain_stop_reason_get(pointer) }
    public var stats: rc_chain_stats { rc_chain_stats_get(pointer) }
    public var lastSN: UInt64 { rc_chain_last_sn(pointer) }
    public var stableCheckpoint: UInt64 { rc_chain_stable_checkpoint(pointer) }
    public var historyCount: UInt32 { rc_chain_history_count(pointer) }

    /// The logged request at `sn`, while kept.
    public func history(_ sn: UInt64) -> rc_chain_history_view? {
        var view = rc_chain_history_view()
        return rc_chain_history_at(pointer, sn, &view) == 0 ? view : nil
    }
}

/// The client's side of Chain (C1, C4, P1) over the client's key ring (rc_chain.h's rc_chain_client_*).
public struct ChainClientAuthenticator {
    public let keyRing: ChainKeyRing
    public let f: UInt32
    public let client: UInt32
    public let instance: UInt64

    public init(keyRing: ChainKeyRing, f: UInt32, client: UInt32, instance: UInt64 = 1) {
        self.keyRing = keyRing; self.f = f; self.client = client; self.instance = instance
    }

    private var settings: rc_chain_client_settings {
        rc_chain_client_settings(f: f, client: client, instance: instance, crypto: keyRing.crypto)
    }

    /// C1: the f+1 MACs for r_1 … r_{f+1}.
    public func authenticate(timestamp: UInt64, op: [UInt8]) throws(ChainError) -> [ChainMAC] {
        var s = settings
        var macs = [rc_crypto_mac](repeating: rc_crypto_mac(), count: Int(f) + 1)
        let rc = op.withUnsafeBufferPointer { rc_chain_client_authenticate(&s, timestamp, $0.baseAddress, UInt32(op.count), &macs) }
        guard rc == 0 else { throw .code(rc) }
        return macs.map(ChainMAC.init)
    }

    /// C1 over D(req) from ``digest(_:)``: a client that keeps D(req) per request in flight hashes each payload once.
    public func authenticate(request: ChainDigest) throws(ChainError) -> [ChainMAC] {
        var s = settings
        var digest = request.c
        var macs = [rc_crypto_mac](repeating: rc_crypto_mac(), count: Int(f) + 1)
        let rc = rc_chain_client_authenticate_digest(&s, &digest, &macs)
        guard rc == 0 else { throw .code(rc) }
        return macs.map(ChainMAC.init)
    }

    /// C4 over D(req) from ``digest(_:)``.
    public func commits(request: ChainDigest, sn: UInt64, reply: [UInt8], historyDigest: ChainDigest,
                        replyMACs: [ChainMAC]) -> Bool {
        guard replyMACs.count == Int(f) + 1 else { return false }
        var s = settings
        var requestDigest = request.c, history = historyDigest.c
        let macs = replyMACs.map(\.c)
        let rc = reply.withUnsafeBufferPointer { r in
            rc_chain_client_check_reply_digest(&s, &requestDigest, sn, r.baseAddress, UInt32(reply.count), &history, macs)
        }
        return rc == 1
    }

    /// C4: whether the tail's reply commits (all f+1 ρ of Σlast valid over D(reply) computed here).
    public func commits(timestamp: UInt64, op: [UInt8], sn: UInt64, reply: [UInt8], historyDigest: ChainDigest,
                        replyMACs: [ChainMAC]) -> Bool {
        guard replyMACs.count == Int(f) + 1 else { return false }
        var s = settings
        var digest = historyDigest.c
        let macs = replyMACs.map(\.c)
        let rc = op.withUnsafeBufferPointer { o in
            reply.withUnsafeBufferPointer { r in
                rc_chain_client_check_reply(&s, timestamp, o.baseAddress, UInt32(op.count), sn, r.baseAddress,
                                            UInt32(reply.count), &digest, macs)
            }
        }
        return rc == 1
    }

    /// P1: the PANIC for `replica`.
    public func panic(timestamp: UInt64, replica: UInt32) throws(ChainError) -> rc_chain_panic {
        var s = settings
        var out = rc_chain_panic()
        let rc = rc_chain_client_panic(&s, timestamp, replica, &out)
        guard rc == 0 else { throw .code(rc) }
        return out
    }
}

extension ChainBatch {
    /// The ordering MACs replica `position` writes over this batch's content (rc_chain_ordering_block), with that
    /// replica's key ring: what a Byzantine replica uses to re-authenticate content it altered.
    public func orderingBlock(f: UInt32, position: UInt32, keyRing: ChainKeyRing) -> [ChainMAC] {
        var crypto = keyRing.crypto
        var out = [rc_crypto_mac](repeating: rc_crypto_mac(), count: Int(f) + 1)
        let count = withCBatch { rc_chain_ordering_block(&crypto, f, position, $0, &out) }
        precondition(count >= 0, "rc_chain_ordering_block failed: \(count)")
        return out.prefix(Int(count)).map(ChainMAC.init)
    }
}
