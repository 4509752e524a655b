import Dispatch
import Logging
import RingCast

/// The replica's state as a snapshot (ReplicaCore.swift): written and read in the order sessions, machine, and the
/// digest that tools and tests compare across replicas.
extension ReplicaCore {
    /// The header, the session table, then the machine: one canonical stream (of the replica's own state).
    func writeSnapshot(into writer: inout SnapshotWriter) throws(SnapshotError) {
        try Self.writeSnapshot(FrozenCut(machine: machine, sessions: sessions, index: appliedIndex,
                                         orderedMillis: orderedMillis), into: &writer)
    }

    /// The same stream of a state captured at a cut (a provider streaming a copy while apply goes on).
    static func writeSnapshot(_ cut: borrowing FrozenCut, into writer: inout SnapshotWriter) throws(SnapshotError) {
        try writer.uint64(cut.index)
        try writer.uint64(cut.orderedMillis)
        try cut.sessions.snapshot(into: &writer)
        try cut.machine.snapshot(into: &writer)
        try writer.flush()
    }

    /// Reads a snapshot into `machine` and `sessions` (values the caller installs once the whole stream was read,
    /// so that the replica's own state is never half-restored); returns its applied index and ordered clock.
    static func readSnapshot(from reader: inout SnapshotReader, machine: inout Machine,
                             sessions: inout SessionTable) throws(SnapshotError) -> (index: UInt64, orderedMillis: UInt64) {
        let index = try reader.uint64()
        let ordered = try reader.uint64()
        try sessions.restore(from: &reader)
        try machine.restore(from: &reader)
        guard try reader.isAtEnd() else { throw SnapshotError("trailing bytes after the state machine's state") }
        return (index, ordered)
    }

    func digest() throws(SMRError) -> (index: UInt64, digest: UInt64) {
        let result: Result<(index: UInt64, digest: UInt64), SnapshotError> = lock.withLock {
            nonisolated(unsafe) var hash = FNV1a64()
            var writer = SnapshotWriter(chunkBytesMax: 64 << 10) { chunk in hash.combine(chunk) }
            do throws(SnapshotError) {
                try writeSnapshot(into: &writer)
            } catch {
                return .failure(error)
            }
            return .success((appliedIndex, hash.value))
        }
        do { return try result.get() } catch { throw .snapshot(error) }
    }
}
