public import RingCastChain

/// The application under a Backup instance: the replica's state machine, which the wrapper sets to the end of the
/// init history and then runs the k committed requests on.
public protocol BackupStateMachine: AnyObject {
    /// Sets the state to the end of `initHistory` (restore the checkpoint base, re-execute the rest: D10).
    func install(_ initHistory: ChainInitHistory)
    /// Runs a committed request at Chain position `position` (positions continue the init history's) and returns
    /// its reply.
    func execute(position: UInt64, request: ChainRequest) -> [UInt8]
    /// Whether the state this instance installed already executed (client, timestamp) — an entry of the init history,
    /// or a request before its checkpoint base — and then its reply (empty when no longer known); nil: not executed
    /// yet. Such a request is answered ``Outcome/inInitHistory`` with that reply and never executed again: a client
    /// whose request the previous instance executed without answering it sends it here again (the Backup's PBFT reply
    /// table starts empty; Chain has t_j[c] at the base for this, rc_chain_init_base_timestamps). The answer must be
    /// the same at every correct replica (a function of the order up to the end of the init history).
    func executedReply(client: UInt32, timestamp: UInt64) -> [UInt8]?
}

extension BackupStateMachine {
    public func executedReply(client: UInt32, timestamp: UInt64) -> [UInt8]? { nil }
}

extension Backup {
    /// Where a Backup instance is (spec §13.1).
    public enum Phase: Equatable, Sendable {
        /// No valid init history ordered yet: ordered requests are ignored.
        case waiting
        /// The init history is installed; this many of the k commits are left.
        case committing(remaining: UInt64)
        /// k requests committed: every later request aborts with the signed history.
        case aborting
    }

    /// The first byte of the result PBFT orders and caches for a request, so that a retransmission gets the same
    /// outcome (PBFT's reply table, exactly-once).
    public enum Outcome: UInt8, Sendable {
        case committed = 0
        case aborted = 1
        /// Ordered before a valid init history: the client must send the init history with its request.
        case ignored = 2
        /// Already in the init history (the client commits it from there, ``AbstractResubmission``).
        case inInitHistory = 3
    }

    /// What the caller does after an event.
    public enum Action: Sendable {
        case send(to: UInt32, PBFT.Envelope)
        case broadcast(PBFT.Envelope)
        /// A committed (result after the outcome byte), ignored or in-init-history reply for a client.
        case reply(PBFT.Reply)
        /// The signed abort history, for the client it names.
        case abort(ChainAbort)
        case installed(ChainInitHistory)
        case executed(position: UInt64, ChainRequest)
        case enteredView(UInt64)
    }

    /// A planted bug for the simulator (never set elsewhere).
    public enum WrapperFault: String, Sendable, CaseIterable {
        case none
        /// Commits k+1 requests: the abort history then exceeds what some clients were told committed before it.
        case commitBeyondK = "backup-commit-beyond-k"
    }

    /// One replica's Backup instance i (spec §13.1): PBFT underneath, sans-IO like it. It ignores ordered requests
    /// until one carries a valid init history (checked exactly as a Chain replica checks it:
    /// ``RingCastChain/ChainInitHistory/validateChainProof(f:checkpointInterval:clientsMax:historyMax:instance:keyRing:)``),
    /// installs that history, commits the next k requests in PBFT's order, and then aborts every request with its
    /// signed abort history naming next(i) = i+1.
    public final class Instance: AbstractInstance {
        public let instanceNumber: UInt64
        public var nextInstanceNumber: UInt64 { instanceNumber + 1 }
        public let k: UInt64
        public let replica: PBFT.Replica
        let keyRing: ChainKeyRing
        /// Chain's CHK (the abort history's positions are Chain positions) and history bound.
        public let chainCheckpointInterval: UInt32
        public let historyMax: UInt32
        let machine: any BackupStateMachine
        let fault: WrapperFault
        public private(set) var phase: Phase = .waiting
        public private(set) var initHistory: ChainInitHistory?
        /// The executed sequence, init history first (the abort history lists it whole, or past half of history_max
        /// the part after its last checkpoint boundary: ``abortHistoryBase()``).
        public private(set) var entries: [ChainAbort.Entry] = []
        public private(set) var committedCount: UInt64 = 0
        public private(set) var left = false
        private var lastHistoryDigest: ChainDigest = .zero

