import RingCastBenchKit

// `ringcast-bench chain …` and `ringcast-bench --protocol chain …` (ARCHITECTURE §3.1) are parsed by ChainBenchCommand
// alone: as a subcommand of BenchCommand, the options both declare (--duration, --warmup, --json) went to the root
// command and the subcommand kept its defaults.
var arguments = Array(CommandLine.arguments.dropFirst())
if let index = arguments.firstIndex(of: "--protocol"), index + 1 < arguments.count, arguments[index + 1] == "chain" {
    arguments.removeSubrange(index...(index + 1))
    ChainBenchCommand.main(arguments)
} else if let index = arguments.firstIndex(of: "--protocol=chain") {
    arguments.remove(at: index)
    ChainBenchCommand.main(arguments)
} else if arguments.first == "chain" {
    ChainBenchCommand.main(Array(arguments.dropFirst()))
} else if arguments.first == "chain-replica" {
    // The processes `ringcast-bench chain --lan` starts on its emulated hosts (not for people).
    ChainBenchReplicaCommand.main(Array(arguments.dropFirst()))
} else if arguments.first == "chain-driver" {
    ChainBenchDriverCommand.main(Array(arguments.dropFirst()))
} else {
    if let index = arguments.firstIndex(of: "--protocol"), index + 1 < arguments.count, arguments[index + 1] == "lcr" {
        arguments.removeSubrange(index...(index + 1))
    }
    BenchCommand.main(arguments)
}
