/// Errors of the Chain BFT replica and client.
public enum ChainBFTError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A transport call failed with -errno.
    case transport(String, Int32)
    case badAddress(String)
    /// A key file is missing, readable by others, or malformed (the text says which and what to do).
    case keyFile(String)
    /// Settings outside their documented ranges.
    case invalidSettings(String)
    /// The core or the key ring refused (its -errno).
    case core(String, Int32)
    /// The replica or client was stopped.
    case stopped
    /// No reply in time and no abort either (replicas unreachable): the outcome of the request is unknown.
    case timedOut
    /// The instance aborted (2f+1 signed ABORTs, spec P3). `inAbortHistory`: the request is in the abort history,
    /// so the next instance executes it (Abort Order); false: it was never ordered and never will be in this run.
    /// Raised while no next instance is wired in (see ``ChainClient/Settings/switchInstance``).
    case aborted(instance: UInt64, inAbortHistory: Bool)
    /// The instance aborted and the switch seam allowed no further instance (``ChainNextInstance/instancesMax``):
    /// with Chain instances only, a crashed replica makes every next instance abort as well (Backup, a later issue,
    /// is what survives it). `inAbortHistory` as for ``aborted(instance:inAbortHistory:)``.
    case instancesExhausted(instance: UInt64, inAbortHistory: Bool)
    /// The reply did not decode as the service's output (a correct replica never sends that: the C4 check passed,
    /// so f+1 replicas computed these bytes).
    case undecodableReply(String)
    /// The request's encoding was refused by the replicas' state machine.
    case rejectedOperation(String)

    public var description: String {
        switch self {
        case let .transport(what, rc): return "chain transport: \(what) failed: errno \(-rc)"
        case let .badAddress(text): return "chain: not an address: \(text)"
        case let .keyFile(text): return "chain key file: \(text)"
        case let .invalidSettings(text): return "chain: invalid settings: \(text)"
        case let .core(what, rc): return "chain core: \(what) failed: errno \(-rc)"
        case .stopped: return "chain: stopped"
        case .timedOut: return "chain: no reply and no abort in time (outcome unknown)"
        case let .aborted(instance, inHistory):
            return "chain: instance \(instance) aborted; the request is \(inHistory ? "" : "not ")in the abort history"
        case let .instancesExhausted(instance, inHistory):
            return "chain: instance \(instance) aborted and no next instance may start (Chain needs all 3f+1 replicas; Backup would survive a crash); the request is \(inHistory ? "" : "not ")in the abort history"
        case let .undecodableReply(text): return "chain: reply does not decode: \(text)"
        case let .rejectedOperation(text): return "chain: the replicas rejected the operation: \(text)"
        }
    }
}