        /// - Parameters:
        ///   - k: from ``Schedule/k(m:)``.
        ///   - historyMax: the next Chain instance's history_max: k is capped so the abort history fits it.
        public init(instance: UInt64, k: UInt64, settings: PBFT.Settings, keyRing: ChainKeyRing,
                    chainCheckpointInterval: UInt32, historyMax: UInt32, machine: any BackupStateMachine,
                    fault: WrapperFault = .none) throws(PBFT.SettingsError) {
            precondition(k >= 1, "k ≥ 1")
            instanceNumber = instance
            self.k = k
            replica = try PBFT.Replica(settings: settings, keyRing: keyRing)
            self.keyRing = keyRing
            self.chainCheckpointInterval = chainCheckpointInterval
            self.historyMax = historyMax
            self.machine = machine
            self.fault = fault
        }

        /// Validates `initHistory` (the composer enters a Backup only on a valid one). Backup installs the first
        /// valid init history PBFT orders, not this one: every correct replica must install the same.
        public func install(_ initHistory: ChainInitHistory) throws(ChainInitRefusal) -> ChainInitOutcome {
            guard phase == .waiting else { return .ignored }
            try validate(initHistory)
            return .installed
        }

        public func leave() { left = true }

        func validate(_ ih: ChainInitHistory) throws(ChainInitRefusal) {
            try ih.validateChainProof(f: replica.settings.f, checkpointInterval: chainCheckpointInterval,
                                      clientsMax: replica.settings.clientsMax, historyMax: historyMax,
                                      instance: instanceNumber, keyRing: keyRing)
        }

        /// One event for PBFT; its actions mapped to Backup's.
        public func handle(_ event: PBFT.Event) throws(PBFT.EventError) -> [Action] {
            if case .request(let r) = event, left, phase == .aborting,
               r.request.timestamp > replica.lastExecutedTimestamp(client: r.request.client) {
                // Left for next(i): the order is over here, so answer late clients straight away (like D13); a
                // retransmission of an executed request still gets its cached reply through PBFT.
                return [.abort(abortHistory(client: r.request.client, timestamp: r.request.timestamp))]
            }
            var executor = Executor(instance: self)
            let actions = try replica.handle(event, app: &executor)
            var out = executor.actions
            for a in actions {
                switch a {
                case .send(let to, let e): out.append(.send(to: to, e))
                case .broadcast(let e): out.append(.broadcast(e))
                case .enteredView(let v): out.append(.enteredView(v))
                case .executed: break
                case .reply(let r):
                    if r.result.first == Outcome.aborted.rawValue {
                        out.append(.abort(abortHistory(client: r.client, timestamp: r.timestamp)))
                    } else {
                        out.append(.reply(r))
                    }
                }
            }
            return out
        }

        /// The signed abort history for one aborted request of (client, timestamp).
        public func abortHistory(client: UInt32, timestamp: UInt64) -> ChainAbort {
            precondition(phase == .aborting, "a Backup aborts only after its k commits")
            let (base, baseDigest, suffix) = abortHistoryBase()
            return ChainAbort.backupHistory(replica: replica.me, client: client, timestamp: timestamp,
                                            instance: instanceNumber, base: base, baseDigest: baseDigest,
                                            entries: suffix, keyRing: keyRing)
        }

