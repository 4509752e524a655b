import ArgumentParser
import Foundation

/// The faults of a `bench --lan` run (ARCHITECTURE §3.1, as in ringcast-bench): kill -9 of a replica, a partition
/// (tools/lan cut, healed after a while or never), a replica joining. Times are seconds after the measurement
/// starts. Pure values, parsed and validated before anything is started.
struct LANFaultPlan: Sendable, Equatable {
    enum Kind: String, Sendable { case kill, partition, join }

    struct Fault: Sendable, Equatable, CustomStringConvertible {
        var kind: Kind
        /// The replica it targets; for a join, the id the new replica gets.
        var replica: Int
        var atSeconds: Double
        /// Partition only: healed this long after the cut (nil: stays cut until the end of the run).
        var healAfterSeconds: Double?

        var description: String {
            switch kind {
            case .join: "join \(replica)@\(atSeconds)"
            case .kill: "kill \(replica)@\(atSeconds)"
            case .partition: "partition \(replica)@\(atSeconds)" + (healAfterSeconds.map { "+\($0)" } ?? "")
            }
        }
    }

    var faults: [Fault]

    var joiners: Int { faults.filter { $0.kind == .join }.count }
    /// Replicas killed or cut at some point: their state is not compared at the end.
    var faulted: Set<Int> { Set(faults.filter { $0.kind != .join }.map(\.replica)) }

    static func parse(kill: [String], partition: [String], join: [String], replicas: Int) throws -> LANFaultPlan {
        var faults: [Fault] = []
        func target(_ value: String, _ flag: String) throws -> (Int, Double, Double?) {
            let parts = value.split(separator: "@", omittingEmptySubsequences: false)
            guard parts.count == 2, let id = Int(parts[0]), id >= 0 else {
                throw ValidationError("\(flag) '\(value)': expected ID@SECONDS, e.g. 2@3 (replica 2, 3 s into the measurement)")
            }
            let timing = parts[1].split(separator: "+", omittingEmptySubsequences: false)
            guard (1...2).contains(timing.count), let at = Double(timing[0]), at.isFinite, at >= 0 else {
                throw ValidationError("\(flag) '\(value)': '\(parts[1])' is not SECONDS[+DURATION]")
            }
            var heal: Double?
            if timing.count == 2 {
                guard flag == "--partition", let duration = Double(timing[1]), duration.isFinite, duration > 0 else {
                    throw ValidationError("\(flag) '\(value)': +DURATION is for --partition, a positive number of seconds")
                }
                heal = duration
            }
            return (id, at, heal)
        }
        for value in kill {
            let (id, at, _) = try target(value, "--kill")
            faults.append(Fault(kind: .kill, replica: id, atSeconds: at))
        }
        for value in partition {
            let (id, at, heal) = try target(value, "--partition")
            faults.append(Fault(kind: .partition, replica: id, atSeconds: at, healAfterSeconds: heal))
        }
        let joinTimes = try join.map { value -> Double in
            guard value.hasPrefix("@"), let at = Double(value.dropFirst()), at.isFinite, at >= 0 else {
                throw ValidationError("--join '\(value)': expected @SECONDS (the new replica gets the next id, \(replicas) for the first)")
            }
            return at
        }
        for (index, at) in joinTimes.sorted().enumerated() {
            faults.append(Fault(kind: .join, replica: replicas + index, atSeconds: at))
        }
        return LANFaultPlan(faults: faults.sorted { $0.atSeconds < $1.atSeconds })
    }

    /// Ids exist (a joiner only after it joined), times lie inside the measurement, one fault per replica, and a
    /// strict majority of the founding replicas is never killed or cut (the group is quorum-based: without a
    /// majority it blocks by design, and the bench would only measure that).
    func validate(replicas: Int, duration: Double) throws {
        var targeted: Set<Int> = []
        for fault in faults {
            guard fault.atSeconds < duration else {
                throw ValidationError("\(fault): \(fault.atSeconds) s is outside the measurement (0 ≤ SECONDS < --duration \(duration))")
            }
            if fault.kind == .join { continue }
            if fault.replica >= replicas {
                guard let join = faults.first(where: { $0.kind == .join && $0.replica == fault.replica }),
                      join.atSeconds < fault.atSeconds else {
                    throw ValidationError("\(fault): there is no replica \(fault.replica) then (ids 0…\(replicas - 1), joiners after they join)")
                }
            }
            guard targeted.insert(fault.replica).inserted else {
                throw ValidationError("\(fault): replica \(fault.replica) is already the target of a fault; one per replica")
            }
        }
        guard (replicas - targeted.filter { $0 < replicas }.count) * 2 > replicas else {
            throw ValidationError("the faults leave no majority of the \(replicas) replicas: the group would block by design")
        }
    }
}
