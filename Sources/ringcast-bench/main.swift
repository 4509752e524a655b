import RingCastBenchKit

BenchCommand.main()
