public import RingCastChain
internal import CRingCastCore

/// Aliph's order of protocols for ``RingCastChain/AbstractReplica`` (spec §2.3, §13.1), without Quorum (RingCast
/// does not have it): Chain (instance 1) → Backup (2) → Chain (3) → Backup (4) → …, next(i) = i+1. A Chain instance
/// after a Backup takes a Backup proof (``RingCastChain/ChainCore/expectBackupProof()``); the replica decides that
/// from the instance number, never the client.
public struct AliphInstanceFactory: AbstractInstanceFactory {
    public let chain: ChainInstanceFactory
    /// PBFT settings of this replica (the same for every Backup instance).
    public let pbft: PBFT.Settings
    public let schedule: Backup.Schedule
    /// The application state a Backup instance runs on (the replica's; the factory does not own it).
    public let machine: (UInt64) -> any BackupStateMachine

    public init(chain: ChainInstanceFactory, pbft: PBFT.Settings, schedule: Backup.Schedule = Backup.Schedule(),
                machine: @escaping (UInt64) -> any BackupStateMachine) {
        precondition(pbft.replica == chain.settings.`self`, "one replica: the same position in Chain and PBFT")
        self.chain = chain
        self.pbft = pbft
        self.schedule = schedule
        self.machine = machine
    }

    public func makeInstance(_ instance: UInt64) throws(ChainError) -> any AbstractInstance {
        if Backup.Order.isBackup(instance) { return try makeBackup(instance) }
        let core = try chain.makeChain(instance)
        if instance > 1 { try core.expectBackupProof() }
        return core
    }

    /// Backup instance i with k = ⌈C·2^m⌉, m its index among Backup instances.
    public func makeBackup(_ instance: UInt64) throws(ChainError) -> Backup.Instance {
        do {
            return try Backup.Instance(
                instance: instance, k: schedule.k(m: Backup.Order.backupIndex(instance)), settings: pbft,
                keyRing: chain.keyRing, chainCheckpointInterval: chain.settings.checkpoint_interval,
                historyMax: chain.settings.history_max, machine: machine(instance))
        } catch {
            throw .code(-22) // EINVAL: settings out of range
        }
    }
}
