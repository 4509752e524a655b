import ArgumentParser

/// `ringcast-sim --backup`: its options checked and run.
extension SimCommand {
    func validateBackup() throws {
        if random || membership || chain { throw ValidationError("--backup excludes --random, --membership and --chain") }
        if seed != nil && seeds != nil { throw ValidationError("--seed and --seeds exclude each other") }
        if let seeds, seeds < 1 { throw ValidationError("--seeds must be at least 1, got \(seeds)") }
        if trace { throw ValidationError("--trace is not available in backup mode") }
        if plantBug != .none || chainBug != .none || chainBehaviour != nil {
            throw ValidationError("backup mode takes --backup-bug and --backup-behaviour")
        }
        if let chainF, !(1...2).contains(chainF) { throw ValidationError("--f must be 1 or 2 in the simulator, got \(chainF)") }
        if composition && (backupBug != .none || backupBehaviour != nil) {
            throw ValidationError("--composition runs correct replicas with one down: no --backup-bug or --backup-behaviour")
        }
    }

    /// One seed (`--seed`) or a sweep; passes when nothing is violated (with a planted bug: when it is caught).
    func executeBackup() throws(SimError) -> (output: String, passed: Bool) {
        let expectViolations = backupBug != .none
        do {
            if composition, let seed {
                let report = try BackupSimulation.composition(seed: seed, f: chainF.map(UInt32.init))
                return (json ? Self.encode(report) : BackupSimulation.text(report), report.violations.isEmpty)
            }
            if composition {
                let sweep = try BackupSimulation.compositionSweep(firstSeed: firstSeed, count: seeds ?? 100, f: chainF.map(UInt32.init))
                return (json ? Self.encode(sweep) : BackupSimulation.text(sweep), sweep.violations == 0)
            }
            if let seed {
                let report = try BackupSimulation.run(seed: seed, plantedBug: backupBug, behaviour: backupBehaviour,
                                                      f: chainF.map(UInt32.init))
                let text = json ? Self.encode(report) : BackupSimulation.text(report)
                return (text, report.violations.isEmpty != expectViolations)
            }
            let sweep = try BackupSimulation.sweep(firstSeed: firstSeed, count: seeds ?? 100, plantedBug: backupBug,
                                                   behaviour: backupBehaviour, f: chainF.map(UInt32.init))
            let text = json ? Self.encode(sweep) : BackupSimulation.text(sweep)
            return (text, (sweep.violations > 0) == expectViolations)
        } catch {
            throw .simulatorFailed(operation: "backup simulation", errno: { if case .code(let rc) = error { return rc }; return -5 }())
        }
    }
}
