import RingCastBenchKit

// `ringcast-bench chain …` is parsed by ChainBenchCommand alone: as a subcommand of BenchCommand, the options both
// declare (--duration, --warmup, --json) went to the root command and the subcommand kept its defaults.
if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == "chain" {
    ChainBenchCommand.main(Array(CommandLine.arguments.dropFirst(2)))
} else {
    BenchCommand.main()
}
