import ArgumentParser

/// `ringcast-sim`: the round model (§2.2.2) and randomized schedules over the real LCR core.
public struct SimCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "ringcast-sim",
        abstract: "Simulates the LCR ring protocol over the real LCR core: the paper's round model and randomized runs.",
        discussion: """
        Round model (default; thesis §2.2.2): every round each process sends at most one frame to its \
        successor and receives at most one. K senders broadcast continuously; the report gives the \
        throughput in complete broadcasts per round against Theorem 2.5.1's bound (1, or n/(n-1) when all \
        n send), each sender's share (§2.5.2 fairness), and the latency of a lone broadcast against \
        §2.5.3's 2n-2 rounds. The first max(rounds/10, 4n) rounds are warm-up and not measured.
          ringcast-sim --nodes 5 --senders 3 --rounds 100000 --fairness on

        Randomized mode: each seed draws n (2...9), small queue maxima, batching, fairness, a broadcast \
        pattern, per-link FIFO delays and the schedule; after each run the checkers test validity, \
        integrity, uniform agreement, total order, uniformity and liveness.
          ringcast-sim --random --seeds 10000 --first-seed 1
          ringcast-sim --random --seed 42 --trace      (replays one seed and prints its events)

        Membership mode: each seed runs 3...7 members through view changes (crashes, partitions, joins, \
        leaves) with the membership core and the real LCR core, and checks the properties across views.
          ringcast-sim --membership --seeds 2000 [--first-seed 1] [--json]
          ringcast-sim --membership --seed 42 --trace  (replays one seed and prints its events)

        Chain mode: each seed runs n = 3f+1 real Chain BFT cores (rc_chain.h) and 1...6 clients, with at most one \
        Byzantine party injected around correct cores (a replica that bypasses its successor, drops or forges \
        MACs, tampers with content, order or sequence numbers; a lying tail or Σlast member; a client whose MACs \
        are valid only for the head; a replica crashing for longer than a switch; a replica forwarding forged init \
        histories or answering FETCH with wrong bodies). A panic leads to a switch: clients build the next instance's \
        init history from 2f+1 ABORTs, replicas check and install it, fetch missing bodies and continue (next(i) = \
        i+1, a new Chain instance, up to a per-seed number of instances). Checks Validity, Commit Order, Abort Order, \
        Init Order (and that every installed init history is P3 of a valid proof), Termination, Progress without \
        faults and across a crash, and that no correct client commits a reply no correct replica computed.
          ringcast-sim --chain --seeds 500 [--first-seed 1] [--behaviour forge-mac|crash|forged-init|lying-fetch|…] [--f 2] [--json]
          ringcast-sim --chain --seed 42 --trace       (replays one seed and prints its events)
          ringcast-sim --chain --seeds 50 --chain-bug client-trusts-tail   (the checkers must catch it)

        Backup mode: each seed runs one Aliph Backup instance (n = 3f+1 PBFT cores under the Backup wrapper) entered \
        with a Chain init history and left with f+1 signed abort histories that a real Chain core of the next \
        instance must install, with f faulty replicas driven around correct cores (crash, crashed primary, \
        equivocation, forged view-change certificates, forged abort histories). --composition runs Chain → Backup → \
        Chain → … through each replica's AbstractReplica with one replica down throughout (every request commits as \
        k doubles).
          ringcast-sim --backup --seeds 500 [--backup-behaviour equivocate|crash-primary|…] [--f 2] [--json]
          ringcast-sim --backup --seeds 10 --backup-bug backup-prepare-quorum-short   (the checkers must catch it)
          ringcast-sim --backup --composition --seeds 100

        Exit status: 0 when every check passed; 1 when a property was violated (with --plant-bug: 0 when \
        the planted bug was caught, 1 when it slipped through); 64 for invalid options.
        """
    )

    /// On/off switch values for `--fairness`.
    public enum Switch: String, ExpressibleByArgument, CaseIterable, Sendable {
        case on, off
    }

    @Option(help: "Processes in the ring (2...16).")
    public var nodes: Int = 5

    @Option(help: "K: the first K ring positions broadcast continuously (default: all nodes).")
    public var senders: Int?

    @Option(name: .customLong("sender-set"), help: ArgumentHelp("Exactly which ring positions broadcast, e.g. 0,2,4.", valueName: "list"))
    public var senderSet: String?

    @Option(help: "Rounds to simulate, warm-up included.")
    public var rounds: Int = 100_000

    @Option(help: "Rounds not measured (default: max(rounds/10, 4n)).")
    public var warmupRounds: Int?

    @Option(help: "§2.5.2 fairness mechanism: on or off.")
    public var fairness: Switch = .on

    @Option(help: "Send-queue maximum (the window) of every core (default: 8n).")
    public var sendQueueMax: Int?

    @Option(help: "Forward-queue maximum; must exceed --send-queue-max (default: send + 1).")
    public var forwardQueueMax: Int?

    @Option(help: "Pending maximum; at least nodes × (send + forward) (default: that minimum).")
    public var pendingMax: Int?

    @Flag(help: "Randomized mode instead of the round model.")
    public var random = false

    @Flag(help: "Membership mode: randomized view changes over the membership core and the real LCR core.")
    public var membership = false

    @Option(help: "Membership mode: plant a bug to prove the checkers can fail: none, install-without-fill or skip-force-delivery.")
    public var membershipBug: MembershipSimulation.PlantedBug = .none

    @Flag(help: "Chain mode: randomized runs of the Chain BFT core with injected Byzantine behaviour.")
    public var chain = false

    @Option(help: "Chain mode: plant a bug to prove the checkers can fail: none, client-trusts-tail or abort-history-skip.")
    public var chainBug: ChainSimulation.PlantedBug = .none

    @Option(name: .customLong("behaviour"), help: "Chain mode: pin the Byzantine behaviour instead of drawing it per seed.")
    public var chainBehaviour: ChainSimulation.Behaviour?

    @Option(name: .customLong("f"), help: "Chain mode: pin f (1 or 2) instead of drawing it per seed.")
    public var chainF: Int?

    @Flag(help: "Backup mode: randomized runs of Aliph's Backup instance (PBFT cores under the Backup wrapper) between two Chain instances.")
    public var backup = false

    @Option(help: "Backup mode: plant a bug to prove the checkers can fail: none, backup-prepare-quorum-short or backup-commit-beyond-k.")
    public var backupBug: BackupSimulation.PlantedBug = .none

    @Flag(help: "Backup mode: Chain → Backup → Chain → … through each replica's AbstractReplica with one replica down throughout (conformance test 10).")
    public var composition = false

    @Option(help: "Backup mode: pin the faulty replicas' behaviour instead of drawing it per seed.")
    public var backupBehaviour: BackupSimulation.Behaviour?

    @Option(help: "Randomized mode: how many consecutive seeds to run (default 100).")
    public var seeds: Int?

    @Option(help: "Randomized mode: the first seed of --seeds.")
    public var firstSeed: UInt64 = 1

    @Option(help: "Randomized mode: run (replay) exactly this seed.")
    public var seed: UInt64?

    @Flag(help: "With --seed: print every event of the run.")
    public var trace = false

    @Option(help: "Plant a bug into every core to prove the checkers can fail: none or deliver-unstable.")
    public var plantBug: PlantedBug = .none

    @Flag(help: "One JSON object on standard output instead of the report.")
    public var json = false

    public init() {}

    public mutating func validate() throws {
        if backup { return try validateBackup() }
        if backupBug != .none || backupBehaviour != nil || composition {
            throw ValidationError("--backup-bug, --backup-behaviour and --composition belong to backup mode: add --backup")
        }
        if chain { return try validateChain() }
        if chainBug != .none || chainBehaviour != nil || chainF != nil {
            throw ValidationError("--chain-bug, --behaviour and --f belong to chain mode: add --chain")
        }
        if membership { return try validateMembership() }
        if membershipBug != .none { throw ValidationError("--membership-bug belongs to membership mode: add --membership") }
        if random {
            if seed != nil && seeds != nil { throw ValidationError("--seed and --seeds exclude each other") }
            if let seeds, seeds < 1 { throw ValidationError("--seeds must be at least 1, got \(seeds)") }
            if trace && seed == nil { throw ValidationError("--trace needs --seed (one run)") }
            if trace && json { throw ValidationError("--trace and --json exclude each other") }
            let roundModelOnly = [("--senders", senders != nil), ("--sender-set", senderSet != nil),
                                  ("--warmup-rounds", warmupRounds != nil), ("--send-queue-max", sendQueueMax != nil),
                                  ("--forward-queue-max", forwardQueueMax != nil), ("--pending-max", pendingMax != nil)]
            for (name, given) in roundModelOnly where given {
                throw ValidationError("\(name) belongs to the round model; --random draws its own settings per seed")
            }
            return
        }
        for (name, given) in [("--seeds", seeds != nil), ("--seed", seed != nil), ("--trace", trace)] where given {
            throw ValidationError("\(name) belongs to randomized mode: add --random")
        }
        if senders != nil && senderSet != nil { throw ValidationError("--senders and --sender-set exclude each other") }
        if !(2...RoundModel.nodesMax).contains(nodes) {
            throw ValidationError("--nodes must be in 2...\(RoundModel.nodesMax), got \(nodes)")
        }
        if let senders, !(1...nodes).contains(senders) {
            throw ValidationError("--senders must be in 1...\(nodes) (the nodes), got \(senders)")
        }
        if rounds < 1 { throw ValidationError("--rounds must be at least 1, got \(rounds)") }
        do {
            try RoundModel.validate(roundModelSettings())
            var probe = RoundModel.QueueSettings(sendQueueMax: sendQueueMax, forwardQueueMax: forwardQueueMax,
                                                 pendingMax: pendingMax)
            if probe.sendQueueMax == nil { probe.sendQueueMax = 8 * nodes }
            try probe.check(nodes: nodes)
        } catch {
            throw ValidationError(error.description.replacingOccurrences(of: "invalid settings: ", with: ""))
        }
    }

    /// The round-model settings these options describe.
    /// - Throws: `SimError.invalidSettings` for a malformed --sender-set.
    public func roundModelSettings() throws(SimError) -> RoundModel.Settings {
        let senderList: [Int]
        if let senderSet {
            let parts = senderSet.split(separator: ",", omittingEmptySubsequences: false)
            var parsed: [Int] = []
            for part in parts {
                guard let value = Int(String(part.filter { !$0.isWhitespace })) else {
                    throw .invalidSettings("--sender-set must list ring positions like 0,2,4; '\(part)' is not one")
                }
                parsed.append(value)
            }
            senderList = parsed
        } else {
            senderList = Array(0..<(senders ?? nodes))
        }
        return RoundModel.Settings(
            nodes: nodes, senders: senderList, rounds: rounds, warmupRounds: warmupRounds,
            fairness: fairness == .on,
            queues: RoundModel.QueueSettings(sendQueueMax: sendQueueMax, forwardQueueMax: forwardQueueMax,
                                             pendingMax: pendingMax),
            plantedBug: plantBug)
    }

    /// Runs what the options ask for and renders it.
    /// - Returns: the text for standard output and whether the run passed (see the exit status).
    public func execute() throws(SimError) -> (output: String, passed: Bool) {
        if backup { return try executeBackup() }
        if chain { return try executeChain() }
        if membership { return executeMembership() }
        let expectViolations = plantBug != .none
        if random, let seed {
            let report = try RandomSimulation.run(seed: seed, plantedBug: plantBug, trace: trace)
            let text = json ? SimOutput.json(report) : SimOutput.text(report)
            return (text, (report.violations > 0) == expectViolations)
        }
        if random {
            let sweep = try RandomSimulation.sweep(firstSeed: firstSeed, count: seeds ?? 100, plantedBug: plantBug)
            let text = json ? SimOutput.json(sweep) : SimOutput.text(sweep)
            return (text, (sweep.violations > 0) == expectViolations)
        }
        let report = try RoundModel.run(roundModelSettings())
        let text = json ? SimOutput.json(report) : SimOutput.text(report)
        return (text, (report.violations > 0) == expectViolations)
    }

    public func run() throws {
        let result: (output: String, passed: Bool)
        do {
            result = try execute()
        } catch {
            throw ValidationError(error.description)
        }
        print(result.output)
        if !result.passed { throw ExitCode.failure }
    }
}
