import ArgumentParser
import Foundation

/// `ringcast-sim --chain`: the options it shares with the other randomized modes, checked and run.
extension SimCommand {
    func validateChain() throws {
        if random || membership { throw ValidationError("--chain excludes --random and --membership") }
        if seed != nil && seeds != nil { throw ValidationError("--seed and --seeds exclude each other") }
        if let seeds, seeds < 1 { throw ValidationError("--seeds must be at least 1, got \(seeds)") }
        if trace && seed == nil { throw ValidationError("--trace needs --seed (one run)") }
        if trace && json { throw ValidationError("--trace and --json exclude each other") }
        if plantBug != .none { throw ValidationError("--plant-bug plants into the LCR core; use --chain-bug") }
        if let chainF, !(1...2).contains(chainF) { throw ValidationError("--f must be 1 or 2 in the simulator, got \(chainF)") }
    }

    /// One seed (`--seed`) or a sweep; passes when nothing is violated (with a planted bug: when it is caught).
    func executeChain() throws(SimError) -> (output: String, passed: Bool) {
        let expectViolations = chainBug != .none
        do {
            if let seed {
                let report = try ChainSimulation.run(seed: seed, plantedBug: chainBug, behaviour: chainBehaviour,
                                                     f: chainF.map(UInt32.init), trace: trace)
                let text = json ? Self.encode(report) : ChainSimOutput.text(report)
                return (text, report.violations.isEmpty != expectViolations)
            }
            let sweep = try ChainSimulation.sweep(firstSeed: firstSeed, count: seeds ?? 100, plantedBug: chainBug,
                                                  behaviour: chainBehaviour, f: chainF.map(UInt32.init))
            let text = json ? Self.encode(sweep) : ChainSimOutput.text(sweep)
            return (text, (sweep.violations > 0) == expectViolations)
        } catch {
            throw .simulatorFailed(operation: "chain simulation", errno: { if case .code(let rc) = error { return rc }; return -5 }())
        }
    }

    static func encode<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(value)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
    }
}