        /// Once the executed sequence holds more than half of `history_max`, the abort history starts at the last Chain
        /// checkpoint boundary it reaches, with H there as the base digest, instead of at the base this instance
        /// entered with: the design choice of spec §13.1 ([T] footnote 10, "align Backup's switch with a checkpoint").
        /// Why: while a replica is down no Chain checkpoint becomes stable (§14 needs all 3f+1); a Backup that handed
        /// on its whole executed sequence (its init history and its k, up to `history_max`) made the next Chain
        /// instance enter with its history full, and the composition stalled after a few times `history_max` commits
        /// (ChainBackupTests). Why only past half: a shorter sequence fits, and handing it on whole keeps what a
        /// moved base takes away — a replica that did not execute the Backup's commits (behind, or slow to get there)
        /// can still enter the next Chain instance and FETCH them (spec §12), where a base beyond its state would need
        /// state transfer.
        /// Safe: the f+1 identical signed histories the next instance needs include a correct replica's, whose H at the
        /// boundary is the digest of PBFT's order up to it, and every request committed so far is in the prefix that
        /// digest stands for or in the entries after it, exactly as with a stable checkpoint (§14: a history of length
        /// ≤ cc·CHK counts as a prefix of st_cc). A Chain replica of the next instance puts its state there from its own
        /// snapshot at that boundary (D10); one that did not execute that far cannot enter, as before.
        public func abortHistoryBase() -> (base: UInt64, digest: ChainDigest, entries: [ChainAbort.Entry]) {
            let ih = initHistory!
            let chk = UInt64(chainCheckpointInterval)
            let first = ih.base * chk
            let boundary = (first + UInt64(entries.count)) / chk
            guard boundary > ih.base, entries.count > Int(historyMax) / 2 else { return (ih.base, ih.baseDigest, entries) }
            let cut = Int(boundary * chk - first)
            precondition(entries[cut - 1].sn == boundary * chk, "the entries are consecutive from the base")
            return (boundary, entries[cut - 1].historyDigest, Array(entries[cut...]))
        }

        /// PBFT's application: the wrapper's rules for each ordered request.
        func execute(_ request: PBFT.Request, _ out: inout [Action]) -> [UInt8] {
            switch phase {
            case .waiting:
                guard let ih = request.initHistory, (try? validate(ih)) != nil else { return [Outcome.ignored.rawValue] }
                enter(ih, &out)
                return commit(request, &out)
            case .committing:
                return commit(request, &out)
            case .aborting:
                return [Outcome.aborted.rawValue]
            }
        }

        private func enter(_ ih: ChainInitHistory, _ out: inout [Action]) {
            initHistory = ih
            let digests = ih.historyDigests(keyRing: keyRing)
            entries = zip(ih.entries, digests).map { e, h in
                var e = e
                e.historyDigest = h
                return e
            }
            lastHistoryDigest = digests.last ?? ih.baseDigest
            machine.install(ih)
            // The executed sequence (init history and the k) stays within the next Chain instance's history bound:
            // it bounds this instance's memory, and a replica's snapshots reach back that far (its rollback log).
            let room = UInt64(historyMax) - UInt64(min(UInt32(ih.entries.count), historyMax))
            let budget = min(k, room) + (fault == .commitBeyondK ? 1 : 0)
            phase = budget == 0 ? .aborting : .committing(remaining: budget)
            out.append(.installed(ih))
        }

        private func commit(_ request: PBFT.Request, _ out: inout [Action]) -> [UInt8] {
            guard case .committing(let remaining) = phase else { return [Outcome.aborted.rawValue] }
            if entries.contains(where: { $0.client == request.client && $0.timestamp == request.timestamp }) {
                // Deterministic: every correct replica installed the same IH on the same state.
                return [Outcome.inInitHistory.rawValue] + (machine.executedReply(client: request.client,
                                                                                 timestamp: request.timestamp) ?? [])
            }
            if let reply = machine.executedReply(client: request.client, timestamp: request.timestamp) {
                return [Outcome.inInitHistory.rawValue] + reply // executed before the base: not again
            }
            let base = UInt64(initHistory!.base) * UInt64(chainCheckpointInterval)
            let position = base + UInt64(entries.count) + 1
            let chainRequest = ChainRequest(client: request.client, timestamp: request.timestamp, op: request.op)
            let d = ChainDigest.request(client: request.client, timestamp: request.timestamp, op: request.op, keyRing: keyRing)
            lastHistoryDigest = lastHistoryDigest.extended(sn: position, request: d, keyRing: keyRing)
            entries.append(ChainAbort.Entry(sn: position, client: request.client, timestamp: request.timestamp,
                                            requestDigest: d, historyDigest: lastHistoryDigest))
            let result = machine.execute(position: position, request: chainRequest)
            committedCount += 1
            out.append(.executed(position: position, chainRequest))
            phase = remaining <= 1 ? .aborting : .committing(remaining: remaining - 1)
            return [Outcome.committed.rawValue] + result
        }
    }

    struct Executor: PBFTApplication {
        let instance: Instance
        var actions: [Action] = []

        mutating func execute(sn: UInt64, request: PBFT.Request) -> [UInt8] {
            instance.execute(request, &actions)
        }
    }
}
